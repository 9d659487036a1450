"""The broker never deletes intact data at start-up, and two brokers never share a data dir
(issue 7 item 1, issue 8 items 1, 3 and 10)."""

from __future__ import annotations

import os
import resource
import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic

from conftest import Broker, free_port
from e2e_util import admin, create_topic, list_topics
import kafkawire as w
from startup_util import (TOPIC, assert_all_back, log_lines, partition_dir, produce_data_set,
                          snapshot, start_refused)


def test_a_second_broker_on_the_same_log_dirs_is_refused_and_the_first_keeps_its_data(broker, tmp_path):
    expected = produce_data_set(broker.bootstrap)
    second = Broker(tmp_path / "second", free_port(), {"log.dirs": str(broker.data_dir)}, name="second")
    before = snapshot(broker.data_dir)
    line = start_refused(second)
    assert str(broker.data_dir) in line and "another broker holds its lock" in line, line
    assert snapshot(broker.data_dir) == before, "the refused broker changed files"
    broker.restart()
    assert list_topics(broker.bootstrap) == {TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)


def test_a_kill_9_leaves_no_stale_lock(broker):
    expected = produce_data_set(broker.bootstrap, per_partition=300)
    broker.kill9()
    broker.start()
    assert_all_back(broker.bootstrap, expected)


