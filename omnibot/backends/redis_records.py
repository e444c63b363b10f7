"""The JSON records of the Redis queue: stream entries and dead letters.

A stream entry's ``message`` field is ``{"id", "body", "prior_attempts"}``;
a dead letter is ``{"id", "body", "attempts", "error"}``, with its failure
time kept as the score of the by-time sorted set.
"""

import json

from omnibot.backends.base import DeadLetter


def encode_message(message_id: str, body: dict, *, prior_attempts: int) -> str:
    return json.dumps({"id": message_id, "body": body, "prior_attempts": prior_attempts})


def encode_dead_letter(message_id: str, body: dict, attempts: int, error: str) -> str:
    return json.dumps({"id": message_id, "body": body, "attempts": attempts, "error": error})


def decode_dead_letter(record: str, failed_at: float) -> DeadLetter:
    fields = json.loads(record)
    return DeadLetter(
        id=fields["id"],
        body=fields["body"],
        attempts=fields["attempts"],
        error=fields["error"],
        failed_at=float(failed_at),
    )


def encode_spooled_message(message_id: str, encoded_body: str) -> str:
    """Return what ``encode_message(message_id, json.loads(encoded_body), prior_attempts=0)`` returns, without parsing the body.

    ``encoded_body`` must be the output of ``json.dumps(body)`` with its
    default separators, as a spool line contains it.
    """
    return f'{{"id": {json.dumps(message_id)}, "body": {encoded_body}, "prior_attempts": 0}}'
