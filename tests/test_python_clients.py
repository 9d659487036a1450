"""Real Python clients (confluent-kafka / librdkafka, kafka-python) and the potok CLI
round-trip records byte for byte, in every compression codec."""

from __future__ import annotations

import base64
import json
import random
import subprocess

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from conftest import POTOK_BIN
from e2e_util import (DeliveryTracker, consume_confluent, consume_kafka_python, create_topic,
                      flush_all, list_topics, producer)

N = 10_000
BASE_TS = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 \t\n\"\\/{}é€😀\x00"


def make_messages(n: int, seed: int) -> list[dict]:
    """Deterministic messages: keys (some null), values (one null, one empty, binary, UTF-8
    text of varying length), headers (none / a duplicate key / empty and null values), timestamps."""
    rnd = random.Random(seed)
    msgs = []
    for i in range(n):
        key = None if i % 10 == 3 else f"key-{i % 97}".encode()
        if i == 5:
            value = None
        elif i == 6:
            value = b""
        elif i % 10 == 0:  # binary, not UTF-8
            value = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) + b"\xff"
        else:
            length = rnd.choice([0, 1, 10, 50, 100, 300, 1000])
            value = (f"v{i:06d}:" + "".join(rnd.choice(_ALPHABET) for _ in range(length))).encode()
        if i % 3 == 0:
            headers = [("trace", str(i).encode()), ("dup", b"first"), ("dup", b"second")]
        elif i % 3 == 1:
            headers = []
        else:
            headers = [("empty", b""), ("null", None)]
        msgs.append({"key": key, "value": value, "headers": headers, "timestamp": BASE_TS + i})
    return msgs


def produce_confluent(bootstrap: str, topic: str, msgs: list[dict], conf: dict | None = None,
                      flush_every: int = 2500) -> DeliveryTracker:
    p = producer(bootstrap, conf)
    t = DeliveryTracker()
    for i, m in enumerate(msgs):
        kwargs = {"key": m["key"], "value": m["value"], "timestamp": m["timestamp"],
                  "on_delivery": t.callback(i)}
        if m["headers"]:
            kwargs["headers"] = m["headers"]
        while True:
            try:
                p.produce(topic, partition=0, **kwargs)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if (i + 1) % flush_every == 0:
            flush_all(p)
    flush_all(p)
    assert not t.errors, f"{len(t.errors)} delivery errors, first: {next(iter(t.errors.items()))}"
    assert len(t.ok) == len(msgs)
    return t


def assert_delivered_contiguously(t: DeliveryTracker, n: int) -> None:
    offsets = [t.ok[i] for i in range(n)]
    assert offsets == [(0, i) for i in range(n)], "delivery reports: offsets not 0..n-1 in produce order"


@pytest.mark.parametrize("codec", CODECS)
def test_records_roundtrip_byte_identical_in_every_codec(broker, codec):
    topic = f"roundtrip-{codec}"
    create_topic(broker.bootstrap, topic, partitions=1)
    msgs = make_messages(N, seed=CODECS.index(codec))
    t = produce_confluent(broker.bootstrap, topic, msgs, {"compression.type": codec, "linger.ms": 20})
    assert_delivered_contiguously(t, N)

    # confluent-kafka (librdkafka)
    got = consume_confluent(broker.bootstrap, topic, 0, N)
    for i, (m, r) in enumerate(zip(msgs, got)):
        assert r.offset() == i, f"confluent: record {i} has offset {r.offset()}"
        assert r.key() == m["key"], f"confluent: key of offset {i}"
        assert r.value() == m["value"], f"confluent: value of offset {i}"
        assert (r.headers() or []) == m["headers"], f"confluent: headers of offset {i}"
        assert r.timestamp() == (TIMESTAMP_CREATE_TIME, m["timestamp"]), f"confluent: timestamp of offset {i}"

    # kafka-python
    got = consume_kafka_python(broker.bootstrap, topic, 0, N)
    assert len(got) == N
    for i, (m, r) in enumerate(zip(msgs, got)):
        assert r.offset == i, f"kafka-python: record {i} has offset {r.offset}"
        assert r.key == m["key"], f"kafka-python: key of offset {i}"
        assert r.value == m["value"], f"kafka-python: value of offset {i}"
        assert list(r.headers or []) == m["headers"], f"kafka-python: headers of offset {i}"
        assert r.timestamp == m["timestamp"], f"kafka-python: timestamp of offset {i}"
        assert r.timestamp_type == 0, f"kafka-python: timestamp type of offset {i}"


