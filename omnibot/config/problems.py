"""A problem found in the config file, with where it is."""

import dataclasses
import typing

ERROR = "error"
WARNING = "warning"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One config error or warning.

    ``str(problem)`` gives ``file:line: key.path: message``, with the file
    path as it was given, the form editors and CI logs link to.
    """

    path: str
    message: str
    severity: str = ERROR
    file: typing.Optional[str] = None
    line: typing.Optional[int] = None

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def __str__(self):
        where = self.file or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        prefix = "" if self.is_error else "warning: "
        path = f" {self.path}:" if self.path else ""
        return f"{where}:{path} {prefix}{self.message}"


def format_path(parts) -> str:
    """Render a key path tuple as ``handlers.message_handlers[2].match_type``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text
