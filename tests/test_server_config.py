"""`potok server` configuration: a Kafka KRaft server.properties starts a broker unchanged;
bad settings and an address in use stop it at once with one clear line on stderr."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

from conftest import HOST, POTOK_BIN, free_port
from e2e_util import DeliveryTracker, admin, create_topic, flush_all, list_topics, producer

EXIT_TIMEOUT_S = 5.0


def run_server(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Runs `potok server ARGS`, expecting it to exit by itself within a few seconds."""
    env = dict(os.environ, NO_COLOR="1")
    try:
        return subprocess.run([str(POTOK_BIN), "server", *args], capture_output=True, text=True,
                              timeout=EXIT_TIMEOUT_S, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`potok server {' '.join(args)}` was still running after {EXIT_TIMEOUT_S} s; it should exit")


def stderr_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]


def assert_single_error_line(r: subprocess.CompletedProcess, *must_name: str) -> str:
    assert r.returncode != 0, f"exit code 0; stderr: {r.stderr!r}"
    lines = stderr_lines(r)
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {r.stderr!r}"
    for word in must_name:
        assert word in lines[0], f"the error line should name {word!r}: {lines[0]!r}"
    assert "panicked" not in r.stderr
    return lines[0]


def test_unknown_override_key_exits_with_one_line_naming_the_key(tmp_path):
    r = run_server(["--override", f"log.dirs={tmp_path / 'data'}", "--override", "no.such.key=1"], tmp_path)
    assert_single_error_line(r, "no.such.key")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir()), \
        "a broker refusing its configuration should not initialise the data dir"


def test_non_numeric_override_value_exits_with_one_line_naming_the_key(tmp_path):
    r = run_server(["--override", f"log.dirs={tmp_path / 'data'}", "--override", "num.partitions=abc"], tmp_path)
    line = assert_single_error_line(r, "num.partitions")
    assert "abc" in line, f"the error line should quote the bad value: {line!r}"


