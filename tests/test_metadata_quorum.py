"""kafka-metadata-quorum.sh describe --status / --replication against a three-node
cluster started as in issue 9's example (DescribeQuorum on the CONTROLLER listener
with --bootstrap-controller, and through any broker with --bootstrap-server: a node
that is not the active controller forwards it)."""

import re
import subprocess
import time

from conftest import HOST, free_port

TOOL_TIMEOUT_S = 60
PATIENCE_S = 60


def start_cluster(broker_factory):
    ids = [1, 2, 3]
    client = {i: free_port() for i in ids}
    controller = {i: free_port() for i in ids}
    voters = ",".join(f"{i}@{HOST}:{controller[i]}" for i in ids)
    nodes = {}
    for i in ids:
        nodes[i] = broker_factory(name=f"node{i}", port=client[i], overrides={
            "node.id": str(i),
            "process.roles": "broker,controller",
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{HOST}:{client[i]},CONTROLLER://{HOST}:{controller[i]}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{client[i]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
        })
    return nodes, controller


def quorum_tool(bin_dir, tool_env, *args):
    return subprocess.run([str(bin_dir / "kafka-metadata-quorum.sh"), *args], env=tool_env,
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


def until_ok(bin_dir, tool_env, *args, settled=lambda out: True):
    """The tool's output once the quorum has a leader that answers (the nodes are
    still electing right after start) and `settled(output)` holds."""
    deadline = time.monotonic() + PATIENCE_S
    while True:
        run = quorum_tool(bin_dir, tool_env, *args)
        if run.returncode == 0 and settled(run.stdout):
            return run.stdout
        assert time.monotonic() < deadline, f"{args}: {run.stderr or run.stdout}"
        time.sleep(0.2)


def every_voter_fetched(table):
    """A follower that has not fetched from this leader yet shows -1 (as in Kafka): right
    after start the leader may not have reached the last node to start."""
    return all(int(line.split()[3]) > 0 for line in table.splitlines()[1:])


def stored_cluster_id(node):
    text = (node.data_dir / "meta.properties").read_text()
    return re.search(r"^cluster\.id=(.+)$", text, re.M).group(1)


def parse_status(text):
    fields = {}
    for line in text.splitlines():
        key, value = line.split(":", 1)
        fields[key] = value.strip()
    return fields


def test_describe_status_and_replication_name_the_leader_and_every_voter(broker_factory, bin_dir, tool_env):
    nodes, controller = start_cluster(broker_factory)
    controllers = ",".join(f"{HOST}:{controller[i]}" for i in sorted(controller))
    status_text = until_ok(bin_dir, tool_env, "--bootstrap-controller", controllers, "describe", "--status")
    status = parse_status(status_text)
    assert list(status) == ["ClusterId", "LeaderId", "LeaderEpoch", "HighWatermark", "MaxFollowerLag",
                            "MaxFollowerLagTimeMs", "CurrentVoters", "CurrentObservers"], status_text
    # Kafka aligns the values in one column.
    assert all(line.index(line.split()[1]) == 24 for line in status_text.splitlines()), status_text
    assert status["ClusterId"] == stored_cluster_id(nodes[1]) == stored_cluster_id(nodes[3])
    leader = int(status["LeaderId"])
    assert leader in nodes
    assert int(status["LeaderEpoch"]) >= 1
    assert int(status["HighWatermark"]) > 0
    assert status["CurrentVoters"] == "[1,2,3]"
    assert status["CurrentObservers"] == "[]"

    # Through each broker: the followers forward to the active controller.
    for i, node in nodes.items():
        through = parse_status(until_ok(bin_dir, tool_env, "--bootstrap-server", node.bootstrap,
                                        "describe", "--status"))
        assert through["LeaderId"] == str(leader), (i, through)
        assert through["ClusterId"] == status["ClusterId"]
        assert through["CurrentVoters"] == "[1,2,3]"

    table = until_ok(bin_dir, tool_env, "--bootstrap-controller", controllers, "describe", "--replication",
                     settled=every_voter_fetched)
    rows = [re.split(r"\s*\t", line) for line in table.splitlines()]
    assert rows[0] == ["NodeId", "LogEndOffset", "Lag", "LastFetchTimestamp", "LastCaughtUpTimestamp", "Status"], table
    body = rows[1:]
    assert [r[0] for r in body][0] == str(leader), "the leader first"
    assert sorted(int(r[0]) for r in body) == [1, 2, 3]
    assert [r[5] for r in body] == ["Leader", "Follower", "Follower"], table
    leader_end = int(body[0][1])
    assert leader_end > 0
    for node_id, end, lag, fetch, caught_up, _ in body:
        assert int(lag) == leader_end - int(end) >= 0, table
        assert int(fetch) > 0 and int(caught_up) > 0, table


def test_one_of_status_or_replication_and_one_bootstrap_kind_are_required(bin_dir, tool_env):
    run = quorum_tool(bin_dir, tool_env, "--bootstrap-server", f"{HOST}:1", "--bootstrap-controller",
                      f"{HOST}:1", "describe", "--status")
    assert run.returncode != 0
    assert "Only one of --bootstrap-server or --bootstrap-controller must be specified" in run.stderr
    run = quorum_tool(bin_dir, tool_env, "--bootstrap-controller", f"{HOST}:1", "describe")
    assert run.returncode != 0
    assert "One of --status or --replication must be specified with describe sub-command" in run.stderr
