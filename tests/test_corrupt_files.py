"""Start-up with damaged, truncated or missing files of a log dir (issue 8 items 2-5): no
intact record is ever deleted. Either the broker starts and serves every record that is
still intact on disk (checked record by record), or it refuses with one line naming the
file and changes nothing."""

from __future__ import annotations

import re

import pytest

from e2e_util import create_topic, list_topics
from startup_util import (TOPIC, assert_all_back, batches, log_lines, partition_dir, produce_data_set,
                          segments, snapshot, start_refused)

METADATA_DIR = "__cluster_metadata-0"
RECOVER = {"potok.metadata.recover": "true"}


def _stopped_with_data(broker) -> dict:
    create_topic(broker.bootstrap, "early", partitions=1)  # an earlier metadata record
    expected = produce_data_set(broker.bootstrap)
    assert broker.stop() == 0
    return expected


def _start(broker) -> dict:
    """Starts the broker and waits until it answers (the port is bound before the log dirs
    are opened): returns the topics it lists."""
    broker.start()
    return list_topics(broker.bootstrap)


def _seg(broker, partition: int, base: int, suffix: str):
    return partition_dir(broker, TOPIC, partition) / f"{base:020}{suffix}"


def _lost(partition: int, spans) -> set:
    return {(partition, o) for first, last in spans for o in range(first, last + 1)}


def _partition_files(broker) -> dict:
    return {k: v for k, v in snapshot(broker.data_dir).items() if not k.startswith(METADATA_DIR)}


# ---- .log ------------------------------------------------------------------------------------

