//! One TCP connection to one broker: framing, correlation ids, version negotiation.
//!
//! Requests are pipelined: [`Connection::send`] may be called concurrently; a writer
//! task writes frames in the order they were queued and a reader task hands each
//! response to the caller waiting on its correlation id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Settings of a broker connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// How long to wait for the TCP connection to open.
    pub connect_timeout: Duration,
    /// How long to wait for a response (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// Largest response frame accepted; a larger size prefix closes the connection.
    pub max_response_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "potok-client".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            // Fetch responses default to at most 50 MiB (`fetch.max.bytes`); leave headroom.
            max_response_bytes: 128 * 1024 * 1024,
        }
    }
}

type Waiter = oneshot::Sender<Result<Bytes>>;

/// State shared by the connection handle and its reader/writer tasks.
struct Shared {
    addr: String,
    state: Mutex<WaitState>,
}

#[derive(Default)]
struct WaitState {
    waiters: HashMap<i32, Waiter>,
    /// Set once the connection is unusable; new requests fail at once.
    closed: Option<String>,
}

impl Shared {
    fn close(&self, why: String) {
        let waiters = match self.state.lock() {
            Ok(mut st) => {
                if st.closed.is_none() {
                    st.closed = Some(why);
                }
                std::mem::take(&mut st.waiters)
            }
            Err(_) => return,
        };
        // Dropping the senders wakes every waiter with "disconnected".
        drop(waiters);
    }

    fn is_closed(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.closed.is_some())
            .unwrap_or(true)
    }
}

