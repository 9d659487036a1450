"""Kafka's group tooling as users type it: kafka-console-consumer.sh --group,
kafka-consumer-groups.sh --describe (lag across a broker restart) and
--reset-offsets (allowed on an inactive group, refused on an active one)."""

from __future__ import annotations


import pytest
from confluent_kafka import Consumer

from e2e_util import RDKAFKA_LOGGER, create_topic, flush_all, poll_messages, producer
from test_kafka_scripts import ok, run

FAST = {"group.initial.rebalance.delay.ms": "0"}


def produce_lines(bootstrap: str, topic: str, values: list[str], partition: int = 0) -> None:
    p = producer(bootstrap)
    for v in values:
        p.produce(topic, v.encode(), partition=partition)
    flush_all(p)


def describe_rows(bin_dir, env, bootstrap: str, group: str) -> dict[tuple[str, int], list[str]]:
    """`kafka-consumer-groups.sh --describe` rows keyed by (topic, partition):
    [CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID, HOST, CLIENT-ID]."""
    res = ok(run([bin_dir / "kafka-consumer-groups.sh", "--bootstrap-server", bootstrap, "--describe",
                  "--group", group], env))
    rows = {}
    lines = [l for l in res.out.splitlines() if l.strip()]
    header = next(i for i, l in enumerate(lines) if l.split()[:3] == ["GROUP", "TOPIC", "PARTITION"])
    for line in lines[header + 1:]:
        cols = line.split()
        if cols[0] == group:
            rows[(cols[1], int(cols[2]))] = cols[3:]
    return rows


@pytest.mark.broker_config(**FAST)
def test_console_consumer_with_a_group_resumes_where_it_stopped(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "lines")
    produce_lines(broker.bootstrap, "lines", [f"line-{i}" for i in range(5)])
    consumer = [bin_dir / "kafka-console-consumer.sh", "--bootstrap-server", broker.bootstrap, "--topic", "lines",
                "--group", "console", "--from-beginning", "--timeout-ms", "10000"]
    first = ok(run(consumer + ["--max-messages", "3"], tool_env))
    assert first.out.split() == ["line-0", "line-1", "line-2"]
    second = ok(run(consumer + ["--max-messages", "2"], tool_env))
    assert second.out.split() == ["line-3", "line-4"], "the group resumes after what it consumed"


@pytest.mark.broker_config(**FAST)
def test_describe_shows_lag_before_and_after_a_restart(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "lagged", partitions=2)
    produce_lines(broker.bootstrap, "lagged", [f"a{i}" for i in range(10)], partition=0)
    produce_lines(broker.bootstrap, "lagged", [f"b{i}" for i in range(4)], partition=1)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "laggy", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "logger": RDKAFKA_LOGGER})
    c.subscribe(["lagged"])

    def commit_some(msg) -> None:
        # committed offsets 6 on partition 0 and 4 on partition 1
        if (msg.partition(), msg.offset()) in ((0, 5), (1, 3)):
            c.commit(message=msg, asynchronous=False)

    consumed = len(poll_messages(c, 14, on_message=commit_some))
    c.close()
    assert consumed == 14

    expected = {("lagged", 0): ["6", "10", "4"], ("lagged", 1): ["4", "4", "0"]}
    before = describe_rows(bin_dir, tool_env, broker.bootstrap, "laggy")
    assert {k: v[:3] for k, v in before.items()} == expected

    broker.restart()
    after = describe_rows(bin_dir, tool_env, broker.bootstrap, "laggy")
    assert {k: v[:3] for k, v in after.items()} == expected, "committed offsets and lag survive the restart"

    produce_lines(broker.bootstrap, "lagged", ["c0", "c1"], partition=1)
    grown = describe_rows(bin_dir, tool_env, broker.bootstrap, "laggy")
    assert grown[("lagged", 1)][:3] == ["4", "6", "2"]


@pytest.mark.broker_config(**FAST)
def test_reset_to_earliest_rereads_an_inactive_group_and_is_refused_for_an_active_one(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "replay")
    produce_lines(broker.bootstrap, "replay", [f"r{i}" for i in range(6)])
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": "replayers", "auto.offset.reset": "earliest",
            "logger": RDKAFKA_LOGGER}

    def read_all(c: Consumer, n: int) -> list[str]:
        return [msg.value().decode() for msg in poll_messages(c, n)]

    c = Consumer(conf)
    c.subscribe(["replay"])
    assert read_all(c, 6) == [f"r{i}" for i in range(6)]
    c.commit(asynchronous=False)

    reset = [bin_dir / "kafka-consumer-groups.sh", "--bootstrap-server", broker.bootstrap, "--group", "replayers",
             "--reset-offsets", "--to-earliest", "--topic", "replay", "--execute"]
    # Kafka's tool prints the refusal and exits 0; nothing is committed.
    refused = run(reset, tool_env)
    assert ("Assignments can only be reset if the group 'replayers' is inactive, but the current state is Stable."
            in refused.out + refused.err)
    assert describe_rows(bin_dir, tool_env, broker.bootstrap, "replayers")[("replay", 0)][0] == "6"
    c.close()

    dry = ok(run(reset[:-1] + ["--dry-run"], tool_env))
    assert "replayers" in dry.out and " 0" in dry.out
    rows = describe_rows(bin_dir, tool_env, broker.bootstrap, "replayers")
    assert rows[("replay", 0)][0] == "6", "a dry run changes nothing"

    done = ok(run(reset, tool_env))
    assert "NEW-OFFSET" in done.out
    assert describe_rows(bin_dir, tool_env, broker.bootstrap, "replayers")[("replay", 0)][0] == "0"

    c = Consumer(conf)
    c.subscribe(["replay"])
    assert read_all(c, 6) == [f"r{i}" for i in range(6)], "the next consumer re-reads the topic from the start"
    c.close()
