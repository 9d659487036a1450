"""The classic group protocol and committed offsets on raw frames (kafkawire.py):
KIP-394 member ids, generations and leader election, SyncGroup waiting for the
leader, Heartbeat errors, static membership (KIP-345), session expiry, and the
OffsetCommit / OffsetFetch edge cases clients rely on. Each member is its own
TCP connection, so a request that the broker holds back (a JoinGroup waiting for
the others, a follower's SyncGroup) does not block the rest of the test."""

from __future__ import annotations

import select
import time

import pytest

import kafkawire as kw
from e2e_util import create_topic

FAST_JOIN = {"group.initial.rebalance.delay.ms": "0"}


def no_answer_yet(conn: kw.Connection, seconds: float = 0.5) -> bool:
    """True if the broker has sent nothing on `conn` within `seconds` (the request is held)."""
    readable, _, _ = select.select([conn.sock], [], [], seconds)
    return not readable


def join(conn: kw.Connection, group: str, member_id: str = "", version: int = 5, **kw_args) -> kw.JoinResponse:
    r = conn.request(kw.API_JOIN_GROUP, version, kw.join_group_body(group, member_id, version=version, **kw_args))
    return kw.parse_join_group(r, version)


def send_join(conn: kw.Connection, group: str, member_id: str = "", **kw_args) -> int:
    return conn.send(kw.API_JOIN_GROUP, 5, kw.join_group_body(group, member_id, **kw_args))


def recv_join(conn: kw.Connection, cid: int) -> kw.JoinResponse:
    return kw.parse_join_group(conn.recv_response(cid), 5)


def join_v5(conn: kw.Connection, group: str, **kw_args) -> kw.JoinResponse:
    """A new dynamic member on JoinGroup v5: MEMBER_ID_REQUIRED, then the real join."""
    first = join(conn, group, **kw_args)
    assert first.error_code == kw.MEMBER_ID_REQUIRED, first
    resp = join(conn, group, first.member_id, **kw_args)
    assert resp.error_code == kw.NONE, resp
    return resp


def sync(conn: kw.Connection, group: str, generation: int, member_id: str,
         assignments: list[tuple[str, bytes]] = (), instance: str | None = None) -> tuple[int, bytes]:
    r = conn.request(kw.API_SYNC_GROUP, 3, kw.sync_group_body(group, generation, member_id, assignments, instance))
    return kw.parse_sync_group(r)


def heartbeat(conn: kw.Connection, group: str, generation: int, member_id: str, instance: str | None = None) -> int:
    r = conn.request(kw.API_HEARTBEAT, 3, kw.heartbeat_body(group, generation, member_id, instance))
    return kw.parse_heartbeat(r)


def wait_for_rebalance(conn: kw.Connection, group: str, generation: int, member_id: str,
                       instance: str | None = None, timeout: float = 10.0) -> None:
    """Heartbeats until the broker answers REBALANCE_IN_PROGRESS: a join sent on another
    connection has been processed. Any answer but NONE or REBALANCE_IN_PROGRESS fails."""
    deadline = time.monotonic() + timeout
    while True:
        err = heartbeat(conn, group, generation, member_id, instance)
        if err == kw.REBALANCE_IN_PROGRESS:
            return
        assert err == kw.NONE, f"heartbeat answered {err} while waiting for a rebalance"
        assert time.monotonic() < deadline, "no rebalance started"
        time.sleep(0.05)


def commit(conn: kw.Connection, group: str, offsets, generation: int = -1, member_id: str = "") -> dict:
    r = conn.request(kw.API_OFFSET_COMMIT, 7, kw.offset_commit_v7_body(group, offsets, generation, member_id))
    return kw.parse_offset_commit_v7(r)


def fetch_v7(conn: kw.Connection, group: str, topics: dict[str, list[int]] | None):
    return kw.parse_offset_fetch_v7(kw.flexible_request(conn, kw.API_OFFSET_FETCH, 7, kw.offset_fetch_v7_body(group, topics)))


