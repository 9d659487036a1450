"""Fetch size limits over a raw socket (Fetch v11): partition_max_bytes and max_bytes
bound a response, in whole batches, except that the first batch of the first partition
with data is always returned whole, even if larger than the limits (KIP-74)."""

from __future__ import annotations

import kafkawire as kw
from e2e_util import DeliveryTracker, create_topic, flush_all, producer

TOPIC = "limits"
VALUE = b"x" * 1000


def produce_batches(bootstrap: str, partition: int, batches: int) -> None:
    """`batches` one-record batches of about 1 KB each."""
    p = producer(bootstrap, {"linger.ms": 0, "compression.type": "none"})
    t = DeliveryTracker()
    for i in range(batches):
        p.produce(TOPIC, value=VALUE, partition=partition, on_delivery=t.callback(i))
        flush_all(p)
    assert not t.errors, t.errors
    assert [t.ok[i][1] for i in range(batches)] == list(range(batches))


def fetch(conn: kw.Connection, partitions, **kwargs) -> kw.FetchResponse:
    return kw.parse_fetch_v11(conn.request(kw.API_FETCH, 11, kw.fetch_v11_body(partitions, **kwargs)))


def offsets(part: kw.FetchPartition) -> list[int]:
    return [r.offset for r in kw.parse_record_batches(part.records)]


def test_partition_max_bytes_bounds_each_partition_in_whole_batches(broker):
    create_topic(broker.bootstrap, TOPIC, partitions=2)
    produce_batches(broker.bootstrap, 0, 5)
    produce_batches(broker.bootstrap, 1, 5)
    with kw.Connection(broker.bootstrap) as conn:
        everything = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)])
        assert offsets(everything.partition(TOPIC, 0)) == [0, 1, 2, 3, 4]
        one_batch = len(everything.partition(TOPIC, 0).records) // 5
        limited = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)], partition_max_bytes=2 * one_batch + 10)
    assert offsets(limited.partition(TOPIC, 0)) == [0, 1]
    assert offsets(limited.partition(TOPIC, 1)) == [0, 1]


def test_max_bytes_bounds_the_whole_response(broker):
    create_topic(broker.bootstrap, TOPIC, partitions=2)
    produce_batches(broker.bootstrap, 0, 5)
    produce_batches(broker.bootstrap, 1, 5)
    with kw.Connection(broker.bootstrap) as conn:
        one_batch = len(fetch(conn, [(TOPIC, 0, 0)], partition_max_bytes=1).partition(TOPIC, 0).records)
        r = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)], max_bytes=3 * one_batch + 10)
    got = offsets(r.partition(TOPIC, 0)) + offsets(r.partition(TOPIC, 1))
    assert len(got) == 3, r
    assert offsets(r.partition(TOPIC, 0)) == [0, 1, 2]


def test_first_batch_is_returned_whole_even_when_larger_than_the_limits(broker):
    create_topic(broker.bootstrap, TOPIC, partitions=1)
    produce_batches(broker.bootstrap, 0, 2)
    with kw.Connection(broker.bootstrap) as conn:
        r = fetch(conn, [(TOPIC, 0, 0)], max_bytes=10, partition_max_bytes=10)
    part = r.partition(TOPIC, 0)
    assert part.error_code == 0
    assert offsets(part) == [0], "exactly the first batch, whole"
    assert [rec.value for rec in kw.parse_record_batches(part.records)] == [VALUE]