/// A TCP connection to one broker, with the API versions both sides speak.
pub struct Connection {
    shared: Arc<Shared>,
    config: ConnectionConfig,
    client_id: StrBytes,
    next_correlation_id: AtomicI32,
    /// Frames for the writer task, each with whom to tell once it is written.
    outbound: mpsc::UnboundedSender<(Bytes, Option<oneshot::Sender<()>>)>,
    /// Per API key: the intersection of the broker's and this client's versions.
    versions: HashMap<i16, VersionRange>,
    /// Dropping this stops the reader task.
    _shutdown: oneshot::Sender<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

/// A response not yet received, for a request already queued on the connection.
pub(crate) struct PendingResponse<Resp> {
    rx: oneshot::Receiver<Result<Bytes>>,
    correlation_id: i32,
    version: i16,
    shared: Arc<Shared>,
    timeout: Duration,
    _resp: std::marker::PhantomData<fn() -> Resp>,
}

impl<Resp: Decodable + HeaderVersion> PendingResponse<Resp> {
    /// Waits up to `timeout` instead of the connection's `request_timeout` (JoinGroup
    /// answers only when the rebalance completes).
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Waits for the response and decodes it.
    pub(crate) async fn wait(self) -> Result<Resp> {
        let frame = match tokio::time::timeout(self.timeout, self.rx).await {
            Ok(Ok(frame)) => frame?,
            Ok(Err(_)) => {
                return Err(Error::Disconnected {
                    addr: self.shared.addr.clone(),
                });
            }
            Err(_) => {
                if let Ok(mut st) = self.shared.state.lock() {
                    st.waiters.remove(&self.correlation_id);
                }
                return Err(Error::Timeout(
                    self.timeout,
                    format!("waiting for a response from {}", self.shared.addr),
                ));
            }
        };
        decode_response::<Resp>(frame, self.version, self.correlation_id)
    }
}

fn decode_response<Resp: Decodable + HeaderVersion>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<Resp> {
    let header = ResponseHeader::decode(&mut frame, Resp::header_version(version))
        .map_err(|e| Error::protocol(format!("bad response header: {e:#}")))?;
    if header.correlation_id != correlation_id {
        return Err(Error::protocol(format!(
            "response correlation id {} does not match request {correlation_id}",
            header.correlation_id
        )));
    }
    Resp::decode(&mut frame, version)
        .map_err(|e| Error::protocol(format!("cannot decode response v{version}: {e:#}")))
}

impl Connection {
    /// Opens a connection to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        let stream =
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(source)) => {
                    return Err(Error::Connect {
                        addr: addr.to_owned(),
                        error: Arc::new(source),
                    })
                }
                Err(_) => {
                    return Err(Error::Timeout(
                        config.connect_timeout,
                        format!("connecting to {addr}"),
                    ));
                }
            };
        // Small requests (metadata, admin) should not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let shared = Arc::new(Shared {
            addr: addr.to_owned(),
            state: Mutex::new(WaitState::default()),
        });
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = oneshot::channel();
        tokio::spawn(write_loop(write, outbound_rx, shared.clone()));
        tokio::spawn(read_loop(
            read,
            shared.clone(),
            config.max_response_bytes,
            shutdown_rx,
        ));
        let mut conn = Connection {
            shared,
            client_id: StrBytes::from_string(config.client_id.clone()),
            config,
            next_correlation_id: AtomicI32::new(1),
            outbound,
            versions: HashMap::new(),
            _shutdown: shutdown,
        };
        conn.negotiate_versions().await?;
        Ok(conn)
    }

    /// The broker address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// Whether the connection has failed or closed; a closed connection fails every request.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The versions of `api` that both this client and the broker speak, if any.
    pub fn versions(&self, api: ApiKey) -> Option<VersionRange> {
        self.versions.get(&(api as i16)).copied()
    }

    /// The highest version of request `R` that both sides speak.
    pub fn version<R: Request>(&self) -> Result<i16> {
        match self.versions.get(&R::KEY) {
            Some(range) if !range.is_empty() => Ok(range.max),
            _ => Err(Error::UnsupportedApi {
                addr: self.shared.addr.clone(),
                api: api_name(R::KEY),
            }),
        }
    }

    /// Sends `req` with the highest common version and waits for its response.
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.send_version(req, version).await
    }

    /// Sends `req` encoded as `version` and waits for its response.
    pub async fn send_version<R: Request>(&self, req: &R, version: i16) -> Result<R::Response> {
        self.enqueue(req, version)?.wait().await
    }

    /// Sends `req` with the highest common version, waiting up to `timeout` for the
    /// response instead of `request_timeout`.
    pub async fn send_with_timeout<R: Request>(
        &self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.enqueue(req, version)?
            .with_timeout(timeout)
            .wait()
            .await
    }

    /// Sends a request the broker will not answer (a Produce with acks=0).
    /// The receiver completes once the request is written to the socket (as
    /// Kafka's producer counts an acks=0 send done); it fails if the
    /// connection closes first.
    pub fn send_without_response<R: Request>(&self, req: &R, version: i16) -> Result<oneshot::Receiver<()>> {
        let correlation_id = self.next_correlation_id();
        let frame = self.encode_frame(req, version, correlation_id)?;
        self.check_open()?;
        let (written, on_written) = oneshot::channel();
        self.outbound.send((frame, Some(written))).map_err(|_| Error::Disconnected {
            addr: self.shared.addr.clone(),
        })?;
        Ok(on_written)
    }

    /// Queues `req` now (so requests keep the order of these calls) and returns a
    /// handle that waits for the response.
    pub(crate) fn enqueue<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<PendingResponse<R::Response>> {
        let correlation_id = self.next_correlation_id();
        let frame = self.encode_frame(req, version, correlation_id)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.state.lock().map_err(|_| Error::Disconnected {
                addr: self.shared.addr.clone(),
            })?;
            if st.closed.is_some() {
                return Err(Error::Disconnected {
                    addr: self.shared.addr.clone(),
                });
            }
            st.waiters.insert(correlation_id, tx);
        }
        if self.outbound.send((frame, None)).is_err() {
            self.shared.close("writer stopped".to_owned());
            return Err(Error::Disconnected {
                addr: self.shared.addr.clone(),
            });
        }
        Ok(PendingResponse {
            rx,
            correlation_id,
            version,
            shared: self.shared.clone(),
            timeout: self.config.request_timeout,
            _resp: std::marker::PhantomData,
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            Err(Error::Disconnected {
                addr: self.shared.addr.clone(),
            })
        } else {
            Ok(())
        }
    }

    fn next_correlation_id(&self) -> i32 {
        // Wraps after 2^31 requests; ids only need to be unique among requests in flight.
        self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn encode_frame<R: Request>(
        &self,
        req: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes> {
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let header_version = R::header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| req.compute_size(version).map(|b| h + b))
            .map_err(|e| {
                Error::protocol(format!(
                    "cannot encode {} v{version}: {e:#}",
                    api_name(R::KEY)
                ))
            })?;
        let size = i32::try_from(size)
            .map_err(|_| Error::protocol(format!("request of {size} bytes is too large")))?;
        let mut buf = BytesMut::with_capacity(size as usize + 4);
        buf.put_i32(size);
        header
            .encode(&mut buf, header_version)
            .and_then(|()| req.encode(&mut buf, version))
            .map_err(|e| {
                Error::protocol(format!(
                    "cannot encode {} v{version}: {e:#}",
                    api_name(R::KEY)
                ))
            })?;
        Ok(buf.freeze())
    }

    /// Asks the broker which versions it speaks. A broker that does not know our
    /// ApiVersions version answers in v0 with UNSUPPORTED_VERSION and its own range,
    /// so we retry once with the highest version it named.
    async fn negotiate_versions(&mut self) -> Result<()> {
        let ours = ApiKey::ApiVersions.valid_versions();
        let mut version = ours.max;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            req.client_software_name = StrBytes::from_static_str("potok-client");
            req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            let correlation_id = self.next_correlation_id();
            let frame = self.encode_frame(&req, version, correlation_id)?;
            let (tx, rx) = oneshot::channel();
            if let Ok(mut st) = self.shared.state.lock() {
                st.waiters.insert(correlation_id, tx);
            }
            self.outbound.send((frame, None)).map_err(|_| Error::Disconnected {
                addr: self.shared.addr.clone(),
            })?;
            let frame = match tokio::time::timeout(self.config.request_timeout, rx).await {
                Ok(Ok(frame)) => frame?,
                Ok(Err(_)) => {
                    return Err(Error::Disconnected {
                        addr: self.shared.addr.clone(),
                    })
                }
                Err(_) => {
                    return Err(Error::Timeout(
                        self.config.request_timeout,
                        format!("ApiVersions with {}", self.shared.addr),
                    ))
                }
            };
            // The error code is the first field of every ApiVersions response version,
            // right after the 4-byte (always v0) response header.
            let error_code = frame
                .get(4..6)
                .map(|b| i16::from_be_bytes([b[0], b[1]]))
                .unwrap_or(-1);
            if error_code == 35 {
                let resp = decode_response::<ApiVersionsResponse>(frame, 0, correlation_id)?;
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                let next = theirs.min(ours.max);
                if next >= version {
                    break;
                }
                version = next;
                continue;
            }
            let resp = decode_response::<ApiVersionsResponse>(frame, version, correlation_id)?;
            crate::error::check(resp.error_code, None)?;
            self.versions = resp
                .api_keys
                .iter()
                .filter_map(|k| {
                    let api = ApiKey::try_from(k.api_key).ok()?;
                    let theirs = VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    };
                    let common = api.valid_versions().intersect(&theirs);
                    Some((k.api_key, common))
                })
                .collect();
            return Ok(());
        }
        Err(Error::UnsupportedApi {
            addr: self.shared.addr.clone(),
            api: "ApiVersions".to_owned(),
        })
    }
}

