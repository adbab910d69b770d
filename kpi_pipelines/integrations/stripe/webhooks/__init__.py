"""The Stripe webhook receiver (an ASGI app) and the sensor that turns its inbox into runs."""
