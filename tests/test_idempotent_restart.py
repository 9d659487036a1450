"""An idempotent producer's retry after a broker restart is answered with the original offset
and appended only once (the producer state lives with the log, in Kafka's `.snapshot` files),
across a clean restart and a kill -9. Raw frames, so the retry carries exactly the bytes, producer
id, epoch and sequence of the first attempt, as a Kafka client's retry does."""

from __future__ import annotations

from kafkawire import (Connection, init_producer_id_v0_body, parse_init_producer_id_v0,
                       parse_produce_v3, produce_v3_body, record_batch)

from e2e_util import consume_confluent, create_topic, watermarks

TOPIC = "idempotent"
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def _producer_id(bootstrap: str) -> tuple[int, int]:
    with Connection(bootstrap) as conn:
        err, pid, epoch = parse_init_producer_id_v0(conn.request(22, 0, init_producer_id_v0_body()))
    assert err == 0 and pid >= 0, (err, pid)
    return pid, epoch


def _batch(values: list[bytes], pid: int, epoch: int, seq: int) -> bytes:
    return record_batch([(None, v) for v in values], producer=(pid, epoch, seq))


def _produce(bootstrap: str, batch: bytes) -> tuple[int, int]:
    """(error_code, base_offset) of one acks=-1 produce of `batch`."""
    with Connection(bootstrap) as conn:
        r = conn.request(0, 3, produce_v3_body(TOPIC, 0, batch, acks=-1))
    return parse_produce_v3(r)[(TOPIC, 0)]


def _values(bootstrap: str, count: int) -> list[bytes]:
    return [m.value() for m in consume_confluent(bootstrap, TOPIC, 0, count)]


def _retry_after(broker, crash: bool) -> None:
    create_topic(broker.bootstrap, TOPIC)
    pid, epoch = _producer_id(broker.bootstrap)
    first = _batch([b"a0", b"a1", b"a2"], pid, epoch, 0)
    second = _batch([b"b0", b"b1"], pid, epoch, 3)
    assert _produce(broker.bootstrap, first) == (0, 0)
    assert _produce(broker.bootstrap, second) == (0, 3)

    if crash:
        broker.kill9()
        broker.start()
    else:
        assert broker.stop() == 0
        broker.start()

    # The retry of the last batch (its response was "lost") gets its original offset.
    assert _produce(broker.bootstrap, second) == (0, 3)
    assert watermarks(broker.bootstrap, TOPIC) == (0, 5), "the retry was appended again"
    # The sequence goes on where it was; a gap and an older epoch are still refused.
    assert _produce(broker.bootstrap, _batch([b"x"], pid, epoch, 9))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
    if epoch > 0:
        older = _batch([b"x"], pid, epoch - 1, 5)
        assert _produce(broker.bootstrap, older)[0] == INVALID_PRODUCER_EPOCH
    assert _produce(broker.bootstrap, _batch([b"c0"], pid, epoch, 5)) == (0, 5)
    assert _values(broker.bootstrap, 6) == [b"a0", b"a1", b"a2", b"b0", b"b1", b"c0"]
    assert watermarks(broker.bootstrap, TOPIC) == (0, 6)


def test_retry_after_a_clean_restart_is_not_appended_twice(broker):
    _retry_after(broker, crash=False)
    snapshots = sorted(p.name for p in (broker.data_dir / f"{TOPIC}-0").glob("*.snapshot"))
    assert snapshots == ["00000000000000000005.snapshot"], snapshots


def test_retry_after_kill9_is_not_appended_twice(broker):
    _retry_after(broker, crash=True)
