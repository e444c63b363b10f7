"""A throwaway Redis Cluster of three primaries on loopback ports, for tests.

Each primary is a ``redis-server`` child process without persistence,
working in a directory of the caller's choice. ``redis-cli --cluster create``
assigns the 16384 hash slots to the three primaries, without replicas.
"""

import os
import socket
import subprocess
import time
import typing

import redis

# The cluster bus of a node listens on its port plus 10000 (Redis's fixed offset).
CLUSTER_BUS_OFFSET = 10000

PRIMARIES = 3

# Upper bound in seconds of the wait for the servers to start and for the
# cluster to reach cluster_state:ok. A start took 2 to 7 seconds on a busy 2-core machine.
START_TIMEOUT = 30.0


class LocalCluster:
    """Start, describe and stop a local three-primary Redis Cluster.

    Args:
        server_binary: Path of ``redis-server``.
        cli_binary: Path of ``redis-cli``.
        directory: Directory of the node config files and logs, with one subdirectory per node.
    """

    def __init__(self, server_binary: str, cli_binary: str, directory: str):
        self.server_binary = server_binary
        self.cli_binary = cli_binary
        self.directory = directory
        self.ports: typing.List[int] = []
        self.processes: typing.List[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """The URL that selects this cluster in omnibot, naming its first node."""
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=true"

    def start(self) -> None:
        """Start the servers, join them into a cluster and wait for cluster_state:ok.

        Raises:
            RuntimeError: When a server or the join fails, or the cluster is
                not ok within START_TIMEOUT. The message contains redis-cli's output.
        """
        self.ports = _free_cluster_ports(PRIMARIES)
        for port in self.ports:
            self.processes.append(self._start_server(port))

        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports:
            _wait_for(lambda port=port: _node_replies(port), deadline, f"redis-server on port {port} did not start")

        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        create = subprocess.run(
            [self.cli_binary, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({create.returncode}): {create.stdout}{create.stderr}")

        for port in self.ports:
            _wait_for(lambda port=port: _cluster_ok(port), deadline, f"node {port} did not reach cluster_state:ok")

    def stop(self) -> None:
        """Stop every server this object started, by PID, and wait for it to exit."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes = []

    def _start_server(self, port: int) -> subprocess.Popen:
        node_directory = os.path.join(self.directory, str(port))
        os.makedirs(node_directory, exist_ok=True)
        log = open(os.path.join(node_directory, "redis.log"), "wb")
        command = [
            self.server_binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", node_directory,
            "--cluster-enabled", "yes",
            "--cluster-config-file", os.path.join(node_directory, "nodes.conf"),
            "--save", "",
            "--appendonly", "no",
        ]  # fmt: skip
        with log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _free_cluster_ports(count: int) -> typing.List[int]:
    """Return ``count`` loopback ports that are free, each with its cluster bus port free too."""
    ports: typing.List[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + CLUSTER_BUS_OFFSET < 65536 and port not in ports and _port_is_free(port + CLUSTER_BUS_OFFSET):
            ports.append(port)
    return ports


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True)


def _node_replies(port: int) -> bool:
    client = _node_client(port)
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    client = _node_client(port)
    try:
        return client.cluster("INFO")["cluster_state"] == "ok"
    finally:
        client.close()


def _wait_for(condition: typing.Callable[[], bool], deadline: float, message: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(message)
        time.sleep(0.05)
