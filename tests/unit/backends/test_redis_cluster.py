"""Redis Cluster: selecting it by URL, errors, and what only a cluster does (slot moves, node limits).

The queue and cache behaviour shared with the other backends runs on the
cluster through the ``redis-cluster`` parameter of conftest.py, and this
module covers the rest. The cluster is the session's local one (see conftest.py).
"""

import multiprocessing
import socket
import uuid

import pytest
import redis
from redis.cluster import RedisCluster

from omnibot.backends import FAIL_FAST_CLIENT, FAIL_FAST_CLUSTER_CLIENT, open_cache, open_queue
from omnibot.backends.redis_cache import RedisCache
from omnibot.backends.redis_connection import create_client, describe_client, translate_errors
from omnibot.backends.redis_queue import RedisQueue
from omnibot.errors import BackendUnavailable

LONG_TTL = 600.0
LONG_LEASE = 60.0


def unused_port():
    """Return a local TCP port that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def cluster_client(redis_cluster_url):
    """A cluster client of the session's cluster, closed after the test."""
    client = create_client(redis_cluster_url)
    yield client
    client.close()


@pytest.fixture
def key_prefix(cluster_client):
    """Yield a unique key prefix for the queue and cache that open_queue and open_cache make, and delete their keys afterwards."""
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix

    for key in cluster_client.scan_iter(match=f"{prefix}:*", count=1000):
        cluster_client.delete(key)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:7000/2?cluster=true",  # database in the path
        "redis://127.0.0.1:7000?db=3&cluster=true",  # database as a query parameter
        "rediss://127.0.0.1:7000/1?cluster=yes",  # TLS
    ],
)
def test_cluster_url_with_database_rejected(tmp_path, url):
    with pytest.raises(ValueError, match="database"):
        open_queue(url, str(tmp_path))


@pytest.mark.parametrize(
    "url, reason",
    [
        ("redis://127.0.0.1:7000/0?cluster=maybe", "invalid value 'maybe' of the cluster parameter"),
        ("redis://127.0.0.1:7000/0?cluster=", "invalid value '' of the cluster parameter"),
        ("redis://127.0.0.1:7000/0?cluster=true&cluster=false", "cluster parameter is given 2 times"),
    ],
)
def test_invalid_cluster_parameter_rejected(tmp_path, url, reason):
    with pytest.raises(ValueError, match=reason):
        open_cache(url, str(tmp_path))


@pytest.mark.parametrize("value", ["false", "no", "0", "False"])
def test_cluster_false_selects_single_server(value):
    # A single-node client does not connect before its first command, so no server is needed.
    client = create_client(f"redis://127.0.0.1:6379/0?cluster={value}")

    assert type(client) is redis.Redis


def test_unreachable_cluster_is_unavailable(tmp_path):
    url = f"redis://:secret-password@127.0.0.1:{unused_port()}/0?cluster=true"

    for opener in (open_queue, open_cache):
        with pytest.raises(BackendUnavailable) as raised:
            opener(url, str(tmp_path))

        assert "Redis Cluster" in str(raised.value)
        assert "unavailable" in str(raised.value)
        assert "secret-password" not in str(raised.value)
        assert raised.value.__cause__ is not None


@pytest.mark.redis
def test_cluster_url_of_single_server_rejected(redis_url):
    separator = "&" if "?" in redis_url else "?"

    with pytest.raises(ValueError, match="[Cc]luster mode is not enabled"):
        create_client(f"{redis_url}{separator}cluster=true")


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ClusterDownError("The cluster is down"),
        redis.exceptions.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
        redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot", status_code="TRYAGAIN"),
        redis.exceptions.SlotNotCoveredError("Slot 5 is not covered by the cluster."),
        redis.exceptions.RedisClusterUnreachableError("Redis Cluster cannot be connected."),
        redis.exceptions.ClusterError("TTL exhausted."),
    ],
    ids=lambda error: type(error).__name__,
)
def test_cluster_outages_become_unavailable(error):
    with pytest.raises(BackendUnavailable) as raised:
        with translate_errors("cluster 127.0.0.1:7000"):
            raise error

    assert "cluster 127.0.0.1:7000" in str(raised.value)
    assert raised.value.__cause__ is error


