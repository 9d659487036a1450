"""Separate roles as Kafka's KRaft runs them: controller-only nodes (process.roles=controller:
the quorum and the controller APIs on the CONTROLLER listener, no partitions, never a registered
broker) and broker-only nodes (process.roles=broker: observers that follow the metadata log from
the active controller, register and heartbeat). Real clients (confluent-kafka) produce with
acks=all and consume; kafka-metadata-quorum.sh lists the voters and the observers."""

from __future__ import annotations

import re
import subprocess

from cluster_harness import wait_for
from e2e_util import consume_confluent, consumer, flush_all, poll_messages, producer

TOOL_TIMEOUT_S = 30
# Brokers fenced within seconds, so a killed leader is replaced quickly.
FAST_FENCING = {"broker.session.timeout.ms": 3000, "broker.heartbeat.interval.ms": 500}


def produce_all(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = producer(bootstrap, {"acks": "all", "enable.idempotence": True})
    failed = []
    for v in values:
        p.produce(topic, value=v, partition=0, on_delivery=lambda err, _msg: err and failed.append(err))
    flush_all(p)
    assert not failed, failed


def quorum_status(bin_dir, tool_env, *bootstrap: str) -> dict[str, str]:
    run = subprocess.run([str(bin_dir / "kafka-metadata-quorum.sh"), *bootstrap, "describe", "--status"],
                         env=tool_env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    assert run.returncode == 0, run.stderr
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in run.stdout.splitlines())}


def ids(listed: str) -> list[int]:
    return [int(i) for i in re.findall(r"\d+", listed)]


def test_a_controller_only_node_and_two_broker_only_nodes_serve_clients(cluster_factory, bin_dir, tool_env):
    c = cluster_factory(3, voters=1, roles={1: "controller", 2: "broker", 3: "broker"}, overrides=FAST_FENCING)
    # Only the brokers are registered: Metadata lists 2 and 3, never the controller.
    md = c.metadata()
    assert sorted(md.brokers) == [2, 3], md.brokers
    parts = c.create_topic("roles", partitions=1, replication_factor=2)
    assert sorted(parts[0].replicas) == [2, 3]
    values = [f"v{i}".encode() for i in range(200)]
    produce_all(c.running_bootstrap(), "roles", values)
    assert [m.value() for m in consume_confluent(c.running_bootstrap(), "roles", 0, len(values))] == values
    # A group: __consumer_offsets is created through the controller, over the two brokers.
    g = consumer(c.running_bootstrap(), {"group.id": "roles-group", "auto.offset.reset": "earliest"})
    g.subscribe(["roles"])
    assert [m.value() for m in poll_messages(g, len(values))] == values
    g.commit(asynchronous=False)
    g.close()
    offsets = c.partitions("__consumer_offsets")
    assert offsets and all(sorted(p.replicas) == [2, 3] for p in offsets.values())

    # The voters and both observers, through a broker (forwarded) and on the controller.
    for bootstrap in (["--bootstrap-server", c.node(2).bootstrap], ["--bootstrap-controller", c.controllers]):
        status = wait_for("both observers in DescribeQuorum",
                          lambda b=bootstrap: (s := quorum_status(bin_dir, tool_env, *b))
                          and ids(s["CurrentObservers"]) == [2, 3] and s, timeout=30)
        assert status["LeaderId"] == "1" and ids(status["CurrentVoters"]) == [1], status

    # kill -9 the leader: the other broker leads, with every acknowledged record.
    leader = c.leader("roles", 0)
    c.node(leader).kill9()
    survivor = c.wait_for_leader("roles", 0, not_in={leader}, timeout=30)
    assert survivor in (2, 3) and survivor != leader
    more = [f"w{i}".encode() for i in range(50)]
    produce_all(c.node(survivor).bootstrap, "roles", more)
    got = consume_confluent(c.node(survivor).bootstrap, "roles", 0, len(values) + len(more))
    assert [m.value() for m in got] == values + more

    # The restarted broker gets the image again (it restarts as an observer with no log of
    # its own to replay), hosts its replica and rejoins the ISR.
    c.node(leader).start()
    c.wait_ready(timeout=30)
    c.wait_for_isr("roles", 0, [2, 3], timeout=30)
    assert c.partitions("roles", node=leader)[0].leader == survivor


def test_broker_only_nodes_follow_a_new_active_controller(cluster_factory, bin_dir, tool_env):
    # Broker 5 knows only the controllers' addresses (controller.quorum.bootstrap.servers).
    c = cluster_factory(5, voters=3, roles={i: "controller" for i in (1, 2, 3)}, bootstrap_ids={5},
                        overrides=FAST_FENCING)
    assert sorted(c.metadata().brokers) == [4, 5]
    c.create_topic("before", partitions=2, replication_factor=2)
    status = quorum_status(bin_dir, tool_env, "--bootstrap-controller", c.controllers)
    active = int(status["LeaderId"])
    assert active in (1, 2, 3) and ids(status["CurrentVoters"]) == [1, 2, 3]

    c.node(active).kill9()
    # A change decided by the new active controller reaches both brokers.
    remaining = ",".join(f"127.0.0.1:{c.node(i).controller_port}" for i in (1, 2, 3) if i != active)
    status = wait_for("a new active controller with both observers",
                      lambda: (s := quorum_status(bin_dir, tool_env, "--bootstrap-controller", remaining))
                      and s["LeaderId"] not in ("", "-1", str(active)) and ids(s["CurrentObservers"]) == [4, 5] and s,
                      timeout=30)
    replication = subprocess.run([str(bin_dir / "kafka-metadata-quorum.sh"), "--bootstrap-controller", remaining,
                                  "describe", "--replication"], env=tool_env, capture_output=True, text=True,
                                 timeout=TOOL_TIMEOUT_S)
    assert replication.returncode == 0, replication.stderr
    roles = {int(line.split()[0]): line.split()[-1] for line in replication.stdout.splitlines()[1:] if line.strip()}
    assert roles[4] == roles[5] == "Observer" and roles[int(status["LeaderId"])] == "Leader", replication.stdout
    c.create_topic("after", partitions=2, replication_factor=2, timeout=60)
    values = [f"a{i}".encode() for i in range(20)]
    produce_all(c.running_bootstrap(), "after", values)
    assert [m.value() for m in consume_confluent(c.running_bootstrap(), "after", 0, len(values))] == values

    # A broker restarted after the failover gets the whole image from the new leader.
    c.node(5).stop()
    c.node(5).start()
    c.wait_ready(timeout=30)
    for t in ("before", "after"):
        assert len(c.partitions(t, node=5)) == 2, t
    assert int(status["LeaderId"]) != active
