"""OffsetForLeaderEpoch (API 23, KIP-101/KIP-279; consumers since KIP-320) on one node, in raw
frames of v3 (classic) and v4 (flexible): the leader answers the largest epoch <= the one asked
and where it ended (its log end for the latest epoch, whether the records are committed or not),
(-1, -1) for an epoch above the latest; a request naming a newer leader epoch gets
UNKNOWN_LEADER_EPOCH; an unknown partition UNKNOWN_TOPIC_OR_PARTITION. A new leader's epoch starts
at its log end before anything is appended. FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER and the
answers after a leader change need a second epoch: crates/broker/src/partition.rs and
replica_fetcher.rs test those."""

from __future__ import annotations

import pytest

import kafkawire as kw
from e2e_util import create_topic

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_LEADER_EPOCH = 75


def produce(bootstrap: str, topic: str, count: int) -> None:
    with kw.Connection(bootstrap) as c:
        for i in range(count):
            batch = kw.record_batch([(None, f"v{i}".encode())])
            err, base = kw.parse_produce_v3(c.request(kw.API_PRODUCE, 3, kw.produce_v3_body(topic, 0, batch)))[(topic, 0)]
            assert (err, base) == (NONE, i)


def test_api_versions_lists_offset_for_leader_epoch_v2_to_v4(broker):
    with kw.Connection(broker.bootstrap) as c:
        err, versions = kw.parse_api_versions_v0(c.request(kw.API_VERSIONS, 0, b""))
    assert err == NONE
    assert versions[kw.API_OFFSET_FOR_LEADER_EPOCH] == (2, 4)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("replica_id", [-1, 0])
def test_the_leader_answers_where_each_epoch_ended(broker, version, replica_id):
    create_topic(broker.bootstrap, "ofle", partitions=2)
    produce(broker.bootstrap, "ofle", 3)
    queries = {
        "ofle": [(0, -1, 0), (1, 0, 0)],
        "other": [(0, -1, 0)],
    }
    with kw.Connection(broker.bootstrap) as c:
        found = kw.offset_for_leader_epoch(c, version, queries, replica_id)
        assert found == {
            ("ofle", 0): (NONE, 0, 3),  # the log end of the latest epoch
            ("ofle", 1): (NONE, 0, 0),  # an empty log knows the epoch it is led in
            ("other", 0): (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        }
        found = kw.offset_for_leader_epoch(c, version, {"ofle": [(0, 0, 7), (1, 1, 0), (5, -1, 0)]}, replica_id)
        assert found == {
            ("ofle", 0): (NONE, -1, -1),  # above the latest epoch
            ("ofle", 1): (UNKNOWN_LEADER_EPOCH, -1, -1),
            ("ofle", 5): (UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
        }
