"""Run a local stand-in for the Slack Web API, for trying omnibot without a workspace.

Serves the methods omnibot calls from a workspace file and prints every call.
"""

from omnibot import fake_slack


def add_arguments(parser):
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="port to listen on (default 8888; 0 picks a free port)")
    parser.add_argument("--workspace", help="workspace YAML or JSON file (default: the built-in sample)")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per call")


def run(args):
    return fake_slack.run(args.host, args.port, args.workspace, verbose=not args.quiet)
