"""Admin APIs through real admin clients (confluent-kafka's AdminClient, kafka-python's
KafkaAdminClient): CreateTopics (validate_only and every refusal), CreatePartitions,
DescribeConfigs, DescribeCluster and DeleteTopics, with Kafka's error codes."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import ConfigResource, ConfigSource, NewPartitions, NewTopic, ResourceType

from e2e_util import (DeliveryTracker, admin, consume_confluent, create_topic, flush_all,
                      list_topics, producer, watermarks)

TIMEOUT = 30.0


def _create(bootstrap: str, topic: NewTopic, validate_only: bool = False) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([topic], request_timeout=TIMEOUT, validate_only=validate_only)
    fs[topic.topic].result(timeout=TIMEOUT)


def _kafka_error(fn, *args, **kwargs) -> KafkaError:
    with pytest.raises(KafkaException) as excinfo:
        fn(*args, **kwargs)
    err = excinfo.value.args[0]
    assert isinstance(err, KafkaError), f"expected a KafkaError, got {err!r}"
    return err


def _topic_id(bootstrap: str, topic: str) -> str:
    a = admin(bootstrap)
    desc = a.describe_topics(TopicCollection([topic]), request_timeout=TIMEOUT)[topic].result(timeout=TIMEOUT)
    return str(desc.topic_id)


# ---- CreateTopics ---------------------------------------------------------------------------
def test_create_topics_validate_only_accepts_valid_spec_but_creates_nothing(broker):
    _create(broker.bootstrap, NewTopic("validated", num_partitions=4, replication_factor=1,
                                       config={"retention.ms": "60000", "cleanup.policy": "delete"}),
            validate_only=True)
    assert "validated" not in list_topics(broker.bootstrap)
    assert not (broker.data_dir / "validated-0").exists(), "validate_only created a partition directory"
    # and the name is still free: a real creation succeeds with the requested partition count
    _create(broker.bootstrap, NewTopic("validated", num_partitions=4, replication_factor=1))
    assert list_topics(broker.bootstrap)["validated"] == 4


def test_create_topics_validate_only_still_reports_errors(broker):
    err = _kafka_error(_create, broker.bootstrap,
                       NewTopic("validated-bad", num_partitions=1, replication_factor=1,
                                config={"no.such.topic.config": "1"}),
                       validate_only=True)
    assert err.code() == KafkaError.INVALID_CONFIG, err


def test_kafka_python_create_topics_validate_only_returns_spec_without_creating(broker):
    from kafka.admin import KafkaAdminClient

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        res = a.create_topics({"kp-validated": {"num_partitions": 2, "replication_factor": 1,
                                                "configs": {"retention.ms": "999"}}},
                              validate_only=True)
        (topic,) = res["topics"]
        assert (topic["name"], topic["error_code"]) == ("kp-validated", 0), topic
        assert (topic["num_partitions"], topic["replication_factor"]) == (2, 1), topic
        # CreateTopics v5+ (KIP-525) returns the topic's resulting configs
        configs = topic["configs"]
        assert (configs["retention.ms"]["value"], configs["retention.ms"]["config_source"]) == \
            ("999", "DYNAMIC_TOPIC_CONFIG"), configs["retention.ms"]
        assert (configs["segment.bytes"]["value"], configs["segment.bytes"]["config_source"]) == \
            ("1073741824", "DEFAULT_CONFIG"), configs["segment.bytes"]
        assert "kp-validated" not in a.list_topics()
    finally:
        a.close()
    assert "kp-validated" not in list_topics(broker.bootstrap)


@pytest.mark.parametrize("config", [
    {"no.such.topic.config": "1"},          # unknown name
    {"retention.ms": "abc"},                # not a number
    {"cleanup.policy": "shred"},            # not one of delete / compact
    {"segment.bytes": "-5"},                # below the minimum
], ids=["unknown-name", "retention-ms-not-a-number", "cleanup-policy-not-a-policy", "segment-bytes-negative"])
def test_create_topics_with_invalid_config_fails_with_invalid_config(broker, config):
    err = _kafka_error(_create, broker.bootstrap,
                       NewTopic("bad-config", num_partitions=1, replication_factor=1, config=config))
    assert err.code() == KafkaError.INVALID_CONFIG, f"{config}: {err}"
    assert "bad-config" not in list_topics(broker.bootstrap)


def test_create_existing_topic_fails_with_topic_already_exists(broker):
    create_topic(broker.bootstrap, "twice", partitions=2)
    err = _kafka_error(_create, broker.bootstrap, NewTopic("twice", num_partitions=5, replication_factor=1))
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err
    assert list_topics(broker.bootstrap)["twice"] == 2, "the failed creation changed the existing topic"
    # validate_only reports the conflict too
    err = _kafka_error(_create, broker.bootstrap, NewTopic("twice", num_partitions=1, replication_factor=1),
                       validate_only=True)
    assert err.code() == KafkaError.TOPIC_ALREADY_EXISTS, err


def test_create_topic_with_zero_partitions_fails_with_invalid_partitions(broker):
    err = _kafka_error(_create, broker.bootstrap, NewTopic("zero-parts", num_partitions=0, replication_factor=1))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert "zero-parts" not in list_topics(broker.bootstrap)


def test_create_topic_with_more_replicas_than_brokers_fails_with_invalid_replication_factor(broker):
    err = _kafka_error(_create, broker.bootstrap, NewTopic("three-replicas", num_partitions=1, replication_factor=3))
    assert err.code() == KafkaError.INVALID_REPLICATION_FACTOR, err
    assert "three-replicas" not in list_topics(broker.bootstrap)


@pytest.mark.parametrize("name", ["bad/name", "with space", "..", "x" * 250],
                         ids=["slash", "space", "dot-dot", "250-chars"])
def test_create_topic_with_illegal_name_fails_with_invalid_topic(broker, name):
    err = _kafka_error(_create, broker.bootstrap, NewTopic(name, num_partitions=1, replication_factor=1))
    assert err.code() == KafkaError.TOPIC_EXCEPTION, err  # INVALID_TOPIC_EXCEPTION (17)


@pytest.mark.broker_config(**{"num.partitions": "5"})
def test_create_topic_without_counts_uses_broker_defaults(broker):
    from kafka.admin import KafkaAdminClient

    # KIP-464: num_partitions / replication_factor -1 mean "the broker's default"
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        (topic,) = a.create_topics({"defaults": {}})["topics"]
    finally:
        a.close()
    assert (topic["error_code"], topic["num_partitions"], topic["replication_factor"]) == (0, 5, 1), topic
    assert list_topics(broker.bootstrap)["defaults"] == 5


# ---- CreatePartitions -----------------------------------------------------------------------
def test_create_partitions_grows_topic_and_new_partition_takes_records(broker):
    create_topic(broker.bootstrap, "growing", partitions=1)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions("growing", 3)], request_timeout=TIMEOUT)["growing"].result(timeout=TIMEOUT)
    assert list_topics(broker.bootstrap)["growing"] == 3
    assert (broker.data_dir / "growing-2").is_dir()

    p = producer(broker.bootstrap)
    t = DeliveryTracker()
    for i in range(3):
        p.produce("growing", key=b"k%d" % i, value=b"on-partition-2-%d" % i, partition=2, on_delivery=t.callback(i))
    flush_all(p)
    assert not t.errors, t.errors
    assert [t.ok[i] for i in range(3)] == [(2, 0), (2, 1), (2, 2)]
    got = consume_confluent(broker.bootstrap, "growing", 2, 3)
    assert [(m.offset(), m.key(), m.value()) for m in got] == \
        [(i, b"k%d" % i, b"on-partition-2-%d" % i) for i in range(3)]
    assert watermarks(broker.bootstrap, "growing", 0) == (0, 0)


def test_create_partitions_cannot_shrink_topic(broker):
    create_topic(broker.bootstrap, "shrinking", partitions=3)
    a = admin(broker.bootstrap)
    err = _kafka_error(lambda: a.create_partitions([NewPartitions("shrinking", 2)], request_timeout=TIMEOUT)
                       ["shrinking"].result(timeout=TIMEOUT))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    # the same count is not an increase either
    err = _kafka_error(lambda: a.create_partitions([NewPartitions("shrinking", 3)], request_timeout=TIMEOUT)
                       ["shrinking"].result(timeout=TIMEOUT))
    assert err.code() == KafkaError.INVALID_PARTITIONS, err
    assert list_topics(broker.bootstrap)["shrinking"] == 3


def test_create_partitions_validate_only_adds_nothing(broker):
    create_topic(broker.bootstrap, "grow-validated", partitions=1)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions("grow-validated", 4)], request_timeout=TIMEOUT,
                        validate_only=True)["grow-validated"].result(timeout=TIMEOUT)
    assert list_topics(broker.bootstrap)["grow-validated"] == 1


def test_create_partitions_of_unknown_topic_fails_with_unknown_topic(broker):
    a = admin(broker.bootstrap)
    err = _kafka_error(lambda: a.create_partitions([NewPartitions("no-such-topic", 2)], request_timeout=TIMEOUT)
                       ["no-such-topic"].result(timeout=TIMEOUT))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


# ---- DescribeConfigs ------------------------------------------------------------------------
def test_describe_configs_returns_topic_overrides_and_defaults(broker):
    create_topic(broker.bootstrap, "configured", partitions=1,
                 config={"retention.ms": "12345", "cleanup.policy": "delete"})
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, "configured")
    entries = a.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)

    for name, value in [("retention.ms", "12345"), ("cleanup.policy", "delete")]:
        e = entries[name]
        assert e.value == value, f"{name}={e.value!r}"
        assert e.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, f"{name} source {e.source}"
        assert not e.is_default, name
    for name, value in [("segment.bytes", "1073741824"), ("max.message.bytes", "1048588"),
                        ("retention.bytes", "-1"), ("min.insync.replicas", "1")]:
        assert name in entries, f"{name} missing from DescribeConfigs ({sorted(entries)})"
        e = entries[name]
        assert e.value == value, f"{name}={e.value!r}, Kafka's default is {value}"
        assert e.source == ConfigSource.DEFAULT_CONFIG.value, f"{name} source {e.source}"
        assert e.is_default, name


def test_kafka_python_describe_configs_returns_topic_overrides(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    create_topic(broker.bootstrap, "kp-configured", partitions=1, config={"retention.ms": "12345"})
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        res = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-configured")],
                                 config_filter="all")
    finally:
        a.close()
    configs = res["topic"]["kp-configured"]
    assert configs["retention.ms"]["value"] == "12345", configs["retention.ms"]
    assert configs["segment.bytes"]["value"] == "1073741824", configs["segment.bytes"]


def test_describe_configs_of_unknown_topic_fails_with_unknown_topic(broker):
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, "never-created")
    err = _kafka_error(lambda: a.describe_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


# ---- DescribeCluster ------------------------------------------------------------------------
def _describe_cluster(bootstrap: str):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    return a.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)


def test_describe_cluster_reports_stable_cluster_id_and_this_node_as_controller(broker):
    c = _describe_cluster(broker.bootstrap)
    assert c.cluster_id, f"empty cluster id: {c.cluster_id!r}"
    assert [(n.id, n.host, n.port) for n in c.nodes] == [(1, "127.0.0.1", broker.port)]
    assert c.controller is not None and c.controller.id == 1, c.controller

    broker.restart()
    again = _describe_cluster(broker.bootstrap)
    assert again.cluster_id == c.cluster_id, "cluster id changed across a restart on the same data dir"
    assert [(n.id, n.port) for n in again.nodes] == [(1, broker.port)]


def test_cluster_ids_differ_between_fresh_data_dirs(broker_factory):
    a = broker_factory(name="a")
    b = broker_factory(name="b")
    assert _describe_cluster(a.bootstrap).cluster_id != _describe_cluster(b.bootstrap).cluster_id


def test_kafka_python_describe_cluster_matches_metadata(broker):
    from kafka.admin import KafkaAdminClient

    cid = _describe_cluster(broker.bootstrap).cluster_id
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        c = a.describe_cluster()
    finally:
        a.close()
    assert c["cluster_id"] == cid
    assert c["controller_id"] == 1
    assert [(b["broker_id"], b["host"], b["port"]) for b in c["brokers"]] == [(1, "127.0.0.1", broker.port)]


# ---- DeleteTopics ---------------------------------------------------------------------------
def _produce(bootstrap: str, topic: str, values: list[bytes]) -> list[int]:
    p = producer(bootstrap)
    t = DeliveryTracker()
    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=0, on_delivery=t.callback(i))
    flush_all(p)
    assert not t.errors, t.errors
    return [t.ok[i][1] for i in range(len(values))]


def _wait_gone(path, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_delete_topic_removes_it_and_recreation_starts_empty_with_new_id(broker):
    create_topic(broker.bootstrap, "doomed", partitions=1)
    old_id = _topic_id(broker.bootstrap, "doomed")
    assert _produce(broker.bootstrap, "doomed", [b"old-%d" % i for i in range(5)]) == list(range(5))
    assert (broker.data_dir / "doomed-0").is_dir()

    a = admin(broker.bootstrap)
    a.delete_topics(["doomed"], request_timeout=TIMEOUT)["doomed"].result(timeout=TIMEOUT)
    assert "doomed" not in list_topics(broker.bootstrap)
    assert _wait_gone(broker.data_dir / "doomed-0"), "partition directory still there 10 s after delete"

    create_topic(broker.bootstrap, "doomed", partitions=1)
    new_id = _topic_id(broker.bootstrap, "doomed")
    assert new_id != old_id, "a recreated topic must get a new topic id"
    assert watermarks(broker.bootstrap, "doomed") == (0, 0), "recreated topic is not empty"
    assert _produce(broker.bootstrap, "doomed", [b"new"]) == [0]
    (msg,) = consume_confluent(broker.bootstrap, "doomed", 0, 1)
    assert (msg.offset(), msg.value()) == (0, b"new")


def test_kafka_python_delete_topic_by_id(broker):
    import uuid

    from kafka.admin import KafkaAdminClient
    from kafka.errors import UnknownTopicIdError

    create_topic(broker.bootstrap, "by-id", partitions=1)
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        (desc,) = a.describe_topics(["by-id"])
        topic_id = uuid.UUID(desc["topic_id"])
        (res,) = a.delete_topics([topic_id])["topics"]
        assert (res["name"], res["error_code"]) == ("by-id", 0), res
        assert "by-id" not in list_topics(broker.bootstrap)
        with pytest.raises(UnknownTopicIdError):
            a.delete_topics([topic_id])  # already gone: UNKNOWN_TOPIC_ID (100)
    finally:
        a.close()


def test_topic_id_is_stable_across_restart(broker):
    create_topic(broker.bootstrap, "keeps-id", partitions=1)
    before = _topic_id(broker.bootstrap, "keeps-id")
    broker.restart()
    assert _topic_id(broker.bootstrap, "keeps-id") == before


def test_delete_unknown_topic_fails_with_unknown_topic(broker):
    a = admin(broker.bootstrap)
    err = _kafka_error(lambda: a.delete_topics(["never-was"], request_timeout=TIMEOUT)["never-was"]
                       .result(timeout=TIMEOUT))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_deleted_topic_stays_deleted_after_restart(broker):
    create_topic(broker.bootstrap, "gone-for-good", partitions=2)
    _produce(broker.bootstrap, "gone-for-good", [b"x"])
    a = admin(broker.bootstrap)
    a.delete_topics(["gone-for-good"], request_timeout=TIMEOUT)["gone-for-good"].result(timeout=TIMEOUT)
    broker.restart()
    assert "gone-for-good" not in list_topics(broker.bootstrap)
    assert not (broker.data_dir / "gone-for-good-0").exists()
