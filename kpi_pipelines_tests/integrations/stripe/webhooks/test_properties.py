"""Properties of the receiver over generated bodies (hypothesis), through the real app and
the real PostgreSQL: never a server error; a body is either stored exactly once, equal to
what was sent, or refused with the one refusal and nothing stored."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import httpx
import hypothesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from kpi_pipelines.sandbox.stripe import sign
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines_tests.integrations.stripe.webhooks.support import SECRET_A, SECRET_B

REFUSED = b'{"error":"webhook refused"}'
WRONG = "whsec_not_the_right_one"
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    # The fixtures (warehouse, connections) hold for every example; each clears the inbox.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any code point, lone surrogates included, with the troublemakers made frequent.
characters = st.one_of(
    st.characters(exclude_categories=()), st.sampled_from(["\x00", "\ud800", "\udfff", '"', "\\"])
)
texts = st.text(characters, max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(),  # NaN and infinities too: json.dumps writes them, JSON has no such thing
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
tokens = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
# Storable content only: what a genuine event may carry.
clean_texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
clean_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | clean_texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(clean_texts, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def events(
    draw: st.DrawFn, content: st.SearchStrategy[Any], keys: st.SearchStrategy[str] = texts
) -> dict[str, Any]:
    event = {
        **draw(st.dictionaries(keys, content, max_size=3)),
        "id": "evt_" + draw(tokens)[:200],
        "object": "event",
        "type": draw(tokens),
        "created": draw(st.integers(min_value=0, max_value=2**40)),
        "data": {"object": draw(st.dictionaries(keys, content, max_size=4))},
        "account": "acct_a",
    }
    return event


@st.composite
def mangled_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event with one envelope field replaced by anything, or removed."""
    event = draw(events(values))
    field = draw(st.sampled_from(["id", "object", "type", "created", "data", "account"]))
    if draw(st.booleans()):
        del event[field]
    else:
        event[field] = draw(values)
    return event


@st.composite
def encoded(draw: st.DrawFn, value: st.SearchStrategy[Any]) -> bytes:
    """JSON text as a sender might write it; lone surrogates come out as invalid UTF-8."""
    text = json.dumps(
        draw(value), ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2]))
    )
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(
    encoded(events(clean_values, clean_texts)),
    encoded(events(values)),
    encoded(mangled_events()),
    encoded(values),
)
# (path, the secret that verifies there, one that does not: another tenant's, or a guess)
endpoints = st.sampled_from([("/stripe/ws-a", SECRET_A, SECRET_B), ("/stripe", SECRET_A, WRONG)])


def clear_inbox(warehouse: Warehouse) -> None:
    with warehouse.owner() as db:
        db.execute(sa.text("TRUNCATE webhook_inbox"))


def stored(warehouse: Warehouse) -> list[tuple[str, str, str]]:
    with warehouse.control() as db:
        rows = db.execute(
            sa.text("SELECT workspace_id, event_id, payload::text FROM webhook_inbox")
        )
        return [(ws, event_id, payload) for ws, event_id, payload in rows]


def as_json(data: bytes | str) -> Any:
    # Decimal, so that numbers compare by value whatever their spelling (1E+2, 100).
    return json.loads(data, parse_float=Decimal)


def post(client: TestClient, path: str, body: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": b"application/json"}
    if signature is not None:
        # As bytes: a header may carry any octet, which httpx would not encode from text.
        headers["Stripe-Signature"] = signature.encode("latin-1")
    return client.post(path, content=body, headers=headers)


def check_outcome(
    client: TestClient, warehouse: Warehouse, path: str, body: bytes, signature: str | None
) -> str:
    """The property itself; returns "stored" or "refused"."""
    clear_inbox(warehouse)
    response = post(client, path, body, signature)
    assert response.status_code < 500
    rows = stored(warehouse)
    if response.status_code == 200:
        assert response.json() == {"received": True, "status": "stored"}
        [(workspace_id, event_id, payload)] = rows
        sent = as_json(body)
        assert (workspace_id, event_id) == ("ws-a", sent["id"])
        assert as_json(payload) == sent
        # Delivered again: a duplicate, still one row.
        assert post(client, path, body, signature).json()["status"] == "duplicate"
        assert len(stored(warehouse)) == 1
        hypothesis.event("stored")  # for --hypothesis-show-statistics
        return "stored"
    assert (response.status_code, response.content) == (400, REFUSED)
    assert rows == []
    hypothesis.event("refused")
    return "refused"


@PROPERTY
@given(body=bodies, endpoint=endpoints, right=st.booleans())
def test_json_bodies_are_stored_as_sent_or_refused_alike(
    client, warehouse, body, endpoint, right
) -> None:
    path, secret, wrong = endpoint
    signature = sign(body, secret if right else wrong, int(time.time()))
    outcome = check_outcome(client, warehouse, path, body, signature)
    if not right:
        assert outcome == "refused"


@PROPERTY
@given(event=events(clean_values, clean_texts), endpoint=endpoints, ensure_ascii=st.booleans())
def test_a_genuine_event_with_any_storable_content_is_stored(
    client, warehouse, event, endpoint, ensure_ascii
) -> None:
    path, secret, _ = endpoint
    body = json.dumps(event, ensure_ascii=ensure_ascii).encode()
    assert check_outcome(client, warehouse, path, body, sign(body, secret, int(time.time()))) == (
        "stored"
    )


@PROPERTY
@given(
    body=st.binary(max_size=2048),
    endpoint=endpoints,
    key=st.sampled_from(["right", "wrong", None]),
    header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200),
)
def test_arbitrary_bytes_and_headers_never_break_the_receiver(
    client, warehouse, body, endpoint, key, header
) -> None:
    path, secret, wrong = endpoint
    # A real signature, right or wrong, or a header of anything (or none).
    if key:
        signature: str | None = sign(body, secret if key == "right" else wrong, int(time.time()))
    else:
        signature = header.strip() or None
    outcome = check_outcome(client, warehouse, path, body, signature)
    if key != "right":
        assert outcome == "refused"
