"""The ``omnibot`` command line: one sub-command per module in this package."""

import argparse
import sys
import typing

from omnibot import __version__

# Sub-command name -> module that defines ``add_arguments(parser)`` and ``run(args)``.
COMMANDS = {
    "serve": "omnibot.cli.serve",
    "worker": "omnibot.cli.worker",
    "watcher": "omnibot.cli.watcher",
    "check-config": "omnibot.cli.check_config",
    "routes": "omnibot.cli.routes",
    "simulate": "omnibot.cli.simulate",
    "fake-slack": "omnibot.cli.fake_slack",
    "dlq": "omnibot.cli.dlq",
    "spool-forwarder": "omnibot.cli.spool_forwarder",
}


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="omnibot", description="A Slack proxy: verify, queue and route Slack requests to callbacks.")
    parser.add_argument("--version", action="version", version=f"omnibot {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        # The docstrings use reStructuredText literals; a terminal shows plain text.
        doc = module.__doc__.replace("``", "")
        sub = commands.add_parser(name, help=doc.strip().splitlines()[0], description=doc)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--config PATH`` (falling back to ``CONFIG_FILE``)."""
    parser.add_argument("--config", metavar="PATH", help="YAML config file (default: $CONFIG_FILE)")


def main(argv: typing.Optional[typing.Sequence[str]] = None) -> int:
    """Run the ``omnibot`` command line; return the exit status."""
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
