"""Toy providers of the report engine's tests (named by KPI_PROVIDER_PACKAGES, as an
operator names a plugin package): each subfolder is a provider, its spec a declaration."""
