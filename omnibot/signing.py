"""Sign requests the way Slack does, for ``omnibot simulate`` and tests.

Slack signs ``v0:<timestamp>:<raw body>`` with HMAC-SHA256 keyed by the
app's signing secret and sends ``v0=<hex digest>`` in ``X-Slack-Signature``
(https://api.slack.com/authentication/verifying-requests-from-slack).
"""

import hashlib
import hmac
import time
import typing


def signature_headers(secret: str, body: bytes, timestamp: typing.Optional[int] = None) -> typing.Dict[str, str]:
    """Return the ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature`` headers for ``body``."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(timestamp).encode() + b":" + body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}
