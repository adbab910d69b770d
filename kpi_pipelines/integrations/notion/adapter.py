"""The Notion adapter: objectives (and their note pages) as the object engine's hooks.

The object engine (engines/objects.py) lands pages in raw_records and computes the metrics
in SQL over them (metrics.py); the notes asset (notes.py) reads the landed pages and
fetches their bodies. What is Notion's own is here:

- `Notion-Version` (2025-09-03 by default, or 2022-06-28) on every request. In 2025-09-03 a
  database holds data sources: the objectives are one data source's pages (the
  connection's `data_source_id`, or the database's only one), queried with `POST
  /v1/data_sources/{id}/query` and described by `GET /v1/data_sources/{id}`; in 2022-06-28
  the database itself is queried and described.
- Connecting reads the schema and resolves the connection's property mapping (schema.py):
  a missing or mistyped property fails the connection, naming it.
- Incremental by last edited time: a sync asks for the pages edited since its cursor (the
  provider's clock when the last sync began, from Notion's `Date` header) less an overlap
  (Notion rounds `last_edited_time` down to the minute, and an edit can show in a query a
  little late), sorted by it, oldest first. Nothing edited: nothing landed.
- Queries never show trashed pages, and trashing or restoring a page need not move its last
  edited time: so every sync also calls the roll (every live page's id, with only its title:
  `filter_properties=title`) and fetches again (`GET /v1/pages/{id}`) each landed live page
  the roll no longer shows (trashed, moved, or no longer shared) and each page it shows
  again; one Notion no longer answers for (404) is kept in the cursor as unreachable, and
  leaves the snapshot with the trashed ones.
- Note pages are the pages of the database the mapping's `notes` relation points at, synced
  the same way (stream `note_pages`).
- 429 `rate_limited` waits its `Retry-After` (the kit's HTTP layer); 409 `conflict_error` is
  retried like a 5xx; the answers' size and nesting are bounded by the kit (bounds.py).
"""

from __future__ import annotations

import email.utils
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import httpx
import msgspec
import sqlalchemy as sa
from pydantic import PrivateAttr, ValidationError
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines import settings
from kpi_pipelines.integrations.notion.metrics import (
    LIVE,
    NOTE_PAGES,
    OBJECTIVES,
    SOURCE,
    MetricsScope,
    compute_objective_metrics,
    metric_points,
)
from kpi_pipelines.integrations.notion.schema import ObjectiveMapping, resolve
from kpi_pipelines.integrations.notion.types import (
    DatabaseObject,
    DataSourceObject,
    NotionConnectionSettings,
    SchemaProperty,
)
from kpi_pipelines.integrations.shared.engines.objects import (
    Changes,
    Ledger,
    ObjectAdapter,
    Relisting,
    Stream,
)
from kpi_pipelines.integrations.shared.errors import ProviderRequestError, ProviderUnavailable
from kpi_pipelines.integrations.shared.grants import StoredGrant
from kpi_pipelines.integrations.shared.http import ProviderHttpClient, RetryDecision
from kpi_pipelines.integrations.shared.oauth import OAuthApi
from kpi_pipelines.integrations.shared.paging import (
    Page,
    PageRequest,
    PageToken,
    PagingError,
    items,
)
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.validation import describe_validation, validated_settings
from kpi_pipelines.models import KPIData
from kpi_pipelines.warehouse.tenant_data import load_cursor

PROVIDER = SOURCE
DEFAULT_BASE_URL = "https://api.notion.com"
V2025 = "2025-09-03"
MAX_PAGE_SIZE = 100
CURSOR_STREAM = "pages"  # the sync_state stream of the cursor
# Notion's title property has this id in every database.
TITLE_ID = "title"
# A provider clock this far ahead of ours is not believed (the snapshot's day comes from it).
MAX_CLOCK_AHEAD = timedelta(days=1)


