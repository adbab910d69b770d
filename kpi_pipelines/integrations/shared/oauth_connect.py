"""`kpi-pipelines connect`: a workspace grants access on its provider's consent page.

The authorization-code flow of the provider's `OAuthFlow` (RFC 6749 section 4.1), with
PKCE (RFC 7636, S256) and a loopback redirect (RFC 8252 section 7.3), the protocol's parts
built by authlib:

1. a callback server on 127.0.0.1, on a free port, answering `/callback` only;
2. the consent page's address (client id, scopes, a fresh `state`, the S256 challenge of a
   fresh verifier, the flow's own parameters), opened in the browser or printed for a
   machine without one (whose user opens it elsewhere and forwards the port, or pastes the
   address the browser ends on);
3. the first callback that carries this flow's `state`: any other is refused (a forged or
   stale callback gets 400, and the flow keeps waiting for its own); the provider's
   `error=access_denied` (consent refused) ends it, and so does no answer in time;
4. the code exchanged at the token endpoint with the verifier, and the grant sealed and
   stored in the warehouse (grants.py), replacing any refresh-token variable the
   connection named.

The callback server never logs a request (its address holds the code) and tells the
browser to keep it out of caches and referrers; the code and verifier are registered with
the redactor.
"""

from __future__ import annotations

import contextlib
import http.server
import queue
import secrets
import sys
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.client import OAuth2Client

from kpi_pipelines.integrations.shared.bounds import ResponseLimits
from kpi_pipelines.integrations.shared.grants import grant_cipher, record_grant
from kpi_pipelines.integrations.shared.oauth import OAuth2Credentials, exchange_code
from kpi_pipelines.integrations.shared.oauth_flow import OAuthFlow, TokenResponse
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.integrations.shared.secrets import read_secret
from kpi_pipelines.integrations.shared.spec import ProviderSpec
from kpi_pipelines.warehouse.control import Connection, add_connection, get_connection
from kpi_pipelines.warehouse.database import Warehouse

CALLBACK_PATH = "/callback"
LOOPBACK = "127.0.0.1"
DEFAULT_TIMEOUT_SECONDS = 300.0
# What one callback parameter may hold (codes are a few hundred characters).
MAX_PARAMETER_CHARS = 4096

_PAGE = (
    "<!doctype html><meta charset=utf-8><title>kpi-pipelines</title>"
    "<p>{message}</p><p>You can close this tab.</p>"
)


class ConsentRefused(PermissionError):
    """The provider's consent page answered with an error (the user refused, or the
    request was wrong); nothing was stored."""


class ConsentTimeout(TimeoutError):
    """No callback carrying this flow's state arrived in time; nothing was stored."""


@dataclass(frozen=True)
class Callback:
    """What the consent page sent back: a code, or an error."""

    code: str | None = None
    error: str | None = None
    description: str | None = None


class LoopbackReceiver:
    """The redirect's end: an HTTP server on 127.0.0.1 (a free port) taking the one
    callback that carries `state`; `offer()` takes an address pasted by hand instead."""

    def __init__(self, state: str, *, port: int = 0) -> None:
        self._state = state
        self._answers: queue.Queue[Callback] = queue.Queue()
        self._done = threading.Event()
        self.refused = 0  # callbacks without this flow's state
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            timeout = 10  # a client that sends nothing holds its thread this long at most

            def do_GET(self) -> None:
                target = urlsplit(self.path)
                if target.path != CALLBACK_PATH:
                    self._answer(404, "Not found.")
                    return
                status, message = receiver._take(target.query)
                self._answer(status, message)

            def _answer(self, status: int, message: str) -> None:
                body = _PAGE.format(message=message).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Referrer-Policy", "no-referrer")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request line holds the code: never logged

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-callback", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def redirect_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{CALLBACK_PATH}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def offer(self, address: str) -> bool:
        """Take `address` (the one the browser ended on, pasted) as the callback; whether
        it was this flow's."""
        status, _ = self._take(urlsplit(address.strip()).query)
        return status == 200

    def wait(self, timeout: float) -> Callback:
        """The callback carrying this flow's state; ConsentTimeout after `timeout` s."""
        try:
            return self._answers.get(timeout=timeout)
        except queue.Empty:
            refused = (
                f" ({self.refused} callback(s) with another state were refused)"
                if self.refused
                else ""
            )
            raise ConsentTimeout(
                f"no answer from the consent page within {timeout:.0f} s{refused}: nothing was"
                " stored"
            ) from None

    def _take(self, query: str) -> tuple[int, str]:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=20)
        values = {name: found[0] for name, found in params.items() if len(found) == 1}
        if any(len(value) > MAX_PARAMETER_CHARS for value in values.values()):
            return 400, "This answer is too long to be a consent page's."
        state = values.get("state", "")
        if not secrets.compare_digest(state.encode(), self._state.encode()):
            self.refused += 1
            return 400, (
                "This answer is not for the authorization kpi-pipelines is waiting for (its"
                " state does not match): it was refused."
            )
        if self._done.is_set():
            return 409, "kpi-pipelines already has the answer to this authorization."
        code, error = values.get("code"), values.get("error")
        if not code and not error:
            return 400, "This answer holds neither a code nor an error."
        register_secret(code)
        self._done.set()
        self._answers.put(
            Callback(code=code, error=error, description=values.get("error_description"))
        )
        if error:
            return 200, "The provider did not grant access; see your terminal."
        return 200, "kpi-pipelines received the grant; return to your terminal."


