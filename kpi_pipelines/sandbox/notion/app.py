"""The simulated Notion API on loopback: `NotionSandbox` (state and controls) and its app.

    sandbox = NotionSandbox(seed=3)                        # fixed clock at DEFAULT_START
    workspace = sandbox.add_workspace("Acme")
    board = ObjectivesBoard.create(workspace, seed=3)      # okrs.py: objectives and notes
    token = sandbox.add_integration(workspace, share=[board.objectives_db, board.notes_db])
    with LoopbackServer(create_notion_app(sandbox), dated_by=sandbox.clock) as server: ...

Routes (`Notion-Version` 2022-06-28 or 2025-09-03 required on each; a missing one gets
Notion's 400 `missing_version`): `GET /v1/users/me`, `GET /v1/databases/{id}` (2025-09-03:
its data sources; 2022-06-28: its schema), `POST /v1/data_sources/{id}/query` and `GET
/v1/data_sources/{id}` (2025-09-03), `POST /v1/databases/{id}/query` (2022-06-28),
`GET /v1/pages/{id}`, `GET /v1/blocks/{id}/children`; anything else is Notion's 400
`invalid_request_url`. Auth is `Authorization: Bearer <token>`: an internal integration's
token (`add_integration`), or one the OAuth flow issued (`oauth`). An integration reads only
what was shared with it (databases, and pages with their sub-pages); anything else is 404
`object_not_found`, as Notion answers.

Rate limit: 3 requests a second on average per integration (`RateLimit`, a rolling window
over real seconds: bursts are allowed), answered 429 `rate_limited` with `Retry-After`;
`stats.early_retries` counts requests sent again before that wait was over. Scripted faults
(the kit's injector, `faults`) come first, in Notion's own words (`NotionErrors`).
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kpi_pipelines.sandbox.kit import CallBudget, FaultInjector, SimClock, TokenBook, json_response
from kpi_pipelines.sandbox.notion import query as q
from kpi_pipelines.sandbox.notion import render
from kpi_pipelines.sandbox.notion.errors import (
    MISSING_VERSION,
    NotionErrors,
    invalid_url,
    not_found,
    notion_error,
)
from kpi_pipelines.sandbox.notion.model import (
    Database,
    DataSource,
    NotionWorkspace,
    Page,
    User,
    compact,
    notion_id,
)
from kpi_pipelines.sandbox.notion.oauth import NotionOAuth

DEFAULT_START = datetime(2025, 6, 16, 6, 0, tzinfo=UTC)
READ_CONTENT = "read_content"


@dataclass(frozen=True)
class RateLimit:
    """Notion's limit: an average of `requests` per `per`, bursts within the window."""

    requests: int = 90
    per: timedelta = timedelta(seconds=30)


@dataclass
class Integration:
    """An integration (internal, or a public one's grant in one workspace): its bot user,
    what was shared with it, its capabilities."""

    bot: User
    workspace: NotionWorkspace
    shared: set[str] = field(default_factory=set)  # compact database and page ids
    capabilities: frozenset[str] = frozenset({READ_CONTENT})

    def can_read_database(self, database: Database) -> bool:
        return compact(database.id) in self.shared

    def can_read_page(self, page: Page) -> bool:
        seen: set[str] = set()
        current: Page | None = page
        while current is not None and current.id not in seen:
            seen.add(current.id)
            if compact(current.id) in self.shared:
                return True
            source = self.workspace.source_of(current)
            if source is not None:
                return compact(source.database_id) in self.shared
            current = self.workspace.pages.get(current.parent_page_id or "")
        return False


@dataclass
class Stats:
    """What the API served, for tests (never the tokens)."""

    requests: Counter[str] = field(default_factory=Counter)  # "GET /v1/pages" -> count
    throttled: int = 0
    early_retries: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    recent: deque[tuple[str, str, int]] = field(default_factory=lambda: deque(maxlen=5000))


