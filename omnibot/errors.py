"""Exceptions raised by omnibot. Every one derives from :class:`OmnibotError`."""


class OmnibotError(Exception):
    """Base class of every error omnibot raises on purpose."""


class ConfigError(OmnibotError):
    """The config file has errors.

    Attributes:
        problems: Each error, in file order.
        warnings: The warnings found in the same pass; a typo reported as an
            unknown key often explains a "missing required key" error.
    """

    def __init__(self, problems, warnings=()):
        self.problems = list(problems)
        self.warnings = list(warnings)
        lines = "\n".join(str(problem) for problem in self.problems)
        super().__init__(f"invalid config ({len(self.problems)} errors):\n{lines}")


class BackendUnavailable(OmnibotError):
    """A queue or cache backend cannot be reached right now; the caller may retry later."""


class CallbackError(OmnibotError):
    """A callback raised, timed out or returned something omnibot cannot apply."""