def consent_url(
    flow: OAuthFlow, client_id: str, *, redirect_uri: str, state: str, code_verifier: str
) -> str:
    """The consent page's address: the client, the redirect, the scopes, `state`, the
    S256 challenge of `code_verifier` and the flow's own parameters (authlib builds it)."""
    client = OAuth2Client(
        None,
        client_id=client_id,
        scope=flow.scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    url, _ = client.create_authorization_url(
        flow.authorize_endpoint(),
        state=state,
        code_verifier=code_verifier,
        **dict(flow.authorize_params),
    )
    return url


def authorize(
    provider: str,
    flow: OAuthFlow,
    client: OAuth2Credentials,
    *,
    say: Callable[[str], None],
    show_url: Callable[[str], None],
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    limits: ResponseLimits | None = None,
    port: int = 0,
) -> TokenResponse:
    """Run the flow up to the token endpoint's answer: `say` tells the user what happens,
    `show_url` shows the consent page's address (always: the browser may not open)."""
    code_verifier = generate_token(64)  # 43 to 128 unreserved characters (RFC 7636 4.1)
    state = generate_token(32)
    register_secret(code_verifier)
    with LoopbackReceiver(state, port=port) as receiver:
        url = consent_url(
            flow,
            client.client_id,
            redirect_uri=receiver.redirect_uri,
            state=state,
            code_verifier=code_verifier,
        )
        say("Open this address in a browser to grant access:")
        show_url(url)
        opened = open_browser and _open_in_browser(url)
        say(
            ("Opened in your browser. " if opened else "")
            + f"The consent page sends the browser back to {receiver.redirect_uri}, on this"
            " machine: from a browser elsewhere, forward the port first (ssh -L"
            f" {receiver.port}:{LOOPBACK}:{receiver.port} <this machine>), or paste here the"
            f" address the browser ends on. Waiting up to {timeout:.0f} s..."
        )
        _read_pasted_addresses(receiver)
        callback = receiver.wait(timeout)
        redirect_uri = receiver.redirect_uri
    if callback.error:
        said = (
            f"{callback.error}: {callback.description}" if callback.description else callback.error
        )
        if callback.error == "access_denied":
            raise ConsentRefused(
                f"access was not granted on {provider}'s consent page ({said}): nothing was stored"
            )
        raise ConsentRefused(f"{provider}'s consent page answered {said}: nothing was stored")
    assert callback.code is not None
    return exchange_code(
        provider,
        flow,
        client,
        code=callback.code,
        redirect_uri=redirect_uri,
        code_verifier=code_verifier,
        limits=limits,
    )


def _open_in_browser(url: str) -> bool:
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def _read_pasted_addresses(receiver: LoopbackReceiver) -> None:
    """On a terminal, a line pasted by the user is offered as the callback."""
    if not sys.stdin or not sys.stdin.isatty():
        return

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in sys.stdin:
                if line.strip() and receiver.offer(line):
                    return

    threading.Thread(target=read, name="oauth-paste", daemon=True).start()


@dataclass(frozen=True)
class Connected:
    """What `connect` did."""

    connection: Connection
    scope: str | None
    expires_in: float | None
    has_refresh_token: bool
    dropped_variable: str | None  # the refresh-token variable the stored grant replaced


def connect_workspace(
    warehouse: Warehouse,
    spec: ProviderSpec,
    workspace_id: str,
    *,
    actor: str,
    say: Callable[[str], None],
    show_url: Callable[[str], None],
    connection_name: str | None = None,
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> Connected:
    """`kpi-pipelines connect`: grant access for the workspace's connection to `spec`'s
    provider (it must exist: `connection add`) and store the grant, sealed."""
    flow = spec.oauth
    if flow is None:
        raise ValueError(
            f"{spec.key} does not grant access through a consent page ({spec.auth.value}):"
            f" name its secrets with `kpi-pipelines connection add {workspace_id} {spec.key}"
            " --secret ...`"
        )
    with warehouse.control() as db:
        connection = get_connection(db, workspace_id, spec.key, connection_name)
    grant_cipher()  # a missing or bad KPI_GRANT_KEYS fails before the browser opens
    client = OAuth2Credentials(
        client_id=read_secret(
            connection,
            "client_id",
            operator_variable=flow.client_variables["client_id"],
            public=True,
        ),
        client_secret=read_secret(
            connection, "client_secret", operator_variable=flow.client_variables["client_secret"]
        ),
        refresh_token=None,
        token_url=flow.token_endpoint(),
    )
    token = authorize(
        spec.key,
        flow,
        client,
        say=say,
        show_url=show_url,
        open_browser=open_browser,
        timeout=timeout,
        limits=spec.limits.response(),
    )
    _check_granted(spec.key, flow, token)
    record_grant(warehouse, connection, token, actor=actor)
    dropped = connection.secret_env.get("refresh_token")
    if dropped:
        secret_env = {k: v for k, v in connection.secret_env.items() if k != "refresh_token"}
        connection = add_connection(
            warehouse, connection.model_copy(update={"secret_env": secret_env})
        )
    return Connected(
        connection=connection,
        scope=token.scope,
        expires_in=token.expires_in,
        has_refresh_token=token.refresh_token is not None,
        dropped_variable=dropped,
    )


def _check_granted(provider: str, flow: OAuthFlow, token: TokenResponse) -> None:
    """Refuse a grant that cannot last or that lacks a scope the flow asked for (a consent
    page may let the user uncheck one)."""
    if token.refresh_token is None and token.expires_in is not None:
        raise ConsentRefused(
            f"{provider} granted an access token for {token.expires_in:.0f} s and no refresh"
            " token, so the grant would end with it: nothing was stored"
        )
    if token.scope is not None and flow.scopes:
        granted = set(token.scope.replace(",", " ").split())
        missing = [scope for scope in flow.scopes if scope not in granted]
        if missing:
            raise ConsentRefused(
                f"the consent on {provider} did not grant {', '.join(missing)}: nothing was"
                " stored; grant access again and keep it checked"
            )
