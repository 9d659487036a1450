"""Seeds the fuzz corpus from real client frames.

Starts `potok server` behind a recording TCP proxy (advertised as the proxy, so every
client connection goes through it), runs real clients against it (confluent-kafka admin,
producer with every codec, consumer; kafka-python producer and consumer), and writes what
they sent: request frames (without the size prefix) to corpus/request/ and each Produce
partition's records to corpus/batch/. At most two frames per API key and version are kept,
so the corpus stays small.

    POTOK_BIN=target/release/potok .venv/bin/python fuzz/capture_corpus.py
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import kafkawire as w  # noqa: E402

frames: list[bytes] = []
lock = threading.Lock()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pump(src, dst, record: bool):
    buf = b""
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
            if record:
                buf += chunk
                while len(buf) >= 4:
                    (n,) = struct.unpack(">i", buf[:4])
                    if len(buf) < 4 + n:
                        break
                    with lock:
                        frames.append(buf[4:4 + n])
                    buf = buf[4 + n:]
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port: int, broker_port: int):
    srv = socket.create_server(("127.0.0.1", listen_port))
    while True:
        client, _ = srv.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", broker_port))
        except OSError:  # the broker is gone: the capture is over
            client.close()
            continue
        threading.Thread(target=pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, False), daemon=True).start()


def skip_tags(r: w.Reader) -> None:
    for _ in range(r.uvarint()):
        r.uvarint()
        r.take(r.uvarint())


def records_of_produce(frame: bytes) -> list[bytes]:
    """The records of a Produce v3..v12 frame, else nothing."""
    key, version = struct.unpack(">hh", frame[:4])
    if key != 0 or not 3 <= version <= 12:
        return []
    flexible = version >= 9
    r = w.Reader(frame[8:])
    r.string()  # client id
    if flexible:
        skip_tags(r)
    (r.compact_string if flexible else r.string)()  # transactional id
    r.i16(), r.i32()
    count = (lambda: r.uvarint() - 1) if flexible else r.i32
    out = []
    for _ in range(count()):
        (r.compact_string if flexible else r.string)()
        for _ in range(count()):
            r.i32()
            n = count()
            if n > 0:
                out.append(r.take(n))
            if flexible:
                skip_tags(r)
        if flexible:
            skip_tags(r)
    return out


def main():
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

    potok = os.environ.get("POTOK_BIN", str(HERE.parent / "target/release/potok"))
    broker_port, proxy_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{proxy_port}"
    threading.Thread(target=proxy, args=(proxy_port, broker_port), daemon=True).start()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen([potok, "server", "--override", f"listeners=PLAINTEXT://127.0.0.1:{broker_port}",
                                 "--override", f"advertised.listeners=PLAINTEXT://{bootstrap}",
                                 "--override", f"log.dirs={data}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            a = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
            a.create_topics([NewTopic("seed", 2, 1, config={"cleanup.policy": "delete"})])["seed"].result(30)
            a.create_partitions([NewPartitions("seed", 3)])["seed"].result(30)
            for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
                p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5,
                              "enable.idempotence": codec == "zstd", "log_level": 0})
                for i in range(20):
                    p.produce("seed", key=b"k%d" % i, value=(b"value %d " % i) * 8, partition=i % 3,
                              headers=[("h", b"x"), ("h", None)])
                p.flush(30)
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "seed-group", "auto.offset.reset": "earliest",
                          "log_level": 0})
            c.subscribe(["seed"])
            got, deadline = 0, time.monotonic() + 30
            while got < 100 and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got += 1
            c.commit(asynchronous=False)
            c.close()
            try:
                from kafka import KafkaConsumer, KafkaProducer
                kp = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip")
                kp.send("seed", b"kafka-python", partition=0)
                kp.flush(30)
                kp.close()
                kc = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
                kc.assign([__import__("kafka").TopicPartition("seed", 0)])
                kc.seek_to_beginning()
                for _ in kc:
                    pass
                kc.close()
            except ImportError:
                pass
        finally:
            proc.terminate()
            proc.wait(30)
    kept: dict[tuple[int, int], int] = {}
    for sub in ("request", "batch"):
        (HERE / "corpus" / sub).mkdir(parents=True, exist_ok=True)
    n_req = n_batch = 0
    codecs_kept: dict[int, int] = {}
    for frame in frames:
        key, version = struct.unpack(">hh", frame[:4])
        name = f"{key:02d}-v{version:02d}-{hashlib.sha1(frame).hexdigest()[:12]}"
        # Record sets: up to four of each codec, from any Produce frame.
        for records in records_of_produce(frame):
            codec = records[22] & 7 if len(records) > 22 else 0
            if codecs_kept.get(codec, 0) < 4:
                codecs_kept[codec] = codecs_kept.get(codec, 0) + 1
                (HERE / "corpus/batch" / f"codec{codec}-{hashlib.sha1(records).hexdigest()[:12]}").write_bytes(records)
                n_batch += 1
        if kept.get((key, version), 0) >= 2:
            continue
        kept[(key, version)] = kept.get((key, version), 0) + 1
        (HERE / "corpus/request" / name).write_bytes(frame)
        n_req += 1
    print(f"{len(frames)} frames seen; kept {n_req} request frames and {n_batch} record sets")


if __name__ == "__main__":
    main()
