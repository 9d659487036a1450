"""acks=all and the leader's checks as clients see them on one node: an acks=all
(idempotent) producer gets every record acknowledged once the in-sync replicas
have it; min.insync.replicas above the replica count is capped by it, as in
Kafka 4 (Partition.effectiveMinIsr), so a one-replica topic with
min.insync.replicas=2 still takes acks=all; a request naming a leader epoch the
broker does not have yet gets UNKNOWN_LEADER_EPOCH (Fetch and ListOffsets).
FENCED_LEADER_EPOCH needs an epoch above 0, which only a leader change gives:
crates/broker/src/partition.rs tests it."""

from __future__ import annotations

import pytest

import kafkawire as kw
from e2e_util import DeliveryTracker, consume_confluent, create_topic, flush_all, producer

N = 3000
NONE = 0
UNKNOWN_LEADER_EPOCH = 75
LIST_OFFSETS = 2
LATEST = -1


def produce_values(bootstrap: str, topic: str, values: list[bytes], conf: dict) -> DeliveryTracker:
    p = producer(bootstrap, conf)
    t = DeliveryTracker()
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, value=v, partition=0, on_delivery=t.callback(i))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    flush_all(p)
    return t


def check_acknowledged_and_readable(bootstrap: str, topic: str, values: list[bytes], t: DeliveryTracker):
    assert not t.errors, list(t.errors.items())[:5]
    assert [t.ok[i] for i in range(len(values))] == [(0, i) for i in range(len(values))]
    msgs = consume_confluent(bootstrap, topic, 0, len(values))
    assert [(m.offset(), m.value()) for m in msgs] == list(enumerate(values))


def test_acks_all_idempotent_producer_gets_every_record_acknowledged_in_order(broker):
    create_topic(broker.bootstrap, "acks-all")
    values = [f"acks-all-{i}".encode() for i in range(N)]
    t = produce_values(broker.bootstrap, "acks-all", values, {"acks": "all", "enable.idempotence": True})
    check_acknowledged_and_readable(broker.bootstrap, "acks-all", values, t)


def raw_produce(bootstrap: str, topic: str, value: bytes, acks: int) -> tuple[int, int]:
    batch = kw.record_batch([(None, value)])
    with kw.Connection(bootstrap) as c:
        r = c.request(0, 3, kw.produce_v3_body(topic, 0, batch, acks=acks))
        return kw.parse_produce_v3(r)[(topic, 0)]


@pytest.mark.parametrize("where", ["topic", "broker"])
def test_min_insync_replicas_above_the_replica_count_is_capped_by_it(broker_factory, where):
    b = broker_factory(overrides={"min.insync.replicas": "2"} if where == "broker" else None)
    config = {"min.insync.replicas": "2"} if where == "topic" else {}
    create_topic(b.bootstrap, "min-isr", config=config)
    values = [f"min-isr-{i}".encode() for i in range(500)]
    t = produce_values(b.bootstrap, "min-isr", values, {"acks": "all"})
    check_acknowledged_and_readable(b.bootstrap, "min-isr", values, t)
    assert raw_produce(b.bootstrap, "min-isr", b"acks=-1", acks=-1) == (NONE, len(values))
    assert raw_produce(b.bootstrap, "min-isr", b"acks=1", acks=1) == (NONE, len(values) + 1)


def list_offsets_v4(c: kw.Connection, topic: str, current_leader_epoch: int) -> tuple[int, int, int]:
    """(error_code, offset, leader_epoch) of partition 0's latest offset."""
    body = (kw.i32(-1) + kw.i8(0)
            + kw.array([kw.string(topic) + kw.array([kw.i32(0) + kw.i32(current_leader_epoch) + kw.i64(LATEST)])]))
    r = c.request(LIST_OFFSETS, 4, body)
    r.i32()  # throttle_time_ms
    found = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            partition, error, _ts, offset, epoch = r.i32(), r.i16(), r.i64(), r.i64(), r.i32()
            found[partition] = (error, offset, epoch)
    return found[0]


def test_a_newer_current_leader_epoch_is_unknown_leader_epoch(broker):
    create_topic(broker.bootstrap, "epochs")
    assert raw_produce(broker.bootstrap, "epochs", b"one", acks=-1) == (NONE, 0)
    with kw.Connection(broker.bootstrap) as c:
        def fetch(epoch: int) -> kw.FetchPartition:
            body = kw.fetch_v11_body([("epochs", 0, 0)], current_leader_epoch=epoch)
            p = kw.parse_fetch_v11(c.request(1, 11, body)).partition("epochs", 0)
            assert p is not None
            return p

        for epoch in (-1, 0):  # none, and the topic's first leader epoch
            p = fetch(epoch)
            assert p.error_code == NONE and p.high_watermark == 1
            assert [r.value for r in kw.parse_record_batches(p.records)] == [b"one"]
        newer = fetch(1)
        assert (newer.error_code, newer.high_watermark, newer.records) == (UNKNOWN_LEADER_EPOCH, -1, b"")

        assert list_offsets_v4(c, "epochs", -1) == (NONE, 1, 0)
        assert list_offsets_v4(c, "epochs", 0) == (NONE, 1, 0)
        assert list_offsets_v4(c, "epochs", 1)[0] == UNKNOWN_LEADER_EPOCH
