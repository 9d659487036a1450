//! A deterministic simulation of one partition replicated over three
//! brokers (issue 9, item 9): the real `Partition` and `ReplicaFetcher`
//! state machines on real logs, driven by a seeded event loop instead of
//! the network and the controller. Requests and answers wait in the
//! simulated network until the loop delivers them (in any order, across
//! connections), metadata reaches each broker late, the controller elects
//! leaders from the ISR (clean elections only), shrinks and expands the ISR
//! (an expansion only with the follower's current broker epoch, KIP-903),
//! followers crash losing the unflushed tail of their logs and restart, the
//! leader moves its log start (retention), and deposed leaders keep taking
//! produce until they learn. Every step checks:
//!
//! - no replica's high watermark goes back while it runs;
//! - every batch below any replica's high watermark is the same bytes on
//!   every replica that has it;
//! - a record acknowledged with acks=all is in the log of every leader
//!   elected after (at its offset, the same bytes);
//!
//! and at the end, once healed, every replica holds the same log.
//!
//! `REPLICATION_SEEDS=n` runs n seeds (200 by default); a failing seed is
//! printed and replayed alone with
//! `REPLICATION_SEED=n cargo test -p potok-broker replication_sim`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use records::{BatchHeader, Compression};
use storage::{Log, LogConfig};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::local::{answer_epoch, answer_fetch, answer_list_offset};
use super::{EpochAnswer, EpochQuery, FetchAnswer, FetchQuery, LeaderEndpoint, OffsetSpec, ReplicaFetcher, TopicPartition};
use crate::error::{BrokerError, Result};
use crate::partition::{FollowerFetch, LeaderAndIsr, Partition, Role};

const NODES: usize = 3;
const STEPS: usize = 400;

/// splitmix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

enum Call {
    Epochs(Vec<EpochQuery>),
    Fetch(Vec<FetchQuery>, usize),
    ListOffset(i32, OffsetSpec),
}

enum Reply {
    Epochs(Vec<EpochAnswer>),
    Fetch(Vec<FetchAnswer>),
    ListOffset(std::result::Result<i64, ResponseError>),
}

struct Request {
    from: usize,
    to: usize,
    incarnation: i64,
    call: Call,
    reply: oneshot::Sender<Reply>,
}

struct Answer {
    to: usize,
    reply: Reply,
    tx: oneshot::Sender<Reply>,
}

/// What is on the wire.
#[derive(Default)]
struct Net {
    requests: Vec<Request>,
    answers: Vec<Answer>,
}

/// A follower's connection to a leader through the simulated network.
struct SimLeader {
    from: usize,
    to: usize,
    incarnation: i64,
    on_fetch: bool,
    net: Arc<Mutex<Net>>,
}

impl SimLeader {
    async fn call(&self, call: Call) -> Result<Reply> {
        let (reply, answered) = oneshot::channel();
        self.net.lock().requests.push(Request { from: self.from, to: self.to, incarnation: self.incarnation, call, reply });
        answered.await.map_err(|_| BrokerError::kafka(ResponseError::NetworkException, "connection lost"))
    }
}

fn unexpected() -> BrokerError {
    BrokerError::kafka(ResponseError::UnknownServerError, "an answer of another request")
}

impl LeaderEndpoint for SimLeader {
    fn truncation_on_fetch(&self) -> bool {
        self.on_fetch
    }

    async fn offset_for_leader_epoch(&self, queries: &[EpochQuery]) -> Result<Vec<EpochAnswer>> {
        match self.call(Call::Epochs(queries.to_vec())).await? {
            Reply::Epochs(answers) => Ok(answers),
            _ => Err(unexpected()),
        }
    }

    async fn fetch(&self, queries: &[FetchQuery], max_bytes: usize) -> Result<Vec<FetchAnswer>> {
        match self.call(Call::Fetch(queries.to_vec(), max_bytes)).await? {
            Reply::Fetch(answers) => Ok(answers),
            _ => Err(unexpected()),
        }
    }

