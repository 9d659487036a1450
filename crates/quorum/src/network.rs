//! The TCP transport between controllers.
//!
//! A connection carries request/response pairs, one at a time, each a frame
//! `[length u32 big-endian][JSON]` of at most [`MAX_FRAME_BYTES`]. Requests are
//! openraft's AppendEntries, Vote and InstallSnapshot (chunked), plus Propose:
//! a client write forwarded to the leader so that any controller can propose
//! records, and Fetch: an observer pulling committed entries (`observer.rs`).
//! An oversized, truncated or undecodable frame closes the connection; so does a peer that sends nothing for [`IDLE_TIMEOUT`] or takes longer than
//! [`FRAME_TIMEOUT`] to finish a frame it started.
//!
//! A connection opens with [`PREFACE`], four bytes that can never begin a
//! Kafka request (a Kafka frame starts with a non-negative length), so the
//! broker's CONTROLLER listener can carry both the quorum and the Kafka
//! controller APIs and tell them apart by the first four bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::log_store::LogStore;
use crate::observer::{FetchRequest, Fetched};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, Proposal, Raft, TypeConfig};

/// The largest frame either side accepts (snapshot chunks are far smaller).
pub const MAX_FRAME_BYTES: usize = 16 << 20;
/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A frame that has started must be complete within this.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection attempt to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The pause before reporting a failure on a connection opened for that very
/// call. openraft backs off only from `Unreachable`; a peer whose port accepts
/// and then closes (a proxy or load balancer in front of a dead node) would
/// otherwise be retried in a tight loop.
const FRESH_FAILURE_PAUSE: Duration = Duration::from_millis(200);

/// The first four bytes of every quorum connection: as a Kafka frame length
/// it would be negative (high bit set), so no Kafka client sends it.
pub const PREFACE: [u8; 4] = [0xFF, b'P', b'Q', b'R'];

/// A request between controllers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    Propose(Proposal),
    /// An observer (a broker-only node) asks the leader for committed entries.
    Fetch(FetchRequest),
}

/// Why a proposal was not committed.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// The node asked is not the leader (nothing was appended): ask this one.
    #[error("not the leader; the leader is {leader:?}")]
    NotLeader {
        /// The leader the node knows of.
        leader: Option<NodeId>,
    },
    /// The quorum failed; the proposal's outcome is unknown.
    #[error("{0}")]
    Failed(String),
}

/// The answer to a [`Request`], of the same kind.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Propose(Result<u64, ProposeError>),
    /// `NotLeader` from a voter that does not lead.
    Fetch(Result<Fetched, ProposeError>),
}

fn invalid(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.into())
}

pub(crate) async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> std::io::Result<()> {
    let payload = serde_json::to_vec(value)?;
    if payload.len() > MAX_FRAME_BYTES {
        return Err(invalid(format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", payload.len())));
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    w.write_all(&frame).await?;
    w.flush().await
}

/// Reads one frame; `Ok(None)` at a clean end of stream. `idle` bounds the
/// wait for the frame to start, [`FRAME_TIMEOUT`] the rest.
pub(crate) async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    idle: Duration,
) -> std::io::Result<Option<T>> {
    let mut header = [0u8; 4];
    let first = tokio::time::timeout(idle, r.read(&mut header))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection"))??;
    if first == 0 {
        return Ok(None);
    }
    let rest = async {
        r.read_exact(&mut header[first..]).await?;
        let len = u32::from_be_bytes(header) as usize;
        if len > MAX_FRAME_BYTES {
            return Err(invalid(format!("frame of {len} bytes exceeds {MAX_FRAME_BYTES}")));
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await?;
        Ok(payload)
    };
    let payload = tokio::time::timeout(FRAME_TIMEOUT, rest)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "frame not completed in time"))??;
    serde_json::from_slice(&payload).map(Some).map_err(|e| invalid(format!("undecodable frame: {e}")))
}

/// What a voter serves its peers and observers with.
#[derive(Clone)]
pub(crate) struct Served {
    pub(crate) raft: Raft,
    pub(crate) log: LogStore,
    pub(crate) state: StateMachine,
    pub(crate) observers: ObserverStats,
}

/// Serves peers' requests on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, served: Served) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let served = served.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_prefaced(stream, served).await {
                        tracing::debug!("controller connection from {peer} closed: {e}");
                    }
                });
            }
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("controller listener accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves a connection that must start with [`PREFACE`].
async fn serve_prefaced(mut stream: TcpStream, served: Served) -> std::io::Result<()> {
    let mut preface = [0u8; 4];
    tokio::time::timeout(FRAME_TIMEOUT, stream.read_exact(&mut preface))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no preface in time"))??;
    if preface != PREFACE {
        return Err(invalid("the connection does not start with the quorum preface"));
    }
    serve_connection(stream, served).await
}

/// Serves a peer's requests on a connection whose [`PREFACE`] was read already.
pub(crate) async fn serve_connection(mut stream: TcpStream, served: Served) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let raft = &served.raft;
    while let Some(request) = read_frame::<_, Request>(&mut stream, IDLE_TIMEOUT).await? {
        let response = match request {
            Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::InstallSnapshot(rpc) => Response::InstallSnapshot(raft.install_snapshot(rpc).await),
            Request::Propose(proposal) => Response::Propose(propose_locally(raft, proposal).await),
            Request::Fetch(fetch) => Response::Fetch(crate::observer::answer_fetch(&served, fetch).await),
        };
        tokio::time::timeout(FRAME_TIMEOUT, write_frame(&mut stream, &response))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "peer does not read"))??;
    }
    Ok(())
}