def two_member_group(bootstrap: str, group: str, session_timeout_ms: int = 30000):
    """Members A (leader, joined first) and B, both synced in the same generation.
    Returns (conn_a, id_a, conn_b, id_b, generation)."""
    a, b = kw.Connection(bootstrap), kw.Connection(bootstrap)
    ja = join_v5(a, group, session_timeout_ms=session_timeout_ms)
    assert sync(a, group, ja.generation_id, ja.member_id, [(ja.member_id, b"a")]) == (kw.NONE, b"a")
    first_b = join(b, group, session_timeout_ms=session_timeout_ms)
    assert first_b.error_code == kw.MEMBER_ID_REQUIRED
    cid_b = send_join(b, group, first_b.member_id, session_timeout_ms=session_timeout_ms)
    wait_for_rebalance(a, group, ja.generation_id, ja.member_id)
    ra = join(a, group, ja.member_id, session_timeout_ms=session_timeout_ms)
    rb = recv_join(b, cid_b)
    assert ra.error_code == rb.error_code == kw.NONE, (ra, rb)
    gen = ra.generation_id
    cid_b = b.send(kw.API_SYNC_GROUP, 3, kw.sync_group_body(group, gen, rb.member_id))
    assert sync(a, group, gen, ra.member_id, [(ra.member_id, b"a"), (rb.member_id, b"b")]) == (kw.NONE, b"a")
    assert kw.parse_sync_group(b.recv_response(cid_b)) == (kw.NONE, b"b")
    return a, ra.member_id, b, rb.member_id, gen


# ---- KIP-394 member ids -----------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_join_v4_plus_without_member_id_gets_member_id_required_then_joins_with_it(broker):
    with kw.Connection(broker.bootstrap) as c:
        first = join(c, "kip394")
        assert first.error_code == kw.MEMBER_ID_REQUIRED
        assert first.member_id, "MEMBER_ID_REQUIRED carries the member id to use"
        assert first.generation_id == -1
        second = join(c, "kip394", first.member_id, protocols=[("range", b"meta")])
        assert second.error_code == kw.NONE, second
        assert second.member_id == first.member_id
        assert second.generation_id == 1
        assert second.leader == first.member_id
        assert second.protocol_name == "range"
        assert second.members == [(first.member_id, None, b"meta")]


@pytest.mark.broker_config(**FAST_JOIN)
def test_join_v3_without_member_id_joins_directly(broker):
    with kw.Connection(broker.bootstrap) as c:
        resp = join(c, "old-client", version=3)
        assert resp.error_code == kw.NONE, resp
        assert resp.member_id and resp.leader == resp.member_id
        assert resp.generation_id == 1


# ---- generations, leader, SyncGroup -----------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_second_member_advances_generation_and_only_the_leader_gets_the_member_list(broker):
    group = "gen-leader"
    a, b = kw.Connection(broker.bootstrap), kw.Connection(broker.bootstrap)
    with a, b:
        ja = join_v5(a, group, protocols=[("range", b"meta-a")])
        assert ja.generation_id == 1 and ja.leader == ja.member_id
        assert sync(a, group, 1, ja.member_id, [(ja.member_id, b"x")]) == (kw.NONE, b"x")

        id_b = join(b, group).member_id
        cid_b = send_join(b, group, id_b, protocols=[("range", b"meta-b")])
        wait_for_rebalance(a, group, 1, ja.member_id)
        assert no_answer_yet(b), "B's join is held until the leader rejoins"
        ra = join(a, group, ja.member_id, protocols=[("range", b"meta-a")])
        rb = recv_join(b, cid_b)

        assert ra.error_code == rb.error_code == kw.NONE, (ra, rb)
        assert ra.generation_id == rb.generation_id == 2
        assert ra.leader == rb.leader == ja.member_id
        assert sorted(ra.members) == sorted([(ja.member_id, None, b"meta-a"), (id_b, None, b"meta-b")])
        assert rb.members == [], "followers get no member list"


