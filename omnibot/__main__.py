"""Allow ``python -m omnibot``."""

import sys

from omnibot.cli import main

sys.exit(main())
