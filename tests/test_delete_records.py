"""DeleteRecords (issue 7, acceptance test 5): confluent-kafka's and kafka-python's
`delete_records` and bin/kafka-delete-records.sh move a partition's log start offset;
whole segments below it go; the offset is kept in Kafka's `log-start-offset-checkpoint`
across clean restarts and crashes; and every client (confluent-kafka, kafka-python,
aiokafka, kcat, kafkajs, Potok's console consumer) starts reading there, also when asked for an offset below it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from e2e_util import admin, consume_confluent, consumer, create_topic, flush_all, producer, watermarks

JS_DIR = Path(__file__).resolve().parent / "js"
N = 100


def _produce(bootstrap: str, topic: str, partition: int = 0, n: int = N) -> None:
    p = producer(bootstrap, {"linger.ms": 0})
    for i in range(n):
        p.produce(topic, value=b"v-%d" % i, key=b"k-%d" % i, partition=partition)
        flush_all(p)  # one batch per record: segments of a few records each


def _segments(broker, topic: str, partition: int = 0) -> list[int]:
    return sorted(int(f.stem) for f in (broker.data_dir / f"{topic}-{partition}").glob("*.log"))


def _confluent_delete(bootstrap: str, topic: str, partition: int, offset: int):
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fs = a.delete_records([TopicPartition(topic, partition, offset)], request_timeout=30)
    (future,) = fs.values()
    return future.result(timeout=30)


def _values(msgs) -> list[tuple[int, bytes]]:
    return [(m.offset(), m.value()) for m in msgs]


def _expected(start: int, end: int = N) -> list[tuple[int, bytes]]:
    return [(i, b"v-%d" % i) for i in range(start, end)]


async def _aiokafka_read(bootstrap: str, topic: str, count: int) -> list[tuple[int, bytes]]:
    from aiokafka import AIOKafkaConsumer
    from aiokafka import TopicPartition as ATP

    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=30000)
    await c.start()
    try:
        tp = ATP(topic, 0)
        c.assign([tp])
        await c.seek_to_beginning(tp)
        got = []
        while len(got) < count:
            batch = await asyncio.wait_for(c.getmany(tp, timeout_ms=500), 30)
            got.extend((r.offset, r.value) for r in batch.get(tp, []))
        return got
    finally:
        await c.stop()


def _read_all_clients(broker, topic: str, start: int, tool_env) -> None:
    """Every client starts at `start`, the log start offset, and reads every record."""
    expected = _expected(start)
    # confluent-kafka: from the beginning, and from an offset below the start (auto.offset.reset)
    assert _values(consume_confluent(broker.bootstrap, topic, 0, N - start)) == expected
    c = consumer(broker.bootstrap, {"group.id": "below-start", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 3)])
        got = []
        while len(got) < N - start:
            m = c.poll(10)
            assert m is not None, f"confluent-kafka read {len(got)} records"
            assert not m.error(), m.error()
            got.append(m)
        assert _values(got) == expected
    finally:
        c.close()

    # kafka-python: seek_to_beginning, and a seek below the start
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    for seek in (None, 3):
        kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                           auto_offset_reset="earliest", request_timeout_ms=30000)
        try:
            tp = KTP(topic, 0)
            kc.assign([tp])
            if seek is None:
                kc.seek_to_beginning(tp)
            else:
                kc.seek(tp, seek)
            got = []
            for _ in range(60):
                for recs in kc.poll(timeout_ms=500).values():
                    got.extend(recs)
                if len(got) >= N - start:
                    break
            assert [(r.offset, r.value) for r in got] == expected, f"kafka-python from {seek}"
        finally:
            kc.close()

    # aiokafka: seek_to_beginning
    assert asyncio.run(_aiokafka_read(broker.bootstrap, topic, N - start)) == expected

    # kcat from the beginning
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat is not installed (scripts/test installs it with apt-get)")
    r = subprocess.run([kcat, "-b", broker.bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e",
                        "-f", "%o %s\n"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{o} {v.decode()}" for o, v in expected]

    # Potok's own client, through Kafka's console consumer
    bin_dir = Path(__file__).resolve().parent.parent / "bin"
    r = subprocess.run([str(bin_dir / "kafka-console-consumer.sh"), "--bootstrap-server", broker.bootstrap,
                        "--topic", topic, "--from-beginning", "--max-messages", str(N - start),
                        "--property", "print.offset=true"],
                       capture_output=True, text=True, env=tool_env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"Offset:{o}\t{v.decode()}" for o, v in expected]

    # kafkajs: a group consumer with fromBeginning
    if shutil.which("node") is None or not (JS_DIR / "node_modules").exists():
        pytest.fail("node / tests/js/node_modules missing: run scripts/test")
    r = subprocess.run(["node", str(JS_DIR / "group_consume.js"), broker.bootstrap, topic, f"js-{start}",
                        str(N - start)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["got"]
    assert [(o, v.encode()) for _, o, v in got] == expected


def test_confluent_delete_records_moves_the_start_and_survives_restarts(broker, tool_env):
    topic = "dr-confluent"
    create_topic(broker.bootstrap, topic, config={"segment.bytes": "1024"})
    _produce(broker.bootstrap, topic)
    assert watermarks(broker.bootstrap, topic) == (0, N)
    before = _segments(broker, topic)
    assert len(before) > 3

    deleted = _confluent_delete(broker.bootstrap, topic, 0, 30)
    assert deleted.low_watermark == 30
    assert watermarks(broker.bootstrap, topic) == (30, N)
    after = _segments(broker, topic)
    # whole segments below 30 are gone; the one holding offset 30 stays
    assert after == [b for b in before if b >= max(x for x in before if x <= 30)]
    text = (broker.data_dir / "log-start-offset-checkpoint").read_text()
    assert text == f"0\n1\n{topic} 0 30\n"

    # reads below the start are OFFSET_OUT_OF_RANGE for a consumer that does not reset
    c = consumer(broker.bootstrap, {"group.id": "no-reset", "auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 10)])
        err = None
        for _ in range(40):
            m = c.poll(0.5)
            if m is not None and m.error():
                err = m.error()
                break
            assert m is None, f"read offset {m.offset()} below the log start"
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
    finally:
        c.close()

    # backwards is a no-op; past the high watermark is OFFSET_OUT_OF_RANGE
    assert _confluent_delete(broker.bootstrap, topic, 0, 5).low_watermark == 30
    with pytest.raises(KafkaException) as e:
        _confluent_delete(broker.bootstrap, topic, 0, N + 1)
    assert e.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (30, N)
    broker.kill9()
    broker.start()
    assert watermarks(broker.bootstrap, topic) == (30, N)
    _read_all_clients(broker, topic, 30, tool_env)


def test_delete_up_to_the_high_watermark_with_minus_one(broker):
    topic = "dr-all"
    create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, n=10)
    assert _confluent_delete(broker.bootstrap, topic, 0, -1).low_watermark == 10
    assert watermarks(broker.bootstrap, topic) == (10, 10)
    p = producer(broker.bootstrap)
    p.produce(topic, value=b"after", partition=0)
    flush_all(p)
    msgs = consume_confluent(broker.bootstrap, topic, 0, 1, start_offset=OFFSET_BEGINNING)
    assert _values(msgs) == [(10, b"after")]
    broker.kill9()
    broker.start()
    assert watermarks(broker.bootstrap, topic) == (10, 11)


def test_kafka_python_delete_records(broker):
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP

    topic = "dr-kafka-python"
    create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, n=20)
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = a.delete_records({KTP(topic, 0): 7})
    finally:
        a.close()
    assert result[KTP(topic, 0)]["low_watermark"] == 7
    assert watermarks(broker.bootstrap, topic) == (7, 20)


def test_kafka_delete_records_script(broker, bin_dir, tool_env, tmp_path):
    topic = "dr-script"
    create_topic(broker.bootstrap, topic, partitions=2)
    _produce(broker.bootstrap, topic, 0)
    _produce(broker.bootstrap, topic, 1, n=10)
    plan = tmp_path / "offsets.json"
    plan.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": 30},
                                               {"topic": topic, "partition": 1, "offset": -1}],
                                "version": 1}))
    r = subprocess.run([str(bin_dir / "kafka-delete-records.sh"), "--bootstrap-server", broker.bootstrap,
                        "--offset-json-file", str(plan)], capture_output=True, text=True, env=tool_env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "Executing records delete operation",
        "Records delete operation completed:",
        f"partition: {topic}-0\tlow_watermark: 30",
        f"partition: {topic}-1\tlow_watermark: 10",
    ]
    assert watermarks(broker.bootstrap, topic, 0) == (30, N)
    assert watermarks(broker.bootstrap, topic, 1) == (10, 10)

    # past the high watermark: Kafka's error line, nothing moves
    plan.write_text(json.dumps({"partitions": [{"topic": topic, "partition": 0, "offset": N + 5}], "version": 1}))
    r = subprocess.run([str(bin_dir / "kafka-delete-records.sh"), "--bootstrap-server", broker.bootstrap,
                        "--offset-json-file", str(plan)], capture_output=True, text=True, env=tool_env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2].startswith(
        f"partition: {topic}-0\terror: org.apache.kafka.common.errors.OffsetOutOfRangeException: ")
    assert watermarks(broker.bootstrap, topic, 0) == (30, N)

    broker.restart()
    assert watermarks(broker.bootstrap, topic, 0) == (30, N)
    assert _values(consume_confluent(broker.bootstrap, topic, 0, N - 30)) == _expected(30)


def test_compacted_topics_refuse_delete_records(broker):
    topic = "dr-compact"
    create_topic(broker.bootstrap, topic, config={"cleanup.policy": "compact"})
    _produce(broker.bootstrap, topic, n=5)
    with pytest.raises(KafkaException) as e:
        _confluent_delete(broker.bootstrap, topic, 0, 2)
    assert e.value.args[0].code() == KafkaError.POLICY_VIOLATION
    assert watermarks(broker.bootstrap, topic) == (0, 5)


def test_a_recreated_topic_starts_at_zero(broker):
    topic = "dr-recreated"
    create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, n=10)
    assert _confluent_delete(broker.bootstrap, topic, 0, 6).low_watermark == 6
    a = admin(broker.bootstrap)
    a.delete_topics([topic])[topic].result(timeout=30)
    create_topic(broker.bootstrap, topic)
    _produce(broker.bootstrap, topic, n=3)
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (0, 3)
