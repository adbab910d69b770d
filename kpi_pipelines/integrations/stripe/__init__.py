"""Stripe: revenue, MRR and churn from the official SDK, incremental through events."""