/// Proposes on this node without forwarding.
pub(crate) async fn propose_locally(raft: &Raft, proposal: Proposal) -> Result<u64, ProposeError> {
    match raft.client_write(proposal).await {
        Ok(response) => Ok(response.log_id.index),
        // openraft answers this before appending, or once the appended entry
        // was truncated away: either way it is not in the log.
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            Err(ProposeError::NotLeader { leader: forward.leader_id })
        }
        Err(e) => Err(ProposeError::Failed(e.to_string())),
    }
}

/// When the leader last heard from each voter, for DescribeQuorum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTimes {
    /// Unix ms of the last successful AppendEntries answer, -1 if none.
    pub last_fetch_ms: i64,
    /// Unix ms of the last answer that matched the leader's whole log, -1 if none.
    pub last_caught_up_ms: i64,
}

/// Per-peer [`PeerTimes`], recorded by the transport.
pub(crate) type PeerStats = Arc<Mutex<BTreeMap<NodeId, PeerTimes>>>;

/// What the leader knows of each observer from its fetches: the offset past
/// what it has, and its [`PeerTimes`].
pub(crate) type ObserverStats = Arc<Mutex<BTreeMap<NodeId, (i64, PeerTimes)>>>;

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Records a successful AppendEntries answer from `target` matching up to `matched`.
pub(crate) fn record_fetch(stats: &PeerStats, log: &Option<LogStore>, target: NodeId, matched: Option<u64>) {
    let Some(log) = log else { return };
    let now = unix_ms();
    let mut stats = stats.lock();
    let times = stats.entry(target).or_insert(PeerTimes { last_fetch_ms: -1, last_caught_up_ms: -1 });
    times.last_fetch_ms = now;
    if matched >= log.last_index() {
        times.last_caught_up_ms = now;
    }
}

/// openraft's network factory over TCP.
pub(crate) struct TcpNetwork {
    pub(crate) stats: PeerStats,
    pub(crate) log: LogStore,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> TcpPeer {
        TcpPeer { target, addr: node.addr.clone(), stream: None, stats: self.stats.clone(), log: Some(self.log.clone()) }
    }
}

/// A connection to one peer, opened on first use and after any failure.
pub(crate) struct TcpPeer {
    target: NodeId,
    addr: String,
    stream: Option<TcpStream>,
    stats: PeerStats,
    /// The voter's own log (None on an observer), for the peer's caught-up time.
    log: Option<LogStore>,
}

/// Why a call failed: before the request was sent (it had no effect) or after.
#[derive(Debug)]
pub(crate) enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl TcpPeer {
    /// A peer for forwarding proposals and fetching as an observer, outside openraft.
    pub(crate) fn forwarder(target: NodeId, addr: String, stats: PeerStats, log: Option<LogStore>) -> TcpPeer {
        TcpPeer { target, addr, stream: None, stats, log }
    }

    pub(crate) async fn call(&mut self, request: &Request, ttl: Duration) -> Result<Response, CallError> {
        let started = tokio::time::Instant::now();
        let fresh = self.stream.is_none();
        if fresh {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT.min(ttl), TcpStream::connect(&self.addr))
                .await
                .map_err(|_| CallError::Unreachable(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))?
                .map_err(CallError::Unreachable)?;
            stream.set_nodelay(true).map_err(CallError::Unreachable)?;
            let mut stream = stream;
            // Nothing of a request was sent yet: a failure here had no effect.
            tokio::time::timeout(CONNECT_TIMEOUT.min(ttl), stream.write_all(&PREFACE))
                .await
                .map_err(|_| CallError::Unreachable(std::io::Error::new(std::io::ErrorKind::TimedOut, "preface not sent in time")))?
                .map_err(CallError::Unreachable)?;
            self.stream = Some(stream);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(CallError::Unreachable(std::io::Error::other("no connection")));
        };
        let exchange = async {
            write_frame(stream, request).await?;
            read_frame::<_, Response>(stream, ttl)
                .await?
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "peer closed the connection"))
        };
        match tokio::time::timeout(ttl, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.stream = None;
                if fresh {
                    tokio::time::sleep_until((started + ttl).min(tokio::time::Instant::now() + FRESH_FAILURE_PAUSE)).await;
                }
                Err(CallError::Network(e))
            }
            Err(_) => {
                self.stream = None;
                Err(CallError::Network(std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out")))
            }
        }
    }

    fn rpc_error<E: std::error::Error>(&self, e: CallError) -> RPCError<NodeId, BasicNode, E> {
        match e {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

fn mismatched<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&invalid("answer of the wrong kind")))
}

impl RaftNetwork<TypeConfig> for TcpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let matched = rpc.entries.last().map(|e| e.log_id.index).or(rpc.prev_log_id.map(|id| id.index));
        let request = Request::AppendEntries(rpc);
        match self.call(&request, option.hard_ttl()).await.map_err(|e| self.rpc_error(e))? {
            Response::AppendEntries(Ok(response)) => {
                if matches!(response, AppendEntriesResponse::Success) {
                    record_fetch(&self.stats, &self.log, self.target, matched);
                }
                Ok(response)
            }
            Response::AppendEntries(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(mismatched()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let request = Request::InstallSnapshot(rpc);
        match self.call(&request, option.hard_ttl()).await.map_err(|e| self.rpc_error(e))? {
            Response::InstallSnapshot(Ok(response)) => Ok(response),
            Response::InstallSnapshot(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(mismatched()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let request = Request::Vote(rpc);
        match self.call(&request, option.hard_ttl()).await.map_err(|e| self.rpc_error(e))? {
            Response::Vote(Ok(response)) => Ok(response),
            Response::Vote(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            _ => Err(mismatched()),
        }
    }
}
