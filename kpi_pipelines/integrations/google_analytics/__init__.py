"""Google Analytics 4: daily sessions, users, engagement and key events, per channel group."""