class NotionSandbox:
    """State and controls of the simulated Notion API (deterministic for a given seed)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        start: datetime = DEFAULT_START,
        realtime: bool = False,
        clock: SimClock | None = None,
        rate_limit: RateLimit | None = RateLimit(),
    ) -> None:
        self.seed = seed
        self.clock = clock or SimClock(start, realtime=realtime)
        self.faults = FaultInjector()
        self.style = NotionErrors()
        self.tokens = TokenBook(self.clock, prefix="ntn_")
        self.workspaces: dict[str, NotionWorkspace] = {}
        self.integrations: dict[str, Integration] = {}  # bot id -> integration
        self.stats = Stats()
        self.budget = (
            CallBudget(
                self.clock,
                limit=rate_limit.requests,
                window=rate_limit.per,
                rolling=True,
                elapsed=True,
            )
            if rate_limit
            else None
        )
        # The public integrations' OAuth (oauth.py): consent page and token endpoint.
        self.oauth = NotionOAuth(self)
        # What runs before each request (an objectives board catching up with the clock).
        self.tickers: list[Callable[[], object]] = []
        self._retry_not_before: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- controls ----------------------------------------------------------------------------
    def add_workspace(self, name: str) -> NotionWorkspace:
        workspace = NotionWorkspace(notion_id(f"workspace:{self.seed}:{name}"), name, self.clock)
        self.workspaces[workspace.id] = workspace
        return workspace

    def add_integration(
        self,
        workspace: NotionWorkspace,
        *,
        share: Iterable[Database | Page] = (),
        name: str = "KPI pipelines",
        token: str | None = None,
        capabilities: Iterable[str] = (READ_CONTENT,),
    ) -> str:
        """An internal integration of `workspace` with access to `share`; its secret."""
        bot = User(workspace.new_id("bot"), name, kind="bot")
        integration = Integration(bot, workspace, capabilities=frozenset(capabilities))
        self.integrations[bot.id] = integration
        self.share(bot.id, *share)
        return self.tokens.issue(bot.id, lifetime=None, value=token).value

    def integration_of(self, token: str) -> Integration:
        issued = self.tokens.get(token)
        if issued is None:
            raise KeyError("unknown token")
        return self.integrations[issued.subject]

    def share(self, bot_id: str, *objects: Database | Page) -> None:
        self.integrations[bot_id].shared.update(compact(o.id) for o in objects)

    def unshare(self, bot_id: str, *objects: Database | Page) -> None:
        self.integrations[bot_id].shared.difference_update(compact(o.id) for o in objects)

    def revoke(self, token: str) -> None:
        self.tokens.revoke(token)

    def tick(self) -> None:
        for ticker in list(self.tickers):
            ticker()

    # -- one request -------------------------------------------------------------------------
    async def serve(
        self,
        request: Request,
        handler: Callable[[Call], Awaitable[Response] | Response],
    ) -> Response:
        async def answer() -> Response:
            response = await self._checked(request, handler)
            self.stats.recent.append((request.method, request.url.path, response.status_code))
            return response

        # The Date header, the API's own clock, is the simulated one: serve the app with
        # LoopbackServer(app, dated_by=sandbox.clock).
        return await self.faults.serve("api", self.style, answer)

    async def _checked(
        self, request: Request, handler: Callable[[Call], Awaitable[Response] | Response]
    ) -> Response:
        route = _route_name(request)
        self.stats.requests[route] += 1
        version = request.headers.get("notion-version")
        if not version:
            return notion_error(400, MISSING_VERSION, code="missing_version")
        if version not in render.VERSIONS:
            return notion_error(
                400,
                "Notion-Version header failed validation: Notion-Version header should be one"
                f" of {list(render.VERSIONS)}, instead was `{version}`.",
            )
        self.stats.versions[version] += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        checked = self.tokens.check(token.strip() if scheme.lower() == "bearer" else None)
        if isinstance(checked, str):
            return notion_error(401, "API token is invalid.")
        integration = self.integrations[checked.subject]
        if (throttled := self._throttle(integration)) is not None:
            return throttled
        self.tick()
        with integration.workspace.lock:
            outcome = handler(Call(self, integration, version, request))
            if isinstance(outcome, Response):
                return outcome
        return await outcome

    def _throttle(self, integration: Integration) -> Response | None:
        if self.budget is None:
            return None
        key = integration.bot.id
        now = self.clock.monotonic()
        with self._lock:
            if now < self._retry_not_before.get(key, 0.0):
                self.stats.early_retries += 1
            usage = self.budget.charge(key)
            if usage.allowed:
                return None
            wait = usage.seconds_to_regain
            self._retry_not_before[key] = now + wait
            self.stats.throttled += 1
        return notion_error(
            429,
            "You have been rate limited. Please try again in a few minutes.",
            headers={"Retry-After": str(wait)},
        )


def _route_name(request: Request) -> str:
    parts = request.url.path.strip("/").split("/")
    # "/v1/pages/<id>" -> "GET /v1/pages"; "/v1/blocks/<id>/children" -> "GET /v1/blocks/children"
    named = parts[:2] + parts[3:]
    return f"{request.method} /{'/'.join(named)}"


@dataclass
class Call:
    """One authenticated request: who asks, in which API version."""

    sandbox: NotionSandbox
    integration: Integration
    version: str
    request: Request

    @property
    def workspace(self) -> NotionWorkspace:
        return self.integration.workspace

    def readable_database(self, database_id: str) -> Database | Response:
        database = self.workspace.database(database_id)
        if database is None or not self.integration.can_read_database(database):
            return not_found("database", database_id)
        if READ_CONTENT not in self.integration.capabilities:
            return notion_error(403, "Insufficient permissions for this endpoint.")
        return database

    def readable_source(self, data_source_id: str) -> DataSource | Response:
        source = self.workspace.data_source(data_source_id)
        if source is None or not self.integration.can_read_database(
            self.workspace.databases[source.database_id]
        ):
            return not_found("data_source", data_source_id)
        if READ_CONTENT not in self.integration.capabilities:
            return notion_error(403, "Insufficient permissions for this endpoint.")
        return source

    def readable_page(self, page_id: str, kind: str = "page") -> Page | Response:
        page = self.workspace.page(page_id)
        if page is None or not self.integration.can_read_page(page):
            return not_found(kind, page_id)
        if READ_CONTENT not in self.integration.capabilities:
            return notion_error(403, "Insufficient permissions for this endpoint.")
        return page

    def property_ids(self) -> set[str] | None:
        """The `filter_properties` the query string names (None: every property)."""
        params = self.request.query_params
        wanted = params.getlist("filter_properties") + params.getlist("filter_properties[]")
        return set(wanted) if wanted else None


# -- handlers ---------------------------------------------------------------------------------


def _me(call: Call) -> Response:
    bot = call.integration.bot
    info: dict[str, Any] = {
        "owner": {"type": "workspace", "workspace": True},
        "workspace_name": call.workspace.name,
        "workspace_limits": {"max_file_upload_size_in_bytes": 5_368_709_120},
    }
    if call.version == render.V2025:
        info["workspace_id"] = call.workspace.id
    return json_response(
        200,
        {
            "object": "user",
            "id": bot.id,
            "name": bot.name,
            "avatar_url": None,
            "type": "bot",
            "bot": info,
        },
    )


def _database(call: Call) -> Response:
    found = call.readable_database(call.request.path_params["id"])
    if isinstance(found, Response):
        return found
    if call.version == render.V2022 and len(found.data_sources) > 1:
        return _multiple_sources(found)
    return json_response(200, render.database_object(call.workspace, found, call.version))


def _multiple_sources(database: Database) -> Response:
    return notion_error(
        400,
        f"Databases with multiple data sources are not supported in this API version."
        f" Database {database.id} has {len(database.data_sources)} data sources; use"
        " Notion-Version 2025-09-03.",
    )


def _data_source(call: Call) -> Response:
    if call.version != render.V2025:
        return invalid_url()
    found = call.readable_source(call.request.path_params["id"])
    if isinstance(found, Response):
        return found
    return json_response(200, render.data_source_object(call.workspace, found))


async def _query_source(call: Call) -> Response:
    if call.version != render.V2025:
        return invalid_url()
    found = call.readable_source(call.request.path_params["id"])
    if isinstance(found, Response):
        return found
    return await _query(call, found)


async def _query_database(call: Call) -> Response:
    if call.version != render.V2022:
        return invalid_url()
    found = call.readable_database(call.request.path_params["id"])
    if isinstance(found, Response):
        return found
    if len(found.data_sources) > 1:
        return _multiple_sources(found)
    return await _query(call, call.workspace.data_sources[found.data_sources[0]])


async def _query(call: Call, source: DataSource) -> Response:
    raw = await call.request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return notion_error(400, "Error parsing JSON body.", code="invalid_json")
    only = call.property_ids()
    with call.workspace.lock:
        try:
            batch = q.run_query(call.workspace, source, body)
        except q.QueryRefused as refused:
            return notion_error(400, str(refused))
        results = [
            render.page_object(call.workspace, p, call.version, only=only) for p in batch.pages
        ]
    listing: dict[str, Any] = {
        "object": "list",
        "results": results,
        "next_cursor": batch.next_cursor,
        "has_more": batch.next_cursor is not None,
        "type": "page_or_data_source" if call.version == render.V2025 else "page_or_database",
        ("page_or_data_source" if call.version == render.V2025 else "page_or_database"): {},
    }
    return json_response(200, listing)


def _page(call: Call) -> Response:
    found = call.readable_page(call.request.path_params["id"])
    if isinstance(found, Response):
        return found
    return json_response(
        200, render.page_object(call.workspace, found, call.version, only=call.property_ids())
    )


def _children(call: Call) -> Response:
    block_id = call.request.path_params["id"]
    params = call.request.query_params
    try:
        size = q.page_size(int(params["page_size"]) if "page_size" in params else None, "page_size")
    except ValueError as bad:
        return notion_error(400, f"query failed validation: {bad}")
    workspace = call.workspace
    page = workspace.page(block_id)
    parent = None
    if page is None:
        located = workspace.block(block_id)
        if located is None:
            return not_found("block", block_id)
        page, parent = located
    readable = call.readable_page(page.id, "block")
    if isinstance(readable, Response):
        return not_found("block", block_id)
    children = parent.children if parent is not None else page.blocks
    try:
        batch = q.slice_from(children, params.get("start_cursor"), size, lambda b: b.id)
    except q.QueryRefused as refused:
        return notion_error(400, str(refused))
    return json_response(
        200,
        {
            "object": "list",
            "results": [
                render.block_object(workspace, page, b, parent, call.version) for b in batch.pages
            ],
            "next_cursor": batch.next_cursor,
            "has_more": batch.next_cursor is not None,
            "type": "block",
            "block": {},
        },
    )


def _endpoint(sandbox: NotionSandbox, handler: Callable[[Call], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        return await sandbox.serve(request, handler)

    return endpoint


def notion_routes(sandbox: NotionSandbox) -> list[Route]:
    def route(path: str, handler: Callable[[Call], Any], method: str = "GET") -> Route:
        return Route(path, _endpoint(sandbox, handler), methods=[method])

    async def unknown(request: Request) -> Response:
        return await sandbox.serve(request, lambda call: invalid_url())

    oauth = sandbox.oauth
    return [
        Route("/v1/oauth/authorize", oauth.authorize, methods=["GET"]),
        Route("/v1/oauth/token", oauth.token, methods=["POST"]),
        route("/v1/users/me", _me),
        route("/v1/databases/{id}", _database),
        route("/v1/databases/{id}/query", _query_database, "POST"),
        route("/v1/data_sources/{id}", _data_source),
        route("/v1/data_sources/{id}/query", _query_source, "POST"),
        route("/v1/pages/{id}", _page),
        route("/v1/blocks/{id}/children", _children),
        Route("/v1/{rest:path}", unknown, methods=["GET", "POST", "PATCH", "DELETE"]),
    ]


def create_notion_app(sandbox: NotionSandbox) -> Starlette:
    app = Starlette(routes=notion_routes(sandbox))
    app.state.sandbox = sandbox
    return app
