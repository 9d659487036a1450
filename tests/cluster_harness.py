"""Multi-node harness: a Potok cluster of N `potok server` processes on 127.0.0.1.

    def test_x(cluster_factory):
        c = cluster_factory(3)              # 3 combined broker+controller nodes, started, ready
        c = cluster_factory(3, voters=1, roles={1: "controller"})  # a controller-only node, 2 brokers
        c.create_topic("t", partitions=6, replication_factor=3, config={"min.insync.replicas": "2"})
        leader = c.leader("t", 0)
        c.node(leader).kill9(); c.wait_for_leader("t", 0, not_in={leader}); c.node(leader).start()
        c.isolate(2); ...; c.heal_all()     # broker-to-broker network partitions

Each node runs from a generated server.properties (Kafka's KRaft settings) with three listeners
on test ports (conftest.free_port): PLAINTEXT (clients, reached directly), REPLICATION (the inter-broker
listener) and CONTROLLER (the quorum and controller requests). The REPLICATION listener is
advertised, and every voter of controller.quorum.voters is given, at a port of a loopback TCP
proxy (`link_proxy.LinkProxy`, its own process) that the test controls, so all broker-to-broker and
controller traffic runs through it and can be cut per pair of nodes without root. The proxy tells
which node opened a connection by the process owning the connecting socket, so it needs no help
from the broker.

Nodes are `conftest.Broker`s (stop = SIGTERM and wait, kill9, restart, log tails on failure) with
pause (SIGSTOP) and resume (SIGCONT) added. `Cluster.wait_ready` polls Metadata (v7, raw frames)
on every running node until each lists the expected brokers and a controller, within a bound.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

import pytest

import kafkawire as kw
from conftest import HOST, POTOK_BIN, STOP_TIMEOUT_S, Broker, free_port
from link_proxy import LinkProxy

READY_TIMEOUT_S = 60.0
# How long a node gets to exit after SIGTERM at teardown before it is killed: controlled
# shutdown can wait for a controller that the test has taken away.
TEARDOWN_STOP_S = 15.0


def wait_for(what: str, check: Callable[[], object], timeout: float = READY_TIMEOUT_S,
             interval: float = 0.2):
    """Poll check() until it returns a true value (returned) or timeout: then fail with the
    last value or error it gave."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            got = check()
            if got:
                return got
            last = got
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


