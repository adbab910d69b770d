"""Loopback simulators of the providers' APIs, for tests, demos and local development."""
