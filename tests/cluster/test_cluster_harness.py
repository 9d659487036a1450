"""The cluster fixture itself on a one-node cluster (which main runs today): a node from
generated KRaft properties with PLAINTEXT, REPLICATION and CONTROLLER listeners becomes ready,
serves produce/fetch, and survives the harness's stop / kill -9 / pause / resume / restart."""

from __future__ import annotations

from e2e_util import DeliveryTracker, consume_confluent, producer


def test_one_node_cluster_lifecycle(cluster_factory):
    c = cluster_factory(1)
    n = c.node(1)
    md = n.metadata()
    assert md.brokers == {1: ("127.0.0.1", n.client_port, None)}, md
    assert md.controller_id == 1
    props = n.config_file.read_text()
    assert "inter.broker.listener.name=REPLICATION" in props
    assert f"CONTROLLER://127.0.0.1:{n.controller_port}" in props
    c.create_topic("h", partitions=2, replication_factor=1)

    def write(values):
        p = producer(c.bootstrap, {"enable.idempotence": True, "acks": "all"})
        t = DeliveryTracker()
        for i, v in enumerate(values):
            p.produce("h", value=v.encode(), partition=0, on_delivery=t.callback(i))
        assert p.flush(30) == 0
        assert not t.errors, t.errors
        return [t.ok[i] for i in range(len(values))]

    acks = write(["a", "b"])
    assert [o for _, o in acks] == [0, 1]
    n.pause()
    assert n.state() == "T"
    n.resume()
    assert n.state() != "T"
    n.kill9()
    assert not n.alive()
    n.start()
    c.wait_ready()
    n.restart()
    c.wait_ready()
    write(["c"])
    assert [m.value() for m in consume_confluent(c.bootstrap, "h", 0, 3)] == [b"a", b"b", b"c"]
    n.pause()  # teardown resumes a paused node before stopping it


def test_three_nodes_talk_to_each_other_only_through_the_proxy(cluster_factory):
    """The quorum's connections between three nodes all go through the link proxy and are
    attributed to their pair of nodes (by the nodes' pids); a reset cut of a pair
    closes them and a heal lets them reconnect. Needs: node (the quorum on CONTROLLER)."""
    from cluster_harness import require_cluster_mode, wait_for
    require_cluster_mode()
    c = cluster_factory(3, start=False)
    c.start(wait=False)
    names = {n.name for n in c.nodes.values()}

    def linked():
        links = c.proxy.links()
        assert len(links) >= 2 and all(set(pair) <= names and len(pair) == 2 for pair in links), \
            f"forwarded: {links}; accepted (source, target): {c.proxy.accepted()[-10:]}"
        return links
    links = wait_for("quorum connections between the nodes through the proxy", linked, 30)
    (a, b) = sorted(next(iter(links)))
    ia, ib = int(a[4:]), int(b[4:])
    c.cut(ia, ib, reset=True)
    wait_for(f"{a} and {b}'s connections to close", lambda: frozenset((a, b)) not in c.proxy.links(), 10)
    c.heal(ia, ib)
    wait_for(f"{a} and {b} to reconnect", lambda: frozenset((a, b)) in c.proxy.links(), 30)