def test_cross_slot_error_not_an_outage():
    # Keys in different slots are a bug of omnibot, not a reason for Slack to retry.
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        with translate_errors("cluster 127.0.0.1:7000"):
            raise redis.exceptions.ClusterCrossSlotError("Keys in request don't hash to the same slot", status_code="CROSSSLOT")


@pytest.mark.redis_cluster
def test_cluster_url_opens_queue_and_cache(tmp_path, redis_cluster_url, key_prefix, cluster_client):
    queue = open_queue(f"{redis_cluster_url}&prefix={key_prefix}", str(tmp_path), visibility_timeout=LONG_LEASE)
    cache = open_cache(f"{redis_cluster_url}&prefix={key_prefix}", str(tmp_path), fail_fast=True)
    try:
        message_id = queue.put_unless_claimed({"n": 1}, ["event:Ev1", "message:C1:1.0"], LONG_TTL)
        delivery = queue.get(timeout=1)
        queue.ack(delivery)
        cache.set_many({"user:U1": "ana", "user:U2": "bo"}, ttl=LONG_TTL)
        values = cache.get_many(["user:U1", "user:U2"])
    finally:
        queue.close()
        cache.close()

    assert isinstance(queue, RedisQueue)
    assert isinstance(cache, RedisCache)
    assert delivery.id == message_id
    assert values == ["ana", "bo"]
    assert not list(tmp_path.iterdir())

    keys = list(cluster_client.scan_iter(match=f"{key_prefix}:*"))
    queue_keys = [key for key in keys if key.startswith(f"{key_prefix}:{{queue}}:")]
    cache_keys = [key for key in keys if key.startswith(f"{key_prefix}:{{cache}}:")]
    assert len(queue_keys) >= 2  # the stream and at least one claim
    assert len(cache_keys) == 2
    assert len({cluster_client.keyslot(key) for key in queue_keys}) == 1
    assert len({cluster_client.keyslot(key) for key in cache_keys}) == 1


@pytest.mark.redis_cluster
def test_describe_client_names_primaries(cluster_client):
    names = sorted(node.name for node in cluster_client.get_primaries())

    description = describe_client(cluster_client)

    assert isinstance(cluster_client, RedisCluster)
    assert len(names) == 3
    assert description == "cluster " + ", ".join(names)


@pytest.mark.redis_cluster
def test_client_settings_reach_cluster_nodes(redis_cluster_url):
    # The web process's fail-fast settings, with one of them overridden in the URL as operators may.
    client = create_client(f"{redis_cluster_url}&socket_connect_timeout=0.25", **FAIL_FAST_CLIENT)
    try:
        nodes = [node.redis_connection.connection_pool.connection_kwargs for node in client.get_primaries()]
        retries = client.retry.get_retries()
    finally:
        client.close()

    assert [node["socket_timeout"] for node in nodes] == [0.8] * 3
    assert [node["socket_connect_timeout"] for node in nodes] == [0.25] * 3
    assert retries == 1


def _move_slot(client, key):
    """Assign the slot of ``key``, which must hold no keys, to another primary. Return the old and the new owner."""
    owner = client.get_node_from_key(key)
    target = next(node for node in client.get_primaries() if node.name != owner.name)
    target_id = target.redis_connection.cluster("MYID")
    for node in client.get_primaries():
        node.redis_connection.execute_command("CLUSTER SETSLOT", client.keyslot(key), "NODE", target_id)
    return owner, target


def _keys_in_slot(node, slot):
    return node.redis_connection.execute_command("CLUSTER COUNTKEYSINSLOT", slot)