class NotionAdapter(ObjectAdapter):
    """Notion's REST API over the kit's HTTP layer, with an integration token (Bearer)."""

    provider: ClassVar[str] = PROVIDER

    base_url: str | None = None  # default: KPI_NOTION_BASE_URL, else api.notion.com
    timeout_seconds: float = 60.0
    page_size: int = MAX_PAGE_SIZE  # pages or blocks per request (Notion allows 100)
    max_attempts: int = 6
    backoff_base_seconds: float = 0.5
    # A Retry-After (or backoff) longer than this stops the sync as a spent quota.
    backoff_max_seconds: float = 60.0
    # Edits read again before the cursor: Notion's minute-rounded times, late visibility.
    edit_overlap_seconds: int = 300
    # Pages Notion no longer answers for, remembered per stream (beyond: the oldest forgotten,
    # and read again once: harmless, only slower).
    max_unreachable: int = 5000

    _http: ProviderHttpClient | None = PrivateAttr(default=None)
    _oauth: OAuthApi | None = PrivateAttr(default=None)  # with a stored grant
    _settings: NotionConnectionSettings | None = PrivateAttr(default=None)
    _mapping: ObjectiveMapping | None = PrivateAttr(default=None)
    _paths: dict[str, str] = PrivateAttr(default_factory=dict)  # stream -> its query path
    # stream -> what its pages' parent is: ("data_source_id" or "database_id", the id)
    _parents: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)
    _database_title: str = PrivateAttr(default="")
    _observed_at: datetime | None = PrivateAttr(default=None)
    _unreachable: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    # --- connect / disconnect ---------------------------------------------------------------

    def check_connection(self) -> None:
        """Prove the token (`GET /v1/users/me`), read the objectives database's schema and
        resolve the connection's property mapping against it."""
        connection = self.context.connection
        config = validated_settings(connection, NotionConnectionSettings)
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {self.page_size}")
        if config.data_source_id and config.notion_version != V2025:
            raise ValueError(
                f"the notion connection {connection.name!r} of workspace"
                f" {connection.workspace_id!r} names a data_source_id, which needs notion_version"
                f" {V2025} (it has {config.notion_version})"
            )
        self._settings = config
        base_url = settings.provider_base_url(PROVIDER, DEFAULT_BASE_URL, self.base_url)
        options: dict[str, Any] = {
            "timeout": self.timeout_seconds,
            "max_attempts": self.max_attempts,
            "backoff_base": self.backoff_base_seconds,
            "backoff_max": self.backoff_max_seconds,
            "classify": _classify,
        }
        if "token" in connection.secret_env:  # an internal integration's secret
            token = read_secret(connection, "token")
            headers = {"Authorization": f"Bearer {token}", "Notion-Version": config.notion_version}
            self._http = ProviderHttpClient(
                PROVIDER, base_url, headers=headers, limits=self.spec.limits.response(), **options
            )
        else:  # a public integration's grant, stored by `kpi-pipelines connect`
            self._http = self._open_grant(base_url, config, options)
        me = self._http.get_json("/v1/users/me", cacheable=False, decode=self._read_clock)
        self._resolve(config)
        bot = me.get("name") if isinstance(me, dict) else None
        self.context.log.info(
            f"notion: connected as {bot or 'the integration'} (Notion-Version"
            f" {config.notion_version}); objectives database {self._database_title!r};"
            f" properties {self.mapping.describe()}"
        )

    def _open_grant(
        self, base_url: str, config: NotionConnectionSettings, options: dict[str, Any]
    ) -> ProviderHttpClient:
        """The API through the stored grant: its access token, refreshed (and the rotated
        refresh token stored) under the grant's row lock when Notion no longer takes it."""
        context = self.context
        flow = self.spec.oauth
        if flow is None or context.connection.id is None:
            raise ValueError("notion: a connection without a token needs `kpi-pipelines connect`")
        self._oauth = OAuthApi(
            PROVIDER,
            context.connection,
            token_url=flow.token_endpoint(),
            base_url=base_url,
            client_variables=flow.client_variables,
            limits=self.spec.limits.response(),
            flow=flow,
            grant=StoredGrant(context.warehouse, context.connection, actor=context.actor),
            headers={"Notion-Version": config.notion_version},
            **options,
        )
        return self._oauth.http

    def disconnect(self) -> None:
        if self._oauth is not None:
            self._oauth.close()  # its client is self._http
        elif self._http is not None:
            self._http.close()
        self._oauth = None
        self._http = None
        self._settings = None
        self._mapping = None
        self._paths = {}
        self._observed_at = None
        self._unreachable = {}
        super().disconnect()

    def request_stats(self) -> dict[str, int | float]:
        return self._http.stats.as_metadata() if self._http is not None else {}

    @property
    def http(self) -> ProviderHttpClient:
        if self._http is None:
            raise RuntimeError("notion: call connect() first")
        return self._http

    @property
    def mapping(self) -> ObjectiveMapping:
        if self._mapping is None:
            raise RuntimeError("notion: call connect() first")
        return self._mapping

    @property
    def observed_at(self) -> datetime:
        """The provider's clock when this sync began."""
        return self._observed_at or datetime.now(UTC)

    def _read_clock(self, response: httpx.Response) -> Any:
        """A response's JSON, and the provider's clock from its Date header (not believed
        when it is ahead of ours by more than a day)."""
        body = _json(response)
        said = response.headers.get("date")
        now = datetime.now(UTC)
        try:
            stated = email.utils.parsedate_to_datetime(said) if said else None
        except (TypeError, ValueError, IndexError):
            stated = None
        if stated is not None and stated.tzinfo is not None and stated <= now + MAX_CLOCK_AHEAD:
            self._observed_at = stated.astimezone(UTC)
        else:
            self._observed_at = now
        return body

    def _resolve(self, config: NotionConnectionSettings) -> None:
        database = self._read(
            DatabaseObject, f"/v1/databases/{config.database_id}", "the objectives database"
        )
        self._database_title = "".join(t.plain_text for t in database.title) or database.id
        if config.notion_version == V2025:
            source_id = self._data_source_of(database, config)
            source = self._read(
                DataSourceObject, f"/v1/data_sources/{source_id}", "the objectives data source"
            )
            schema: Mapping[str, SchemaProperty] = source.properties
            parent_key, query = "data_source_id", "/v1/data_sources/{}/query"
        else:
            schema = database.properties or {}
            source_id = database.id
            parent_key, query = "database_id", "/v1/databases/{}/query"
        self._mapping = resolve(
            schema,
            config.properties,
            database=self._database_title,
            objectives_source=source_id,
            version=config.notion_version,
        )
        self._paths = {OBJECTIVES: query.format(source_id)}
        self._parents = {OBJECTIVES: (parent_key, source_id)}
        if self._mapping.notes_target:
            self._paths[NOTE_PAGES] = query.format(self._mapping.notes_target)
            self._parents[NOTE_PAGES] = (parent_key, self._mapping.notes_target)

    def _data_source_of(self, database: DatabaseObject, config: NotionConnectionSettings) -> str:
        sources = database.data_sources or []
        listed = ", ".join(f"{s.name or '?'} ({s.id})" for s in sources[:20]) or "none"
        if config.data_source_id:
            if not any(_same_id(s.id, config.data_source_id) for s in sources):
                raise ValueError(
                    f"the objectives database {self._database_title!r} has no data source"
                    f" {config.data_source_id}; its data sources: {listed}"
                )
            return config.data_source_id
        if len(sources) == 1:
            return sources[0].id
        raise ValueError(
            f"the objectives database {self._database_title!r} has {len(sources)} data sources"
            f" ({listed}): set the connection's data_source_id to the objectives one"
        )

    def _read(self, model: type[Any], path: str, what: str) -> Any:
        raw = self.http.get_json(path)
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ProviderRequestError(
                PROVIDER,
                f"{what} ({path}) is not what Notion sends: {describe_validation(exc, limit=3)}",
            ) from None

    # --- the object engine's hooks: reading -------------------------------------------------

    def paginator(self, stream: Stream) -> PageToken:
        return PageToken("start_cursor", in_body=True)

    def fetch_page(
        self, stream: Stream, filters: Mapping[str, Any], request: PageRequest
    ) -> Page[bytes]:
        path = self._paths.get(stream.name)
        if path is None:  # no notes relation: no note pages
            return Page(items=[], has_more=False)
        body = {
            "page_size": self.page_size,
            # oldest edit first: a page edited while we read moves behind us, not past us
            "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
            **{key: value for key, value in filters.items() if key != "filter_properties"},
            **request.body,
        }
        params = [("filter_properties", p) for p in filters.get("filter_properties", ())]
        listing = self.http.post_json(path, json=body, params=params or None, decode=_page_list)
        return Page(
            items=[bytes(raw) for raw in listing.results],
            has_more=listing.has_more,
            next_token=listing.next_cursor,
        )

    def retrieve(self, stream: Stream, object_id: str) -> bytes | None:
        try:
            return self.http.get_json(f"/v1/pages/{object_id}", cacheable=False, decode=_raw)
        except ProviderRequestError as exc:
            if exc.status == 404:  # no longer shared, or deleted for good
                self._remember_unreachable(stream.name, object_id)
                return None
            raise

    def block_page(self, block_id: str, request: PageRequest) -> Page[bytes]:
        """One page of a block's (or a page's) children, as raw texts (notes.py)."""
        listing = self.http.get_json(
            f"/v1/blocks/{block_id}/children",
            params={"page_size": self.page_size, **request.query},
            cacheable=False,
            decode=_page_list,
        )
        return Page(
            items=[bytes(raw) for raw in listing.results],
            has_more=listing.has_more,
            next_token=listing.next_cursor,
        )

    def load_unreachable(self) -> None:
        """The unreachable pages the last sync kept (for a reader other than the sync)."""
        context = self.context
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            cursor = load_cursor(db, PROVIDER, CURSOR_STREAM) or {}
        same = cursor.get("source") == self._source_key()
        self._unreachable = _unreachable_of(cursor) if same else {}

    # --- the object engine's hooks: changes -------------------------------------------------

    def needs_full_read(self, cursor: Mapping[str, Any]) -> bool:
        return not cursor.get("edited_since") or cursor.get("source") != self._source_key()

    def changes(self, cursor: Mapping[str, Any], ledger: Ledger) -> Changes:
        self._unreachable = _unreachable_of(cursor)
        since = datetime.fromisoformat(cursor["edited_since"]) - timedelta(
            seconds=self.edit_overlap_seconds
        )
        edited = {
            "filter": {
                "timestamp": "last_edited_time",
                "last_edited_time": {"on_or_after": since.isoformat()},
            }
        }
        records: dict[str, list[bytes]] = {}
        relist: dict[str, Mapping[str, Any]] = {}
        for stream in self.spec_streams():
            first = self.fetch_page(stream, edited, PageRequest())
            if first.items:
                records[stream.name] = list(first.items)
            if first.has_more and first.next_token:
                relist[stream.name] = {**edited, "start_cursor": first.next_token}
        seen = {name: {_id_of(text) for text in texts} for name, texts in records.items()}
        again = self._roll_call(ledger, unlanded=True, skip=seen)
        return Changes(objects=again, cursor=self._next_cursor(), records=records, relist=relist)

    def relisting(self, cursor: Mapping[str, Any], ledger: Ledger) -> Relisting:
        self._unreachable = _unreachable_of(cursor) if not self.needs_full_read(cursor) else {}
        again = self._roll_call(ledger, unlanded=False, skip={})
        return Relisting(cursor=self._next_cursor(), bound=None, objects=again)

    def spec_streams(self) -> tuple[Stream, ...]:
        engine = self.spec.engine
        assert engine is not None
        return tuple(s for s in engine.streams if s.name in self._paths)  # type: ignore[attr-defined]

    def _roll_call(
        self, ledger: Ledger, *, unlanded: bool, skip: Mapping[str, set[str]]
    ) -> dict[str, dict[str, datetime | None]]:
        """Pages to fetch again, per stream: landed live ones the roll no longer shows, and
        (`unlanded`) those it shows that are landed as gone, unreachable or not at all,
        unless this sync read them already (`skip`)."""
        wanted: dict[str, dict[str, datetime | None]] = {}
        for stream in self.spec_streams():
            live = set(self._live_ids(stream))
            landed = self._landed(stream.name, *self._parents[stream.name])
            unreachable = set(self._unreachable.get(stream.name, ()))
            again = {
                page_id for page_id, gone in landed.items() if not gone and page_id not in live
            }
            if unlanded:
                again |= {
                    page_id
                    for page_id in live
                    if landed.get(page_id, True) or page_id in unreachable
                } - skip.get(stream.name, set())
            self._unreachable[stream.name] = [i for i in unreachable if i not in live]
            if again:
                self.context.log.info(
                    f"notion: {len(again)} {stream.name} to read again (trashed, restored, moved"
                    " or no longer shared since the last sync)"
                )
                wanted[stream.name] = dict.fromkeys(sorted(again))
        return wanted

    def _live_ids(self, stream: Stream) -> Iterator[str]:
        """Every live page of the stream (the roll: ids only, the title property alone)."""
        roll = {"filter_properties": (TITLE_ID,)}

        def fetch(request: PageRequest) -> Page[bytes]:
            return self.fetch_page(stream, roll, request)

        try:
            for text in items(self.paginator(stream), fetch):
                page_id = _id_of(text)
                if page_id:
                    yield page_id
        except PagingError as exc:
            raise ProviderUnavailable(PROVIDER, f"{self._paths[stream.name]} {exc}") from None

    def _landed(self, stream: str, parent_key: str, parent_id: str) -> dict[str, bool]:
        """The stream's landed pages of its database (data source): id -> whether the landed
        copy is trashed or archived."""
        context = self.context
        with context.warehouse.tenant(context.workspace.id, actor=context.actor) as db:
            rows = db.execute(
                sa.text(
                    "SELECT record_id, coalesce(payload->>'in_trash', 'false') = 'true'"
                    " OR coalesce(payload->>'archived', 'false') = 'true'"
                    " FROM raw_records WHERE source = :source AND stream = :stream"
                    " AND payload->'parent'->>CAST(:parent_key AS text) = :parent_id"
                ),
                {
                    "source": PROVIDER,
                    "stream": stream,
                    "parent_key": parent_key,
                    "parent_id": parent_id,
                },
            ).all()
        return {row[0]: bool(row[1]) for row in rows}

    def _remember_unreachable(self, stream: str, page_id: str) -> None:
        kept = [i for i in self._unreachable.get(stream, []) if i != page_id]
        self._unreachable[stream] = [*kept, page_id][-self.max_unreachable :]

    def _source_key(self) -> str:
        config = self._settings
        assert config is not None
        key, source_id = self._parents[OBJECTIVES]
        return f"{config.notion_version}:{key}:{source_id}"

    def _next_cursor(self) -> dict[str, Any]:
        """Where the next sync starts: the provider's clock as this one began (edits from
        then on are the next sync's, less the overlap), and the unreachable pages."""
        return {
            "edited_since": self.observed_at.isoformat(),
            "source": self._source_key(),
            "unreachable": self._unreachable,
        }

    # --- the object engine's hooks: metrics --------------------------------------------------

    def metrics(self, db: DbConnection) -> Iterator[dict[str, Any]]:
        return compute_objective_metrics(db, self.metrics_scope())

    def metrics_scope(self) -> MetricsScope:
        workspace = self.context.workspace
        parent_key, parent_id = self._parents[OBJECTIVES]
        return MetricsScope(
            workspace_id=workspace.id,
            day=self.observed_at.astimezone(ZoneInfo(workspace.timezone)).date(),
            observed_at=self.observed_at,
            mapping=self.mapping,
            parent_key=parent_key,
            parent_id=parent_id,
            unreachable=tuple(self._unreachable.get(OBJECTIVES, ())),
        )

    def transform(self, raw: dict[str, Any]) -> list[KPIData]:
        """One row of the metrics query -> its points (metrics.py)."""
        return metric_points(self.metrics_scope(), raw)

    def live_filter(self, stream: str) -> tuple[str, dict[str, Any]]:
        """The SQL condition of a live landed page `p` of `stream`, and its parameters."""
        parent_key, parent_id = self._parents[stream]
        return LIVE, {
            "stream": stream,
            "parent_key": parent_key,
            "parent_id": parent_id,
            "unreachable": list(self._unreachable.get(stream, ())),
        }


