"""Stripe's `/v1` read API over a StripeSandbox: parameters, lists, retrieval, expansion, errors.

Independent of the web framework: `Api.handle(method, path, query_items, version)` returns
(status, JSON-able body). Lists are newest first with Stripe's cursor semantics (`limit` 1..100,
`starting_after` / `ending_before` by object id, `has_more`, `created[gte|gt|lte|lt]` or
`created=`), unknown parameters are refused like Stripe refuses them, and `expand[]` paths are
checked against what each resource can expand (at most four levels).

Layout: parameters and expansion (params.py), list arguments (lists.py), the list endpoints
(listing.py), routing, retrieval and the lists' engine (core.py).
"""

from kpi_pipelines.sandbox.stripe.api.core import Api
from kpi_pipelines.sandbox.stripe.api.lists import INVOICE_STATUSES, PAGE_SIZE, SUB_STATUSES
from kpi_pipelines.sandbox.stripe.api.params import EXPANDABLE, Params, parse_expand
from kpi_pipelines.sandbox.stripe.errors import ApiError, missing

__all__ = [
    "EXPANDABLE",
    "INVOICE_STATUSES",
    "PAGE_SIZE",
    "SUB_STATUSES",
    "Api",
    "ApiError",
    "Params",
    "missing",
    "parse_expand",
]
