"""Fake Web API methods for dialogs, modals and App Home views.

Each method takes ``(state, args)`` and returns the response fields other
than ``"ok": true``, or raises :class:`SlackMethodError`. The fake checks
that a trigger is present but not whether it is valid or expired.
"""

import secrets
import time

from omnibot.fake_slack.arguments import SlackMethodError, as_json, optional_str, require_str


def dialog_open(state, args):
    require_str(args, "trigger_id", "missing_trigger")
    dialog = as_json(args, "dialog")
    if not isinstance(dialog, dict):
        raise SlackMethodError("invalid_arguments")
    return {}


def views_open(state, args):
    _require_trigger(args)
    view = _build_view(state, _require_new_view(state, args), view_id=state.new_view_id())
    state.store_view(view)
    return {"view": view}


def views_push(state, args):
    _require_trigger(args)
    view = _build_view(state, _require_new_view(state, args), view_id=state.new_view_id())
    state.store_view(view)
    return {"view": view}


def views_update(state, args):
    """Replace a view found by ``view_id`` or ``external_id``.

    A ``hash`` that differs from the stored view's gives ``hash_conflict``.
    An unknown view is accepted while ``accept_any_channel`` is set, so that
    tests can update the view of a simulated interaction.
    """
    new_view = _require_view(args)
    view_id = optional_str(args, "view_id")
    external_id = optional_str(args, "external_id")
    if view_id is None and external_id is None:
        raise SlackMethodError("not_found")

    current = state.view(view_id=view_id, external_id=external_id)
    if current is None and not state.accept_any_channel:
        raise SlackMethodError("not_found")
    _check_hash(args, current)

    if current is None:
        view = _build_view(state, new_view, view_id=view_id or state.new_view_id())
    else:
        view = _build_view(state, new_view, view_id=current["id"], previous=current)
    state.store_view(view)
    return {"view": view}


def views_publish(state, args):
    user_id = require_str(args, "user_id", "invalid_arguments")
    if state.user(user_id) is None:
        raise SlackMethodError("user_not_found")
    new_view = _require_view(args)

    current = state.home_view(user_id)
    _check_hash(args, current)

    view_id = current["id"] if current is not None else state.new_view_id()
    view = _build_view(state, {"type": "home", **new_view}, view_id=view_id, previous=current)
    state.store_home_view(user_id, view)
    return {"view": view}


def _require_trigger(args: dict) -> None:
    if optional_str(args, "trigger_id") is None and optional_str(args, "interactivity_pointer") is None:
        raise SlackMethodError("invalid_arguments")


def _require_view(args: dict) -> dict:
    view = as_json(args, "view")
    if not isinstance(view, dict):
        raise SlackMethodError("invalid_arguments")
    return view


def _require_new_view(state, args: dict) -> dict:
    view = _require_view(args)
    external_id = view.get("external_id")
    if external_id and state.view(external_id=external_id) is not None:
        raise SlackMethodError("duplicate_external_id")
    return view


def _check_hash(args: dict, current) -> None:
    expected = optional_str(args, "hash")
    if expected is not None and current is not None and current["hash"] != expected:
        raise SlackMethodError("hash_conflict")


def _build_view(state, view: dict, view_id: str, previous=None) -> dict:
    built = {
        "type": "modal",
        "callback_id": "",
        "external_id": "",
        "private_metadata": "",
        "clear_on_close": False,
        "notify_on_close": False,
        **view,
    }
    built.update(
        {
            "id": view_id,
            "team_id": state.team["id"],
            "app_id": state.bot["app_id"],
            "bot_id": state.bot["bot_id"],
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "root_view_id": previous["root_view_id"] if previous else view_id,
            "previous_view_id": None,
        }
    )
    return built


METHODS = {
    "dialog.open": dialog_open,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "views.publish": views_publish,
}
