"""Talking to Slack: Web API clients, the Slack data cache and result handling."""
