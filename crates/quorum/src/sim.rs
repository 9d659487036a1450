//! Deterministic simulation of the quorum: the real log store, state machine
//! and openraft nodes, on one current-thread tokio runtime with a paused clock
//! (virtual time), over a simulated network whose delays, drops and partitions
//! and whose crashes and restarts come from one seed. See README.md.
//!
//! `cargo test -p potok-quorum sim` runs [`SEEDS`] seeds (`QUORUM_SEEDS=<n>` to
//! change); `QUORUM_SEED=<n>` runs only seed n.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metadata::{MetadataRecord, TopicRecord, Uuid};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, RaftNetwork, RaftNetworkFactory, ServerState, SnapshotPolicy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::network::{propose_locally, ProposeError};
use crate::quorum::{start_node, QuorumOptions};
use crate::state_machine::{Committed, StateMachine};
use crate::types::{NodeId, Proposal, Raft, TypeConfig};

/// Seeds per `cargo test` run.
const SEEDS: u64 = 300;
/// Virtual time with faults and proposals, then time to converge.
const FAULT_PHASE: Duration = Duration::from_secs(8);
const CONVERGE_LIMIT: Duration = Duration::from_secs(60);

/// The simulated network: which nodes are up, which links are cut, and the
/// seeded RNG that draws every delay and drop.
struct World {
    rafts: BTreeMap<NodeId, Raft>,
    cut: BTreeSet<(NodeId, NodeId)>,
    rng: StdRng,
}

type Shared = Arc<Mutex<World>>;

fn lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

enum Fail {
    Unreachable,
}

/// One message hop: a delay, then delivered, refused (node down), or lost
/// (cut link or dropped: never arrives, the caller's timeout fires).
async fn hop(world: &Shared, from: NodeId, to: NodeId) -> Result<(), Fail> {
    let (delay, dropped) = {
        let mut w = lock(world);
        let delay = if w.rng.gen_ratio(1, 20) { w.rng.gen_range(50..300) } else { w.rng.gen_range(1..20) };
        (Duration::from_millis(delay), w.rng.gen_ratio(1, 40))
    };
    tokio::time::sleep(delay).await;
    let (up, cut) = {
        let w = lock(world);
        (w.rafts.contains_key(&to) && w.rafts.contains_key(&from), w.cut.contains(&(from, to)))
    };
    if cut || dropped {
        std::future::pending::<()>().await;
    }
    if up {
        Ok(())
    } else {
        Err(Fail::Unreachable)
    }
}

struct SimNetwork {
    from: NodeId,
    world: Shared,
}

impl RaftNetworkFactory<TypeConfig> for SimNetwork {
    type Network = SimPeer;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimPeer {
        SimPeer { from: self.from, to: target, world: self.world.clone() }
    }
}

struct SimPeer {
    from: NodeId,
    to: NodeId,
    world: Shared,
}

