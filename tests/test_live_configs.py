"""Live configuration (issue 7, acceptance 4 and 6): IncrementalAlterConfigs and
AlterConfigs from confluent-kafka's and kafka-python's admin clients on topics and on
the broker, applied without a restart, persisted across one, shown with their source
by DescribeConfigs and `kafka-configs.sh --describe`; compression.type recompresses
on produce; LogAppendTime topics hand clients the broker's time."""

from __future__ import annotations

import os
import struct
import subprocess
import time

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   ResourceType)

from e2e_util import (DeliveryTracker, admin, consume_confluent, consume_kafka_python, create_topic,
                      flush_all, producer)

TIMEOUT = 30.0
ZSTD = 4


def _incremental(bootstrap: str, resource: ConfigResource, validate_only: bool = False) -> None:
    a = admin(bootstrap)
    fs = a.incremental_alter_configs([resource], request_timeout=TIMEOUT, validate_only=validate_only)
    fs[resource].result(timeout=TIMEOUT)


def _describe(bootstrap: str, resource: ConfigResource) -> dict:
    a = admin(bootstrap)
    return a.describe_configs([resource], request_timeout=TIMEOUT)[resource].result(timeout=TIMEOUT)


def _kafka_error(fn) -> KafkaError:
    with pytest.raises(KafkaException) as excinfo:
        fn()
    return excinfo.value.args[0]


def _topic(name: str, *entries: tuple[str, str, AlterConfigOpType]) -> ConfigResource:
    return ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])


SET = AlterConfigOpType.SET
APPEND = AlterConfigOpType.APPEND
DELETE = AlterConfigOpType.DELETE


def _produce(bootstrap: str, topic: str, values: list[bytes], conf: dict | None = None,
             headers=None, timestamp: int = 0) -> DeliveryTracker:
    p = producer(bootstrap, {"linger.ms": 50, "compression.type": "none", **(conf or {})})
    tracker = DeliveryTracker()
    for i, v in enumerate(values):
        p.produce(topic, value=v, key=b"k%d" % i, headers=headers, timestamp=timestamp,
                  on_delivery=tracker.callback(i))
    flush_all(p)
    return tracker


def _batch_codecs(broker, topic: str) -> list[int]:
    """The codec of every batch in the partition's first segment file."""
    data = (broker.data_dir / f"{topic}-0" / "00000000000000000000.log").read_bytes()
    codecs, pos = [], 0
    while pos + 23 <= len(data):
        (length,) = struct.unpack_from(">i", data, pos + 8)
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        codecs.append(attributes & 0x07)
        pos += 12 + length
    return codecs


def _kafka_configs(bin_dir, tool_env, broker, *args: str) -> str:
    res = subprocess.run([str(bin_dir / "kafka-configs.sh"), "--bootstrap-server", broker.bootstrap, *args],
                         capture_output=True, env=tool_env, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def test_topic_configs_change_live_survive_restart_and_show_their_source(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "live")
    _incremental(broker.bootstrap, _topic("live", ("retention.ms", "3600000", SET),
                                          ("cleanup.policy", "compact", APPEND),
                                          ("max.message.bytes", "4000", SET),
                                          ("compression.type", "zstd", SET)))

    # max.message.bytes applies at once: an uncompressible record over it is refused.
    big = os.urandom(6000)
    refused = _produce(broker.bootstrap, "live", [big])
    assert refused.errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, refused.errors

    # compression.type=zstd: batches produced uncompressed are stored as zstd, and every
    # header (the same key twice, a null value), key, value and timestamp is kept.
    headers = [("h", b"1"), ("h", b"2"), ("n", None)]
    values = [b"value-%d" % i * 20 for i in range(50)]
    ok = _produce(broker.bootstrap, "live", values, headers=headers, timestamp=1_700_000_000_000)
    assert not ok.errors and len(ok.ok) == 50, ok.errors
    codecs = _batch_codecs(broker, "live")
    assert codecs and all(c == ZSTD for c in codecs), codecs
    msgs = consume_confluent(broker.bootstrap, "live", 0, 50)
    assert [m.value() for m in msgs] == values
    assert [m.key() for m in msgs] == [b"k%d" % i for i in range(50)]
    assert all(m.headers() == headers for m in msgs), msgs[0].headers()
    assert all(m.timestamp()[1] == 1_700_000_000_000 for m in msgs)

    entries = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "live"))
    expect = {"retention.ms": "3600000", "cleanup.policy": "delete,compact", "max.message.bytes": "4000",
              "compression.type": "zstd"}
    for k, v in expect.items():
        assert entries[k].value == v and entries[k].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entries[k]
    assert entries["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value

    out = _kafka_configs(bin_dir, tool_env, broker, "--describe", "--entity-type", "topics", "--entity-name", "live")
    assert out.splitlines()[0] == "Dynamic configs for topic live are:", out
    assert "  retention.ms=3600000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=3600000, " \
           "DEFAULT_CONFIG:log.retention.hours=168}" in out.splitlines(), out
    assert "  compression.type=zstd sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:compression.type=zstd}" \
        in out.splitlines(), out
    assert len(out.splitlines()) == 1 + len(expect), out

    broker.restart()
    after = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "live"))
    for k, v in expect.items():
        assert after[k].value == v and after[k].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, after[k]
    assert _produce(broker.bootstrap, "live", [big]).errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE

    # DELETE returns a config to its default, live.
    _incremental(broker.bootstrap, _topic("live", ("max.message.bytes", "", DELETE)))
    assert not _produce(broker.bootstrap, "live", [big]).errors
    e = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "live"))["max.message.bytes"]
    assert (e.value, e.source) == ("1048588", ConfigSource.DEFAULT_CONFIG.value)


