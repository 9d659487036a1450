"""Hostile clients: every quantity a client controls is bounded before the broker spends
memory on it, and every lie in a frame gets Kafka's precise error. One test per defect of
this kind (issue 8 items 6-9, issue 7's compressed-batch and zstd items); raw frames where
real clients would not send them. Grow this module with every new defect of the kind."""

from __future__ import annotations

import gzip
import socket
import struct
import threading
import time

import lz4.frame
import pytest
import snappy
import zstandard
from confluent_kafka import KafkaException
from confluent_kafka.admin import NewPartitions, NewTopic

import kafkawire as w
from e2e_util import admin, consume_confluent, create_topic, flush_all, list_topics, producer, watermarks

CORRUPT_MESSAGE = 2
POLICY_VIOLATION = 44
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87
API_CREATE_PARTITIONS = 37

NONE, GZIP, SNAPPY, LZ4, ZSTD = range(5)
CODECS = {"gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
SNAPPY_XERIAL = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)


def compress(codec: int, data: bytes) -> bytes:
    if codec == GZIP:
        return gzip.compress(data)
    if codec == SNAPPY:  # xerial framing, as the Java client writes it
        out = bytearray(SNAPPY_XERIAL)
        for i in range(0, len(data), 32 * 1024):
            block = snappy.compress(data[i:i + 32 * 1024])
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    if codec == LZ4:
        return lz4.frame.compress(data)
    return zstandard.ZstdCompressor().compress(data)


def batch(values: list[bytes], codec: int = NONE, claimed: int | None = None,
          payload: bytes | None = None) -> bytes:
    """A v2 batch of `values`, its records section compressed with `codec` (or replaced by
    `payload`), claiming `claimed` records (default: as many as it holds); CRC valid."""
    plain = w.record_batch([(None, v) for v in values])
    section = payload if payload is not None else compress(codec, plain[61:]) if codec else plain[61:]
    b = bytearray(plain[:61] + section)
    b[8:12] = w.i32(len(b) - 12)
    b[21:23] = w.i16(codec)
    if claimed is not None:
        b[23:27] = w.i32(claimed - 1)
        b[57:61] = w.i32(claimed)
    b[17:21] = struct.pack(">I", w.crc32c(bytes(b[21:])))
    return bytes(b)


def produce(conn: w.Connection, topic: str, records: bytes, version: int = 3, partition: int = 0) -> int:
    """Produce v3..v7 (one request layout); the partition's error code."""
    r = conn.request(w.API_PRODUCE, version, w.produce_v3_body(topic, partition, records))
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    assert r.i32() == partition
    return r.i16()


def fetch(conn: w.Connection, partitions, **kw) -> w.FetchResponse:
    return w.parse_fetch_v11(conn.request(w.API_FETCH, 11, w.fetch_v11_body(partitions, **kw)))


def fetch_v9(conn: w.Connection, topic: str, offset: int) -> tuple[int, bytes]:
    """Fetch v9 (before zstd, KIP-110) of partition 0: (error code, records)."""
    body = w.fetch_v11_body([(topic, 0, offset)])
    body = body[:-2]  # v9 has no rack_id (an empty string here)
    r = conn.request(w.API_FETCH, 9, body)
    r.i32(), r.i16(), r.i32()  # throttle, error, session id
    assert r.i32() == 1 and r.string() == topic and r.i32() == 1
    assert r.i32() == 0
    err = r.i16()
    r.i64(), r.i64(), r.i64()  # high watermark, last stable offset, log start
    r.array(lambda rr: (rr.i64(), rr.i64()))  # aborted transactions
    n = r.i32()
    return err, b"" if n < 0 else r.take(n)


def values(n: int, size: int = 10, prefix: bytes = b"v") -> list[bytes]:
    return [prefix + b"%08d" % i + b"x" * max(0, size - 9 - len(prefix)) for i in range(n)]


