"""Group administration with real admin clients (confluent-kafka AdminClient and
kafka-python KafkaAdminClient): listing and describing groups, reading, altering
and deleting committed offsets, deleting groups, removing static members, and the
internal `__consumer_offsets` topic."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType, KafkaError,
                             KafkaException, TopicPartition)
from confluent_kafka.admin import ConfigResource, ResourceType
from kafka import TopicPartition as KTP
from kafka.admin import KafkaAdminClient, MemberToRemove
from kafka.structs import OffsetAndMetadata

import kafkawire as kw
from e2e_util import admin, consumer, create_topic, flush_all, producer

FAST_JOIN = {"group.initial.rebalance.delay.ms": "0"}
QUICK_MEMBER = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "500", "auto.offset.reset": "earliest"}


@pytest.fixture
def cf_admin(broker):
    """A confluent AdminClient kept alive for the whole test (its futures fail once it is gone)."""
    return admin(broker.bootstrap)


@pytest.fixture
def kp_admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    yield a
    a.close()


def fill(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    create_topic(bootstrap, topic, partitions=partitions)
    p = producer(bootstrap)
    for i in range(per_partition):
        for part in range(partitions):
            p.produce(topic, value=f"{part}-{i}".encode(), partition=part)
    flush_all(p)


def poll_until(consumers, pred, timeout: float, what: str):
    """Polls every consumer (they must keep polling to take part in rebalances) until pred()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in consumers:
            msg = c.poll(0.1)
            assert msg is None or not msg.error() or msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
        value = pred()
        if value:
            return value
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def joined_consumer(bootstrap: str, group: str, topic: str, conf: dict | None = None):
    """A confluent consumer subscribed to `topic`, returned once it owns partitions."""
    cfg = dict(QUICK_MEMBER, **{"group.id": group})
    cfg.update(conf or {})
    c = consumer(bootstrap, cfg)
    c.subscribe([topic])
    poll_until([c], lambda: c.assignment(), 30, f"{group} to get partitions")
    return c


def commit_simple(bootstrap: str, group: str, offsets: list[TopicPartition]) -> None:
    """Commits without joining the group (generation -1), as a consumer using assign() does."""
    c = consumer(bootstrap, {"group.id": group})
    try:
        for tp in c.commit(offsets=offsets, asynchronous=False):
            assert tp.error is None, tp
    finally:
        c.close()


def listed(bootstrap: str, **kwargs) -> dict[str, tuple]:
    a = admin(bootstrap)  # the handle must outlive the future
    result = a.list_consumer_groups(request_timeout=15, **kwargs).result(timeout=30)
    assert not result.errors, result.errors
    return {g.group_id: (g.state, g.type, g.is_simple_consumer_group) for g in result.valid}


def describe(bootstrap: str, group: str):
    a = admin(bootstrap)
    return a.describe_consumer_groups([group], request_timeout=15)[group].result(timeout=30)


def committed(bootstrap: str, group: str, partitions: list[TopicPartition] | None = None) -> dict[tuple[str, int], int]:
    req = ConsumerGroupTopicPartitions(group, partitions) if partitions else ConsumerGroupTopicPartitions(group)
    a = admin(bootstrap)
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(timeout=30)
    for tp in res.topic_partitions:
        assert tp.error is None, tp
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def first_offsets(bootstrap: str, group: str, topic: str, partitions: int, conf: dict | None = None) -> dict[int, int]:
    """The first offset a new member of `group` reads from each partition."""
    cfg = dict(QUICK_MEMBER, **{"group.id": group})
    cfg.update(conf or {})
    c = consumer(bootstrap, cfg)
    c.subscribe([topic])
    firsts: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 30
        while len(firsts) < partitions:
            assert time.monotonic() < deadline, f"read only partitions {sorted(firsts)}"
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                firsts.setdefault(msg.partition(), msg.offset())
    finally:
        c.close()
    return firsts


