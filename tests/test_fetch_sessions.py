"""Fetch over a raw socket (Fetch v11): KIP-227 incremental fetch sessions and long polling.

KIP-227 in short: a full fetch with session_id=0, epoch=0 opens a session and the broker
answers with its id; each later fetch names that id and the next epoch (1, 2, ...) and lists
only partitions whose fetch parameters changed — an unlisted partition is read from the
fetch offset the session remembers — and the response carries only partitions with records,
an error, or a changed high watermark / log start offset. A wrong epoch gets
INVALID_FETCH_SESSION_EPOCH (71), an unknown id FETCH_SESSION_ID_NOT_FOUND (70);
epoch -1 asks for a sessionless full fetch (response session id 0).
"""

from __future__ import annotations

import threading
import time

import pytest

import kafkawire as kw
from e2e_util import DeliveryTracker, create_topic, flush_all, producer

TOPIC = "sessions"
NONE = 0
FETCH_SESSION_ID_NOT_FOUND = 70
INVALID_FETCH_SESSION_EPOCH = 71


def fetch(conn: kw.Connection, partitions, **kwargs) -> kw.FetchResponse:
    return kw.parse_fetch_v11(conn.request(kw.API_FETCH, 11, kw.fetch_v11_body(partitions, **kwargs)))


def produce(bootstrap: str, partition: int, values: list[bytes], topic: str = TOPIC) -> list[int]:
    p = producer(bootstrap, {"linger.ms": 0, "compression.type": "none"})
    t = DeliveryTracker()
    for i, v in enumerate(values):
        p.produce(topic, key=b"key-%d" % i, value=v, headers=[("h", b"%d" % i)],
                  partition=partition, on_delivery=t.callback(i))
    flush_all(p)
    assert not t.errors, t.errors
    return [t.ok[i][1] for i in range(len(values))]


@pytest.fixture
def conn(broker):
    create_topic(broker.bootstrap, TOPIC, partitions=2)
    with kw.Connection(broker.bootstrap) as c:
        yield c


def open_session(conn: kw.Connection) -> int:
    """A full fetch of both (empty) partitions from offset 0 that opens a session."""
    r = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)], session_id=0, session_epoch=0)
    assert r.error_code == NONE, r
    assert r.session_id != 0, f"a full fetch with epoch 0 must open a session: {r}"
    return r.session_id


def test_full_fetch_with_epoch_0_opens_session_and_returns_every_partition(conn):
    r = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)], session_id=0, session_epoch=0)
    assert r.error_code == NONE, r
    assert r.session_id != 0, r
    for p in (0, 1):
        part = r.partition(TOPIC, p)
        assert part is not None, f"partition {p} missing from a full fetch response: {r}"
        assert (part.error_code, part.high_watermark, part.records) == (NONE, 0, b""), part
    # a second full fetch opens a different session
    again = fetch(conn, [(TOPIC, 0, 0)], session_id=0, session_epoch=0)
    assert again.session_id not in (0, r.session_id), again


def test_incremental_fetch_without_changes_returns_no_partitions(conn):
    sid = open_session(conn)
    r = fetch(conn, [], session_id=sid, session_epoch=1)
    assert (r.error_code, r.session_id, r.partitions) == (NONE, sid, []), r
    r = fetch(conn, [], session_id=sid, session_epoch=2)
    assert (r.error_code, r.session_id, r.partitions) == (NONE, sid, []), r


def test_incremental_fetch_returns_only_the_partition_with_new_records(broker, conn):
    sid = open_session(conn)
    assert fetch(conn, [], session_id=sid, session_epoch=1).partitions == []
    assert produce(broker.bootstrap, 1, [b"a", b"b", b"c"]) == [0, 1, 2]

    # partition 1 is not listed: the broker reads it from the offset the session remembers (0)
    r = fetch(conn, [], session_id=sid, session_epoch=2)
    assert (r.error_code, r.session_id) == (NONE, sid), r
    assert [(p.topic, p.partition) for p in r.partitions] == [(TOPIC, 1)], \
        f"only the partition with new records belongs in an incremental response: {r}"
    part = r.partitions[0]
    assert (part.error_code, part.high_watermark) == (NONE, 3), part
    recs = kw.parse_record_batches(part.records)
    assert [(x.offset, x.key, x.value, x.headers) for x in recs] == \
        [(i, b"key-%d" % i, v, [("h", b"%d" % i)]) for i, v in enumerate([b"a", b"b", b"c"])]