    async fn list_offset(&self, partition: &TopicPartition, current_leader_epoch: i32, spec: OffsetSpec) -> Result<std::result::Result<i64, ResponseError>> {
        let _ = partition;
        match self.call(Call::ListOffset(current_leader_epoch, spec)).await? {
            Reply::ListOffset(answer) => Ok(answer),
            _ => Err(unexpected()),
        }
    }
}

type Round = Pin<Box<dyn Future<Output = (ReplicaFetcher, Result<()>)> + Send>>;

/// A fetcher between rounds, or in one (the round owns it).
enum Slot {
    Idle(ReplicaFetcher),
    Running(i32, Round),
    Empty,
}

impl Slot {
    fn leader(&self) -> i32 {
        match self {
            Slot::Idle(f) => f.leader_id(),
            Slot::Running(leader, _) => *leader,
            Slot::Empty => -1,
        }
    }
}

struct Node {
    id: usize,
    dir: PathBuf,
    /// None while crashed.
    partition: Option<Arc<Partition>>,
    /// Its broker epoch: one more at every restart.
    incarnation: i64,
    /// Metadata sent to it and not yet applied, in order, with the
    /// partition epoch of each (a count of the controller's changes).
    inbox: VecDeque<(u64, i32, LeaderAndIsr)>,
    /// The partition epoch it applied last: an older state is ignored, as
    /// Kafka's partition epoch makes a leader ignore a stale ISR.
    applied: u64,
    /// The leader and epoch it should fetch from, as its metadata says.
    want: Option<(i32, i32)>,
    /// Its fetchers, one per leader.
    fetchers: Vec<Slot>,
    /// The highest high watermark seen in this incarnation.
    high_watermark: i64,
}

struct Sim {
    rng: Rng,
    now: i64,
    on_fetch: bool,
    net: Arc<Mutex<Net>>,
    nodes: Vec<Node>,
    /// The controller's committed leadership.
    leader: i32,
    committed: LeaderAndIsr,
    partition_epoch: u64,
    /// Produced with acks=all, not yet answered: (node, incarnation, base, last).
    pending: Vec<(usize, i64, i64, i64)>,
    /// Acknowledged batches by base offset, with the controller's leader
    /// epoch when they were: every leader of a later epoch must have them.
    acked: BTreeMap<i64, (i32, Bytes)>,
    /// Every batch seen below some replica's high watermark, by base offset.
    committed_batches: BTreeMap<i64, Bytes>,
    next_value: u64,
    /// REPLICATION_TRACE=1: print every event.
    trace: bool,
    _dir: tempfile::TempDir,
}

fn config() -> LogConfig {
    // Small segments, so that moving the log start deletes some.
    LogConfig { segment_bytes: 2_048, ..LogConfig::default() }
}

fn open(dir: &std::path::Path, id: usize) -> Result<Arc<Partition>> {
    let log = Log::open(dir, config(), false)?;
    Ok(Arc::new(Partition::open("t".into(), Uuid::nil(), 0, log, id as i32)))
}

/// Whole batches of `bytes`, by base offset.
fn batches(bytes: &Bytes) -> Vec<(i64, Bytes)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(h) = BatchHeader::parse(&bytes[at..]) {
        let end = at + h.total_size();
        if end > bytes.len() {
            break;
        }
        out.push((h.base_offset, bytes.slice(at..end)));
        at = end;
    }
    out
}

/// Every batch of `p` below its high watermark (a read stops at a segment's end).
fn committed(p: &Partition) -> Result<Vec<(i64, Bytes)>> {
    let mut out: Vec<(i64, Bytes)> = Vec::new();
    let mut offset = p.log_start_offset();
    loop {
        let read = batches(&p.read(offset, 1 << 24)?);
        let Some(next) = read.last().and_then(|(_, b)| BatchHeader::parse(b).ok()).map(|h| h.next_offset()) else { break };
        out.extend(read);
        offset = next;
    }
    Ok(out)
}