def test_cluster_metadata_is_a_reserved_topic_name(broker):
    """Issue 8 item 1: creating __cluster_metadata wiped the metadata log's directory."""
    expected = produce_data_set(broker.bootstrap, per_partition=350)
    a = admin(broker.bootstrap)  # kept alive until the future resolves
    fs = a.create_topics([NewTopic("__cluster_metadata", num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as e:
        fs["__cluster_metadata"].result(timeout=30)
    err = e.value.args[0]
    assert err.code() == KafkaError.INVALID_REQUEST, err
    assert "Creation of internal topic __cluster_metadata is prohibited" in err.str(), err
    # auto-creation is refused too (as for Kafka's other internal topics)
    with w.Connection(broker.bootstrap) as c:
        topics = w.parse_metadata_v1_topics(c.request(w.API_METADATA, 1, w.metadata_v1_body(["__cluster_metadata"])))
    assert topics == {"__cluster_metadata": 3}  # UNKNOWN_TOPIC_OR_PARTITION
    assert sorted(p.name for p in broker.data_dir.iterdir() if p.name.startswith("__cluster")) == \
        ["__cluster_metadata-0"]
    broker.restart()
    assert list_topics(broker.bootstrap) == {TOPIC: 3}
    assert_all_back(broker.bootstrap, expected)


def test_a_stray_partition_directory_is_renamed_aside_never_deleted(broker):
    expected = produce_data_set(broker.bootstrap, per_partition=300)
    assert broker.stop() == 0
    # a partition dir no topic owns: a copy of important-1 under another name and id
    src = partition_dir(broker, TOPIC, 1)
    ghost = broker.data_dir / "ghost-0"
    ghost.mkdir()
    for f in src.iterdir():
        (ghost / f.name).write_bytes(f.read_bytes())
    (ghost / "partition.metadata").write_text(f"version: 0\ntopic_id: {uuid.uuid4()}\n")
    copied = {f.name: f.read_bytes() for f in ghost.iterdir()}
    broker.start()
    assert list_topics(broker.bootstrap) == {TOPIC: 3}  # answered once the log dirs are open
    assert not ghost.exists()
    strays = [p for p in broker.data_dir.iterdir() if p.name.startswith("ghost-0.") and p.name.endswith("-stray")]
    assert len(strays) == 1, sorted(p.name for p in broker.data_dir.iterdir())
    assert {f.name: f.read_bytes() for f in strays[0].iterdir()} == copied
    assert len(log_lines(broker, "stray partition directory")) == 1
    assert_all_back(broker.bootstrap, expected)
    # auto-creating a topic of that name does not pick up the set-aside data
    create_topic(broker.bootstrap, "ghost", partitions=1)
    assert sorted(f.name for f in (broker.data_dir / "ghost-0").glob("*.log")) == ["00000000000000000000.log"]
    assert (broker.data_dir / "ghost-0" / "00000000000000000000.log").stat().st_size == 0


def test_a_create_topics_that_fails_for_lack_of_file_descriptors_leaves_nothing_behind(broker):
    """Issue 8 item 10: the topic used to exist after KAFKA_STORAGE_ERROR, and the broker
    could not start again."""
    expected = produce_data_set(broker.bootstrap, per_partition=200)
    a = admin(broker.bootstrap)  # kept alive until the future resolves
    # A first create opens the admin's connection to the controller, so none is
    # needed once descriptors run out (new segments open no files until written).
    a.create_topics([NewTopic("warm-up", num_partitions=1, replication_factor=1)])["warm-up"].result(timeout=60)
    open_now = len(os.listdir(f"/proc/{broker.proc.pid}/fd"))
    _, hard = resource.prlimit(broker.proc.pid, resource.RLIMIT_NOFILE)
    # the soft limit only, which may be raised back without privileges
    resource.prlimit(broker.proc.pid, resource.RLIMIT_NOFILE, (open_now, hard))
    fs = a.create_topics([NewTopic("big", num_partitions=300, replication_factor=1)])
    with pytest.raises(KafkaException) as e:
        fs["big"].result(timeout=60)
    assert e.value.args[0].code() == KafkaError.KAFKA_STORAGE_ERROR, e.value.args[0]
    assert not [p.name for p in broker.data_dir.iterdir() if p.name.startswith("big-")]
    resource.prlimit(broker.proc.pid, resource.RLIMIT_NOFILE, (hard, hard))  # new connections again
    assert "big" not in list_topics(broker.bootstrap)
    broker.restart()
    assert list_topics(broker.bootstrap) == {TOPIC: 3, "warm-up": 1}
    assert_all_back(broker.bootstrap, expected)
    create_topic(broker.bootstrap, "big", partitions=300)
    assert list_topics(broker.bootstrap)["big"] == 300


def test_a_partition_that_cannot_be_opened_at_start_goes_offline_not_the_broker(broker):
    """Issue 8 item 10: one unopenable partition used to stop the whole broker."""
    expected = produce_data_set(broker.bootstrap, per_partition=300)
    assert broker.stop() == 0
    # a "segment" that cannot be opened: a directory where a .log file belongs
    bogus = partition_dir(broker, TOPIC, 1) / f"{999999:020}.log"
    bogus.mkdir()
    broker.start()
    assert list_topics(broker.bootstrap) == {TOPIC: 3}
    lines = log_lines(broker, "cannot open the partition")
    assert len(lines) == 1 and "partition=1" in lines[0], lines
    # Metadata shows it leaderless, as Kafka shows a partition on an offline log dir
    md = admin(broker.bootstrap).list_topics(TOPIC, timeout=10).topics[TOPIC]
    assert md.partitions[1].leader == -1 and md.partitions[1].error.code() == KafkaError.LEADER_NOT_AVAILABLE
    assert [md.partitions[p].leader for p in (0, 2)] == [1, 1]
    storage_error = 56
    with w.Connection(broker.bootstrap) as c:
        batch = w.record_batch([(None, b"v")])
        produced = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body(TOPIC, 1, batch)))
        assert produced[(TOPIC, 1)][0] == storage_error
        fetched = w.parse_fetch_v11(c.request(w.API_FETCH, 11, w.fetch_v11_body([(TOPIC, 1, 0)])))
        assert fetched.partition(TOPIC, 1).error_code == storage_error
    assert_all_back(broker.bootstrap, {k: v for k, v in expected.items() if k[0] != 1})
    assert broker.stop() == 0
    bogus.rmdir()
    broker.start()
    assert_all_back(broker.bootstrap, expected)
