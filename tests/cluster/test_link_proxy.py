"""The loopback proxy that cluster tests cut broker-to-broker links with (link_proxy.LinkProxy):
healed links carry bytes both ways, a cut link carries none (and holds what it read), heal
delivers the held bytes in order, reset closes the link's connections, and other pairs'
links are untouched. Sources are told apart by their loopback address here (127.0.0.2 = a,
127.0.0.3 = b); in a cluster by the process owning the socket (socket_owner)."""

from __future__ import annotations

import os
import socket

import pytest

from link_proxy import LinkProxy, socket_owner, tcp_socket_inode

SOURCES = {"127.0.0.2": "a", "127.0.0.3": "b"}
QUIET_S = 0.5  # how long "nothing arrives" is watched for


@pytest.fixture
def proxy():
    p = LinkProxy(sources=SOURCES)
    yield p
    p.close()


@pytest.fixture
def upstream():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(5)
    yield s
    s.close()


def connect(port: int, source: str) -> socket.socket:
    c = socket.socket()
    c.bind((source, 0))
    c.settimeout(5)
    c.connect(("127.0.0.1", port))
    return c


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"connection closed after {len(buf)}/{n} bytes"
        buf += chunk
    return buf


def nothing_arrives(sock: socket.socket) -> bool:
    sock.settimeout(QUIET_S)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return True
    finally:
        sock.settimeout(5)
    return False  # data, or the connection closed


def test_healed_link_forwards_both_ways(proxy, upstream):
    port = proxy.route("t", upstream.getsockname()[1])
    c = connect(port, "127.0.0.2")
    u, _ = upstream.accept()
    c.sendall(b"ping" * 1000)
    assert recv_exact(u, 4000) == b"ping" * 1000
    u.sendall(b"pong")
    assert recv_exact(c, 4) == b"pong"


def test_cut_passes_nothing_and_heal_delivers_held_bytes_in_order(proxy, upstream):
    port = proxy.route("t", upstream.getsockname()[1])
    ca = connect(port, "127.0.0.2")
    ua, _ = upstream.accept()
    cb = connect(port, "127.0.0.3")
    ub, _ = upstream.accept()
    proxy.cut("a", "t")
    assert proxy.is_cut("t", "a")
    ca.sendall(b"held-1")
    ua.sendall(b"back-1")
    assert nothing_arrives(ua), "bytes from a reached t over a cut link"
    assert nothing_arrives(ca), "bytes from t reached a over a cut link"
    # another pair's link still works
    cb.sendall(b"b-ok")
    assert recv_exact(ub, 4) == b"b-ok"
    ca.sendall(b"held-2")
    proxy.heal("a", "t")
    assert recv_exact(ua, 12) == b"held-1held-2"
    assert recv_exact(ca, 6) == b"back-1"
    ca.sendall(b"after")
    assert recv_exact(ua, 5) == b"after"


def test_new_connection_over_cut_link_is_forwarded_only_after_heal(proxy, upstream):
    port = proxy.route("t", upstream.getsockname()[1])
    proxy.cut("t", "a")
    c = connect(port, "127.0.0.2")
    c.sendall(b"early")
    upstream.settimeout(QUIET_S)
    with pytest.raises(socket.timeout):
        upstream.accept()
    upstream.settimeout(5)
    proxy.heal_all()
    u, _ = upstream.accept()
    assert recv_exact(u, 5) == b"early"


def test_cut_with_reset_closes_the_links_connections(proxy, upstream):
    port = proxy.route("t", upstream.getsockname()[1])
    c = connect(port, "127.0.0.2")
    u, _ = upstream.accept()
    c.sendall(b"x")
    assert recv_exact(u, 1) == b"x"
    proxy.cut("a", "t", reset=True)
    try:
        got = c.recv(1)
    except ConnectionResetError:
        got = b""
    assert got == b"", "the client's connection stayed open after a reset cut"
    u.settimeout(5)
    try:
        got = u.recv(1)
    except ConnectionResetError:
        got = b""
    assert got == b"", "the upstream connection stayed open after a reset cut"


def test_unknown_source_is_never_cut(proxy, upstream):
    port = proxy.route("t", upstream.getsockname()[1])
    proxy.cut("a", "t")
    proxy.cut("b", "t")
    c = connect(port, "127.0.0.4")  # neither a nor b
    u, _ = upstream.accept()
    c.sendall(b"client")
    assert recv_exact(u, 6) == b"client"


def test_socket_owner_finds_the_process_holding_a_connection(upstream):
    c = socket.socket()
    c.connect(upstream.getsockname())
    u, _ = upstream.accept()
    local, remote = c.getsockname()[1], upstream.getsockname()[1]
    assert socket_owner(local, remote, {"other": os.getppid(), "me": os.getpid()}) == "me"
    assert socket_owner(local, remote, {"other": os.getppid()}) is None
    c.close()
    u.close()


def test_tcp_socket_inode_matches_proc_net_tcp(upstream):
    c = socket.socket()
    c.connect(upstream.getsockname())
    u, _ = upstream.accept()
    local, remote = c.getsockname()[1], upstream.getsockname()[1]
    with open("/proc/net/tcp") as f:
        rows = [l.split() for l in list(f)[1:]]
    (inode,) = [int(r[9]) for r in rows
                if int(r[1].rsplit(":", 1)[1], 16) == local and int(r[2].rsplit(":", 1)[1], 16) == remote]
    assert tcp_socket_inode(local, remote) == inode
    c.close()
    u.close()


def test_process_sources_are_told_apart_also_when_the_pid_is_given_late(upstream):
    """By pid (as in a cluster): a connection accepted before set_pids names its process is
    attributed to it once it does, and cutting that link then stops its bytes."""
    p = LinkProxy()
    try:
        port = p.route("t", upstream.getsockname()[1])
        c = connect(port, "127.0.0.1")
        u, _ = upstream.accept()
        assert p.accepted() == [(None, "t")]
        assert p.links() == {}
        assert p.set_pids({"other": os.getppid(), "me": os.getpid()}) == 0
        assert p.links() == {frozenset(("me", "t")): 1}
        p.cut("me", "t")
        c.sendall(b"held")
        assert nothing_arrives(u)
        p.heal("me", "t")
        assert recv_exact(u, 4) == b"held"
    finally:
        p.close()
