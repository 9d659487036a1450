"""Kafka's console tools as a user at a terminal runs them: the console producer
shows Kafka's `>` prompt on a terminal and flushes every typed line when stopped
with Ctrl-C or SIGTERM; the flag spellings of Kafka's tools are accepted."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import termios
import time

import pytest

from conftest import POTOK_BIN
from e2e_util import consume_confluent, create_topic, watermarks

# Failure guards only: each wait normally ends within milliseconds.
GUARD_S = 30.0


class Terminal:
    """A command run on a pseudo-terminal, as from an interactive shell: it is
    the session's foreground process, so the tty's interrupt character signals it."""

    def __init__(self, argv: list[str], env: dict):
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # the child: its stdin/stdout/stderr are the terminal
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = b""
        self.status: int | None = None

    def read_until(self, marker: bytes, after: int) -> None:
        """Reads output until `marker` appears past offset `after` (fails after the guard)."""
        deadline = time.monotonic() + GUARD_S
        while marker not in self.output[after:]:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} on the terminal; output so far: {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                assert chunk, f"terminal closed before {marker!r}; output: {self.output!r}"
                self.output += chunk

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def interrupt_char(self) -> bytes:
        return termios.tcgetattr(self.master)[6][termios.VINTR]

    def wait(self) -> int:
        """Waits for the child to exit (draining its output); returns the wait status."""
        deadline = time.monotonic() + GUARD_S
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.status = status
                break
            assert time.monotonic() < deadline, f"still running after the stop; output: {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:
                    pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(self.master)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_console_producer_on_a_terminal_flushes_every_typed_line_when_stopped(broker, bin_dir, tool_env, stop):
    create_topic(broker.bootstrap, "typed")
    lines = [f"typed line {i} ✓" for i in range(25)]
    term = Terminal([str(bin_dir / "kafka-console-producer.sh"), "--bootstrap-server", broker.bootstrap,
                     "--topic", "typed"], tool_env)
    try:
        term.read_until(b">", 0)  # Kafka's prompt: the tool is ready for a line
        for line in lines:
            mark = len(term.output)
            term.type(line.encode() + b"\r")  # Enter, as a keyboard sends it
            # The echo of the line, then the next prompt: the tool has taken the line.
            term.read_until(line.encode(), mark)
            term.read_until(b">", mark + len(line))
        # At once (well within 100 ms), while the tool lingers (1 s) before sending.
        if stop == "ctrl-c":
            term.type(term.interrupt_char())
        else:
            os.kill(term.pid, signal.SIGTERM)
        status = term.wait()
    finally:
        term.close()
    assert os.WIFEXITED(status), f"killed by signal {os.WTERMSIG(status)} instead of exiting after a flush"
    assert os.WEXITSTATUS(status) == (130 if stop == "ctrl-c" else 143), \
        f"exit code {os.WEXITSTATUS(status)}; output: {term.output!r}"
    got = [m.value().decode() for m in consume_confluent(broker.bootstrap, "typed", 0, len(lines))]
    assert got == lines


def run(cmd: list, env: dict, stdin: bytes = b"", timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True, env=env, timeout=timeout)
    res.out = res.stdout.decode(errors="replace")
    res.err = res.stderr.decode(errors="replace")
    return res


def test_console_producer_prints_no_prompt_when_stdin_is_not_a_terminal(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "piped")
    res = run([bin_dir / "kafka-console-producer.sh", "--bootstrap-server", broker.bootstrap,
               "--topic", "piped"], tool_env, stdin=b"one\ntwo\n")
    assert res.returncode == 0, res.err
    assert res.out == "", f"a prompt or other output on a pipe: {res.out!r}"
    assert [m.value() for m in consume_confluent(broker.bootstrap, "piped", 0, 2)] == [b"one", b"two"]


@pytest.mark.parametrize("acks", ["-1", "all", "1", "0"])
def test_console_producer_takes_kafkas_request_required_acks_values(broker, bin_dir, tool_env, acks):
    create_topic(broker.bootstrap, "acked")
    res = run([bin_dir / "kafka-console-producer.sh", "--bootstrap-server", broker.bootstrap,
               "--topic", "acked", "--request-required-acks", acks], tool_env, stdin=b"a\nb\n")
    assert res.returncode == 0, res.err
    assert [m.value() for m in consume_confluent(broker.bootstrap, "acked", 0, 2)] == [b"a", b"b"]


def test_console_consumer_zookeeper_flag_prints_one_line_and_uses_the_bootstrap_server(broker, bin_dir, tool_env):
    create_topic(broker.bootstrap, "zk")
    ok = run([bin_dir / "kafka-console-producer.sh", "--broker-list", broker.bootstrap, "--topic", "zk"],
             tool_env, stdin=b"x\ny\n")
    assert ok.returncode == 0, ok.err
    res = run([bin_dir / "kafka-console-consumer.sh", "--zookeeper", "localhost:2181",
               "--bootstrap-server", broker.bootstrap, "--topic", "zk", "--from-beginning",
               "--max-messages", "2"], tool_env)
    assert res.returncode == 0, res.err
    assert res.out.splitlines() == ["x", "y"]
    zk = [l for l in (res.out + res.err).splitlines() if "zookeeper" in l.lower()]
    assert zk == [f"Potok needs no ZooKeeper; using bootstrap server {broker.bootstrap}"], zk
    # the same line kafka-topics.sh prints
    topics = run([bin_dir / "kafka-topics.sh", "--list", "--zookeeper", "localhost:2181",
                  "--bootstrap-server", broker.bootstrap], tool_env)
    assert [l for l in topics.err.splitlines() if "zookeeper" in l.lower()] == zk


def test_consume_of_a_partition_the_topic_lacks_fails_naming_it(broker, tool_env):
    create_topic(broker.bootstrap, "three", partitions=3)
    res = run([POTOK_BIN, "consume", "three", "--bootstrap-server", broker.bootstrap,
               "--partition", "7", "--from-beginning"], tool_env)
    assert res.returncode != 0, f"exit 0; stderr: {res.err!r}"
    errors = [l for l in res.err.splitlines() if "partition" in l.lower()]
    assert len(errors) == 1 and "7" in errors[0] and "three" in errors[0] and "does not exist" in errors[0], res.err
    assert "panicked" not in res.err
    assert watermarks(broker.bootstrap, "three", 0) == (0, 0)
