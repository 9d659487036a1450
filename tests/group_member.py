"""A consumer-group member run as its own process (so tests can kill -9 it).

Usage: group_member.py BOOTSTRAP GROUP TOPIC NAME [key=value ...]

Prints one JSON line per event on stdout, each with `t` (CLOCK_MONOTONIC, shared by
every process on the machine) and `name`:
  {"ev": "assign", "p": [partitions added]}   after the client takes them
  {"ev": "revoke", "p": [partitions given up]} before the client lets them go
  {"ev": "msg", "p": partition, "o": offset}
Runs until stdin closes or it is killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from confluent_kafka import Consumer


def main() -> None:
    bootstrap, group, topic, name = sys.argv[1:5]
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "client.id": name}
    for kv in sys.argv[5:]:
        k, v = kv.split("=", 1)
        conf[k] = v
    lock = threading.Lock()

    def emit(**ev) -> None:
        ev["t"] = time.monotonic()
        ev["name"] = name
        with lock:
            sys.stdout.write(json.dumps(ev) + "\n")
            sys.stdout.flush()

    def on_assign(c, parts):
        emit(ev="assign", p=sorted(p.partition for p in parts))

    def on_revoke(c, parts):
        emit(ev="revoke", p=sorted(p.partition for p in parts))

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    c = Consumer(conf)
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    while not stop.is_set():
        m = c.poll(0.2)
        if m is None or m.error():
            continue
        emit(ev="msg", p=m.partition(), o=m.offset())
    c.close()
    emit(ev="closed")


if __name__ == "__main__":
    main()
