"""Kafka's quickstart commands, typed as in the tutorials, work against Potok:
bin/kafka-topics.sh, kafka-console-producer.sh, kafka-console-consumer.sh, and kcat."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import port_is_free
from e2e_util import create_topic, list_topics


def run(cmd: list, env: dict, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], input=stdin if stdin is not None else b"",
                         capture_output=True, env=env, timeout=timeout)
    res.out = res.stdout.decode(errors="replace")
    res.err = res.stderr.decode(errors="replace")
    return res


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, (f"{' '.join(map(str, res.args))} exited {res.returncode}\n"
                                 f"stdout:\n{res.out}\nstderr:\n{res.err}")
    return res


def zookeeper_lines(res) -> list[str]:
    return [l for l in (res.out + res.err).splitlines() if "zookeeper" in l.lower()]


def test_kafka_topics_create_and_list_with_bootstrap_server(broker, bin_dir, tool_env):
    res = ok(run([bin_dir / "kafka-topics.sh", "--create", "--bootstrap-server", broker.bootstrap,
                  "--replication-factor", "1", "--partitions", "3", "--topic", "mytopic"], tool_env))
    assert "Created topic mytopic." in res.out
    assert list_topics(broker.bootstrap).get("mytopic") == 3

    res = ok(run([bin_dir / "kafka-topics.sh", "--list", "--bootstrap-server", broker.bootstrap], tool_env))
    assert "mytopic" in res.out.split()


def test_kafka_topics_zookeeper_flag_says_not_needed_and_creates_topic(broker, bin_dir, tool_env):
    res = ok(run([bin_dir / "kafka-topics.sh", "--create", "--zookeeper", "localhost:2181",
                  "--replication-factor", "1", "--partitions", "1", "--topic", "mytopic",
                  "--bootstrap-server", broker.bootstrap], tool_env))
    zk = zookeeper_lines(res)
    assert len(zk) == 1, f"expected exactly one line about ZooKeeper, got {zk!r}"
    assert "Created topic mytopic." in res.out
    assert list_topics(broker.bootstrap).get("mytopic") == 1


def test_kafka_topics_pure_tutorial_zookeeper_form_reaches_localhost_9092(broker_factory, bin_dir, tool_env):
    if not port_is_free(9092):
        pytest.skip("port 9092 is in use on this machine; the tutorial form defaults to localhost:9092")
    b = broker_factory(port=9092, name="broker9092")
    res = ok(run([bin_dir / "kafka-topics.sh", "--create", "--zookeeper", "localhost:2181",
                  "--replication-factor", "1", "--partitions", "1", "--topic", "test"], tool_env))
    assert len(zookeeper_lines(res)) == 1
    assert "Created topic test." in res.out
    assert "test" in list_topics(b.bootstrap)

    res = ok(run([bin_dir / "kafka-topics.sh", "--list", "--zookeeper", "localhost:2181"], tool_env))
    assert "test" in res.out.split()


def test_console_producer_and_consumer_roundtrip_lines(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "mytopic")
    lines = ["This is a message", "This is another message", "ünïcödé ✓", "   spaces kept   "]
    ok(run([bin_dir / "kafka-console-producer.sh", "--broker-list", broker.bootstrap, "--topic", "mytopic"],
           tool_env, stdin=("\n".join(lines) + "\n").encode()))

    res = ok(run([bin_dir / "kafka-console-consumer.sh", "--bootstrap-server", broker.bootstrap,
                  "--topic", "mytopic", "--from-beginning", "--max-messages", str(len(lines))], tool_env))
    assert res.out.splitlines() == lines
    assert f"Processed a total of {len(lines)} messages" in res.err


def test_console_producer_parse_key_and_consumer_print_key(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "keyed")
    ok(run([bin_dir / "kafka-console-producer.sh", "--broker-list", broker.bootstrap, "--topic", "keyed",
            "--property", "parse.key=true", "--property", "key.separator=:"],
           tool_env, stdin=b"k1:v1\nk2:value:with:colons\n"))

    res = ok(run([bin_dir / "kafka-console-consumer.sh", "--bootstrap-server", broker.bootstrap,
                  "--topic", "keyed", "--from-beginning", "--max-messages", "2",
                  "--property", "print.key=true"], tool_env))
    assert res.out.splitlines() == ["k1\tv1", "k2\tvalue:with:colons"]

    # and the key really is the record key, as any other client sees it
    from e2e_util import consume_confluent
    got = [(m.key(), m.value()) for m in consume_confluent(broker.bootstrap, "keyed", 0, 2)]
    assert got == [(b"k1", b"v1"), (b"k2", b"value:with:colons")]


@pytest.fixture
def kcat():
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (scripts/test installs it with apt-get)")
    return path


def test_kcat_metadata_lists_topic(broker, kcat, tool_env):
    create_topic(broker.bootstrap, "mytopic", partitions=2)
    res = ok(run([kcat, "-b", broker.bootstrap, "-L"], tool_env))
    assert 'topic "mytopic" with 2 partitions:' in res.out, res.out
    assert "partition 0, leader 1" in res.out
    assert f"broker 1 at {broker.bootstrap}" in res.out


def test_kcat_produce_then_consume_from_beginning(broker, kcat, tool_env):
    lines = [f"kcat message {i}" for i in range(100)]
    create_topic(broker.bootstrap, "kt")
    ok(run([kcat, "-P", "-b", broker.bootstrap, "-t", "kt", "-p", "0"], tool_env,
           stdin=("\n".join(lines) + "\n").encode()))
    res = ok(run([kcat, "-C", "-b", broker.bootstrap, "-t", "kt", "-p", "0", "-e", "-o", "beginning", "-q"],
                 tool_env))
    assert res.out.splitlines() == lines

    # keyed, with offsets printed
    ok(run([kcat, "-P", "-b", broker.bootstrap, "-t", "kt", "-p", "0", "-K", ":"], tool_env,
           stdin=b"ka:va\nkb:vb\n"))
    res = ok(run([kcat, "-C", "-b", broker.bootstrap, "-t", "kt", "-p", "0", "-e", "-o", "100", "-q",
                  "-f", "%o %k %s\\n"], tool_env))
    assert res.out.splitlines() == ["100 ka va", "101 kb vb"]