@pytest.mark.parametrize("produced,topic_codec,stored", [("lz4", "zstd", 4), ("zstd", "gzip", 1),
                                                        ("gzip", "uncompressed", 0), ("snappy", "snappy", 2),
                                                        ("snappy", "lz4", 3)])
def test_compression_type_stores_every_batch_in_the_topic_codec(broker, produced, topic_codec, stored):
    create_topic(broker.bootstrap, "codec", config={"compression.type": topic_codec})
    headers = [("dup", b"a"), ("dup", b"b"), ("null", None)]
    values = [b"%d-" % i * 30 for i in range(200)]
    ok = _produce(broker.bootstrap, "codec", values, conf={"compression.type": produced}, headers=headers,
                  timestamp=1_600_000_000_000)
    assert not ok.errors and len(ok.ok) == 200, ok.errors
    codecs = _batch_codecs(broker, "codec")
    assert codecs and all(c == stored for c in codecs), codecs
    for msgs in (consume_confluent(broker.bootstrap, "codec", 0, 200),):
        assert [m.value() for m in msgs] == values
        assert all(m.headers() == headers and m.timestamp()[1] == 1_600_000_000_000 for m in msgs)
    records = consume_kafka_python(broker.bootstrap, "codec", 0, 200)
    assert [r.value for r in records] == values
    assert all(r.headers == [("dup", b"a"), ("dup", b"b"), ("null", None)] for r in records), records[0].headers


def test_alter_configs_replaces_the_whole_set_of_a_topic(broker):
    create_topic(broker.bootstrap, "legacy", config={"retention.ms": "1000", "segment.bytes": "100000"})
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, "legacy", set_config={"max.message.bytes": "3000"})
    a.alter_configs([res], request_timeout=TIMEOUT)[res].result(timeout=TIMEOUT)
    entries = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "legacy"))
    assert (entries["max.message.bytes"].value, entries["max.message.bytes"].source) == \
        ("3000", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
    for k in ("retention.ms", "segment.bytes"):
        assert entries[k].source == ConfigSource.DEFAULT_CONFIG.value, (k, entries[k])
    assert _produce(broker.bootstrap, "legacy", [os.urandom(5000)]).errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_invalid_unknown_and_validate_only_changes_are_refused_or_not_applied(broker):
    create_topic(broker.bootstrap, "strict")
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _topic("strict", ("retention.ms", "soon", SET))))
    assert err.code() == KafkaError.INVALID_CONFIG, err
    assert "retention.ms" in err.str() and "soon" in err.str(), err.str()
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _topic("strict", ("retention.mz", "1", SET))))
    assert err.code() == KafkaError.INVALID_CONFIG and "retention.mz" in err.str(), err
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _topic("strict", ("retention.ms", "1", APPEND))))
    assert err.code() == KafkaError.INVALID_CONFIG and "retention.ms" in err.str(), err
    _incremental(broker.bootstrap, _topic("strict", ("retention.ms", "5000", SET)), validate_only=True)
    e = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "strict"))["retention.ms"]
    assert e.source == ConfigSource.DEFAULT_CONFIG.value and e.value == "604800000", e
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _topic("nope", ("retention.ms", "1", SET))))
    assert err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, err


