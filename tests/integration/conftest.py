"""Fixtures shared by the integration tests."""

import os

import pytest
import redis

from omnibot.backends.redis_connection import create_client, redact_url

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def redis_url():
    """Return the URL of a Redis server that replies to PING (``REDIS_URL``, default db 0 on 127.0.0.1:6379).

    Skips the test when no server replies, or fails it under OMNIBOT_REQUIRE_REDIS=1.
    """
    url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    client = create_client(url, retries=0, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        message = f"Redis is not answering at {redact_url(url)}; start redis-server or set REDIS_URL"
        if os.environ.get("OMNIBOT_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} (OMNIBOT_REQUIRE_REDIS=1 forbids skipping): {exc}")
        pytest.skip(message)
    finally:
        client.close()
    return url
