"""The records of a spool file: one :class:`PendingPut` per line, shared by the SQLite and the Redis spool."""

import json
import logging
import typing

# The one key of a dead letter's body that contains a spool line that could not be read.
UNREADABLE_LINE_KEY = "unreadable_spool_line"


class PendingPut(typing.NamedTuple):
    """A message to insert, encoded, with its claim keys: one line of a spool file, or one put of a batch."""

    message_id: str
    received_at: float
    ttl: float
    claims: typing.Tuple[str, ...]
    encoded: str

    def to_line(self) -> bytes:
        """Return the line: tab-separated fields, the JSON body last."""
        claims = json.dumps(self.claims) if self.claims else ""
        return f"{self.message_id}\t{self.received_at!r}\t{self.ttl!r}\t{claims}\t{self.encoded}".encode("utf-8")

    @classmethod
    def from_line(cls, line: bytes) -> "PendingPut":
        """Parse a line written by :meth:`to_line`.

        Raises:
            ValueError: The line is not one (UnicodeDecodeError and JSONDecodeError are ValueErrors).
        """
        fields = line.decode("utf-8").split("\t", 4)
        if len(fields) != 5:
            raise ValueError(f"expected 5 tab-separated fields, found {len(fields)}")
        message_id, received_at, ttl, claims, encoded = fields
        # The body is parsed here, so that a damaged one goes to the dead letters and not to a worker's lease.
        if not isinstance(json.loads(encoded), dict):
            raise ValueError("the message body is not a JSON object")
        return cls(message_id, float(received_at), float(ttl), tuple(json.loads(claims)) if claims else (), encoded)


def log_duplicate(logger: logging.Logger, put: PendingPut) -> None:
    """Log to ``logger`` a dropped duplicate with the event id and Slack's retry headers when the body has them."""
    try:
        body = json.loads(put.encoded)
        payload = body.get("payload") or {}
        event_id = payload.get("event_id") if isinstance(payload, dict) else None
    except (ValueError, AttributeError):
        body, event_id = {}, None
    if "retry_num" in body:
        delivery = f"retry {body['retry_num']}, reason {body.get('retry_reason')}"
    else:
        delivery = "not marked as a Slack retry"
    logger.info("ignored a duplicate delivery of event %s (%s), message %s", event_id, delivery, put.message_id)
