"""``POST /api/v1/slack/event``: verify, acknowledge and queue Slack events."""

import logging
import time
import typing

from omnibot.errors import BackendUnavailable
from omnibot.inbound import Answer, BadRequest, decode_json_object, dedup, failure

logger = logging.getLogger(__name__)

EVENT_KIND = "event"


def accept_event(runtime, raw: bytes, headers) -> Answer:
    """Verify, de-duplicate and queue one Events API request, and return the response.

    The checks run in omnibot's order, and each failure has omnibot's body.
    A verified event is de-duplicated and queued before the 200 is sent.
    """
    try:
        payload = decode_json_object(raw)
    except BadRequest as error:
        return failure(400, str(error), **{"X-Slack-No-Retry": "1"})

    verifier = runtime.verifier
    token = payload.get("token")
    has_signature = verifier.has_signature(headers)

    if payload.get("type") == "url_verification":
        return _url_verification(runtime, payload, raw, headers, token)

    if not has_signature and not token:
        return failure(403, "No verification token in event.")
    app_id = payload.get("api_app_id")
    if not app_id:
        return failure(403, "No api_app_id in event.")
    team_id = payload.get("team_id")
    if not team_id:
        return failure(403, "No team_id in event.")

    config = runtime.config
    team = config.team_by_id(team_id) if isinstance(team_id, str) else None
    if team is None:
        logger.debug("rejected an event of unsupported team %r", team_id)
        return failure(403, "Unsupported team")
    bot = config.bot_by_app_id(app_id) if isinstance(app_id, str) else None
    if bot is None or bot.team != team:
        logger.info("ignored an event for app %r, which is not configured in team %s", app_id, team.name)
        return Answer(200, {"status": "ignored", "warning": "Unsupported bot"})

    if not verifier.verify(bot, raw, headers, token if isinstance(token, str) else None):
        reason = verifier.failure_reason(bot, headers, token if isinstance(token, str) else None)
        logger.info("verification of an event for %s/%s failed: %s", team.name, bot.name, reason, extra=bot.trace)
        return failure(403, "Request verification failed: bad signature, stale timestamp or wrong token.")

    if not isinstance(payload.get("event"), dict):
        return failure(403, "Request does not have an event. Processing will not proceed!")

    return _queue(runtime, bot, payload, headers)


def _url_verification(runtime, payload, raw, headers, token) -> Answer:
    challenge = payload.get("challenge")
    bot = runtime.verifier.find_bot(raw, headers, token if isinstance(token, str) else None)
    if bot is None or not isinstance(challenge, str):
        logger.debug("rejected a url_verification request that no configured app verifies")
        return failure(403, "url_verification failed.")
    logger.info("returned Slack's url_verification challenge for %s/%s", bot.team.name, bot.name)
    return Answer(200, {"challenge": challenge})


def _queue(runtime, bot, payload, headers) -> Answer:
    event = payload["event"]
    channel = event.get("channel")
    trace = dict(
        bot.trace,
        event_type=event.get("type"),
        event_ts=event.get("event_ts"),
        channel_id=channel if isinstance(channel, str) else None,
    )
    retry = _retry_info(headers)

    envelope = {
        "kind": EVENT_KIND,
        "app_id": bot.app_id,
        "team_id": bot.team.team_id,
        "received_at": time.time(),
        # The legacy verification token stays out of the queue and the dead letters.
        "payload": {name: value for name, value in payload.items() if name != "token"},
        **retry,
    }
    # Claiming the de-duplication keys and queueing is one atomic step, so a
    # failure leaves nothing claimed and Slack's retry is accepted.
    try:
        # A Slack retry is checked against the claims at once, even through a
        # spool, so that the response to a retry of a queued event reports a duplicate.
        message_id = runtime.queue.put_unless_claimed(
            envelope, dedup.event_keys(bot.app_id, payload), runtime.settings.dedup_ttl, exact=bool(retry)
        )
    except BackendUnavailable as error:
        logger.error("queue backend unavailable (%s); responding 503 so Slack retries", error, extra=trace)
        return failure(503, "Queue backend unavailable; retry later.")
    except Exception:
        logger.exception("failed to queue event %s", payload.get("event_id"), extra=trace)
        return failure(500, "Failed to queue the event.")

    if message_id is None:
        if retry:
            delivery = f"retry {retry['retry_num']}, reason {retry.get('retry_reason')}"
        else:
            delivery = "not marked as a Slack retry"
        logger.info("ignored a duplicate delivery of event %s (%s)", payload.get("event_id"), delivery, extra=trace)
        return Answer(200, {"status": "success", "duplicate": True})

    logger.debug("queued event %s as message %s", payload.get("event_id"), message_id, extra=trace)
    runtime.stats.message_queued(EVENT_KIND, bot.name)
    runtime.stats.event_acknowledged(event.get("event_ts"), bool(retry))
    return Answer(200, {"status": "success"})


def _retry_info(headers) -> typing.Dict[str, typing.Any]:
    number = headers.get("X-Slack-Retry-Num")
    if not number:
        return {}
    return {"retry_num": number, "retry_reason": headers.get("X-Slack-Retry-Reason")}