# ---- ListGroups ---------------------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_list_groups_shows_stable_while_a_member_is_in_and_empty_after_it_closed(broker, kp_admin):
    fill(broker.bootstrap, "lg", 2, 5)
    c = joined_consumer(broker.bootstrap, "lg-group", "lg")
    c.commit(offsets=[TopicPartition("lg", 0, 3)], asynchronous=False)

    assert listed(broker.bootstrap)["lg-group"] == (ConsumerGroupState.STABLE, ConsumerGroupType.CLASSIC, False)
    assert "lg-group" in listed(broker.bootstrap, states={ConsumerGroupState.STABLE})
    assert "lg-group" not in listed(broker.bootstrap, states={ConsumerGroupState.EMPTY})
    assert {"group_id": "lg-group", "protocol_type": "consumer", "group_state": "Stable", "group_type": "classic"} \
        in kp_admin.list_groups(states_filter=["Stable"])

    c.close()
    assert listed(broker.bootstrap)["lg-group"] == (ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC, False), \
        "a group with committed offsets stays listed, Empty, after its last member left"
    assert "lg-group" in listed(broker.bootstrap, states={ConsumerGroupState.EMPTY})
    assert "lg-group" not in listed(broker.bootstrap, states={ConsumerGroupState.STABLE})
    assert [g["group_id"] for g in kp_admin.list_groups(states_filter=["Stable"])] == []
    # KIP-848 type filter: classic groups are not "consumer" groups
    assert "lg-group" in listed(broker.bootstrap, types={ConsumerGroupType.CLASSIC})
    assert "lg-group" not in listed(broker.bootstrap, types={ConsumerGroupType.CONSUMER})
    assert [g["group_id"] for g in kp_admin.list_groups(types_filter=["consumer"])] == []


def test_group_that_only_commits_is_listed_as_simple_and_empty(broker, kp_admin):
    fill(broker.bootstrap, "simple", 1, 3)
    commit_simple(broker.bootstrap, "only-commits", [TopicPartition("simple", 0, 2)])
    assert listed(broker.bootstrap)["only-commits"] == (ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC, True)
    assert {"group_id": "only-commits", "protocol_type": "", "group_state": "Empty", "group_type": "classic"} \
        in kp_admin.list_groups()


