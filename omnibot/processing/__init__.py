"""The worker side: from a queued message to callbacks and their results."""