/// The API's name as Kafka spells it, e.g. `Produce`.
pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("api key {key}"),
    }
}

async fn write_loop(
    write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<(Bytes, Option<oneshot::Sender<()>>)>,
    shared: Arc<Shared>,
) {
    let mut out = BufWriter::new(write);
    let mut written = Vec::new();
    while let Some((frame, notify)) = rx.recv().await {
        written.extend(notify);
        let mut result = out.write_all(&frame).await;
        // Coalesce whatever else is already queued into the same flush.
        while result.is_ok() {
            match rx.try_recv() {
                Ok((frame, notify)) => {
                    written.extend(notify);
                    result = out.write_all(&frame).await;
                }
                Err(_) => break,
            }
        }
        if let Err(e) = result.and(out.flush().await) {
            shared.close(format!("write failed: {e}"));
            return;
        }
        for notify in written.drain(..) {
            let _ = notify.send(());
        }
    }
    let _ = out.shutdown().await;
}

async fn read_loop(
    mut read: OwnedReadHalf,
    shared: Arc<Shared>,
    max_response_bytes: usize,
    mut shutdown: oneshot::Receiver<()>,
) {
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut read, &shared.addr, max_response_bytes) => frame,
            _ = &mut shutdown => {
                shared.close("connection dropped".to_owned());
                return;
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let waiters = match shared.state.lock() {
                    Ok(mut st) => {
                        st.closed = Some(e.to_string());
                        std::mem::take(&mut st.waiters)
                    }
                    Err(_) => return,
                };
                // Tell every waiter why (size limit, I/O error), not just "disconnected".
                for (_, w) in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                return;
            }
        };
        let correlation_id = frame.clone().get_i32();
        let waiter = shared
            .state
            .lock()
            .ok()
            .and_then(|mut st| st.waiters.remove(&correlation_id));
        match waiter {
            Some(w) => {
                let _ = w.send(Ok(frame));
            }
            None => {
                tracing::debug!(addr = %shared.addr, correlation_id, "dropping response nobody waits for");
            }
        }
    }
}