@pytest.mark.broker_config(**FAST_JOIN)
def test_follower_sync_waits_for_the_leader_and_gets_its_assignment_bytes_untouched(broker):
    group = "sync-wait"
    a, b = kw.Connection(broker.bootstrap), kw.Connection(broker.bootstrap)
    with a, b:
        ja = join_v5(a, group)
        sync(a, group, 1, ja.member_id, [(ja.member_id, b"")])
        id_b = join(b, group).member_id
        cid_b = send_join(b, group, id_b)
        wait_for_rebalance(a, group, 1, ja.member_id)
        ra = join(a, group, ja.member_id)
        rb = recv_join(b, cid_b)
        gen = ra.generation_id

        cid_sync_b = b.send(kw.API_SYNC_GROUP, 3, kw.sync_group_body(group, gen, id_b))
        assert no_answer_yet(b), "a follower's SyncGroup is answered only after the leader's"
        opaque_a = bytes(range(256))
        opaque_b = b"\x00\xffnot-a-consumer-assignment\x00" * 10
        assert sync(a, group, gen, ra.member_id, [(ra.member_id, opaque_a), (id_b, opaque_b)]) == (kw.NONE, opaque_a)
        assert kw.parse_sync_group(b.recv_response(cid_sync_b)) == (kw.NONE, opaque_b)
        # A SyncGroup in the Stable state returns the same bytes again.
        assert sync(b, group, gen, id_b) == (kw.NONE, opaque_b)


# ---- Heartbeat errors -------------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_heartbeat_errors_for_stale_generation_unknown_member_and_rebalance(broker):
    group = "hb-errors"
    a, id_a, b, id_b, gen = two_member_group(broker.bootstrap, group)
    c = kw.Connection(broker.bootstrap)
    with a, b, c:
        assert heartbeat(a, group, gen, id_a) == kw.NONE
        assert heartbeat(a, group, gen - 1, id_a) == kw.ILLEGAL_GENERATION
        assert heartbeat(a, group, gen, "no-such-member") == kw.UNKNOWN_MEMBER_ID

        id_c = join(c, group).member_id
        cid_c = send_join(c, group, id_c)  # a third member starts a rebalance
        wait_for_rebalance(a, group, gen, id_a)
        assert heartbeat(a, group, gen, id_a) == kw.REBALANCE_IN_PROGRESS
        assert heartbeat(b, group, gen, id_b) == kw.REBALANCE_IN_PROGRESS
        cid_a = send_join(a, group, id_a)
        rb = join(b, group, id_b)
        ra, rc = recv_join(a, cid_a), recv_join(c, cid_c)
        assert ra.generation_id == rb.generation_id == rc.generation_id == gen + 1
        assert len(ra.members) == 3


# ---- static membership (KIP-345) --------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_static_member_rejoining_with_empty_member_id_gets_new_id_without_rebalance_and_old_id_is_fenced(broker):
    group = "static"
    a, b, a2 = (kw.Connection(broker.bootstrap) for _ in range(3))
    with a, b, a2:
        ja = join(a, group, group_instance_id="instance-a")
        assert ja.error_code == kw.NONE, "static members get their member id at once (no MEMBER_ID_REQUIRED)"
        sync(a, group, ja.generation_id, ja.member_id, [(ja.member_id, b"assigned-to-a")], instance="instance-a")
        cid_b = send_join(b, group, group_instance_id="instance-b")  # static: joins at once, held for A
        wait_for_rebalance(a, group, ja.generation_id, ja.member_id, "instance-a")
        ra = join(a, group, ja.member_id, group_instance_id="instance-a")
        rb = recv_join(b, cid_b)
        id_b, gen = rb.member_id, ra.generation_id
        assert rb.generation_id == gen and rb.error_code == kw.NONE
        cid_sb = b.send(kw.API_SYNC_GROUP, 3, kw.sync_group_body(group, gen, id_b, [], "instance-b"))
        assert sync(a, group, gen, ja.member_id, [(ja.member_id, b"assigned-to-a"), (id_b, b"assigned-to-b")],
                    instance="instance-a") == (kw.NONE, b"assigned-to-a")
        assert kw.parse_sync_group(b.recv_response(cid_sb)) == (kw.NONE, b"assigned-to-b")

        # instance-a restarts: same instance id, no member id, same protocols
        again = join(a2, group, group_instance_id="instance-a")
        assert again.error_code == kw.NONE, again
        assert again.member_id and again.member_id != ja.member_id
        assert again.generation_id == gen, "no rebalance: the generation stays"
        assert sync(a2, group, gen, again.member_id, instance="instance-a") == (kw.NONE, b"assigned-to-a")
        assert heartbeat(b, group, gen, id_b, "instance-b") == kw.NONE, "the other member sees no rebalance"
        assert heartbeat(a2, group, gen, again.member_id, "instance-a") == kw.NONE
        assert heartbeat(a, group, gen, ja.member_id, "instance-a") == kw.FENCED_INSTANCE_ID