# ---- DescribeGroups -----------------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
@pytest.mark.parametrize("assignor", ["range", "roundrobin", "cooperative-sticky"])
def test_describe_active_group_shows_state_assignor_members_hosts_and_partitions(broker, kp_admin, assignor):
    topic, group = f"desc-{assignor}", f"desc-group-{assignor}"
    fill(broker.bootstrap, topic, 4, 2)
    conf = {"partition.assignment.strategy": assignor}
    one = joined_consumer(broker.bootstrap, group, topic, dict(conf, **{"client.id": "client-one"}))
    two = consumer(broker.bootstrap, dict(QUICK_MEMBER, **conf, **{"group.id": group, "client.id": "client-two"}))
    two.subscribe([topic])

    def settled():
        d = describe(broker.bootstrap, group)
        owned = [set(tp.partition for tp in m.assignment.topic_partitions) for m in d.members]
        ok = (d.state == ConsumerGroupState.STABLE and len(d.members) == 2 and all(owned)
              and set().union(*owned) == set(range(4))
              and {frozenset(tp.partition for tp in c.assignment()) for c in (one, two)} == set(map(frozenset, owned)))
        return d if ok else None
    try:
        d = poll_until([one, two], settled, 60, "both members to share the four partitions")
        assert d.partition_assignor == assignor
        assert not d.is_simple_consumer_group
        assert sorted(m.client_id for m in d.members) == ["client-one", "client-two"]
        assert {m.host for m in d.members} == {"/127.0.0.1"}, "client host as Kafka reports it"
        assert all(m.member_id.startswith(m.client_id + "-") for m in d.members)
        for m in d.members:
            mine = one if m.client_id == "client-one" else two
            assert {(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} == \
                {(tp.topic, tp.partition) for tp in mine.assignment()}
        owned = [{tp.partition for tp in m.assignment.topic_partitions} for m in d.members]
        assert not owned[0] & owned[1], "no partition assigned twice"

        kd = kp_admin.describe_groups([group])[group]
        assert kd["error"] is None
        assert (kd["group_state"], kd["protocol_type"], kd["protocol_data"]) == ("Stable", "consumer", assignor)
        assert sorted((m["client_id"], m["client_host"]) for m in kd["members"]) == \
            [("client-one", "/127.0.0.1"), ("client-two", "/127.0.0.1")]
        assert all(m["member_metadata"]["topics"] == [topic] for m in kd["members"])
        assigned = sorted(p for m in kd["members"] for t in m["member_assignment"]["assigned_partitions"]
                          for p in t["partitions"])
        assert assigned == [0, 1, 2, 3]
    finally:
        one.close()
        two.close()


def test_describe_unknown_group_reports_it_dead_as_kafka_does(broker, kp_admin):
    # librdkafka sends DescribeGroups v5: Kafka answers an unknown group with state Dead and no error
    d = describe(broker.bootstrap, "never-seen")
    assert d.state == ConsumerGroupState.DEAD
    assert d.members == []
    # kafka-python sends v6 (KIP-1043), where Kafka adds GROUP_ID_NOT_FOUND
    kd = kp_admin.describe_groups(["never-seen"])["never-seen"]
    assert kd["group_state"] == "Dead"
    assert kd["members"] == []
    assert kd["error"] is not None and "GroupIdNotFound" in kd["error"]


# ---- committed offsets -----------------------------------------------------------------------

def test_list_group_offsets_returns_committed_offsets_and_nothing_for_uncommitted_partitions(broker, kp_admin):
    fill(broker.bootstrap, "lo", 3, 10)
    commit_simple(broker.bootstrap, "lo-group", [TopicPartition("lo", 0, 5), TopicPartition("lo", 1, 7)])

    assert committed(broker.bootstrap, "lo-group") == {("lo", 0): 5, ("lo", 1): 7}
    asked = [TopicPartition("lo", p) for p in range(3)]
    # librdkafka shows "no committed offset" as OFFSET_INVALID (-1001), Kafka's -1 on the wire
    assert committed(broker.bootstrap, "lo-group", asked) == {("lo", 0): 5, ("lo", 1): 7, ("lo", 2): -1001}
    got = kp_admin.list_group_offsets({"lo-group": [KTP("lo", p) for p in range(3)]})["lo-group"]
    assert {tp.partition: om.offset for tp, om in got.items()} == {0: 5, 1: 7, 2: -1}
    assert committed(broker.bootstrap, "no-such-group") == {}


@pytest.mark.broker_config(**FAST_JOIN)
def test_altering_offsets_of_an_empty_group_changes_where_the_next_consumer_starts(broker, kp_admin, cf_admin):
    fill(broker.bootstrap, "alter", 2, 10)
    commit_simple(broker.bootstrap, "alter-group", [TopicPartition("alter", 0, 2), TopicPartition("alter", 1, 2)])
    res = cf_admin.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions("alter-group", [TopicPartition("alter", 0, 7)])])["alter-group"].result(timeout=30)
    assert [(tp.partition, tp.offset, tp.error) for tp in res.topic_partitions] == [(0, 7, None)]
    errors = kp_admin.alter_group_offsets("alter-group", {KTP("alter", 1): OffsetAndMetadata(4, "", -1)})
    assert {tp.partition: e.__name__ for tp, e in errors.items()} == {1: "NoError"}
    assert committed(broker.bootstrap, "alter-group") == {("alter", 0): 7, ("alter", 1): 4}
    assert first_offsets(broker.bootstrap, "alter-group", "alter", 2) == {0: 7, 1: 4}


@pytest.mark.broker_config(**FAST_JOIN)
def test_altering_offsets_of_an_active_group_is_refused_with_unknown_member_id(broker, kp_admin, cf_admin):
    fill(broker.bootstrap, "alter-active", 1, 5)
    c = joined_consumer(broker.bootstrap, "busy", "alter-active")
    try:
        c.commit(offsets=[TopicPartition("alter-active", 0, 1)], asynchronous=False)
        res = cf_admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions("busy", [TopicPartition("alter-active", 0, 4)])])["busy"].result(timeout=30)
        [tp] = res.topic_partitions
        assert tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID
        errors = kp_admin.alter_group_offsets("busy", {KTP("alter-active", 0): OffsetAndMetadata(4, "", -1)})
        assert {tp.partition: e.__name__ for tp, e in errors.items()} == {0: "UnknownMemberIdError"}
        assert committed(broker.bootstrap, "busy") == {("alter-active", 0): 1}, "the member's commit stands"
    finally:
        c.close()