def test_unlisted_partition_is_read_from_the_session_fetch_offset_until_the_client_moves_it(broker, conn):
    sid = open_session(conn)
    produce(broker.bootstrap, 0, [b"x", b"y"])
    # the session still holds fetch offset 0 for partition 0: the records come again
    for epoch in (1, 2):
        r = fetch(conn, [], session_id=sid, session_epoch=epoch)
        part = r.partition(TOPIC, 0)
        assert part is not None, f"epoch {epoch}: {r}"
        assert [x.offset for x in kw.parse_record_batches(part.records)] == [0, 1], part
        assert r.partition(TOPIC, 1) is None, r
    # the client lists partition 0 with its new position: nothing new there, high watermark
    # unchanged since the last response, so the partition is left out
    r = fetch(conn, [(TOPIC, 0, 2)], session_id=sid, session_epoch=3)
    assert (r.error_code, r.partitions) == (NONE, []), r
    # and the session now remembers offset 2
    r = fetch(conn, [], session_id=sid, session_epoch=4)
    assert (r.error_code, r.partitions) == (NONE, []), r
    produce(broker.bootstrap, 0, [b"z"])
    r = fetch(conn, [], session_id=sid, session_epoch=5)
    part = r.partition(TOPIC, 0)
    assert part is not None and part.high_watermark == 3, r
    assert [(x.offset, x.value) for x in kw.parse_record_batches(part.records)] == [(2, b"z")], part


def test_forgotten_partition_leaves_the_session(broker, conn):
    sid = open_session(conn)
    r = fetch(conn, [], session_id=sid, session_epoch=1, forgotten=[(TOPIC, 1)])
    assert (r.error_code, r.partitions) == (NONE, []), r
    produce(broker.bootstrap, 1, [b"not-for-this-session"])
    produce(broker.bootstrap, 0, [b"still-watched"])
    r = fetch(conn, [], session_id=sid, session_epoch=2)
    assert [(p.topic, p.partition) for p in r.partitions] == [(TOPIC, 0)], r
    # adding it back with a fetch offset reads it again
    r = fetch(conn, [(TOPIC, 1, 0)], session_id=sid, session_epoch=3)
    part = r.partition(TOPIC, 1)
    assert part is not None, r
    assert [x.value for x in kw.parse_record_batches(part.records)] == [b"not-for-this-session"]


def test_forgetting_every_partition_closes_the_session(conn):
    # Kafka (FetchManager.newContext): a session left empty by forgotten_topics_data is removed
    # and the request is answered as a sessionless fetch, with session id 0
    sid = open_session(conn)
    r = fetch(conn, [], session_id=sid, session_epoch=1, forgotten=[(TOPIC, 0), (TOPIC, 1)])
    assert (r.error_code, r.session_id, r.partitions) == (NONE, 0, []), r
    r = fetch(conn, [], session_id=sid, session_epoch=2)
    assert r.error_code == FETCH_SESSION_ID_NOT_FOUND, r


def test_partition_error_is_repeated_in_every_incremental_response(conn):
    sid = open_session(conn)
    # fetch offset 50 of an empty partition: OFFSET_OUT_OF_RANGE (1), and errors are always sent
    for epoch, listed in ((1, [(TOPIC, 0, 50)]), (2, []), (3, [])):
        r = fetch(conn, listed, session_id=sid, session_epoch=epoch)
        assert r.error_code == NONE, r
        assert [(p.partition, p.error_code) for p in r.partitions] == [(0, 1)], f"epoch {epoch}: {r}"
    # back in range: no error any more, and then nothing to send
    r = fetch(conn, [(TOPIC, 0, 0)], session_id=sid, session_epoch=4)
    assert r.error_code == NONE and all(p.error_code == NONE for p in r.partitions), r
    r = fetch(conn, [], session_id=sid, session_epoch=5)
    assert r.partitions == [], r


def test_fetch_of_unknown_topic_or_partition_reports_unknown_topic_or_partition(conn):
    r = fetch(conn, [("no-such-topic", 0, 0), (TOPIC, 7, 0), (TOPIC, 0, 0)], session_id=0, session_epoch=-1)
    assert r.error_code == NONE, r
    assert [(p.topic, p.partition, p.error_code) for p in r.partitions] == \
        [("no-such-topic", 0, 3), (TOPIC, 7, 3), (TOPIC, 0, NONE)], r


def test_wrong_epoch_fails_with_invalid_fetch_session_epoch_and_keeps_the_session(conn):
    sid = open_session(conn)
    for bad in (2, 5, 0x7FFFFFFF):
        r = fetch(conn, [], session_id=sid, session_epoch=bad)
        assert r.error_code == INVALID_FETCH_SESSION_EPOCH, f"epoch {bad}: {r}"
        assert r.partitions == [], r
    # the session is still there at the epoch it expects
    r = fetch(conn, [], session_id=sid, session_epoch=1)
    assert (r.error_code, r.session_id) == (NONE, sid), r
    # an epoch already used is wrong too
    r = fetch(conn, [], session_id=sid, session_epoch=1)
    assert r.error_code == INVALID_FETCH_SESSION_EPOCH, r


