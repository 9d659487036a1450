"""Minimal hand-built Kafka protocol frames for the bad-input tests.

Only what the tests need: request header v1/v2, ApiVersions v0, Metadata v1 and v7,
Produce v3, Fetch v11 (the last non-flexible version; it has KIP-227 fetch
sessions), a RecordBatch (magic v2) builder with CRC-32C and a parser for
uncompressed batches, and the compact strings and arrays of flexible versions.
Everything is struct-packed here so a test can break any byte on purpose.
"""

from __future__ import annotations

import socket
import struct
import time

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_VERSIONS = 18
API_CREATE_TOPICS = 19

# ---- CRC-32C (Castagnoli), table-driven ----------------------------------------------
_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# ---- primitive encoders ---------------------------------------------------------------
def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def array(items: list[bytes] | None) -> bytes:
    if items is None:
        return i32(-1)
    return i32(len(items)) + b"".join(items)


def uvarint(v: int) -> bytes:
    """Unsigned varint, as in flexible versions' lengths and tagged fields."""
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        if v:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(v: int) -> bytes:
    """Zig-zag varint (signed), as used inside records."""
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    """COMPACT_NULLABLE_STRING of flexible versions."""
    return uvarint(0) if s is None else uvarint(len(s.encode()) + 1) + s.encode()


def compact_array(items: list[bytes] | None) -> bytes:
    """COMPACT_ARRAY of already encoded items (None: null)."""
    return uvarint(0) if items is None else uvarint(len(items) + 1) + b"".join(items)


def _vbytes(b: bytes | None) -> bytes:
    if b is None:
        return varint(-1)
    return varint(len(b)) + b


# ---- record batch (magic v2) -----------------------------------------------------------
def record_batch(records: list[tuple[bytes | None, bytes | None]], base_timestamp: int | None = None,
                 corrupt_crc: bool = False, producer: tuple[int, int, int] | None = None) -> bytes:
    """A non-transactional, uncompressed RecordBatch v2 of (key, value) records; `producer` =
    (producer id, producer epoch, base sequence) makes it an idempotent producer's batch."""
    producer_id, producer_epoch, base_sequence = producer or (-1, -1, -1)
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    recs = bytearray()
    for i, (key, value) in enumerate(records):
        body = i8(0) + varint(0) + varint(i) + _vbytes(key) + _vbytes(value) + varint(0)
        recs += varint(len(body)) + body
    after_crc = (i16(0)                      # attributes: no compression, CreateTime
                 + i32(len(records) - 1)      # lastOffsetDelta
                 + i64(base_timestamp)        # baseTimestamp
                 + i64(base_timestamp)        # maxTimestamp
                 + i64(producer_id) + i16(producer_epoch) + i32(base_sequence)
                 + i32(len(records)) + bytes(recs))
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0xDEADBEEF
    batch_length = 4 + 1 + 4 + len(after_crc)  # partitionLeaderEpoch + magic + crc + rest
    return i64(0) + i32(batch_length) + i32(-1) + i8(2) + struct.pack(">I", crc) + after_crc


# ---- requests ----------------------------------------------------------------------------
def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes,
                  client_id: str | None = "potok-e2e", flexible_header: bool = False) -> bytes:
    header = i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)
    if flexible_header:
        header += b"\x00"  # request header v2: empty tagged fields
    payload = header + body
    return i32(len(payload)) + payload


def produce_v3_body(topic: str, partition: int, records: bytes, acks: int = 1,
                    timeout_ms: int = 10000) -> bytes:
    part = i32(partition) + nbytes(records)
    return string(None) + i16(acks) + i32(timeout_ms) + array([string(topic) + array([part])])


def init_producer_id_v0_body(transactional_id: str | None = None, timeout_ms: int = 60000) -> bytes:
    return string(transactional_id) + i32(timeout_ms)


def parse_init_producer_id_v0(r: Reader) -> tuple[int, int, int]:
    """(error_code, producer_id, producer_epoch)"""
    r.i32()  # throttle_time_ms
    return r.i16(), r.i64(), r.i16()


