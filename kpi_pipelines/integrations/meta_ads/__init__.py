"""Meta Ads: daily ad metrics from the Marketing API's insights."""