def test_unknown_session_id_fails_with_fetch_session_id_not_found(conn):
    sid = open_session(conn)
    r = fetch(conn, [], session_id=sid + 12345, session_epoch=1)
    assert r.error_code == FETCH_SESSION_ID_NOT_FOUND, r
    assert r.partitions == [], r


def test_session_id_0_with_an_incremental_epoch_fails_with_fetch_session_id_not_found(conn):
    # Kafka (FetchManager.newContext): only epochs 0 and -1 are full fetches; any other
    # epoch looks the session id up, and there is never a session 0
    r = fetch(conn, [(TOPIC, 0, 0)], session_id=0, session_epoch=1)
    assert r.error_code == FETCH_SESSION_ID_NOT_FOUND, r


def test_epoch_minus_1_is_a_sessionless_full_fetch(broker, conn):
    produce(broker.bootstrap, 0, [b"r0", b"r1"])
    for _ in range(2):  # the same answer every time: nothing is remembered
        r = fetch(conn, [(TOPIC, 0, 0), (TOPIC, 1, 0)], session_id=0, session_epoch=-1)
        assert (r.error_code, r.session_id) == (NONE, 0), r
        assert [(p.partition, p.high_watermark) for p in r.partitions] == [(0, 2), (1, 0)], r
        assert [x.value for x in kw.parse_record_batches(r.partitions[0].records)] == [b"r0", b"r1"]


def test_epoch_minus_1_closes_an_open_session(conn):
    sid = open_session(conn)
    r = fetch(conn, [(TOPIC, 0, 0)], session_id=sid, session_epoch=-1)
    assert (r.error_code, r.session_id) == (NONE, 0), r
    assert r.partition(TOPIC, 0) is not None, r
    r = fetch(conn, [], session_id=sid, session_epoch=1)
    assert r.error_code == FETCH_SESSION_ID_NOT_FOUND, f"the session should be closed: {r}"


# ---- long polling ---------------------------------------------------------------------------
def test_long_poll_fetch_is_answered_when_a_record_arrives(broker, conn):
    max_wait_s = 5.0
    produced_at: list[float] = []

    def produce_later():
        time.sleep(0.5)
        produced_at.append(time.monotonic())
        produce(broker.bootstrap, 0, [b"wake-up"])

    t = threading.Thread(target=produce_later)
    start = time.monotonic()
    cid = conn.send(kw.API_FETCH, 11, kw.fetch_v11_body([(TOPIC, 0, 0)], session_id=0, session_epoch=-1,
                                                        max_wait_ms=int(max_wait_s * 1000), min_bytes=1))
    t.start()
    try:
        r = kw.parse_fetch_v11(conn.recv_response(cid))
        elapsed = time.monotonic() - start
    finally:
        t.join()
    part = r.partition(TOPIC, 0)
    assert part is not None and part.error_code == NONE, r
    assert [(x.offset, x.value) for x in kw.parse_record_batches(part.records)] == [(0, b"wake-up")], part
    assert produced_at, "producer thread did not run"
    assert elapsed < 4.0, (f"Fetch with max_wait_ms={int(max_wait_s * 1000)} was answered after {elapsed:.2f} s, "
                           f"{time.monotonic() - produced_at[0]:.2f} s after the record was produced: "
                           "it should be answered when the data arrives")


def test_incremental_long_poll_is_answered_when_a_session_partition_gets_a_record(broker, conn):
    sid = open_session(conn)

    def produce_later():
        time.sleep(0.5)
        produce(broker.bootstrap, 1, [b"for-the-session"])

    t = threading.Thread(target=produce_later)
    start = time.monotonic()
    cid = conn.send(kw.API_FETCH, 11, kw.fetch_v11_body([], session_id=sid, session_epoch=1,
                                                        max_wait_ms=5000, min_bytes=1))
    t.start()
    try:
        r = kw.parse_fetch_v11(conn.recv_response(cid))
        elapsed = time.monotonic() - start
    finally:
        t.join()
    assert (r.error_code, r.session_id) == (NONE, sid), r
    assert [(p.partition, p.high_watermark) for p in r.partitions] == [(1, 1)], r
    assert [x.value for x in kw.parse_record_batches(r.partitions[0].records)] == [b"for-the-session"]
    assert elapsed < 4.0, f"incremental Fetch (max_wait_ms=5000) answered after {elapsed:.2f} s"


def test_long_poll_fetch_without_data_waits_for_max_wait_and_returns_empty(conn):
    start = time.monotonic()
    r = fetch(conn, [(TOPIC, 0, 0)], session_id=0, session_epoch=-1, max_wait_ms=1000, min_bytes=1)
    elapsed = time.monotonic() - start
    part = r.partition(TOPIC, 0)
    assert part is not None and (part.error_code, part.records) == (NONE, b""), r
    assert elapsed >= 0.9, f"Fetch with min_bytes=1 and no data returned after {elapsed:.2f} s, before max_wait_ms=1000"
