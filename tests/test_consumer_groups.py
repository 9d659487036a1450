"""Consumer groups with real clients: the quick-start consumer, rebalancing as
members join and die (classic eager, cooperative-sticky and KIP-848), several
groups on one topic, committed offsets surviving a broker restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from kafka import KafkaConsumer

from e2e_util import RDKAFKA_LOGGER, create_topic, flush_all, poll_messages, producer

MEMBER = Path(__file__).resolve().parent / "group_member.py"

# Quick group timing for the tests: members that die are noticed in seconds.
FAST_GROUPS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.min.session.timeout.ms": "6000",
    "group.consumer.heartbeat.interval.ms": "1000",
    "group.consumer.min.heartbeat.interval.ms": "1000",
}


def wait_until(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def produce_to_partitions(bootstrap: str, topic: str, partitions: int, per_partition: int, tag: str) -> None:
    p = producer(bootstrap)
    for i in range(per_partition):
        for part in range(partitions):
            p.produce(topic, value=f"{tag}-{part}-{i}".encode(), partition=part)
    flush_all(p)


class Member:
    """A group member in its own process (tests/group_member.py)."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str, conf: dict[str, str]):
        self.name = name
        self.killed_at: float | None = None
        self.events: list[dict] = []
        self._lock = threading.Lock()
        args = [sys.executable, str(MEMBER), bootstrap, group, topic, name] + [f"{k}={v}" for k, v in conf.items()]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def assignment(self) -> set[int]:
        owned: set[int] = set()
        for ev in self.snapshot():
            if ev["ev"] == "assign":
                owned |= set(ev["p"])
            elif ev["ev"] == "revoke":
                owned -= set(ev["p"])
        return owned

    def consumed(self) -> set[tuple[int, int]]:
        return {(ev["p"], ev["o"]) for ev in self.snapshot() if ev["ev"] == "msg"}

    def kill9(self) -> None:
        self.killed_at = time.monotonic()
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def assert_never_shared(members: list[Member]) -> None:
    """Replays every member's assign/revoke events in time order: a partition is
    never owned by two live members at once."""
    events = sorted((ev for m in members for ev in m.snapshot() if ev["ev"] in ("assign", "revoke")),
                    key=lambda ev: ev["t"])
    killed = {m.name: m.killed_at for m in members if m.killed_at is not None}
    owned: dict[str, set[int]] = {m.name: set() for m in members}
    for ev in events:
        name = ev["name"]
        if ev["ev"] == "revoke":
            owned[name] -= set(ev["p"])
            continue
        for other, parts in owned.items():
            dead = other in killed and killed[other] <= ev["t"]
            if other != name and not dead:
                shared = parts & set(ev["p"])
                assert not shared, f"{name} was given {sorted(shared)} while {other} still owned them"
        owned[name] |= set(ev["p"])


def live_assignments(members: list[Member]) -> dict[str, set[int]]:
    return {m.name: m.assignment() for m in members if m.killed_at is None}


def balanced(members: list[Member], partitions: int, sizes: list[int]):
    owned = live_assignments(members)
    counts = sorted(len(p) for p in owned.values())
    union = set().union(*owned.values()) if owned else set()
    return counts == sorted(sizes) and union == set(range(partitions))


VARIANTS = {
    "classic-range": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500"},
    "cooperative-sticky": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500",
                           "partition.assignment.strategy": "cooperative-sticky"},
    "consumer-protocol": {"group.protocol": "consumer"},
}


