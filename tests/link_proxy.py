"""A loopback TCP proxy with per-pair links that a test cuts and heals (no root needed).

`LinkProxy()` runs the proxy in its own Python process (so the test's client threads never
delay its forwarding) and controls it over a pipe:
  route(target, upstream_port) -> port   listen on an OS-chosen port, forward to 127.0.0.1:upstream_port
  set_pids({name: pid})                  the processes whose connections are told apart
  cut(a, b, reset=False) / heal(a, b) / heal_all() / is_cut(a, b)
  links() -> {frozenset((a, b)): n}      connections being forwarded per pair
  accepted() -> [(source, target)]       every connection so far (source None: not a known process)

A connection's source is the process (of set_pids) that owns the connecting socket, found with a
sock_diag netlink lookup of its 4-tuple (the socket's inode) and the pids' fd tables; with
`sources={"127.0.0.2": "a"}` it is the peer's address instead (the unit tests). The link of a
connection is the pair {source, target}. While a link is cut no byte passes in either direction
on any of its connections: the proxy stops forwarding (what it already read is held) and new
connections wait before being forwarded, as with a network that drops packets (TCP buffers
fill, peers time out); `heal` lets the held bytes through, in order. `reset=True` also closes the
link's open connections, as a firewall that rejects. Connections of an unknown source, and of a
process to itself, are never cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import threading

HOST = "127.0.0.1"


# ---- who owns a loopback connection ------------------------------------------------------
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2


def tcp_socket_inode(local_port: int, remote_port: int, host: str = HOST) -> int | None:
    """The inode of the TCP socket host:local_port -> host:remote_port (a netlink sock_diag
    lookup of exactly that socket; falls back to /proc/net/tcp)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
            addr = socket.inet_aton(host) + bytes(12)
            sockid = struct.pack(">HH", local_port, remote_port) + addr + addr + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
            req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
            nl.send(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0) + req)
            data = nl.recv(65536)
        _, msg_type, _, _, _ = struct.unpack("=IHHII", data[:16])
        if msg_type == _NLMSG_ERROR:
            return None
        # inet_diag_msg: family, state, timer, retrans; sockid (48 bytes); expires, rqueue, wqueue, uid, inode
        return struct.unpack("=I", data[16 + 4 + 48 + 16:16 + 4 + 48 + 20])[0]
    except OSError:
        pass
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if (int(fields[1].rsplit(":", 1)[1], 16) == local_port
                    and int(fields[2].rsplit(":", 1)[1], 16) == remote_port):
                return int(fields[9])
    return None