def produce_values(bootstrap: str, topic: str, batches: int, per_batch: int, size: int) -> list[bytes]:
    """Produces `batches` uncompressed batches over one raw connection; all values in order."""
    sent = []
    with w.Connection(bootstrap) as conn:
        for b in range(batches):
            vs = values(per_batch, size, prefix=b"b%04d-" % b)
            assert produce(conn, topic, batch(vs)) == 0
            sent += vs
    return sent


def check_records(records: bytes, sent: list[bytes], first: int = 0) -> int:
    """Every record of `records` is the one sent at its offset, consecutive from `first`."""
    got = w.parse_record_batches(records)
    assert got, "no records"
    for i, rec in enumerate(got):
        assert rec.offset == first + i, f"record {i} has offset {rec.offset}"
        assert rec.value == sent[rec.offset]
    return len(got)


# ---- Fetch (issue 8 item 6) -------------------------------------------------------------

@pytest.mark.broker_config(**{"fetch.max.bytes": "1048576"})
def test_fetch_max_bytes_caps_every_response(broker):
    create_topic(broker.bootstrap, "big")
    sent = produce_values(broker.bootstrap, "big", batches=30, per_batch=10, size=10_000)  # ~3 MB
    with w.Connection(broker.bootstrap) as conn:
        res = fetch(conn, [("big", 0, 0)], max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
        p = res.partition("big", 0)
        assert p.error_code == 0 and p.high_watermark == len(sent)
        assert 0 < len(p.records) <= 1048576, f"{len(p.records)} bytes despite fetch.max.bytes=1048576"
        n = check_records(p.records, sent)
        # And the next fetch goes on from there.
        res = fetch(conn, [("big", 0, n)], max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
        check_records(res.partition("big", 0).records, sent, first=n)


def test_a_partition_listed_many_times_is_read_once_from_its_last_listing(broker):
    create_topic(broker.bootstrap, "dup")
    sent = produce_values(broker.bootstrap, "dup", batches=10, per_batch=10, size=100)
    with w.Connection(broker.bootstrap) as conn:
        listings = [("dup", 0, 0)] * 19 + [("dup", 0, 50)]
        res = fetch(conn, listings, partition_max_bytes=1 << 20)
        # FetchResponse.partition asserts the partition appears once.
        p = res.partition("dup", 0)
        assert len(res.partitions) == 1, res
        assert check_records(p.records, sent, first=50) == 50


@pytest.mark.broker_config(**{"potok.fetch.memory.bytes": str(8 << 20), "fetch.max.bytes": str(8 << 20)})
def test_fetch_responses_in_flight_share_one_memory_budget(broker):
    create_topic(broker.bootstrap, "wide")
    sent = produce_values(broker.bootstrap, "wide", batches=8, per_batch=10, size=100_000)  # 8 MB
    base = broker.rss_kb()
    n_clients = 30
    conns = [w.Connection(broker.bootstrap, timeout=120) for _ in range(n_clients)]
    try:
        body = w.fetch_v11_body([("wide", 0, 0)], max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
        cids = [c.send(w.API_FETCH, 11, body) for c in conns]
        # Nobody reads yet: without a budget every response (30 x 8 MB) is built and held.
        time.sleep(2)
        peak = broker.rss_kb()
        results: list = [None] * n_clients

        def read(i):
            results[i] = w.parse_fetch_v11(conns[i].recv_response(cids[i]))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(n_clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for res in results:
            assert res is not None, "a fetch was never answered"
            check_records(res.partition("wide", 0).records, sent)
    finally:
        for c in conns:
            c.close()
    grew_mb = (peak - base) / 1024
    # A budget of 8 MB: a response or two in memory, not thirty (240 MB and its copy).
    assert grew_mb < 100, f"RSS grew by {grew_mb:.0f} MB with 30 fetches of 8 MB waiting"


# ---- CreateTopics / CreatePartitions (issue 8 item 7) -----------------------------------

def test_create_partitions_to_millions_is_a_policy_violation(broker):
    create_topic(broker.bootstrap, "grow", partitions=2)
    # Raw, as in the issue: a 38-byte-ish frame asking for 8,388,611 partitions.
    body = w.array([w.string("grow") + w.i32(8_388_611) + w.array(None)]) + w.i32(30000) + w.i8(0)
    with w.Connection(broker.bootstrap) as conn:
        r = conn.request(API_CREATE_PARTITIONS, 1, body)
        r.i32()  # throttle
        assert r.i32() == 1 and r.string() == "grow"
        err, message = r.i16(), r.string()
    assert err == POLICY_VIOLATION, (err, message)
    assert message == "Unable to perform excessively large batch operation."  # Kafka's controller
    assert broker.rss_kb() < 200 * 1024
    assert list_topics(broker.bootstrap)["grow"] == 2
    # A sane increase still works.
    a = admin(broker.bootstrap)  # kept alive until the future resolves
    a.create_partitions([NewPartitions("grow", 4)])["grow"].result(30)
    assert list_topics(broker.bootstrap)["grow"] == 4


def test_create_topics_with_100000_partitions_is_a_policy_violation_not_a_storage_error(broker):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic("huge", 100_000, 1), NewTopic("small", 1, 1)])
    for name in ("huge", "small"):  # the whole request is refused, as Kafka's controller does
        with pytest.raises(KafkaException) as e:
            fs[name].result(60)
        assert e.value.args[0].code() == POLICY_VIOLATION, e.value
        assert "Excessively large number of partitions per request" in e.value.args[0].str()
    topics = list_topics(broker.bootstrap)
    assert "huge" not in topics and "small" not in topics


@pytest.mark.broker_config(**{"potok.max.partitions": "20"})
def test_the_broker_hosts_at_most_potok_max_partitions(broker):
    create_topic(broker.bootstrap, "a", partitions=15)
    with pytest.raises(KafkaException) as e:
        create_topic(broker.bootstrap, "b", partitions=6)
    assert e.value.args[0].code() == POLICY_VIOLATION and "potok.max.partitions" in e.value.args[0].str()
    a = admin(broker.bootstrap)
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions("a", 21)])["a"].result(30)
    assert e.value.args[0].code() == POLICY_VIOLATION
    create_topic(broker.bootstrap, "c", partitions=5)
    topics = list_topics(broker.bootstrap)
    assert topics["a"] == 15 and topics["c"] == 5 and "b" not in topics