# ---- DeleteGroups ----------------------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_deleting_an_empty_group_drops_it_and_its_offsets(broker, cf_admin):
    fill(broker.bootstrap, "del", 1, 10)
    commit_simple(broker.bootstrap, "del-group", [TopicPartition("del", 0, 6)])
    assert first_offsets(broker.bootstrap, "del-group", "del", 1) == {0: 6}  # committed offsets are used...
    cf_admin.delete_consumer_groups(["del-group"], request_timeout=15)["del-group"].result(timeout=30)
    assert "del-group" not in listed(broker.bootstrap)
    assert committed(broker.bootstrap, "del-group") == {}
    assert describe(broker.bootstrap, "del-group").state == ConsumerGroupState.DEAD
    # ...and once deleted, a new member starts from auto.offset.reset
    assert first_offsets(broker.bootstrap, "del-group", "del", 1, {"auto.offset.reset": "earliest"}) == {0: 0}


@pytest.mark.broker_config(**FAST_JOIN)
def test_deleting_a_non_empty_group_is_refused_and_an_unknown_one_is_not_found(broker, kp_admin, cf_admin):
    fill(broker.bootstrap, "del-busy", 1, 3)
    c = joined_consumer(broker.bootstrap, "del-busy-group", "del-busy")
    try:
        fs = cf_admin.delete_consumer_groups(["del-busy-group", "del-unknown"], request_timeout=15)
        codes = {}
        for group, f in fs.items():
            with pytest.raises(KafkaException) as e:
                f.result(timeout=30)
            codes[group] = e.value.args[0].code()
        assert codes == {"del-busy-group": KafkaError.NON_EMPTY_GROUP, "del-unknown": KafkaError.GROUP_ID_NOT_FOUND}
        assert kp_admin.delete_groups(["del-busy-group", "del-unknown"]) == \
            {"del-busy-group": "NonEmptyGroupError", "del-unknown": "GroupIdNotFoundError"}
        assert describe(broker.bootstrap, "del-busy-group").state == ConsumerGroupState.STABLE
    finally:
        c.close()


# ---- OffsetDelete ------------------------------------------------------------------------------------

def test_deleting_offsets_of_an_empty_group_removes_only_those_partitions(broker, kp_admin):
    fill(broker.bootstrap, "od", 2, 5)
    commit_simple(broker.bootstrap, "od-group", [TopicPartition("od", 0, 3), TopicPartition("od", 1, 4)])
    errors = kp_admin.delete_group_offsets("od-group", [KTP("od", 0)])
    assert {tp.partition: e.__name__ for tp, e in errors.items()} == {0: "NoError"}
    assert committed(broker.bootstrap, "od-group") == {("od", 1): 4}


@pytest.mark.broker_config(**FAST_JOIN)
def test_deleting_offsets_of_a_topic_an_active_member_subscribes_to_is_refused(broker, kp_admin):
    fill(broker.bootstrap, "od-sub", 1, 5)
    fill(broker.bootstrap, "od-other", 1, 5)
    c = joined_consumer(broker.bootstrap, "od-active", "od-sub")
    try:
        c.commit(offsets=[TopicPartition("od-sub", 0, 2), TopicPartition("od-other", 0, 3)], asynchronous=False)
        errors = kp_admin.delete_group_offsets("od-active", [KTP("od-sub", 0), KTP("od-other", 0)])
        assert {tp.topic: e.__name__ for tp, e in errors.items()} == \
            {"od-sub": "GroupSubscribedToTopicError", "od-other": "NoError"}
        assert committed(broker.bootstrap, "od-active") == {("od-sub", 0): 2}
    finally:
        c.close()


# ---- LeaveGroup by instance id (KIP-345 admin removal) -------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_remove_group_members_by_instance_id_removes_a_static_member(broker, kp_admin):
    fill(broker.bootstrap, "static", 2, 3)
    c = joined_consumer(broker.bootstrap, "static-group", "static",
                        {"group.instance.id": "instance-1", "session.timeout.ms": "60000"})
    c.close()  # a static member does not leave on close: it is expected back
    d = describe(broker.bootstrap, "static-group")
    assert d.state == ConsumerGroupState.STABLE
    assert [m.group_instance_id for m in d.members] == ["instance-1"]

    result = kp_admin.remove_group_members("static-group", [MemberToRemove(group_instance_id="instance-1")])
    assert [e.__name__ for e in result.values()] == ["NoError"]
    d = describe(broker.bootstrap, "static-group")
    assert d.state == ConsumerGroupState.EMPTY
    assert d.members == []
    result = kp_admin.remove_group_members("static-group", [MemberToRemove(group_instance_id="instance-1")])
    assert [e.__name__ for e in result.values()] == ["UnknownMemberIdError"]