# ---- nodes -------------------------------------------------------------------------------
class Node(Broker):
    """One cluster node: a Broker run from its generated properties, plus SIGSTOP/SIGCONT."""

    def __init__(self, cluster: "Cluster", node_id: int, workdir: Path, owner: str):
        self.cluster = cluster
        self.node_id = node_id
        self.client_port = free_port()
        self.replication_port = free_port()
        self.controller_port = free_port()
        # A controller-only node has no client listener: start() waits for its controller one.
        super().__init__(workdir, self.controller_port if not self.is_broker else self.client_port, None,
                         workdir / "server.properties", name=f"node{node_id}", owner=owner)
        self.overrides = {}  # everything is in server.properties
        self.paused = False

    @property
    def role(self) -> str:
        """process.roles: the cluster's `roles` entry, else combined for a voter, broker otherwise."""
        c = self.cluster
        return c.roles.get(self.node_id) or ("broker,controller" if self.node_id in c.voter_ids else "broker")

    @property
    def is_broker(self) -> bool:
        return "broker" in self.role.split(",")

    def properties(self) -> dict[str, str]:
        c = self.cluster
        if not self.is_broker:
            props = {
                "process.roles": self.role,
                "node.id": str(self.node_id),
                "controller.quorum.voters": c.voters(),
                "listeners": f"CONTROLLER://{HOST}:{self.controller_port}",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT",
                "log.dirs": str(self.data_dir),
            }
            props.update(c.overrides)
            props.update(c.node_overrides.get(self.node_id, {}))
            return props
        props = {
            "process.roles": self.role,
            "node.id": str(self.node_id),
            # A broker-only node may name only the controllers' addresses (KIP-853).
            **({"controller.quorum.bootstrap.servers": c.voters(with_ids=False)} if self.node_id in c.bootstrap_ids
               else {"controller.quorum.voters": c.voters()}),
            "listeners": ",".join(
                [f"PLAINTEXT://{HOST}:{self.client_port}", f"REPLICATION://{HOST}:{self.replication_port}"]
                + ([f"CONTROLLER://{HOST}:{self.controller_port}"] if self.node_id in c.voter_ids else [])),
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self.client_port},"
                                    f"REPLICATION://{HOST}:{c.advertised_replication_port(self)}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,REPLICATION:PLAINTEXT",
            "inter.broker.listener.name": "REPLICATION",
            "log.dirs": str(self.data_dir),
            "group.initial.rebalance.delay.ms": "0",
        }
        props.update(c.overrides)
        props.update(c.node_overrides.get(self.node_id, {}))
        return props

    def start(self) -> "Node":
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        self.paused = False
        super().start()
        self.cluster.node_started()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def state(self) -> str:
        """The process state letter of /proc/PID/stat (R, S, T for stopped, Z, ...)."""
        with open(f"/proc/{self.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]

    def _signal_until(self, sig: int, stopped: bool) -> None:
        # signals are delivered asynchronously: return once the state shows it
        self.proc.send_signal(sig)
        deadline = time.monotonic() + 10
        while (self.state() == "T") != stopped:
            assert time.monotonic() < deadline, f"{self.name} did not {'stop' if stopped else 'continue'}"
            time.sleep(0.01)

    def pause(self) -> None:
        """SIGSTOP: the process freezes (a long GC pause, a stalled VM), sockets stay open."""
        assert self.alive(), f"{self.name} is not running"
        self._signal_until(signal.SIGSTOP, True)
        self.paused = True
        self._log_line("paused with SIGSTOP")

    def resume(self) -> None:
        """SIGCONT after pause()."""
        assert self.alive(), f"{self.name} is not running"
        self._signal_until(signal.SIGCONT, False)
        self.paused = False
        self._log_line("resumed with SIGCONT")

    def kill9(self) -> None:
        super().kill9()
        self.paused = False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        if self.paused and self.alive():
            self.resume()
        return super().stop(timeout)

    def metadata(self, topics: list[str] | None = None, timeout: float = 5.0) -> kw.MetadataV7:
        """Metadata v7 from this node's client listener."""
        with kw.Connection(self.bootstrap, timeout=timeout) as conn:
            return kw.MetadataV7(conn.request(kw.API_METADATA, 7, kw.metadata_v7_body(topics)))


# ---- the cluster -------------------------------------------------------------------------
class Cluster:
    """N nodes, the first `voters` of them controllers (default: all, at most 3); `roles`
    gives a node's process.roles ("controller": controller-only, "broker": broker-only)."""

    def __init__(self, workdir: Path, size: int = 3, voters: int | None = None,
                 overrides: dict | None = None, node_overrides: dict[int, dict] | None = None,
                 proxy: bool = True, owner: str = "", roles: dict[int, str] | None = None,
                 bootstrap_ids: Iterable[int] = ()):
        self.workdir = workdir
        self.voter_ids = list(range(1, (voters or min(size, 3)) + 1))
        self.roles = dict(roles or {})
        # Broker-only nodes given controller.quorum.bootstrap.servers instead of the voters.
        self.bootstrap_ids = set(bootstrap_ids)
        self.overrides = {k: str(v) for k, v in (overrides or {}).items()}
        self.node_overrides = {i: {k: str(v) for k, v in o.items()} for i, o in (node_overrides or {}).items()}
        self.nodes: dict[int, Node] = {
            i: Node(self, i, workdir / f"node{i}", owner) for i in range(1, size + 1)}
        self.proxy = LinkProxy() if proxy else None
        self._replication_proxy: dict[int, int] = {}
        self._controller_proxy: dict[int, int] = {}
        if self.proxy is not None:
            for i, n in self.nodes.items():
                if n.is_broker:
                    self._replication_proxy[i] = self.proxy.route(n.name, n.replication_port)
                if i in self.voter_ids:
                    self._controller_proxy[i] = self.proxy.route(n.name, n.controller_port)

    # -- addresses ------------------------------------------------------------------------
    def voters(self, with_ids: bool = True) -> str:
        return ",".join(f"{f'{i}@' if with_ids else ''}{HOST}:{self._controller_proxy.get(i, self.nodes[i].controller_port)}"
                        for i in self.voter_ids)

    def advertised_replication_port(self, node: Node) -> int:
        return self._replication_proxy.get(node.node_id, node.replication_port)

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes.values() if n.is_broker)

    def running_bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.running_brokers())

    @property
    def controllers(self) -> str:
        """The voters' controller listeners, for --bootstrap-controller."""
        return ",".join(f"{HOST}:{self.nodes[i].controller_port}" for i in self.voter_ids)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def running(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive() and not n.paused]

    def running_brokers(self) -> list[Node]:
        """The running nodes with the broker role (those that answer Metadata)."""
        return [n for n in self.running() if n.is_broker]

    def _client_controller_ids(self) -> set[int]:
        """The ids Metadata may give as controller: a voter that is a broker, or, while a
        controller-only voter may be active, any broker (Kafka's brokers then name a random one)."""
        ids = set(self.voter_ids)
        if any(not self.nodes[i].is_broker for i in self.voter_ids):
            ids |= {i for i, n in self.nodes.items() if n.is_broker}
        return ids

    def node_started(self) -> None:
        """Tells the proxy the nodes' current pids (it tells connections apart by them)."""
        if self.proxy is not None:
            self.proxy.set_pids({n.name: n.proc.pid for n in self.nodes.values() if n.alive()})

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = READY_TIMEOUT_S) -> "Cluster":
        for n in self.nodes.values():
            n.start()
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def stop_all(self, timeout: float = TEARDOWN_STOP_S) -> None:
        """SIGTERM every running node at once, SIGKILL those still running after `timeout`."""
        if self.proxy is not None:
            self.proxy.heal_all()
        live = [n for n in self.nodes.values() if n.alive()]
        for n in live:
            if n.paused:
                n.resume()
            n.expected_down = True
            n._record_peak()
            n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for n in live:
            try:
                code = n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                n._log_line(f"exited with code {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                n._kill()
                n._log_line(f"still running {timeout}s after SIGTERM at teardown: killed")

    def close(self) -> None:
        self.stop_all()
        if self.proxy is not None:
            self.proxy.close()

    # -- partitions of the network between brokers -----------------------------------------
    def cut(self, a: int, b: int, reset: bool = False) -> None:
        self._need_proxy().cut(self.nodes[a].name, self.nodes[b].name, reset)

    def heal(self, a: int, b: int) -> None:
        self._need_proxy().heal(self.nodes[a].name, self.nodes[b].name)

    def isolate(self, a: int, reset: bool = False) -> None:
        """Cut node a off from every other node (clients still reach it)."""
        for b in self.nodes:
            if b != a:
                self.cut(a, b, reset)

    def heal_all(self) -> None:
        self._need_proxy().heal_all()

    def _need_proxy(self) -> LinkProxy:
        assert self.proxy is not None, "this cluster was made with proxy=False"
        return self.proxy

    # -- metadata ---------------------------------------------------------------------------
    def metadata(self, topics: list[str] | None = None, node: int | None = None) -> kw.MetadataV7:
        """Metadata from `node`, or from the first running node that answers."""
        candidates = [self.nodes[node]] if node is not None else self.running_brokers()
        last: Exception | None = None
        for n in candidates:
            try:
                return n.metadata(topics)
            except (OSError, ValueError, AssertionError) as e:
                last = e
        raise AssertionError(f"no node answered Metadata: {last}")

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = READY_TIMEOUT_S,
                 interval: float = 0.2):
        return wait_for(what, check, timeout, interval)

    def wait_ready(self, nodes: Iterable[int] | None = None, timeout: float = READY_TIMEOUT_S) -> None:
        """Every node in `nodes` (default: the running ones) answers Metadata listing all of
        them as brokers, with an active controller among the voters."""
        ids = sorted(nodes) if nodes is not None else [n.node_id for n in self.running_brokers()]
        controllers = self._client_controller_ids()

        def ready():
            seen = {i: self.nodes[i].metadata() for i in ids}
            assert all(set(ids) <= set(md.brokers) and md.controller_id in controllers
                       for md in seen.values()), \
                "; ".join(f"node {i}: brokers {sorted(md.brokers)} controller {md.controller_id}"
                          for i, md in seen.items())
            return seen
        self.wait_for(f"nodes {ids} to list each other as brokers and a controller", ready, timeout)

    def partitions(self, topic: str, node: int | None = None) -> dict[int, kw.MetadataPartition]:
        err, parts = self.metadata([topic], node).topics[topic]
        assert err == 0, f"Metadata for {topic}: error {err}"
        return parts

    def leader(self, topic: str, partition: int, node: int | None = None) -> int:
        return self.partitions(topic, node)[partition].leader

    def wait_for_leader(self, topic: str, partition: int, not_in: Iterable[int] = (),
                        among: Iterable[int] | None = None, timeout: float = READY_TIMEOUT_S) -> int:
        """The partition's leader once it is a live node outside `not_in`, as every node of
        `among` (default: the running ones) reports it."""
        excluded = set(not_in)
        asked = [self.nodes[i] for i in among] if among is not None else None

        def elected():
            leaders = {n.node_id: n.metadata([topic]).topics[topic][1][partition].leader
                       for n in (asked if asked is not None else self.running_brokers())}
            values = set(leaders.values())
            assert len(values) == 1, f"leaders as each node sees them: {leaders}"
            (leader,) = values
            assert leader >= 0 and leader not in excluded and self.nodes[leader].alive(), \
                f"leaders as each node sees them: {leaders}"
            return leader
        return self.wait_for(f"a leader of {topic}-{partition} outside {sorted(excluded)}", elected, timeout)

    def wait_for_isr(self, topic: str, partition: int, isr: Iterable[int],
                     timeout: float = READY_TIMEOUT_S) -> None:
        want = sorted(isr)
        def isr():
            got = self.partitions(topic)[partition]
            assert sorted(got.isr) == want, got
            return True
        self.wait_for(f"ISR of {topic}-{partition} to be {want}", isr, timeout)

    def active_controller(self, among: Iterable[int] | None = None) -> int:
        """The controller id that every node of `among` (default: the running ones) reports."""
        asked = [self.nodes[i] for i in among] if among is not None else self.running_brokers()
        ids = {n.metadata().controller_id for n in asked}
        assert len(ids) == 1, f"nodes disagree on the active controller: {ids}"
        return ids.pop()

    def wait_for_controller(self, not_in: Iterable[int] = (), timeout: float = READY_TIMEOUT_S) -> int:
        """An active controller outside `not_in` on which every running node agrees."""
        excluded = set(not_in)

        def agreed():
            ids = {n.node_id: n.metadata().controller_id for n in self.running_brokers()}
            assert len(set(ids.values())) == 1, f"controllers as each node sees them: {ids}"
            cid = next(iter(ids.values()))
            assert cid in self.voter_ids and cid not in excluded and self.nodes[cid].alive(), \
                f"controllers as each node sees them: {ids}"
            return cid
        return wait_for(f"an active controller outside {sorted(excluded)}", agreed, timeout)

    def create_topic(self, name: str, partitions: int = 1, replication_factor: int = 3,
                     config: dict | None = None, timeout: float = 30.0) -> dict[int, kw.MetadataPartition]:
        """Create through any node and wait until every running node sees a leader for
        every partition with the whole replica set in sync; returns the partitions."""
        from confluent_kafka.admin import NewTopic
        from e2e_util import admin
        a = admin(self.running_bootstrap())
        fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=replication_factor,
                                       config={k: str(v) for k, v in (config or {}).items()})],
                             request_timeout=timeout)
        fs[name].result(timeout=timeout)

        def settled():
            for n in self.running_brokers():
                err, parts = n.metadata([name]).topics.get(name, (-1, {}))
                assert err == 0 and len(parts) == partitions and all(
                    p.leader >= 0 and sorted(p.isr) == sorted(p.replicas) for p in parts.values()), \
                    f"node {n.node_id}: error {err}, {sorted(parts.values(), key=lambda p: p.index)}"
            return parts
        return self.wait_for(f"topic {name} to have leaders and full ISRs on every node", settled, timeout)


