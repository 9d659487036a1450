"""A failed fsync on one broker of a cluster (issue 9 item 4): the broker stops, as a KRaft broker
without directory assignment halts on a log dir failure, its partitions get other leaders from
their ISR, acks=all production goes on, and once the disk is fixed the broker rejoins; the
history checker finds every acknowledged record once, in order.

The fault is real: conftest's `fsync_fault` LD_PRELOAD shim fails fsync/fdatasync with EIO for
files under the broker's partitions dir while a trigger file exists. The metadata log lives in a
separate log dir that keeps working, so the stop is the partitions dir's doing."""

from __future__ import annotations

import pytest

from cluster_harness import require_cluster_mode, wait_for
from workload import Workload

NONE = {k: 0 for k in ("lost", "duplicated", "wrong_offset", "reordered", "inconsistent", "vanished", "unchecked")}
ALL = [1, 2, 3]
FAILING = 2
TOPIC = "t9"
STOP_LINE = "log dir failed: stopping the broker"


@pytest.mark.timeout(300)
def test_a_failed_fsync_stops_the_broker_and_its_partitions_move_without_loss(cluster_factory, fsync_fault):
    require_cluster_mode()
    c = cluster_factory(3, start=False)
    for i, n in c.nodes.items():
        # first dir: the metadata log; second: the partitions
        c.node_overrides[i] = {"log.dirs": f"{n.data_dir / 'meta'},{n.data_dir / 'partitions'}"}
    failing = c.node(FAILING)
    trigger, calls = fsync_fault(failing.data_dir / "partitions")
    c.start()
    # flush.messages=1: every append is fsynced before it is acknowledged
    c.create_topic(TOPIC, partitions=3, replication_factor=3,
                   config={"min.insync.replicas": 2, "flush.messages": 1})
    led = [p for p in range(3) if c.leader(TOPIC, p) == FAILING]
    assert led, f"node {FAILING} leads no partition of {TOPIC}"
    w = Workload(c, TOPIC, 3).start()
    w.wait_progress(30)
    assert calls.exists() and " ok " in calls.read_text(), "the shim sees the broker's fsyncs"

    trigger.touch()
    wait_for(f"node {FAILING} to stop on the failed fsync", lambda: not failing.alive(), timeout=30)
    failing.expected_down = True
    assert failing.proc.returncode == 1, failing.proc.returncode
    log = failing.log_path.read_text(errors="replace")
    assert STOP_LINE in log and "partitions" in log, failing.tail()
    assert " EIO " in calls.read_text(), "a real fsync failed"

    for p in led:
        c.wait_for_leader(TOPIC, p, not_in={FAILING}, timeout=60)
        w.wait_progress(20, partition=p, what=f"acks=all writes to partition {p} on its new leader")

    trigger.unlink()  # the disk is fixed
    failing.start()
    c.wait_ready()
    for p in range(3):
        c.wait_for_isr(TOPIC, p, ALL, timeout=90)
    w.wait_progress(60)
    r = w.check()
    assert r.counts() == NONE, f"{w.report()}\n{r.summary()}"
