"""A local fake of the Slack Web API for tests, benchmarks and local runs.

Start one in a test with ``FakeSlack().start()`` and point ``SLACK_API_URL``
at its ``api_url``. Every call is recorded, and faults such as 429 rate
limits can be injected. See ``docs/fake_slack.rst``.
"""

from omnibot.fake_slack.cli import main, run
from omnibot.fake_slack.generate import generate_workspace
from omnibot.fake_slack.server import FakeSlack
from omnibot.fake_slack.workspace import WorkspaceError, default_workspace, load_workspace

__all__ = [
    "FakeSlack",
    "WorkspaceError",
    "default_workspace",
    "generate_workspace",
    "load_workspace",
    "main",
    "run",
]
