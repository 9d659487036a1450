"""What operators and clients see of the cluster on a single node: `kafka-topics.sh
--describe` in Kafka 4's exact layout (with the ELR columns DescribeTopicPartitions
carries) and its report filters, `potok cluster status`, and Metadata answering with
the advertised endpoint of the listener a request came in on."""

from __future__ import annotations

import base64
import re
import subprocess

from confluent_kafka import OFFSET_INVALID, Consumer, TopicCollection, TopicPartition

from conftest import free_port
from e2e_util import admin, create_topic

TIMEOUT = 30


def run(cmd: list, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, timeout=120)
    res.out = res.stdout.decode(errors="replace")
    res.err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} exited {res.returncode}\n{res.out}\n{res.err}"
    return res


def describe(bin_dir, tool_env, broker, *flags: str) -> list[str]:
    return run([bin_dir / "kafka-topics.sh", "--bootstrap-server", broker.bootstrap, "--describe", *flags],
               tool_env).out.splitlines()


def kafka_topic_id(bootstrap: str, topic: str) -> str:
    """The topic id as Kafka prints a Uuid: URL-safe base64 without padding."""
    a = admin(bootstrap)  # kept alive until the future resolves
    described = a.describe_topics(TopicCollection([topic]))[topic].result(timeout=TIMEOUT)
    raw = bytes.fromhex(f"{described.topic_id.get_most_significant_bits() & (2**64 - 1):016x}"
                        f"{described.topic_id.get_least_significant_bits() & (2**64 - 1):016x}")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def partition_line(topic: str, p: int) -> str:
    return f"\tTopic: {topic}\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: \tLastKnownElr: "


def test_describe_prints_kafka_4s_topic_and_partition_lines(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "orders", partitions=2, config={"retention.ms": "3600000"})
    out = describe(bin_dir, tool_env, broker, "--topic", "orders")
    topic_id = kafka_topic_id(broker.bootstrap, "orders")
    assert out == [
        f"Topic: orders\tTopicId: {topic_id}\tPartitionCount: 2\tReplicationFactor: 1\tConfigs: retention.ms=3600000",
        partition_line("orders", 0),
        partition_line("orders", 1),
    ]
    # The native spelling prints the same.
    native = run([tool_env["POTOK_BIN"], "topics", "describe", "--bootstrap-server", broker.bootstrap,
                  "--topic", "orders"], tool_env).out.splitlines()
    assert native == out


def test_report_filters_show_only_their_partitions(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "plain", partitions=2)
    # One replica, min.insync.replicas 2: every partition is under its minimum ISR.
    create_topic(broker.bootstrap, "strict", partitions=1, config={"min.insync.replicas": "2"})
    # One node: every ISR is whole and every leader is live.
    assert describe(bin_dir, tool_env, broker, "--under-replicated-partitions") == []
    assert describe(bin_dir, tool_env, broker, "--unavailable-partitions") == []
    assert describe(bin_dir, tool_env, broker, "--under-min-isr-partitions") == [partition_line("strict", 0)]
    # ISR 1 equals the default min.insync.replicas of 1; no topic lines with a filter.
    assert describe(bin_dir, tool_env, broker, "--at-min-isr-partitions") == \
        [partition_line("plain", 0), partition_line("plain", 1)]
    overrides = describe(bin_dir, tool_env, broker, "--topics-with-overrides")
    assert len(overrides) == 1 and overrides[0].startswith("Topic: strict\tTopicId: "), overrides
    assert overrides[0].endswith("\tConfigs: min.insync.replicas=2"), overrides
    refused = subprocess.run([str(bin_dir / "kafka-topics.sh"), "--bootstrap-server", broker.bootstrap, "--list",
                              "--under-replicated-partitions"], capture_output=True, env=tool_env, timeout=120)
    assert refused.returncode != 0
    assert 'Option "[under-replicated-partitions]" can\'t be used with option "[list]"' in refused.stderr.decode()


def test_exclude_internal_leaves_out_consumer_offsets(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "events")
    # FindCoordinator creates __consumer_offsets, as Kafka does on first use.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "g"})
    try:
        assert c.committed([TopicPartition("events", 0)], timeout=TIMEOUT)[0].offset == OFFSET_INVALID
    finally:
        c.close()
    topics = [line.split("\t")[0] for line in describe(bin_dir, tool_env, broker) if line.startswith("Topic: ")]
    assert topics == ["Topic: __consumer_offsets", "Topic: events"]
    topics = [line.split("\t")[0] for line in describe(bin_dir, tool_env, broker, "--exclude-internal")
              if line.startswith("Topic: ")]
    assert topics == ["Topic: events"]


def test_cluster_status_on_one_node(broker, tool_env):
    create_topic(broker.bootstrap, "strict", partitions=1, config={"min.insync.replicas": "2"})
    a = admin(broker.bootstrap)
    cluster_id = a.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT).cluster_id
    out = run([tool_env["POTOK_BIN"], "cluster", "status", "--bootstrap-server", broker.bootstrap], tool_env).out
    host, port = broker.bootstrap.split(":")
    lines = out.splitlines()
    # The one-voter quorum: its epoch and high watermark depend on the records written so far.
    assert re.fullmatch(r"Quorum:\tleader 1 epoch \d+ high watermark \d+ voters \[1\] max follower lag 0", lines[2]), lines
    assert lines[:2] + lines[3:] == [
        f"ClusterId:\t{cluster_id}",
        "Controller:\t1",
        "Brokers:\t1 (1 unfenced, 0 fenced)",
        f"\tBroker 1\t{host}:{port}\tRack: none\tunfenced",
        "Under-replicated partitions:\t0",
        "Under-min-ISR partitions:\t1",
        "\tstrict-0\tLeader: 1\tReplicas: 1\tIsr: 1",
        "Offline partitions:\t0",
    ]


def test_metadata_names_the_endpoint_of_the_listener_the_request_came_in_on(broker_factory):
    external = free_port()
    b = broker_factory(overrides={
        "listeners": f"PLAINTEXT://127.0.0.1:{{port}},EXTERNAL://127.0.0.2:{external}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{{port}},EXTERNAL://127.0.0.2:{external}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
    }, start=False)
    for key in ("listeners", "advertised.listeners"):
        b.overrides[key] = b.overrides[key].replace("{port}", str(b.port))
    b.start()
    for bootstrap in (f"127.0.0.1:{b.port}", f"127.0.0.2:{external}"):
        a = admin(bootstrap)
        md = a.list_topics(timeout=TIMEOUT)
        assert {i: (n.host, n.port) for i, n in md.brokers.items()} == \
            {1: tuple(bootstrap.split(":")[:1]) + (int(bootstrap.split(":")[1]),)}, bootstrap
        assert md.controller_id == 1
        cluster = a.describe_cluster(request_timeout=TIMEOUT).result(timeout=TIMEOUT)
        assert [(n.id, n.host, n.port) for n in cluster.nodes] == \
            [(1, bootstrap.split(":")[0], int(bootstrap.split(":")[1]))], bootstrap