impl SimPeer {
    /// Carries a call to the target and its answer back through the network.
    async fn call<T, E, F, Fut>(&self, ttl: Duration, f: F) -> Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        E: std::error::Error,
        F: FnOnce(Raft) -> Fut,
        Fut: std::future::Future<Output = Result<T, RaftError<NodeId, E>>>,
    {
        let exchange = async {
            hop(&self.world, self.from, self.to).await?;
            let raft = lock(&self.world).rafts.get(&self.to).cloned().ok_or(Fail::Unreachable)?;
            let answer = f(raft).await;
            hop(&self.world, self.to, self.from).await?;
            Ok(answer)
        };
        let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "simulated timeout");
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "simulated node down");
        match tokio::time::timeout(ttl, exchange).await {
            Err(_) => Err(RPCError::Network(NetworkError::new(&timeout))),
            Ok(Err(Fail::Unreachable)) | Ok(Ok(Err(RaftError::Fatal(_)))) => Err(RPCError::Unreachable(Unreachable::new(&refused))),
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(e))) => Err(RPCError::RemoteError(RemoteError::new(self.to, e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for SimPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(option.hard_ttl(), |raft| async move { raft.append_entries(rpc).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(option.hard_ttl(), |raft| async move { raft.install_snapshot(rpc).await }).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(option.hard_ttl(), |raft| async move { raft.vote(rpc).await }).await
    }
}

/// What the checkers collect while the simulation runs.
#[derive(Default)]
struct Observed {
    /// Leader of each term, as the first node to report leading it.
    leaders: BTreeMap<u64, NodeId>,
    /// Every committed record batch any node applied: offset -> topic name.
    committed: BTreeMap<u64, String>,
    /// Proposals acknowledged as committed: topic name -> offset.
    acked: BTreeMap<String, u64>,
    violations: Vec<String>,
}

type Checks = Arc<Mutex<Observed>>;

fn checks(observed: &Checks) -> std::sync::MutexGuard<'_, Observed> {
    observed.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn options() -> QuorumOptions {
    let mut options = QuorumOptions::default();
    options.raft.heartbeat_interval = 50;
    options.raft.election_timeout_min = 300;
    options.raft.election_timeout_max = 600;
    options.raft.install_snapshot_timeout = 500;
    // Snapshots and purges happen often, so followers catch up by snapshot.
    options.raft.snapshot_policy = SnapshotPolicy::LogsSinceLast(8);
    options.raft.max_in_snapshot_log_to_keep = 2;
    options
}

/// A running node and the tasks watching it.
struct Running {
    raft: Raft,
    state: StateMachine,
    tasks: Vec<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
}

async fn start(id: NodeId, voters: &BTreeMap<NodeId, String>, dir: &Path, world: &Shared, observed: &Checks) -> Running {
    let network = SimNetwork { from: id, world: world.clone() };
    let node = match start_node(id, voters, dir, &options(), |_| network).await {
        Ok(node) => node,
        Err(e) => {
            checks(observed).violations.push(format!("node {id} failed to start: {e}"));
            panic!("node {id} failed to start: {e}");
        }
    };
    lock(world).rafts.insert(id, node.raft.clone());
    let watchers = vec![
        tokio::spawn(watch_applied(id, node.events, observed.clone())),
        tokio::spawn(watch_leaders(id, node.raft.clone(), observed.clone())),
    ];
    Running { raft: node.raft, state: node.state, tasks: node.tasks, watchers }
}

/// Starts every node that is down.
async fn restart_all(
    running: &mut BTreeMap<NodeId, Running>,
    voters: &BTreeMap<NodeId, String>,
    dir: &impl Fn(NodeId) -> PathBuf,
    world: &Shared,
    observed: &Checks,
) {
    for &id in voters.keys() {
        if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(id) {
            slot.insert(start(id, voters, &dir(id), world, observed).await);
        }
    }
}

/// The checks once the run is over: answers a summary and the violations.
fn final_checks(observed: &Checks, images: &BTreeMap<NodeId, BTreeSet<String>>, converged: bool) -> (String, Vec<String>) {
    let mut o = checks(observed);
    let mut violations = std::mem::take(&mut o.violations);
    if !converged {
        violations.push(format!("no convergence within {CONVERGE_LIMIT:?} after healing"));
    }
    if images.values().collect::<BTreeSet<_>>().len() != 1 {
        violations.push(format!("nodes end with different images: {images:?}"));
    }
    // Each acknowledged proposal is at the offset it was acknowledged with.
    for (name, offset) in &o.acked {
        if o.committed.get(offset) != Some(name) {
            violations.push(format!("acknowledged {name} at offset {offset}, but the log has {:?}", o.committed.get(offset)));
        }
        for (id, names) in images {
            if !names.contains(name) {
                violations.push(format!("node {id} lost acknowledged {name}"));
            }
        }
    }
    // A fingerprint of what happened, to compare replays of a seed.
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(&(&o.committed, &o.acked, &o.leaders), &mut hasher);
    let summary = format!(
        "{} committed, {} acknowledged, {} terms with a leader, fingerprint {:016x}",
        o.committed.len(),
        o.acked.len(),
        o.leaders.len(),
        std::hash::Hasher::finish(&hasher)
    );
    (summary, violations)
}

/// Kills a node at an await point: its durable directory stays as it is.
async fn crash(id: NodeId, running: Running, world: &Shared) {
    lock(world).rafts.remove(&id);
    for task in running.tasks.iter().chain(&running.watchers) {
        task.abort();
    }
    let _ = running.raft.shutdown().await;
    // Let the node's other tasks (state machine worker) see the shutdown.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

fn topic_of(records: &[MetadataRecord]) -> String {
    match records {
        [MetadataRecord::Topic(t)] => t.name.clone(),
        other => format!("{other:?}"),
    }
}

/// Checks that a node applies batches at increasing offsets and that every
/// offset holds the same batch on every node.
async fn watch_applied(id: NodeId, mut events: broadcast::Receiver<Committed>, observed: Checks) {
    let mut last = None;
    loop {
        match events.recv().await {
            Ok(Committed::Records { offset, records, .. }) => {
                let name = topic_of(&records);
                let mut o = checks(&observed);
                if last.is_some_and(|l| offset <= l) {
                    o.violations.push(format!("node {id} applied offset {offset} after {last:?}"));
                }
                last = Some(offset);
                let seen = o.committed.entry(offset).or_insert_with(|| name.clone()).clone();
                if seen != name {
                    o.violations.push(format!("offset {offset}: node {id} applied {name}, another node {seen}"));
                }
            }
            Ok(Committed::Snapshot { offset }) => last = Some(offset),
            Ok(Committed::ClusterId { offset, .. }) => last = Some(offset),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                checks(&observed).violations.push(format!("node {id}'s checker lagged by {n}"));
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Checks that no two nodes lead the same term.
async fn watch_leaders(id: NodeId, raft: Raft, observed: Checks) {
    let mut metrics = raft.metrics();
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if leading {
            let mut o = checks(&observed);
            let first = *o.leaders.entry(term).or_insert(id);
            if first != id {
                o.violations.push(format!("term {term} has two leaders: {first} and {id}"));
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Proposes one topic through the node the client picked, following
/// NotLeader answers to the leader as the TCP transport's forward does.
async fn propose(world: Shared, observed: Checks, via: NodeId, name: String, index: u64) {
    let proposal = Proposal::Records(vec![MetadataRecord::Topic(TopicRecord {
        name: name.clone(),
        topic_id: Uuid::from_u128(u128::from(index) + 1),
    })]);
    let mut target = via;
    for _ in 0..20 {
        let Some(raft) = lock(&world).rafts.get(&target).cloned() else { return };
        match tokio::time::timeout(Duration::from_secs(3), propose_locally(&raft, proposal.clone())).await {
            Ok(Ok(offset)) => {
                checks(&observed).acked.insert(name, offset);
                return;
            }
            Ok(Err(ProposeError::NotLeader { leader: Some(leader) })) => target = leader,
            Ok(Err(ProposeError::NotLeader { leader: None })) => tokio::time::sleep(Duration::from_millis(50)).await,
            // Outcome unknown: the checkers only hold acknowledged proposals.
            Ok(Err(ProposeError::Failed(_))) | Err(_) => return,
        }
    }
}

fn sim_dir() -> tempfile::TempDir {
    // tmpfs keeps the fsyncs of hundreds of seeds cheap; the same code runs.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"))
}

/// Runs one seed; answers the first violations found.
fn run_seed(seed: u64) -> Result<String, String> {
    crate::runtime::seed_thread_rng(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let root = sim_dir();
    let result = runtime.block_on(simulate(seed, root.path().to_path_buf()));
    // Stop the nodes' tasks before their directories go.
    drop(runtime);
    result
}

async fn simulate(seed: u64, root: PathBuf) -> Result<String, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5eed);
    let n: u64 = if seed % 4 == 3 { 5 } else { 3 };
    let voters: BTreeMap<NodeId, String> = (1..=n).map(|id| (id, format!("sim-{id}"))).collect();
    let world: Shared = Arc::new(Mutex::new(World {
        rafts: BTreeMap::new(),
        cut: BTreeSet::new(),
        rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    }));
    let observed = Checks::default();
    let dir = |id: NodeId| root.join(format!("n{id}"));
    let mut running: BTreeMap<NodeId, Running> = BTreeMap::new();
    for &id in voters.keys() {
        running.insert(id, start(id, &voters, &dir(id), &world, &observed).await);
    }

    // The fault phase: proposals, crashes and restarts, partitions and heals.
    let mut proposals = Vec::new();
    let mut faults = 0;
    let end = tokio::time::Instant::now() + FAULT_PHASE;
    let mut next_fault = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(200..1500));
    let mut index = 0u64;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..120))).await;
        let via = rng.gen_range(1..=n);
        proposals.push(tokio::spawn(propose(world.clone(), observed.clone(), via, format!("p{index}"), index)));
        index += 1;
        if tokio::time::Instant::now() < next_fault {
            continue;
        }
        next_fault = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(200..1500));
        faults += 1;
        // Half the faults hit the leader, to force elections.
        let leader = running.values().find_map(|r| r.raft.metrics().borrow().current_leader);
        let victim = match leader {
            Some(leader) if rng.gen_bool(0.5) => leader,
            _ => rng.gen_range(1..=n),
        };
        match rng.gen_range(0..4) {
            // Crash a node (or restart it if it is down).
            0 => match running.remove(&victim) {
                Some(node) => crash(victim, node, &world).await,
                None => {
                    running.insert(victim, start(victim, &voters, &dir(victim), &world, &observed).await);
                }
            },
            // Isolate a node in both directions (a partition, or a pause).
            1 => {
                let mut w = lock(&world);
                for other in 1..=n {
                    if other != victim {
                        w.cut.insert((victim, other));
                        w.cut.insert((other, victim));
                    }
                }
            }
            // Cut one link one way.
            2 => {
                let other = rng.gen_range(1..=n);
                if other != victim {
                    lock(&world).cut.insert((victim, other));
                }
            }
            // Heal everything and restart everyone.
            _ => {
                lock(&world).cut.clear();
                restart_all(&mut running, &voters, &dir, &world, &observed).await;
            }
        }
    }

    // Heal, restart everything, and wait for every node to apply the leader's log.
    lock(&world).cut.clear();
    restart_all(&mut running, &voters, &dir, &world, &observed).await;
    for proposal in proposals {
        let _ = proposal.await;
    }
    let deadline = tokio::time::Instant::now() + CONVERGE_LIMIT;
    let converged = loop {
        let metrics: Vec<_> = running.values().map(|r| r.raft.metrics().borrow().clone()).collect();
        let leader = metrics.iter().find(|m| m.state == ServerState::Leader);
        if let Some(leader) = leader {
            let target = leader.last_log_index;
            if metrics.iter().all(|m| m.last_applied.map(|id| id.index) == target && m.current_leader == Some(leader.id)) {
                break true;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every node ends with the same image, holding every acknowledged proposal.
    let images: BTreeMap<NodeId, BTreeSet<String>> = running
        .iter()
        .map(|(&id, r)| (id, r.state.image().0.topics().map(|t| t.name.clone()).collect()))
        .collect();
    let (summary, mut violations) = final_checks(&observed, &images, converged);
    let summary = format!("{n} nodes, {index} proposals, {faults} faults, {summary}");
    for (id, node) in std::mem::take(&mut running) {
        crash(id, node, &world).await;
    }
    if violations.is_empty() {
        Ok(summary)
    } else {
        let mut seen = BTreeSet::new();
        violations.retain(|v| seen.insert(v.clone()));
        violations.truncate(10);
        Err(format!("{summary}: {}", violations.join("; ")))
    }
}

#[test]
fn sim_raft_safety_over_seeded_schedules() {
    let seeds: Vec<u64> = match std::env::var("QUORUM_SEED") {
        Ok(seed) => vec![seed.parse().unwrap_or_else(|e| panic!("QUORUM_SEED={seed}: {e}"))],
        Err(_) => {
            let count = std::env::var("QUORUM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
            (0..count).collect()
        }
    };
    for seed in seeds {
        let outcome = std::panic::catch_unwind(|| run_seed(seed));
        let failure = match outcome {
            Ok(Ok(summary)) => {
                if std::env::var("QUORUM_SEED").is_ok() || std::env::var("QUORUM_VERBOSE").is_ok() {
                    eprintln!("seed {seed}: {summary}");
                }
                continue;
            }
            Ok(Err(violations)) => violations,
            Err(_) => "panicked (see above)".to_owned(),
        };
        panic!("simulation seed {seed} failed: {failure}\nreplay: QUORUM_SEED={seed} cargo test -p potok-quorum sim");
    }
}
