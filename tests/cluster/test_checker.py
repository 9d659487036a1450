"""The history checker (checker.py) on synthetic histories: a clean history passes, and each
anomaly is caught alone, as exactly that kind."""

from __future__ import annotations

import pytest

from checker import History, check

NONE = {k: 0 for k in ("lost", "duplicated", "wrong_offset", "reordered", "inconsistent", "vanished", "unchecked")}


def only(**counts) -> dict[str, int]:
    return {**NONE, **counts}


def clean() -> History:
    """Two producers on two partitions, a tailing consumer, and a final full read."""
    h = History()
    h.ack(0, "a0", 0, "A")
    h.ack(1, "b0", 0, "B")
    h.read(0, 0, "a0", "c1")
    h.ack(0, "b1", 1, "B")
    h.ack(0, "a1", 2, "A")
    h.read(0, 1, b"b1", "c1")  # bytes and str are the same value
    h.ack(1, "a2", 1, "A")
    h.read(1, 0, "b0", "c2")
    h.full_read(0, [(0, "a0"), (1, "b1"), (2, "a1"), (3, "unacked")])
    h.full_read(1, [(0, "b0"), (1, "a2")])
    return h


def test_clean_history_passes():
    r = check(clean())
    assert r.counts() == NONE, r.summary()
    assert r.ok
    assert r.acked == 5
    r.assert_ok()


def test_lost_acknowledged_write():
    h = History()
    h.ack(0, "v0", 0)
    h.ack(0, "v1", 1)
    h.full_read(0, [(0, "v0")])
    r = check(h)
    assert r.counts() == only(lost=1), r.summary()
    assert "'v1'" in r.lost[0]
    with pytest.raises(AssertionError, match="lost 1"):
        r.assert_ok()


def test_duplicated_write_acknowledged_or_not():
    h = History()
    h.ack(0, "v0", 0)
    h.full_read(0, [(0, "v0"), (1, "v0"), (2, "retried"), (3, "retried")])
    r = check(h)
    assert r.counts() == only(duplicated=2), r.summary()


def test_reordered_within_a_producer():
    h = History()
    h.ack(0, "first", 1, "P")   # the acks give the offsets the log has...
    h.ack(0, "second", 0, "P")  # ...but the second ack is for an earlier position
    h.full_read(0, [(0, "second"), (1, "first")])
    r = check(h)
    assert r.counts() == only(reordered=1), r.summary()


def test_concurrent_producers_are_not_ordered_against_each_other():
    h = History()
    h.ack(0, "from-A", 1, "A")
    h.ack(0, "from-B", 0, "B")
    h.full_read(0, [(0, "from-B"), (1, "from-A")])
    assert check(h).ok


def test_wrong_offset_in_the_ack():
    h = History()
    h.ack(0, "v", 5)
    h.full_read(0, [(3, "v")], start=3)
    r = check(h)
    assert r.counts() == only(wrong_offset=1), r.summary()


def test_inconsistent_offsets_between_readers():
    h = History()
    h.read(0, 3, "x", "c1")
    h.read(0, 3, "y", "c2")
    h.full_read(0, [(3, "x")], start=3)
    r = check(h)
    assert r.counts() == only(inconsistent=1), r.summary()
    assert "'x'" in r.inconsistent[0] and "'y'" in r.inconsistent[0]


def test_inconsistent_with_the_final_log():
    h = History()
    h.read(0, 0, "old", "c1")
    h.full_read(0, [(0, "new")])
    r = check(h)
    assert r.counts() == only(inconsistent=1), r.summary()


def test_vanished_past_the_end_of_a_later_full_read():
    h = History()
    h.read(0, 0, "v0", "c1")
    h.read(0, 1, "v1", "c1")
    h.full_read(0, [(0, "v0")])  # truncated below what a consumer already saw
    r = check(h)
    assert r.counts() == only(vanished=1), r.summary()
    assert "past its end" in r.vanished[0]


def test_vanished_into_a_gap():
    h = History()
    h.read(0, 1, "v1", "c1")
    h.full_read(0, [(0, "v0"), (2, "v2")])
    r = check(h)
    assert r.counts() == only(vanished=1), r.summary()
    assert "a gap there" in r.vanished[0]


def test_a_full_read_is_also_a_read_for_later_full_reads():
    h = History()
    h.full_read(0, [(0, "v0"), (1, "v1")])
    h.full_read(0, [(0, "v0")])
    r = check(h)
    assert r.counts() == only(vanished=1), r.summary()


def test_read_before_the_log_start_of_a_later_full_read_is_not_vanished():
    h = History()
    h.read(0, 0, "deleted-by-retention", "c1")
    h.full_read(0, [(1, "v1")], start=1)
    assert check(h).ok


def test_read_after_the_last_full_read_is_not_judged_by_it():
    h = History()
    h.full_read(0, [(0, "v0")])
    h.read(0, 1, "v1", "c1")  # appended after the full read
    assert check(h).ok


def test_acknowledged_write_without_a_full_read_is_unchecked():
    h = History()
    h.ack(7, "v", 0)
    r = check(h)
    assert r.counts() == only(unchecked=1), r.summary()


def test_every_kind_at_once_is_counted_separately():
    h = clean()
    h.ack(0, "lost", 9, "A")
    h.read(1, 0, "other", "c3")      # inconsistent with b0
    h.read(1, 5, "gone", "c3")       # vanishes from the next full read
    h.full_read(1, [(0, "b0"), (1, "a2"), (2, "a2")])  # a2 duplicated
    r = check(h)
    assert r.counts() == only(lost=1, inconsistent=1, vanished=1, duplicated=1), r.summary()