def test_append_and_subtract_edit_list_configs(broker):
    create_topic(broker.bootstrap, "lists")
    _incremental(broker.bootstrap, _topic("lists", ("cleanup.policy", "compact,delete", APPEND)))
    entries = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "lists"))
    assert entries["cleanup.policy"].value == "delete,compact", entries["cleanup.policy"]
    _incremental(broker.bootstrap, _topic("lists", ("cleanup.policy", "delete", AlterConfigOpType.SUBTRACT)))
    entries = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "lists"))
    assert entries["cleanup.policy"].value == "compact", entries["cleanup.policy"]
    # Subtracting the last item leaves an empty list, which cleanup.policy does not allow.
    err = _kafka_error(lambda: _incremental(
        broker.bootstrap, _topic("lists", ("cleanup.policy", "compact", AlterConfigOpType.SUBTRACT))))
    assert err.code() == KafkaError.INVALID_CONFIG and "cleanup.policy" in err.str(), err


def _broker(name: str, *entries: tuple[str, str, AlterConfigOpType]) -> ConfigResource:
    return ConfigResource(ResourceType.BROKER, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for k, v, op in entries])


@pytest.mark.broker_config(**{"log.retention.hours": "100"})
def test_dynamic_broker_configs_reach_topics_live_and_after_restart(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "inherits")
    _incremental(broker.bootstrap, _broker("1", ("message.max.bytes", "3000", SET)))
    # librdkafka refuses an empty broker name, so the cluster default is set with the tool.
    out = _kafka_configs(bin_dir, tool_env, broker, "--alter", "--entity-type", "brokers", "--entity-default",
                         "--add-config", "log.retention.ms=7200000")
    assert out.strip() == "Completed updating default config for brokers in the cluster."

    assert _produce(broker.bootstrap, "inherits", [os.urandom(5000)]).errors[0].code() == \
        KafkaError.MSG_SIZE_TOO_LARGE
    topic = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "inherits"))
    assert (topic["max.message.bytes"].value, topic["max.message.bytes"].source) == \
        ("3000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert (topic["retention.ms"].value, topic["retention.ms"].source) == \
        ("7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    # confluent-kafka keeps synonyms in a dict by name (a later level of the same name
    # replaces an earlier one); the tool's line below shows the whole list.
    synonyms = [(s.name, s.value, s.source) for s in topic["retention.ms"].synonyms.values()]
    assert synonyms[0] == ("log.retention.ms", "7200000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value), synonyms

    out = _kafka_configs(bin_dir, tool_env, broker, "--describe", "--entity-type", "brokers", "--entity-name", "1")
    assert out.splitlines() == [
        "Dynamic configs for broker 1 are:",
        "  message.max.bytes=3000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:message.max.bytes=3000, "
        "DEFAULT_CONFIG:message.max.bytes=1048588}"], out
    out = _kafka_configs(bin_dir, tool_env, broker, "--describe", "--entity-type", "brokers", "--entity-default")
    assert out.splitlines() == [
        "Default configs for brokers in the cluster are:",
        "  log.retention.ms=7200000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=7200000, "
        "STATIC_BROKER_CONFIG:log.retention.hours=100, DEFAULT_CONFIG:log.retention.hours=168}"], out
    all_out = _kafka_configs(bin_dir, tool_env, broker, "--describe", "--entity-type", "brokers",
                             "--entity-name", "1", "--all")
    assert all_out.splitlines()[0] == "All configs for broker 1 are:"
    assert any(line.startswith("  node.id=1 sensitive=false") for line in all_out.splitlines()), all_out

    # A setting Kafka cannot change live is refused, naming it.
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _broker("1", ("num.partitions", "3", SET))))
    assert err.code() == KafkaError.INVALID_REQUEST and "num.partitions" in err.str(), err
    err = _kafka_error(lambda: _incremental(broker.bootstrap, _broker("1", ("message.max.bytes", "big", SET))))
    assert err.code() == KafkaError.INVALID_REQUEST and "message.max.bytes" in err.str(), err

    broker.restart()
    topic = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "inherits"))
    assert (topic["max.message.bytes"].value, topic["max.message.bytes"].source) == \
        ("3000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert _produce(broker.bootstrap, "inherits", [os.urandom(5000)]).errors[0].code() == \
        KafkaError.MSG_SIZE_TOO_LARGE

    # kafka-configs.sh --alter, then --delete-config, on the broker.
    out = _kafka_configs(bin_dir, tool_env, broker, "--alter", "--entity-type", "brokers", "--entity-name", "1",
                         "--delete-config", "message.max.bytes")
    assert out.strip() == "Completed updating config for broker 1."
    assert not _produce(broker.bootstrap, "inherits", [os.urandom(5000)]).errors


def test_kafka_configs_alter_and_kafka_topics_alter_config(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "tooled")
    out = _kafka_configs(bin_dir, tool_env, broker, "--alter", "--entity-type", "topics", "--entity-name", "tooled",
                         "--add-config", "retention.ms=1000,cleanup.policy=[compact,delete]")
    assert out.strip() == "Completed updating config for topic tooled."
    entries = _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "tooled"))
    assert entries["retention.ms"].value == "1000" and entries["cleanup.policy"].value == "compact,delete"

    res = subprocess.run([str(bin_dir / "kafka-topics.sh"), "--bootstrap-server", broker.bootstrap, "--alter",
                          "--topic", "tooled", "--config", "segment.bytes=200000"],
                         capture_output=True, env=tool_env, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert "deprecated" in res.stderr.decode() and "kafka-configs.sh" in res.stderr.decode()
    assert res.stdout.decode().strip() == "Updated config for topic tooled."
    assert _describe(broker.bootstrap, ConfigResource(ResourceType.TOPIC, "tooled"))["segment.bytes"].value == "200000"

    potok = [tool_env["POTOK_BIN"], "configs"]
    res = subprocess.run([*potok, "alter", "--bootstrap-server", broker.bootstrap, "--topic", "tooled",
                          "--add-config", "max.message.bytes=5000", "--delete-config", "retention.ms"],
                         capture_output=True, env=tool_env, timeout=120)
    assert res.returncode == 0 and res.stdout.decode().strip() == "Completed updating config for topic tooled.", res
    res = subprocess.run([*potok, "describe", "--bootstrap-server", broker.bootstrap, "--topic", "tooled"],
                         capture_output=True, env=tool_env, timeout=120)
    assert res.returncode == 0, res
    assert [line.split(" ")[2] for line in res.stdout.decode().splitlines()[1:]] == \
        ["cleanup.policy=compact,delete", "max.message.bytes=5000", "segment.bytes=200000"], res.stdout

    res = subprocess.run([str(bin_dir / "kafka-configs.sh"), "--bootstrap-server", broker.bootstrap, "--alter",
                          "--entity-type", "topics", "--entity-name", "tooled", "--add-config", "retention.ms=x"],
                         capture_output=True, env=tool_env, timeout=120)
    assert res.returncode != 0 and "retention.ms" in res.stderr.decode(), res

    # Without --entity-name every topic is described, each under its own heading.
    create_topic(broker.bootstrap, "plain")
    out = _kafka_configs(bin_dir, tool_env, broker, "--describe", "--entity-type", "topics").splitlines()
    assert "Dynamic configs for topic plain are:" in out
    at = out.index("Dynamic configs for topic tooled are:")
    assert [line.split(" ")[2] for line in out[at + 1:at + 4]] == \
        ["cleanup.policy=compact,delete", "max.message.bytes=5000", "segment.bytes=200000"], out


def test_kafka_python_admin_alters_a_topic_config(broker):
    from kafka.admin import ConfigResource as KConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    create_topic(broker.bootstrap, "kp-live")
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30000)
    try:
        a.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-live", configs={"max.message.bytes": "2500"})])
        res = a.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-live")], config_filter="all")
        bad = a.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "kp-live",
                                               configs={"max.message.bytes": "lots"})])
    finally:
        a.close()
    assert res["topic"]["kp-live"]["max.message.bytes"]["value"] == "2500", res
    assert "max.message.bytes" in str(bad), bad
    assert _produce(broker.bootstrap, "kp-live", [os.urandom(4000)]).errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_log_append_time_topic_hands_consumers_the_broker_time(broker):
    create_topic(broker.bootstrap, "appended")
    _incremental(broker.bootstrap, _topic("appended", ("message.timestamp.type", "LogAppendTime", SET)))
    before = int(time.time() * 1000)
    ok = _produce(broker.bootstrap, "appended", [b"a", b"b", b"c"], timestamp=1000)
    after = int(time.time() * 1000)
    assert not ok.errors, ok.errors

    from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME
    for m in consume_confluent(broker.bootstrap, "appended", 0, 3):
        kind, ts = m.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME, m.timestamp()
        assert before <= ts <= after, (before, ts, after)
    for r in consume_kafka_python(broker.bootstrap, "appended", 0, 3):
        assert r.timestamp_type == 1, r
        assert before <= r.timestamp <= after, (before, r.timestamp, after)


def test_timestamp_bounds_refuse_out_of_range_create_times(broker):
    create_topic(broker.bootstrap, "bounded", config={"message.timestamp.before.max.ms": "3600000"})
    refused = _produce(broker.bootstrap, "bounded", [b"old"], timestamp=1000)
    assert refused.errors[0].code() == KafkaError.INVALID_TIMESTAMP, refused.errors
    assert not _produce(broker.bootstrap, "bounded", [b"now"]).errors
    _incremental(broker.bootstrap, _topic("bounded", ("message.timestamp.before.max.ms", "", DELETE)))
    assert not _produce(broker.bootstrap, "bounded", [b"old"], timestamp=1000).errors
