"""Kafka's performance tools on Potok (issue 7, acceptance test 7):
kafka-producer-perf-test.sh and kafka-consumer-perf-test.sh (and `potok perf`) print
Kafka's summary lines with plausible figures. Counts are checked exactly; rates only
for being positive (speed belongs to the benchmark), and a --throughput limit against
the tool's own records/sec figure."""

from __future__ import annotations

import re
import subprocess

import pytest

from e2e_util import consume_confluent, create_topic, watermarks

PRODUCER_SUMMARY = re.compile(
    r"(?P<n>\d+) records sent, (?P<rate>\d+\.\d{6}) records/sec \((?P<mb>\d+\.\d{2}) MB/sec\), "
    r"(?P<avg>\d+\.\d{2}) ms avg latency, (?P<max>\d+\.\d{2}) ms max latency, (?P<p50>\d+) ms 50th, "
    r"(?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th, (?P<p999>\d+) ms 99\.9th\.$")
PRODUCER_WINDOW = re.compile(
    r"\d+ records sent, \d+\.\d records/sec \(\d+\.\d{2} MB/sec\), \d+\.\d ms avg latency, \d+\.\d ms max latency\.$")
CONSUMER_HEADER = ("start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                   "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}:\d{3}"
CONSUMER_LINE = re.compile(
    rf"(?P<start>{TIME}), (?P<end>{TIME}), (?P<mb>\d+\.\d{{4}}), (?P<mbs>\d+\.\d{{4}}), (?P<n>\d+), "
    r"(?P<ns>\d+\.\d{4}), (?P<rebalance>\d+), (?P<fetch>-?\d+), (?P<fmbs>\d+\.\d{4}), (?P<fns>\d+\.\d{4})$")


def run(cmd, env, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}: {r.stderr}"
    return r


def check_producer_output(stdout: str, n: int) -> re.Match:
    lines = stdout.splitlines()
    assert lines, "no output"
    for line in lines[:-1]:
        assert PRODUCER_WINDOW.match(line), line
    m = PRODUCER_SUMMARY.match(lines[-1])
    assert m, lines[-1]
    assert int(m["n"]) == n
    assert float(m["rate"]) > 0 and float(m["mb"]) >= 0
    assert float(m["avg"]) <= float(m["max"])
    assert int(m["p50"]) <= int(m["p95"]) <= int(m["p99"]) <= int(m["p999"]) <= float(m["max"])
    return m


def test_producer_and_consumer_perf_tests_print_kafkas_summaries(broker, bin_dir, tool_env):
    n = 200_000
    create_topic(broker.bootstrap, "perf")
    r = run([bin_dir / "kafka-producer-perf-test.sh", "--topic", "perf", "--num-records", n, "--record-size", 100,
             "--throughput", -1, "--producer-props", f"bootstrap.servers={broker.bootstrap}", "acks=1",
             "--print-metrics"], tool_env)
    m = check_producer_output(r.stdout, n)
    assert float(m["mb"]) > 0
    assert watermarks(broker.bootstrap, "perf") == (0, n)
    # Kafka's payload: --record-size random upper-case letters
    for msg in consume_confluent(broker.bootstrap, "perf", 0, 5, start_offset=n - 5):
        assert len(msg.value()) == 100 and msg.value().isupper() and msg.value().isalpha() and msg.key() is None

    r = run([bin_dir / "kafka-consumer-perf-test.sh", "--bootstrap-server", broker.bootstrap, "--topic", "perf",
             "--messages", n, "--group", "perf-group", "--timeout", 60_000], tool_env)
    lines = r.stdout.splitlines()
    assert lines[0] == CONSUMER_HEADER
    assert len(lines) == 2, lines
    m = CONSUMER_LINE.match(lines[1])
    assert m, lines[1]
    assert int(m["n"]) == n
    assert abs(float(m["mb"]) - n * 100 / (1024 * 1024)) < 0.001
    assert float(m["mbs"]) > 0 and float(m["ns"]) > 0
    assert m["start"] <= m["end"]


def test_throughput_limit_and_producer_config_file(broker, bin_dir, tool_env, tmp_path):
    create_topic(broker.bootstrap, "perf-throttled")
    config = tmp_path / "producer.properties"
    config.write_text(f"bootstrap.servers={broker.bootstrap}\nacks=all\nlinger.ms=1\n")
    r = run([bin_dir / "kafka-producer-perf-test.sh", "--topic", "perf-throttled", "--num-records", 400,
             "--record-size", 10, "--throughput", 200, "--producer.config", config], tool_env)
    m = check_producer_output(r.stdout, 400)
    # the tool's own figure over its whole run
    assert float(m["rate"]) <= 200 * 1.2, m["rate"]
    assert watermarks(broker.bootstrap, "perf-throttled") == (0, 400)


# The consumer's short --timeout below must not run out while the group forms.
@pytest.mark.broker_config(**{"group.initial.rebalance.delay.ms": "0"})
def test_potok_perf_and_detailed_consumer_stats(broker, tool_env):
    create_topic(broker.bootstrap, "perf-native")
    r = run(["potok", "perf", "produce", "--topic", "perf-native", "--num-records", 1000, "--payload-monotonic",
             "--throughput", -1, "--producer-props", f"bootstrap.servers={broker.bootstrap}"], tool_env)
    check_producer_output(r.stdout, 1000)
    msgs = consume_confluent(broker.bootstrap, "perf-native", 0, 1000)
    assert [m.value() for m in msgs] == [str(i).encode() for i in range(1000)]

    r = run(["potok", "perf", "consume", "--bootstrap-server", broker.bootstrap, "--topic", "perf-native",
             "--messages", 1000, "--show-detailed-stats", "--reporting-interval", 0], tool_env)
    lines = r.stdout.splitlines()
    assert lines[0] == ("time, threadId, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
                        "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec")
    progress = [re.fullmatch(rf"{TIME}, 0, \d+\.\d{{4}}, \d+\.\d{{4}}, (\d+), \d+\.\d{{4}}, \d+, -?\d+, "
                             r"\d+\.\d{4}, \d+\.\d{4}", l) for l in lines[1:]]
    assert progress and all(progress), lines
    counts = [int(p.group(1)) for p in progress]
    assert counts == sorted(counts) and counts[-1] <= 1000

    # too few messages: Kafka's warning after --timeout
    r = run(["potok", "perf", "consume", "--bootstrap-server", broker.bootstrap, "--topic", "perf-native",
             "--messages", 1001, "--timeout", 1000], tool_env)
    assert "WARNING: Exiting before consuming the expected number of messages: timeout (1000 ms) exceeded." in r.stdout
    m = CONSUMER_LINE.match(r.stdout.splitlines()[-1])
    assert m and int(m["n"]) == 1000