def _classify(response: httpx.Response) -> RetryDecision | None:
    """Notion's 409 conflict_error: "try again" (the kit retries 429 and 5xx already)."""
    if response.status_code == 409:
        return RetryDecision(retry=True)
    return None


class _PageList(msgspec.Struct):
    results: list[msgspec.Raw]
    next_cursor: str | None = None
    has_more: bool = False


class _Identified(msgspec.Struct):
    id: str


def _page_list(response: httpx.Response) -> _PageList:
    try:
        return msgspec.json.decode(response.content, type=_PageList)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a list we cannot read ({exc})") from None


def _raw(response: httpx.Response) -> bytes:
    try:
        msgspec.json.decode(response.content, type=_Identified)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a page we cannot read ({exc})") from None
    return response.content


def _json(response: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(response.content)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a body that is not JSON ({exc})") from None


def _id_of(text: bytes) -> str | None:
    try:
        return msgspec.json.decode(text, type=_Identified).id
    except msgspec.DecodeError:
        return None


def _same_id(a: str, b: str) -> bool:
    return a.replace("-", "").lower() == b.replace("-", "").lower()


def _unreachable_of(cursor: Mapping[str, Any]) -> dict[str, list[str]]:
    kept = cursor.get("unreachable") or {}
    return (
        {
            str(stream): [str(i) for i in ids]
            for stream, ids in kept.items()
            if isinstance(ids, list)
        }
        if isinstance(kept, dict)
        else {}
    )


__all__ = ["DEFAULT_BASE_URL", "PROVIDER", "NotionAdapter"]
