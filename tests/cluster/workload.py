"""A client workload for cluster fault tests that records a checker History.

Producers (confluent-kafka, idempotent, acks=all) each write unique values `p<k>-<i>` round-robin
to the topic's partitions at a steady rate and record every acknowledgement (partition, value,
offset, producer) in ack order. Consumers (no group, every partition from the beginning) record
every record they see. `stop()` ends both; `final_read()` reads each partition whole (log start
to high watermark) from a fresh consumer; `check()` runs checker.check over it all.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from checker import History, Result, check
from e2e_util import RDKAFKA_LOGGER, producer

PRODUCER_CONF = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "message.timeout.ms": 60000,  # long enough to ride out a failover
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
}


class Workload:
    def __init__(self, cluster, topic: str, partitions: int, producers: int = 2, consumers: int = 1,
                 rate: float = 100.0, producer_conf: dict | None = None):
        self.cluster = cluster
        self.topic = topic
        self.partitions = partitions
        self.history = History()
        self.rate = rate  # messages per second per producer
        self.producer_conf = {**PRODUCER_CONF, **(producer_conf or {})}
        self.errors: Counter = Counter()  # delivery report errors by name
        self.fatal: list[str] = []  # fatal producer errors (idempotence broken)
        self.produced = 0
        self.unflushed = 0  # messages still undelivered when the producers stopped
        self._acks_per_partition: Counter = Counter()
        self._lock = threading.Lock()
        self._stop_producers = threading.Event()
        self._stop_consumers = threading.Event()
        self._threads: list[threading.Thread] = []
        self._consumer_threads: list[threading.Thread] = []
        self._n_producers = producers
        self._n_consumers = consumers

    # -- running --------------------------------------------------------------------------
    def start(self) -> "Workload":
        for k in range(self._n_producers):
            t = threading.Thread(target=self._produce, args=(k,), name=f"producer-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        for k in range(self._n_consumers):
            t = threading.Thread(target=self._consume, args=(k,), name=f"consumer-{k}", daemon=True)
            t.start()
            self._consumer_threads.append(t)
        return self

    def _produce(self, k: int) -> None:
        name = f"p{k}"
        p = producer(self.cluster.bootstrap, self.producer_conf)

        def on_delivery(err, msg):
            if err is not None:
                with self._lock:
                    self.errors[err.name()] += 1
                if err.fatal():
                    self.fatal.append(f"{name}: {err}")
                return
            self.history.ack(msg.partition(), msg.value(), msg.offset(), name)
            with self._lock:
                self._acks_per_partition[msg.partition()] += 1

        i = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop_producers.is_set() and not self.fatal:
            try:
                p.produce(self.topic, value=f"{name}-{i}".encode(), partition=i % self.partitions,
                          on_delivery=on_delivery)
            except BufferError:
                p.poll(0.1)
                continue
            except KafkaException as e:
                self.fatal.append(f"{name}: produce raised {e}")
                break
            i += 1
            with self._lock:
                self.produced += 1
            next_at += interval
            p.poll(max(0.0, next_at - time.monotonic()))
        left = p.flush(self.producer_conf["message.timeout.ms"] / 1000 + 10)
        with self._lock:
            self.unflushed += left

    def _consume(self, k: int) -> None:
        c = Consumer({"bootstrap.servers": self.cluster.bootstrap, "group.id": f"workload-reader-{k}",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "fetch.wait.max.ms": 100, "topic.metadata.refresh.interval.ms": 2000,
                      "logger": RDKAFKA_LOGGER})
        try:
            c.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)])
            while not self._stop_consumers.is_set():
                msg = c.poll(0.2)
                if msg is None or msg.error():
                    continue
                self.history.read(msg.partition(), msg.offset(), msg.value(), f"c{k}")
        finally:
            c.close()

    def acks(self, partition: int | None = None) -> int:
        with self._lock:
            if partition is None:
                return sum(self._acks_per_partition.values())
            return self._acks_per_partition[partition]

    def wait_progress(self, count: int = 20, partition: int | None = None, timeout: float = 60.0,
                      what: str = "") -> None:
        """Wait until `count` more writes (to `partition`, or any) are acknowledged."""
        start = self.acks(partition)
        self.cluster.wait_for(
            what or f"{count} more acknowledged writes{'' if partition is None else f' to partition {partition}'}"
                    f" (errors so far: {dict(self.errors)}, fatal: {self.fatal})",
            lambda: self.acks(partition) - start >= count or self.fatal, timeout, interval=0.1)
        assert not self.fatal, f"fatal producer errors: {self.fatal}"

    def stop(self, timeout: float = 90.0) -> None:
        """Stop producing, wait for the producers' outstanding deliveries, then the consumers."""
        self._stop_producers.set()
        for t in self._threads:
            t.join(timeout)
            assert not t.is_alive(), f"{t.name} did not finish within {timeout}s"
        time.sleep(1.0)  # let the tailing consumers see the last records
        self._stop_consumers.set()
        for t in self._consumer_threads:
            t.join(30)

    # -- judging --------------------------------------------------------------------------
    def final_read(self, timeout: float = 60.0) -> None:
        """Read every partition from its log start to its high watermark into the history."""
        self.read_whole(None, timeout)

    def read_whole(self, bootstrap: str | None = None, timeout: float = 60.0) -> None:
        """A full read of every partition now (from `bootstrap`, default the running nodes),
        recorded in the history; the last one of a partition is its final log."""
        c = Consumer({"bootstrap.servers": bootstrap or self.cluster.running_bootstrap(), "group.id": "workload-final",
                      "enable.auto.commit": False, "enable.partition.eof": True,
                      "logger": RDKAFKA_LOGGER})
        try:
            for p in range(self.partitions):
                tp = TopicPartition(self.topic, p)
                lo, hi = self.cluster.wait_for(
                    f"watermarks of {self.topic}-{p}",
                    lambda: c.get_watermark_offsets(tp, timeout=5, cached=False), timeout)
                records = []
                c.assign([TopicPartition(self.topic, p, lo)])
                deadline = time.monotonic() + timeout
                position = lo
                while position < hi:
                    assert time.monotonic() < deadline, \
                        f"final read of {self.topic}-{p} reached {position} of [{lo}, {hi}) in {timeout}s"
                    msg = c.poll(0.5)
                    if msg is None:
                        continue
                    if msg.error():
                        if msg.error().code() == KafkaError._PARTITION_EOF:
                            position = max(position, msg.offset())
                            continue
                        raise AssertionError(f"final read of {self.topic}-{p}: {msg.error()}")
                    records.append((msg.offset(), msg.value()))
                    position = msg.offset() + 1
                self.history.full_read(p, records, start=lo)
        finally:
            c.close()

    def check(self) -> Result:
        """stop(), final_read(), then the checker's verdict; asserts that writes were acknowledged."""
        self.stop()
        self.final_read()
        result = check(self.history)
        assert not self.fatal, f"fatal producer errors: {self.fatal}"
        assert result.acked > 0, f"no write was acknowledged (errors: {dict(self.errors)})"
        return result

    def report(self) -> str:
        return (f"produced {self.produced}, acknowledged {self.acks()}, delivery errors {dict(self.errors)}, "
                f"undelivered at stop {self.unflushed}")
