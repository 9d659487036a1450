"""The replication files Kafka keeps beside the logs, in Kafka's names and text formats:
`replication-offset-checkpoint` and `recovery-point-offset-checkpoint` per log dir,
`leader-epoch-checkpoint` and `<offset>.snapshot` per partition."""

from __future__ import annotations

from e2e_util import create_topic, produce_keyed, watermarks


def _entries(path) -> dict[tuple[str, int], int]:
    lines = path.read_text().splitlines()
    assert lines[0] == "0", f"{path.name}: version {lines[0]!r}"
    assert int(lines[1]) == len(lines) - 2, f"{path.name}: count {lines[1]} for {len(lines) - 2} entries"
    out = {}
    for line in lines[2:]:
        topic, partition, offset = line.split(" ")
        out[(topic, int(partition))] = int(offset)
    return out


def test_offset_checkpoints_and_epoch_cache_are_written_and_survive_a_restart(broker):
    create_topic(broker.bootstrap, "files", partitions=2)
    produce_keyed(broker.bootstrap, "files", 2, 40)
    ends = {p: watermarks(broker.bootstrap, "files", p)[1] for p in range(2)}
    assert ends == {0: 40, 1: 40}
    assert broker.stop() == 0

    expected = {("files", p): end for p, end in ends.items()}
    for name in ("replication-offset-checkpoint", "recovery-point-offset-checkpoint"):
        found = {k: v for k, v in _entries(broker.data_dir / name).items() if k[0] == "files"}
        assert found == expected, name
    for p, end in ends.items():
        d = broker.data_dir / f"files-{p}"
        assert (d / "leader-epoch-checkpoint").read_text() == "0\n1\n0 0\n"
        assert sorted(f.name for f in d.glob("*.snapshot")) == [f"{end:020}.snapshot"]

    broker.start()
    for p, end in ends.items():
        assert watermarks(broker.bootstrap, "files", p) == (0, end)
