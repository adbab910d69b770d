"""Rest.li 2.0 query values are read as strictly as LinkedIn reads them: structure raw,
the same characters inside strings percent-encoded."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.linkedin.restli import RestliSyntaxError, parse, query_params


def test_records_lists_and_strings() -> None:
    assert parse("d", "(start:(year:2026,month:5,day:1),end:(year:2026,month:5,day:31))") == {
        "start": {"year": "2026", "month": "5", "day": "1"},
        "end": {"year": "2026", "month": "5", "day": "31"},
    }
    assert parse(
        "a", "List(urn%3Ali%3AsponsoredAccount%3A5100,urn%3Ali%3AsponsoredAccount%3A7)"
    ) == [
        "urn:li:sponsoredAccount:5100",
        "urn:li:sponsoredAccount:7",
    ]
    assert parse("s", "(status:(values:List(ACTIVE,PAUSED)))") == {
        "status": {"values": ["ACTIVE", "PAUSED"]}
    }
    assert parse("e", "List()") == [] and parse("e", "()") == {} and parse("e", "''") == ""
    assert parse("t", "a%28b%29c%2Cd%27") == "a(b)c,d'"


@pytest.mark.parametrize(
    "text",
    [
        "List(urn:li:sponsoredAccount:5100)",  # colons raw inside a list item
        "%28start%3A%28year%3A2026%29%29x(",  # structure encoded, then garbage
        "(start:(year:2026)",  # unclosed
        "(a:1,a:2)",  # a key twice
        "(a:1 b:2)",
        "100%",  # a % that starts no escape
        "%ff",  # not UTF-8
    ],
)
def test_what_linkedin_cannot_read_is_a_syntax_error(text: str) -> None:
    with pytest.raises(RestliSyntaxError):
        parse("p", text)


def test_query_params_keep_values_encoded_and_refuse_a_name_twice() -> None:
    assert query_params("q=analytics&accounts=List(urn%3Ali%3Ax%3A1)") == {
        "q": "analytics",
        "accounts": "List(urn%3Ali%3Ax%3A1)",
    }
    with pytest.raises(RestliSyntaxError, match="more than once"):
        query_params("q=a&q=b")
