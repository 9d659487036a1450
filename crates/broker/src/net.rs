//! The network layer: accept connections, read size-prefixed frames, decode the
//! request header, dispatch, and write responses in request order.
//!
//! As in Kafka, a connection's requests are handled one at a time, so responses
//! leave in the order requests arrived; clients pipeline across the socket buffer.
//!
//! Everything a connection holds is bounded: `max.connections` and
//! `max.connections.per.ip` bound how many there are, an idle connection holds
//! no buffer and is closed after `connections.max.idle.ms`, a request must
//! arrive whole within `potok.request.receive.timeout.ms` of its first byte
//! (and a client must take some of a response within that time),
//! the read buffer grows only with the bytes that actually arrive and is
//! released after each request, and Fetch responses share one memory budget
//! (`potok.fetch.memory.bytes`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::LimitsConfig;
use crate::group::ClientInfo;
use crate::handlers::{self, Reply};
use crate::Broker;

/// A read asks for at least this much room, so small pipelined requests
/// arrive in one read.
const MIN_READ: usize = 8 * 1024;
/// A request's buffer grows by at most this much ahead of the bytes received,
/// so a lying size prefix allocates little.
const MAX_READ_AHEAD: usize = 64 * 1024;
/// Buffers larger than this are released after use rather than kept.
const KEEP_BUFFER: usize = 64 * 1024;
/// Pipelined responses are written once this many bytes are waiting.
const WRITE_BATCH: usize = 1 << 20;

/// The broker-wide connection and memory limits, shared by every listener.
pub(crate) struct NetLimits {
    connections: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Bytes the Fetch responses in flight may hold together.
    pub(crate) fetch_memory: Arc<Semaphore>,
    config: LimitsConfig,
}

impl NetLimits {
    /// The limits of `config`.
    pub(crate) fn new(config: &LimitsConfig) -> Arc<NetLimits> {
        Arc::new(NetLimits {
            connections: Arc::new(Semaphore::new(config.max_connections.min(Semaphore::MAX_PERMITS))),
            per_ip: Mutex::new(HashMap::new()),
            fetch_memory: Arc::new(Semaphore::new(config.fetch_memory_bytes.min(u32::MAX as usize))),
            config: config.clone(),
        })
    }

    fn max_for(&self, ip: IpAddr) -> usize {
        self.config
            .max_connections_per_ip_overrides
            .iter()
            .find(|(addr, _)| *addr == ip)
            .map_or(self.config.max_connections_per_ip, |(_, n)| *n)
    }

    /// Counts a new connection from `ip`, or None if `ip` has its maximum.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let max = self.max_for(ip);
        let mut per_ip = self.per_ip.lock();
        let open = per_ip.entry(ip).or_insert(0);
        if *open >= max {
            if *open == 0 {
                per_ip.remove(&ip);
            }
            return None;
        }
        *open += 1;
        Some(IpSlot { limits: Arc::clone(self), ip })
    }
}

