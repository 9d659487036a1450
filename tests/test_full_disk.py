"""A full disk takes its log dir offline (issue 9 item 4, as Kafka does): produce requests
get KAFKA_STORAGE_ERROR, the broker logs one ERROR line for the dir (not one per request),
nothing is written there again once space is back (no retry), the broker keeps running,
and after a restart the dir is back with every acknowledged record."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

import kafkawire as w
from e2e_util import admin, consume_confluent, create_topic, flush_all, producer

FAILED = "log dir failed"


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs (needs the right to mount: skipped where it is missing)."""
    mnt = tmp_path / "small-fs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(path: Path) -> None:
    """Writes `path` until the file system is full."""
    chunk = b"\0" * 4096
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError:
            pass


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> dict[int, object]:
    """Produces each value in its own request, without retries; returns {index: error or offset}."""
    p = producer(bootstrap, {"linger.ms": 0, "retries": 0, "enable.idempotence": False,
                             "message.timeout.ms": 10000})
    out: dict[int, object] = {}
    for i, v in enumerate(values):
        def cb(err, msg, i=i):
            out[i] = err if err is not None else msg.offset()
        p.produce(topic, value=v, partition=0, on_delivery=cb)
        p.flush(30)
    flush_all(p)
    return out


def _lines(broker, needle: str) -> list[str]:
    return [l for l in broker.log_path.read_text(errors="replace").splitlines() if needle in l]


def test_a_full_disk_takes_its_log_dir_offline_until_restart(broker_factory, tmp_path, small_fs):
    # The metadata log stays on a healthy disk: a failure of its dir would stop the broker.
    meta, data = tmp_path / "meta", small_fs / "data"
    broker = broker_factory(overrides={"log.dirs": f"{meta},{data}"})
    topic = "fills-up"
    create_topic(broker.bootstrap, topic)
    assert (data / f"{topic}-0").is_dir(), "placed in the emptier log dir"
    before = [f"before-{i}".encode() for i in range(10)]
    result = _produce(broker.bootstrap, topic, before)
    assert sorted(result.values()) == list(range(10)), result

    ballast = small_fs / "ballast"
    _fill(ballast)
    # Raw requests: a client that saw the first error would find the partition
    # leaderless and send nothing more.
    with w.Connection(broker.bootstrap) as c:
        for i in range(20):
            batch = w.record_batch([(None, b"x" * 8000)])
            produced = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body(topic, 0, batch)))
            assert produced[(topic, 0)][0] == KafkaError.KAFKA_STORAGE_ERROR, (i, produced)
    lines = _lines(broker, FAILED)
    assert len(lines) == 1, f"one ERROR for the log dir, not one per request: {lines}"
    assert "ERROR" in lines[0] and str(data) in lines[0] and "No space left" in lines[0], lines[0]

    # Space is back, but the dir stays offline: nothing is retried before a restart.
    ballast.unlink()
    # Clients see the partition without a leader (and send nothing); asked directly,
    # the broker still refuses.
    md = admin(broker.bootstrap).list_topics(topic, timeout=10).topics[topic]
    assert md.partitions[0].leader == -1, md.partitions[0]
    with w.Connection(broker.bootstrap) as c:
        batch = w.record_batch([(None, b"after-space")])
        produced = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body(topic, 0, batch)))
        assert produced[(topic, 0)][0] == KafkaError.KAFKA_STORAGE_ERROR, produced
    assert broker.alive()
    assert len(_lines(broker, FAILED)) == 1

    assert broker.stop() == 0
    broker.start()
    after = [f"after-{i}".encode() for i in range(10)]
    result = _produce(broker.bootstrap, topic, after)
    assert all(isinstance(o, int) for o in result.values()), f"producing works after the restart: {result}"
    # Nothing of the failed requests was acknowledged; whatever of them reached the disk
    # whole stays behind the acknowledged records (offsets stay contiguous).
    first = result[0]
    assert sorted(result.values()) == list(range(first, first + 10)), result
    msgs = consume_confluent(broker.bootstrap, topic, 0, first + 10)
    values = [m.value() for m in msgs]
    assert values[:10] == before and values[first:] == after, values[:12]
