"""Run the fake Slack server: ``python -m omnibot.fake_slack --port 8888 --workspace FILE``."""

import sys

from omnibot.fake_slack.cli import main

if __name__ == "__main__":
    sys.exit(main())
