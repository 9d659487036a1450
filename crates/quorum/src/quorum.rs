//! The [`Quorum`] API the broker's controller uses: start a controller's Raft
//! node, propose records, follow what is committed, describe the quorum.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use metadata::{Image, ImageDelta, MetadataRecord};
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, RaftMetrics, RaftNetworkFactory, ServerState, SnapshotPolicy};
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::log_store::LogStore;
use crate::network::{self, CallError, ObserverStats, PeerStats, PeerTimes, ProposeError, Request, Response, Served, TcpNetwork, TcpPeer};
use crate::observer::{self, ObserverStatus};
use crate::runtime::ThreadRng;
use crate::state_machine::{Committed, StateMachine};
use crate::types::{NodeId, Proposal, Raft};

/// Kafka's name for the metadata log's directory under the metadata log dir.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Why the quorum could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    /// This node is not in `controller.quorum.voters`.
    #[error("node {0} is not in controller.quorum.voters")]
    NotAVoter(NodeId),
    /// The controller listener could not be bound.
    #[error("cannot listen on controller address {addr}: {source}")]
    Bind {
        /// The address from the voters list.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metadata directory could not be opened.
    #[error("{dir}: {source}")]
    Storage {
        /// The metadata directory.
        dir: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// No leader accepted the proposal in time; it was not appended.
    #[error("no controller leader accepted the proposal within {0:?}")]
    NoLeader(Duration),
    /// A proposal that only this node's leadership may commit (a decision
    /// taken on its view as active controller) found it no longer the
    /// leader; it was not committed.
    #[error("node {node} is no longer the controller leader; the proposal was not committed")]
    LostLeadership {
        /// This node.
        node: NodeId,
    },
    /// The proposal may or may not be committed (the leader failed or the
    /// connection to it broke after it was sent).
    #[error("proposal outcome unknown: {0}")]
    Uncertain(String),
    /// The proposal was committed at `offset`, but this node did not apply
    /// it in time, or applied it by a snapshot (so its delta is unknown here).
    #[error("committed at offset {offset} but {reason}")]
    NotApplied {
        /// The entry's offset.
        offset: u64,
        /// Why its delta is not available here.
        reason: String,
    },
    /// openraft stopped or refused.
    #[error("metadata quorum: {0}")]
    Raft(String),
}

/// Tunables; the defaults suit a controller quorum (Kafka's
/// `controller.quorum.election.timeout.ms` is 1000).
#[derive(Clone)]
pub struct QuorumOptions {
    /// openraft's configuration (timeouts, snapshot policy).
    pub raft: openraft::Config,
    /// How long [`Quorum::propose`] waits for a leader and the commit.
    pub propose_timeout: Duration,
    /// Makes the cluster id the first leader proposes.
    pub new_cluster_id: Arc<dyn Fn() -> String + Send + Sync>,
}

impl Default for QuorumOptions {
    fn default() -> Self {
        QuorumOptions {
            raft: openraft::Config {
                cluster_name: "potok-metadata".into(),
                heartbeat_interval: 100,
                election_timeout_min: 1000,
                election_timeout_max: 2000,
                install_snapshot_timeout: 5000,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
                max_in_snapshot_log_to_keep: 100,
                snapshot_max_chunk_size: 1 << 20,
                ..Default::default()
            },
            propose_timeout: Duration::from_secs(30),
            new_cluster_id: Arc::new(random_cluster_id),
        }
    }
}

/// A random UUID from the quorum's RNG (seeded in the simulation).
pub fn random_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    ThreadRng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// One voter as [`Quorum::describe`] reports it (DescribeQuorum's ReplicaState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    /// The voter's node id.
    pub id: NodeId,
    /// The next offset past its log, as far as the leader knows (-1: unknown).
    pub log_end_offset: i64,
    /// Unix ms of the voter's last successful fetch (-1: none; the leader: now).
    pub last_fetch_ms: i64,
    /// Unix ms when the voter last had the leader's whole log (-1: never).
    pub last_caught_up_ms: i64,
}

