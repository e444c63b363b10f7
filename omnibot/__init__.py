"""omnibot: a Slack proxy that verifies, queues and routes Slack requests to callbacks."""

__version__ = "2.0.0.dev0"