@pytest.mark.broker_config(**FAST_GROUPS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_group_spreads_partitions_and_rebalances_on_join_and_kill9(broker, variant):
    topic, group, parts = f"rebalance-{variant}", f"g-{variant}", 6
    create_topic(broker.bootstrap, topic, partitions=parts)
    produce_to_partitions(broker.bootstrap, topic, parts, 50, "a")
    conf = VARIANTS[variant]
    members = [Member(broker.bootstrap, group, topic, f"m{i}", conf) for i in range(3)]
    try:
        wait_until(lambda: balanced(members, parts, [2, 2, 2]), 60, "three members holding two partitions each")
        produce_to_partitions(broker.bootstrap, topic, parts, 50, "b")

        members.append(Member(broker.bootstrap, group, topic, "m3", conf))
        wait_until(lambda: balanced(members, parts, [2, 2, 1, 1]), 60, "the fourth member to get partitions")
        produce_to_partitions(broker.bootstrap, topic, parts, 50, "c")

        victim = next(m for m in members if m.assignment())
        orphaned = victim.assignment()
        victim.kill9()
        wait_until(lambda: balanced(members, parts, [2, 2, 2]), 60,
                   f"partitions {sorted(orphaned)} of the killed member to move to the others")
        produce_to_partitions(broker.bootstrap, topic, parts, 50, "d")

        expected = {(p, o) for p in range(parts) for o in range(200)}

        def all_consumed():
            got: set[tuple[int, int]] = set()
            for m in members:
                got |= m.consumed()
            return expected <= got

        wait_until(all_consumed, 60, "every produced message to be consumed")
    finally:
        for m in members:
            m.stop()
    assert_never_shared(members)


def test_quickstart_consumer_receives_what_the_quickstart_producer_sent(broker):
    p = producer(broker.bootstrap)
    for i in range(20):
        p.produce("mytopic", f"hello {i}".encode())
    flush_all(p)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mygroup",
                  "auto.offset.reset": "earliest", "logger": RDKAFKA_LOGGER})
    c.subscribe(["mytopic"])
    got = []
    deadline = time.monotonic() + 60
    while len(got) < 20 and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            continue
        assert not msg.error(), msg.error()
        got.append(msg.value().decode())
    c.close()
    assert got == [f"hello {i}" for i in range(20)]


def test_kafka_python_group_consumer_commits_and_resumes(broker):
    create_topic(broker.bootstrap, "kp-topic", partitions=3)
    produce_to_partitions(broker.bootstrap, "kp-topic", 3, 10, "x")
    c = KafkaConsumer("kp-topic", bootstrap_servers=broker.bootstrap, group_id="kp-group",
                      auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=10000)
    first = [(r.partition, r.offset) for r in c]
    c.commit()
    c.close()
    assert sorted(first) == [(p, o) for p in range(3) for o in range(10)]
    produce_to_partitions(broker.bootstrap, "kp-topic", 3, 2, "y")
    c = KafkaConsumer("kp-topic", bootstrap_servers=broker.bootstrap, group_id="kp-group",
                      auto_offset_reset="earliest", consumer_timeout_ms=8000)
    second = sorted((r.partition, r.offset) for r in c)
    c.close()
    assert second == [(p, o) for p in range(3) for o in (10, 11)], "resumes after the committed offsets"


def consume_all(bootstrap: str, group: str, topic: str, count: int, conf: dict | None = None) -> list[tuple[int, int]]:
    cfg = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
           "logger": RDKAFKA_LOGGER}
    cfg.update(conf or {})
    c = Consumer(cfg)
    c.subscribe([topic])
    got = [(msg.partition(), msg.offset()) for msg in poll_messages(c, count)]
    c.close()
    return got