def _cli_bytes(obj: dict, field: str, encoding_field: str) -> bytes | None:
    """A key/value/header value from `potok consume --output json`: a string when the bytes
    are valid UTF-8, else base64 with a sibling encoding field set to "base64"."""
    v = obj[field]
    if v is None:
        return None
    if obj.get(encoding_field) == "base64":
        return base64.b64decode(v)
    assert encoding_field not in obj, f"unknown encoding {obj[encoding_field]!r}"
    return v.encode()


def _cli_headers(h) -> list:
    assert isinstance(h, list), f"CLI headers should be a list (duplicate keys are legal), got {h!r}"
    return [(item["key"], _cli_bytes(item, "value", "encoding")) for item in h]


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_potok_consume_cli_prints_records_as_json_lines(broker, tool_env, codec):
    topic = f"cli-{codec}"
    create_topic(broker.bootstrap, topic, partitions=1)
    n = 2000
    msgs = make_messages(n, seed=7)
    for i in range(11, n, 20):  # binary (non-UTF-8) keys and header values too
        msgs[i]["key"] = b"\x00\xfe\xffkey"
        msgs[i]["headers"] = [("bin", b"\x80\x81"), ("bin", b"text")]
    produce_confluent(broker.bootstrap, topic, msgs, {"compression.type": codec})

    out = subprocess.run(
        [str(POTOK_BIN), "consume", topic, "--from-beginning", "--max-messages", str(n),
         "--output", "json", "--bootstrap-server", broker.bootstrap],
        env=tool_env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"potok consume failed ({out.returncode}): {out.stderr.decode(errors='replace')}"
    lines = out.stdout.decode().split("\n")
    assert lines[-1] == "", "output should end with a newline"
    lines = lines[:-1]
    assert len(lines) == n, f"expected {n} JSON lines, got {len(lines)}"
    for i, (m, line) in enumerate(zip(msgs, lines)):
        rec = json.loads(line)
        assert rec["topic"] == topic
        assert rec["partition"] == 0
        assert rec["offset"] == i
        assert rec["timestamp"] == m["timestamp"], f"timestamp of offset {i}"
        assert _cli_bytes(rec, "key", "key_encoding") == m["key"], f"key of offset {i}: {line}"
        assert _cli_bytes(rec, "value", "value_encoding") == m["value"], f"value of offset {i}: {line}"
        assert _cli_headers(rec["headers"]) == m["headers"], f"headers of offset {i}: {line}"


def test_producer_auto_creates_topic_on_first_produce(broker):
    assert "mytopic" not in list_topics(broker.bootstrap)
    p = producer(broker.bootstrap)
    t = DeliveryTracker()
    p.produce("mytopic", key="mykey", value="myvalue", on_delivery=t.callback(0))
    flush_all(p, 60)
    assert not t.errors, f"delivery failed: {t.errors}"
    assert t.ok[0][1] == 0, "first record of a new topic should get offset 0"
    partition = t.ok[0][0]

    assert "mytopic" in list_topics(broker.bootstrap)
    (msg,) = consume_confluent(broker.bootstrap, "mytopic", partition, 1)
    assert (msg.key(), msg.value()) == (b"mykey", b"myvalue")


def test_kafka_python_producer_roundtrip(broker):
    from kafka import KafkaProducer

    topic = "kp-roundtrip"
    create_topic(broker.bootstrap, topic, partitions=1)
    n = 3000
    msgs = make_messages(n, seed=42)
    for m in msgs:  # kafka-python's producer takes (str, bytes) headers only: no null header values
        m["headers"] = [(k, b"" if v is None else v) for k, v in m["headers"]]
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=5)
    futures = [p.send(topic, key=m["key"], value=m["value"], headers=m["headers"],
                      partition=0, timestamp_ms=m["timestamp"]) for m in msgs]
    p.flush(timeout=60)
    offsets = [f.get(timeout=60).offset for f in futures]
    p.close()
    assert offsets == list(range(n))

    got = consume_confluent(broker.bootstrap, topic, 0, n)
    for i, (m, r) in enumerate(zip(msgs, got)):
        assert (r.offset(), r.key(), r.value(), r.headers() or []) == (i, m["key"], m["value"], m["headers"])
        assert r.timestamp() == (TIMESTAMP_CREATE_TIME, m["timestamp"])