def socket_owner(local_port: int, remote_port: int, pids: dict[str, int]) -> str | None:
    """Which of `pids` ({name: pid}) holds the socket of the loopback connection from
    local_port to remote_port (None if none of them does)."""
    inode = tcp_socket_inode(local_port, remote_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for name, pid in pids.items():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return name
            except OSError:
                continue
    return None


# ---- the controlling side ----------------------------------------------------------------
class LinkProxy:
    def __init__(self, sources: dict[str, str] | None = None):
        self._lock = threading.Lock()
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), json.dumps(sources or {})],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ports: dict[str, int] = {}

    def _call(self, op: str, *args):
        with self._lock:
            assert self._proc.poll() is None, f"the link proxy exited with code {self._proc.returncode}"
            self._proc.stdin.write(json.dumps([op, *args]) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        assert line, f"the link proxy exited (code {self._proc.poll()})"
        reply = json.loads(line)
        assert "error" not in reply, f"link proxy {op}: {reply['error']}"
        return reply["ok"]

    def route(self, target: str, upstream_port: int) -> int:
        port = self._call("route", target, upstream_port)
        self.ports[f"{target}->{upstream_port}"] = port
        return port

    def set_pids(self, pids: dict[str, int]) -> int:
        """Sets the known processes; returns how many open connections are still of no known one."""
        return self._call("set_pids", pids)

    def cut(self, a: str, b: str, reset: bool = False) -> None:
        self._call("cut", a, b, reset)

    def heal(self, a: str, b: str) -> None:
        self._call("heal", a, b)

    def heal_all(self) -> None:
        self._call("heal_all")

    def is_cut(self, a: str, b: str) -> bool:
        return self._call("is_cut", a, b)

    def links(self) -> dict[frozenset, int]:
        return {frozenset(pair): n for pair, n in self._call("links")}

    def accepted(self) -> list[tuple[str | None, str]]:
        return [tuple(x) for x in self._call("accepted")]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


# ---- the proxy process -------------------------------------------------------------------
class _Conn:
    """One proxied connection: its ends and, once its source is known, its link."""

    def __init__(self, peer, local_port, target):
        self.peer, self.local_port, self.target = peer, local_port, target
        self.source: str | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.forwarding = False

    @property
    def pair(self) -> frozenset | None:
        if self.source is None or self.source == self.target:
            return None
        return frozenset((self.source, self.target))


class _Proxy:
    def __init__(self, sources: dict[str, str]):
        self.sources = sources
        self.pids: dict[str, int] = {}
        self.cuts: set[frozenset] = set()
        self.gates: dict[frozenset, asyncio.Event] = {}
        self.conns: set[_Conn] = set()
        self.accepted: list[_Conn] = []
        self.servers: list[asyncio.AbstractServer] = []

    def identify(self, conn: _Conn) -> None:
        if self.sources:
            conn.source = self.sources.get(conn.peer[0])
        elif conn.source is None:
            conn.source = socket_owner(conn.peer[1], conn.local_port, self.pids)

    def gate(self, pair: frozenset) -> asyncio.Event:
        g = self.gates.get(pair)
        if g is None:
            g = self.gates[pair] = asyncio.Event()
            if pair not in self.cuts:
                g.set()
        return g

    async def passable(self, conn: _Conn) -> None:
        """Returns once the connection's link is not cut."""
        while conn.pair is not None and not self.gate(conn.pair).is_set():
            await self.gate(conn.pair).wait()

    # commands
    async def route(self, target, upstream_port):
        server = await asyncio.start_server(lambda r, w: self.serve(r, w, target, upstream_port), HOST, 0)
        self.servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def set_pids(self, pids):
        # a node's first connections can come before the test knows its pid: known now
        self.pids = {k: int(v) for k, v in pids.items()}
        for conn in list(self.conns):
            if conn.source is None:
                self.identify(conn)
        return sum(1 for c in self.conns if c.source is None)

    async def cut(self, a, b, reset):
        pair = frozenset((a, b))
        self.cuts.add(pair)
        self.gate(pair).clear()
        if reset:
            for conn in [c for c in self.conns if c.pair == pair]:
                for w in conn.writers:
                    w.transport.abort()

    async def heal(self, a, b):
        pair = frozenset((a, b))
        self.cuts.discard(pair)
        self.gate(pair).set()

    async def heal_all(self):
        for pair in list(self.cuts):
            self.gate(pair).set()
        self.cuts.clear()

    async def is_cut(self, a, b):
        return frozenset((a, b)) in self.cuts

    async def links(self):
        counts: dict[frozenset, int] = {}
        for c in self.conns:
            if c.forwarding and c.pair is not None:
                counts[c.pair] = counts.get(c.pair, 0) + 1
        return [[sorted(pair), n] for pair, n in counts.items()]

    async def get_accepted(self):
        return [[c.source, c.target] for c in self.accepted]

    # forwarding
    async def serve(self, reader, writer, target, upstream_port):
        conn = _Conn(writer.get_extra_info("peername")[:2], writer.get_extra_info("sockname")[1], target)
        conn.writers.append(writer)
        self.identify(conn)
        self.accepted.append(conn)
        self.conns.add(conn)
        try:
            await self.passable(conn)
            up_reader, up_writer = await asyncio.open_connection(HOST, upstream_port)
            conn.writers.append(up_writer)
            conn.forwarding = True
            await asyncio.gather(self.pump(reader, up_writer, conn), self.pump(up_reader, writer, conn))
        except OSError:
            pass
        finally:
            conn.forwarding = False
            self.conns.discard(conn)
            for w in conn.writers:
                w.transport.abort()

    async def pump(self, reader, writer, conn):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self.passable(conn)  # cut: hold what was read, pass nothing
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.transport.abort()  # either side closing ends the whole connection


def _child_main(sources: dict[str, str]) -> None:
    loop = asyncio.new_event_loop()
    proxy = _Proxy(sources)
    ops = {"route": proxy.route, "set_pids": proxy.set_pids, "cut": proxy.cut, "heal": proxy.heal,
           "heal_all": proxy.heal_all, "is_cut": proxy.is_cut, "links": proxy.links,
           "accepted": proxy.get_accepted}

    def commands():
        for line in sys.stdin:
            op, *args = json.loads(line)
            try:
                reply = {"ok": asyncio.run_coroutine_threadsafe(ops[op](*args), loop).result()}
            except Exception as e:  # noqa: BLE001 - reported to the controlling test
                reply = {"error": f"{type(e).__name__}: {e}"}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
        loop.call_soon_threadsafe(loop.stop)  # stdin closed: the test is done

    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    _child_main(json.loads(sys.argv[1]))
