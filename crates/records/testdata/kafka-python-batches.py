"""Writes kafka-python-batches.txt: one record batch per codec id, built by
kafka-python's own encoder (an independent Kafka client), for the records
crate's interoperability test. Run: .venv/bin/python crates/records/testdata/kafka-python-batches.py
"""
import os

from kafka.record.default_records import DefaultRecordBatchBuilder

RECORDS = [
    (1_700_000_000_500, b"k0", b"v0" * 40, [("a", b"1"), ("b", None)]),
    (1_700_000_000_000, None, b"v1" * 40, []),
    (1_700_000_000_900, b"k2", None, [("a", b"x"), ("a", b"y")]),
    (1_700_000_000_950, b"", b"", [("", b"")]),
]

lines = ["# Written by kafka-python-batches.py: codec id, then the batch in hex."]
for codec in range(5):
    builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, 1 << 20)
    for offset, (ts, key, value, headers) in enumerate(RECORDS):
        builder.append(offset, ts, key, value, headers)
    lines.append(f"{codec} {bytes(builder.build()).hex()}")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kafka-python-batches.txt")
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