# ---- __consumer_offsets --------------------------------------------------------------------------

def metadata(bootstrap: str) -> dict[str, tuple[int, bool, int]]:
    with kw.Connection(bootstrap) as c:
        return kw.parse_metadata_v1(c.request(kw.API_METADATA, 1, kw.metadata_v1_body(None)))


def test_consumer_offsets_is_created_internal_with_50_partitions_on_first_group_use_only(broker, cf_admin):
    fill(broker.bootstrap, "plain", 1, 3)  # topics, produce and a groupless read create nothing
    assert "__consumer_offsets" not in metadata(broker.bootstrap)
    assert "__consumer_offsets" not in cf_admin.list_topics(timeout=10).topics

    assert describe(broker.bootstrap, "first-group-use").state == ConsumerGroupState.DEAD  # FindCoordinator
    assert metadata(broker.bootstrap)["__consumer_offsets"] == (kw.NONE, True, 50)
    assert metadata(broker.bootstrap)["plain"] == (kw.NONE, False, 1)


def test_producing_to_or_deleting_consumer_offsets_is_refused(broker, cf_admin):
    describe(broker.bootstrap, "any-group")  # its FindCoordinator creates the topic
    errors = []
    p = producer(broker.bootstrap, {"message.timeout.ms": 15000})
    p.produce("__consumer_offsets", value=b"forged", partition=0, on_delivery=lambda err, msg: errors.append(err))
    flush_all(p, 30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)

    f = cf_admin.delete_topics(["__consumer_offsets"], request_timeout=15)["__consumer_offsets"]
    with pytest.raises(KafkaException) as e:
        f.result(timeout=30)
    assert e.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
    assert metadata(broker.bootstrap)["__consumer_offsets"] == (kw.NONE, True, 50), "still there, whole"


def find_coordinator_v0(bootstrap: str, group: str) -> tuple[int, int]:
    """(error_code, node_id) of FindCoordinator v0 for a group."""
    with kw.Connection(bootstrap) as c:
        r = c.request(kw.API_FIND_COORDINATOR, 0, kw.string(group))
        return r.i16(), r.i32()


def test_consumer_offsets_replication_factor_is_capped_on_a_lone_broker_and_honoured_when_set(broker_factory, tmp_path):
    lone = broker_factory()
    assert find_coordinator_v0(lone.bootstrap, "g1") == (kw.NONE, 1)
    assert find_coordinator_v0(lone.bootstrap, "g2") == (kw.NONE, 1)
    topic = admin(lone.bootstrap).list_topics(timeout=10).topics["__consumer_offsets"]
    assert sorted(topic.partitions) == list(range(50))
    assert all(p.replicas == [1] and p.isrs == [1] for p in topic.partitions.values())
    warnings = [line for line in lone.log_path.read_text(errors="replace").splitlines()
                if "offsets.topic.replication.factor is left at its default 3 but only 1 broker(s) are alive" in line]
    assert len(warnings) == 1 and "WARN" in warnings[0], warnings

    # Set explicitly, it is required as Kafka requires it: one broker cannot hold three replicas.
    strict = broker_factory(overrides={"offsets.topic.replication.factor": "3"})
    assert find_coordinator_v0(strict.bootstrap, "g1") == (15, -1)  # COORDINATOR_NOT_AVAILABLE
    assert "__consumer_offsets" not in metadata(strict.bootstrap)


# ---- offsets retention settings -----------------------------------------------------------------------

@pytest.mark.broker_config(**{"offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "500"})
def test_offsets_retention_settings_are_accepted_reported_and_keep_offsets_until_retention(broker, cf_admin):
    res = ConfigResource(ResourceType.BROKER, "1")
    configs = cf_admin.describe_configs([res], request_timeout=15)[res].result(timeout=30)
    assert configs["offsets.retention.minutes"].value == "1"
    assert configs["offsets.retention.check.interval.ms"].value == "500"
    fill(broker.bootstrap, "retained", 1, 3)
    commit_simple(broker.bootstrap, "retained-group", [TopicPartition("retained", 0, 2)])
    # several expiry checks run (every 500 ms); a one-minute retention keeps the offsets
    time.sleep(2)
    assert committed(broker.bootstrap, "retained-group") == {("retained", 0): 2}
