"""End-to-end harness: starts real `potok server` processes on 127.0.0.1.

Fixtures:
  broker          a fresh broker (own data dir, free port); configure it with
                  @pytest.mark.broker_config(**{"kafka.config.name": "value"})
  broker_factory  make(port=None, overrides=None, name=None) -> Broker, for more
                  brokers or fixed ports; all are stopped at teardown
  cluster_factory make(size=3, **kwargs) -> cluster_harness.Cluster: N nodes from generated
                  KRaft properties, broker-to-broker links through a proxy the test cuts
                  (see cluster_harness.py); all stopped at teardown
  bin_dir         <repo>/bin (Kafka-style scripts)
  tool_env        environment for tools/scripts (POTOK_BIN set, potok on PATH)

On a failing test the tail of every broker log is attached to the report.
The peak RSS (VmHWM) and the open file descriptors of every broker (counted when the
harness stops it) are logged and summarised at the end.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# absolute: brokers run with their work dir as cwd, so a relative POTOK_BIN would not resolve
POTOK_BIN = Path(os.environ.get("POTOK_BIN", REPO / "target" / "release" / "potok")).resolve()
HOST = "127.0.0.1"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BACKTRACE_FRAME = re.compile(r"^\s+(\d+: |at )")
_FATAL = re.compile(r"panicked at|memory allocation of|fatal|SIGSEGV|stack overflow", re.I)

# (test nodeid, broker name, peak RSS kB) for the session summary
_PEAK_RSS: list[tuple[str, str, int]] = []
# (test nodeid, broker name, open fds when stopped) for the session summary
_OPEN_FDS: list[tuple[str, str, int]] = []


# Test ports come from below the kernel's ephemeral range (32768-60999): a port the OS
# picked and we closed again can be handed to any outgoing connection before the broker
# binds it. Each port is reserved for this process's lifetime by an flock on a file in
# PORT_LOCK_DIR (shared with the Rust tests), so parallel test runs never pick the same one.
PORT_RANGE = range(10000, 32000)
PORT_LOCK_DIR = Path(os.environ.get("POTOK_TEST_PORT_LOCKS", "/tmp/potok-test-ports"))
_port_locks: list = []  # open lock files: the reservations last as long as the process
_next_port = PORT_RANGE.start + (os.getpid() * 7919) % len(PORT_RANGE)


def free_port() -> int:
    """A port below the ephemeral range, free now and reserved for this test process."""
    global _next_port
    PORT_LOCK_DIR.mkdir(parents=True, exist_ok=True)
    for _ in range(len(PORT_RANGE)):
        port = _next_port
        _next_port = port + 1 if port + 1 < PORT_RANGE.stop else PORT_RANGE.start
        f = open(PORT_LOCK_DIR / f"{port}.lock", "a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        if port_is_free(port):
            _port_locks.append(f)
            return port
        f.close()
    raise RuntimeError(f"no free test port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    # also nothing listening on another local address (e.g. 0.0.0.0 / ::)
    try:
        with socket.create_connection(("localhost", port), timeout=0.5):
            return False
    except OSError:
        return True


def _proc_status(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Broker:
    """One `potok server` process with its own data dir and log file."""

    def __init__(self, workdir: Path, port: int, overrides: dict[str, str] | None = None,
                 config_file: Path | None = None, name: str = "broker", owner: str = ""):
        self.name = name
        self.owner = owner
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.port = port
        self.bootstrap = f"{HOST}:{port}"
        self.config_file = config_file
        self.overrides = {
            "listeners": f"PLAINTEXT://{HOST}:{port}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
            "log.dirs": str(self.data_dir),
            "node.id": "1",
        }
        self.overrides.update({k: str(v) for k, v in (overrides or {}).items()})
        self.proc: subprocess.Popen | None = None
        self.peak_rss_kb: list[int] = []
        self.starts = 0
        self.expected_down = True  # False while the harness expects the process to run

    # -- lifecycle ------------------------------------------------------------------
    def command(self) -> list[str]:
        cmd = [str(POTOK_BIN), "server"]
        if self.config_file is not None:
            cmd.append(str(self.config_file))
        for k, v in self.overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd

    def start(self) -> "Broker":
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        if not POTOK_BIN.exists():
            pytest.fail(f"broker binary {POTOK_BIN} not found (build it: cargo build --release)")
        self.starts += 1
        self.expected_down = False
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n[harness] start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                         start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                self.expected_down = True  # reported here, not again at teardown
                pytest.fail(f"{self.name} exited with code {self.proc.returncode} during startup; "
                            f"log tail:\n{self.tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.expected_down = True
                self._kill()
                pytest.fail(f"{self.name} did not accept connections on {self.bootstrap} within "
                            f"{START_TIMEOUT_S}s; log tail:\n{self.tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_kb(self) -> int:
        """Current resident set size (VmRSS) in kB."""
        assert self.alive(), f"{self.name} is not running"
        v = _proc_status(self.proc.pid, "VmRSS")
        assert v is not None
        return v

    def _record_peak(self) -> None:
        if not self.alive():
            return
        hwm = _proc_status(self.proc.pid, "VmHWM")
        if hwm is None:
            return
        self.peak_rss_kb.append(hwm)
        _PEAK_RSS.append((self.owner, self.name, hwm))
        self._log_line(f"peak RSS (VmHWM) {hwm} kB")
        try:
            fds = len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return
        _OPEN_FDS.append((self.owner, self.name, fds))
        self._log_line(f"open file descriptors {fds}")

    def _log_line(self, text: str) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"[harness] {text}\n".encode())

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; returns the exit code. Fails if the broker does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.expected_down = True
        self._record_peak()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill()
            pytest.fail(f"{self.name} did not exit within {timeout}s of SIGTERM; log tail:\n{self.tail()}")
        self._log_line(f"exited with code {code} after SIGTERM")
        return code

    def kill9(self) -> None:
        """SIGKILL: a crash, nothing gets flushed by the broker."""
        assert self.alive(), f"{self.name} is not running"
        self.expected_down = True
        self._record_peak()
        self._kill()
        self._log_line("killed with SIGKILL")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "Broker":
        """Stop (if running) and start again on the same data dir and port."""
        if self.alive():
            self.stop()
        return self.start()

    def tail(self, n: int = 40) -> str:
        """The last n log lines (colour codes and backtrace frames dropped), preceded by any
        panic / allocation-failure lines from earlier in the log."""
        try:
            text = _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"
        lines = [l for l in text.splitlines() if not _BACKTRACE_FRAME.match(l)]
        last = lines[-n:]
        fatal = [l for l in lines[:-n] if _FATAL.search(l)]
        if fatal:
            last = fatal[-5:] + ["..."] + last
        return "\n".join(last)


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    from e2e_util import close_clients
    close_clients()


@pytest.fixture
def broker_factory(request, tmp_path):
    brokers: list[Broker] = []
    request.node._potok_brokers = brokers

    def make(port: int | None = None, overrides: dict | None = None, name: str | None = None,
             config_file: Path | None = None, start: bool = True) -> Broker:
        name = name or f"broker{len(brokers)}"
        b = Broker(tmp_path / name, port or free_port(), overrides, config_file, name,
                   owner=request.node.nodeid)
        brokers.append(b)
        return b.start() if start else b

    yield make
    from e2e_util import close_clients
    close_clients()  # before the brokers go, so clients don't log reconnect attempts
    crashed = [b for b in brokers if not b.expected_down and b.proc is not None and not b.alive()]
    for b in brokers:
        if b.alive():
            b._record_peak()
            b.proc.send_signal(signal.SIGTERM)
            try:
                b.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                b._kill()
    if crashed:
        pytest.fail("broker process(es) exited on their own during the test: " + "; ".join(
            f"{b.name} exit code {b.proc.returncode}, log tail:\n{b.tail()}" for b in crashed))


@pytest.fixture
def broker(request, broker_factory) -> Broker:
    """A fresh broker; @pytest.mark.broker_config(**overrides) sets Kafka config keys."""
    overrides: dict[str, str] = {}
    for mark in request.node.iter_markers("broker_config"):
        for k, v in mark.kwargs.items():
            overrides.setdefault(k, v)
    return broker_factory(overrides=overrides, name="broker")


@pytest.fixture
def cluster_factory(request, tmp_path):
    from cluster_harness import cluster_fixture
    yield from cluster_fixture(request, tmp_path)


@pytest.fixture
def fsync_fault(tmp_path, monkeypatch):
    """Compiles the shim; returns a function that arms it for a directory (brokers started
    afterwards load it), with the trigger file and the call log."""
    shim = tmp_path / "fail_fsync.so"
    res = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(Path(__file__).parent / "faults" / "fail_fsync.c"), "-ldl"],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot compile the fsync fault shim: {res.stderr.strip()}")
    trigger, calls = tmp_path / "fail-now", tmp_path / "fsync-calls.log"

    def arm(directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("LD_PRELOAD", str(shim))
        monkeypatch.setenv("POTOK_FAIL_FSYNC_DIR", os.path.realpath(directory))
        monkeypatch.setenv("POTOK_FAIL_FSYNC_TRIGGER", str(trigger))
        monkeypatch.setenv("POTOK_FAIL_FSYNC_LOG", str(calls))
        return trigger, calls

    return arm


@pytest.fixture
def bin_dir() -> Path:
    return REPO / "bin"


@pytest.fixture
def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["POTOK_BIN"] = str(POTOK_BIN)
    env["PATH"] = f"{POTOK_BIN.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def pytest_configure(config):
    config.addinivalue_line("markers", "broker_config(**overrides): Kafka config overrides for the broker fixture")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call"):
        for b in getattr(item, "_potok_brokers", []):
            state = "running" if b.alive() else f"exit code {b.proc.returncode if b.proc else None}"
            rep.sections.append((f"{b.name} log tail ({b.log_path}, {state})", b.tail()))


def pytest_terminal_summary(terminalreporter):
    if not _PEAK_RSS:
        return
    tr = terminalreporter
    top = sorted(_PEAK_RSS, key=lambda r: -r[2])
    tr.write_sep("-", "potok broker peak RSS (VmHWM)")
    tr.write_line(f"max {top[0][2] / 1024:.1f} MiB ({top[0][0]} {top[0][1]}); "
                  f"{len(_PEAK_RSS)} broker runs")
    for owner, name, kb in top[:5]:
        tr.write_line(f"  {kb / 1024:8.1f} MiB  {owner} [{name}]")
    if _OPEN_FDS:
        fds = sorted(_OPEN_FDS, key=lambda r: -r[2])
        tr.write_sep("-", "potok broker open file descriptors (at stop)")
        for owner, name, n in fds[:5]:
            tr.write_line(f"  {n:8d}  {owner} [{name}]")
