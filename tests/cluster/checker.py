"""A Jepsen-style checker for what producers were told and what consumers saw.

A test records into a `History`, in real-time order (thread-safe):
  ack(partition, value, offset, producer)   an acknowledged write: the offset from the ack;
                                            the ack order is the order of these calls
  read(partition, offset, value, reader)    one record a consumer saw
  full_read(partition, records, start)      a read of the whole partition, from `start` (the log
                                            start) to its end at that moment: [(offset, value)]
Values must be unique per test (each write carries its own value).

`check(history)` judges, with the last full read of each partition as the final log:
  for every acknowledged write
    lost          its value is not in the final log
    duplicated    its value is in the final log more than once (also reported for values
                  whose write was not acknowledged: a retry must never be appended twice)
    wrong_offset  the final log holds it at another offset than its ack said
    reordered     a producer's acks within a partition came in an order its log positions do
                  not have (ack order vs log order; concurrent producers are not ordered
                  against each other, as their acks race)
  for every read
    inconsistent  another read (incremental or full) shows a different value at that offset
    vanished      a later full read covers the offset but has no record there (or ends before it)
An acknowledged write whose partition has no full read is reported as unchecked (a test bug).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ack:
    seq: int
    partition: int
    value: str
    offset: int
    producer: str


@dataclass(frozen=True)
class Read:
    seq: int
    partition: int
    offset: int
    value: str
    reader: str


@dataclass(frozen=True)
class FullRead:
    seq: int
    partition: int
    start: int
    records: tuple[tuple[int, str], ...]

    @property
    def end(self) -> int:
        """One past the last offset it covers."""
        return max([self.start] + [o + 1 for o, _ in self.records])


def _text(v) -> str:
    return v.decode() if isinstance(v, (bytes, bytearray)) else str(v)


class History:
    def __init__(self):
        self._lock = threading.Lock()
        self._seq = 0
        self.acks: list[Ack] = []
        self.reads: list[Read] = []
        self.full_reads: list[FullRead] = []

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def ack(self, partition: int, value, offset: int, producer: str = "") -> None:
        with self._lock:
            self.acks.append(Ack(self._next(), partition, _text(value), offset, producer))

    def read(self, partition: int, offset: int, value, reader: str = "") -> None:
        with self._lock:
            self.reads.append(Read(self._next(), partition, offset, _text(value), reader))

    def full_read(self, partition: int, records, start: int = 0) -> None:
        with self._lock:
            self.full_reads.append(
                FullRead(self._next(), partition, start, tuple((o, _text(v)) for o, v in records)))


@dataclass
class Result:
    acked: int = 0
    reads: int = 0
    lost: list = field(default_factory=list)
    duplicated: list = field(default_factory=list)
    wrong_offset: list = field(default_factory=list)
    reordered: list = field(default_factory=list)
    inconsistent: list = field(default_factory=list)
    vanished: list = field(default_factory=list)
    unchecked: list = field(default_factory=list)

    KINDS = ("lost", "duplicated", "wrong_offset", "reordered", "inconsistent", "vanished", "unchecked")

    @property
    def ok(self) -> bool:
        return not any(getattr(self, k) for k in self.KINDS)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in self.KINDS}

    def summary(self, examples: int = 5) -> str:
        lines = [f"{self.acked} acknowledged writes, {self.reads} reads: "
                 + ", ".join(f"{k} {n}" for k, n in self.counts().items())]
        for k in self.KINDS:
            for item in getattr(self, k)[:examples]:
                lines.append(f"  {k}: {item}")
        return "\n".join(lines)

    def assert_ok(self) -> None:
        assert self.ok, "checker found anomalies:\n" + self.summary()


def check(h: History) -> Result:
    r = Result(acked=len(h.acks), reads=len(h.reads) + sum(len(f.records) for f in h.full_reads))
    final: dict[int, FullRead] = {}
    for f in h.full_reads:
        if f.partition not in final or f.seq > final[f.partition].seq:
            final[f.partition] = f

    # where each value sits in each partition's final log
    positions: dict[int, dict[str, list[int]]] = {}
    for p, f in final.items():
        pos: dict[str, list[int]] = defaultdict(list)
        for offset, value in f.records:
            pos[value].append(offset)
        positions[p] = pos
        for value, offsets in pos.items():
            if len(offsets) > 1:
                r.duplicated.append(f"partition {p} value {value!r} at offsets {offsets}")

    last_offset: dict[tuple[int, str], tuple[int, Ack]] = {}
    for a in h.acks:
        if a.partition not in final:
            r.unchecked.append(f"partition {a.partition} value {a.value!r}: no full read of the partition")
            continue
        offsets = positions[a.partition].get(a.value)
        if not offsets:
            r.lost.append(f"partition {a.partition} value {a.value!r} acknowledged at offset {a.offset}")
            continue
        if a.offset not in offsets:
            r.wrong_offset.append(f"partition {a.partition} value {a.value!r} acknowledged at offset "
                                  f"{a.offset}, in the log at {offsets}")
        here = offsets[0]
        key = (a.partition, a.producer)
        prev = last_offset.get(key)
        if prev is not None and here <= prev[0]:
            r.reordered.append(f"partition {a.partition} producer {a.producer!r}: {prev[1].value!r} was "
                               f"acknowledged before {a.value!r} but is at offset {prev[0]} >= {here}")
        if prev is None or here > prev[0]:
            last_offset[key] = (here, a)

    # every observation of (partition, offset): reads and full reads alike
    seen: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
    for x in h.reads:
        seen[(x.partition, x.offset)].setdefault(x.value, f"read by {x.reader!r} (#{x.seq})")
    for f in h.full_reads:
        for offset, value in f.records:
            seen[(f.partition, offset)].setdefault(value, f"full read #{f.seq}")
    for (p, offset), values in sorted(seen.items()):
        if len(values) > 1:
            r.inconsistent.append(f"partition {p} offset {offset}: "
                                  + "; ".join(f"{v!r} ({who})" for v, who in values.items()))

    # a record once read must still be there in every later full read that covers its offset
    # (the records of earlier full reads count as reads too)
    observed = [(x.seq, x.partition, x.offset, x.value, f"read by {x.reader!r}") for x in h.reads]
    observed += [(f.seq, f.partition, o, v, f"full read #{f.seq}") for f in h.full_reads for o, v in f.records]
    later: dict[int, list[tuple[FullRead, set[int]]]] = defaultdict(list)
    for f in h.full_reads:
        later[f.partition].append((f, {o for o, _ in f.records}))
    for seq, p, offset, value, who in observed:
        for f, offsets in later.get(p, ()):
            if f.seq <= seq or offset < f.start or offset in offsets:
                continue
            where = "past its end" if offset >= f.end else "a gap there"
            r.vanished.append(f"partition {p} offset {offset} value {value!r} ({who}) is missing from "
                              f"the later full read #{f.seq} ({where})")
            break
    return r