/// What DescribeQuorum needs, as this node knows it (only a leader knows the
/// voters' positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// The leader's node id, if known.
    pub leader: Option<NodeId>,
    /// The leader epoch (Raft term).
    pub epoch: u64,
    /// The next offset past the committed entries (-1: none known).
    pub high_watermark: i64,
    /// Every voter.
    pub voters: Vec<VoterState>,
    /// The observers (broker-only nodes) that fetched from this leader
    /// within the last five minutes (Kafka's observer session).
    pub observers: Vec<VoterState>,
}

/// Which leader may commit a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Through {
    /// Whichever node leads (a follower forwards).
    AnyLeader,
    /// Only this node, while it leads.
    ThisLeader,
}

/// A running node of the metadata quorum: a voter (a controller), or an
/// observer (a broker-only node, see `observer.rs`).
pub struct Quorum {
    node_id: NodeId,
    role: Role,
    state: StateMachine,
    stats: PeerStats,
    /// On a voter: what the observers fetched, when this node leads.
    observers: ObserverStats,
    voters: BTreeMap<NodeId, String>,
    propose_timeout: Duration,
    tasks: Vec<JoinHandle<()>>,
}

enum Role {
    Voter { raft: Raft, log: LogStore },
    Observer {
        status: watch::Receiver<ObserverStatus>,
        /// openraft's initial metrics: an observer runs no Raft node.
        metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    },
}

/// The pieces of one node that the TCP and simulated setups share.
pub(crate) struct Node {
    pub(crate) raft: Raft,
    pub(crate) state: StateMachine,
    pub(crate) log: LogStore,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    /// Subscribed before Raft started, so it misses nothing applied.
    pub(crate) events: broadcast::Receiver<Committed>,
}

/// Opens `dir`, starts Raft on `network` and, if this is a fresh quorum,
/// initialises it (see README.md, "Bootstrap").
pub(crate) async fn start_node<N: RaftNetworkFactory<crate::TypeConfig>>(
    node_id: NodeId,
    voters: &BTreeMap<NodeId, String>,
    dir: &Path,
    options: &QuorumOptions,
    make_network: impl FnOnce(&LogStore) -> N,
) -> Result<Node, QuorumError> {
    if !voters.contains_key(&node_id) {
        return Err(QuorumError::NotAVoter(node_id));
    }
    let storage_error = |source| QuorumError::Storage { dir: dir.to_path_buf(), source };
    let log = LogStore::open(dir).map_err(storage_error)?;
    let state = StateMachine::open(dir).map_err(storage_error)?;
    let events = state.subscribe();
    let fresh = log.is_empty() && state.image().1.is_none();
    let config = options.raft.clone().validate().map_err(|e| QuorumError::Raft(e.to_string()))?;
    let network = make_network(&log);
    let raft = Raft::new(node_id, Arc::new(config), network, log.clone(), state.clone())
        .await
        .map_err(|e| QuorumError::Raft(e.to_string()))?;
    // The lowest voter initialises a fresh quorum with the configured voters.
    // The membership entry (log id 0-0) depends only on the voters list, so a
    // repeat after a wiped directory writes the same entry the others have.
    if fresh && voters.keys().next() == Some(&node_id) {
        let members: BTreeMap<NodeId, BasicNode> =
            voters.iter().map(|(&id, addr)| (id, BasicNode { addr: addr.clone() })).collect();
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(QuorumError::Raft(e.to_string())),
        }
    }
    let tasks = vec![tokio::spawn(propose_cluster_id(raft.clone(), state.clone(), options.new_cluster_id.clone()))];
    Ok(Node { raft, state, log, tasks, events })
}

