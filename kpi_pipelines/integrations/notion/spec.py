"""Notion, declared: objectives (OKRs) synced daily, and the notes beside them."""

from kpi_pipelines.integrations.notion.adapter import CURSOR_STREAM, PROVIDER, NotionAdapter
from kpi_pipelines.integrations.notion.metrics import METRICS, NOTE_PAGES, OBJECTIVES
from kpi_pipelines.integrations.notion.notes import NOTES
from kpi_pipelines.integrations.notion.types import NotionConnectionSettings, NotionPage
from kpi_pipelines.integrations.shared.engines.objects import ObjectEngine, Stream
from kpi_pipelines.integrations.shared.oauth import oauth_secrets
from kpi_pipelines.integrations.shared.oauth_flow import OAuthFlow
from kpi_pipelines.integrations.shared.spec import AuthKind, Cadence, ProviderSpec, SecretSpec

STREAMS = (
    # the objectives database's pages (its data source's, in 2025-09-03)
    Stream(OBJECTIVES, "objectives", NotionPage),
    # the pages of the database the objectives' notes relation points at
    Stream(NOTE_PAGES, "note pages", NotionPage),
)

# A public integration's flow (`kpi-pipelines connect WORKSPACE notion`): Notion rotates the
# refresh token on each refresh, so such a grant is kept only in the warehouse.
NOTION_OAUTH = OAuthFlow(
    authorize_url="https://api.notion.com/v1/oauth/authorize",
    token_url="https://api.notion.com/v1/oauth/token",
    authorize_url_variable="KPI_NOTION_AUTHORIZE_URL",
    token_url_variable="KPI_NOTION_TOKEN_URL",
    client_variables={
        "client_id": "KPI_NOTION_CLIENT_ID",
        "client_secret": "KPI_NOTION_CLIENT_SECRET",
    },
    client_auth="client_secret_basic",
    token_body="json",
    rotates_refresh_tokens=True,
    authorize_params={"owner": "user"},
)

SPEC = ProviderSpec(
    key=PROVIDER,
    display_name="Notion",
    description=(
        "Objectives (OKRs) from a Notion database: the daily snapshot of objectives_total,"
        " objectives_completed and objective_progress (the mean), and each objective's"
        " progress with its title, status, owner, due date and key result. Each sync reads"
        " the pages edited since the last one (and which pages left or came back); the"
        " metrics are computed in SQL over the landed pages. The notes asset downstream keeps"
        " the text of each objective's page and its note pages."
    ),
    adapter=NotionAdapter,
    auth=AuthKind.TOKEN_OR_OAUTH2,
    settings=NotionConnectionSettings,
    secrets=(
        SecretSpec(
            "token",
            "an internal integration's secret (ntn_...), with the objectives and notes"
            " databases shared with it; none: the grant `kpi-pipelines connect` stored",
        ),
        *oauth_secrets(NOTION_OAUTH, "a public integration's"),
    ),
    oauth=NOTION_OAUTH,
    cadence=Cadence.daily(hour=2, minute=30),
    pool_limit=4,  # Notion allows an average of 3 requests a second per integration
    group="objectives",
    kinds=frozenset({"notion"}),
    tags={"kpi/domain": "objectives"},
    metrics=METRICS,
    # a level at each day's end: half the objectives gone overnight is lost data
    levels=("objectives_total",),
    engine=ObjectEngine(streams=STREAMS, cursor_stream=CURSOR_STREAM),
    assets=(NOTES,),
    demo="kpi_pipelines.sandbox.notion.demo:prepare",
)