def test_a_corrupt_batch_in_an_old_segment_loses_only_that_batch(broker):
    """The issue's reproduction: 16 bytes flipped mid-way through segment 0 and its .index
    cut to 5 bytes deleted every later segment."""
    expected = _stopped_with_data(broker)
    bases = segments(partition_dir(broker))
    assert len(bases) >= 3, bases
    log = _seg(broker, 0, 0, ".log")
    size = log.stat().st_size
    pos, bsize, first, last = next(b for b in batches(log) if b[0] <= size // 2 < b[0] + b[1])
    at = min(max(size // 2, pos + 61), pos + bsize - 16)  # inside that batch's records
    assert pos + 61 <= at
    data = bytearray(log.read_bytes())
    data[at:at + 16] = bytes(b ^ 0xFF for b in data[at:at + 16])
    log.write_bytes(bytes(data))
    index = _seg(broker, 0, 0, ".index")
    index.write_bytes(index.read_bytes()[:5])
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert segments(partition_dir(broker)) == bases, "a later segment was deleted"
    assert_all_back(broker.bootstrap, expected, lost=_lost(0, [(first, last)]))
    warned = log_lines(broker, "dropping corrupt batches")
    assert len(warned) == 1 and f"{first}..={last}" in warned[0], warned


def test_a_truncated_old_segment_keeps_its_whole_batches_and_the_later_segments(broker):
    expected = _stopped_with_data(broker)
    bases = segments(partition_dir(broker, TOPIC, 1))
    log = _seg(broker, 1, bases[0], ".log")
    half = log.stat().st_size // 2
    lost = _lost(1, [(b, l) for pos, size, b, l in batches(log) if pos + size > half])
    with open(log, "r+b") as f:
        f.truncate(half)
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert segments(partition_dir(broker, TOPIC, 1)) == bases
    assert_all_back(broker.bootstrap, expected, lost=lost)


def test_a_missing_old_segment_keeps_the_others(broker):
    expected = _stopped_with_data(broker)
    bases = segments(partition_dir(broker, TOPIC, 2))
    log = _seg(broker, 2, bases[1], ".log")
    lost = _lost(2, [(b, l) for _, _, b, l in batches(log)])
    log.unlink()
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert segments(partition_dir(broker, TOPIC, 2)) == bases[:1] + bases[2:]
    assert_all_back(broker.bootstrap, expected, lost=lost)


def test_a_torn_tail_behind_a_clean_shutdown_marker_is_cut_and_nothing_else(broker):
    expected = _stopped_with_data(broker)
    active = _seg(broker, 0, segments(partition_dir(broker))[-1], ".log")
    size = active.stat().st_size
    with open(active, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x7f\xff\x00\x00\x10\x00torn")
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)
    assert active.stat().st_size == size


# ---- indexes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".index", ".timeindex"])
@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_a_damaged_index_is_rebuilt_and_every_record_kept(broker, suffix, damage):
    expected = _stopped_with_data(broker)
    files = [_seg(broker, 0, 0, suffix), _seg(broker, 1, segments(partition_dir(broker, TOPIC, 1))[-1], suffix)]
    for f in files:
        if damage == "garbage":
            f.write_bytes(b"\xff" * max(f.stat().st_size, 24))
        elif damage == "truncated":
            f.write_bytes(f.read_bytes()[:5])
        else:
            f.unlink()
    bases = {p: segments(partition_dir(broker, TOPIC, p)) for p in range(3)}
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert {p: segments(partition_dir(broker, TOPIC, p)) for p in range(3)} == bases
    assert_all_back(broker.bootstrap, expected)


# ---- partition.metadata ----------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "empty", "missing"])
def test_a_damaged_partition_metadata_is_rewritten_not_the_partition_deleted(broker, damage):
    expected = _stopped_with_data(broker)
    good = (partition_dir(broker, TOPIC, 1) / "partition.metadata").read_text()
    target = partition_dir(broker, TOPIC, 0) / "partition.metadata"
    if damage == "garbage":
        target.write_bytes(b"\x00\x01 not a partition.metadata file")
    elif damage == "empty":
        target.write_bytes(b"")
    else:
        target.unlink()
    before = _partition_files(broker)
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert target.read_text() == good
    after = _partition_files(broker)
    segment_files = [k for k in before if k.startswith(f"{TOPIC}-0/") and k.endswith(".log")]
    assert segment_files and all(after[k] == before[k] for k in segment_files)
    assert_all_back(broker.bootstrap, expected)


# ---- meta.properties -------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["garbage", "empty", "missing", "other-cluster"])
def test_a_damaged_meta_properties_next_to_data_refuses_to_start(broker, damage):
    expected = _stopped_with_data(broker)
    meta = broker.data_dir / "meta.properties"
    original = meta.read_text()
    if damage == "garbage":
        meta.write_bytes(b"\x00\xff garbage without a cluster id\n")
    elif damage == "empty":
        meta.write_bytes(b"")
    elif damage == "missing":
        meta.unlink()
    else:
        meta.write_text(re.sub(r"cluster.id=.*", "cluster.id=AnotherClusterIdXXXXXX", original))
    before = snapshot(broker.data_dir)
    line = start_refused(broker)
    assert str(meta) in line, line
    assert snapshot(broker.data_dir) == before, "a refused start changed files"
    meta.write_text(original)
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)


# ---- the metadata log ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["missing", "half", "half-unclean", "damaged"])
def test_a_lost_or_truncated_metadata_log_refuses_to_start_until_recovered(broker, damage):
    expected = _stopped_with_data(broker)
    meta_dir = broker.data_dir / METADATA_DIR
    if damage == "missing":
        for f in meta_dir.iterdir():
            f.unlink()
        meta_dir.rmdir()
    elif damage == "damaged":
        log = meta_dir / f"{0:020}.log"
        pos, _, _, _ = batches(log)[-1]
        data = bytearray(log.read_bytes())
        data[pos + 70] ^= 0xFF  # inside the last change's records: CRC and JSON break
        log.write_bytes(bytes(data))
    else:
        log = meta_dir / f"{0:020}.log"
        with open(log, "r+b") as f:
            f.truncate(log.stat().st_size // 2)
        if damage == "half-unclean":
            (broker.data_dir / ".kafka_cleanshutdown").unlink()
    before = _partition_files(broker)
    line = start_refused(broker)
    assert METADATA_DIR in line and "potok.metadata.recover=true" in line, line
    assert _partition_files(broker) == before, "a refused start changed partition files"
    if damage == "missing":
        assert not meta_dir.exists(), "a refused start created a metadata log"
    line_again = start_refused(broker)  # nothing was half-done by the first attempt
    assert line_again == line
    broker.overrides.update(RECOVER)
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)
    assert broker.stop() == 0
    for k in RECOVER:
        del broker.overrides[k]
    # the rebuilt metadata is the committed state now
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_the_metadata_checkpoint(broker, damage):
    expected = _stopped_with_data(broker)
    checkpoint = broker.data_dir / "metadata-offset-checkpoint"
    if damage == "garbage":
        checkpoint.write_bytes(b"\xff\xfe")
        before = snapshot(broker.data_dir)
        line = start_refused(broker)
        assert str(checkpoint) in line, line
        assert snapshot(broker.data_dir) == before
        checkpoint.unlink()
    else:
        checkpoint.unlink()
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert checkpoint.exists()
    assert_all_back(broker.bootstrap, expected)


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_the_high_watermark_checkpoint(broker, damage):
    """As Kafka, an unreadable replication-offset-checkpoint takes its log dir offline; the
    only dir holds the metadata log, so start-up stops naming the file. Without the file
    every high watermark starts at the log start and the sole leader moves it to the log
    end: a consumer reads everything."""
    expected = _stopped_with_data(broker)
    checkpoint = broker.data_dir / "replication-offset-checkpoint"
    if damage == "garbage":
        checkpoint.write_text("0\n1\nnot an entry\n")
        before = snapshot(broker.data_dir)
        line = start_refused(broker)
        assert str(checkpoint) in line, line
        assert snapshot(broker.data_dir) == before
    checkpoint.unlink()
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert checkpoint.exists()
    assert_all_back(broker.bootstrap, expected)


# ---- the clean-shutdown marker and the lock file ----------------------------------------------

@pytest.mark.parametrize("damage", ["marker-missing", "lock-garbage", "lock-missing"])
def test_marker_and_lock_files(broker, damage):
    expected = _stopped_with_data(broker)
    if damage == "marker-missing":
        (broker.data_dir / ".kafka_cleanshutdown").unlink()
    elif damage == "lock-garbage":
        (broker.data_dir / ".lock").write_bytes(b"garbage")
    else:
        (broker.data_dir / ".lock").unlink()
    assert _start(broker) == {"early": 1, TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)
