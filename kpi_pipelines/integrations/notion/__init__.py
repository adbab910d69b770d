"""Notion: objectives (OKRs) and the notes beside them."""
