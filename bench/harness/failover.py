#!/usr/bin/env python3
"""Failover time of a replicated partition: kill -9 of its leader to the first acks=all write
acknowledged by the new leader.

usage: failover.py BOOTSTRAP TOPIC NODE=PID[,NODE=PID...]

Creates TOPIC (1 partition, REPLICATION_FACTOR (3) copies, MIN_INSYNC_REPLICAS (2)), waits
until its ISR is full, runs an idempotent acks=all producer at RATE (1000) msg/s of 100 B with
linger.ms=0 for WARMUP_S (3) seconds, then SIGKILLs the partition leader's process. The figure
is the time from the kill to the first delivery report of a message produced after the kill:
the producer delivers in order, so that is the first write the new leader acknowledged once
the backlog queued during the failover is through (an upper bound by at most one backlog's
drain time; at 1000 msg/s the backlog is a few hundred small messages, milliseconds).
stdout: `failover_ms N` and `killed_node ID`; exit 1 if no write is acknowledged within
TIMEOUT_S (60)."""
import os
import signal
import sys
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def partition_state(admin: AdminClient, topic: str):
    md = admin.list_topics(topic=topic, timeout=5)
    p = md.topics[topic].partitions[0]
    return p.leader, sorted(p.isrs), sorted(p.replicas)


def main() -> int:
    bootstrap, topic, pids_arg = sys.argv[1:4]
    pids = {int(k): int(v) for k, v in (kv.split("=") for kv in pids_arg.split(","))}
    rf = int(os.environ.get("REPLICATION_FACTOR", "3"))
    rate = float(os.environ.get("RATE", "1000"))
    warmup = float(os.environ.get("WARMUP_S", "3"))
    timeout = float(os.environ.get("TIMEOUT_S", "60"))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"min.insync.replicas": os.environ.get("MIN_INSYNC_REPLICAS", "2")}
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=rf, config=config)],
                        request_timeout=15)[topic].result(timeout=20)
    deadline = time.monotonic() + 30
    while True:
        try:
            leader, isr, replicas = partition_state(admin, topic)
            if leader >= 0 and len(isr) == rf:
                break
        except Exception:  # noqa: BLE001 - retried until the deadline
            pass
        if time.monotonic() > deadline:
            print(f"failover.py: {topic} has no leader with a full ISR after 30 s", file=sys.stderr)
            return 1
        time.sleep(0.2)

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 0, "message.timeout.ms": int(timeout * 1000),
                         "reconnect.backoff.max.ms": 100, "retry.backoff.max.ms": 100,
                         "topic.metadata.refresh.interval.ms": 250})
    killed_at: list[float] = []  # monotonic time of the kill
    first_after: list[float] = []  # monotonic time of the first ack of a message sent after it
    done = threading.Event()

    def report(after_kill: bool):
        def on_delivery(err, _msg):
            if err is None and after_kill and not first_after:
                first_after.append(time.monotonic())
                done.set()
        return on_delivery

    started = time.monotonic()
    interval = 1.0 / rate
    next_at = started
    while not done.is_set():
        now = time.monotonic()
        if not killed_at and now - started >= warmup:
            leader = partition_state(admin, topic)[0]
            os.kill(pids[leader], signal.SIGKILL)
            killed_at.append(time.monotonic())
            print(f"killed_node {leader}")
        if killed_at and now - killed_at[0] > timeout:
            print(f"failover.py: no write acknowledged {timeout} s after the kill", file=sys.stderr)
            return 1
        try:
            producer.produce(topic, value=b"x" * 100, on_delivery=report(bool(killed_at)))
        except BufferError:
            pass
        next_at += interval
        producer.poll(max(0.0, next_at - time.monotonic()))
    print(f"failover_ms {(first_after[0] - killed_at[0]) * 1000:.0f}")
    producer.purge()
    producer.flush(1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
