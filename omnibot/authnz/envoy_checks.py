"""Checks for deployments behind Envoy, driven by the headers Envoy sets.

Both checks read two sections of ``authorization`` in the config in force:

``permissions``
    Named policies. Each lists HTTP ``methods`` (compared exactly, so write
    them in capitals), ``paths`` regexes matched from the start of the
    request path (``re.match``), and ``internal_only`` (default true).
``bindings``
    Caller identity regex -> list of permission names. A regex is matched
    from the start of the identity, so ``echobot`` also matches
    ``echobot-staging``; end it with ``$`` to match one name only.

A policy covers a request when the request's method is one of its
``methods`` and one of its ``paths`` matches the request path. The regexes
are compiled once per loaded config, on the first request that needs them.
"""

import dataclasses
import logging
import typing

from flask import current_app, request

from omnibot.authnz import IDENTITY_HEADER, compile_patterns

logger = logging.getLogger(__name__)

INTERNAL_HEADER = "x-envoy-internal"
"""The header Envoy sets to ``true`` on requests from inside the mesh."""

@dataclasses.dataclass(frozen=True)
class Permission:
    """One named policy of ``authorization.permissions``, with its regexes compiled."""

    name: str
    methods: typing.FrozenSet[str]
    paths: typing.Tuple[typing.Pattern, ...]
    internal_only: bool = True

    def covers(self, method: str, path: str) -> bool:
        """Return whether this policy lists ``method`` and one of its regexes matches ``path``."""
        return method in self.methods and any(pattern.match(path) for pattern in self.paths)


@dataclasses.dataclass(frozen=True)
class Binding:
    """One entry of ``authorization.bindings``: a caller identity regex and its permission names."""

    subject: typing.Pattern
    permissions: typing.Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class AccessRules:
    """The compiled ``permissions`` and ``bindings`` of one config."""

    permissions: typing.Mapping[str, Permission]
    bindings: typing.Tuple[Binding, ...]

    def allows_external(self, method: str, path: str) -> bool:
        """Return whether a policy with ``internal_only: false`` covers the request."""
        return any(
            not permission.internal_only and permission.covers(method, path)
            for permission in self.permissions.values()
        )

    def grants(self, identity: str, method: str, path: str) -> bool:
        """Return whether a binding matching ``identity`` names a policy that covers the request.

        A binding naming a permission that is not defined grants nothing.
        """
        for binding in self.bindings:
            if not binding.subject.match(identity):
                continue
            for name in binding.permissions:
                permission = self.permissions.get(name)
                if permission is not None and permission.covers(method, path):
                    return True
        return False


def compile_rules(authorization: typing.Mapping) -> AccessRules:
    """Build :class:`AccessRules` from the ``authorization`` section of a config.

    Entries of the wrong type count as empty, because the config loader has
    already reported them.

    Raises:
        ValueError: A regex does not compile. The loader rejects such a
            config, so this happens only for configs built without it.
    """
    permissions = {}
    for name, policy in _mapping(authorization.get("permissions")).items():
        policy = _mapping(policy)
        permissions[name] = Permission(
            name=name,
            methods=frozenset(_strings(policy.get("methods"))),
            paths=compile_patterns(tuple(_strings(policy.get("paths")))),
            internal_only=policy.get("internal_only", True) is not False,
        )

    bindings = []
    for subject, names in _mapping(authorization.get("bindings")).items():
        (pattern,) = compile_patterns((str(subject),))
        bindings.append(Binding(subject=pattern, permissions=tuple(_strings(names))))
    return AccessRules(permissions=permissions, bindings=tuple(bindings))


def current_rules() -> AccessRules:
    """Return the compiled rules of the config in force for the current request."""
    return current_app.extensions["omnibot"].access_rules


def envoy_internal_check(header: str = INTERNAL_HEADER) -> bool:
    """Allow requests from inside the mesh, and external requests that a policy opens up.

    A request passes when its ``header`` is exactly ``true``, or when a
    permission with ``internal_only: false`` covers its method and path
    (for example Slack's own calls to the event routes). Example::

        authorization:
          checks:
            - module: "omnibot.authnz.envoy_checks:envoy_internal_check"
          permissions:
            slack_api:
              methods: ["POST"]
              paths:
                - "^/api/v1/slack/(event|slash_command|interactive)$"
              internal_only: false

    Args:
        header: The request header that marks internal requests.
    """
    if request.headers.get(header) == "true":
        return True
    if current_rules().allows_external(request.method, request.path):
        return True

    # The header's value is not logged, because only whether it was "true" matters.
    logger.info(
        "envoy_internal_check: %s %s is external (%s is not 'true') and no permission "
        "with internal_only: false covers it",
        request.method,
        request.path,
        header,
    )
    return False


def envoy_permissions_check(header: str = IDENTITY_HEADER) -> bool:
    """Allow a caller whose identity is bound to a policy covering this request.

    The identity is the value of ``header``, which Envoy sets to the calling
    service's cluster name. A request without it is denied. Example: the
    service ``envoy`` may send Slack's requests, and any service whose name
    starts with ``echobot`` may post as the bot ``echobot`` of ``testteam``::

        authorization:
          permissions:
            slack_api:
              methods: ["POST"]
              paths:
                - "/api/v1/slack/event"
                - "/api/v1/slack/slash_command"
                - "/api/v1/slack/interactive"
              internal_only: false
            echobot_slack_action:
              methods: ["POST"]
              paths:
                - "/api/v2/slack/action/testteam/echobot"
          bindings:
            "envoy":
              - "slack_api"
            "echobot.*":
              - "echobot_slack_action"

    Args:
        header: The request header that carries the caller identity.
    """
    identity = request.headers.get(header)
    if not identity:
        logger.info(
            "envoy_permissions_check: %s %s has no caller identity in header %s",
            request.method,
            request.path,
            header,
        )
        return False

    if current_rules().grants(identity, request.method, request.path):
        return True

    logger.info(
        "envoy_permissions_check: no binding grants %s %s to caller %r",
        request.method,
        request.path,
        identity[:128],
    )
    return False


def _mapping(value) -> typing.Mapping:
    return value if isinstance(value, dict) else {}


def _strings(value) -> typing.List[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


__all__ = ["AccessRules", "compile_rules", "envoy_internal_check", "envoy_permissions_check"]
