//! The network layer: accept connections, read size-prefixed frames, decode the
//! request header, dispatch, and write responses in request order.
//!
//! As in Kafka, a connection's requests are handled one at a time, so responses
//! leave in the order requests arrived; clients pipeline across the socket buffer.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};

use crate::group::ClientInfo;
use crate::handlers::{self, Reply};
use crate::Broker;

/// Accepts connections forever, one task each.
pub(crate) async fn accept_loop(broker: Arc<Broker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let broker = Arc::clone(&broker);
                tokio::spawn(async move {
                    if let Err(reason) = serve_connection(broker, stream, peer).await {
                        tracing::debug!(%peer, %reason, "connection closed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection was closed.
type CloseReason = String;

async fn serve_connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) -> Result<(), CloseReason> {
    // Kafka prints client hosts as Java's InetAddress.toString does.
    let client_host = format!("/{}", peer.ip());
    let (read, write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, read);
    let mut writer = BufWriter::with_capacity(64 * 1024, write);
    let max = broker.config.socket_request_max_bytes;
    let mut out = BytesMut::new();
    loop {
        let size = match reader.read_i32().await {
            Ok(size) => size,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if size < 0 || size as usize > max {
            return Err(format!(
                "request size {size} is outside 0..={max} (socket.request.max.bytes)"
            ));
        }
        // Read incrementally so a lying size prefix cannot make us allocate more
        // than the client actually sends.
        let mut frame = Vec::with_capacity((size as usize).min(1 << 20));
        let n = (&mut reader).take(size as u64).read_to_end(&mut frame).await.map_err(|e| e.to_string())?;
        if n != size as usize {
            return Err("connection closed mid-request".into());
        }
        let frame = Bytes::from(frame);
        let Some(reply) = handle_frame(&broker, frame, &client_host).await? else {
            continue;
        };
        out.clear();
        out.put_i32(0);
        reply.header.encode(&mut out, reply.header_version).map_err(|e| e.to_string())?;
        reply.body.encode(&mut out, reply.version).map_err(|e| e.to_string())?;
        let len = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        writer.write_all(&out).await.map_err(|e| e.to_string())?;
        // Flush only when no further request is already buffered, so pipelined
        // requests share one write.
        if reader.buffer().is_empty() {
            writer.flush().await.map_err(|e| e.to_string())?;
        }
        if out.capacity() > 4 << 20 {
            out = BytesMut::new();
        }
    }
}

/// An encoded-to-be response.
pub(crate) struct Response {
    header: ResponseHeader,
    header_version: i16,
    body: kafka_protocol::messages::ResponseKind,
    version: i16,
}

/// Decodes one request frame and runs its handler. `Ok(None)`: no response is
/// sent (acks=0 produce). `Err`: the connection is closed, as Kafka does for
/// requests it cannot parse.
async fn handle_frame(broker: &Arc<Broker>, mut frame: Bytes, client_host: &str) -> Result<Option<Response>, CloseReason> {
    if frame.len() < 8 {
        return Err("request shorter than its header".into());
    }
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let correlation_id = (&frame[4..8]).get_i32();
    let api_key = ApiKey::try_from(raw_key).map_err(|_| format!("unknown API key {raw_key}"))?;
    let supported = handlers::supported_versions(api_key);
    let in_range = supported.is_some_and(|(min, max)| (min..=max).contains(&version));
    if !in_range {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a too-new ApiVersions with a v0 response carrying
            // UNSUPPORTED_VERSION and our ranges, so the client can retry.
            let body = handlers::api_versions::unsupported_version_response();
            return Ok(Some(Response {
                header: ResponseHeader::default().with_correlation_id(correlation_id),
                header_version: 0,
                body,
                version: 0,
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
    match handlers::handle(broker, &client, version, request).await {
        Reply::Response(body) => Ok(Some(Response {
            body: *body,
            header: ResponseHeader::default().with_correlation_id(correlation_id),
            header_version: api_key.response_header_version(version),
            version,
        })),
        Reply::None => Ok(None),
        Reply::Close => Err("acks=0 produce failed".into()),
    }
}
