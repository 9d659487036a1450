"""KIP-848 consumer groups (group.protocol=consumer) with confluent-kafka.

The consumers pick their start offsets in the assignment callback (the
beginning of each partition) and do not commit, so these tests exercise the
ConsumerGroupHeartbeat rebalance protocol itself, not committed offsets.

Consumers of the rebalance test run in their own processes (this file, run as
a script) so that one can really be killed with SIGKILL; they report, as JSON
lines with a monotonic timestamp, every partition they are given or give up
and every message they read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import kafkawire
from kafkawire import compact_array, compact_string, i8, i32
from confluent_kafka import (OFFSET_BEGINNING, ConsumerGroupState, ConsumerGroupType, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import NewPartitions

from e2e_util import admin, consumer, create_topic, flush_all, producer

# Quick sessions, so a killed member is noticed in seconds, not 45 s.
QUICK_GROUPS = {
    "group.consumer.heartbeat.interval.ms": "300",
    "group.consumer.min.heartbeat.interval.ms": "100",
    "group.consumer.session.timeout.ms": "3000",
    "group.consumer.min.session.timeout.ms": "1000",
}
WAIT_S = 60.0


def kip848_conf(group: str) -> dict:
    return {"group.id": group, "group.protocol": "consumer", "enable.auto.commit": False}


def produce_numbered(bootstrap: str, topic: str, start: int, count: int, partitions: int) -> set[str]:
    p = producer(bootstrap)
    values = set()
    for i in range(start, start + count):
        value = f"m{i}"
        p.produce(topic, value.encode(), partition=i % partitions)
        values.add(value)
    flush_all(p)
    return values


def start_at_beginning(cons, parts):
    """Assignment callback: read from the beginning, without asking for committed offsets."""
    cons.incremental_assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in parts])


def describe(bootstrap: str, group: str):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fs = a.describe_consumer_groups([group], request_timeout=15)
    return fs[group].result(timeout=20)


def assigned_partitions(member) -> set[int]:
    return {tp.partition for tp in member.assignment.topic_partitions}


def wait_until(what: str, check, timeout: float = WAIT_S, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


INVALID_REGULAR_EXPRESSION = 128


# ---- (a) one consumer ------------------------------------------------------------------

@pytest.mark.broker_config(**QUICK_GROUPS)
def test_single_consumer_gets_every_partition_and_message(broker):
    topic, group = "kip848-single", "kip848-single-group"
    create_topic(broker.bootstrap, topic, partitions=6)
    produced = produce_numbered(broker.bootstrap, topic, 0, 300, 6)

    c = consumer(broker.bootstrap, kip848_conf(group))
    given: list[set[int]] = []

    def on_assign(cons, parts):
        given.append({p.partition for p in parts})
        cons.incremental_assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in parts])

    consumed: set[str] = set()
    try:
        c.subscribe([topic], on_assign=on_assign)
        deadline = time.monotonic() + WAIT_S
        while consumed != produced:
            assert time.monotonic() < deadline, f"consumed {len(consumed)}/{len(produced)} messages"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, f"consumer error: {msg.error()}"
            consumed.add(msg.value().decode())
        assert set().union(*given) == set(range(6))
        assert {tp.partition for tp in c.assignment()} == set(range(6))

        group_info = describe(broker.bootstrap, group)
        assert group_info.type == ConsumerGroupType.CONSUMER
        assert group_info.state == ConsumerGroupState.STABLE
        assert len(group_info.members) == 1
        assert assigned_partitions(group_info.members[0]) == set(range(6))
    finally:
        c.close()

    # close() leaves the group (epoch -1): it is empty now.
    info = wait_until("the group to be empty",
                      lambda: (lambda d: d if not d.members else None)(describe(broker.bootstrap, group)))
    assert info.state == ConsumerGroupState.EMPTY


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_new_partitions_and_new_topics_are_assigned(broker):
    grown, later, group = "kip848-grown", "kip848-later", "kip848-growing-group"
    create_topic(broker.bootstrap, grown, partitions=2)
    c = consumer(broker.bootstrap, {**kip848_conf(group), "topic.metadata.refresh.interval.ms": 1000})

    def assignment_is(expected):
        def check():
            c.poll(0.2)
            got = {(tp.topic, tp.partition) for tp in c.assignment()}
            return got if got == expected else None
        return check

    try:
        # One of the two subscribed topics does not exist yet.
        c.subscribe([grown, later], on_assign=start_at_beginning)
        wait_until("the existing topic's partitions", assignment_is({(grown, 0), (grown, 1)}))

        a = admin(broker.bootstrap)
        a.create_partitions([NewPartitions(grown, 4)], request_timeout=15)[grown].result(timeout=20)
        wait_until("the added partitions",
                   assignment_is({(grown, p) for p in range(4)}))

        create_topic(broker.bootstrap, later, partitions=2)
        wait_until("the new topic's partitions",
                   assignment_is({(grown, p) for p in range(4)} | {(later, 0), (later, 1)}))
    finally:
        c.close()


# ---- (b) rebalancing between processes ---------------------------------------------------

class Worker:
    """A consumer in its own process; its reports are collected by a thread."""

    def __init__(self, name: str, bootstrap: str, topic: str, group: str):
        self.name = name
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.killed_at: float | None = None
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "worker", bootstrap, topic, group, name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.events)

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for e in self.snapshot():
            if e["event"] == "assigned":
                owned |= set(e["partitions"])
            elif e["event"] == "revoked":
                owned -= set(e["partitions"])
        return owned

    def messages(self) -> set[str]:
        return {e["value"] for e in self.snapshot() if e["event"] == "message"}

    def errors(self) -> list[str]:
        return [e["error"] for e in self.snapshot() if e["event"] == "error"]

    def kill9(self):
        self.killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)


def assert_never_shared(workers: list[Worker]) -> None:
    """Replays every worker's assign/revoke events in time order: no partition may
    have two owners at once (a killed worker owns nothing after its death)."""
    timeline = []
    for w in workers:
        for e in w.snapshot():
            if e["event"] in ("assigned", "revoked"):
                timeline.append((e["t"], 1 if e["event"] == "revoked" else 2, w.name, e["event"], e["partitions"]))
        if w.killed_at is not None:
            timeline.append((w.killed_at, 0, w.name, "killed", []))
    owners: dict[int, str] = {}
    for t, _, name, event, partitions in sorted(timeline):
        if event == "killed":
            owners = {p: o for p, o in owners.items() if o != name}
        elif event == "revoked":
            for p in partitions:
                if owners.get(p) == name:
                    del owners[p]
        else:
            for p in partitions:
                assert owners.get(p) in (None, name), \
                    f"partition {p} given to {name} at {t:.3f} while {owners[p]} still owned it"
                owners[p] = name


def balanced_and_complete(workers: list[Worker], partitions: int):
    owned = {w.name: w.owned() for w in workers}
    counts = sorted(len(s) for s in owned.values())
    union = set().union(*owned.values())
    total = sum(counts)
    if union == set(range(partitions)) and total == partitions and counts[-1] - counts[0] <= 1:
        return owned
    return None


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_members_rebalance_join_and_crash(broker):
    topic, group, partitions = "kip848-rebalance", "kip848-rebalance-group", 6
    create_topic(broker.bootstrap, topic, partitions=partitions)
    produced = produce_numbered(broker.bootstrap, topic, 0, 600, partitions)
    workers: list[Worker] = []
    victim = None
    try:
        for i in range(3):
            workers.append(Worker(f"w{i}", broker.bootstrap, topic, group))
        owned = wait_until("three members holding two partitions each",
                           lambda: balanced_and_complete(workers, partitions))
        assert sorted(len(s) for s in owned.values()) == [2, 2, 2]
        assert_never_shared(workers)

        workers.append(Worker("w3", broker.bootstrap, topic, group))
        owned = wait_until("four members sharing the six partitions",
                           lambda: (lambda o: o if o and all(o.values()) else None)(
                               balanced_and_complete(workers, partitions)))
        assert sorted(len(s) for s in owned.values()) == [1, 1, 2, 2]
        assert_never_shared(workers)
        info = wait_until("a stable group of four",
                          lambda: (lambda d: d if d.state == ConsumerGroupState.STABLE and len(d.members) == 4 else None)(
                              describe(broker.bootstrap, group)))
        described = {m.member_id: assigned_partitions(m) for m in info.members}
        assert sorted(len(s) for s in described.values()) == [1, 1, 2, 2]
        assert set().union(*described.values()) == set(range(partitions))

        victim = next(w for w in workers if len(w.owned()) == 2)
        lost = victim.owned()
        victim.kill9()
        survivors = [w for w in workers if w is not victim]
        owned = wait_until("the survivors to take over the killed member's partitions",
                           lambda: balanced_and_complete(survivors, partitions))
        assert sorted(len(s) for s in owned.values()) == [2, 2, 2]
        assert lost <= set().union(*owned.values())
        assert_never_shared(workers)

        produced |= produce_numbered(broker.bootstrap, topic, 600, 300, partitions)
        wait_until("every produced message to be consumed",
                   lambda: produced <= set().union(*(w.messages() for w in workers)))
        for w in workers:
            assert w.errors() == [], f"{w.name} reported errors: {w.errors()}"
        info = describe(broker.bootstrap, group)
        assert len(info.members) == 3
    finally:
        for w in workers:
            w.stop()
    for w in workers:
        if w is not victim:
            assert w.proc.returncode == 0, f"{w.name} exited with {w.proc.returncode}: {w.proc.stderr.read()}"


# ---- (c) ConsumerGroupDescribe -----------------------------------------------------------

@pytest.mark.broker_config(**QUICK_GROUPS)
def test_describe_consumer_group(broker):
    topic, group = "kip848-describe", "kip848-describe-group"
    create_topic(broker.bootstrap, topic, partitions=3)
    c = consumer(broker.bootstrap, {**kip848_conf(group), "client.id": "describe-me",
                                    "group.remote.assignor": "range"})
    try:
        c.subscribe([topic], on_assign=start_at_beginning)
        wait_until("an assignment", lambda: (c.poll(0.2), c.assignment())[1])
        info = wait_until("a stable group",
                          lambda: (lambda d: d if d.state == ConsumerGroupState.STABLE else None)(
                              describe(broker.bootstrap, group)))
        assert info.group_id == group
        assert info.type == ConsumerGroupType.CONSUMER
        assert info.partition_assignor == "range"
        assert not info.is_simple_consumer_group
        assert info.coordinator.port == broker.port
        (member,) = info.members
        assert member.client_id == "describe-me"
        assert member.host.startswith("/127.0.0.1")
        assert member.group_instance_id is None
        assert {(tp.topic, tp.partition) for tp in member.assignment.topic_partitions} == \
            {(topic, p) for p in range(3)}
        assert {(tp.topic, tp.partition) for tp in member.target_assignment.topic_partitions} == \
            {(topic, p) for p in range(3)}
    finally:
        c.close()

    # An unknown group: librdkafka falls back to the classic DescribeGroups then, so ask raw.
    with kafkawire.Connection(broker.bootstrap) as conn:
        r = raw_request(conn, API_CONSUMER_GROUP_DESCRIBE, 0,
                        compact_array([compact_string("kip848-no-such-group")]) + i8(0) + TAGS)
        r.i32()  # throttle time
        assert r.uvarint() - 1 == 1
        error_code, message = r.i16(), r.compact_string()
        assert (error_code, message) == (GROUP_ID_NOT_FOUND, "Group kip848-no-such-group not found.")
        assert r.compact_string() == "kip848-no-such-group"


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_unknown_server_assignor_is_refused(broker):
    topic = "kip848-assignor"
    create_topic(broker.bootstrap, topic, partitions=1)
    c = consumer(broker.bootstrap, {**kip848_conf("kip848-assignor-group"), "group.remote.assignor": "nope"})
    try:
        c.subscribe([topic])
        deadline = time.monotonic() + WAIT_S
        while True:
            assert time.monotonic() < deadline, "no error for an unknown server assignor"
            msg = c.poll(0.5)
            if msg is not None and msg.error() is not None:
                break
        # librdkafka treats UNSUPPORTED_ASSIGNOR as fatal.
        assert msg.error().code() in (KafkaError.UNSUPPORTED_ASSIGNOR, KafkaError._FATAL), msg.error()
        assert "assignor" in str(msg.error()), msg.error()
        assert c.assignment() == []
    finally:
        c.close()


# ---- raw ConsumerGroupHeartbeat ---------------------------------------------------------------

API_CONSUMER_GROUP_HEARTBEAT = 68
API_CONSUMER_GROUP_DESCRIBE = 69
GROUP_ID_NOT_FOUND, UNKNOWN_MEMBER_ID, INVALID_REQUEST, FENCED_MEMBER_EPOCH = 69, 25, 42, 110
TAGS = b"\x00"  # no tagged fields


def raw_request(conn, api_key: int, version: int, body: bytes):
    r = conn.recv_response(conn.send(api_key, version, body, flexible_header=True))
    assert r.uvarint() == 0  # response header v1: no tagged fields
    return r


def raw_heartbeat(conn, group: str, member_id: str, epoch: int, topics: list[str] | None = None,
                  regex: str | None = None, owned: list[tuple[bytes, list[int]]] | None = None,
                  rebalance_timeout_ms: int = -1) -> dict:
    """ConsumerGroupHeartbeat v1; returns the decoded response."""
    owned_items = None if owned is None else [
        topic_id + compact_array([i32(p) for p in ps]) + TAGS for topic_id, ps in owned]
    body = (compact_string(group) + compact_string(member_id) + i32(epoch)
            + compact_string(None) + compact_string(None) + i32(rebalance_timeout_ms)
            + compact_array(None if topics is None else [compact_string(t) for t in topics])
            + compact_string(regex) + compact_string(None) + compact_array(owned_items) + TAGS)
    r = raw_request(conn, API_CONSUMER_GROUP_HEARTBEAT, 1, body)
    out = {"throttle": r.i32(), "error": r.i16(), "message": r.compact_string(),
           "member_id": r.compact_string(), "epoch": r.i32(), "interval": r.i32(), "assignment": None}
    if r.i8() >= 0:
        out["assignment"] = {}
        for _ in range(r.uvarint() - 1):
            topic_id = r.take(16)
            out["assignment"][topic_id] = [r.i32() for _ in range(r.uvarint() - 1)]
            assert r.uvarint() == 0
        assert r.uvarint() == 0
    return out


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_heartbeat_protocol_errors(broker):
    topic, group, member = "kip848-raw", "kip848-raw-group", "raw-member-1"
    create_topic(broker.bootstrap, topic, partitions=2)
    with kafkawire.Connection(broker.bootstrap) as conn:
        hb = raw_heartbeat(conn, "kip848-raw-missing", member, 3, owned=[])
        assert (hb["error"], hb["message"]) == (GROUP_ID_NOT_FOUND, "Group kip848-raw-missing not found.")

        hb = raw_heartbeat(conn, group, member, 0, topics=[topic], regex="kip848-(", owned=[],
                           rebalance_timeout_ms=10000)
        assert hb["error"] == INVALID_REGULAR_EXPRESSION, hb

        hb = raw_heartbeat(conn, group, member, 0, topics=[topic], owned=[], rebalance_timeout_ms=10000)
        assert (hb["error"], hb["member_id"], hb["epoch"], hb["interval"]) == (0, member, 1, 300), hb
        ((topic_id, partitions),) = hb["assignment"].items()
        assert sorted(partitions) == [0, 1]

        # Unchanged: no assignment in the answer.
        hb = raw_heartbeat(conn, group, member, 1, owned=[(topic_id, [0, 1])])
        assert (hb["error"], hb["epoch"], hb["assignment"]) == (0, 1, None), hb

        hb = raw_heartbeat(conn, group, member, 7, owned=[(topic_id, [0, 1])])
        assert hb["error"] == FENCED_MEMBER_EPOCH, hb
        hb = raw_heartbeat(conn, group, "raw-member-2", 1, owned=[])
        assert (hb["error"], hb["message"]) == (
            UNKNOWN_MEMBER_ID, f"Member raw-member-2 is not a member of group {group}."), hb

        hb = raw_heartbeat(conn, group, member, -1)
        assert (hb["error"], hb["member_id"], hb["epoch"]) == (0, member, -1), hb
        hb = raw_heartbeat(conn, group, member, 1, owned=[])
        assert hb["error"] == UNKNOWN_MEMBER_ID, hb
    info = describe(broker.bootstrap, group)
    assert info.state == ConsumerGroupState.EMPTY and not info.members


# ---- the worker process --------------------------------------------------------------------

def _worker(bootstrap: str, topic: str, group: str, name: str) -> int:
    from confluent_kafka import Consumer

    out_lock = threading.Lock()

    def report(event: str, **fields):
        with out_lock:
            print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)

    c = Consumer({"bootstrap.servers": bootstrap, "client.id": name, **kip848_conf(group)})

    def on_assign(cons, parts):
        report("assigned", partitions=sorted(p.partition for p in parts))
        cons.incremental_assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in parts])

    def on_revoke(cons, parts):
        cons.incremental_unassign(parts)
        report("revoked", partitions=sorted(p.partition for p in parts))

    def on_lost(cons, parts):
        cons.incremental_unassign(parts)
        report("revoked", partitions=sorted(p.partition for p in parts), lost=True)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    while not stopping.is_set():
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                report("error", error=str(msg.error()))
            continue
        report("message", partition=msg.partition(), offset=msg.offset(), value=msg.value().decode())
    c.close()
    return 0


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "worker":
    sys.exit(_worker(*sys.argv[2:]))


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_regex_subscription_is_resolved_by_the_broker(broker):
    group = "kip848-regex-group"
    create_topic(broker.bootstrap, "regex-a", partitions=2)
    create_topic(broker.bootstrap, "regex-b", partitions=1)
    create_topic(broker.bootstrap, "not-regex-c", partitions=1)
    produced = produce_numbered(broker.bootstrap, "regex-a", 0, 20, 2) | produce_numbered(broker.bootstrap, "regex-b", 20, 10, 1)
    produce_numbered(broker.bootstrap, "not-regex-c", 100, 5, 1)
    c = consumer(broker.bootstrap, kip848_conf(group))
    consumed: set[str] = set()
    try:
        c.subscribe(["^regex-.*"], on_assign=start_at_beginning)
        deadline = time.monotonic() + WAIT_S
        while consumed != produced:
            assert time.monotonic() < deadline, f"consumed {len(consumed)}/{len(produced)} messages"
            msg = c.poll(0.5)
            if msg is None:
                continue
            assert msg.error() is None, f"consumer error: {msg.error()}"
            assert msg.topic() in ("regex-a", "regex-b"), msg.topic()
            consumed.add(msg.value().decode())
        info = describe(broker.bootstrap, group)
        topics = {tp.topic for tp in info.members[0].assignment.topic_partitions}
        assert topics == {"regex-a", "regex-b"}
    finally:
        c.close()


# ---- (e) broker restarts -------------------------------------------------------------------

def raw_describe_member_epochs(bootstrap: str, group: str) -> dict:
    """ConsumerGroupDescribe v0, read up to each member's epoch: the group's epochs and
    {member_id: member_epoch} (the admin client shows no epochs)."""
    with kafkawire.Connection(bootstrap) as conn:
        r = raw_request(conn, API_CONSUMER_GROUP_DESCRIBE, 0, compact_array([compact_string(group)]) + i8(0) + TAGS)
        r.i32()  # throttle time
        assert r.uvarint() - 1 == 1
        error_code, message = r.i16(), r.compact_string()
        assert error_code == 0, message
        assert r.compact_string() == group
        out = {"state": r.compact_string(), "group_epoch": r.i32(), "assignment_epoch": r.i32(),
               "assignor": r.compact_string(), "members": {}}
        members = r.uvarint() - 1
        assert members <= 1, "this reader stops after the first member"
        for _ in range(members):
            member_id = r.compact_string()
            r.compact_string(), r.compact_string()  # instance id, rack id
            out["members"][member_id] = r.i32()
        return out


@pytest.mark.broker_config(**QUICK_GROUPS)
def test_member_keeps_its_id_epoch_and_partitions_across_a_restart(broker):
    topic, group = "kip848-restart", "kip848-restart-group"
    create_topic(broker.bootstrap, topic, partitions=4)
    produced = produce_numbered(broker.bootstrap, topic, 0, 200, 4)
    callbacks: list[tuple[str, list[int]]] = []

    def on_assign(cons, parts):
        callbacks.append(("assigned", sorted(p.partition for p in parts)))
        cons.incremental_assign([TopicPartition(p.topic, p.partition, OFFSET_BEGINNING) for p in parts])

    def on_revoke(cons, parts):
        callbacks.append(("revoked", sorted(p.partition for p in parts)))
        cons.incremental_unassign(parts)

    def on_lost(cons, parts):
        callbacks.append(("lost", sorted(p.partition for p in parts)))
        cons.incremental_unassign(parts)

    c = consumer(broker.bootstrap, {**kip848_conf(group), "client.id": "restart-me"})
    consumed: set[str] = set()

    def consume_until(expected: set[str]):
        deadline = time.monotonic() + WAIT_S
        while not expected <= consumed:
            assert time.monotonic() < deadline, f"consumed {len(consumed & expected)}/{len(expected)} messages"
            msg = c.poll(0.5)
            if msg is None or msg.error() is not None:
                continue  # transport errors while the broker restarts
            consumed.add(msg.value().decode())

    try:
        c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
        consume_until(produced)
        before = wait_until("a stable group", lambda: (lambda d: d if d["state"] == "Stable" else None)(
            raw_describe_member_epochs(broker.bootstrap, group)))
        (member_id,) = before["members"]
        assert callbacks == [("assigned", [0, 1, 2, 3])]

        broker.restart()

        # Right after the restart, before the member has heartbeated again, the group is back.
        after = raw_describe_member_epochs(broker.bootstrap, group)
        assert after == before, "the group comes back with its members and epochs"

        produced_after = produce_numbered(broker.bootstrap, topic, 200, 200, 4)
        consume_until(produced_after)
        # A few heartbeats later: same member, same epochs; it never had to rejoin.
        time.sleep(1.0)
        c.poll(0.1)
        final = raw_describe_member_epochs(broker.bootstrap, group)
        assert final == before, f"before the restart {before}, now {final}"
        assert callbacks == [("assigned", [0, 1, 2, 3])], "no revoke, loss or reassignment"
        info = describe(broker.bootstrap, group)
        assert [m.member_id for m in info.members] == [member_id]
        assert assigned_partitions(info.members[0]) == {0, 1, 2, 3}
        assert {tp.partition for tp in c.assignment()} == {0, 1, 2, 3}
    finally:
        c.close()
