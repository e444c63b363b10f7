"""Carry out a callback's result: Slack Web API ``actions`` and ``response_url`` ``responses``.

Result format::

    {
        "actions": [{"action": "chat.postMessage", "kwargs": {"text": "hi"}}],
        "responses": [{"text": "only you can see this"}],
    }

A malformed entry is logged and skipped; the others still run.
"""

import logging
import typing

import requests
import requests.adapters

from omnibot import unparser
from omnibot.slack import transport

logger = logging.getLogger(__name__)

RESPONSE_URL_TIMEOUT = 10.0


class ResultApplier:
    """Apply results on behalf of one runtime.

    Args:
        runtime: The :class:`omnibot.runtime.Runtime` (clients, Slack data).
    """

    def __init__(self, runtime):
        self.runtime = runtime
        # One pooled session for every response_url post of this process,
        # retried by the rules of Web API calls (omnibot.slack.transport).
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(max_retries=transport.slack_retry(transport.ResponseUrlRetry))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def apply(
        self,
        container,
        result: typing.Mapping,
        response_type: typing.Optional[str] = None,
        marks=None,
        callback_key: typing.Optional[str] = None,
    ) -> None:
        """Post every response, then perform every action, of ``result``.

        Args:
            marks: The :class:`omnibot.processing.post_once.PostMarks` of the
                delivery, which mark each ``chat.postMessage`` as action
                ``<callback_key>/<index>`` and skip one made on an earlier
                delivery; None marks nothing.
        """
        trace = container.event_trace
        responses = result.get("responses") or []
        actions = result.get("actions") or []
        if not isinstance(responses, list) or not isinstance(actions, list):
            logger.error("callback result has 'actions' or 'responses' that is not a list; ignored", extra=trace)
            return

        for response in responses:
            self.post_response(container, response, response_type)
        for index, action in enumerate(actions):
            place = f"{callback_key}/{index}" if marks is not None and callback_key else None
            self.perform_action(container, action, marks, place)

    def perform_action(self, container, action, marks=None, place=None) -> typing.Optional[dict]:
        """Call one Slack Web API method; return Slack's response, or None when the action is malformed.

        A ``chat.postMessage`` with ``marks`` and ``place`` carries their mark,
        and is skipped when Slack already has the post from an earlier
        delivery. The earlier post is then returned as Slack's response.
        """
        trace = container.event_trace
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            logger.error("skipped a malformed action (needs an 'action' string): %r", _short(action), extra=trace)
            return None
        kwargs = action.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            logger.error("skipped action %s: its kwargs is not a mapping", action["action"], extra=trace)
            return None

        method = action["action"]
        kwargs = self._unparse(container, kwargs)
        if method == "chat.postMessage":
            kwargs = _default_destination(container, kwargs)
            if marks is not None and place is not None:
                earlier = marks.prepare(container.bot, place, kwargs, trace)
                if earlier is not None:
                    logger.info(
                        "skipped chat.postMessage %s: Slack already has it from an earlier delivery (ts %s)",
                        place,
                        earlier.get("ts"),
                        extra=trace,
                    )
                    return {"ok": True, "channel": kwargs.get("channel"), "ts": earlier.get("ts"), "message": earlier}

        answer = self.runtime.clients.call(container.bot, method, kwargs, trace=trace)
        if answer.get("ok"):
            logger.debug("%s succeeded", method, extra=trace)
        else:
            logger.error("Slack API %s failed: %s", method, answer.get("error"), extra=trace)
        return answer

    def post_response(self, container, response, response_type=None) -> bool:
        """POST one response to the container's ``response_url``; return whether Slack accepted it."""
        trace = container.event_trace
        url = container.response_url
        if not isinstance(response, dict):
            logger.error("skipped a response that is not a mapping: %r", _short(response), extra=trace)
            return False
        if not url:
            logger.error("skipped a response: this payload has no response_url", extra=trace)
            return False

        body = self._unparse(container, response)
        body.setdefault("response_type", response_type or "ephemeral")
        try:
            answer = self.session.post(url, json=body, timeout=RESPONSE_URL_TIMEOUT)
        except requests.RequestException as error:
            logger.error("posting to response_url failed: %s", type(error).__name__, extra=trace)
            return False
        if answer.status_code >= 400:
            logger.error("response_url returned HTTP %s", answer.status_code, extra=trace)
            return False
        return True

    def _unparse(self, container, kwargs):
        if "omnibot_parse" not in kwargs:
            return dict(kwargs)
        resolver = self.runtime.slack_data.resolver(container.bot)
        return unparser.apply_omnibot_parse(kwargs, resolver)


def _default_destination(container, kwargs):
    """Fill ``channel`` and ``thread_ts`` of a ``chat.postMessage`` from the container.

    ``thread_ts`` is filled only for a post to the container's own channel.
    An explicit ``thread_ts: null`` posts to the channel instead of the thread.
    """
    kwargs = dict(kwargs)
    kwargs.setdefault("channel", container.channel_id)
    if "thread_ts" not in kwargs and kwargs["channel"] == container.channel_id:
        kwargs["thread_ts"] = container.reply_thread_ts
    if kwargs.get("thread_ts") is None:
        kwargs.pop("thread_ts", None)
    return kwargs


def _short(value, limit=200):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