@pytest.mark.broker_config(**FAST_JOIN)
def test_leave_group_by_instance_id_removes_the_static_member(broker):
    group = "static-leave"
    a, b = kw.Connection(broker.bootstrap), kw.Connection(broker.bootstrap)
    with a, b:
        ja = join(a, group, group_instance_id="leaving")
        sync(a, group, ja.generation_id, ja.member_id, [(ja.member_id, b"")], instance="leaving")
        r = b.request(kw.API_LEAVE_GROUP, 3, kw.leave_group_body(group, [("", "leaving"), ("", "never-joined")]))
        err, members = kw.parse_leave_group(r)
        assert err == kw.NONE
        # as Kafka, each member is answered with the identity it was asked by (empty member id)
        assert members == [("", "leaving", kw.NONE), ("", "never-joined", kw.UNKNOWN_MEMBER_ID)]
        assert heartbeat(a, group, ja.generation_id, ja.member_id, "leaving") == kw.UNKNOWN_MEMBER_ID


# ---- sessions ---------------------------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_session_timeout_below_the_minimum_is_invalid(broker):
    with kw.Connection(broker.bootstrap) as c:
        assert join(c, "short-session", session_timeout_ms=1000).error_code == kw.INVALID_SESSION_TIMEOUT
        assert join(c, "short-session", version=3, session_timeout_ms=1000).error_code == kw.INVALID_SESSION_TIMEOUT


@pytest.mark.broker_config(**FAST_JOIN)
def test_member_that_stops_heartbeating_is_removed_after_its_session_timeout(broker):
    group = "expiry"
    a, id_a, b, id_b, gen = two_member_group(broker.bootstrap, group, session_timeout_ms=6000)
    with a, b:
        last_heard = time.monotonic()
        assert heartbeat(a, group, gen, id_a) == kw.NONE  # A's last sign of life
        deadline = last_heard + 30
        while True:
            err = heartbeat(b, group, gen, id_b)
            if err != kw.NONE:
                break
            assert time.monotonic() < deadline, "A was never expired"
            time.sleep(0.5)
        noticed = time.monotonic() - last_heard
        assert err == kw.REBALANCE_IN_PROGRESS
        assert noticed >= 5.9, f"A was removed {noticed:.1f}s after its last heartbeat, before session.timeout.ms"
        rb = join(b, group, id_b, session_timeout_ms=6000)
        assert rb.error_code == kw.NONE
        assert rb.generation_id == gen + 1
        assert [m[0] for m in rb.members] == [id_b], "only B is left, and B leads"
        assert heartbeat(a, group, gen, id_a) == kw.UNKNOWN_MEMBER_ID


# ---- OffsetCommit / OffsetFetch ---------------------------------------------------------------

@pytest.mark.broker_config(**FAST_JOIN)
def test_offset_commit_by_a_non_member_of_an_active_group_is_unknown_member_id(broker):
    create_topic(broker.bootstrap, "oc-active", partitions=1)
    group = "oc-active-group"
    with kw.Connection(broker.bootstrap) as a, kw.Connection(broker.bootstrap) as other:
        ja = join_v5(a, group)
        sync(a, group, ja.generation_id, ja.member_id, [(ja.member_id, b"")])
        offsets = [("oc-active", 0, 5, None)]
        assert commit(other, group, offsets, ja.generation_id, "intruder") == {("oc-active", 0): kw.UNKNOWN_MEMBER_ID}
        assert commit(other, group, offsets) == {("oc-active", 0): kw.UNKNOWN_MEMBER_ID}, \
            "an admin commit (generation -1) is refused while the group has members"
        assert commit(a, group, offsets, ja.generation_id - 1, ja.member_id) == {("oc-active", 0): kw.ILLEGAL_GENERATION}
        assert commit(a, group, offsets, ja.generation_id, ja.member_id) == {("oc-active", 0): kw.NONE}
        assert fetch_v7(other, group, {"oc-active": [0]}) == (kw.NONE, {("oc-active", 0): (5, "", kw.NONE)})