/// One connection counted against its address; uncounted when dropped.
struct IpSlot {
    limits: Arc<NetLimits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut per_ip = self.limits.per_ip.lock();
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Accepts connections forever, one task each. At `max.connections` it stops
/// accepting until one closes (new connections wait in the listen backlog), as
/// Kafka's acceptor does; a connection over `max.connections.per.ip` is closed.
pub(crate) async fn accept_loop(broker: Arc<Broker>, listener: TcpListener, limits: Arc<NetLimits>) {
    loop {
        let Ok(slot) = Arc::clone(&limits.connections).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(ip_slot) = limits.admit(peer.ip()) else {
                    tracing::info!(
                        "refused connection from /{}: it already has the maximum of {} connections (max.connections.per.ip)",
                        peer.ip(),
                        limits.max_for(peer.ip())
                    );
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let broker = Arc::clone(&broker);
                let limits = Arc::clone(&limits);
                tokio::spawn(async move {
                    if let Err(reason) = serve_connection(broker, stream, peer, &limits, Plane::Client, BytesMut::new()).await {
                        tracing::debug!(%peer, %reason, "connection closed");
                    }
                    drop((slot, ip_slot));
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Which APIs a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plane {
    /// A client listener: the broker's APIs ([`handlers`]).
    Client,
    /// The CONTROLLER listener's Kafka connections: the controller APIs
    /// ([`crate::controller_api`]).
    Controller,
}

/// Why a connection was closed.
type CloseReason = String;

/// Serves a Kafka connection on the CONTROLLER listener whose first bytes
/// (`initial`, read to tell it from a quorum connection) are the start of
/// its first request.
pub(crate) async fn serve_controller_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    limits: &NetLimits,
    initial: &[u8],
) -> Result<(), CloseReason> {
    serve_connection(broker, stream, peer, limits, Plane::Controller, BytesMut::from(initial)).await
}

async fn serve_connection(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    limits: &NetLimits,
    plane: Plane,
    mut buf: BytesMut,
) -> Result<(), CloseReason> {
    // Kafka prints client hosts as Java's InetAddress.toString does.
    let client_host = format!("/{}", peer.ip());
    let max = broker.config.socket_request_max_bytes;
    let idle = u64::try_from(limits.config.connections_max_idle_ms).ok().map(Duration::from_millis);
    let receive_timeout = Duration::from_millis(limits.config.request_receive_timeout_ms);
    let mut out = BytesMut::new();
    // Fetch memory held by responses waiting in `out`.
    let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
    loop {
        if buf.is_empty() {
            // Between requests a connection holds no read buffer.
            if buf.capacity() > 0 {
                buf = BytesMut::new();
            }
            let readable = stream.readable();
            match idle {
                Some(idle) => tokio::time::timeout(idle, readable).await.map_err(|_| {
                    format!("idle for {} ms (connections.max.idle.ms)", idle.as_millis())
                })?,
                None => readable.await,
            }
            .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + receive_timeout;
        if !fill(&mut stream, &mut buf, 4, deadline).await? {
            return Ok(());
        }
        let size = (&buf[..4]).get_i32();
        if size < 0 || size as usize > max {
            return Err(format!("request size {size} is outside 0..={max} (socket.request.max.bytes)"));
        }
        let whole = 4 + size as usize;
        if !fill(&mut stream, &mut buf, whole, deadline).await? {
            return Err("connection closed mid-request".into());
        }
        let mut frame = if buf.len() == whole {
            // The buffer's only owner, so produce can patch its records in place.
            std::mem::take(&mut buf).freeze()
        } else {
            buf.split_to(whole).freeze()
        };
        frame.advance(4);
        let reply = match handle_frame(&broker, frame, &client_host, limits, plane).await {
            Ok(reply) => reply,
            Err(reason) => {
                // Earlier pipelined requests still get their responses first.
                if !out.is_empty() {
                    let _ = write_all(&mut stream, &out, receive_timeout).await;
                }
                return Err(reason);
            }
        };
        if let Some(reply) = reply {
            let start = out.len();
            out.put_i32(0);
            reply.header.encode(&mut out, reply.header_version).map_err(|e| e.to_string())?;
            reply.body.encode(&mut out, reply.version).map_err(|e| e.to_string())?;
            let len = (out.len() - start - 4) as i32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            held.extend(reply.fetch_memory);
        }
        // Pipelined requests share one write, unless the responses grow large
        // or hold Fetch memory (a pipelined fetch waiting for memory that this
        // connection's own unwritten response holds would wait forever).
        if out.is_empty() || (has_whole_frame(&buf) && out.len() < WRITE_BATCH && held.is_empty()) {
            continue;
        }
        write_all(&mut stream, &out, receive_timeout).await?;
        held.clear();
        if out.capacity() > KEEP_BUFFER {
            out = BytesMut::new();
        } else {
            out.clear();
        }
    }
}

/// Writes `out`, closing the connection if the client takes no bytes for
/// `stall` (a client that stops reading would otherwise hold its responses,
/// and their Fetch memory, forever).
async fn write_all(stream: &mut TcpStream, out: &[u8], stall: Duration) -> Result<(), CloseReason> {
    let mut written = 0;
    while written < out.len() {
        let n = tokio::time::timeout(stall, stream.write(&out[written..]))
            .await
            .map_err(|_| {
                format!(
                    "client read nothing of its response for {} ms (potok.request.receive.timeout.ms)",
                    stall.as_millis()
                )
            })?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed while writing".into());
        }
        written += n;
    }
    Ok(())
}

/// True if `buf` starts with a whole size-prefixed frame.
fn has_whole_frame(buf: &[u8]) -> bool {
    buf.len() >= 4 && {
        let size = (&buf[..4]).get_i32();
        size >= 0 && buf.len() - 4 >= size as usize
    }
}

/// Reads until `buf` holds `need` bytes, growing it only with what arrives.
/// False if the peer closed the connection before sending anything more.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut, need: usize, deadline: Instant) -> Result<bool, CloseReason> {
    while buf.len() < need {
        if buf.capacity() == buf.len() {
            let ahead = (need - buf.len()).min(buf.len().max(MAX_READ_AHEAD));
            buf.reserve(ahead.max(MIN_READ));
        }
        let n = tokio::time::timeout_at(deadline, stream.read_buf(buf))
            .await
            .map_err(|_| {
                format!(
                    "request not received whole in time (potok.request.receive.timeout.ms): {} of {need} bytes",
                    buf.len()
                )
            })?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            if buf.is_empty() {
                return Ok(false);
            }
            return Err(format!("connection closed mid-request ({} of {need} bytes)", buf.len()));
        }
    }
    Ok(true)
}

/// An encoded-to-be response.
pub(crate) struct Response {
    header: ResponseHeader,
    header_version: i16,
    body: kafka_protocol::messages::ResponseKind,
    version: i16,
    /// The Fetch memory this response's records hold until they are written.
    fetch_memory: Option<OwnedSemaphorePermit>,
}

/// Decodes one request frame and runs its handler. `Ok(None)`: no response is
/// sent (acks=0 produce). `Err`: the connection is closed, as Kafka does for
/// requests it cannot parse.
async fn handle_frame(
    broker: &Arc<Broker>,
    mut frame: Bytes,
    client_host: &str,
    limits: &NetLimits,
    plane: Plane,
) -> Result<Option<Response>, CloseReason> {
    if frame.len() < 8 {
        return Err("request shorter than its header".into());
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let supported = match plane {
        Plane::Client => handlers::supported_versions(api_key),
        Plane::Controller => crate::controller_api::supported_versions(api_key),
    };
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a too-new ApiVersions with a v0 response carrying
            // UNSUPPORTED_VERSION and our ranges, so the client can retry.
            let body = match plane {
                Plane::Client => handlers::api_versions::unsupported_version_response(),
                Plane::Controller => crate::controller_api::unsupported_version_response(),
            };
            return Ok(Some(Response {
                header: ResponseHeader::default().with_correlation_id(correlation_id),
                header_version: 0,
                body,
                version: 0,
                fetch_memory: None,
            }));
        }
        return Err(format!("unsupported version {version} of {api_key:?}"));
    }
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| format!("bad request header: {e}"))?;
    // Only group members are recorded with their client id and host; other
    // requests (the produce and fetch hot path) skip the copies.
    let client = if matches!(api_key, ApiKey::JoinGroup | ApiKey::ConsumerGroupHeartbeat) {
        ClientInfo {
            client_id: header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default(),
            client_host: client_host.to_string(),
        }
    } else {
        ClientInfo::default()
    };
    drop(header);
    let request = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("cannot decode {api_key:?} v{version}: {e}"))?;
    // Release the frame (and the header's slices of it) so a produce request's
    // records can be patched in place without a copy.
    drop(frame);
    let response = |body, fetch_memory| Response {
        body,
        header: ResponseHeader::default().with_correlation_id(correlation_id),
        header_version: api_key.response_header_version(version),
        version,
        fetch_memory,
    };
    if plane == Plane::Controller {
        return match crate::controller_api::handle(broker, version, request).await {
            Reply::Response(body) => Ok(Some(response(*body, None))),
            Reply::None => Ok(None),
            Reply::Close => Err(format!("{api_key:?} closes the connection")),
        };
    }
    if let RequestKind::Fetch(req) = request {
        // Fetch is dispatched here: its response holds memory from the shared
        // budget until it has been written.
        let (body, memory) = handlers::fetch::handle(broker, req, version, &limits.fetch_memory).await;
        return Ok(Some(response(body.into(), memory)));
    }
    match handlers::handle(broker, &client, version, request).await {
        Reply::Response(body) => Ok(Some(response(*body, None))),
        Reply::None => Ok(None),
        Reply::Close => Err("acks=0 produce failed".into()),
    }
}