def fetch_v11_body(partitions: list[tuple[str, int, int]], session_id: int = 0, session_epoch: int = -1,
                   forgotten: list[tuple[str, int]] = (), max_wait_ms: int = 0, min_bytes: int = 1,
                   max_bytes: int = 50 * 1024 * 1024, partition_max_bytes: int = 1024 * 1024,
                   isolation_level: int = 0, current_leader_epoch: int = -1) -> bytes:
    """Fetch v11 request body. `partitions`: (topic, partition, fetch_offset) in request
    order; `forgotten`: (topic, partition) to drop from an incremental session;
    `current_leader_epoch` (-1: unknown) goes into every partition."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition, offset in partitions:
        by_topic.setdefault(topic, []).append(
            i32(partition) + i32(current_leader_epoch)
            + i64(offset) + i64(-1)           # fetch_offset, log_start_offset (-1: consumer)
            + i32(partition_max_bytes))
    forgot: dict[str, list[bytes]] = {}
    for topic, partition in forgotten:
        forgot.setdefault(topic, []).append(i32(partition))
    return (i32(-1)                        # replica_id: a consumer
            + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(isolation_level)
            + i32(session_id) + i32(session_epoch)
            + array([string(t) + array(ps) for t, ps in by_topic.items()])
            + array([string(t) + array(ps) for t, ps in forgot.items()])
            + string(""))                  # rack_id


def metadata_v1_body(topics: list[str] | None) -> bytes:
    return array(None if topics is None else [string(t) for t in topics])


# ---- responses ---------------------------------------------------------------------------
class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response too short: need {n} bytes at {self.pos}, have {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self): return struct.unpack(">b", self.take(1))[0]
    def i16(self): return struct.unpack(">h", self.take(2))[0]
    def i32(self): return struct.unpack(">i", self.take(4))[0]
    def i64(self): return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.i16()
        return None if n < 0 else self.take(n).decode()

    def array(self, item):
        n = self.i32()
        return [] if n < 0 else [item(self) for _ in range(n)]

    def uvarint(self) -> int:
        v = shift = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()


class Connection:
    """A raw TCP connection to the broker."""

    def __init__(self, bootstrap: str, timeout: float = 15.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.next_correlation_id = 1

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, api_key: int, api_version: int, body: bytes, flexible_header: bool = False) -> int:
        cid = self.next_correlation_id
        self.next_correlation_id += 1
        self.send_raw(request_frame(api_key, api_version, cid, body, flexible_header=flexible_header))
        return cid

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed by broker after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._recv_exact(4))
        assert 0 <= size < 64 * 1024 * 1024, f"bad response size {size}"
        return self._recv_exact(size)

    def recv_response(self, correlation_id: int) -> Reader:
        """The response body (after a v0 response header) as a Reader."""
        r = Reader(self.recv_frame())
        got = r.i32()
        assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
        return r

    def request(self, api_key: int, api_version: int, body: bytes) -> Reader:
        return self.recv_response(self.send(api_key, api_version, body))

    def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True if the broker closes the connection within `timeout` (reads past any data)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


def parse_produce_v3(r: Reader) -> dict[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (error_code, base_offset)}"""
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition = r.i32()
            err = r.i16()
            base_offset = r.i64()
            r.i64()  # log_append_time_ms
            out[(topic, partition)] = (err, base_offset)
    r.i32()  # throttle_time_ms
    return out


class FetchPartition:
    """One partition of a Fetch response."""

    def __init__(self, topic: str, partition: int, error_code: int, high_watermark: int,
                 last_stable_offset: int, log_start_offset: int, records: bytes | None):
        self.topic = topic
        self.partition = partition
        self.error_code = error_code
        self.high_watermark = high_watermark
        self.last_stable_offset = last_stable_offset
        self.log_start_offset = log_start_offset
        self.records = records or b""

    def __repr__(self):
        return (f"FetchPartition({self.topic}-{self.partition} err={self.error_code} "
                f"hw={self.high_watermark} lso={self.last_stable_offset} "
                f"log_start={self.log_start_offset} {len(self.records)} record bytes)")


class FetchResponse:
    def __init__(self, throttle_time_ms: int, error_code: int, session_id: int,
                 partitions: list[FetchPartition]):
        self.throttle_time_ms = throttle_time_ms
        self.error_code = error_code
        self.session_id = session_id
        self.partitions = partitions

    def partition(self, topic: str, partition: int) -> FetchPartition | None:
        found = [p for p in self.partitions if (p.topic, p.partition) == (topic, partition)]
        assert len(found) <= 1, f"{topic}-{partition} appears {len(found)} times in one Fetch response"
        return found[0] if found else None

    def __repr__(self):
        return (f"FetchResponse(error={self.error_code} session_id={self.session_id} "
                f"partitions={self.partitions})")


