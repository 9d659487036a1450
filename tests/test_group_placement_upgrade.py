"""An upgrade from a Potok that placed groups in __consumer_offsets by the masked
hash (`hash & 0x7fffffff`) keeps the committed offsets of groups whose hash is
negative: the new broker moves them to Kafka's partition (`Utils.abs`).

Needs POTOK_LEGACY_BIN, a `potok` binary that places groups by the masked hash
(built from before commit bd6a2fb, or with `store::partition_for` set back to
the mask); skipped without it."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Consumer, TopicPartition

from e2e_util import RDKAFKA_LOGGER, create_topic

LEGACY_BIN = os.environ.get("POTOK_LEGACY_BIN")
pytestmark = pytest.mark.skipif(not LEGACY_BIN, reason="POTOK_LEGACY_BIN (a potok binary from before bd6a2fb) not set")
PARTITIONS = 50


def java_hash(s: str) -> int:
    h = 0
    for unit in s.encode("utf-16-be").hex(" ", 2).split():
        h = (h * 31 + int(unit, 16)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def placements(group: str) -> tuple[int, int]:
    """(the masked hash's partition, Kafka's)."""
    h = java_hash(group)
    return (h & 0x7FFFFFFF) % PARTITIONS, (0 if h == -(1 << 31) else abs(h)) % PARTITIONS


def consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "logger": RDKAFKA_LOGGER})


def committed(bootstrap: str, group: str) -> list[tuple[int, int]]:
    c = consumer(bootstrap, group)
    try:
        tps = c.committed([TopicPartition("t", 0), TopicPartition("t", 1)], timeout=30)
        return [(tp.partition, tp.offset) for tp in tps]
    finally:
        c.close()


def test_offsets_committed_by_the_legacy_placement_survive_the_upgrade_and_a_restart(broker_factory):
    group = next(g for g in (f"upgrade-group-{i}" for i in range(1000)) if len(set(placements(g))) == 2)
    old, new = placements(group)
    broker = broker_factory(name="upgraded", start=False)
    new_command = broker.command
    broker.command = lambda: [LEGACY_BIN] + new_command()[1:]
    broker.start()
    create_topic(broker.bootstrap, "t", 2)
    c = consumer(broker.bootstrap, group)
    c.commit(offsets=[TopicPartition("t", 0, 17), TopicPartition("t", 1, 4)], asynchronous=False)
    c.close()
    assert committed(broker.bootstrap, group) == [(0, 17), (1, 4)]
    broker.stop()

    broker.command = new_command
    broker.start()
    assert committed(broker.bootstrap, group) == [(0, 17), (1, 4)], "the offsets are found after the upgrade"
    log = broker.log_path.read_text(errors="replace")
    assert f"group {group} moved from __consumer_offsets-{old} to -{new} (Kafka's placement)" in log
    broker.restart()
    assert committed(broker.bootstrap, group) == [(0, 17), (1, 4)], "and after the next restart"
    log = broker.log_path.read_text(errors="replace")
    assert log.count(f"group {group} moved from") == 1, "moved once"
