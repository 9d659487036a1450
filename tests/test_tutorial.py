"""Kafka's tutorial start-up lines, run as written from the root of a clone:
bin/zookeeper-server-start.sh, bin/kafka-storage.sh random-uuid / format / info,
bin/kafka-server-start.sh (foreground and -daemon) with config/server.properties,
the topic / producer / consumer commands, and bin/kafka-server-stop.sh.

The clone is a copy of bin/, config/ and the binary (at target/release/potok, where
bin/.potok-bin.sh finds it), so that kafka-server-stop.sh, which stops the brokers
of its checkout's binary, stops only the broker this test started. Its
config/server.properties is the shipped one with two lines edited: a free port,
and log.dirs in the test's directory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import HOST, POTOK_BIN, REPO, free_port
from e2e_util import admin, list_topics

# Failure guards only.
GUARD_S = 30.0


@pytest.fixture
def clone(tmp_path) -> Path:
    root = tmp_path / "potok"
    shutil.copytree(REPO / "bin", root / "bin")
    shutil.copytree(REPO / "config", root / "config")
    (root / "target" / "release").mkdir(parents=True)
    shutil.copy2(POTOK_BIN, root / "target" / "release" / "potok")
    yield root
    # Whatever the test left running of the clone's binary (a failed assertion).
    subprocess.run([str(root / "bin" / "kafka-server-stop.sh")], cwd=root, env=script_env(),
                   capture_output=True, timeout=GUARD_S * 4)


def script_env() -> dict[str, str]:
    """The user's environment: no POTOK_BIN, so bin/ finds the clone's build."""
    env = {k: v for k, v in os.environ.items() if k not in ("POTOK_BIN", "LOG_DIR")}
    env["NO_COLOR"] = "1"
    return env


def edit_config(root: Path, port: int, log_dir: Path) -> None:
    props = root / "config" / "server.properties"
    text = props.read_text()
    listeners = "\nlisteners=PLAINTEXT://localhost:9092\n"
    log_dirs = "\n#log.dirs=/tmp/kraft-combined-logs\n"
    assert listeners in text and log_dirs in text, "the shipped file changed: update this test"
    text = text.replace(listeners, f"\nlisteners=PLAINTEXT://{HOST}:{port}\n")
    text = text.replace(log_dirs, f"\nlog.dirs={log_dir}\n")
    props.write_text(text)


def sh(root: Path, line: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    """Runs one tutorial line with bash from the clone's root."""
    res = subprocess.run(["bash", "-c", line], cwd=root, env=script_env(), input=stdin,
                         capture_output=True, timeout=GUARD_S * 4)
    res.out = res.stdout.decode(errors="replace")
    res.err = res.stderr.decode(errors="replace")
    if check:
        assert res.returncode == 0, f"{line!r} exited {res.returncode}\nstdout:\n{res.out}\nstderr:\n{res.err}"
    return res


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + GUARD_S
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {HOST}:{port}"
            time.sleep(0.05)


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def meta_properties(log_dir: Path) -> dict[str, str]:
    lines = (log_dir / "meta.properties").read_text().splitlines()
    return dict(l.split("=", 1) for l in lines if l and not l.startswith("#"))


