"""The YAML config: loading with line numbers, validation, and the routing model."""

from omnibot.config.loader import load_config, load_config_text
from omnibot.config.model import Bot, CallbackSpec, Config, Handler, Team
from omnibot.config.problems import Problem

__all__ = [
    "Bot",
    "CallbackSpec",
    "Config",
    "Handler",
    "Problem",
    "Team",
    "load_config",
    "load_config_text",
]
