"""Pieces every provider adapter shares: the adapter base, HTTP client, errors, redaction."""
