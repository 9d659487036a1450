"""ListOffsets: earliest / latest, and by timestamp the first offset whose timestamp >= target
(inside multi-record batches too); a timestamp after the last record -> no offset."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_END, TopicPartition

from e2e_util import DeliveryTracker, consumer, create_topic, flush_all, producer, watermarks

T0 = 1_700_000_000_000
# offsets 0..4: one record per batch (flush after each), 1 s apart
SINGLE = [T0 + 1000 * i for i in range(5)]
# offsets 5..9: one batch of five records, 10 ms apart
BATCHED = [T0 + 10_000 + 10 * i for i in range(5)]
TIMESTAMPS = SINGLE + BATCHED

# (target timestamp, expected offset, expected record timestamp)
CASES = [
    (0, 0, SINGLE[0]),
    (T0 - 1, 0, SINGLE[0]),
    (T0, 0, SINGLE[0]),
    (T0 + 1, 1, SINGLE[1]),
    (T0 + 1000, 1, SINGLE[1]),
    (T0 + 3999, 4, SINGLE[4]),
    (T0 + 4000, 4, SINGLE[4]),
    (T0 + 4001, 5, BATCHED[0]),     # first record of the batch
    (T0 + 10_000, 5, BATCHED[0]),
    (T0 + 10_001, 6, BATCHED[1]),   # inside the batch
    (T0 + 10_020, 7, BATCHED[2]),
    (T0 + 10_031, 9, BATCHED[4]),
    (T0 + 10_040, 9, BATCHED[4]),   # last record
]
AFTER_LAST = T0 + 10_041


@pytest.fixture
def ts_topic(broker):
    topic = "timestamps"
    create_topic(broker.bootstrap, topic, partitions=1)
    t = DeliveryTracker()
    p = producer(broker.bootstrap, {"linger.ms": 0})
    for i, ts in enumerate(SINGLE):
        p.produce(topic, value=b"single-%d" % i, partition=0, timestamp=ts, on_delivery=t.callback(i))
        flush_all(p)
    p = producer(broker.bootstrap, {"linger.ms": 500, "batch.num.messages": 100})
    for i, ts in enumerate(BATCHED, start=len(SINGLE)):
        p.produce(topic, value=b"batched-%d" % i, partition=0, timestamp=ts, on_delivery=t.callback(i))
    flush_all(p)
    assert not t.errors
    assert [t.ok[i] for i in range(len(TIMESTAMPS))] == [(0, i) for i in range(len(TIMESTAMPS))]
    return topic


def test_watermarks_are_earliest_and_latest(broker, ts_topic):
    assert watermarks(broker.bootstrap, ts_topic) == (0, len(TIMESTAMPS))


def test_empty_topic_watermarks_are_zero(broker):
    create_topic(broker.bootstrap, "empty", partitions=1)
    assert watermarks(broker.bootstrap, "empty") == (0, 0)


def test_offsets_for_times_confluent_returns_first_offset_at_or_after_timestamp(broker, ts_topic):
    c = consumer(broker.bootstrap, {"group.id": "potok-e2e-oft"})
    try:
        for target, offset, _ts in CASES:
            (res,) = c.offsets_for_times([TopicPartition(ts_topic, 0, target)], timeout=15)
            assert res.error is None, f"target {target}: {res.error}"
            assert res.offset == offset, f"target {target}: offset {res.offset}, expected {offset}"
        (res,) = c.offsets_for_times([TopicPartition(ts_topic, 0, AFTER_LAST)], timeout=15)
        assert res.error is None
        assert res.offset == OFFSET_END == -1, f"timestamp after the last record: offset {res.offset}"
    finally:
        c.close()


def test_offsets_for_times_kafka_python_returns_offset_and_record_timestamp(broker, ts_topic):
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = KTP(ts_topic, 0)
        for target, offset, ts in CASES:
            res = c.offsets_for_times({tp: target})[tp]
            assert res is not None, f"target {target}: no offset"
            assert (res.offset, res.timestamp) == (offset, ts), f"target {target}: {res}"
        assert c.offsets_for_times({tp: AFTER_LAST})[tp] is None
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: len(TIMESTAMPS)}
    finally:
        c.close()


def test_admin_list_offsets_max_timestamp_is_the_record_with_the_largest_timestamp(broker, ts_topic):
    from confluent_kafka.admin import OffsetSpec
    from e2e_util import admin
    tp = TopicPartition(ts_topic, 0)
    specs = {
        "max": OffsetSpec.max_timestamp(),
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "inside-batch": OffsetSpec.for_timestamp(T0 + 10_001),
    }
    got = {}
    client = admin(broker.bootstrap)  # keep a reference: a collected client never completes its futures
    for name, spec in specs.items():
        result = client.list_offsets({tp: spec}, request_timeout=15)[tp].result(timeout=20)
        got[name] = (result.offset, result.timestamp)
    assert got["max"] == (9, BATCHED[4])
    assert got["earliest"][0] == 0
    assert got["latest"][0] == len(TIMESTAMPS)
    assert got["inside-batch"] == (6, BATCHED[1])


def test_max_timestamp_prefers_the_first_of_equal_timestamps(broker):
    from confluent_kafka.admin import OffsetSpec
    from e2e_util import admin
    topic = "max-ts-ties"
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap, {"linger.ms": 0})
    for ts in (T0 + 5, T0 + 9, T0 + 9, T0 + 1):
        p.produce(topic, value=b"v", partition=0, timestamp=ts)
        flush_all(p)
    tp = TopicPartition(topic, 0)
    client = admin(broker.bootstrap)
    result = client.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=15)[tp].result(timeout=20)
    assert (result.offset, result.timestamp) == (1, T0 + 9)
