"""Authentication and method dispatch for the fake Slack Web API."""

from omnibot.fake_slack import api_directory, api_messages, api_views
from omnibot.fake_slack.arguments import SlackMethodError


def api_test(state, args):
    return {"args": args}


METHODS = {
    "api.test": api_test,
    **api_directory.METHODS,
    **api_messages.METHODS,
    **api_views.METHODS,
}

# Slack serves api.test without a token.
UNAUTHENTICATED_METHODS = frozenset({"api.test"})


def check_token(state, token) -> str | None:
    """Return Slack's error code for a missing or unknown token, or None when the token is accepted.

    Any token is accepted when the workspace lists no tokens.
    """
    if not token:
        return "not_authed"
    if state.tokens is not None and token not in state.tokens:
        return "invalid_auth"
    return None


def call_method(state, method: str, args: dict, token) -> dict:
    """Run one Web API method and return its JSON response body.

    A method the fake does not implement returns ``{"ok": true}``, or
    ``unknown_method`` when the workspace sets ``strict_methods``.
    """
    if method not in UNAUTHENTICATED_METHODS:
        error = check_token(state, token)
        if error is not None:
            return {"ok": False, "error": error}

    handler = METHODS.get(method)
    if handler is None:
        if state.strict_methods:
            return {"ok": False, "error": "unknown_method"}
        return {"ok": True}

    try:
        payload = handler(state, args)
    except SlackMethodError as exc:
        return {"ok": False, "error": exc.error}
    return {"ok": True, **payload}
