"""Authorization checks that run before every route except ``/healthcheck``.

The ``authorization.checks`` list of the config names ``module:function``
checks with their kwargs. Each check is called as ``function(**kwargs)``
inside the Flask request context, in list order, and must return a truthy
value for the request to go on. With no checks configured every request is
denied. The config loader imports each check, so a check that cannot be
imported stops the process at start-up instead of failing requests.

Built-in checks:

* :func:`allowed_paths` (this module)
* :func:`omnibot.authnz.envoy_checks.envoy_internal_check`
* :func:`omnibot.authnz.envoy_checks.envoy_permissions_check`
"""

import functools
import logging
import re
import typing

from flask import request

logger = logging.getLogger(__name__)

IDENTITY_HEADER = "x-envoy-downstream-service-cluster"
"""The header Envoy fills with the calling service's cluster name."""

# The check whose ``header`` kwarg names where the caller identity is read.
_PERMISSIONS_CHECK = "omnibot.authnz.envoy_checks:envoy_permissions_check"

# Longer identities are cut in logs, so a caller cannot flood them.
_MAX_LOGGED_IDENTITY = 128


@functools.lru_cache(maxsize=1024)
def compile_patterns(patterns: typing.Tuple[str, ...]) -> typing.Tuple[typing.Pattern, ...]:
    """Compile a tuple of regexes, once per process for each distinct tuple.

    Raises:
        ValueError: A regex does not compile; the message quotes it.
    """
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise ValueError(f"regex {pattern!r} does not compile: {error}") from None
    return tuple(compiled)


def path_matches(path: str, patterns: typing.Iterable[str]) -> bool:
    """Return whether any regex of ``patterns`` matches ``path`` from its start (``re.match``).

    Raises:
        ValueError: A regex does not compile.
    """
    return any(pattern.match(path) for pattern in compile_patterns(tuple(patterns)))


def allowed_paths(paths: typing.Union[str, typing.Sequence[str]]) -> bool:
    """Allow a request whose path matches one of the ``paths`` regexes.

    Each regex is matched from the start of the path, as ``re.match`` does,
    but not anchored at its end: ``^/api/v1/slack/event`` also allows
    ``/api/v1/slack/events``, so end a regex with ``$`` to allow one path
    only. A single string is taken as a list of one regex. Example::

        authorization:
          checks:
            - module: "omnibot.authnz:allowed_paths"
              kwargs:
                paths:
                  - "^/api/v1/slack/(event|slash_command|interactive)$"
                  - "^/api/v1/slack/get_team/.*"

    Raises:
        ValueError: ``paths`` is not a string or a list of strings, or a
            regex does not compile. The request is then denied.
    """
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, (list, tuple)) or not all(isinstance(path, str) for path in paths):
        raise ValueError(f"allowed_paths expects a list of regex strings as paths, not {paths!r}")
    return path_matches(request.path, paths)


def denial_reason(checks: typing.Sequence) -> typing.Optional[str]:
    """Run ``checks`` on the current request and return why it is denied, or None to allow it.

    The checks run in order and the first denial stops the run. A check that
    raises denies the request, and the error is logged with its traceback,
    so that a bug in a check never lets a request through.

    Args:
        checks: The :class:`omnibot.config.CallbackSpec` list of
            ``authorization.checks``, with each function imported.
    """
    if not checks:
        return "no authorization checks are configured; list at least one under authorization.checks"

    for check in checks:
        if check.function is None:
            return f"check {check.module} was not imported"
        try:
            allowed = check.function(**check.kwargs)
        except Exception:  # noqa: BLE001 - checks are operator-supplied code; deny on any error
            logger.exception("authorization check %s raised, so the request is denied", check.module)
            return f"check {check.module} raised an error"
        if not allowed:
            return f"check {check.module} denied the request"
    return None


def decision_by_path(checks: typing.Sequence, path: str) -> typing.Optional[bool]:
    """Return the checks' decision for ``path`` when every check reads the path alone, else None.

    Only :func:`allowed_paths` is known to read nothing but the path. With
    any other check, with no checks, or with kwargs that
    :func:`allowed_paths` would reject, the decision needs the full request
    and this returns None. The result is the one :func:`denial_reason`
    would reach, so a caller may keep it for as long as ``checks`` stay in force.
    """
    if not checks:
        return None
    for check in checks:
        if check.function is not allowed_paths or set(check.kwargs) != {"paths"}:
            return None
        paths = check.kwargs["paths"]
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, (list, tuple)) or not all(isinstance(item, str) for item in paths):
            return None
        try:
            if not path_matches(path, paths):
                return False
        except ValueError:
            return None
    return True


def caller_identity(checks: typing.Sequence) -> str:
    """Return the caller identity of the current request for logs, or ``unknown``.

    The identity is read from the ``header`` kwarg of a configured
    ``envoy_permissions_check``, else from :data:`IDENTITY_HEADER`. Only
    that header is read: it names a service, never a credential.
    """
    header = IDENTITY_HEADER
    for check in checks or ():
        if check.module == _PERMISSIONS_CHECK and isinstance(check.kwargs.get("header"), str):
            header = check.kwargs["header"]
            break

    identity = request.headers.get(header)
    if not identity:
        return "unknown"
    if len(identity) > _MAX_LOGGED_IDENTITY:
        identity = identity[:_MAX_LOGGED_IDENTITY] + "..."
    return repr(identity)