def kafka_kraft_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """Kafka's own config/server.properties for a combined KRaft node, comments and all."""
    return f"""\
# Licensed to the Apache Software Foundation (ASF) under one or more
# contributor license agreements.

############################# Server Basics #############################

# The role of this server. Setting this puts us in KRaft mode
process.roles=broker,controller

# The node id associated with this instance's roles
node.id=1

# The connect string for the controller quorum
controller.quorum.voters=1@localhost:{controller_port}

############################# Socket Server Settings #############################

listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}

# Name of listener used for communication between brokers.
inter.broker.listener.name=PLAINTEXT

advertised.listeners=PLAINTEXT://{HOST}:{port}

controller.listener.names=CONTROLLER

# Maps listener names to security protocols, the default is for them to be the same.
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL

num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600

############################# Log Basics #############################

log.dirs={log_dir}
num.partitions=3
num.recovery.threads.per.data.dir=1

############################# Internal Topic Settings  #############################
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1

############################# Log Retention Policy #############################

log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def test_kafka_kraft_server_properties_starts_broker_with_its_settings(broker_factory, tmp_path):
    port, controller_port = free_port(), free_port()
    log_dir = tmp_path / "kraft-logs"
    props = tmp_path / "server.properties"
    props.write_text(kafka_kraft_properties(port, controller_port, log_dir))

    b = broker_factory(port=port, config_file=props, name="kraft", start=False)
    b.overrides.clear()  # the file alone: no harness overrides
    assert b.command() == [str(POTOK_BIN), "server", str(props)]
    b.start()

    p = producer(b.bootstrap)
    t = DeliveryTracker()
    p.produce("auto-created", value=b"hello", on_delivery=t.callback(0))
    flush_all(p)
    assert not t.errors, t.errors
    assert list_topics(b.bootstrap)["auto-created"] == 3, "num.partitions=3 from the file"
    dirs = sorted(d.name for d in log_dir.iterdir() if d.name.startswith("auto-created-"))
    assert dirs == ["auto-created-0", "auto-created-1", "auto-created-2"], \
        f"partitions should live under log.dirs from the file: {dirs}"


def test_unknown_key_in_properties_file_names_the_file_and_line(tmp_path):
    props = tmp_path / "broken.properties"
    props.write_text("# a comment\n"
                     "node.id=1\n"
                     "\n"
                     f"log.dirs={tmp_path / 'data'}\n"
                     "not.a.kafka.setting=7\n")
    r = run_server([str(props)], tmp_path)
    line = assert_single_error_line(r, "not.a.kafka.setting", str(props))
    assert f"{props}:5" in line, f"the error line should give the line number as {props}:5: {line!r}"


def test_listener_port_in_use_exits_with_one_line_naming_the_address(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        r = run_server(["--override", f"listeners=PLAINTEXT://{HOST}:{port}",
                        "--override", f"log.dirs={tmp_path / 'data'}", "--override", "node.id=1"], tmp_path)
    assert r.returncode != 0, f"exit code 0; stderr: {r.stderr!r}"
    assert "panicked" not in r.stderr
    address = f"{HOST}:{port}"
    naming = [line for line in stderr_lines(r) if address in line]
    assert len(naming) == 1, f"expected one stderr line naming {address}: {r.stderr!r}"
    assert naming[0] == stderr_lines(r)[-1], f"the error should be the last thing printed: {r.stderr!r}"
    assert "in use" in naming[0].lower(), f"the line should say why: {naming[0]!r}"


def _start_with_file(broker_factory, tmp_path, text: str, name: str):
    props = tmp_path / f"{name}.properties"
    props.write_text(text)
    # the harness still passes listeners / log.dirs / node.id as --override
    return broker_factory(config_file=props, name=name)


def _topic_configs(bootstrap: str, topic: str) -> dict:
    a = admin(bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=30)[res].result(timeout=30)


def test_properties_file_accepts_java_properties_separators_and_comments(broker_factory, tmp_path):
    # java.util.Properties: key=value, key = value, key:value, key value; '#' and '!' comments
    b = _start_with_file(broker_factory, tmp_path, "\n".join([
        "! a bang comment",
        "   # an indented comment",
        "num.partitions = 2",
        "log.retention.hours: 100",
        "log.segment.bytes   52428800",
        "",
    ]), "separators")
    create_topic(b.bootstrap, "t", partitions=1)
    entries = _topic_configs(b.bootstrap, "t")
    assert entries["retention.ms"].value == str(100 * 3600 * 1000), "log.retention.hours: 100"
    assert entries["segment.bytes"].value == "52428800", "log.segment.bytes   52428800"
    assert entries["segment.bytes"].source == ConfigSource.STATIC_BROKER_CONFIG.value, entries["segment.bytes"]

    p = producer(b.bootstrap)
    t = DeliveryTracker()
    p.produce("auto", value=b"v", on_delivery=t.callback(0))
    flush_all(p)
    assert not t.errors, t.errors
    assert list_topics(b.bootstrap)["auto"] == 2, "num.partitions = 2"


def test_properties_file_joins_backslash_continued_lines(broker_factory, tmp_path):
    b = _start_with_file(broker_factory, tmp_path, "num.partitions=\\\n    4\n", "continued")
    p = producer(b.bootstrap)
    t = DeliveryTracker()
    p.produce("auto", value=b"v", on_delivery=t.callback(0))
    flush_all(p)
    assert not t.errors, t.errors
    assert list_topics(b.bootstrap)["auto"] == 4


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SSL", "SASL_SSL"])
def test_secured_listener_is_refused_with_one_line_naming_it(tmp_path, protocol):
    port = free_port()
    r = run_server(["--override", f"listeners={protocol}://{HOST}:{port}",
                    "--override", f"log.dirs={tmp_path / 'data'}"], tmp_path)
    line = assert_single_error_line(r, f"listener {protocol}", f"security protocol {protocol}", "not supported yet")
    assert not (tmp_path / "data").exists(), f"nothing should be initialised: {line}"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, port))  # nothing was left listening without security


def test_listener_mapped_to_sasl_in_a_file_is_refused_naming_the_file_line(tmp_path):
    props = tmp_path / "sasl.properties"
    props.write_text("\n".join([
        f"listeners=PLAINTEXT://{HOST}:{free_port()},EXTERNAL://{HOST}:{free_port()}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT",
        f"log.dirs={tmp_path / 'data'}",
        "",
    ]))
    r = run_server([str(props)], tmp_path)
    assert_single_error_line(r, "listener EXTERNAL", "SASL_PLAINTEXT", f"{props}:2")


@pytest.mark.parametrize("settings,words", [
    ([("controller.quorum.bootstrap.servers", "localhost:9093,localhost:9094")], ["2 controllers"]),
    ([("process.roles", "controller"), ("controller.quorum.bootstrap.servers", "localhost:9093")],
     ["controller-only node without controller.quorum.voters"]),
])
def test_cluster_settings_not_built_yet_are_refused_with_one_line(tmp_path, settings, words):
    overrides = [arg for key, value in settings for arg in ("--override", f"{key}={value}")]
    r = run_server(["--override", f"listeners=PLAINTEXT://{HOST}:{free_port()}",
                    "--override", f"log.dirs={tmp_path / 'data'}", *overrides], tmp_path)
    assert_single_error_line(r, settings[-1][0], "not supported yet", *words)


@pytest.mark.parametrize("settings,words", [
    ([("process.roles", "controller")], ["process.roles", "needs controller.quorum.voters"]),
    ([("process.roles", "broker"), ("controller.quorum.voters", "2@localhost:9093,3@localhost:9094")],
     ["controller.listener.names", "must contain at least one value when running KRaft with just the broker role"]),
    ([("process.roles", "broker"), ("controller.quorum.voters", "1@localhost:9093")],
     ["node.id 1 is a voter but process.roles has no controller"]),
])
def test_separate_roles_are_checked_as_kafka_checks_them(tmp_path, settings, words):
    overrides = [arg for key, value in settings for arg in ("--override", f"{key}={value}")]
    r = run_server(["--override", f"listeners=PLAINTEXT://{HOST}:{free_port()}",
                    "--override", f"log.dirs={tmp_path / 'data'}", *overrides], tmp_path)
    line = assert_single_error_line(r, *words)
    assert not (tmp_path / "data").exists(), f"nothing should be initialised: {line}"


def test_several_voters_need_the_controller_listener_among_the_listeners(tmp_path):
    # Cluster mode: the quorum is served on the controller listener, as in Kafka.
    r = run_server(["--override", f"listeners=PLAINTEXT://{HOST}:{free_port()}",
                    "--override", f"log.dirs={tmp_path / 'data'}",
                    "--override", "controller.quorum.voters=1@localhost:9093,2@localhost:9094,3@localhost:9095"],
                   tmp_path)
    assert_single_error_line(r, "controller.listener.names",
                             "must contain at least one value appearing in the 'listeners' configuration")
    assert not (tmp_path / "data").exists()


def test_ssl_and_sasl_settings_are_accepted_and_logged_as_without_effect(broker_factory):
    b = broker_factory(overrides={"ssl.keystore.location": "/nonexistent/keystore.jks",
                                  "sasl.enabled.mechanisms": "PLAIN",
                                  "listener.name.plaintext.ssl.client.auth": "none"})
    create_topic(b.bootstrap, "t")
    assert "t" in list_topics(b.bootstrap)
    notes = [l for l in b.tail(200).splitlines() if "no effect" in l]
    assert len(notes) == 1, b.tail(200)
    for key in ("ssl.keystore.location", "sasl.enabled.mechanisms", "listener.name.plaintext.ssl.client.auth"):
        assert key in notes[0], notes[0]
