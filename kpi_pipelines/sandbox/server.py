"""The loopback server lives in the kit; this name stays for the tests and demos that use it."""

from kpi_pipelines.sandbox.kit.server import HOST, LoopbackServer

__all__ = ["HOST", "LoopbackServer"]