def test_the_tutorial_runs_as_written_from_a_clone(clone, tmp_path):
    port = free_port()
    log_dir = tmp_path / "kraft-combined-logs"
    edit_config(clone, port, log_dir)
    bootstrap = f"{HOST}:{port}"

    res = sh(clone, "bin/zookeeper-server-start.sh config/zookeeper.properties")
    assert len(res.out.splitlines()) == 1 and "ZooKeeper" in res.out and not res.err, (res.out, res.err)

    # KRaft quick-start: a cluster id, then format (Kafka 3.9+ adds --standalone).
    cluster_id = sh(clone, "bin/kafka-storage.sh random-uuid").out.strip()
    assert len(cluster_id) == 22 and not cluster_id.startswith("-"), cluster_id
    res = sh(clone, f'KAFKA_CLUSTER_ID="{cluster_id}"; '
                    'bin/kafka-storage.sh format --standalone -t $KAFKA_CLUSTER_ID -c config/server.properties')
    assert res.out.splitlines() == [f"Formatting metadata directory {log_dir}."], res.out
    meta = meta_properties(log_dir)
    assert (meta["version"], meta["cluster.id"], meta["node.id"]) == ("1", cluster_id, "1"), meta
    assert len(meta["directory.id"]) == 22, meta

    # Formatting again fails as Kafka's does, unless told to skip formatted directories.
    res = sh(clone, f"bin/kafka-storage.sh format -t {cluster_id} -c config/server.properties", check=False)
    assert res.returncode == 1
    assert res.err.splitlines() == [f"Log directory {log_dir} is already formatted. Use --ignore-formatted "
                                    "to ignore this directory and format the others."], res.err
    res = sh(clone, f"bin/kafka-storage.sh format -t {cluster_id} -c config/server.properties --ignore-formatted")
    assert res.out.splitlines() == ["All of the log directories are already formatted."]
    assert meta_properties(log_dir) == meta, "an ignored directory is left as it was"
    res = sh(clone, "bin/kafka-storage.sh info -c config/server.properties")
    assert res.out.splitlines()[:2] == ["Found log directory:", f"  {log_dir}"], res.out
    assert f"cluster.id={cluster_id}" in res.out and "node.id=1" in res.out, res.out

    # The broker, in the background as Kafka's -daemon: its log goes to logs/.
    res = sh(clone, "bin/kafka-server-start.sh -daemon config/server.properties")
    assert not res.out and not res.err, (res.out, res.err)
    wait_listening(port)
    assert admin(bootstrap).list_topics(timeout=30).cluster_id == cluster_id, "the formatted cluster id is served"

    res = sh(clone, "bin/kafka-topics.sh --create --zookeeper localhost:2181 --replication-factor 1 "
                    f"--partitions 1 --topic test --bootstrap-server {bootstrap}")
    assert "Created topic test." in res.out
    lines = ["This is a message", "This is another message"]
    sh(clone, f"bin/kafka-console-producer.sh --broker-list {bootstrap} --topic test",
       stdin=("\n".join(lines) + "\n").encode())
    res = sh(clone, f"bin/kafka-console-consumer.sh --bootstrap-server {bootstrap} --topic test "
                    "--from-beginning --max-messages 2")
    assert res.out.splitlines() == lines
    sh(clone, f"bin/kafka-topics.sh --alter --topic test --partitions 2 --bootstrap-server {bootstrap}")
    assert list_topics(bootstrap)["test"] == 2

    res = sh(clone, "bin/kafka-server-stop.sh")
    assert not res.out and not res.err, (res.out, res.err)
    # The script returns once the broker has flushed and exited.
    assert not listening(port), "kafka-server-stop.sh returned while the broker still listens"
    assert (log_dir / ".kafka_cleanshutdown").exists(), "the broker did not shut down cleanly"
    server_log = (clone / "logs" / "server.log").read_text()
    assert "starting potok" in server_log and "broker shut down" in server_log, server_log
    assert "changed partition count" in server_log, "partition count changes are logged at INFO"
    assert (clone / "logs" / "kafkaServer.out").exists()

    res = sh(clone, "bin/kafka-server-stop.sh", check=False)
    assert (res.returncode, res.out) == (1, "No kafka server to stop\n"), (res.returncode, res.out, res.err)

    # In the foreground, as the tutorial's second line: the data is all there.
    broker = subprocess.Popen(["bash", "-c", "bin/kafka-server-start.sh config/server.properties"], cwd=clone,
                              env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port)
        res = sh(clone, f"bin/kafka-console-consumer.sh --bootstrap-server {bootstrap} --topic test "
                        "--from-beginning --max-messages 2")
        assert res.out.splitlines() == lines
        sh(clone, "bin/kafka-server-stop.sh")
        assert broker.wait(timeout=GUARD_S) == 0
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
    output = broker.stdout.read().decode(errors="replace")
    assert "broker shut down" in output, output


def test_server_start_without_a_config_prints_kafkas_usage(clone):
    res = sh(clone, "bin/kafka-server-start.sh", check=False)
    assert res.returncode == 1
    assert res.out.startswith("USAGE: bin/kafka-server-start.sh [-daemon] server.properties"), res.out


def test_storage_format_refuses_a_malformed_cluster_id_and_a_foreign_directory(clone, tmp_path):
    log_dir = tmp_path / "data"
    edit_config(clone, free_port(), log_dir)
    res = sh(clone, "bin/kafka-storage.sh format -t not-a-uuid -c config/server.properties", check=False)
    assert res.returncode == 1 and res.err.startswith("Cluster ID string not-a-uuid does not appear to be a valid UUID")
    assert not log_dir.exists(), "nothing is written for a refused format"
    first = sh(clone, "bin/kafka-storage.sh random-uuid").out.strip()
    second = sh(clone, "bin/kafka-storage.sh random-uuid").out.strip()
    assert first != second
    sh(clone, f"bin/kafka-storage.sh format -t {first} -c config/server.properties")
    res = sh(clone, f"bin/kafka-storage.sh format -t {second} -c config/server.properties --ignore-formatted",
             check=False)
    assert res.returncode == 1 and f"Expected {second}, but read {first}" in res.err, res.err
    assert meta_properties(log_dir)["cluster.id"] == first
