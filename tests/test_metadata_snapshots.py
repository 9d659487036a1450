"""The metadata image is snapshotted: past metadata.log.max.record.bytes.between.snapshots
the broker writes <offset>-<epoch>.checkpoint in the metadata log's directory, deletes
the segments before it, and a restart loads the snapshot plus the log after it
(issue 9 item 5)."""

from __future__ import annotations

import re

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
import pytest

from e2e_util import admin, create_topic, list_topics
from startup_util import TOPIC, assert_all_back, produce_data_set

TIMEOUT = 30
# A snapshot after every change, a segment per change: the log before the
# latest snapshot is deleted at once.
SNAPSHOT_EVERY_CHANGE = {
    "metadata.log.max.record.bytes.between.snapshots": "1",
    "metadata.log.segment.bytes": "14",
}


def _metadata_files(broker) -> tuple[list[str], list[int]]:
    """The snapshot file names and the segment base offsets of the metadata log."""
    meta = broker.data_dir / "__cluster_metadata-0"
    snapshots = sorted(p.name for p in meta.iterdir() if p.name.endswith(".checkpoint"))
    segments = sorted(int(p.name[:-len(".log")]) for p in meta.iterdir() if p.name.endswith(".log"))
    return snapshots, segments


def _topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    a = admin(bootstrap)  # kept alive until the future resolves
    entries = a.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)
    return {name: e.value for name, e in entries.items()}


def _set_topic_config(bootstrap: str, topic: str, key: str, value: str) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
    a = admin(bootstrap)
    a.incremental_alter_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)


def _delete_topic(bootstrap: str, topic: str) -> None:
    a = admin(bootstrap)
    a.delete_topics([topic], request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)


@pytest.mark.broker_config(**SNAPSHOT_EVERY_CHANGE)
def test_topics_configs_and_deletions_come_back_from_the_snapshot_after_a_restart_and_a_kill_9(broker):
    expected = produce_data_set(broker.bootstrap)
    create_topic(broker.bootstrap, "gone", partitions=2)
    create_topic(broker.bootstrap, "configured", config={"retention.ms": "123456"})
    _delete_topic(broker.bootstrap, "gone")
    _set_topic_config(broker.bootstrap, TOPIC, "retention.bytes", "987654321")

    snapshots, segments = _metadata_files(broker)
    assert len(snapshots) == 1, snapshots
    assert re.fullmatch(r"\d{20}-\d{10}\.checkpoint", snapshots[0]), snapshots
    snapshot_offset = int(snapshots[0][:20])
    # Only the segment holding the last change is left; the records before it are in the snapshot.
    assert len(segments) == 1 and 0 < segments[0] <= snapshot_offset, (segments, snapshot_offset)

    for restart in ("clean", "kill -9"):
        if restart == "clean":
            broker.restart()
        else:
            broker.kill9()
            broker.start()
        assert list_topics(broker.bootstrap) == {TOPIC: 3, "configured": 1}, restart
        configs = _topic_configs(broker.bootstrap, TOPIC)
        assert (configs["retention.bytes"], configs["segment.bytes"]) == ("987654321", "16384"), restart
        assert _topic_configs(broker.bootstrap, "configured")["retention.ms"] == "123456", restart
        assert not any(p.name.startswith("gone-") for p in broker.data_dir.iterdir()), restart
        assert_all_back(broker.bootstrap, expected)

    # Changes after the restart extend the log from the snapshot on.
    create_topic(broker.bootstrap, "later")
    broker.restart()
    assert list_topics(broker.bootstrap) == {TOPIC: 3, "configured": 1, "later": 1}
    snapshots, _ = _metadata_files(broker)
    assert len(snapshots) == 1 and int(snapshots[0][:20]) > snapshot_offset, snapshots


def test_without_a_threshold_crossed_no_snapshot_is_written_and_the_log_replays(broker):
    create_topic(broker.bootstrap, "plain", config={"retention.ms": "7000"})
    broker.restart()
    snapshots, segments = _metadata_files(broker)
    assert snapshots == [] and segments == [0], (snapshots, segments)
    assert list_topics(broker.bootstrap) == {"plain": 1}
    assert _topic_configs(broker.bootstrap, "plain")["retention.ms"] == "7000"
