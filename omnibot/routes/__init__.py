"""HTTP routes: Slack's endpoints, the internal API and the health check."""
