"""A failed fsync or write takes its log dir offline (issue 9 item 4, Kafka's
LogDirFailureChannel): the dir's partitions answer KAFKA_STORAGE_ERROR until restart and
nothing there is retried, the other log dirs keep working, nothing acknowledged is lost,
and a failure of the metadata log's dir stops the broker.

Faults are real: an LD_PRELOAD shim (tests/faults/fail_fsync.c, compiled by conftest's
`fsync_fault` fixture) makes fsync/fdatasync of files under one directory fail with EIO while a
trigger file exists."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import KafkaAdminClient

import kafkawire as w
from e2e_util import admin, consume_confluent, create_topic

STORAGE_ERROR = 56
LEADER_NOT_AVAILABLE = 5
FAILED = "log dir failed"
TOPIC = "spread"
API_LIST_OFFSETS = 2
API_DELETE_RECORDS = 21


def _produce(c: w.Connection, partition: int, value: bytes) -> tuple[int, int]:
    """(error code, base offset) of one acks=1 produce request."""
    batch = w.record_batch([(None, value)])
    return w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body(TOPIC, partition, batch)))[(TOPIC, partition)]


def _list_offsets_error(c: w.Connection, partition: int) -> int:
    """The error code of ListOffsets v1 for the latest offset of one partition."""
    body = w.i32(-1) + w.array([w.string(TOPIC) + w.array([w.i32(partition) + w.i64(-1)])])
    r = c.request(API_LIST_OFFSETS, 1, body)
    topics = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i16(), r.i64(), r.i64()))))
    return topics[0][1][0][1]


def _delete_records_error(c: w.Connection, partition: int) -> int:
    """The error code of DeleteRecords v0 up to offset 1 of one partition."""
    body = w.array([w.string(TOPIC) + w.array([w.i32(partition) + w.i64(1)])]) + w.i32(10000)
    r = c.request(API_DELETE_RECORDS, 0, body)
    r.i32()  # throttle
    topics = r.array(lambda r: (r.string(), r.array(lambda r: (r.i32(), r.i64(), r.i16()))))
    return topics[0][1][0][2]


def _placement(dirs: list[Path], partitions: int) -> dict[int, Path]:
    found = {}
    for d in dirs:
        for p in range(partitions):
            if (d / f"{TOPIC}-{p}").is_dir():
                found[p] = d
    assert len(found) == partitions, found
    return found


def _errors(broker, needle: str) -> list[str]:
    return [l for l in broker.log_path.read_text(errors="replace").splitlines() if needle in l]


def _calls(calls: Path, directory: Path) -> list[str]:
    if not calls.exists():
        return []
    return [l for l in calls.read_text().splitlines() if os.path.realpath(directory) in l]


def test_a_failed_fsync_takes_its_log_dir_offline_and_the_others_keep_working(broker_factory, tmp_path, fsync_fault):
    root = tmp_path / "dirs"
    meta, bad, good = root / "meta", root / "bad", root / "good"
    trigger, calls = fsync_fault(bad)
    broker = broker_factory(overrides={"log.dirs": f"{meta},{bad},{good}"})
    # flush.messages=1: every append is fsynced before it is acknowledged.
    create_topic(broker.bootstrap, TOPIC, partitions=4, config={"flush.messages": "1"})
    placement = _placement([meta, bad, good], 4)
    on_bad = [p for p, d in placement.items() if d == bad]
    on_good = [p for p, d in placement.items() if d == good]
    assert on_bad and on_good, placement
    pb, pg = on_bad[0], on_good[0]

    acked: dict[int, list[bytes]] = {pb: [], pg: []}
    with w.Connection(broker.bootstrap) as c:
        for i in range(5):
            for p in (pb, pg):
                value = f"before-{p}-{i}".encode()
                assert _produce(c, p, value) == (0, i)
                acked[p].append(value)
        assert _calls(calls, bad), "the shim sees the broker's fsyncs"
        assert not _errors(broker, FAILED)

        trigger.touch()
        err, _ = _produce(c, pb, b"not-acknowledged")
        assert err == STORAGE_ERROR
        failing = [l for l in _calls(calls, bad) if " EIO " in l]
        assert failing, "the append's fsync failed"
        after_failure = len(_calls(calls, bad))
        trigger.unlink()  # the disk "works" again: nothing may notice or retry

        # Every partition of the failed dir is offline, also one that never failed itself.
        for p in on_bad:
            assert _produce(c, p, b"after")[0] == STORAGE_ERROR, p
            fetched = w.parse_fetch_v11(c.request(w.API_FETCH, 11, w.fetch_v11_body([(TOPIC, p, 0)])))
            assert fetched.partition(TOPIC, p).error_code == STORAGE_ERROR, p
        # The other log dir keeps taking writes.
        for i in range(5, 10):
            value = f"during-{pg}-{i}".encode()
            assert _produce(c, pg, value) == (0, i)
            acked[pg].append(value)

        # Real clients see no leader (below) and do not ask; asked directly, the broker
        # answers ListOffsets and DeleteRecords with KAFKA_STORAGE_ERROR too.
        assert _list_offsets_error(c, pb) == STORAGE_ERROR
        assert _delete_records_error(c, pb) == STORAGE_ERROR
        assert _list_offsets_error(c, pg) == 0

    a = admin(broker.bootstrap)
    md = a.list_topics(TOPIC, timeout=10).topics[TOPIC]
    for p, d in placement.items():
        if d == bad:
            assert md.partitions[p].leader == -1 and md.partitions[p].error.code() == LEADER_NOT_AVAILABLE, p
        else:
            assert md.partitions[p].leader == 1 and md.partitions[p].error is None, p

    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        described = kp.describe_log_dirs()
    finally:
        kp.close()
    dirs = {d["log_dir"]: d for b in described for d in b["log_dirs"]}
    assert dirs[str(bad)]["error_code"] == STORAGE_ERROR and not dirs[str(bad)]["topics"], dirs
    assert dirs[str(good)]["error_code"] == 0 and dirs[str(meta)]["error_code"] == 0, dirs

    got = consume_confluent(broker.bootstrap, TOPIC, pg, len(acked[pg]))
    assert [m.value() for m in got] == acked[pg]

    # One ERROR line, naming the dir and the cause; the failed fsync was never retried.
    time.sleep(0.5)  # several ticks of the time-based flusher
    lines = _errors(broker, FAILED)
    assert len(lines) == 1 and "ERROR" in lines[0] and str(bad) in lines[0], lines
    assert "Input/output error" in lines[0] or "os error 5" in lines[0], lines[0]
    assert len(_calls(calls, bad)) == after_failure, "nothing touches the failed dir again"

    # After a restart the dir is back, with everything that was acknowledged.
    assert broker.stop() == 0
    broker.start()
    with w.Connection(broker.bootstrap) as c:
        err, offset = _produce(c, pb, b"after-restart")
    # The unacknowledged record may have reached the disk (as in Kafka): then it is at 5.
    assert err == 0 and offset in (5, 6), (err, offset)
    got = [m.value() for m in consume_confluent(broker.bootstrap, TOPIC, pb, offset + 1)]
    assert got[:5] == acked[pb], "nothing acknowledged is lost"
    assert got[5:offset] in ([], [b"not-acknowledged"]) and got[offset] == b"after-restart", got
    got = consume_confluent(broker.bootstrap, TOPIC, pg, len(acked[pg]))
    assert [m.value() for m in got] == acked[pg]


def test_a_failure_of_the_metadata_log_dir_stops_the_broker(broker_factory, tmp_path, fsync_fault):
    data = tmp_path / "only"
    trigger, _ = fsync_fault(data)
    broker = broker_factory(overrides={"log.dirs": str(data)})
    create_topic(broker.bootstrap, "first")
    trigger.touch()
    broker.expected_down = True  # the harness must not count the stop as a crash
    # A topic config change is a metadata log append, fsynced before it is answered.
    a = admin(broker.bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, "first",
                              incremental_configs=[ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException):
        a.incremental_alter_configs([resource], request_timeout=10)[resource].result(timeout=15)
    code = broker.proc.wait(timeout=30)
    assert code == 1, code
    lines = _errors(broker, "the log dir holding the metadata log failed")
    assert len(lines) == 1 and str(data) in lines[0], lines