# ---- Compressed batches (issue 8 item 8, issue 7) ---------------------------------------

@pytest.mark.parametrize("codec", CODECS)
def test_compressed_batches_that_lie_about_their_records_are_refused(broker, codec):
    c = CODECS[codec]
    create_topic(broker.bootstrap, "lies")
    with w.Connection(broker.bootstrap) as conn:
        def send(b):
            return produce(conn, "lies", b, version=7)  # v7: zstd allowed
        assert send(batch([b"first"], c)) == 0
        # 2^31-1 claimed, one inside: would move the log end by 2^31-1.
        assert send(batch([b"one"], c, claimed=2**31 - 1)) == INVALID_RECORD
        # One claimed, three inside: offsets would overlap the next batch.
        assert send(batch([b"a", b"b", b"c"], c, claimed=1)) == INVALID_RECORD
        # Not compressed with the codec at all.
        assert send(batch([b"x"], c, payload=b"this is not " + codec.encode())) == CORRUPT_MESSAGE
        assert send(batch([b"last", b"one"], c)) == 0
    assert watermarks(broker.bootstrap, "lies") == (0, 3)
    # A librdkafka consumer reads every record, none twice, and is not stuck.
    msgs = consume_confluent(broker.bootstrap, "lies", 0, 3)
    assert [(m.offset(), m.value()) for m in msgs] == [(0, b"first"), (1, b"last"), (2, b"one")]


@pytest.mark.parametrize("codec", CODECS)
def test_real_clients_compressed_batches_are_still_accepted(broker, codec):
    create_topic(broker.bootstrap, "real")
    p = producer(broker.bootstrap, {"compression.type": codec, "linger.ms": 20, "batch.num.messages": 100})
    sent = values(1000, size=50)
    for v in sent:
        p.produce("real", value=v, partition=0)
    flush_all(p)
    msgs = consume_confluent(broker.bootstrap, "real", 0, len(sent))
    assert [(m.offset(), m.value()) for m in msgs] == list(enumerate(sent))


