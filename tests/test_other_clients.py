"""Clients beyond librdkafka and kafka-python: aiokafka (asyncio) round-trips keyed records
with headers; kafkajs (Node.js) creates and describes a topic and produces with acks=-1,
and what it wrote is read back byte for byte with confluent-kafka; both clients' group
consumers commit and a later consumer of the group resumes after the commits."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from e2e_util import consume_confluent, create_topic

JS_DIR = Path(__file__).resolve().parent / "js"


# ---- aiokafka ------------------------------------------------------------------------------
AIO_N = 500


def _aio_messages():
    return [{"key": b"k-%d" % (i % 37),
             "value": b"aio-value-%d-" % i + bytes(range(i % 256)),
             "headers": [("seq", b"%d" % i), ("dup", b"a"), ("dup", b"b")] if i % 2 else [("empty", b"")],
             "timestamp": 1_700_000_000_000 + i}
            for i in range(AIO_N)]


async def _aio_roundtrip(bootstrap: str, topic: str, msgs: list[dict]):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=30000)
    await producer.start()
    try:
        metas = []
        # a few awaited one by one, the rest in flight together
        for m in msgs[:10]:
            metas.append(await producer.send_and_wait(topic, value=m["value"], key=m["key"], partition=0,
                                                      headers=m["headers"], timestamp_ms=m["timestamp"]))
        futures = [await producer.send(topic, value=m["value"], key=m["key"], partition=0,
                                       headers=m["headers"], timestamp_ms=m["timestamp"])
                   for m in msgs[10:]]
        metas += [await f for f in futures]
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="none", request_timeout_ms=30000)
    await consumer.start()
    got = []
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < len(msgs):
            assert asyncio.get_running_loop().time() < deadline, f"aiokafka consumer got {len(got)}/{len(msgs)}"
            batch = await consumer.getmany(tp, timeout_ms=500)
            got.extend(batch.get(tp, []))
        assert await consumer.end_offsets([tp]) == {tp: len(msgs)}
    finally:
        await consumer.stop()
    return metas, got


def test_aiokafka_producer_and_consumer_roundtrip_keyed_records_with_headers(broker):
    topic = "aiokafka"
    create_topic(broker.bootstrap, topic, partitions=1)
    msgs = _aio_messages()
    metas, got = asyncio.run(_aio_roundtrip(broker.bootstrap, topic, msgs))

    assert [(md.topic, md.partition, md.offset) for md in metas] == [(topic, 0, i) for i in range(AIO_N)]
    assert len(got) == AIO_N
    for i, (m, r) in enumerate(zip(msgs, got)):
        assert (r.offset, r.key, r.value) == (i, m["key"], m["value"]), f"aiokafka: record {i}"
        assert list(r.headers) == m["headers"], f"aiokafka: headers of record {i}: {r.headers}"
        assert (r.timestamp, r.timestamp_type) == (m["timestamp"], 0), f"aiokafka: timestamp of record {i}"

    # and librdkafka reads the same bytes
    for i, (m, r) in enumerate(zip(msgs, consume_confluent(broker.bootstrap, topic, 0, AIO_N))):
        assert (r.key(), r.value(), r.headers() or []) == (m["key"], m["value"], m["headers"]), f"confluent: record {i}"


# ---- kafkajs -------------------------------------------------------------------------------
JS_N = 200


@pytest.fixture(scope="session")
def kafkajs_script() -> Path:
    """tests/js/roundtrip.js with kafkajs installed (scripts/test installs it; a direct pytest
    run installs it from the committed package-lock.json if it is missing)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run scripts/test (it installs nodejs and npm)")
    if not (JS_DIR / "node_modules" / "kafkajs" / "package.json").exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed: run scripts/test (it installs nodejs and npm)")
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, f"npm ci in {JS_DIR} failed: {r.stderr}"
    return JS_DIR / "roundtrip.js"