/// Once per term, a leader of a quorum without a cluster id proposes one; the
/// first committed wins (the state machine ignores later ones).
async fn propose_cluster_id(raft: Raft, state: StateMachine, new_cluster_id: Arc<dyn Fn() -> String + Send + Sync>) {
    let mut metrics = raft.metrics();
    let mut tried_term = None;
    loop {
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if leader && tried_term != Some(term) && state.cluster_id().is_none() {
            tried_term = Some(term);
            if let Err(e) = network::propose_locally(&raft, Proposal::ClusterId(new_cluster_id())).await {
                tracing::debug!("proposing the cluster id in term {term}: {e}");
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Quorum {
    /// Starts controller `node_id` of `voters` (`controller.quorum.voters`),
    /// listening on its own voter address, with its Raft log in `dir`.
    pub async fn start(node_id: NodeId, voters: Vec<(NodeId, String)>, dir: &Path) -> Result<Quorum, QuorumError> {
        let addr = voters.iter().find(|(id, _)| *id == node_id).map(|(_, a)| a.clone()).ok_or(QuorumError::NotAVoter(node_id))?;
        let listener = TcpListener::bind(&addr).await.map_err(|source| QuorumError::Bind { addr, source })?;
        Quorum::start_on(listener, node_id, voters, dir, QuorumOptions::default()).await
    }

    /// As [`Quorum::start`], on a listener bound already.
    pub async fn start_on(
        listener: TcpListener,
        node_id: NodeId,
        voters: Vec<(NodeId, String)>,
        dir: &Path,
        options: QuorumOptions,
    ) -> Result<Quorum, QuorumError> {
        let mut quorum = Quorum::start_without_listener(node_id, voters, dir, options).await?;
        let Some(served) = quorum.served() else { return Err(QuorumError::NotAVoter(node_id)) };
        quorum.tasks.push(tokio::spawn(network::serve(listener, served)));
        Ok(quorum)
    }

    /// Starts observer `node_id` (a broker-only node, not in `voters`): it
    /// follows the metadata log by fetching committed entries from the
    /// leader, with the last snapshot it got kept in `dir`.
    pub async fn start_observer(node_id: NodeId, voters: Vec<(NodeId, String)>, dir: &Path, options: QuorumOptions) -> Result<Quorum, QuorumError> {
        let voters: BTreeMap<NodeId, String> = voters.into_iter().collect();
        if voters.is_empty() || voters.contains_key(&node_id) {
            return Err(QuorumError::Raft(format!("node {node_id} cannot observe voters {:?}", voters.keys().collect::<Vec<_>>())));
        }
        std::fs::create_dir_all(dir).map_err(|source| QuorumError::Storage { dir: dir.to_path_buf(), source })?;
        let state = StateMachine::open(dir).map_err(|source| QuorumError::Storage { dir: dir.to_path_buf(), source })?;
        let (status_tx, status) = watch::channel(ObserverStatus::default());
        let (_, metrics) = watch::channel(RaftMetrics::new_initial(node_id));
        let tasks = vec![tokio::spawn(observer::follow(node_id, voters.clone(), state.clone(), status_tx))];
        Ok(Quorum {
            node_id,
            role: Role::Observer { status, metrics },
            state,
            stats: PeerStats::default(),
            observers: ObserverStats::default(),
            voters,
            propose_timeout: options.propose_timeout,
            tasks,
        })
    }

    /// True on an observer (a broker-only node).
    pub fn is_observer(&self) -> bool {
        matches!(self.role, Role::Observer { .. })
    }

    fn served(&self) -> Option<Served> {
        match &self.role {
            Role::Voter { raft, log } => Some(Served { raft: raft.clone(), log: log.clone(), state: self.state.clone(), observers: self.observers.clone() }),
            Role::Observer { .. } => None,
        }
    }

    /// As [`Quorum::start_on`], but the caller accepts the connections (the
    /// broker's CONTROLLER listener, shared with the Kafka controller APIs)
    /// and hands those that begin with [`crate::PREFACE`] to
    /// [`Quorum::serve_connection`].
    pub async fn start_without_listener(
        node_id: NodeId,
        voters: Vec<(NodeId, String)>,
        dir: &Path,
        options: QuorumOptions,
    ) -> Result<Quorum, QuorumError> {
        let voters: BTreeMap<NodeId, String> = voters.into_iter().collect();
        let stats = PeerStats::default();
        let net_stats = stats.clone();
        let node = start_node(node_id, &voters, dir, &options, |log| TcpNetwork { stats: net_stats, log: log.clone() }).await?;
        // The broker subscribes through `Quorum::subscribe` instead.
        drop(node.events);
        let tasks = node.tasks;
        Ok(Quorum {
            node_id,
            role: Role::Voter { raft: node.raft, log: node.log },
            state: node.state,
            stats,
            observers: ObserverStats::default(),
            voters,
            propose_timeout: options.propose_timeout,
            tasks,
        })
    }

    /// Serves a peer controller on `stream`, whose [`crate::PREFACE`] the
    /// caller has read already, until the peer closes it or it fails.
    /// An observer serves none.
    pub async fn serve_connection(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        match self.served() {
            Some(served) => network::serve_connection(stream, served).await,
            None => Err(std::io::Error::other("an observer serves no quorum connections")),
        }
    }

    /// Commits `records` as one entry, through the leader wherever it is;
    /// answers the entry's offset (Raft log index) once it is committed.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        self.propose_through(records, Through::AnyLeader).await
    }

    /// Commits `records` only under this node's current leadership: a
    /// decision the active controller took on its own view (its broker
    /// sessions, its image) must not be committed by a later leader that
    /// this node would forward to once it learns it lost the election
    /// (Kafka's controller writes are fenced by its epoch the same way).
    /// [`QuorumError::LostLeadership`] if this node is not, or stops being,
    /// the leader before the entry commits.
    pub async fn propose_as_leader(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        self.propose_through(records, Through::ThisLeader).await
    }

    async fn propose_through(&self, records: Vec<MetadataRecord>, through: Through) -> Result<u64, QuorumError> {
        let deadline = tokio::time::Instant::now() + self.propose_timeout;
        let proposal = Proposal::Records(records);
        loop {
            let leader = self.leader();
            if through == Through::ThisLeader && leader != Some(self.node_id) {
                return Err(QuorumError::LostLeadership { node: self.node_id });
            }
            let attempt = match (leader, &self.role) {
                (Some(leader), Role::Voter { raft, .. }) if leader == self.node_id => {
                    match tokio::time::timeout_at(deadline, network::propose_locally(raft, proposal.clone())).await {
                        Ok(result) => result,
                        Err(_) => return Err(QuorumError::Uncertain("timed out waiting for the commit".into())),
                    }
                }
                (Some(leader), _) => self.forward(leader, &proposal, deadline).await?,
                (None, _) => Err(ProposeError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(offset) => return Ok(offset),
                Err(ProposeError::Failed(e)) => return Err(QuorumError::Uncertain(e)),
                // Not appended anywhere: safe to try again once a leader is known.
                Err(ProposeError::NotLeader { .. }) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(QuorumError::NoLeader(self.propose_timeout));
            }
            match &self.role {
                Role::Voter { raft, .. } => {
                    let mut metrics = raft.metrics();
                    let _ = tokio::time::timeout(Duration::from_millis(50), metrics.changed()).await;
                }
                Role::Observer { .. } => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// As [`Quorum::propose`], and then waits until this node has applied the
    /// entry too; answers its offset and what it changed in the image.
    pub async fn propose_and_apply(&self, records: Vec<MetadataRecord>) -> Result<(u64, Arc<ImageDelta>), QuorumError> {
        self.propose_and_apply_through(records, Through::AnyLeader).await
    }

    /// As [`Quorum::propose_as_leader`], and then waits until this node has
    /// applied the entry.
    pub async fn propose_and_apply_as_leader(&self, records: Vec<MetadataRecord>) -> Result<(u64, Arc<ImageDelta>), QuorumError> {
        self.propose_and_apply_through(records, Through::ThisLeader).await
    }

    async fn propose_and_apply_through(&self, records: Vec<MetadataRecord>, through: Through) -> Result<(u64, Arc<ImageDelta>), QuorumError> {
        // Subscribed before proposing, so the entry's event cannot be missed.
        let mut events = self.subscribe();
        let offset = self.propose_through(records, through).await?;
        let deadline = tokio::time::Instant::now() + self.propose_timeout;
        let not_applied = |reason: String| QuorumError::NotApplied { offset, reason };
        loop {
            let event = match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(event) => event,
                Err(_) => return Err(not_applied(format!("node {} did not apply it within {:?}", self.node_id, self.propose_timeout))),
            };
            match event {
                Ok(Committed::Records { offset: at, delta, .. }) if at == offset => return Ok((offset, delta)),
                Ok(Committed::Snapshot { offset: at }) if at >= offset => return Err(not_applied("a snapshot covered it here".into())),
                Ok(Committed::Records { offset: at, .. } | Committed::ClusterId { offset: at, .. }) if at > offset => {
                    return Err(not_applied(format!("node {} applied past it without seeing it", self.node_id)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => return Err(not_applied("this node's event stream lagged".into())),
                Err(broadcast::error::RecvError::Closed) => return Err(not_applied("the state machine stopped".into())),
            }
        }
    }

    async fn forward(
        &self,
        leader: NodeId,
        proposal: &Proposal,
        deadline: tokio::time::Instant,
    ) -> Result<Result<u64, ProposeError>, QuorumError> {
        let Some(addr) = self.voters.get(&leader) else {
            return Ok(Err(ProposeError::NotLeader { leader: None }));
        };
        let log = match &self.role {
            Role::Voter { log, .. } => Some(log.clone()),
            Role::Observer { .. } => None,
        };
        let mut peer = TcpPeer::forwarder(leader, addr.clone(), self.stats.clone(), log);
        let ttl = deadline.saturating_duration_since(tokio::time::Instant::now());
        match peer.call(&Request::Propose(proposal.clone()), ttl).await {
            Ok(Response::Propose(result)) => Ok(result),
            Ok(_) => Err(QuorumError::Uncertain(format!("controller {leader} answered a proposal with another kind"))),
            Err(CallError::Unreachable(_)) => Ok(Err(ProposeError::NotLeader { leader: None })),
            Err(CallError::Network(e)) => Err(QuorumError::Uncertain(format!("forwarding to controller {leader}: {e}"))),
        }
    }

    /// What is committed from now on, in log order. A subscriber that falls
    /// more than 4096 entries behind gets `Lagged` and must reload [`Quorum::image`].
    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.state.subscribe()
    }

    /// The image as of the last applied entry, and that entry's offset.
    pub fn image(&self) -> (Image, Option<u64>) {
        self.state.image()
    }

    /// The cluster id agreed through the quorum, once committed.
    pub fn cluster_id(&self) -> Option<String> {
        self.state.cluster_id()
    }

    /// The current leader's node id, if known (on an observer: the leader it
    /// fetches from).
    pub fn leader(&self) -> Option<NodeId> {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics().borrow().current_leader,
            Role::Observer { status, .. } => status.borrow().leader,
        }
    }

    /// The current epoch (Raft term).
    pub fn epoch(&self) -> u64 {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics().borrow().current_term,
            Role::Observer { status, .. } => status.borrow().epoch,
        }
    }

    /// A watch of openraft's metrics: leader, term, log and applied positions
    /// (on an observer, which runs no Raft node, openraft's initial metrics).
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, BasicNode>> {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics(),
            Role::Observer { metrics, .. } => metrics.clone(),
        }
    }

    /// The index of the last entry this node applied.
    pub fn applied(&self) -> Option<u64> {
        self.state.last_applied()
    }

    /// The index this node should apply before it serves: on a voter its log
    /// end, on an observer the last committed entry the leader reported.
    pub fn catch_up_target(&self) -> Option<u64> {
        match &self.role {
            Role::Voter { raft, .. } => raft.metrics().borrow().last_log_index,
            Role::Observer { status, .. } => status.borrow().high_watermark.and_then(|h| h.checked_sub(1)),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What DescribeQuorum answers (complete on the leader).
    pub fn describe(&self) -> QuorumDescription {
        match &self.role {
            Role::Voter { raft, .. } => {
                let metrics = raft.metrics().borrow().clone();
                let mut described = describe(&metrics, &self.voters, &self.stats.lock());
                if metrics.state == ServerState::Leader {
                    let now = network::unix_ms();
                    let mut observers = self.observers.lock();
                    observers.retain(|_, (_, times)| now - times.last_fetch_ms < observer::OBSERVER_SESSION_MS);
                    described.observers = observers
                        .iter()
                        .map(|(&id, &(end, times))| VoterState { id, log_end_offset: end, last_fetch_ms: times.last_fetch_ms, last_caught_up_ms: times.last_caught_up_ms })
                        .collect();
                }
                described
            }
            Role::Observer { status, .. } => {
                let status = status.borrow().clone();
                let unknown = |id| VoterState { id, log_end_offset: -1, last_fetch_ms: -1, last_caught_up_ms: -1 };
                QuorumDescription {
                    leader: status.leader,
                    epoch: status.epoch,
                    high_watermark: self.applied().map_or(-1, |a| a as i64 + 1),
                    voters: self.voters.keys().map(|&id| unknown(id)).collect(),
                    observers: Vec::new(),
                }
            }
        }
    }

    /// Stops the node (its durable state stays in its directory).
    pub async fn shutdown(self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Role::Voter { raft, .. } = &self.role {
            if let Err(e) = raft.shutdown().await {
                tracing::warn!("metadata quorum node {} did not stop cleanly: {e}", self.node_id);
            }
        }
    }
}

fn describe(
    metrics: &RaftMetrics<NodeId, BasicNode>,
    voters: &BTreeMap<NodeId, String>,
    stats: &BTreeMap<NodeId, PeerTimes>,
) -> QuorumDescription {
    let end = |index: Option<u64>| index.map_or(-1, |i| i as i64 + 1);
    let leading = metrics.state == ServerState::Leader;
    let now = network::unix_ms();
    let mut voters_out = Vec::new();
    let mut matched = Vec::new();
    for &id in voters.keys() {
        let state = if id == metrics.id && leading {
            VoterState { id, log_end_offset: end(metrics.last_log_index), last_fetch_ms: now, last_caught_up_ms: now }
        } else if leading {
            let log_end = metrics.replication.as_ref().and_then(|r| r.get(&id)).map_or(-1, |m| end(m.map(|l| l.index)));
            let times = stats.get(&id).copied().unwrap_or(PeerTimes { last_fetch_ms: -1, last_caught_up_ms: -1 });
            VoterState { id, log_end_offset: log_end, last_fetch_ms: times.last_fetch_ms, last_caught_up_ms: times.last_caught_up_ms }
        } else {
            VoterState { id, log_end_offset: -1, last_fetch_ms: -1, last_caught_up_ms: -1 }
        };
        matched.push(state.log_end_offset);
        voters_out.push(state);
    }
    // On the leader the high watermark is the end that a majority has; a
    // follower knows only what it applied.
    let high_watermark = if leading {
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched.get(voters.len() / 2).copied().unwrap_or(-1)
    } else {
        end(metrics.last_applied.map(|id| id.index))
    };
    QuorumDescription { leader: metrics.current_leader, epoch: metrics.current_term, high_watermark, voters: voters_out, observers: Vec::new() }
}
