"""KIP-430 authorized operations: asked for, a topic, a group and the cluster get the
bitfield of every operation Kafka defines for them (what Kafka answers with no
authorizer); not asked, Kafka's INT32_MIN."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation

import kafkawire as kw
from e2e_util import RDKAFKA_LOGGER, admin, create_topic

TOPIC_OPS = {"READ", "WRITE", "CREATE", "DELETE", "ALTER", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS"}
GROUP_OPS = {"READ", "DELETE", "DESCRIBE"}
CLUSTER_OPS = {"CREATE", "ALTER", "DESCRIBE", "CLUSTER_ACTION", "DESCRIBE_CONFIGS", "ALTER_CONFIGS",
               "IDEMPOTENT_WRITE"}
# AclOperation codes, for raw frames
CODES = {"READ": 3, "WRITE": 4, "CREATE": 5, "DELETE": 6, "ALTER": 7, "DESCRIBE": 8, "CLUSTER_ACTION": 9,
         "DESCRIBE_CONFIGS": 10, "ALTER_CONFIGS": 11, "IDEMPOTENT_WRITE": 12}
NOT_ASKED = -2**31


def bits(names: set[str]) -> int:
    return sum(1 << CODES[n] for n in names)


def committed_group(bootstrap: str, group: str, topic: str) -> None:
    """A group that exists because it committed an offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "logger": RDKAFKA_LOGGER})
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
    finally:
        c.close()


def names(ops) -> set[str]:
    return {op.name for op in ops}


def test_confluent_admin_gets_every_operation_of_topic_group_and_cluster(broker):
    create_topic(broker.bootstrap, "ops")
    committed_group(broker.bootstrap, "ops-group", "ops")
    a = admin(broker.bootstrap)

    topic = a.describe_topics(TopicCollection(["ops"]), include_authorized_operations=True)["ops"].result(30)
    assert names(topic.authorized_operations) == TOPIC_OPS
    cluster = a.describe_cluster(include_authorized_operations=True).result(30)
    assert names(cluster.authorized_operations) == CLUSTER_OPS
    group = a.describe_consumer_groups(["ops-group"], include_authorized_operations=True)["ops-group"].result(30)
    assert names(group.authorized_operations) == GROUP_OPS
    assert all(isinstance(op, AclOperation) for op in group.authorized_operations)

    # Not asked: nothing reported.
    topic = a.describe_topics(TopicCollection(["ops"]))["ops"].result(30)
    assert not topic.authorized_operations
    cluster = a.describe_cluster().result(30)
    assert not cluster.authorized_operations


def test_kafka_python_admin_describes_with_authorized_operations(broker):
    from kafka.admin import KafkaAdminClient

    create_topic(broker.bootstrap, "ops")
    committed_group(broker.bootstrap, "ops-group", "ops")
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        # kafka-python 2.3 raised on the INT32_MIN answer here.
        groups = a.describe_groups(["ops-group"], include_authorized_operations=True)
        assert set(groups["ops-group"]["authorized_operations"]) == GROUP_OPS, groups
        [topic] = [t for t in a.describe_topics(["ops"]) if t["name"] == "ops"]
        assert set(topic["authorized_operations"]) == TOPIC_OPS, topic
        cluster = a.describe_cluster()
        assert set(cluster["authorized_operations"]) == CLUSTER_OPS, cluster
    finally:
        a.close()


def metadata_v8(conn: kw.Connection, topics: list[str], cluster_ops: bool, topic_ops: bool) -> tuple[dict, int]:
    """Metadata v8 (the first with KIP-430 fields): {topic: (error, operations)}, cluster operations."""
    body = kw.array([kw.string(t) for t in topics]) + kw.i8(0) + kw.i8(int(cluster_ops)) + kw.i8(int(topic_ops))
    r = conn.request(3, 8, body)
    r.i32()  # throttle
    r.array(lambda r: (r.i32(), r.string(), r.i32(), r.string()))  # brokers
    r.string()  # cluster id
    r.i32()  # controller
    def topic(r):
        error, name = r.i16(), r.string()
        r.i8()  # is_internal
        r.array(lambda r: (r.i16(), r.i32(), r.i32(), r.i32(), r.array(kw.Reader.i32), r.array(kw.Reader.i32),
                           r.array(kw.Reader.i32)))
        return name, (error, r.i32())
    found = dict(r.array(topic))
    return found, r.i32()


def test_metadata_v8_answers_the_bitfields_only_when_asked(broker):
    create_topic(broker.bootstrap, "ops")
    with kw.Connection(broker.bootstrap) as conn:
        topics, cluster = metadata_v8(conn, ["ops", "missing"], cluster_ops=True, topic_ops=True)
        assert topics["ops"] == (0, bits(TOPIC_OPS))
        assert topics["missing"] == (3, NOT_ASKED), "an unknown topic (UNKNOWN_TOPIC_OR_PARTITION) gets none"
        assert cluster == bits(CLUSTER_OPS)
        topics, cluster = metadata_v8(conn, ["ops"], cluster_ops=False, topic_ops=False)
        assert topics["ops"] == (0, NOT_ASKED)
        assert cluster == NOT_ASKED
