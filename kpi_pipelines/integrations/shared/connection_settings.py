"""What a connection's settings may hold, for every provider: the kit's base model.

A connection's settings are tenant input, and a host among them would let a tenant choose
where a workspace's credentials are sent. Every provider's settings model is a
`ConnectionSettings` (ProviderSpec refuses any other), which gives it, without a list of
key names to keep up to date:

- unknown keys refused at every level: the model and every model nested in it forbid
  extra keys (checked when the class is defined);
- no URL, host name or IP address under any key, however deep (in lists too), and no key
  named like a host setting: the raw input is checked before the fields' own validators,
  and the validated values again after them. A field whose own validator reduces a pasted
  URL to an id (a Google Sheet's address) is named in `pasted_urls`; what it keeps is still
  checked. A field typed `Annotated[str, TenantName()]` (a column header of the tenant's
  own file) may hold a dotted name such as "Sales.Total", never a URL, an IP address or a
  host with a user, port or path. Hosts are operator settings (`KPI_<PROVIDER>_BASE_URL`),
  never a connection's.

`save_connection` is what `kpi-pipelines connection add` does: the settings checked
against the provider's model and stored as validated, the secrets' purposes against its
spec, then the warehouse's own checks (which refuse hosts too, whatever the provider).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from kpi_pipelines.integrations.shared.validation import describe_validation
from kpi_pipelines.warehouse.control import Connection, add_connection, settings_host_problem
from kpi_pipelines.warehouse.database import Warehouse

if TYPE_CHECKING:
    from kpi_pipelines.integrations.shared.spec import ProviderSpec

HOSTS_ARE_OPERATOR_SETTINGS = (
    "the hosts a provider is reached at are operator settings (KPI_<PROVIDER>_BASE_URL in the"
    " environment of the Dagster processes), never a connection's"
)


class TenantName:
    """Marks a string field (`Annotated[str, TenantName()]`) as a name in the tenant's own
    data, never used to reach anything: a dotted name alone is allowed there."""


class ConnectionSettings(BaseModel):
    """The base of every provider's connection settings model."""

    # A pasted secret must not be echoed back in a validation error.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # Top-level fields whose validator accepts a pasted URL and keeps only an id from it.
    pasted_urls: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for model in _models_within(cls):
            if model.model_config.get("extra") != "forbid":
                raise TypeError(
                    f"{cls.__name__}: {model.__name__} must forbid unknown keys"
                    ' (model_config = ConfigDict(extra="forbid")): connection settings are'
                    " tenant input"
                )

    @model_validator(mode="before")
    @classmethod
    def _no_host_given(cls, data: Any) -> Any:
        _refuse_hosts(data, cls, skip=cls.pasted_urls)
        return data

    @model_validator(mode="after")
    def _no_host_kept(self) -> ConnectionSettings:
        _refuse_hosts(self.model_dump(mode="json"), type(self))
        return self


def _refuse_hosts(
    settings: Any, model: type[BaseModel], skip: frozenset[str] = frozenset()
) -> None:
    problem = settings_host_problem(settings, skip=skip, names=_tenant_name_paths(model))
    if problem:
        raise ValueError(f"{problem}, which is not allowed: {HOSTS_ARE_OPERATOR_SETTINGS}")


def _tenant_name_paths(model: type[BaseModel]) -> set[tuple[str, ...]]:
    """The key paths of `model`'s TenantName fields ("*" for any list index or dict key)."""
    paths: set[tuple[str, ...]] = set()
    pending: list[tuple[tuple[str, ...], Any, tuple[Any, ...]]] = [
        ((name,), field.annotation, tuple(field.metadata))
        for name, field in model.model_fields.items()
    ]
    while pending:
        path, annotation, metadata = pending.pop()
        if any(isinstance(marker, TenantName) for marker in metadata):
            paths.add(path)
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            inner, *markers = typing.get_args(annotation)
            pending.append((path, inner, tuple(markers)))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            pending.extend(
                ((*path, name), field.annotation, tuple(field.metadata))
                for name, field in annotation.model_fields.items()
            )
        elif isinstance(annotation, types.UnionType) or origin is typing.Union:
            pending.extend((path, arg, ()) for arg in typing.get_args(annotation))
        elif origin is not None:  # list[...], dict[str, ...]: any element or value
            pending.extend(((*path, "*"), arg, ()) for arg in typing.get_args(annotation)[-1:])
    return paths


def _models_within(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    """`model` and every model its fields can hold (in lists, dicts, unions), once each."""
    seen: set[type[BaseModel]] = set()
    pending: list[Any] = [model]
    while pending:
        annotation = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                continue
            seen.add(annotation)
            yield annotation
            pending.extend(field.annotation for field in annotation.model_fields.values())
        elif typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
            pending.extend(typing.get_args(annotation))


def validated_connection_settings(spec: ProviderSpec, settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` checked against the provider's model, as they are to be stored (as
    validated: a pasted address reduced to its id, names stripped); ValueError naming the
    provider and every problem's key path."""
    if spec.settings is None:
        if settings:
            raise ValueError(f"{spec.key} takes no settings; not {', '.join(sorted(settings))}")
        return {}
    try:
        model = spec.settings.model_validate(settings)
    except ValidationError as exc:
        raise ValueError(f"{spec.key} settings: {describe_validation(exc, whole='')}") from None
    return model.model_dump(mode="json", exclude_unset=True)


def save_connection(warehouse: Warehouse, connection: Connection, spec: ProviderSpec) -> Connection:
    """Add (or replace) a connection after checking it against its provider's spec: the
    settings (the kit's rules above, and the provider's own), the secrets' purposes."""
    if spec.key != connection.provider:
        raise ValueError(f"a {connection.provider} connection is not checked by {spec.key}'s spec")
    settings = validated_connection_settings(spec, connection.settings)
    if (
        spec.oauth
        and spec.oauth.rotates_refresh_tokens
        and "refresh_token" in connection.secret_env
    ):
        raise ValueError(
            f"{spec.key} issues a new refresh token on every refresh and refuses the old one,"
            " so one in an environment variable would stop working after the first sync: grant"
            f" access with `kpi-pipelines connect {connection.workspace_id} {spec.key}`, which"
            " keeps the grant encrypted in the warehouse"
        )
    purposes = {secret.purpose for secret in spec.secrets}
    unknown = sorted(set(connection.secret_env) - purposes)
    if unknown:
        expected = ", ".join(sorted(purposes)) or "none"
        raise ValueError(f"{spec.key} takes the secrets {expected}; not {', '.join(unknown)}")
    return add_connection(warehouse, connection.model_copy(update={"settings": settings}))