impl Sim {
    fn new(seed: u64) -> Result<Sim> {
        // In memory where there is a tmpfs: the logs fsync a lot.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
        let dir = dir.map_err(|e| BrokerError::kafka(ResponseError::KafkaStorageError, e.to_string()))?;
        let mut rng = Rng(seed);
        let on_fetch = rng.chance(70);
        let committed = LeaderAndIsr { leader_epoch: 1, replicas: (0..NODES as i32).collect(), isr: (0..NODES as i32).collect() };
        let mut nodes = Vec::new();
        for id in 0..NODES {
            let node_dir = dir.path().join(format!("t-0-{id}"));
            let partition = open(&node_dir, id)?;
            if id == 0 {
                partition.make_leader(&committed, 0)?;
            } else {
                partition.make_follower(0, &committed)?;
            }
            let want = (id != 0).then_some((0, 1));
            nodes.push(Node { id, dir: node_dir, partition: Some(partition), incarnation: 1, inbox: VecDeque::new(), applied: 0, want, fetchers: Vec::new(), high_watermark: 0 });
        }
        Ok(Sim {
            rng,
            now: 0,
            on_fetch,
            net: Arc::default(),
            nodes,
            leader: 0,
            committed,
            partition_epoch: 0,
            pending: Vec::new(),
            acked: BTreeMap::new(),
            committed_batches: BTreeMap::new(),
            next_value: 0,
            trace: std::env::var("REPLICATION_TRACE").is_ok_and(|v| v == "1"),
            _dir: dir,
        })
    }

    fn alive(&self) -> Vec<usize> {
        (0..NODES).filter(|&n| self.nodes[n].partition.is_some()).collect()
    }

