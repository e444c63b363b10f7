"""Resolve ``package.module:function`` strings to callables."""

import importlib
import inspect
import re
import sys
import typing

_CALLBACK_FORM = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


class ImportProblem(ValueError):
    """A callback string is malformed or names nothing importable."""


def is_callback_string(value) -> bool:
    """Return whether ``value`` has the form ``package.module:function``."""
    return isinstance(value, str) and bool(_CALLBACK_FORM.match(value))


def import_callable(spec: str) -> typing.Callable:
    """Import the function named by ``spec`` (``package.module:function``).

    Raises:
        ImportProblem: The module is missing, failed while importing (the
            message carries the original error), or has no such callable.
    """
    module_name, _, function_name = spec.partition(":")
    already_imported = module_name in sys.modules
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        # A missing top-level name means the module itself is missing; any
        # other missing name was imported by the module and failed inside it.
        if error.name and module_name.startswith(error.name) and module_name not in sys.modules:
            raise ImportProblem(
                f"module {module_name!r} not found; install its package or put the folder that contains it on PYTHONPATH"
            ) from error
        raise ImportProblem(f"importing {module_name!r} failed: {error}") from error
    except Exception as error:  # noqa: BLE001 - user code may raise anything at import
        raise ImportProblem(
            f"importing {module_name!r} failed: {type(error).__name__}: {error}"
        ) from error

    function = getattr(module, function_name, None)
    if function is None:
        hint = ""
        if already_imported:
            # A reload reads the YAML again but Python keeps the module it
            # imported before, so a function added to the file since is unseen.
            hint = "; the module was imported before this load, so restart the process to pick up new functions"
        raise ImportProblem(f"module {module_name!r} has no attribute {function_name!r}{hint}")
    if not callable(function):
        raise ImportProblem(f"{spec!r} is not callable")
    return function


def check_kwargs(function: typing.Callable, kwargs: typing.Mapping, first: str = "container"):
    """Check that ``function(first=..., **kwargs)`` would bind.

    Raises:
        ImportProblem: The signature rejects the configured kwargs.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return
    arguments = {first: None} if first else {}
    arguments.update(kwargs)
    try:
        signature.bind(**arguments)
    except TypeError as error:
        raise ImportProblem(f"signature {signature} does not accept the configured kwargs: {error}") from None
