"""A full disk: produce requests get KAFKA_STORAGE_ERROR, the broker logs one WARN for
the log dir when writes start failing and one INFO when they succeed again (not a line
per request), and producing works again once there is space."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from e2e_util import consume_confluent, create_topic, flush_all, producer

WARN = "writes to the log dir are failing"
INFO = "writes to the log dir succeed again"


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


def test_full_disk_is_logged_once_and_producing_recovers(broker_factory, small_fs):
    data = small_fs / "data"
    broker = broker_factory(overrides={"log.dirs": str(data)})
    topic = "fills-up"
    create_topic(broker.bootstrap, topic)
    before = _produce(broker.bootstrap, topic, [f"before-{i}".encode() for i in range(10)])
    assert sorted(before.values()) == list(range(10)), before

    ballast = small_fs / "ballast"
    _fill(ballast)
    failed = _produce(broker.bootstrap, topic, [b"x" * 8000 for _ in range(20)])
    errors = [e for e in failed.values() if isinstance(e, KafkaError)]
    assert len(errors) == 20, f"every produce fails on a full disk: {failed}"
    assert all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in errors), errors

    warns = _lines(broker, WARN)
    assert len(warns) == 1, f"one WARN for the log dir, not one per request: {warns}"
    assert "WARN" in warns[0] and str(data) in warns[0], warns[0]
    assert not _lines(broker, INFO)

    ballast.unlink()
    after = _produce(broker.bootstrap, topic, [f"after-{i}".encode() for i in range(10)])
    assert sorted(after.values()) == list(range(10, 20)), f"producing works again: {after}"
    infos = _lines(broker, INFO)
    assert len(infos) == 1 and "INFO" in infos[0] and str(data) in infos[0], infos
    assert len(_lines(broker, WARN)) == 1

    # Nothing of the failed requests is in the log: offsets stayed contiguous.
    msgs = consume_confluent(broker.bootstrap, topic, 0, 20)
    assert [m.value() for m in msgs] == [f"before-{i}".encode() for i in range(10)] + \
        [f"after-{i}".encode() for i in range(10)]
