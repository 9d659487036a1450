"""Kafka's log tools against Potok (issue 7): kafka-log-dirs.sh / potok log-dirs
(DescribeLogDirs), kafka-get-offsets.sh (ListOffsets -1/-2/-3/timestamp), and
kafka-dump-log.sh reading Potok's segment and index files directly, checked record by
record against what was produced."""

from __future__ import annotations

import json
import os
import re
import subprocess

from confluent_kafka import TopicPartition

from e2e_util import admin, create_topic, flush_all, producer


def run(cmd: list[str], env: dict, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=120)
    if ok:
        assert r.returncode == 0, f"{cmd} exited {r.returncode}: {r.stderr}"
    return r


def _produce(bootstrap: str, topic: str, records: list[dict], conf: dict | None = None, one_batch_each=True):
    p = producer(bootstrap, {"linger.ms": 0, **(conf or {})})
    for r in records:
        p.produce(topic, **r)
        if one_batch_each:
            flush_all(p)
    flush_all(p)


def test_kafka_log_dirs_describes_sizes_per_partition(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "ld", partitions=2)
    create_topic(broker.bootstrap, "other")
    _produce(broker.bootstrap, "ld", [{"value": b"x" * 100, "partition": 0} for _ in range(10)])
    r = run([bin_dir / "kafka-log-dirs.sh", "--describe", "--bootstrap-server", broker.bootstrap,
             "--topic-list", "ld"], tool_env)
    lines = r.stdout.splitlines()
    assert lines[:2] == ["Querying brokers for log directories information",
                         "Received log directory information from brokers 1"]
    assert len(lines) == 3
    assert lines[2].startswith('{"brokers":[{"broker":1,"logDirs":[{"logDir":'), lines[2]
    doc = json.loads(lines[2])
    assert doc["version"] == 1
    (b,) = doc["brokers"]
    (d,) = b["logDirs"]
    assert d["logDir"] == str(broker.data_dir) and d["error"] is None
    size0 = sum(f.stat().st_size for f in (broker.data_dir / "ld-0").glob("*.log"))
    assert size0 > 1000
    assert sorted(d["partitions"], key=lambda p: p["partition"]) == [
        {"partition": "ld-0", "size": size0, "offsetLag": 0, "isFuture": False},
        {"partition": "ld-1", "size": 0, "offsetLag": 0, "isFuture": False},
    ]
    # without --topic-list every partition is listed
    r = run([bin_dir / "kafka-log-dirs.sh", "--describe", "--bootstrap-server", broker.bootstrap], tool_env)
    names = {p["partition"] for p in json.loads(r.stdout.splitlines()[2])["brokers"][0]["logDirs"][0]["partitions"]}
    assert {"ld-0", "ld-1", "other-0"} <= names

    r = run([bin_dir / "kafka-log-dirs.sh", "--describe", "--bootstrap-server", broker.bootstrap,
             "--broker-list", "1,7"], tool_env, ok=False)
    assert r.returncode != 0
    assert r.stderr.strip() == ("ERROR: The given brokers do not exist from --broker-list: 7. "
                                "Current existent brokers: 1")

    # potok log-dirs: the same sizes, and the file system's total and usable bytes
    r = run(["potok", "log-dirs", "--bootstrap-server", broker.bootstrap, "--topic", "ld"], tool_env)
    rows = [l.split() for l in r.stdout.splitlines()]
    assert rows[0] == ["BROKER", "LOG-DIR", "TOPIC", "PARTITION", "SIZE", "OFFSET-LAG"]
    assert rows[1:3] == [["1", str(broker.data_dir), "ld", "0", str(size0), "0"],
                         ["1", str(broker.data_dir), "ld", "1", "0", "0"]]
    m = re.fullmatch(rf"broker 1 log dir {re.escape(str(broker.data_dir))}: (\d+) of (\d+) bytes usable",
                     r.stdout.splitlines()[3])
    assert m, r.stdout
    st = os.statvfs(broker.data_dir)
    assert int(m.group(2)) == st.f_blocks * st.f_frsize
    assert 0 < int(m.group(1)) <= int(m.group(2))


