"""File descriptors: only active segments keep files open; older segments are read
through a bounded cache of handles, so the broker's descriptors grow with the
partitions it hosts, not with the number of segments (Kafka kept three per segment)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, POTOK_BIN, free_port
from e2e_util import consume_confluent, create_topic, flush_all, producer

# storage::file_cache::CAPACITY: cached handles of segments that are not written to.
FILE_CACHE = 256
SEGMENTS = 1200


def _fds(broker) -> list[str]:
    fd_dir = Path(f"/proc/{broker.proc.pid}/fd")
    out = []
    for fd in os.listdir(fd_dir):
        try:
            out.append(os.readlink(fd_dir / fd))
        except OSError:
            pass  # closed meanwhile
    return out


def _check_bounded(broker, when: str, topic: str = "many-segments") -> None:
    data = Path(broker.overrides["log.dirs"])
    fds = _fds(broker)
    of_topic = [f for f in fds if f.startswith(str(data / f"{topic}-0") + "/")]
    # The topic's old segments: never more than the cache, plus its active segment.
    assert len(of_topic) <= FILE_CACHE + 3, f"{when}: {len(of_topic)} files of {topic}-0 open"
    segment_files = [f for f in fds if f.startswith(str(data))]
    # At most the active segment of each partition (and of the metadata log) keeps its
    # three files open; partitions nobody writes to keep none.
    partitions = sum(1 for d in data.iterdir() if d.is_dir())
    bound = FILE_CACHE + 3 * partitions
    assert len(segment_files) <= bound, \
        f"{when}: {len(segment_files)} files of {partitions} partition dirs open (bound {bound})"
    # Everything else (sockets, runtime, the log) is a small constant.
    assert len(fds) <= bound + 64, f"{when}: {len(fds)} descriptors open"


def test_open_files_do_not_grow_with_segments_and_old_segments_read_back(broker):
    topic = "many-segments"
    # One batch per segment: every message rolls a new one.
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "100"})
    p = producer(broker.bootstrap, {"linger.ms": 0, "batch.num.messages": 1})
    for i in range(SEGMENTS):
        p.produce(topic, key=f"k{i}".encode(), value=f"value-{i:06d}".encode(), partition=0)
        if i % 200 == 199:
            flush_all(p)
    flush_all(p)
    segments = list((Path(broker.overrides["log.dirs"]) / f"{topic}-0").glob("*.log"))
    assert len(segments) >= SEGMENTS - 1, f"{len(segments)} segments"
    _check_bounded(broker, "after producing")

    for start in ("running", "restarted"):
        msgs = consume_confluent(broker.bootstrap, topic, 0, SEGMENTS, timeout=120)
        assert [m.offset() for m in msgs] == list(range(SEGMENTS))
        assert [m.value() for m in msgs] == [f"value-{i:06d}".encode() for i in range(SEGMENTS)]
        _check_bounded(broker, f"after reading every segment ({start})")
        if start == "running":
            broker.restart()
            _check_bounded(broker, "after a restart")

    log = broker.log_path.read_text(errors="replace")
    assert "open file limit (RLIMIT_NOFILE)" in log, "the limit is logged at start"


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 256
    if hard == resource.RLIM_INFINITY or hard <= low:
        pytest.skip(f"the hard limit ({hard}) leaves no room to lower the soft one")
    port = free_port()
    log_path = tmp_path / "broker.log"
    cmd = [str(POTOK_BIN), "server",
           "--override", f"listeners=PLAINTEXT://{HOST}:{port}",
           "--override", f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
           "--override", f"log.dirs={tmp_path / 'data'}", "--override", "node.id=1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ, NO_COLOR="1"), start_new_session=True,
                                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard)))
    try:
        deadline = time.monotonic() + 20
        lines: list[str] = []
        while not lines:
            assert proc.poll() is None, f"broker exited: {log_path.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"no limit logged: {log_path.read_text(errors='replace')}"
            lines = [l for l in log_path.read_text(errors="replace").splitlines()
                     if "open file limit (RLIMIT_NOFILE)" in l]
            time.sleep(0.05)
        assert len(lines) == 1 and "INFO" in lines[0], lines
        assert f"soft={hard} hard={hard}" in lines[0], lines[0]
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        max_open = next(l for l in limits.splitlines() if l.startswith("Max open files")).split()
        assert (int(max_open[3]), int(max_open[4])) == (hard, hard), max_open
    finally:
        proc.terminate()
        proc.wait(timeout=30)
