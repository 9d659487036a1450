"""Admin requests through a node that is not the active controller (KIP-590 forwarding):
confluent-kafka's AdminClient and bin/kafka-topics.sh / kafka-configs.sh bootstrapped at that
node alone create a topic, alter its configs, add partitions and delete it, and every node
sees each change. Needs: node (three-node cluster mode)."""

from __future__ import annotations

import subprocess

from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions, NewTopic

from cluster_harness import require_cluster_mode
from e2e_util import admin


def run_ok(cmd: list, env: dict) -> str:
    res = subprocess.run([str(c) for c in cmd], capture_output=True, env=env, timeout=120)
    out, err = res.stdout.decode(errors="replace"), res.stderr.decode(errors="replace")
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} exited {res.returncode}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def partition_counts(c, topic: str) -> dict[int, int | None]:
    """Each running node's partition count of `topic` (None: unknown there)."""
    counts = {}
    for n in c.running():
        err, parts = n.metadata([topic]).topics.get(topic, (-1, {}))
        counts[n.node_id] = len(parts) if err == 0 else None
    return counts


def topic_config_on(node, topic: str, name: str, bin_dir, env) -> str | None:
    out = run_ok([bin_dir / "kafka-configs.sh", "--bootstrap-server", node.bootstrap, "--describe",
                  "--entity-type", "topics", "--entity-name", topic], env)
    for part in out.replace(",", " ").split():
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    return None


def test_admin_client_and_tools_at_a_node_that_is_not_the_active_controller(cluster_factory, bin_dir, tool_env):
    require_cluster_mode()
    c = cluster_factory(3)
    active = c.wait_for_controller()
    node = next(n for n in c.running() if n.node_id != active)

    def everywhere(want):
        def check():
            counts = partition_counts(c, t)
            assert counts == {n.node_id: want for n in c.running()}, counts
            return True
        return check

    # confluent-kafka AdminClient bootstrapped at that node only.
    a = admin(node.bootstrap)
    t = "fwd-admin"
    fs = a.create_topics([NewTopic(t, num_partitions=1, replication_factor=3)], request_timeout=30)
    fs[t].result(timeout=60)
    c.wait_for(f"{t} on every node", everywhere(1), 30)
    res = ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(timeout=60)
    for n in c.running():
        c.wait_for(f"retention.ms on node {n.node_id}",
                   lambda: topic_config_on(n, t, "retention.ms", bin_dir, tool_env) == "3600000" or None, 30)
    a.create_partitions([NewPartitions(t, 3)])[t].result(timeout=60)
    c.wait_for(f"{t} with 3 partitions on every node", everywhere(3), 30)
    a.delete_topics([t], operation_timeout=30)[t].result(timeout=60)
    c.wait_for(f"{t} gone from every node", everywhere(None), 30)

    # bin/kafka-topics.sh and kafka-configs.sh (potok kafka-topics / kafka-configs) at that node.
    t = "fwd-tools"
    boot = ["--bootstrap-server", node.bootstrap]
    out = run_ok([bin_dir / "kafka-topics.sh", "--create", *boot, "--topic", t, "--partitions", "1",
                  "--replication-factor", "3"], tool_env)
    assert f"Created topic {t}." in out, out
    c.wait_for(f"{t} on every node", everywhere(1), 30)
    run_ok([bin_dir / "kafka-configs.sh", *boot, "--alter", "--entity-type", "topics", "--entity-name", t,
            "--add-config", "segment.ms=7200000"], tool_env)
    for n in c.running():
        c.wait_for(f"segment.ms on node {n.node_id}",
                   lambda: topic_config_on(n, t, "segment.ms", bin_dir, tool_env) == "7200000" or None, 30)
    run_ok([bin_dir / "kafka-topics.sh", "--alter", *boot, "--topic", t, "--partitions", "2"], tool_env)
    c.wait_for(f"{t} with 2 partitions on every node", everywhere(2), 30)
    run_ok([bin_dir / "kafka-topics.sh", "--delete", *boot, "--topic", t], tool_env)
    c.wait_for(f"{t} gone from every node", everywhere(None), 30)