def test_kafkajs_admin_and_acks_all_producer(broker, kafkajs_script):
    topic = "kafkajs"
    r = subprocess.run(["node", str(kafkajs_script), broker.bootstrap, topic, str(JS_N)],
                       capture_output=True, text=True, timeout=60, cwd=JS_DIR,
                       env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"))
    assert r.returncode == 0, f"kafkajs script failed ({r.returncode}):\n{r.stderr}"
    out = json.loads(r.stdout.strip().splitlines()[-1])

    assert out["created"] is True, out["created"]
    assert out["createdAgain"] is False, "createTopics of an existing topic should report it was not created"
    (md,) = out["metadata"]
    assert md["name"] == topic
    assert md["partitions"] == [
        {"partition": p, "leader": 1, "replicas": [1], "isr": [1], "error": 0} for p in (0, 1)], md
    assert sorted((o["partition"], o["low"], o["high"]) for o in out["offsetsBefore"]) == [(0, "0", "0"), (1, "0", "0")]

    half = JS_N // 2
    (first,), (second,) = out["sends"]
    assert (first["topicName"], first["partition"], first["errorCode"], first["baseOffset"]) == (topic, 0, 0, "0"), first
    assert (second["topicName"], second["partition"], second["errorCode"], second["baseOffset"]) == \
        (topic, 0, 0, str(half)), second
    (p1,) = out["sendPartition1"]
    assert (p1["partition"], p1["errorCode"], p1["baseOffset"]) == (1, 0, "0"), p1
    assert sorted((o["partition"], o["low"], o["high"]) for o in out["offsetsAfter"]) == \
        [(0, "0", str(JS_N)), (1, "0", "1")]

    got = consume_confluent(broker.bootstrap, topic, 0, JS_N)
    for i, m in enumerate(got):
        assert (m.offset(), m.key(), m.value()) == (i, b"key-%d" % i, b"value-%d" % i), f"record {i}"
        assert sorted(m.headers() or []) == [("index", b"%d" % i), ("source", b"kafkajs")], f"headers of record {i}"
        assert m.timestamp() == (TIMESTAMP_CREATE_TIME, 1_700_000_000_000 + i), f"timestamp of record {i}"
    (m,) = consume_confluent(broker.bootstrap, topic, 1, 1)
    assert (m.key(), m.value()) == (b"p1", b"on-partition-1")


# ---- consumer groups -------------------------------------------------------------------------

@pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0"})
def test_kafkajs_group_consumer_commits_and_the_next_one_resumes(broker, kafkajs_script):
    from e2e_util import flush_all, producer

    topic = "kafkajs-group"
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap)
    for i in range(20):
        p.produce(topic, f"v{i}".encode(), partition=i % 2)
    flush_all(p)
    script = kafkajs_script.parent / "group_consume.js"

    def run(count: int) -> list:
        r = subprocess.run(["node", str(script), broker.bootstrap, topic, "js-group", str(count)],
                           capture_output=True, text=True, timeout=120, cwd=JS_DIR)
        assert r.returncode == 0, f"kafkajs group consumer failed ({r.returncode}):\n{r.stderr}"
        return json.loads(r.stdout.strip().splitlines()[-1])["got"]

    first = run(20)
    assert sorted((p, o) for p, o, _ in first) == sorted((i % 2, i // 2) for i in range(20))
    for i in range(20, 24):
        p.produce(topic, f"v{i}".encode(), partition=i % 2)
    flush_all(p)
    second = run(4)
    assert sorted(v for _, _, v in second) == ["v20", "v21", "v22", "v23"], "resumes after the committed offsets"


async def _aio_group(bootstrap: str, topic: str, count: int) -> list[tuple[int, int]]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="aio-group",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    got: list[tuple[int, int]] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(got) < count:
            assert asyncio.get_running_loop().time() < deadline, f"aiokafka group consumer got {len(got)}/{count}"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend((r.partition, r.offset) for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    return got


@pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0"})
def test_aiokafka_group_consumer_commits_and_the_next_one_resumes(broker):
    from e2e_util import flush_all, producer

    topic = "aio-group-topic"
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap)
    for i in range(30):
        p.produce(topic, b"x", partition=i % 3)
    flush_all(p)
    first = asyncio.run(_aio_group(broker.bootstrap, topic, 30))
    assert sorted(first) == [(part, o) for part in range(3) for o in range(10)]
    for i in range(3):
        p.produce(topic, b"y", partition=i)
    flush_all(p)
    second = asyncio.run(_aio_group(broker.bootstrap, topic, 3))
    assert sorted(second) == [(part, 10) for part in range(3)]
