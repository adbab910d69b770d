"""The Google sandbox served on loopback, with the demo OAuth client, for provider tests,
and the world both Google providers' tests run in (workspaces connected to it, by a
refresh-token variable or through the consent page, syncs through the real asset)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlencode, urlsplit

import dagster as dg
import httpx
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from cryptography.fernet import Fernet

from kpi_pipelines.automation.partitions import register_partition
from kpi_pipelines.demo import materialize_provider
from kpi_pipelines.integrations.shared.base_adapter import IntegrationAdapter, SyncContext
from kpi_pipelines.integrations.shared.grants import GRANT_KEYS_VARIABLE
from kpi_pipelines.integrations.shared.oauth import GOOGLE_CLIENT_VARIABLES
from kpi_pipelines.integrations.shared.oauth_connect import Connected, connect_workspace
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.integrations.shared.spec import spec_for
from kpi_pipelines.sandbox.google import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_REFRESH_TOKEN,
    GoogleSandbox,
    create_google_app,
)
from kpi_pipelines.sandbox.google.oauth import CONSENT_PATH
from kpi_pipelines.sandbox.kit.server import LoopbackServer
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    get_connection,
    get_workspace,
    secret_namespace,
)
from kpi_pipelines.warehouse.database import Warehouse


def new_grant_key() -> str:
    return Fernet.generate_key().decode()


def grant_keys(monkeypatch: pytest.MonkeyPatch, *keys: str) -> None:
    """KPI_GRANT_KEYS set to `keys` (newest first), each one a canary of the secret canary."""
    register_secret(*keys)
    monkeypatch.setenv(GRANT_KEYS_VARIABLE, ",".join(keys))


def approve_in_browser(url: str) -> httpx.Response:
    """What a browser does with the consent page's address: follows the redirects (the
    simulated user approves) to the callback, whose page it shows."""
    page = httpx.get(url, follow_redirects=True, timeout=30)
    assert page.status_code == 200, page.text
    return page


def browser_forging_state(forged: list[httpx.Response]) -> Callable[[str], None]:
    """A browser that, before following the genuine consent, sends the loopback callback an
    attacker's own code (from a consent of theirs, same client and redirect) with a forged
    state, without one, and with the genuine state altered; the callback's answers go to
    `forged`."""

    def browser(url: str) -> None:
        genuine = httpx.get(url).headers["location"]
        callback = urlsplit(genuine)
        theirs = parse_qs(urlsplit(url).query)
        attack = {k: v[0] for k, v in theirs.items()} | {
            "state": "attackers-state",
            "code_challenge": create_s256_code_challenge("a" * 43),
        }
        attacker_code = parse_qs(
            urlsplit(
                httpx.get(url.split("?")[0] + "?" + urlencode(attack)).headers["location"]
            ).query
        )["code"][0]
        for query in (
            {"code": attacker_code, "state": "forged-state"},
            {"code": attacker_code},
            {"code": attacker_code, "state": theirs["state"][0] + "x"},
        ):
            forged.append(httpx.get(callback._replace(query=urlencode(query)).geturl()))
        httpx.get(genuine).raise_for_status()

    return browser


def sync_in_thread(
    warehouse: Warehouse,
    adapter: IntegrationAdapter,
    workspace_id: str,
    provider: str,
    run_id: str,
    out: dict[str, Any],
) -> threading.Thread:
    """One sync of the workspace's `provider` connection by `adapter`, started in a thread
    of its own (two of them race for one stored grant); its SyncResult, or what it raised,
    lands in `out[run_id]`."""

    def run() -> None:
        with warehouse.control() as db:
            workspace = get_workspace(db, workspace_id)
            connection = get_connection(db, workspace_id, provider)
        try:
            adapter.connect(SyncContext(warehouse, workspace, connection, run_id=run_id))
            out[run_id] = adapter.sync()
        except Exception as exc:
            out[run_id] = exc
        finally:
            adapter.disconnect()

    thread = threading.Thread(target=run, name=run_id)
    thread.start()
    return thread


def connect_with_consent(
    warehouse: Warehouse,
    provider: str,
    workspace_id: str,
    *,
    browser: Callable[[str], object] = approve_in_browser,
    timeout: float = 30.0,
) -> Connected:
    """`kpi-pipelines connect` in process (the kit's connect_workspace), the test playing
    the browser with the address it prints; what it raised is raised here."""
    urls: queue.Queue[str | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["connected"] = connect_workspace(
                warehouse,
                spec_for(provider),
                workspace_id,
                actor="user:test",
                say=lambda text: None,
                show_url=urls.put,
                open_browser=False,
                timeout=timeout,
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            urls.put(None)

    thread = threading.Thread(target=run, name="connect")
    thread.start()
    url = urls.get(timeout=120)
    if url is not None:
        browser(url)
    thread.join(timeout=timeout + 60)
    assert not thread.is_alive(), "connect did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connected"]


def google_secret_env(workspace_id: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What a test workspace's Google connection names: its refresh token, in its namespace
    (set to the sandbox's demo token); the OAuth client is the operator's."""
    variable = f"{secret_namespace(workspace_id)}GOOGLE_REFRESH_TOKEN"
    monkeypatch.setenv(variable, DEMO_REFRESH_TOKEN)
    return {"refresh_token": variable}


@contextmanager
def served_google_sandbox(
    monkeypatch: pytest.MonkeyPatch, *, seed: int, base_url_variable: str
) -> Iterator[tuple[GoogleSandbox, LoopbackServer]]:
    """A sandbox that knows the demo client, with its consent page, token endpoint, API host,
    the operator's OAuth client and a key for stored grants in the environment."""
    sandbox = GoogleSandbox(seed=seed)
    sandbox.register_client(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    sandbox.add_refresh_token(DEMO_REFRESH_TOKEN, DEMO_CLIENT_ID)
    with LoopbackServer(create_google_app(sandbox)) as server:
        monkeypatch.setenv("KPI_GOOGLE_AUTHORIZE_URL", server.url(CONSENT_PATH))
        monkeypatch.setenv("KPI_GOOGLE_TOKEN_URL", server.url("/token"))
        grant_keys(monkeypatch, new_grant_key())
        monkeypatch.setenv(base_url_variable, server.base_url)
        monkeypatch.setenv(GOOGLE_CLIENT_VARIABLES["client_id"], DEMO_CLIENT_ID)
        monkeypatch.setenv(GOOGLE_CLIENT_VARIABLES["client_secret"], DEMO_CLIENT_SECRET)
        yield sandbox, server


@dataclass
class GoogleWorld:
    """A served sandbox, the warehouse and a Dagster instance; a subclass names its provider."""

    provider: ClassVar[str]
    sandbox: GoogleSandbox
    server: LoopbackServer
    warehouse: Warehouse
    instance: dg.DagsterInstance
    monkeypatch: pytest.MonkeyPatch

    @classmethod
    @contextmanager
    def served(
        cls,
        warehouse: Warehouse,
        instance: dg.DagsterInstance,
        monkeypatch: pytest.MonkeyPatch,
        *,
        seed: int,
    ) -> Iterator[Self]:
        """The world around a sandbox served for the provider (its KPI_<PROVIDER>_BASE_URL)."""
        variable = f"KPI_{cls.provider.upper()}_BASE_URL"
        with served_google_sandbox(monkeypatch, seed=seed, base_url_variable=variable) as served:
            yield cls(*served, warehouse, instance, monkeypatch)

    def connect(self, workspace_id: str, settings: Mapping[str, Any]) -> Workspace:
        """A workspace with a connection of this provider to the sandbox, and its partition."""
        workspace = add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        add_connection(
            self.warehouse,
            Connection(
                workspace_id=workspace_id,
                provider=self.provider,
                settings=dict(settings),
                secret_env=google_secret_env(workspace_id, self.monkeypatch),
            ),
        )
        register_partition(self.instance, workspace_id, self.provider)
        return workspace

    def unconnected(self, workspace_id: str, settings: Mapping[str, Any]) -> Workspace:
        """A workspace with a connection of this provider that names no secret (as
        `connection add` leaves it before `connect`), and its partition."""
        workspace = add_workspace(self.warehouse, Workspace(id=workspace_id, name=workspace_id))
        add_connection(
            self.warehouse,
            Connection(workspace_id=workspace_id, provider=self.provider, settings=dict(settings)),
        )
        register_partition(self.instance, workspace_id, self.provider)
        return workspace

    def connect_with_consent(
        self, workspace_id: str, settings: Mapping[str, Any], **options: Any
    ) -> Connected:
        """An unconnected workspace granted access through the sandbox's consent page."""
        self.unconnected(workspace_id, settings)
        return connect_with_consent(self.warehouse, self.provider, workspace_id, **options)

    def run(
        self,
        workspace_id: str,
        run_config: Mapping[str, Any] | None = None,
        adapter: IntegrationAdapter | None = None,
    ) -> dg.ExecuteInProcessResult:
        """One run of the provider's real asset for the workspace."""
        return materialize_provider(
            self.warehouse, self.instance, self.provider, workspace_id, run_config, adapter=adapter
        )
