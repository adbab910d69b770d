"""LinkedIn Ads: daily ad metrics from the LinkedIn Marketing API (adAnalytics)."""
