"""Callbacks for interactive component handlers."""

import logging

logger = logging.getLogger(__name__)

ECHO_ELEMENT = "echo_element"
"""Name of the dialog element whose value :func:`echo_dialog_submission_callback` echoes."""

EMPTY_ECHO_TEXT = "(nothing to echo)"
"""Text of :func:`echo_dialog_submission_callback` for a submission with no values."""


def echo_dialog_submission_callback(container) -> dict:
    """Respond to a ``dialog_submission`` with the values the user submitted.

    When the dialog has an element named :data:`ECHO_ELEMENT`, as the example
    dialog of Lyft's omnibot does, the response is that element's value alone.
    Otherwise it lists every submitted element as a ``name: value`` line, in
    the order Slack sent them. Elements left empty are skipped. The response
    requests that omnibot turn ``@user``, ``#channel`` and ``@here`` into Slack
    markup.

    Args:
        container: The interactive component container. Reads
            ``payload["submission"]``.

    Returns:
        One response, with :data:`EMPTY_ECHO_TEXT` when nothing was submitted.
        ``{}`` with a warning when the payload has no ``submission`` mapping,
        which means it is not a dialog submission.
    """
    submission = container.payload.get("submission")
    if not isinstance(submission, dict):
        logger.warning(
            "echo_dialog_submission_callback: the payload has no submission, so it is not a dialog "
            "submission; check that the handler's callback_id is that of a dialog",
            extra=container.event_trace,
        )
        return {}

    if submission.get(ECHO_ELEMENT):
        text = str(submission[ECHO_ELEMENT])
    else:
        lines = [f"{name}: {value}" for name, value in submission.items() if value not in (None, "")]
        text = "\n".join(lines)
    return {
        "responses": [
            {
                "text": text or EMPTY_ECHO_TEXT,
                "omnibot_parse": {"text": ["users", "specials", "channels"]},
            }
        ]
    }
