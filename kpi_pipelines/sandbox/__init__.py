"""Provider simulators for the demo and the tests (production never imports them).

`kit/` is what every simulator is built from (one clock, one fault injector, error styles,
paging, the loopback server); each simulated provider has its own folder (`stripe/`, and
`google/` with the shared OAuth server and the `ga4/` and `sheets/` folders). A simulator's
truth lives in its own module and is computed from its own state.
"""
