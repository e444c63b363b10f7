"""Attach each bot's secrets from ``CREDENTIALS_SLACK_*_<APP_ID>`` variables."""

import dataclasses
import typing

from omnibot.config import model

SIGNING_SECRET = "CREDENTIALS_SLACK_SIGNING_SECRET_"
VERIFICATION_TOKEN = "CREDENTIALS_SLACK_VERIFICATION_TOKEN_"
BOT_TOKEN = "CREDENTIALS_SLACK_OAUTH_BOT_TOKEN_"
USER_TOKEN = "CREDENTIALS_SLACK_OAUTH_TOKEN_"


def read_credentials(app_id: str, environ: typing.Mapping[str, str]) -> model.Credentials:
    """Read the four credential variables of ``app_id``; empty values count as unset."""
    return model.Credentials(
        signing_secret=environ.get(SIGNING_SECRET + app_id) or None,
        verification_token=environ.get(VERIFICATION_TOKEN + app_id) or None,
        bot_token=environ.get(BOT_TOKEN + app_id) or None,
        user_token=environ.get(USER_TOKEN + app_id) or None,
    )


def attach_credentials(bots, environ):
    """Return the bots that have usable credentials, and why the others were left out.

    A bot needs a signing secret or a verification token (to verify Slack's
    requests) and a bot OAuth token (to call the Web API).

    Returns:
        ``(bots, skipped)``: bots keyed by ``(team, bot)`` with credentials
        attached, and a reason per left-out bot naming the missing variable.
    """
    usable = {}
    skipped = {}
    for key, bot in bots.items():
        credentials = read_credentials(bot.app_id, environ)
        missing = []
        if not credentials.signing_secret and not credentials.verification_token:
            missing.append(f"{SIGNING_SECRET}{bot.app_id} (or {VERIFICATION_TOKEN}{bot.app_id})")
        if not credentials.bot_token:
            missing.append(f"{BOT_TOKEN}{bot.app_id}")
        if missing:
            noun, verb = ("variable", "is") if len(missing) == 1 else ("variables", "are")
            skipped[key] = f"bot left out: environment {noun} {' and '.join(missing)} {verb} not set"
            continue
        usable[key] = dataclasses.replace(bot, credentials=credentials)
    return usable, skipped