async fn read_frame(read: &mut OwnedReadHalf, addr: &str, max: usize) -> Result<Bytes> {
    let size = match read.read_i32().await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(Error::Disconnected {
                addr: addr.to_owned(),
            })
        }
        Err(source) => {
            return Err(Error::Io {
                addr: addr.to_owned(),
                error: Arc::new(source),
            })
        }
    };
    // A response holds at least its correlation id.
    if size < 4 {
        return Err(Error::protocol(format!(
            "invalid response size {size} from {addr}"
        )));
    }
    if size as usize > max {
        return Err(Error::ResponseTooLarge {
            addr: addr.to_owned(),
            size: size.into(),
            max,
        });
    }
    let mut buf = vec![0u8; size as usize];
    read.read_exact(&mut buf)
        .await
        .map_err(|source| Error::Io {
            addr: addr.to_owned(),
            error: Arc::new(source),
        })?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A peer that answers the first request with `reply` (a whole frame, size included).
    async fn peer(reply: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut size = [0u8; 4];
                if sock.read_exact(&mut size).await.is_ok() {
                    let mut req = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
                    let _ = sock.read_exact(&mut req).await;
                    let _ = sock.write_all(&reply).await;
                    // Keep the socket open so only the size check can fail the client.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn an_oversized_response_frame_is_refused_before_allocation() {
        let addr = peer(i32::MAX.to_be_bytes().to_vec()).await;
        let config = ConnectionConfig {
            max_response_bytes: 1024,
            ..ConnectionConfig::default()
        };
        let err = Connection::connect(&addr, config).await.err();
        assert!(
            matches!(err, Some(Error::ResponseTooLarge { size, max: 1024, .. }) if size == i64::from(i32::MAX)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_response_for_an_unknown_correlation_id_is_not_delivered_to_a_caller() {
        // size 4 + correlation id 999 (the client's first request uses id 1).
        let mut reply = 4i32.to_be_bytes().to_vec();
        reply.extend(999i32.to_be_bytes());
        let addr = peer(reply).await;
        let config = ConnectionConfig {
            request_timeout: Duration::from_millis(300),
            ..ConnectionConfig::default()
        };
        // The stray response is dropped, so the real one never comes.
        let err = Connection::connect(&addr, config).await.err();
        assert!(matches!(err, Some(Error::Timeout(..))), "{err:?}");
    }
}
