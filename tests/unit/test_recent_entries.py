"""RecentEntries, the in-process memory of recent Slack lookups, and its use by SlackData."""

import json
import time

from omnibot.slack.data import SlackData
from omnibot.slack.recent import RecentEntries


class CountingCache:
    """A dict-backed cache that counts its reads."""

    def __init__(self, entries):
        self.entries = dict(entries)
        self.reads = 0

    def get(self, key):
        self.reads += 1
        return self.entries.get(key)


def test_entry_returned_until_ttl():
    recent = RecentEntries(ttl=0.05)
    recent.put("k", "v")

    assert recent.get("k") == "v"
    time.sleep(0.06)
    assert recent.get("k") is None


def test_full_memory_drops_everything():
    recent = RecentEntries(max_entries=2)
    recent.put_many({"a": "1", "b": "2"})

    recent.put("c", "3")

    assert recent.get("a") is None
    assert recent.get("b") is None
    assert recent.get("c") == "3"


def test_lookup_reads_backend_once():
    key = SlackData.key("T1", "channel", "C1")
    cache = CountingCache({key: json.dumps({"id": "C1", "name": "general"})})
    data = SlackData(cache, clients=None, recent=RecentEntries())

    first = data._get_json(key)
    second = data._get_json(key)

    assert first == second == {"id": "C1", "name": "general"}
    assert cache.reads == 1


def test_lookups_return_separate_copies():
    key = SlackData.key("T1", "channel", "C1")
    data = SlackData(CountingCache({key: json.dumps({"id": "C1"})}), clients=None, recent=RecentEntries())

    data._get_json(key)["id"] = "changed by a callback"

    assert data._get_json(key) == {"id": "C1"}


def test_without_recent_every_lookup_reads():
    key = SlackData.key("T1", "channel", "C1")
    cache = CountingCache({key: json.dumps({"id": "C1"})})
    data = SlackData(cache, clients=None)

    data._get_json(key)
    data._get_json(key)

    assert cache.reads == 2