def test_zstd_is_refused_to_produce_below_v7_and_to_fetch_below_v10(broker):
    create_topic(broker.bootstrap, "z")
    create_topic(broker.bootstrap, "g")
    with w.Connection(broker.bootstrap) as conn:
        assert produce(conn, "z", batch([b"zstd by an old client"], ZSTD)) == UNSUPPORTED_COMPRESSION_TYPE
        assert produce(conn, "g", batch([b"gzip by an old client"], GZIP)) == 0
    assert watermarks(broker.bootstrap, "z") == (0, 0)
    # A current client stores zstd (Produce v7+) ...
    p = producer(broker.bootstrap, {"compression.type": "zstd"})
    for i in range(100):  # compressible, so librdkafka keeps the zstd batch
        p.produce("z", value=b"zstd by a new client %d " % i * 10, partition=0)
    flush_all(p)
    with w.Connection(broker.bootstrap) as conn:
        # ... which an old fetcher cannot decode: refused, no data.
        err, records = fetch_v9(conn, "z", 0)
        assert (err, records) == (UNSUPPORTED_COMPRESSION_TYPE, b"")
        err, records = fetch_v9(conn, "g", 0)
        assert err == 0 and records[21:23] == w.i16(GZIP)
        # Fetch v11 serves it.
        p11 = fetch(conn, [("z", 0, 0)]).partition("z", 0)
        assert p11.error_code == 0 and p11.records[21:23] == w.i16(ZSTD)


# ---- Connections (issue 8 item 9) --------------------------------------------------------

def api_versions(conn: w.Connection) -> None:
    r = conn.request(w.API_VERSIONS, 0, b"")
    assert r.i16() == 0


@pytest.mark.broker_config(**{"connections.max.idle.ms": "1000"})
def test_an_idle_connection_is_closed_after_connections_max_idle_ms(broker):
    with w.Connection(broker.bootstrap) as idle, w.Connection(broker.bootstrap) as busy:
        api_versions(idle)
        assert idle.closed_by_peer(timeout=30)
        api_versions(busy)


@pytest.mark.broker_config(**{"potok.request.receive.timeout.ms": "1000"})
def test_a_request_that_never_arrives_whole_is_closed(broker):
    with w.Connection(broker.bootstrap) as slow:
        frame = w.request_frame(w.API_VERSIONS, 0, 1, b"")
        slow.send_raw(frame[:6])  # the size and two bytes, then nothing
        assert slow.closed_by_peer(timeout=30)
    with w.Connection(broker.bootstrap) as ok:
        api_versions(ok)


def connect_from(source_ip: str, bootstrap: str) -> w.Connection:
    """A raw connection from `source_ip` (any 127.0.0.x is this host)."""
    host, port = bootstrap.rsplit(":", 1)
    conn = w.Connection.__new__(w.Connection)
    conn.sock = socket.create_connection((host, int(port)), timeout=15, source_address=(source_ip, 0))
    conn.next_correlation_id = 1
    return conn


@pytest.mark.broker_config(**{"max.connections.per.ip": "3", "max.connections.per.ip.overrides": "127.0.0.3:5"})
def test_connections_per_ip_are_limited_with_overrides(broker):
    # Sources other than the harness's own 127.0.0.1, so only these connections count.
    for source, limit in (("127.0.0.2", 3), ("127.0.0.3", 5)):
        open_ = [connect_from(source, broker.bootstrap) for _ in range(limit)]
        try:
            for c in open_:
                api_versions(c)
            with connect_from(source, broker.bootstrap) as extra:
                assert extra.closed_by_peer(timeout=30), f"connection {limit + 1} from {source} was served"
            open_.pop().close()
            deadline = time.monotonic() + 30
            while True:  # the slot frees once the broker has seen the close
                with connect_from(source, broker.bootstrap) as again:
                    try:
                        api_versions(again)
                        break
                    except (ConnectionError, OSError):
                        assert time.monotonic() < deadline, f"a freed slot of {source} was never given back"
                        time.sleep(0.1)
        finally:
            for c in open_:
                c.close()


