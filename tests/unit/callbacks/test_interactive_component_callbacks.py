"""Tests for omnibot.callbacks.interactive_component_callbacks, with stand-in containers."""

import logging

from omnibot.callbacks import interactive_component_callbacks

PARSE_ALL = {"text": ["users", "specials", "channels"]}


class StandInContainer:
    """The attributes that callbacks read from an interactive component container."""

    def __init__(self, payload):
        self.bot = None
        self.event_trace = {"team": "test-team", "bot": "testbot"}
        self.payload = {
            "type": "dialog_submission",
            "callback_id": "echo_dialog",
            "response_url": "http://127.0.0.1:9/response",
        }
        self.payload.update(payload)


def only_response(result):
    assert set(result) == {"responses"}
    assert len(result["responses"]) == 1
    return result["responses"][0]


def test_echo_dialog_echoes_echo_element():
    container = StandInContainer({"submission": {"echo_element": "hello @here", "other": "ignored"}})

    response = only_response(interactive_component_callbacks.echo_dialog_submission_callback(container))

    assert response == {"text": "hello @here", "omnibot_parse": PARSE_ALL}


def test_echo_dialog_lists_other_elements():
    container = StandInContainer({"submission": {"title": "Outage", "severity": "high", "notes": None}})

    response = only_response(interactive_component_callbacks.echo_dialog_submission_callback(container))

    assert response["text"] == "title: Outage\nseverity: high"
    assert response["omnibot_parse"] == PARSE_ALL


def test_echo_dialog_empty_echo_element_lists_others():
    container = StandInContainer({"submission": {"echo_element": "", "title": "Outage"}})

    response = only_response(interactive_component_callbacks.echo_dialog_submission_callback(container))

    assert response["text"] == "title: Outage"


def test_echo_dialog_empty_submission():
    for submission in ({}, {"echo_element": ""}, {"title": None}):
        container = StandInContainer({"submission": submission})

        response = only_response(interactive_component_callbacks.echo_dialog_submission_callback(container))

        assert response["text"] == "(nothing to echo)"


def test_echo_dialog_without_submission(caplog):
    container = StandInContainer({"type": "block_actions"})

    with caplog.at_level(logging.WARNING, logger=interactive_component_callbacks.__name__):
        result = interactive_component_callbacks.echo_dialog_submission_callback(container)

    assert result == {}
    assert "no submission" in caplog.text
