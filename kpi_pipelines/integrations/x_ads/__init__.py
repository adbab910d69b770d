"""X Ads: daily spend, delivery and web conversions per campaign and for the account."""
