"""Nothing acknowledged is lost: across a clean restart and across kill -9 under load."""

from __future__ import annotations

import threading
import time

from e2e_util import consume_confluent, create_topic, list_topics, produce_keyed, producer, watermarks

KILL_AFTER_ACKED = 50_000
TOTAL = 200_000


def _read_all(bootstrap: str, topic: str, partitions: int, per_partition: int) -> dict:
    out = {}
    for part in range(partitions):
        for m in consume_confluent(bootstrap, topic, part, per_partition):
            out[(part, m.offset())] = (m.key(), m.value(), m.headers())
    return out


def test_topics_and_records_survive_graceful_restart(broker):
    topics = {"one-partition": 1, "three-partitions": 3, "with.dots_and-dashes": 2}
    expected = {}
    for name, parts in topics.items():
        create_topic(broker.bootstrap, name, partitions=parts)
        expected[name] = produce_keyed(broker.bootstrap, name, parts, 500)

    code = broker.stop()
    assert code == 0, f"broker exited with code {code} on SIGTERM"
    broker.start()

    listed = list_topics(broker.bootstrap)
    for name, parts in topics.items():
        assert listed.get(name) == parts, f"topic {name}: {listed.get(name)} partitions after restart"
        assert _read_all(broker.bootstrap, name, parts, 500) == expected[name]
        for part in range(parts):
            assert watermarks(broker.bootstrap, name, part) == (0, 500)

    # appends continue after the recovered log end
    more = produce_keyed(broker.bootstrap, "one-partition", 1, 10)
    assert sorted(more) == [(0, 500 + i) for i in range(10)]


def test_partition_directory_uses_kafka_layout(broker):
    create_topic(broker.bootstrap, "layout", partitions=2)
    produce_keyed(broker.bootstrap, "layout", 2, 10)
    for part in range(2):
        d = broker.data_dir / f"layout-{part}"
        assert d.is_dir(), f"missing partition dir {d}; data dir has {sorted(p.name for p in broker.data_dir.iterdir())}"
        log = d / "00000000000000000000.log"
        assert log.is_file(), f"missing {log}; dir has {sorted(p.name for p in d.iterdir())}"
        assert log.stat().st_size > 0
        assert (d / "00000000000000000000.index").is_file()
        # the .log holds Kafka RecordBatch v2: base offset 0, magic byte 2 at byte 16
        head = log.read_bytes()[:17]
        assert int.from_bytes(head[:8], "big") == 0 and head[16] == 2


def test_acknowledged_records_survive_kill9_mid_produce(broker):
    topic = "crash"
    create_topic(broker.bootstrap, topic, partitions=1)
    acked: dict[int, bytes] = {}        # offset -> value, from delivery reports without error
    failed = [0]
    killed = threading.Event()
    state = {"produced_at_kill": None, "acked_at_kill": None}

    def on_delivery(err, msg):
        if err is None:
            off = msg.offset()
            assert off not in acked or acked[off] == msg.value(), f"offset {off} acknowledged twice"
            acked[off] = msg.value()
        else:
            failed[0] += 1

    p = producer(broker.bootstrap, {"acks": 1, "linger.ms": 5, "message.timeout.ms": 10000,
                                    "enable.idempotence": False, "retries": 0})
    produced = [0]

    def killer():
        while len(acked) < KILL_AFTER_ACKED and produced[0] < TOTAL:
            time.sleep(0.001)
        state["produced_at_kill"] = produced[0]
        state["acked_at_kill"] = len(acked)
        broker.kill9()
        killed.set()

    kt = threading.Thread(target=killer, daemon=True)
    kt.start()
    for i in range(TOTAL):
        if killed.is_set():
            break
        value = b"%08d:" % i + b"x" * (i % 64)
        while True:
            try:
                p.produce(topic, value=value, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        produced[0] = i + 1
        if i % 100 == 0:
            p.poll(0)
    kt.join(timeout=120)
    assert killed.is_set(), "the killer thread never fired"
    p.flush(60)  # everything still in flight fails once message.timeout.ms passes
    assert len(p) == 0, f"{len(p)} messages still queued in the producer after the crash"
    del p
    assert state["acked_at_kill"] >= KILL_AFTER_ACKED
    assert state["acked_at_kill"] < TOTAL, "all messages were acknowledged before the kill: not a mid-produce crash"

    broker.start()
    n_acked = len(acked)
    assert n_acked >= KILL_AFTER_ACKED
    low, high = watermarks(broker.bootstrap, topic)
    print(f"kill -9 at {state['acked_at_kill']} acked / {state['produced_at_kill']} produced; "
          f"{n_acked} acked in all, {failed[0]} failed; log end after recovery {high}")
    assert low == 0
    assert high >= max(acked) + 1, f"log end {high} after recovery, but offset {max(acked)} was acknowledged"

    got = {m.offset(): m.value() for m in consume_confluent(broker.bootstrap, topic, 0, high, timeout=180)}
    missing = [o for o in acked if o not in got]
    assert not missing, f"{len(missing)} acknowledged records lost, first offsets {sorted(missing)[:5]}"
    wrong = [o for o, v in acked.items() if got[o] != v]
    assert not wrong, f"{len(wrong)} acknowledged offsets hold other values, first {sorted(wrong)[:5]}"
    # offsets are dense: no gap before the log end
    assert sorted(got) == list(range(high))
