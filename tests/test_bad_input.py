"""Bad input gets the precise Kafka error code (or, for broken frames, a closed connection),
and never hurts anyone else: a well-behaved client on another connection keeps producing and
consuming, and the broker process stays up."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic

import kafkawire as w
from e2e_util import admin, consumer, create_topic, flush_all, list_topics, producer, watermarks

CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35


class HealthyClient:
    """A confluent-kafka producer and consumer that stay connected for the whole test."""

    def __init__(self, broker):
        self.broker = broker
        create_topic(broker.bootstrap, "healthy")
        self.producer = producer(broker.bootstrap, {"linger.ms": 0, "message.timeout.ms": 15000})
        self.consumer = consumer(broker.bootstrap, {"group.id": "potok-e2e-healthy"})
        self.consumer.assign([TopicPartition("healthy", 0, OFFSET_BEGINNING)])
        self.sent = 0

    def check(self, what: str = "") -> None:
        assert self.broker.alive(), f"broker process died ({what}); exit code {self.broker.proc.returncode}"
        value = b"healthy-%d" % self.sent
        errors = []
        self.producer.produce("healthy", value=value, partition=0,
                              on_delivery=lambda err, msg: err and errors.append(err))
        self.producer.flush(20)
        assert self.broker.alive(), f"broker process died after {what}; exit code {self.broker.proc.returncode}"
        assert len(self.producer) == 0 and not errors, f"well-behaved producer failed after {what}: {errors}"
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, f"well-behaved consumer did not get {value!r} after {what}"
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            assert msg.offset() <= self.sent
            if msg.value() == value:
                assert msg.offset() == self.sent
                break
        self.sent += 1

    def close(self):
        self.consumer.close()


@pytest.fixture
def healthy(broker):
    h = HealthyClient(broker)
    try:
        h.check("startup")
        yield h
        h.check("the test")
    finally:
        h.close()


def test_corrupt_crc_batch_is_rejected_with_corrupt_message_and_not_appended(broker, healthy):
    create_topic(broker.bootstrap, "crc")
    with w.Connection(broker.bootstrap) as c:
        good = w.record_batch([(b"k", b"good-1"), (b"k", b"good-2")])
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("crc", 0, good)))
        assert res[("crc", 0)] == (0, 0)
        assert watermarks(broker.bootstrap, "crc") == (0, 2)

        bad = w.record_batch([(b"k", b"bad")], corrupt_crc=True)
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("crc", 0, bad)))
        assert res[("crc", 0)][0] == CORRUPT_MESSAGE
        healthy.check("a corrupt batch")
        assert watermarks(broker.bootstrap, "crc") == (0, 2), "corrupt batch changed the log end offset"

        # the same connection still works
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("crc", 0, good)))
        assert res[("crc", 0)] == (0, 2)
    assert watermarks(broker.bootstrap, "crc") == (0, 4)


@pytest.mark.broker_config(**{"message.max.bytes": "10000"})
def test_batch_over_message_max_bytes_is_rejected_with_message_too_large(broker, healthy):
    create_topic(broker.bootstrap, "big")
    with w.Connection(broker.bootstrap) as c:
        big = w.record_batch([(None, b"x" * 20_000)])
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("big", 0, big)))
        assert res[("big", 0)][0] == MESSAGE_TOO_LARGE
        healthy.check("an oversized batch")
        assert watermarks(broker.bootstrap, "big") == (0, 0)

        small = w.record_batch([(None, b"x" * 5_000)])
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("big", 0, small)))
        assert res[("big", 0)] == (0, 0)
    assert watermarks(broker.bootstrap, "big") == (0, 1)


def test_topic_max_message_bytes_config_rejects_larger_records(broker, healthy):
    create_topic(broker.bootstrap, "small-records", config={"max.message.bytes": "10000"})
    p = producer(broker.bootstrap, {"message.timeout.ms": 15000, "retries": 0})
    errors = []
    p.produce("small-records", value=b"y" * 20_000, partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert len(errors) == 1 and errors[0] is not None
    assert errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errors[0]
    assert watermarks(broker.bootstrap, "small-records") == (0, 0)


@pytest.mark.parametrize("name", ["bad/name", ".", "..", "x" * 250, "spaces are bad", "bad*name"],
                         ids=["slash", "dot", "dotdot", "250chars", "space", "star"])
def test_illegal_topic_name_is_rejected_with_invalid_topic_exception(broker, healthy, name):
    dirs_before = {p for p in broker.data_dir.rglob("*") if p.is_dir()}
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=15)
    with pytest.raises(KafkaException) as exc:
        fs[name].result(timeout=30)
    assert exc.value.args[0].code() == KafkaError.TOPIC_EXCEPTION == INVALID_TOPIC_EXCEPTION, exc.value
    healthy.check(f"CreateTopics {name[:20]!r}")
    assert name not in list_topics(broker.bootstrap)
    new_dirs = {p for p in broker.data_dir.rglob("*") if p.is_dir()} - dirs_before
    assert not new_dirs, f"rejected topic left directories behind: {sorted(map(str, new_dirs))}"


def test_legal_topic_name_of_249_chars_is_accepted(broker):
    name = "y" * 249
    create_topic(broker.bootstrap, name)
    p = producer(broker.bootstrap)
    p.produce(name, value=b"v", partition=0)
    flush_all(p)
    assert watermarks(broker.bootstrap, name) == (0, 1)


@pytest.mark.broker_config(**{"auto.create.topics.enable": "false"})
def test_unknown_topic_without_auto_create_gives_unknown_topic_or_partition(broker, healthy):
    with w.Connection(broker.bootstrap) as c:
        topics = w.parse_metadata_v1_topics(c.request(w.API_METADATA, 1, w.metadata_v1_body(["nosuch"])))
        assert topics == {"nosuch": UNKNOWN_TOPIC_OR_PARTITION}

        batch = w.record_batch([(None, b"v")])
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("nosuch", 0, batch)))
        assert res[("nosuch", 0)][0] == UNKNOWN_TOPIC_OR_PARTITION

        healthy.check("requests for an unknown topic")
        # still not created by either request
        topics = w.parse_metadata_v1_topics(c.request(w.API_METADATA, 1, w.metadata_v1_body(["nosuch"])))
        assert topics == {"nosuch": UNKNOWN_TOPIC_OR_PARTITION}

    # a known topic, unknown partition
    create_topic(broker.bootstrap, "known", partitions=1)
    with w.Connection(broker.bootstrap) as c:
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("known", 7, batch)))
        assert res[("known", 7)][0] == UNKNOWN_TOPIC_OR_PARTITION


def test_api_versions_too_new_gets_v0_answer_with_unsupported_version(broker, healthy):
    with w.Connection(broker.bootstrap) as c:
        # what a client newer than the broker sends: ApiVersions v127, request header v2
        cid = c.send(w.API_VERSIONS, 127, b"\x00", flexible_header=True)
        err, keys = w.parse_api_versions_v0(c.recv_response(cid))
        assert err == UNSUPPORTED_VERSION
        assert w.API_VERSIONS in keys, f"the error answer must list the ApiVersions range, got {keys}"
        lo, hi = keys[w.API_VERSIONS]
        assert lo == 0 and hi >= 3

        # the connection stays usable: retry at v0 and get the full list
        err, keys = w.parse_api_versions_v0(c.request(w.API_VERSIONS, 0, b""))
        assert err == 0
        for api in (w.API_PRODUCE, 1, 2, w.API_METADATA, w.API_VERSIONS, w.API_CREATE_TOPICS):
            assert api in keys, f"ApiVersions v0 does not list api key {api}"
    healthy.check("ApiVersions v127")


def _closed_or_unsupported(c: w.Connection, cid: int) -> None:
    """Kafka closes the connection on an unknown API key or unsupported version; an answer
    carrying UNSUPPORTED_VERSION for the same correlation id is acceptable too."""
    try:
        frame = c.recv_frame()
    except TimeoutError:
        raise AssertionError("broker neither answered nor closed the connection")
    except (ConnectionError, OSError):
        return
    r = w.Reader(frame)
    assert r.i32() == cid
    assert w.i16(UNSUPPORTED_VERSION) in frame[4:], f"unexpected answer {frame!r}"


@pytest.mark.parametrize("api_key,version", [(32000, 0), (w.API_METADATA, 999), (w.API_PRODUCE, 999)],
                         ids=["unknown-api-key", "metadata-v999", "produce-v999"])
def test_unknown_api_or_version_is_refused_without_harm(broker, healthy, api_key, version):
    with w.Connection(broker.bootstrap) as c:
        cid = c.send(api_key, version, b"\x00\x00\x00\x00")
        _closed_or_unsupported(c, cid)
    healthy.check(f"api {api_key} v{version}")
    with w.Connection(broker.bootstrap) as c:
        err, _ = w.parse_api_versions_v0(c.request(w.API_VERSIONS, 0, b""))
        assert err == 0


@pytest.mark.parametrize("frame", [
    w.i32(16) + b"\xde\xad\xbe\xef" * 4,                                   # garbage header
    w.i32(3) + b"\x00\x03\x00",                                             # shorter than a header
    w.request_frame(w.API_METADATA, 1, 1, w.i32(0x7FFFFFFF)),               # huge array count, no data
    w.request_frame(w.API_PRODUCE, 3, 1, w.string(None) + w.i16(1) + w.i32(1000)
                    + w.i32(1) + w.string("t") + w.i32(1) + w.i32(0) + w.i32(0x7FFFFFF0)),  # records length lies
    w.i32(0x7FFFFFFF),                                                      # size prefix > socket.request.max.bytes
    w.i32(200 * 1024 * 1024) + b"\x00" * 1024,                              # 200 MiB > default 100 MiB limit
    w.i32(-5),                                                              # negative size
], ids=["garbage", "short-header", "metadata-huge-count", "produce-records-length-lies",
        "size-2GiB", "size-200MiB", "size-negative"])
def test_broken_frame_closes_only_that_connection(broker, healthy, frame):
    rss_before = broker.rss_kb()
    with w.Connection(broker.bootstrap) as c:
        c.send_raw(frame)
        assert c.closed_by_peer(timeout=10), "broker kept the connection open after a broken frame"
    healthy.check("a broken frame")
    assert broker.rss_kb() < rss_before + 64 * 1024, "broker memory grew by > 64 MiB for one broken frame"
    with w.Connection(broker.bootstrap) as c:
        err, _ = w.parse_api_versions_v0(c.request(w.API_VERSIONS, 0, b""))
        assert err == 0


@pytest.mark.broker_config(**{"socket.request.max.bytes": "100000"})
def test_frame_over_configured_socket_request_max_bytes_closes_connection(broker, healthy):
    with w.Connection(broker.bootstrap) as c:
        c.send_raw(w.i32(200_000) + b"\x00" * 1000)
        assert c.closed_by_peer(timeout=10)
    healthy.check("a frame over socket.request.max.bytes")
    # a request under the limit is fine
    create_topic(broker.bootstrap, "under-limit")
    with w.Connection(broker.bootstrap) as c:
        batch = w.record_batch([(None, b"z" * 50_000)])
        res = w.parse_produce_v3(c.request(w.API_PRODUCE, 3, w.produce_v3_body("under-limit", 0, batch)))
        assert res[("under-limit", 0)] == (0, 0)