@pytest.mark.broker_config(**{"max.connections": "2"})
def test_max_connections_makes_new_connections_wait(broker):
    a, b = w.Connection(broker.bootstrap), w.Connection(broker.bootstrap)
    api_versions(a)
    api_versions(b)
    waiting = w.Connection(broker.bootstrap, timeout=2)
    try:
        cid = waiting.send(w.API_VERSIONS, 0, b"")
        with pytest.raises(socket.timeout):
            waiting.recv_frame()  # not accepted while two are open
        a.close()
        waiting.sock.settimeout(30)
        r = waiting.recv_response(cid)
        assert r.i16() == 0
    finally:
        for c in (a, b, waiting):
            c.close()


def test_idle_connections_hold_no_buffers_and_memory_comes_back(broker):
    n = 2000
    base = broker.rss_kb()
    conns = []
    try:
        for _ in range(n):
            c = w.Connection(broker.bootstrap)
            conns.append(c)
            api_versions(c)
        during = broker.rss_kb()
    finally:
        for c in conns:
            c.close()
    # Wait until the broker has seen every close (the count of its sockets drops).
    deadline = time.monotonic() + 60
    while len(broker_sockets(broker)) > 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = broker.rss_kb()
    per_conn_kb = (during - base) / n
    assert per_conn_kb < 16, f"{per_conn_kb:.1f} kB per idle connection"
    assert after - base < 32 * 1024, f"RSS {after - base} kB above the start after {n} connections closed"


def broker_sockets(broker) -> list[str]:
    import os
    fd_dir = f"/proc/{broker.proc.pid}/fd"
    out = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.append(target)
    return out


@pytest.mark.broker_config(**{"potok.fetch.memory.bytes": str(8 << 20), "fetch.max.bytes": str(8 << 20),
                              "potok.request.receive.timeout.ms": "1000"})
def test_a_client_that_never_reads_its_fetch_response_cannot_hold_the_memory_budget(broker):
    create_topic(broker.bootstrap, "stall")
    sent = produce_values(broker.bootstrap, "stall", batches=8, per_batch=10, size=100_000)  # 8 MB
    body = w.fetch_v11_body([("stall", 0, 0)], max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
    host, port = broker.bootstrap.rsplit(":", 1)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # so the response cannot fit
    stalled.connect((host, int(port)))
    try:
        stalled.sendall(w.request_frame(w.API_FETCH, 11, 1, body))
        time.sleep(1)  # the broker is now writing to a client that reads nothing
        # It holds the whole budget until it is closed; then another fetch is served.
        with w.Connection(broker.bootstrap, timeout=60) as reader:
            res = w.parse_fetch_v11(reader.recv_response(reader.send(w.API_FETCH, 11, body)))
            check_records(res.partition("stall", 0).records, sent)
    finally:
        stalled.close()


@pytest.mark.broker_config(**{"potok.fetch.memory.bytes": str(2 << 20), "fetch.max.bytes": str(2 << 20)})
def test_pipelined_fetches_larger_than_the_budget_are_all_answered(broker):
    create_topic(broker.bootstrap, "pipe")
    sent = produce_values(broker.bootstrap, "pipe", batches=4, per_batch=10, size=100_000)  # 4 MB
    body = w.fetch_v11_body([("pipe", 0, 0)], max_bytes=2**31 - 1, partition_max_bytes=2**31 - 1)
    with w.Connection(broker.bootstrap, timeout=60) as conn:
        # Three fetches in one write: each reserves the whole budget in turn.
        frames = b"".join(w.request_frame(w.API_FETCH, 11, cid, body) for cid in (1, 2, 3))
        conn.send_raw(frames)
        for cid in (1, 2, 3):
            res = w.parse_fetch_v11(conn.recv_response(cid))
            check_records(res.partition("pipe", 0).records, sent)
