"""File descriptors: only active segments keep files open; older segments are read
through a bounded cache of handles, so the broker's descriptors grow with the
partitions it hosts, not with the number of segments (Kafka kept three per segment)."""

from __future__ import annotations

import os
from pathlib import Path

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


def _check_bounded(broker, when: str) -> None:
    data = Path(broker.overrides["log.dirs"])
    fds = _fds(broker)
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