def test_kafka_get_offsets(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "go", partitions=2)
    create_topic(broker.bootstrap, "go-other")
    _produce(broker.bootstrap, "go", [{"value": b"a%d" % i, "partition": 0, "timestamp": 1000 + i} for i in range(10)])
    # partition 1: the largest timestamp is not the last record (KIP-734's -3)
    _produce(broker.bootstrap, "go", [{"value": b"b%d" % i, "partition": 1, "timestamp": ts}
                                      for i, ts in enumerate([2000, 2005, 2001, 2002])])

    def offsets(*flags):
        return run([bin_dir / "kafka-get-offsets.sh", "--bootstrap-server", broker.bootstrap, *flags],
                   tool_env).stdout.splitlines()

    assert offsets("--topic", "go") == ["go:0:10", "go:1:4"]
    assert offsets("--topic", "go", "--time", "-1") == ["go:0:10", "go:1:4"]
    assert offsets("--topic", "go", "--time", "earliest") == ["go:0:0", "go:1:0"]
    assert offsets("--topic", "go", "--time", "-3") == ["go:0:9", "go:1:1"]
    assert offsets("--topic", "go", "--time", "1005") == ["go:0:5", "go:1:0"]
    assert offsets("--topic", "go", "--time", "2003") == ["go:1:1"]
    assert offsets("--topic", "go", "--time", "9999") == []
    assert offsets("--topic", "go", "--partitions", "1") == ["go:1:4"]
    # --topic is a regular expression over whole names
    assert offsets("--topic", "go.*", "--time", "-2") == ["go:0:0", "go:1:0", "go-other:0:0"]

    # DeleteRecords moves what earliest answers
    a = admin(broker.bootstrap)
    a.delete_records([TopicPartition("go", 0, 6)])[TopicPartition("go", 0, 6)].result(timeout=30)
    assert offsets("--topic", "go", "--time", "-2") == ["go:0:6", "go:1:0"]
    # ... and a timestamp before every record finds the first record at or after it
    assert offsets("--topic", "go", "--partitions", "0", "--time", "1000") == ["go:0:6"]

    r = run([bin_dir / "kafka-get-offsets.sh", "--bootstrap-server", broker.bootstrap, "--topic", "nope"],
            tool_env, ok=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "Error occurred: Could not match any topic-partitions with the specified filters"
    r = run([bin_dir / "kafka-get-offsets.sh", "--bootstrap-server", broker.bootstrap, "--time", "soon"],
            tool_env, ok=False)
    assert r.returncode == 1 and r.stderr.startswith("Error occurred: Malformed time argument soon.")


BATCH = re.compile(
    r"baseOffset: (?P<base>\d+) lastOffset: (?P<last>\d+) count: (?P<count>\d+) baseSequence: (?P<bseq>-?\d+) "
    r"lastSequence: (?P<lseq>-?\d+) producerId: (?P<pid>-?\d+) producerEpoch: (?P<epoch>-?\d+) "
    r"partitionLeaderEpoch: 0 isTransactional: false isControl: false deleteHorizonMs: OptionalLong.empty "
    r"position: (?P<pos>\d+) CreateTime: (?P<ts>\d+) size: (?P<size>\d+) magic: 2 "
    r"compresscodec: (?P<codec>\w+) crc: (?P<crc>\d+) isvalid: true$")
RECORD = re.compile(
    r"\| offset: (?P<offset>\d+) CreateTime: (?P<ts>\d+) keySize: (?P<ks>-?\d+) valueSize: (?P<vs>-?\d+) "
    r"sequence: (?P<seq>-?\d+) headerKeys: \[(?P<hk>[^\]]*)\](?: key: (?P<key>\S*))?(?: payload: (?P<payload>.*))?$")


def _dump(bin_dir, tool_env, *args) -> list[str]:
    return run([bin_dir / "kafka-dump-log.sh", *args], tool_env).stdout.splitlines()


def test_kafka_dump_log_prints_every_batch_and_record(broker, bin_dir, tool_env):
    topic = "dump"
    create_topic(broker.bootstrap, topic, partitions=2, config={"index.interval.bytes": "100"})
    plain = [{"key": b"k%d" % i, "value": b"value-%d" % i, "partition": 0, "timestamp": 1_700_000_000_000 + i,
              "headers": [("h", b"1"), ("h", b"2"), ("other", None)]} for i in range(20)]
    plain.append({"key": None, "value": b"no key", "partition": 0, "timestamp": 1_700_000_000_100})
    _produce(broker.bootstrap, topic, plain, {"enable.idempotence": True})
    # librdkafka sends a batch uncompressed when gzip does not make it smaller
    # (a lone tiny record on a loaded machine): values that always shrink.
    compressed = [{"key": b"c%d" % i, "value": b"zz-%d-" % i + b"z" * 200, "partition": 1,
                   "timestamp": 1_700_000_001_000 + i} for i in range(30)]
    _produce(broker.bootstrap, topic, compressed, {"compression.type": "gzip", "linger.ms": 50},
             one_batch_each=False)
    broker.stop()  # a clean shutdown finishes the time index

    seg0 = broker.data_dir / f"{topic}-0" / "00000000000000000000.log"
    lines = _dump(bin_dir, tool_env, "--files", seg0, "--print-data-log")
    assert lines[:2] == [f"Dumping {seg0}", "Log starting offset: 0"]
    batches, records = [], []
    for line in lines[2:]:
        if line.startswith("|"):
            m = RECORD.match(line)
            assert m, line
            records.append(m)
        else:
            m = BATCH.match(line)
            assert m, line
            batches.append(m)
    assert len(batches) == len(plain) and len(records) == len(plain)
    position = 0
    for i, (b, r, sent) in enumerate(zip(batches, records, plain)):
        assert (int(b["base"]), int(b["last"]), int(b["count"])) == (i, i, 1)
        assert int(b["pos"]) == position
        position += int(b["size"])
        # idempotent producer: sequences follow the offsets
        assert int(b["pid"]) >= 0 and int(b["bseq"]) == i == int(b["lseq"])
        assert b["codec"] == "none" and int(b["ts"]) == sent["timestamp"]
        assert int(r["offset"]) == i and int(r["ts"]) == sent["timestamp"] and int(r["seq"]) == i
        assert int(r["ks"]) == (len(sent["key"]) if sent["key"] is not None else -1)
        assert int(r["vs"]) == len(sent["value"])
        assert r["hk"] == ("h,h,other" if "headers" in sent else "")
        assert r["key"] == (sent["key"].decode() if sent["key"] is not None else None)
        assert r["payload"] == sent["value"].decode()
    assert position == seg0.stat().st_size

    # --deep-iteration without --print-data-log: metadata only
    deep = _dump(bin_dir, tool_env, "--files", seg0, "--deep-iteration")
    assert [l for l in deep if l.startswith("|")][0] == (
        f"| offset: 0 CreateTime: {plain[0]['timestamp']} keySize: 2 valueSize: 7 sequence: 0 headerKeys: [h,h,other]")
    # shallow: batches only
    assert [l for l in _dump(bin_dir, tool_env, "--files", seg0) if l.startswith("|")] == []

    seg1 = broker.data_dir / f"{topic}-1" / "00000000000000000000.log"
    lines = _dump(bin_dir, tool_env, "--files", seg1, "--print-data-log")
    got = [RECORD.match(l) for l in lines if l.startswith("|")]
    batch_lines = [BATCH.match(l) for l in lines[2:] if not l.startswith("|")]
    assert all(batch_lines) and {b["codec"] for b in batch_lines} == {"gzip"}
    assert sum(int(b["count"]) for b in batch_lines) == len(compressed)
    assert [(int(m["offset"]), m["key"], m["payload"]) for m in got] == [
        (i, s["key"].decode(), s["value"].decode()) for i, s in enumerate(compressed)]

    # the offset index: every entry names a batch's last offset and position
    index = seg0.with_suffix(".index")
    entries = _dump(bin_dir, tool_env, "--files", index)
    assert entries[0] == f"Dumping {index}"
    by_position = {int(b["pos"]): int(b["last"]) for b in batches}
    pairs = [re.fullmatch(r"offset: (\d+) position: (\d+)", l) for l in entries[1:]]
    assert pairs and all(pairs), entries
    for m in pairs:
        assert by_position[int(m.group(2))] == int(m.group(1))
    assert _dump(bin_dir, tool_env, "--files", index, "--index-sanity-check") == [
        f"Dumping {index}", f"{index} passed sanity check."]

    timeindex = seg0.with_suffix(".timeindex")
    entries = _dump(bin_dir, tool_env, "--files", timeindex)
    times = [re.fullmatch(r"timestamp: (\d+) offset: (\d+)", l) for l in entries[1:]]
    assert times and all(times), entries
    for m in times:
        assert int(m.group(1)) == plain[int(m.group(2))]["timestamp"]

    # a torn index fails Kafka's sanity check
    with open(index, "ab") as f:
        f.write(b"\x00\x01\x02")
    r = run([bin_dir / "kafka-dump-log.sh", "--files", index, "--index-sanity-check"], tool_env, ok=False)
    assert r.returncode == 1
    assert "is corrupt, found" in r.stderr and "neither positive nor a multiple of 8" in r.stderr

    # trailing garbage in a log is reported as Kafka does
    with open(seg0, "ab") as f:
        f.write(b"\x00" * 7)
    lines = _dump(bin_dir, tool_env, "--files", seg0)
    assert lines[-1] == f"Found 7 invalid bytes at the end of {seg0.name}"
