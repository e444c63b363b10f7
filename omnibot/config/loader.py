"""Load and validate the YAML config, reporting every problem with its line.

Policy: a problem that makes a handler unusable or ambiguous is an error,
and the load fails. A key omnibot would have ignored is a warning, and the
load goes on.
"""

import logging
import os
import typing

from omnibot.config import credentials as credentials_module
from omnibot.config import model
from omnibot.config.problems import ERROR, WARNING, Problem, format_path
from omnibot.config.schema import Validator
from omnibot.config.yaml_source import YamlSyntaxError, parse_with_lines
from omnibot.errors import ConfigError
from omnibot.processing import matching

logger = logging.getLogger(__name__)


def load_config(
    path: str,
    environ: typing.Optional[typing.Mapping[str, str]] = None,
    *,
    import_callbacks: bool = True,
) -> model.Config:
    """Read, validate and build the config at ``path``.

    Args:
        path: The YAML file.
        environ: Where ``CREDENTIALS_SLACK_*`` variables are read (default ``os.environ``).
        import_callbacks: Import every callback and check; tools that only
            list routes pass False.

    Raises:
        ConfigError: The file is missing, unreadable or has errors. Every
            error is listed, not only the first.
    """
    try:
        with open(path, encoding="utf-8") as source:
            text = source.read()
    except OSError as error:
        raise ConfigError([Problem("", f"cannot read config file: {error.strerror}", file=path)]) from None
    except UnicodeDecodeError as error:
        raise ConfigError([Problem("", f"config file is not UTF-8: {error}", file=path)]) from None
    return load_config_text(text, path, environ, import_callbacks=import_callbacks)


def load_config_text(
    text: str,
    path: typing.Optional[str] = None,
    environ: typing.Optional[typing.Mapping[str, str]] = None,
    *,
    import_callbacks: bool = True,
) -> model.Config:
    """Validate and build a config from YAML text; see :func:`load_config`."""
    config, problems = check_config_text(text, path, environ, import_callbacks=import_callbacks)
    errors = [problem for problem in problems if problem.is_error]
    if errors:
        raise ConfigError(errors, [problem for problem in problems if not problem.is_error])

    for problem in config.warnings:
        logger.warning("config: %s", problem)
    return config


def check_config_text(
    text: str,
    path: typing.Optional[str] = None,
    environ: typing.Optional[typing.Mapping[str, str]] = None,
    *,
    import_callbacks: bool = True,
) -> typing.Tuple[typing.Optional[model.Config], typing.List[Problem]]:
    """Validate YAML text without raising.

    Returns:
        ``(config, problems)``: config is None when there are errors;
        problems contains every error and warning in file order.
    """
    environ = os.environ if environ is None else environ
    try:
        data, lines = parse_with_lines(text)
    except YamlSyntaxError as error:
        return None, [Problem("", str(error), ERROR, path, error.line)]

    validator = Validator(data, lines, path, import_callbacks=import_callbacks)
    parts = validator.run()
    problems = list(validator.problems)
    if any(problem.is_error for problem in problems):
        return None, _in_file_order(problems)

    bots, skipped = credentials_module.attach_credentials(parts["bots"], environ)
    for bot_key, reason in skipped.items():
        problems.append(
            Problem(
                format_path(("bots", bot_key[0], bot_key[1])),
                reason,
                WARNING,
                path,
                lines.get(("bots", bot_key[0], bot_key[1])),
            )
        )

    _fill_routing_tables(bots, parts["handlers"])
    config = model.Config(
        path=path,
        teams=parts["teams"],
        bots=bots,
        primary_bots=parts["primary_bots"],
        handlers=parts["handlers"],
        authorization=parts["authorization"],
        checks=parts["checks"],
        help_callback=parts["help_callback"],
        default_to_help=parts["default_to_help"],
        list_provider_update_frequency=parts["list_provider_update_frequency"],
        warnings=_in_file_order(problems),
        skipped_bots={f"{team}/{bot}": reason for (team, bot), reason in skipped.items()},
    )
    return config, config.warnings


def _fill_routing_tables(bots, handlers):
    """Append each handler to the tables of the bots it names, in config order, then index each bot's message handlers."""
    for handler in handlers:
        for bot_key in sorted(handler.bots):
            bot = bots.get(bot_key)
            if bot is None:
                continue
            if handler.kind == model.MESSAGE:
                bot.message_handlers.append(handler)
            elif handler.kind == model.SLASH_COMMAND:
                bot.slash_command_handlers.setdefault(handler.command, []).append(handler)
            else:
                bot.interactive_handlers.append(handler)

    # Built here, once per load, so that no message pays for it.
    for bot in bots.values():
        matching.routes_of(bot)


def _in_file_order(problems):
    return sorted(problems, key=lambda problem: (problem.line or 0, problem.path))
