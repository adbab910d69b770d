"""`python -m kpi_pipelines.sandbox.stripe serve --host 127.0.0.1 --port 0 --seed 1 --customers 500`

Builds the sandbox, binds the port, prints the base URL on stdout once it accepts connections,
then serves until SIGINT/SIGTERM. `--objects N` picks the customer count that gives about N
listable objects (customers, subscriptions, invoices, charges, refunds, balance transactions).
`--cache-customers N` keeps up to N customers' simulations in memory (default 4096): paging a
list in created order visits every customer about once a simulated month, so a cache that
holds them all (about 0.8 GB at 1M objects) serves those lists several times faster.
"""

from __future__ import annotations

import gc
import json
import signal
import sys
import time
from datetime import UTC, datetime

from kpi_pipelines.sandbox.kit.server import listening_socket, serve_command
from kpi_pipelines.sandbox.stripe.generator import Generator, StripeSandboxConfig
from kpi_pipelines.sandbox.stripe.sandbox import DEFAULT_API_KEY, StripeSandbox


def customers_for_objects(objects: int, seed: int = 0, sample: int = 400) -> int:
    """How many customers give about `objects` listable objects (from a simulated sample)."""
    gen = Generator(StripeSandboxConfig(seed=seed, customers=sample))
    now = gen.horizon
    total = 0
    for ci in range(sample):
        cs = gen.simulate(ci)
        total += (
            1
            + sum(cs.visible(lst, now) for lst in (cs.invoices, cs.charges, cs.refunds, cs.bts))
            + sum(1 for s in cs.subs if s.created <= now)
        )
    return max(1, round(objects / (total / sample)))


def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser, serve = serve_command(
        "python -m kpi_pipelines.sandbox.stripe", "serve the Stripe sandbox over HTTP", port=0
    )
    size = serve.add_mutually_exclusive_group()
    size.add_argument("--customers", type=int, default=None)
    size.add_argument("--objects", type=int, default=None, help="about this many objects")
    serve.add_argument("--api-key", default=DEFAULT_API_KEY)
    serve.add_argument("--webhook-secret", default=None)
    serve.add_argument("--start", default=None, help="ISO time of the simulated start")
    serve.add_argument("--now", default=None, help="ISO time of the simulated clock")
    serve.add_argument(
        "--cache-customers",
        type=int,
        default=4096,
        help="customer simulations kept in memory (more: faster paging, more memory)",
    )
    args = parser.parse_args(argv)

    customers = args.customers
    if customers is None:
        customers = customers_for_objects(args.objects, args.seed) if args.objects else 100
    kwargs = {"seed": args.seed, "customers": customers}
    if args.start:
        kwargs["start"] = _parse_time(args.start)
    if args.now:
        kwargs["now"] = _parse_time(args.now)
    t0 = time.perf_counter()
    sandbox = StripeSandbox(
        StripeSandboxConfig(**kwargs),
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        cache_size=args.cache_customers,
    )
    built = time.perf_counter() - t0

    import uvicorn

    from kpi_pipelines.sandbox.stripe.app import create_app

    sock = listening_socket(args.host, args.port)
    port = sock.getsockname()[1]
    # Customer simulations are acyclic, so reference counting frees them; full collections
    # would only re-traverse the cached ones. Freeze what exists, keep young collections,
    # and run a full collection every 20,000 requests instead of on allocation counts.
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1_000_000)
    config = uvicorn.Config(
        create_app(sandbox, collect_every=20_000),
        log_level="warning",
        access_log=False,
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # A process started in the background may inherit an ignored SIGTERM: restore the default
    # so that uvicorn's own handler (installed in run) is reached.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"http://{args.host}:{port}", flush=True)
    info = {
        "customers": sandbox.customer_count,
        "counts": sandbox.counts(),
        "index_bytes": sandbox.index_bytes(),
        "build_seconds": round(built, 2),
        "api_key": args.api_key,
        "webhook_secret": sandbox.webhook_secret,
    }
    print(json.dumps(info), file=sys.stderr, flush=True)
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
