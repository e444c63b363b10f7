"""Callbacks for tests that record each call in a JSON-lines file.

The worker runs in another process, so calls are appended to the file named
by ``OMNIBOT_TEST_RECORD_FILE``; tests read it back with :func:`read_calls`.
"""

import fcntl
import json
import os
import time


def _append(name, container, **extra):
    path = os.environ["OMNIBOT_TEST_RECORD_FILE"]
    entry = {"callback": name, "payload": container.payload, "pid": os.getpid(), **extra}
    line = json.dumps(entry) + "\n"
    with open(path, "a", encoding="utf-8") as record:
        fcntl.flock(record, fcntl.LOCK_EX)
        record.write(line)
        fcntl.flock(record, fcntl.LOCK_UN)


def read_calls(path, callback=None):
    """Return the recorded calls, optionally only those of one callback name."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as record:
        calls = [json.loads(line) for line in record if line.strip()]
    return [call for call in calls if callback is None or call["callback"] == callback]


def record(container, **kwargs):
    _append("record", container, kwargs=kwargs)
    return {}


def record_regex(container, **kwargs):
    _append("record_regex", container)
    return {}


def record_and_reply(container, text="ok"):
    _append("record_and_reply", container)
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": text}}]}


def reply_in_channel(container, text="ok"):
    """Reply with an explicit thread_ts of null, which posts to the channel."""
    _append("reply_in_channel", container)
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": text, "thread_ts": None}}]}


def explode(container):
    _append("explode", container)
    raise RuntimeError("callback failure for tests")


def not_a_dict(container):
    _append("not_a_dict", container)
    return ["not", "a", "dict"]


def malformed_actions(container):
    _append("malformed_actions", container)
    return {
        "actions": [
            "not a dict",
            {"kwargs": {"text": "no action name"}},
            {"action": "chat.postMessage", "kwargs": "not a mapping"},
            {"action": "chat.postMessage", "kwargs": {"text": "the valid one"}},
        ]
    }


def slow_reply(container, seconds=3.0, text="slow"):
    """Sleep, then reply; used to kill a worker while it holds a message."""
    _append("slow_reply_started", container)
    time.sleep(float(seconds))
    _append("slow_reply", container)
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": text}}]}


def fail_times(container, times=2, text="finally"):
    """Raise on the first ``times`` calls for one message, then reply."""
    key = container.payload.get("ts") or container.payload.get("trigger_id")
    calls = [
        call
        for call in read_calls(os.environ["OMNIBOT_TEST_RECORD_FILE"], "fail_times")
        if (call["payload"].get("ts") or call["payload"].get("trigger_id")) == key
    ]
    _append("fail_times", container)
    if len(calls) < int(times):
        raise RuntimeError(f"planned failure {len(calls) + 1} of {times}")
    return {"actions": [{"action": "chat.postMessage", "kwargs": {"text": text}}]}


# -- slash commands and interactive components ---------------------------------


def validate_incident(container):
    """Synchronous view_submission check: reject an empty title, accept anything else."""
    _append("validate_incident", container)
    values = container.payload["view"]["state"]["values"]
    title = values.get("title_block", {}).get("title_input", {}).get("value")
    if not title:
        return {"response_action": "errors", "errors": {"title_block": "Title is required"}}
    return None


def slow_validate(container, seconds=5.0):
    """Synchronous check that sleeps past the request deadline, then rejects the submission."""
    _append("slow_validate_started", container)
    time.sleep(float(seconds))
    _append("slow_validate", container)
    return {"response_action": "errors", "errors": {"title_block": "too late"}}


def record_ack(container):
    _append("record_ack", container)
    return {}


def record_severity(container):
    _append("record_severity", container)
    return {}


def record_view(container):
    _append("record_view", container)
    return {}


def respond(container, text="done"):
    """Reply through response_url and with a chat.postMessage."""
    _append("respond", container)
    return {
        "responses": [{"text": text}],
        "actions": [{"action": "chat.postMessage", "kwargs": {"text": text}}],
    }


def suggest_options(container, prefix="opt"):
    """Synchronous response body with two options built from the typed ``value`` (or a slash command's ``text``)."""
    _append("suggest_options", container)
    typed = container.payload.get("value") or container.payload.get("text") or ""
    return {
        "options": [
            {"text": {"type": "plain_text", "text": f"{prefix}-{typed}-{number}"}, "value": f"{typed}{number}"}
            for number in (1, 2)
        ]
    }


def post_messages(container, posts=()):
    """Return one ``chat.postMessage`` action per mapping in ``posts``, used as its kwargs."""
    return {"actions": [{"action": "chat.postMessage", "kwargs": dict(post)} for post in posts]}


def reply_then_react(container, text="ok", name="eyes"):
    """Reply in the thread, then add a reaction to the message; used to kill a worker between two actions."""
    _append("reply_then_react", container)
    reaction = {"channel": container.channel_id, "timestamp": container.payload["ts"], "name": name}
    return {
        "actions": [
            {"action": "chat.postMessage", "kwargs": {"text": text}},
            {"action": "reactions.add", "kwargs": reaction},
        ]
    }
