"""Helpers for the start-up safety tests: a known data set, reading it back, the files of
a log dir, and a start that must be refused with one line."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from pathlib import Path

from e2e_util import consume_confluent, create_topic, produce_keyed, watermarks

TOPIC = "important"
PARTITIONS = 3
PER_PARTITION = 2000
# small segments: every partition gets several, so "old (flushed) segment" cases exist
TOPIC_CONFIG = {"segment.bytes": "16384"}
BATCH_HEADER = 61


def produce_data_set(bootstrap: str, topic: str = TOPIC, partitions: int = PARTITIONS,
                     per_partition: int = PER_PARTITION) -> dict:
    """Creates `topic` (small segments) and produces distinct records to each partition;
    returns {(partition, offset): (key, value, headers)}."""
    create_topic(bootstrap, topic, partitions=partitions, config=TOPIC_CONFIG)
    return produce_keyed(bootstrap, topic, partitions, per_partition, {"linger.ms": 20, "batch.size": 2000})


def read_back(bootstrap: str, expected: dict, topic: str = TOPIC) -> dict:
    """Every record the broker serves for the partitions in `expected`, as
    {(partition, offset): (key, value, headers)}."""
    out = {}
    for part in sorted({p for p, _ in expected}):
        low, high = watermarks(bootstrap, topic, part)
        count = sum(1 for (p, o) in expected if p == part and low <= o < high)
        for m in consume_confluent(bootstrap, topic, part, count, start_offset=low):
            out[(part, m.offset())] = (m.key(), m.value(), m.headers())
    return out


def assert_all_back(bootstrap: str, expected: dict, topic: str = TOPIC, lost: set | None = None) -> None:
    """Every record of `expected` except the `lost` (partition, offset)s reads back identical."""
    lost = lost or set()
    want = {k: v for k, v in expected.items() if k not in lost}
    got = read_back(bootstrap, want, topic)
    missing = sorted(set(want) - set(got))
    assert not missing, f"{len(missing)} intact records are gone, first {missing[:5]}"
    wrong = [k for k in want if got[k] != want[k]]
    assert not wrong, f"{len(wrong)} records differ, first {wrong[:3]}"
    assert set(got) == set(want), f"unexpected records {sorted(set(got) - set(want))[:5]}"


def snapshot(data_dir: Path) -> dict:
    """{relative path: sha256} of every file under the data dir except the lock file."""
    out = {}
    for root, _, files in os.walk(data_dir):
        for f in files:
            path = Path(root) / f
            rel = str(path.relative_to(data_dir))
            if rel == ".lock":
                continue
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def start_refused(broker, extra: dict | None = None, timeout: float = 60.0) -> str:
    """Runs the broker's command (plus `extra` overrides) expecting it to stop at
    start-up: exit non-zero with exactly one `potok:` error line, which is returned."""
    cmd = broker.command()
    for k, v in (extra or {}).items():
        cmd += ["--override", f"{k}={v}"]
    env = dict(os.environ, NO_COLOR="1")
    r = subprocess.run(cmd, cwd=broker.workdir, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode != 0, f"start was not refused; output:\n{r.stdout}\n{r.stderr}"
    lines = [l for l in r.stderr.splitlines() if l.startswith("potok:")]
    assert len(lines) == 1, f"expected one error line; stderr:\n{r.stderr}"
    return lines[0]


def partition_dir(broker, topic: str = TOPIC, partition: int = 0) -> Path:
    return broker.data_dir / f"{topic}-{partition}"


def segments(part_dir: Path) -> list[int]:
    """Base offsets of the segments of a partition dir, ascending."""
    return sorted(int(p.stem) for p in part_dir.glob("*.log"))


def batches(log_file: Path) -> list[tuple[int, int, int, int]]:
    """(position, size, base offset, last offset) of every batch in a segment file."""
    data = log_file.read_bytes()
    out = []
    pos = 0
    while pos + BATCH_HEADER <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        size = 12 + length
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        if pos + size > len(data):
            break
        out.append((pos, size, base, base + last_delta))
        pos += size
    return out


def log_lines(broker, needle: str) -> list[str]:
    return [l for l in broker.log_path.read_text(errors="replace").splitlines() if needle in l]