    /// The controller's decision reaches every running broker, late.
    fn announce(&mut self) {
        self.partition_epoch += 1;
        let (version, leader, state) = (self.partition_epoch, self.leader, self.committed.clone());
        for node in self.nodes.iter_mut().filter(|n| n.partition.is_some()) {
            node.inbox.push_back((version, leader, state.clone()));
        }
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{}] {}", self.now, what());
        }
    }

    fn apply_metadata(&mut self, n: usize, leader: i32, state: &LeaderAndIsr) -> Result<()> {
        self.log(|| format!("node {n} learns leader {leader} {state:?}"));
        let node = &mut self.nodes[n];
        let Some(p) = node.partition.clone() else { return Ok(()) };
        if leader == n as i32 {
            p.make_leader(state, self.now)?;
            node.want = None;
            self.check_acked_on(n, state.leader_epoch)?;
        } else {
            p.make_follower(leader, state)?;
            node.want = Some((leader, state.leader_epoch));
        }
        Ok(())
    }

    /// Every batch acknowledged before epoch `epoch` was elected is on node
    /// `n`, which just became its leader.
    fn check_acked_on(&self, n: usize, epoch: i32) -> Result<()> {
        let Some(p) = &self.nodes[n].partition else { return Ok(()) };
        let start = p.log_start_offset();
        for (&base, (_, bytes)) in self.acked.range(start..).filter(|(_, (acked_at, _))| *acked_at < epoch) {
            let found = p.reading(|l| Ok(l.read(base, 1)?)).ok().and_then(|b| batches(&b).into_iter().next());
            if found.as_ref().map(|(_, b)| b) != Some(bytes) {
                return Err(violation(format!("the acknowledged batch at {base} is not on the new leader {n}")));
            }
        }
        Ok(())
    }

    fn produce(&mut self, n: usize) -> Result<()> {
        let Some(p) = self.nodes[n].partition.clone() else { return Ok(()) };
        if !p.is_leader() {
            return Ok(());
        }
        let count = 1 + self.rng.below(3);
        let values: Vec<Bytes> = (0..count)
            .map(|_| {
                self.next_value += 1;
                Bytes::from(format!("v{}", self.next_value))
            })
            .collect();
        let entries = values.into_iter().map(|v| (None, Some(v), self.now));
        let mut batch = crate::record_batch::encode(entries, Compression::None).map_err(violation)?;
        if let Ok(appended) = p.append_as_leader(&mut batch, -1, self.now) {
            self.log(|| format!("node {n} appends {}..={} at epoch {}", appended.base_offset, appended.last_offset, p.leader_epoch()));
            self.pending.push((n, self.nodes[n].incarnation, appended.base_offset, appended.last_offset));
        }
        Ok(())
    }

    /// Answers acks=all produces whose records the ISR has.
    fn acknowledge(&mut self) -> Result<()> {
        let mut still = Vec::new();
        for (n, incarnation, base, last) in std::mem::take(&mut self.pending) {
            let node = &self.nodes[n];
            let Some(p) = node.partition.as_ref().filter(|_| node.incarnation == incarnation) else { continue };
            match p.check_replicated(last + 1) {
                None => still.push((n, incarnation, base, last)),
                Some(Ok(())) => {
                    let bytes = p.reading(|l| Ok(l.read(base, 1)?))?;
                    self.log(|| format!("node {n} acknowledges {base}..={last} (hw {}, isr {:?})", p.high_watermark(), p.role()));
                    if let Some((at, batch)) = batches(&bytes).into_iter().next().filter(|(at, _)| *at == base) {
                        self.acked.insert(at, (self.committed.leader_epoch, batch));
                    }
                }
                Some(Err(_)) => {}
            }
        }
        self.pending = still;
        Ok(())
    }

    fn serve(&mut self, request: Request) {
        let Request { from, to, incarnation, call, reply } = request;
        let partition = self.nodes[to].partition.clone();
        let p = partition.as_deref();
        let answer = match call {
            Call::Epochs(queries) => Reply::Epochs(queries.iter().map(|q| answer_epoch(p, q)).collect()),
            Call::Fetch(queries, max_bytes) => {
                let follower = FollowerFetch { replica_id: from as i32, broker_epoch: incarnation };
                Reply::Fetch(queries.iter().map(|q| answer_fetch(p, follower, q, max_bytes, self.now)).collect())
            }
            Call::ListOffset(epoch, spec) => Reply::ListOffset(answer_list_offset(p, epoch, spec)),
        };
        self.net.lock().answers.push(Answer { to: from, reply: answer, tx: reply });
    }

    /// Crashes follower `n`: connections drop, the unflushed tail of its log
    /// may be lost, the controller takes it out of the ISR.
    fn crash(&mut self, n: usize) -> Result<()> {
        let Some(p) = self.nodes[n].partition.clone() else { return Ok(()) };
        if !matches!(p.role(), Role::Follower { .. }) || n as i32 == self.leader {
            return Ok(());
        }
        {
            let mut net = self.net.lock();
            net.requests.retain(|r| r.from != n && r.to != n);
            net.answers.retain(|a| a.to != n);
        }
        let node = &mut self.nodes[n];
        node.fetchers.clear();
        node.inbox.clear();
        node.want = None;
        let (flushed, end) = (p.recovery_point()?, p.log_end_offset());
        if end > flushed {
            let cut = flushed + self.rng.below((end - flushed + 1) as usize) as i64;
            p.truncate_to(cut, -1)?;
        }
        self.log(|| format!("node {n} crashes, log {end} cut to {}", p.log_end_offset()));
        p.close()?;
        let node = &mut self.nodes[n];
        node.partition = None;
        if self.committed.isr.contains(&(n as i32)) {
            self.committed.isr.retain(|&r| r != n as i32);
            self.announce();
        }
        Ok(())
    }

    fn restart(&mut self, n: usize) -> Result<()> {
        if self.nodes[n].partition.is_some() {
            return Ok(());
        }
        let p = open(&self.nodes[n].dir, n)?;
        self.log(|| format!("node {n} restarts with {:?}", p.offsets()));
        let node = &mut self.nodes[n];
        node.incarnation += 1;
        node.high_watermark = p.high_watermark();
        node.partition = Some(p);
        // It starts from the current metadata.
        let (leader, state) = (self.leader, self.committed.clone());
        self.nodes[n].applied = self.partition_epoch;
        self.apply_metadata(n, leader, &state)
    }

    /// A clean election: a live ISR member other than the leader.
    fn elect(&mut self) {
        let candidates: Vec<i32> =
            self.committed.isr.iter().copied().filter(|&r| r != self.leader && self.nodes[r as usize].partition.is_some()).collect();
        if candidates.is_empty() {
            return;
        }
        let old = self.leader;
        self.leader = candidates[self.rng.below(candidates.len())];
        self.committed.leader_epoch += 1;
        if self.rng.chance(50) {
            // The old leader was fenced.
            self.committed.isr.retain(|&r| r != old);
        }
        self.log(|| format!("controller elects {} {:?}", self.leader, self.committed));
        self.announce();
    }

    fn shrink(&mut self) {
        let followers: Vec<i32> = self.committed.isr.iter().copied().filter(|&r| r != self.leader).collect();
        if followers.is_empty() {
            return;
        }
        let out = followers[self.rng.below(followers.len())];
        self.committed.isr.retain(|&r| r != out);
        self.log(|| format!("controller shrinks the ISR to {:?}", self.committed.isr));
        self.announce();
    }

    /// The leader asks to add a caught-up follower (AlterPartition); the
    /// controller takes it only from the leader of the committed state and
    /// with the follower's current broker epoch, and the leader applies it
    /// with the answer.
    fn expand(&mut self) -> Result<()> {
        let l = self.leader as usize;
        let Some(p) = self.nodes[l].partition.clone() else { return Ok(()) };
        let Role::Leader(view) = p.role() else { return Ok(()) };
        if p.leader_epoch() != self.committed.leader_epoch || view.isr != self.committed.isr {
            return Ok(());
        }
        for r in 0..NODES {
            let Some(isr) = p.maybe_expand_isr(r as i32) else { continue };
            let current = view.followers.get(&(r as i32)).map(|f| f.broker_epoch);
            if self.nodes[r].partition.is_none() || current != Some(self.nodes[r].incarnation) {
                continue;
            }
            self.committed.isr = isr;
            self.log(|| format!("controller expands the ISR to {:?} ({:?})", self.committed.isr, view.followers));
            p.make_leader(&self.committed, self.now)?;
            self.announce();
            self.nodes[l].applied = self.partition_epoch;
            return Ok(());
        }
        Ok(())
    }

    /// Moves the leader's log start up to its high watermark (retention).
    fn retention(&mut self) -> Result<()> {
        let Some(p) = self.nodes[self.leader as usize].partition.clone() else { return Ok(()) };
        if !p.is_leader() {
            return Ok(());
        }
        // At a batch boundary, as retention deletes whole segments (a
        // DeleteRecords inside a batch is a case of its own: the empty
        // follower log that restarts at the batch's base).
        let bases: Vec<i64> = committed(&p)?.into_iter().map(|(base, _)| base).collect();
        let mid_batch = self.rng.chance(10);
        if let Some(&base) = bases.get(self.rng.below(bases.len())) {
            let offset = if mid_batch { base + 1 } else { base };
            if offset <= p.high_watermark() && (!mid_batch || self.nodes.iter().filter(|n| n.id != self.leader as usize).all(|n| n.partition.as_ref().is_none_or(|f| f.log_end_offset() <= base))) {
                p.delete_records_before(offset)?;
            }
        }
        Ok(())
    }

    /// Starts rounds for fetchers that are ready, after giving them back
    /// their finished rounds and applying the metadata's changes, as the
    /// fetcher tasks do between rounds. A round towards a leader the
    /// metadata no longer names runs on (its answers must be refused).
    fn run_fetchers(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        for n in 0..NODES {
            let node = &mut self.nodes[n];
            for slot in &mut node.fetchers {
                if let Slot::Running(_, round) = slot {
                    if let Poll::Ready((fetcher, _)) = round.as_mut().poll(&mut cx) {
                        *slot = Slot::Idle(fetcher);
                    }
                }
            }
            let want = node.want;
            node.fetchers.retain(|slot| match slot {
                Slot::Idle(f) => want.is_some_and(|(leader, _)| f.leader_id() == leader),
                Slot::Running(..) => true,
                Slot::Empty => false,
            });
            let (Some(p), Some((leader, epoch))) = (node.partition.clone(), want) else { continue };
            if !node.fetchers.iter().any(|slot| slot.leader() == leader) {
                node.fetchers.push(Slot::Idle(ReplicaFetcher::new(n as i32, leader, 1 << 20).with_backoff(20)));
            }
            for slot in &mut node.fetchers {
                let Slot::Idle(fetcher) = slot else { continue };
                if fetcher.leader_id() != leader {
                    continue;
                }
                fetcher.add_partition(Arc::clone(&p), epoch);
                if fetcher.next_work_at().is_none_or(|at| at > self.now) {
                    continue;
                }
                let Slot::Idle(mut fetcher) = std::mem::replace(slot, Slot::Empty) else { continue };
                let endpoint = SimLeader { from: n, to: leader as usize, incarnation: node.incarnation, on_fetch: self.on_fetch, net: Arc::clone(&self.net) };
                let now = self.now;
                let mut round: Round = Box::pin(async move {
                    let result = fetcher.do_work(&endpoint, now).await;
                    (fetcher, result)
                });
                *slot = match round.as_mut().poll(&mut cx) {
                    Poll::Ready((fetcher, _)) => Slot::Idle(fetcher),
                    Poll::Pending => Slot::Running(leader, round),
                };
            }
        }
    }

    fn deliver_request(&mut self) {
        let request = {
            let mut net = self.net.lock();
            if net.requests.is_empty() {
                return;
            }
            let i = self.rng.below(net.requests.len());
            net.requests.swap_remove(i)
        };
        self.serve(request);
    }

    fn deliver_answer(&mut self) {
        let mut net = self.net.lock();
        if net.answers.is_empty() {
            return;
        }
        let i = self.rng.below(net.answers.len());
        let answer = net.answers.swap_remove(i);
        let _ = answer.tx.send(answer.reply);
    }

    fn deliver_metadata(&mut self, n: usize) -> Result<()> {
        if let Some((version, leader, state)) = self.nodes[n].inbox.pop_front() {
            if version > self.nodes[n].applied {
                self.nodes[n].applied = version;
                self.apply_metadata(n, leader, &state)?;
            }
        }
        Ok(())
    }

    /// The invariants of every step.
    fn check(&mut self) -> Result<()> {
        for n in 0..NODES {
            let Some(p) = self.nodes[n].partition.clone() else { continue };
            let hw = p.high_watermark();
            if hw < self.nodes[n].high_watermark {
                return Err(violation(format!("node {n}'s high watermark went back from {} to {hw}", self.nodes[n].high_watermark)));
            }
            self.nodes[n].high_watermark = hw;
            for (base, batch) in committed(&p)? {
                match self.committed_batches.get(&base) {
                    Some(seen) if *seen != batch => {
                        return Err(violation(format!("node {n} has another batch at {base}, below its high watermark {hw}")));
                    }
                    Some(_) => {}
                    None => {
                        self.committed_batches.insert(base, batch);
                    }
                }
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<()> {
        self.now += 1 + self.rng.below(5) as i64;
        let alive = self.alive();
        let any = |rng: &mut Rng| alive[rng.below(alive.len())];
        match self.rng.below(100) {
            0..=19 => {
                // Mostly the leader; now and then a broker that still thinks it leads.
                let n = if self.rng.chance(80) { self.leader as usize } else { any(&mut self.rng) };
                self.produce(n)?;
            }
            20..=44 => self.deliver_request(),
            45..=69 => self.deliver_answer(),
            70..=81 => {
                let n = any(&mut self.rng);
                self.deliver_metadata(n)?;
            }
            82..=83 => self.elect(),
            84 => self.shrink(),
            85..=90 => self.expand()?,
            91..=92 => {
                let n = self.rng.below(NODES);
                self.crash(n)?;
            }
            93..=95 => {
                let n = self.rng.below(NODES);
                self.restart(n)?;
            }
            96..=97 => {
                let n = any(&mut self.rng);
                if let Some(p) = &self.nodes[n].partition {
                    p.flush()?;
                }
            }
            _ => self.retention()?,
        }
        self.run_fetchers();
        self.acknowledge()?;
        self.check()
    }

    /// No more faults: everyone restarts and learns the metadata, and the
    /// network delivers everything, until the replicas agree.
    fn heal(&mut self) -> Result<()> {
        for n in 0..NODES {
            self.restart(n)?;
        }
        for _ in 0..20_000 {
            self.now += 5;
            for n in 0..NODES {
                while !self.nodes[n].inbox.is_empty() {
                    self.deliver_metadata(n)?;
                }
            }
            self.deliver_request();
            self.deliver_answer();
            self.expand()?;
            self.run_fetchers();
            self.acknowledge()?;
            self.check()?;
            if self.healed() {
                return Ok(());
            }
        }
        Err(violation(format!("the replicas never converged: {}", self.describe())))
    }

    /// The state of every node, for a failure's message.
    fn describe(&self) -> String {
        let net = self.net.lock();
        let requests: Vec<(usize, usize)> = net.requests.iter().map(|r| (r.from, r.to)).collect();
        let answers: Vec<usize> = net.answers.iter().map(|a| a.to).collect();
        let mut out = format!(
            "controller: leader {} {:?}; on_fetch {}; requests {requests:?} answers {answers:?};",
            self.leader, self.committed, self.on_fetch
        );
        for node in &self.nodes {
            let Some(p) = &node.partition else {
                out += &format!(" node {}: down;", node.id);
                continue;
            };
            let states: Vec<String> = node
                .fetchers
                .iter()
                .map(|slot| match slot {
                    Slot::Idle(f) => format!("idle to {} {:?} next {:?}", f.leader_id(), f.state("t", 0), f.next_work_at()),
                    Slot::Running(leader, _) => format!("running to {leader}"),
                    Slot::Empty => "empty".into(),
                })
                .collect();
            out += &format!(" node {}: {:?} epoch {} {:?} want {:?} fetchers {states:?};", node.id, p.role(), p.leader_epoch(), p.offsets(), node.want);
        }
        out
    }

    fn healed(&self) -> bool {
        let Some(leader) = &self.nodes[self.leader as usize].partition else { return false };
        let offsets = leader.offsets();
        self.committed.isr.len() == NODES
            && offsets.high_watermark == offsets.log_end
            // Log starts may differ: a replica that started afresh at an
            // earlier leader's log start keeps it.
            && self.nodes.iter().all(|n| {
                n.partition.as_ref().is_some_and(|p| (p.high_watermark(), p.log_end_offset()) == (offsets.high_watermark, offsets.log_end))
            })
    }

    /// After healing: every replica holds the leader's log, with every
    /// acknowledged batch.
    fn check_final(&self) -> Result<()> {
        let leader = self.leader as usize;
        self.check_acked_on(leader, i32::MAX)?;
        let read = |n: usize| -> Result<Vec<(i64, Bytes)>> {
            let p = self.nodes[n].partition.as_ref().ok_or_else(|| violation("a node is down".into()))?;
            committed(p)
        };
        let from = |batches: Vec<(i64, Bytes)>, start: i64| -> Vec<(i64, Bytes)> { batches.into_iter().filter(|(base, _)| *base >= start).collect() };
        let start = self.nodes.iter().filter_map(|n| n.partition.as_ref().map(|p| p.log_start_offset())).max().unwrap_or(0);
        let expected = from(read(leader)?, start);
        for n in 0..NODES {
            if from(read(n)?, start) != expected {
                let bases = |b: &[(i64, Bytes)]| b.iter().map(|(o, x)| (*o, x.len())).collect::<Vec<_>>();
                return Err(violation(format!(
                    "node {n}'s log differs from the leader {leader}'s after healing: {:?} against {:?}",
                    bases(&from(read(n)?, start)),
                    bases(&expected)
                )));
            }
        }
        Ok(())
    }
}

fn violation(what: String) -> BrokerError {
    BrokerError::kafka(ResponseError::UnknownServerError, what)
}

/// One seeded run; Err names the broken invariant.
fn run_seed(seed: u64) -> std::result::Result<(), String> {
    let run = || -> Result<()> {
        let mut sim = Sim::new(seed)?;
        for step in 0..STEPS {
            sim.step().map_err(|e| violation(format!("step {step}: {e}")))?;
        }
        sim.heal()?;
        sim.check_final()
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()),
    }
}

#[test]
fn replication_sim() {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let seeds: Vec<u64> = match env("REPLICATION_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("REPLICATION_SEEDS").unwrap_or(200)).collect(),
    };
    for seed in seeds {
        if let Err(e) = run_seed(seed) {
            panic!("replication_sim: seed {seed} failed: {e}\nreplay: REPLICATION_SEED={seed} cargo test -p potok-broker replication_sim");
        }
    }
}