def parse_fetch_v11(r: Reader) -> FetchResponse:
    throttle = r.i32()
    error_code = r.i16()
    session_id = r.i32()
    partitions = []
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition = r.i32()
            err = r.i16()
            hw = r.i64()
            lso = r.i64()
            log_start = r.i64()
            r.array(lambda rr: (rr.i64(), rr.i64()))  # aborted_transactions
            r.i32()  # preferred_read_replica
            n = r.i32()
            records = None if n < 0 else r.take(n)
            partitions.append(FetchPartition(topic, partition, err, hw, lso, log_start, records))
    return FetchResponse(throttle, error_code, session_id, partitions)


class Record:
    def __init__(self, offset: int, timestamp: int, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes | None]]):
        self.offset = offset
        self.timestamp = timestamp
        self.key = key
        self.value = value
        self.headers = headers

    def __repr__(self):
        return f"Record(offset={self.offset} key={self.key!r} value={self.value!r} headers={self.headers!r})"


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    z = 0
    while True:
        b = data[pos]
        pos += 1
        z |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return (z >> 1) ^ -(z & 1), pos


def _read_vbytes(data: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = _read_varint(data, pos)
    if n < 0:
        return None, pos
    return data[pos:pos + n], pos + n


def parse_record_batches(data: bytes) -> list[Record]:
    """Records of a run of uncompressed magic-v2 batches (a trailing partial batch, which
    Kafka allows in a Fetch response, is ignored). Checks each batch's CRC-32C."""
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, batch_length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + batch_length
        if end > len(data):
            break  # partial batch at the end of the response
        magic = data[pos + 16]
        assert magic == 2, f"batch at {base_offset}: magic {magic}"
        (crc,) = struct.unpack_from(">I", data, pos + 17)
        assert crc == crc32c(data[pos + 21:end]), f"batch at {base_offset}: CRC-32C mismatch"
        (attributes,) = struct.unpack_from(">h", data, pos + 21)
        assert attributes & 0x07 == 0, f"batch at {base_offset} is compressed (attributes {attributes:#x})"
        (base_ts,) = struct.unpack_from(">q", data, pos + 27)
        (count,) = struct.unpack_from(">i", data, pos + 57)
        rp = pos + 61
        for _ in range(count):
            length, rp = _read_varint(data, rp)
            rec_end = rp + length
            rp += 1  # attributes
            ts_delta, rp = _read_varint(data, rp)
            off_delta, rp = _read_varint(data, rp)
            key, rp = _read_vbytes(data, rp)
            value, rp = _read_vbytes(data, rp)
            n_headers, rp = _read_varint(data, rp)
            headers = []
            for _ in range(n_headers):
                hk, rp = _read_vbytes(data, rp)
                hv, rp = _read_vbytes(data, rp)
                headers.append((hk.decode(), hv))
            assert rp == rec_end, f"record at {base_offset + off_delta}: length {length} does not match its fields"
            out.append(Record(base_offset + off_delta, base_ts + ts_delta, key, value, headers))
        pos = end
    return out


def parse_metadata_v1(r: Reader) -> dict[str, tuple[int, bool, int]]:
    """{topic: (error_code, is_internal, partition count)}"""
    def broker(rr):
        rr.i32(); rr.string(); rr.i32(); rr.string()

    def partition(rr):
        rr.i16(); rr.i32(); rr.i32(); rr.array(Reader.i32); rr.array(Reader.i32)

    r.array(broker)
    r.i32()  # controller_id
    out = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        internal = r.i8() != 0
        out[name] = (err, internal, len(r.array(partition)))
    return out


def metadata_v7_body(topics: list[str] | None, allow_auto_topic_creation: bool = False) -> bytes:
    """Metadata v7 (the last non-flexible version with leader epochs and offline replicas)."""
    return metadata_v1_body(topics) + i8(1 if allow_auto_topic_creation else 0)


class MetadataPartition:
    def __init__(self, r: Reader):
        self.error = r.i16()
        self.index = r.i32()
        self.leader = r.i32()
        self.leader_epoch = r.i32()
        self.replicas = r.array(Reader.i32)
        self.isr = r.array(Reader.i32)
        self.offline = r.array(Reader.i32)

    def __repr__(self):
        return (f"p{self.index}(err={self.error} leader={self.leader} epoch={self.leader_epoch} "
                f"replicas={self.replicas} isr={self.isr} offline={self.offline})")


class MetadataV7:
    """A parsed Metadata v7 response: brokers {id: (host, port, rack)}, cluster_id,
    controller_id, topics {name: (error_code, {partition: MetadataPartition})}."""

    def __init__(self, r: Reader):
        r.i32()  # throttle_time_ms
        self.brokers = {}
        for _ in range(r.i32()):
            node_id = r.i32()
            self.brokers[node_id] = (r.string(), r.i32(), r.string())
        self.cluster_id = r.string()
        self.controller_id = r.i32()
        self.topics = {}
        for _ in range(r.i32()):
            err = r.i16()
            name = r.string()
            r.i8()  # is_internal
            parts = r.array(MetadataPartition)
            self.topics[name] = (err, {p.index: p for p in parts})

    def __repr__(self):
        return f"Metadata(brokers={sorted(self.brokers)} controller={self.controller_id} topics={self.topics})"


def parse_metadata_v1_topics(r: Reader) -> dict[str, int]:
    """{topic: error_code}"""
    return {name: err for name, (err, _, _) in parse_metadata_v1(r).items()}


def parse_api_versions_v0(r: Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    """(error_code, {api_key: (min_version, max_version)})"""
    err = r.i16()
    keys = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    return err, keys


# ---- consumer groups (classic protocol) ----------------------------------------------------
# Non-flexible versions where they exist (JoinGroup v3/v5, SyncGroup v3, Heartbeat v3,
# LeaveGroup v3, OffsetCommit v7); OffsetFetch v7/v8 and ListGroups v4 are flexible
# (compact strings/arrays, tagged fields, request header v2, response header v1).
API_OFFSET_COMMIT = 8
API_OFFSET_FETCH = 9
API_FIND_COORDINATOR = 10
API_JOIN_GROUP = 11
API_HEARTBEAT = 12
API_LEAVE_GROUP = 13
API_SYNC_GROUP = 14
API_DESCRIBE_GROUPS = 15
API_LIST_GROUPS = 16

# Kafka error codes used by the group tests
NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
OFFSET_METADATA_TOO_LARGE = 12
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82


TAGS = b"\x00"  # an empty tagged-field section


def join_group_body(group: str, member_id: str = "", protocols: list[tuple[str, bytes]] = (("range", b""),),
                    session_timeout_ms: int = 30000, rebalance_timeout_ms: int = 30000,
                    group_instance_id: str | None = None, protocol_type: str = "consumer",
                    version: int = 5) -> bytes:
    """JoinGroup v1-v5 (v5 adds group_instance_id)."""
    assert 1 <= version <= 5
    body = string(group) + i32(session_timeout_ms) + i32(rebalance_timeout_ms) + string(member_id)
    if version >= 5:
        body += string(group_instance_id)
    return body + string(protocol_type) + array([string(n) + nbytes(m) for n, m in protocols])


class JoinResponse:
    def __init__(self, error_code, generation_id, protocol_name, leader, member_id, members):
        self.error_code = error_code
        self.generation_id = generation_id
        self.protocol_name = protocol_name
        self.leader = leader
        self.member_id = member_id
        self.members = members  # [(member_id, group_instance_id, metadata)]

    def __repr__(self):
        return (f"JoinResponse(error={self.error_code} generation={self.generation_id} "
                f"protocol={self.protocol_name!r} leader={self.leader!r} member_id={self.member_id!r} "
                f"members={self.members!r})")


def parse_join_group(r: Reader, version: int = 5) -> JoinResponse:
    if version >= 2:
        r.i32()  # throttle_time_ms
    err, gen, proto, leader, member = r.i16(), r.i32(), r.string(), r.string(), r.string()

    def m(rr):
        mid = rr.string()
        instance = rr.string() if version >= 5 else None
        n = rr.i32()
        return mid, instance, (b"" if n < 0 else rr.take(n))
    return JoinResponse(err, gen, proto, leader, member, r.array(m))


def sync_group_body(group: str, generation: int, member_id: str, assignments: list[tuple[str, bytes]] = (),
                    group_instance_id: str | None = None) -> bytes:
    """SyncGroup v3."""
    return (string(group) + i32(generation) + string(member_id) + string(group_instance_id)
            + array([string(mid) + nbytes(a) for mid, a in assignments]))


def parse_sync_group(r: Reader) -> tuple[int, bytes]:
    """SyncGroup v3: (error_code, assignment)"""
    r.i32()  # throttle_time_ms
    err = r.i16()
    n = r.i32()
    return err, (b"" if n < 0 else r.take(n))


def heartbeat_body(group: str, generation: int, member_id: str, group_instance_id: str | None = None) -> bytes:
    """Heartbeat v3."""
    return string(group) + i32(generation) + string(member_id) + string(group_instance_id)


def parse_heartbeat(r: Reader) -> int:
    r.i32()  # throttle_time_ms
    return r.i16()


def leave_group_body(group: str, members: list[tuple[str, str | None]]) -> bytes:
    """LeaveGroup v3: members as (member_id, group_instance_id)."""
    return string(group) + array([string(mid) + string(inst) for mid, inst in members])


def parse_leave_group(r: Reader) -> tuple[int, list[tuple[str, str | None, int]]]:
    r.i32()  # throttle_time_ms
    err = r.i16()
    return err, r.array(lambda rr: (rr.string(), rr.string(), rr.i16()))


def offset_commit_v7_body(group: str, offsets: list[tuple[str, int, int, str | None]], generation: int = -1,
                          member_id: str = "", group_instance_id: str | None = None) -> bytes:
    """OffsetCommit v7: offsets as (topic, partition, offset, metadata)."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition, offset, metadata in offsets:
        by_topic.setdefault(topic, []).append(i32(partition) + i64(offset) + i32(-1) + string(metadata))
    return (string(group) + i32(generation) + string(member_id) + string(group_instance_id)
            + array([string(t) + array(ps) for t, ps in by_topic.items()]))


def parse_offset_commit_v7(r: Reader) -> dict[tuple[str, int], int]:
    """{(topic, partition): error_code}"""
    r.i32()  # throttle_time_ms
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            partition = r.i32()
            out[(topic, partition)] = r.i16()
    return out


def offset_commit_v9_body(group: str, offsets: list[tuple[str, int, int, str | None]], generation: int = -1,
                          member_id: str = "", group_instance_id: str | None = None) -> bytes:
    """OffsetCommit v8/v9 (flexible): offsets as (topic, partition, offset, metadata)."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, partition, offset, metadata in offsets:
        by_topic.setdefault(topic, []).append(i32(partition) + i64(offset) + i32(-1) + compact_string(metadata) + TAGS)
    return (compact_string(group) + i32(generation) + compact_string(member_id) + compact_string(group_instance_id)
            + compact_array([compact_string(t) + compact_array(ps) + TAGS for t, ps in by_topic.items()]) + TAGS)


def parse_offset_commit_v9(r: "FlexReader") -> dict[tuple[str, int], int]:
    """{(topic, partition): error_code}"""
    r.i32()  # throttle_time_ms

    def topic(rr):
        name = rr.compact_string()

        def part(rp):
            index, err = rp.i32(), rp.i16()
            rp.tags()
            return index, err
        parts = rr.compact_array(part)
        rr.tags()
        return [((name, p), e) for p, e in parts]
    out = dict(x for t in r.compact_array(topic) for x in t)
    r.tags()
    return out


class FlexReader(Reader):
    """Reads the compact encodings of flexible versions."""

    def compact_array(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item(self) for _ in range(n - 1)]

    def tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def _offset_fetch_topics(topics: dict[str, list[int]] | None) -> bytes:
    if topics is None:
        return compact_array(None)
    return compact_array([compact_string(t) + compact_array([i32(p) for p in ps]) + TAGS
                          for t, ps in topics.items()])


def offset_fetch_v7_body(group: str, topics: dict[str, list[int]] | None, require_stable: bool = False) -> bytes:
    """OffsetFetch v7 (flexible): one group; topics None asks for every committed offset."""
    return compact_string(group) + _offset_fetch_topics(topics) + i8(int(require_stable)) + TAGS


def offset_fetch_v8_body(groups: dict[str, dict[str, list[int]] | None], require_stable: bool = False) -> bytes:
    """OffsetFetch v8 (flexible): several groups in one request."""
    return (compact_array([compact_string(g) + _offset_fetch_topics(ts) + TAGS for g, ts in groups.items()])
            + i8(int(require_stable)) + TAGS)


def _fetched_partitions(r: FlexReader) -> tuple[str, list[tuple[int, int, str | None, int]]]:
    name = r.compact_string()

    def part(rr):
        index, offset, _epoch, metadata, err = rr.i32(), rr.i64(), rr.i32(), rr.compact_string(), rr.i16()
        rr.tags()
        return index, offset, metadata, err
    parts = r.compact_array(part)
    r.tags()
    return name, parts


def _flatten(topics) -> dict[tuple[str, int], tuple[int, str | None, int]]:
    return {(t, p): (off, meta, err) for t, parts in topics for p, off, meta, err in parts}


def parse_offset_fetch_v7(r: FlexReader) -> tuple[int, dict[tuple[str, int], tuple[int, str | None, int]]]:
    """(group error, {(topic, partition): (committed_offset, metadata, error_code)})"""
    r.i32()  # throttle_time_ms
    topics = r.compact_array(_fetched_partitions)
    err = r.i16()
    r.tags()
    return err, _flatten(topics)


def parse_offset_fetch_v8(r: FlexReader) -> dict[str, tuple[int, dict[tuple[str, int], tuple[int, str | None, int]]]]:
    """{group: (group error, {(topic, partition): (committed_offset, metadata, error_code)})}"""
    r.i32()  # throttle_time_ms

    def group(rr):
        gid = rr.compact_string()
        topics = rr.compact_array(_fetched_partitions)
        err = rr.i16()
        rr.tags()
        return gid, (err, _flatten(topics))
    out = dict(r.compact_array(group))
    r.tags()
    return out


def flexible_request(conn: "Connection", api_key: int, api_version: int, body: bytes) -> FlexReader:
    """Sends a flexible-version request (header v2) and returns the body after response header v1."""
    cid = conn.send(api_key, api_version, body, flexible_header=True)
    r = FlexReader(conn.recv_frame())
    got = r.i32()
    assert got == cid, f"correlation id {got}, expected {cid}"
    r.tags()
    return r




# ---- OffsetForLeaderEpoch (API 23) v3 (classic) and v4 (flexible) ---------------------
API_OFFSET_FOR_LEADER_EPOCH = 23


def offset_for_leader_epoch_body(version: int, queries: dict[str, list[tuple[int, int, int]]],
                                 replica_id: int = -1) -> bytes:
    """queries: topic -> [(partition, current_leader_epoch, leader_epoch)]."""
    flexible = version >= 4
    arr, text, tags = (compact_array, compact_string, b"\x00") if flexible else (array, string, b"")
    topics = [text(t) + arr([i32(p) + i32(cur) + i32(ep) + tags for p, cur, ep in parts]) + tags
              for t, parts in queries.items()]
    return i32(replica_id) + arr(topics) + tags


def parse_offset_for_leader_epoch(r, version: int) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(topic, partition) -> (error_code, leader_epoch, end_offset); `r` after the response header."""
    flexible = version >= 4
    r.i32()  # throttle_time_ms
    out = {}

    def partition(rr):
        err, p, epoch, end = rr.i16(), rr.i32(), rr.i32(), rr.i64()
        if flexible:
            rr.tags()
        return p, (err, epoch, end)

    def topic(rr):
        name = rr.compact_string() if flexible else rr.string()
        parts = rr.compact_array(partition) if flexible else rr.array(partition)
        if flexible:
            rr.tags()
        for p, v in parts:
            out[(name, p)] = v

    if flexible:
        r.compact_array(topic)
        r.tags()
    else:
        r.array(topic)
    return out


def offset_for_leader_epoch(conn: "Connection", version: int, queries: dict[str, list[tuple[int, int, int]]],
                            replica_id: int = -1) -> dict[tuple[str, int], tuple[int, int, int]]:
    body = offset_for_leader_epoch_body(version, queries, replica_id)
    r = flexible_request(conn, API_OFFSET_FOR_LEADER_EPOCH, version, body) if version >= 4 \
        else conn.request(API_OFFSET_FOR_LEADER_EPOCH, version, body)
    return parse_offset_for_leader_epoch(r, version)
