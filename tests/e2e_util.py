"""Client-side helpers shared by the e2e tests (confluent-kafka and kafka-python)."""

from __future__ import annotations

import logging
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


# librdkafka's log lines go to Python logging (shown with a failing test), not to raw stderr
RDKAFKA_LOGGER = logging.getLogger("librdkafka")


class _RepeatFilter(logging.Filter):
    """Drop a librdkafka line after it was seen 3 times (reconnect loops to a dead broker)."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        self.seen[msg] = self.seen.get(msg, 0) + 1
        return self.seen[msg] <= 3


RDKAFKA_LOGGER.addFilter(_RepeatFilter())
_PRODUCERS: list[Producer] = []


def close_clients() -> None:
    """Close every producer made by producer() (called after each test)."""
    while _PRODUCERS:
        p = _PRODUCERS.pop()
        try:
            p.purge()
            p.flush(1)
            p.close()
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "logger": RDKAFKA_LOGGER})


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 30.0) -> None:
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fs = a.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        request_timeout=timeout)
    fs[name].result(timeout=timeout)  # raises KafkaException on error


def list_topics(bootstrap: str, timeout: float = 15.0) -> dict[str, int]:
    """{topic: partition count}, internal topics (leading '__') excluded."""
    md = admin(bootstrap).list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in md.topics.items()
            if not name.startswith("__") and t.error is None}


def watermarks(bootstrap: str, topic: str, partition: int = 0, timeout: float = 15.0) -> tuple[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "potok-e2e-watermarks",
                  "enable.auto.commit": False, "logger": RDKAFKA_LOGGER})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout, cached=False)
    finally:
        c.close()


class DeliveryTracker:
    """Collects delivery reports: (partition, offset) or the error, per message index."""

    def __init__(self):
        self.ok: dict[int, tuple[int, int]] = {}
        self.errors: dict[int, KafkaError] = {}

    def callback(self, index: int):
        def cb(err, msg):
            if err is not None:
                self.errors[index] = err
            else:
                self.ok[index] = (msg.partition(), msg.offset())
        return cb


def consume_confluent(bootstrap: str, topic: str, partition: int, count: int,
                      timeout: float = 90.0, start_offset: int = OFFSET_BEGINNING) -> list:
    """Read `count` messages of one partition from `start_offset` (no group, no commit)."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "potok-e2e-reader",  # required by librdkafka; never joined (assign, no subscribe)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "logger": RDKAFKA_LOGGER,
    })
    out = []
    try:
        c.assign([TopicPartition(topic, partition, start_offset)])
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, \
                f"confluent-kafka consumer got {len(out)}/{count} messages of {topic}-{partition} in {timeout}s"
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error on {topic}-{partition}: {msg.error()}")
            out.append(msg)
        # nothing beyond `count`
        extra = c.poll(0.5)
        assert extra is None or extra.error() is not None, \
            f"unexpected extra message at offset {extra.offset()} of {topic}-{partition}"
    finally:
        c.close()
    return out


def consume_kafka_python(bootstrap: str, topic: str, partition: int, count: int, timeout: float = 90.0) -> list:
    """kafka-python KafkaConsumer: assign + seek_to_beginning, no group."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", request_timeout_ms=30000)
    out = []
    try:
        tp = KTP(topic, partition)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, \
                f"kafka-python consumer got {len(out)}/{count} messages of {topic}-{partition} in {timeout}s"
            for recs in c.poll(timeout_ms=500, max_records=5000).values():
                out.extend(recs)
    finally:
        c.close()
    return out


def producer(bootstrap: str, conf: dict | None = None) -> Producer:
    cfg = {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 60000,
           "logger": RDKAFKA_LOGGER}
    cfg.update(conf or {})
    p = Producer(cfg)
    _PRODUCERS.append(p)
    return p


def consumer(bootstrap: str, conf: dict | None = None) -> Consumer:
    cfg = {"bootstrap.servers": bootstrap, "group.id": "potok-e2e", "enable.auto.commit": False,
           "logger": RDKAFKA_LOGGER}
    cfg.update(conf or {})
    return Consumer(cfg)


def poll_messages(c: Consumer, count: int, timeout: float = 60.0, on_message=None) -> list:
    """Polls until `count` messages arrived (error events skipped) or `timeout` passed;
    calls `on_message(msg)` for each. Returns the messages (fewer on timeout)."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is None or msg.error():
            continue
        got.append(msg)
        if on_message is not None:
            on_message(msg)
    return got


def flush_all(p: Producer, timeout: float = 60.0) -> None:
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages still undelivered after {timeout}s"


def produce_keyed(bootstrap: str, topic: str, partitions: int, per_partition: int,
                  conf: dict | None = None) -> dict:
    """Produce `per_partition` distinct records (key, value, one header) to each partition;
    returns {(partition, offset): (key, value, headers)}."""
    p = producer(bootstrap, conf)
    t = DeliveryTracker()
    sent = {}
    idx = 0
    for part in range(partitions):
        for i in range(per_partition):
            key = f"{topic}-{part}-k{i}".encode()
            value = f"{topic}/{part}/{i}/".encode() * (1 + i % 5)
            headers = [("i", str(i).encode())]
            p.produce(topic, key=key, value=value, headers=headers, partition=part,
                      on_delivery=t.callback(idx))
            sent[idx] = (key, value, headers)
            idx += 1
            p.poll(0)
    flush_all(p)
    assert not t.errors, f"delivery errors: {list(t.errors.items())[:3]}"
    return {t.ok[i]: sent[i] for i in sent}