_REFUSAL: list[str | None] = []


def cluster_mode_refusal() -> str | None:
    """Why this potok binary refuses a three-voter quorum (its one-line error), or None once
    it accepts one (then the probe node it started is killed). Asked once per session."""
    if _REFUSAL:
        return _REFUSAL[0]
    import tempfile
    with tempfile.TemporaryDirectory(prefix="potok-probe-") as d:
        ports = [free_port() for _ in range(4)]
        cmd = [str(POTOK_BIN), "server"] + [a for kv in {
            "process.roles": "broker,controller", "node.id": "1",
            "controller.quorum.voters": ",".join(f"{i}@{HOST}:{ports[i]}" for i in (1, 2, 3)),
            "listeners": f"PLAINTEXT://{HOST}:{ports[0]},CONTROLLER://{HOST}:{ports[1]}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{ports[0]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT", "log.dirs": d,
        }.items() for a in ("--override", f"{kv[0]}={kv[1]}")]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            out, _ = proc.communicate(timeout=3)
            lines = [l for l in out.decode(errors="replace").splitlines() if "not supported" in l]
            _REFUSAL.append(lines[0] if proc.returncode != 0 and lines else None)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            _REFUSAL.append(None)
    return _REFUSAL[0]


def require_cluster_mode() -> None:
    """Skip the calling test while the binary refuses multi-voter quorums (before cluster mode)."""
    refusal = cluster_mode_refusal()
    if refusal:
        pytest.skip(f"this potok has no cluster mode yet: {refusal}")


def cluster_fixture(request, tmp_path):
    """The body of conftest's `cluster_factory` fixture: make(size=3, **Cluster kwargs, start=True)."""
    clusters: list[Cluster] = []
    brokers = getattr(request.node, "_potok_brokers", None)
    if brokers is None:
        brokers = request.node._potok_brokers = []

    def make(size: int = 3, start: bool = True, **kwargs) -> Cluster:
        c = Cluster(tmp_path / f"cluster{len(clusters)}", size, owner=request.node.nodeid, **kwargs)
        clusters.append(c)
        brokers.extend(c.nodes.values())
        return c.start() if start else c

    yield make
    from e2e_util import close_clients
    close_clients()
    crashed = [n for c in clusters for n in c.nodes.values()
               if not n.expected_down and n.proc is not None and not n.alive()]
    for c in clusters:
        c.close()
    if crashed:
        pytest.fail("node process(es) exited on their own during the test: " + "; ".join(
            f"{n.name} exit code {n.proc.returncode}, log tail:\n{n.tail()}" for n in crashed))