@pytest.mark.redis_cluster
def test_backends_follow_moved_slot(redis_cluster_url, redis_cluster_namespace, cluster_client):
    # Each operation gets a client that read the slot map before the move, so
    # each one meets the MOVED redirect first.
    name = redis_cluster_namespace
    prefix = f"omnibot:{{{name}}}:"
    queues = [RedisQueue(create_client(redis_cluster_url), name=name, visibility_timeout=LONG_LEASE, block_interval=0.1) for _ in range(3)]
    caches = [RedisCache(create_client(redis_cluster_url), prefix=prefix) for _ in range(4)]
    slot = cluster_client.keyslot(queues[0].stream)
    old_owner, new_owner = _move_slot(cluster_client, queues[0].stream)
    try:
        message_id = queues[0].put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL)  # Lua script
        delivery = queues[1].get(timeout=1)  # scripts, XAUTOCLAIM, XREADGROUP
        queues[2].ack(delivery)  # Lua script
        caches[0].set_many({"a": "1", "b": "2"}, ttl=LONG_TTL)  # MULTI/EXEC
        values = caches[1].get_many(["a", "b"])  # MGET
        added = caches[2].add_all(["c", "d"], "1", ttl=LONG_TTL)  # pipeline of SET NX
        with caches[3].lock("refresh", timeout=10) as acquired:  # redis-py Lock
            pass
        depth = queues[0].depth()
    finally:
        for backend in queues + caches:
            backend.close()

    assert _keys_in_slot(old_owner, slot) == 0
    assert _keys_in_slot(new_owner, slot) > 0
    assert delivery.id == message_id
    assert depth == 0
    assert values == ["1", "2"]
    assert added is True
    assert acquired is True


@pytest.mark.redis_cluster
def test_full_cluster_node_is_unavailable(redis_cluster_url, redis_cluster_namespace, cluster_client):
    queue = RedisQueue(create_client(redis_cluster_url), name=redis_cluster_namespace)
    cache = RedisCache(create_client(redis_cluster_url), prefix=f"omnibot:{{{redis_cluster_namespace}}}:")
    node = cluster_client.get_node_from_key(queue.stream).redis_connection
    limit = node.config_get("maxmemory")["maxmemory"]
    node.config_set("maxmemory", 1)  # every write is over the limit under the default noeviction
    try:
        with pytest.raises(BackendUnavailable, match="OOM") as put_error:
            queue.put({"n": 1})
        with pytest.raises(BackendUnavailable, match="OOM") as claim_error:
            queue.put_unless_claimed({"n": 1}, ["event:Ev1"], LONG_TTL)
        with pytest.raises(BackendUnavailable, match="OOM"):
            cache.set("key", "value")
    finally:
        node.config_set("maxmemory", limit)
        queue.close()
        cache.close()

    assert "refused the command" in str(put_error.value)
    assert "refused the command" in str(claim_error.value)


def _get_and_ack_in_child(queue):
    delivery = queue.get(timeout=5)
    queue.ack(delivery)


@pytest.mark.redis_cluster
def test_cluster_queue_usable_after_fork(redis_cluster_url, redis_cluster_namespace):
    # gunicorn --preload opens backends in the parent and forks the workers.
    queue = RedisQueue(create_client(redis_cluster_url), name=redis_cluster_namespace, visibility_timeout=LONG_LEASE, block_interval=0.1)
    queue.put({"n": 1})

    child = multiprocessing.get_context("fork").Process(target=_get_and_ack_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    depth = queue.depth()
    queue.close()

    assert child.exitcode == 0
    assert depth == 0


@pytest.mark.redis_cluster
def test_block_interval_below_cluster_socket_timeout(redis_cluster_url):
    client = create_client(redis_cluster_url, socket_timeout=1.0)
    try:
        with pytest.raises(ValueError, match="socket_timeout"):
            RedisQueue(client, block_interval=1.0)
    finally:
        client.close()


@pytest.mark.redis_cluster
def test_web_process_uses_cluster_fail_fast_settings(redis_cluster_url, redis_cluster_namespace, tmp_path):
    queue = open_queue(f"{redis_cluster_url}&prefix={redis_cluster_namespace}", str(tmp_path), fail_fast=True)
    try:
        client = queue._client
        nodes = [node.redis_connection.connection_pool.connection_kwargs for node in client.get_primaries()]

        assert [node["socket_timeout"] for node in nodes] == [FAIL_FAST_CLUSTER_CLIENT["socket_timeout"]] * 3
        assert client.retry.get_retries() == FAIL_FAST_CLUSTER_CLIENT["retries"]
    finally:
        queue.close()
