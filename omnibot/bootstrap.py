"""Build a runtime and the web app from settings and the config file."""

import logging

from omnibot.app import create_app
from omnibot.config import load_config
from omnibot.errors import ConfigError
from omnibot.runtime import Runtime
from omnibot.settings import Settings

logger = logging.getLogger(__name__)


def build_runtime(settings: Settings, *, fail_fast: bool = False) -> Runtime:
    """Load the config named by ``settings.config_file`` and build a runtime.

    ``fail_fast`` gives Redis backends short timeouts, for web processes.

    Raises:
        ConfigError: No config file is set, or it has errors.
    """
    if not settings.config_file:
        raise ConfigError(["no config file: pass --config PATH or set CONFIG_FILE"])
    config = load_config(settings.config_file, settings.environ)
    return Runtime(settings, config, fail_fast=fail_fast)


def build_app_from_env():
    """Build the Flask app from environment variables, for WSGI servers."""
    settings = Settings.from_env()
    return create_app(build_runtime(settings, fail_fast=True))
