"""The lease and retry settings that every queue backend applies in the same way."""

import dataclasses

# 2**60 seconds is far beyond any useful backoff, and capping the exponent
# keeps the float multiplication from overflowing for very high attempt counts.
_MAX_BACKOFF_EXPONENT = 60


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Lease length, attempt limit and exponential backoff of one queue.

    Attributes:
        visibility_timeout: Seconds a leased message stays invisible to other
            workers before it is delivered again.
        max_attempts: Deliveries after which a failed message is dead-lettered.
        backoff_base: Delay in seconds before the second delivery of a failed message.
        backoff_max: Upper bound in seconds of the delay between deliveries.

    Raises:
        ValueError: When a value is out of range; the message names the setting.
    """

    visibility_timeout: float = 60.0
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_max: float = 300.0

    def __post_init__(self):
        if not self.visibility_timeout > 0:
            raise ValueError(f"visibility_timeout must be more than 0 seconds, got {self.visibility_timeout!r}")

        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer of at least 1, got {self.max_attempts!r}")

        if not self.backoff_base >= 0:
            raise ValueError(f"backoff_base must be 0 seconds or more, got {self.backoff_base!r}")

        if not self.backoff_max >= 0:
            raise ValueError(f"backoff_max must be 0 seconds or more, got {self.backoff_max!r}")

    def is_exhausted(self, attempts: int) -> bool:
        """Return True when a message delivered ``attempts`` times must not be retried."""
        return attempts >= self.max_attempts

    def backoff(self, attempts: int) -> float:
        """Return the delay in seconds before delivering a message again after its ``attempts``-th failure.

        The delay is ``backoff_base * 2 ** (attempts - 1)``, at most ``backoff_max``.
        """
        exponent = min(max(attempts - 1, 0), _MAX_BACKOFF_EXPONENT)
        return min(self.backoff_max, self.backoff_base * 2**exponent)