@pytest.mark.broker_config(**FAST_GROUPS)
def test_two_groups_on_one_topic_each_receive_every_message(broker):
    create_topic(broker.bootstrap, "shared", partitions=4)
    produce_to_partitions(broker.bootstrap, "shared", 4, 25, "s")
    expected = sorted((p, o) for p in range(4) for o in range(25))
    results: dict[str, list] = {}
    threads = [threading.Thread(target=lambda g=g: results.__setitem__(g, consume_all(broker.bootstrap, g, "shared", 100)))
               for g in ("group-a", "group-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results["group-a"]) == expected
    assert sorted(results["group-b"]) == expected


@pytest.mark.broker_config(**FAST_GROUPS)
def test_committed_offsets_survive_a_broker_restart(broker):
    create_topic(broker.bootstrap, "durable", partitions=2)
    produce_to_partitions(broker.bootstrap, "durable", 2, 50, "d")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "resumer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "logger": RDKAFKA_LOGGER})
    c.subscribe(["durable"])
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while sum(seen.values()) < 60 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        if seen.get(msg.partition(), 0) < 30:
            seen[msg.partition()] = msg.offset() + 1
            c.commit(message=msg, asynchronous=False)
    c.close()
    assert seen == {0: 30, 1: 30}

    broker.restart()

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "resumer", "auto.offset.reset": "earliest",
                  "logger": RDKAFKA_LOGGER})
    committed = c.committed([TopicPartition("durable", 0), TopicPartition("durable", 1)], timeout=30)
    assert {tp.partition: tp.offset for tp in committed} == {0: 30, 1: 30}
    c.subscribe(["durable"])
    firsts: dict[int, int] = {}
    count = 0
    deadline = time.monotonic() + 60
    while count < 40 and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        firsts.setdefault(msg.partition(), msg.offset())
        count += 1
    c.close()
    assert firsts == {0: 30, 1: 30}, "the group resumes exactly after its committed offsets"
    assert count == 40


def java_partition(group: str, partitions: int = 50) -> int:
    h = 0
    for ch in group.encode("utf-16-be").decode("utf-16-be"):
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return (h & 0x7FFFFFFF) % partitions


def count_records(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                  "enable.partition.eof": True, "logger": RDKAFKA_LOGGER})
    c.assign([TopicPartition(topic, partition, 0)])
    count = 0
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                return count
            count += 1
    finally:
        c.close()
    raise AssertionError(f"no end of {topic}-{partition} within 30 s")


@pytest.mark.broker_config(**{"offsets.topic.segment.bytes": "1024", "log.cleaner.backoff.ms": "100",
                              "group.initial.rebalance.delay.ms": "0"})
def test_consumer_offsets_is_compacted_and_still_restores_the_latest_commit(broker):
    create_topic(broker.bootstrap, "often-committed")
    produce_to_partitions(broker.bootstrap, "often-committed", 1, 200, "c")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "logger": RDKAFKA_LOGGER})
    c.subscribe(["often-committed"])
    commits = len(poll_messages(c, 200, on_message=lambda msg: c.commit(message=msg, asynchronous=False)))
    c.close()
    assert commits == 200

    partition = java_partition("committer")
    # 200 commit records, about ten per 1 KiB segment: once the cleaner has run,
    # only the latest commit (and group record) remain in the rolled segments.
    wait_until(lambda: 0 < count_records(broker.bootstrap, "__consumer_offsets", partition) < 40, 30,
               "the cleaner to compact __consumer_offsets")

    broker.restart()
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "committer", "logger": RDKAFKA_LOGGER})
    committed = c.committed([TopicPartition("often-committed", 0)], timeout=30)
    c.close()
    assert committed[0].offset == 200


def test_deleting_a_topic_drops_the_groups_committed_offsets(broker):
    from e2e_util import admin

    create_topic(broker.bootstrap, "doomed")
    produce_to_partitions(broker.bootstrap, "doomed", 1, 5, "z")
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "mourner", "enable.auto.commit": False,
                  "logger": RDKAFKA_LOGGER})
    c.commit(offsets=[TopicPartition("doomed", 0, 5)], asynchronous=False)
    assert c.committed([TopicPartition("doomed", 0)], timeout=30)[0].offset == 5
    a = admin(broker.bootstrap)
    a.delete_topics(["doomed"], request_timeout=30)["doomed"].result(timeout=30)
    create_topic(broker.bootstrap, "doomed")
    committed = c.committed([TopicPartition("doomed", 0)], timeout=30)
    c.close()
    assert committed[0].offset < 0, "the recreated topic starts without the old topic's offsets"
