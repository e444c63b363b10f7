"""Typed wrappers around Slack payloads, handed to callbacks as ``container``."""

from omnibot.containers.base import Container, Unsupported
from omnibot.containers.interactive_component import InteractiveComponent
from omnibot.containers.message import Message
from omnibot.containers.reaction import Reaction
from omnibot.containers.slash_command import SlashCommand

__all__ = ["Container", "InteractiveComponent", "Message", "Reaction", "SlashCommand", "Unsupported"]