def test_offset_commit_with_a_generation_to_an_unknown_group_is_illegal_generation_then_group_id_not_found_from_v9(broker):
    create_topic(broker.bootstrap, "oc-unknown", partitions=1)
    offsets = [("oc-unknown", 0, 1, None)]
    with kw.Connection(broker.bootstrap) as c:
        assert commit(c, "gone-group", offsets, 3, "some-member") == {("oc-unknown", 0): kw.ILLEGAL_GENERATION}
        r = kw.flexible_request(c, kw.API_OFFSET_COMMIT, 9, kw.offset_commit_v9_body("gone-group", offsets, 3, "some-member"))
        assert kw.parse_offset_commit_v9(r) == {("oc-unknown", 0): kw.GROUP_ID_NOT_FOUND}
        assert fetch_v7(c, "gone-group", None) == (kw.NONE, {}), "a refused commit creates no group"


def test_offset_commit_with_generation_minus_one_creates_a_group_that_only_commits(broker):
    create_topic(broker.bootstrap, "simple", partitions=2)
    with kw.Connection(broker.bootstrap) as c:
        assert commit(c, "simple-group", [("simple", 0, 7, "meta"), ("simple", 1, 3, None)]) == \
            {("simple", 0): kw.NONE, ("simple", 1): kw.NONE}
        err, got = fetch_v7(c, "simple-group", None)
        assert err == kw.NONE
        assert got == {("simple", 0): (7, "meta", kw.NONE), ("simple", 1): (3, "", kw.NONE)}
        # the group is listed, Empty and without protocol type (ListGroups v3)
        lr = kw.flexible_request(c, kw.API_LIST_GROUPS, 4, kw.compact_array([]) + kw.TAGS)
        lr.i32()
        assert lr.i16() == kw.NONE

        def listed(rr):
            g = (rr.compact_string(), rr.compact_string(), rr.compact_string())
            rr.tags()
            return g
        assert ("simple-group", "", "Empty") in lr.compact_array(listed)


def test_offset_fetch_v8_returns_each_groups_offsets_in_one_request(broker):
    create_topic(broker.bootstrap, "multi", partitions=2)
    with kw.Connection(broker.bootstrap) as c:
        assert commit(c, "multi-a", [("multi", 0, 11, "a0"), ("multi", 1, 12, None)]) == \
            {("multi", 0): kw.NONE, ("multi", 1): kw.NONE}
        assert commit(c, "multi-b", [("multi", 1, 21, "b1")]) == {("multi", 1): kw.NONE}
        body = kw.offset_fetch_v8_body({"multi-a": None, "multi-b": {"multi": [0, 1]}, "multi-none": {"multi": [0]}})
        got = kw.parse_offset_fetch_v8(kw.flexible_request(c, kw.API_OFFSET_FETCH, 8, body))
        assert got == {
            "multi-a": (kw.NONE, {("multi", 0): (11, "a0", kw.NONE), ("multi", 1): (12, "", kw.NONE)}),
            "multi-b": (kw.NONE, {("multi", 0): (-1, "", kw.NONE), ("multi", 1): (21, "b1", kw.NONE)}),
            "multi-none": (kw.NONE, {("multi", 0): (-1, "", kw.NONE)}),
        }


def test_offset_commit_rejects_unknown_topics_and_oversized_metadata_per_partition(broker):
    create_topic(broker.bootstrap, "oc-limits", partitions=1)
    with kw.Connection(broker.bootstrap) as c:
        got = commit(c, "oc-limits-group", [
            ("oc-limits", 0, 1, "m" * 4096),
            ("oc-limits", 5, 1, None),
            ("no-such-topic", 0, 1, None),
        ])
        assert got == {("oc-limits", 0): kw.NONE, ("oc-limits", 5): kw.UNKNOWN_TOPIC_OR_PARTITION,
                       ("no-such-topic", 0): kw.UNKNOWN_TOPIC_OR_PARTITION}
        assert commit(c, "oc-limits-group", [("oc-limits", 0, 2, "m" * 4097)]) == \
            {("oc-limits", 0): kw.OFFSET_METADATA_TOO_LARGE}
        assert fetch_v7(c, "oc-limits-group", {"oc-limits": [0]}) == \
            (kw.NONE, {("oc-limits", 0): (1, "m" * 4096, kw.NONE)}), "the refused commit changed nothing"
