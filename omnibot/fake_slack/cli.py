"""Command line entry points of the fake Slack server."""

import argparse
import ipaddress
import logging
import sys

from omnibot.fake_slack.server import FakeSlack
from omnibot.fake_slack.workspace import WorkspaceError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888


def run(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, workspace_path=None, verbose: bool = True) -> int:
    """Serve a fake Slack in the foreground until SIGTERM or SIGINT.

    Args:
        host: The address to listen on.
        port: The TCP port. 0 picks a free one and prints it.
        workspace_path: A YAML or JSON workspace file. None serves the placeholder workspace.
        verbose: Print one line per recorded call to standard output.

    Returns:
        The exit status: 0 after a clean stop, 1 when the address cannot be
        bound, 2 when the workspace file is invalid.
    """
    try:
        if workspace_path is None:
            fake = FakeSlack(host=host, port=port, verbose=verbose)
        else:
            fake = FakeSlack.from_file(workspace_path, host=host, port=port, verbose=verbose)
    except WorkspaceError as exc:
        print(f"error: invalid workspace: {exc}", file=sys.stderr)
        return 2

    if not _is_loopback(host):
        logger.warning("fake Slack listens on %s, which other machines may reach; it accepts any request", host)

    try:
        fake.start()
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1

    team = fake.state.team
    print(
        f"fake Slack for {team['name']} ({team['id']}) listening on {fake.url}\n"
        f"set SLACK_API_URL={fake.api_url}\n"
        "calls: GET /_calls, faults: POST /_faults; stop with Ctrl-C",
        flush=True,
    )
    fake.serve_forever()
    print("fake Slack stopped", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m omnibot.fake_slack``."""
    parser = argparse.ArgumentParser(
        prog="python -m omnibot.fake_slack",
        description="Serve a local fake of the Slack Web API that records every call.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port",
        type=_port_number,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on; 0 picks a free port (default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--workspace",
        metavar="FILE",
        help="workspace file, .yaml/.yml or .json (default: the built-in test-team workspace)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print a line per call")
    return parser


def main(argv=None) -> int:
    """Parse command line arguments and run the fake Slack server. Return the exit status."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(host=args.host, port=args.port, workspace_path=args.workspace, verbose=not args.quiet)


def _port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}; expected a number from 0 to 65535") from exc
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}; expected a number from 0 to 65535")
    return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
