"""Asset factories."""
