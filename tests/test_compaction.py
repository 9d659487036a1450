"""Log compaction (`cleanup.policy=compact`) seen by real clients.

* Records the cleaner keeps read back exactly as produced: key, value, every header in
  order (duplicate keys and null values too), timestamp and offset, with every codec,
  through confluent-kafka and kcat, after the cleaner has rewritten the segments.
* Segments emptied by compaction are merged, so a compacted topic with tiny segments
  (and __consumer_offsets under frequent commits) keeps a bounded number of segments.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from e2e_util import consumer, create_topic, flush_all, producer

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
KEYS = [b"", b"k1", b"k2", b"k3", b"k4", b"k5", b"k6", b"k7"]
# Duplicate keys, null and empty values, an empty key: Kafka keeps every header as sent.
HEADERS = [("dup", b"first"), ("trace", b"t"), ("dup", None), ("", b""), ("dup", b"third"), ("n", None)]
CLEANER = {"log.cleaner.backoff.ms": "100"}


def _segment_files(broker, topic: str, partition: int = 0) -> list[Path]:
    return sorted((Path(broker.overrides["log.dirs"]) / f"{topic}-{partition}").glob("*.log"))


def _wait_for(what: str, condition, timeout: float = 120.0, broker=None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"; broker log tail:\n{broker.tail()}" if broker is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(0.2)


def _compacted(broker, topic: str) -> bool:
    """The broker logged a pass of the cleaner over `topic` that removed records."""
    text = broker.log_path.read_text(errors="replace")
    return any(f"topic={topic} " in line and "compacted" in line and "removed=0 " not in line
               for line in text.splitlines())


def _read_all(bootstrap: str, topic: str) -> list[tuple]:
    """Every record of partition 0 from the beginning, with confluent-kafka, as
    (offset, key, value, headers, timestamp)."""
    c = consumer(bootstrap, {"group.id": "compaction-reader", "enable.partition.eof": True,
                             "auto.offset.reset": "earliest"})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise AssertionError(f"consumer error: {msg.error()}")
            out.append((msg.offset(), msg.key(), msg.value(), msg.headers() or [], msg.timestamp()[1]))
        raise AssertionError(f"no end of partition within 60s after {len(out)} records")
    finally:
        c.close()


def _read_all_kcat(bootstrap: str, topic: str) -> list[tuple]:
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (scripts/test installs it with apt-get)")
    res = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
                          "-q", "-J"], capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    out = []
    for line in res.stdout.decode().splitlines():
        m = json.loads(line)
        flat = m.get("headers") or []
        headers = [(flat[i], None if flat[i + 1] is None else flat[i + 1].encode())
                   for i in range(0, len(flat), 2)]
        enc = lambda v: None if v is None else v.encode()  # noqa: E731
        out.append((m["offset"], enc(m["key"]), enc(m["payload"]), headers, m["ts"]))
    return out


def _check_compacted(produced: dict[int, tuple], read: list[tuple], reader: str) -> None:
    """Every record read is the one produced at its offset, byte for byte; every key's
    latest record is there; whatever is missing was superseded by a later record."""
    assert read, f"{reader}: nothing read"
    offsets = [r[0] for r in read]
    assert offsets == sorted(set(offsets)), f"{reader}: offsets not increasing"
    for r in read:
        assert r[0] in produced, f"{reader}: offset {r[0]} was never produced"
        assert r == produced[r[0]], f"{reader}: record at offset {r[0]} changed:\n{r}\n!=\n{produced[r[0]]}"
    latest = {}
    for offset, rec in sorted(produced.items()):
        latest[rec[1]] = offset
    present = set(offsets)
    for key, offset in latest.items():
        assert offset in present, f"{reader}: the latest record of key {key!r} (offset {offset}) is gone"
    for offset, rec in produced.items():
        if offset not in present:
            assert latest[rec[1]] > offset, f"{reader}: offset {offset} went without being superseded"
    assert len(read) < len(produced), f"{reader}: nothing was compacted away"


@pytest.mark.broker_config(**CLEANER)
def test_kept_records_read_back_byte_identical_with_every_codec(broker):
    topics = {codec: f"compact-{codec}" for codec in CODECS}
    for codec, topic in topics.items():
        create_topic(broker.bootstrap, topic, config={
            "cleanup.policy": "compact", "segment.bytes": "1024",
            "min.cleanable.dirty.ratio": "0.01"})
    produced: dict[str, dict[int, tuple]] = {}
    for codec, topic in topics.items():
        p = producer(broker.bootstrap, {"compression.type": codec, "linger.ms": 20,
                                        "batch.num.messages": 7})
        offsets: dict[int, int] = {}
        sent: list[tuple] = []

        def report(i):
            def cb(err, msg):
                assert err is None, f"{topic}: message {i}: {err}"
                offsets[i] = msg.offset()
            return cb

        for i in range(400):
            key = KEYS[i % len(KEYS)]
            # Every 5th record of a key is a tombstone (a null value): legal in a compacted topic.
            value = None if (i // len(KEYS)) % 5 == 3 else f"{codec}-value-{i}".encode() * (1 + i % 3)
            headers = HEADERS[: 1 + i % len(HEADERS)] + [("i", str(i).encode())]
            ts = 1_700_000_000_000 + i * 7
            sent.append((key, value, headers, ts))
            p.produce(topic, key=key, value=value, headers=headers, timestamp=ts, partition=0,
                      on_delivery=report(i))
            if i % 50 == 49:
                flush_all(p)
        flush_all(p)
        produced[topic] = {offsets[i]: (offsets[i], *sent[i]) for i in range(len(sent))}
        # The cleaner may already have merged segments: the active one's base tells that
        # the log rolled many times.
        active_base = int(_segment_files(broker, topic)[-1].stem)
        assert active_base >= 100, f"{topic}: small segments rolled (active segment at {active_base})"

    for topic in topics.values():
        _wait_for(f"the cleaner to compact {topic}", lambda: _compacted(broker, topic), broker=broker)
    for topic in topics.values():
        _check_compacted(produced[topic], _read_all(broker.bootstrap, topic), f"confluent-kafka {topic}")
        _check_compacted(produced[topic], _read_all_kcat(broker.bootstrap, topic), f"kcat {topic}")

    # The rewritten segments are what a restart finds.
    broker.restart()
    for topic in topics.values():
        _check_compacted(produced[topic], _read_all(broker.bootstrap, topic), f"after restart {topic}")


@pytest.mark.broker_config(**CLEANER)
def test_compaction_keeps_the_number_of_segments_bounded(broker):
    topic = "ten-keys"
    create_topic(broker.bootstrap, topic, config={
        "cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"})
    p = producer(broker.bootstrap, {"linger.ms": 0})
    latest: dict[bytes, bytes] = {}
    seen: set[str] = set()
    for wave in range(30):
        for i in range(100):
            key, value = f"key-{i % 10}".encode(), f"w{wave}-{i}".encode()
            latest[key] = value
            p.produce(topic, key=key, value=value, partition=0)
        flush_all(p)
        seen |= {f.name for f in _segment_files(broker, topic)}
        time.sleep(0.1)  # let the cleaner run between waves, as under steady traffic
    assert len(seen) >= 20, f"segments rolled ({sorted(seen)})"
    # Without merging, every rolled segment stays (emptied); with it, a handful remain.
    _wait_for("the compacted topic to shrink to a few segments",
              lambda: len(_segment_files(broker, topic)) <= 6, broker=broker)
    read = _read_all(broker.bootstrap, topic)
    final = {}
    for _, key, value, _, _ in read:
        final[key] = value
    assert final == latest, "every key reads back its latest value"
    assert len(read) <= 3000 // 10, f"{len(read)} records left of 3000"


@pytest.mark.broker_config(**CLEANER, **{"offsets.topic.num.partitions": "1",
                                         "offsets.topic.segment.bytes": "2048"})
def test_consumer_offsets_under_frequent_commits_keeps_few_segments(broker):
    topic = "committed"
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    for i in range(50):
        p.produce(topic, value=f"m{i}".encode(), partition=0)
    flush_all(p)
    c = consumer(broker.bootstrap, {"group.id": "frequent-committer"})
    try:
        tp = TopicPartition(topic, 0)
        for _ in range(40):
            for offset in range(1, 51):
                c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
        assert c.committed([tp], timeout=10)[0].offset == 50
    finally:
        c.close()
    offsets_dir = "__consumer_offsets"
    _wait_for("__consumer_offsets to shrink to a few segments",
              lambda: len(_segment_files(broker, offsets_dir)) <= 6, broker=broker)
    broker.restart()
    c = consumer(broker.bootstrap, {"group.id": "frequent-committer"})
    try:
        got = c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        c.close()
    assert got == 50, "the compacted log still holds the last commit"
