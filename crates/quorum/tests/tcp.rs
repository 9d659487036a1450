//! Three controllers in one process over real loopback TCP.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use metadata::{MetadataRecord, TopicRecord, Uuid};
use quorum::{Committed, NodeId, Quorum, QuorumOptions};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

/// Bounds every wait so a broken quorum fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(60);

fn options() -> QuorumOptions {
    let mut options = QuorumOptions::default();
    options.raft.heartbeat_interval = 100;
    options.raft.election_timeout_min = 600;
    options.raft.election_timeout_max = 1200;
    // Snapshot and purge early so that a restarted node catches up by snapshot.
    options.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(4);
    options.raft.max_in_snapshot_log_to_keep = 0;
    options
}

fn topic(name: &str) -> MetadataRecord {
    MetadataRecord::Topic(TopicRecord { name: name.into(), topic_id: Uuid::new_v4() })
}

async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node_dir(root: &std::path::Path, id: u64) -> PathBuf {
    root.join(format!("n{id}")).join(quorum::METADATA_DIR)
}

/// Three voters on OS-chosen loopback ports, directories under `root`.
async fn start_three(root: &std::path::Path, options: QuorumOptions) -> (Vec<Option<Quorum>>, Vec<(NodeId, String)>) {
    let mut listeners = Vec::new();
    let mut voters = Vec::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        voters.push((id, listener.local_addr().expect("addr").to_string()));
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (listener, (id, _)) in listeners.into_iter().zip(&voters) {
        let q = Quorum::start_on(listener, *id, voters.clone(), &node_dir(root, *id), options.clone()).await.expect("start");
        nodes.push(Some(q));
    }
    (nodes, voters)
}

/// The leader all running nodes agree on.
async fn agreed_leader(nodes: &[Option<Quorum>]) -> NodeId {
    until("a leader all nodes agree on", || {
        let leaders: BTreeSet<_> = nodes.iter().flatten().map(|q| q.leader()).collect();
        match leaders.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(leader)] if nodes.iter().flatten().any(|q| q.node_id() == *leader) => Some(*leader),
            _ => None,
        }
    })
    .await
}

fn topic_names(q: &Quorum) -> Vec<String> {
    q.image().0.topics().map(|t| t.name.clone()).collect()
}

/// Drains the committed records a subscriber saw: (offset, topic names), in
/// order. A follower that fell behind the leader's purged log (the tests keep
/// no log behind a snapshot) gets a snapshot instead of the entries it covers:
/// those are taken from `expected`, which the image checks cover.
fn drain(rx: &mut broadcast::Receiver<Committed>, expected: &[(u64, Vec<String>)]) -> Vec<(u64, Vec<String>)> {
    let mut seen = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            Committed::Records { offset, records, .. } => {
                let names = records
                    .iter()
                    .filter_map(|r| match r {
                        MetadataRecord::Topic(t) => Some(t.name.clone()),
                        _ => None,
                    })
                    .collect();
                seen.push((offset, names));
            }
            Committed::Snapshot { offset } => {
                let after = seen.last().map_or(0, |(o, _)| *o);
                seen.extend(expected.iter().filter(|(o, _)| *o > after && *o <= offset).cloned());
            }
            Committed::ClusterId { .. } => {}
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_commit_fail_over_and_catch_up() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = |id: u64| -> PathBuf { node_dir(root.path(), id) };
    let (mut nodes, voters) = start_three(root.path(), options()).await;
    let mut subscribers: Vec<_> = nodes.iter().flatten().map(|q| q.subscribe()).collect();

    // A leader, and one cluster id agreed by all.
    let leader = agreed_leader(&nodes).await;
    let cluster_id = until("the cluster id on every node", || {
        let ids: BTreeSet<_> = nodes.iter().flatten().map(|q| q.cluster_id()).collect();
        match ids.into_iter().collect::<Vec<_>>().as_slice() {
            [Some(id)] => Some(id.clone()),
            _ => None,
        }
    })
    .await;

    // Proposals from every node, followers forwarding to the leader.
    let mut expected = Vec::new();
    for round in 0..3 {
        for q in nodes.iter().flatten() {
            let name = format!("t-{}-{round}", q.node_id());
            let offset = q.propose(vec![topic(&name)]).await.expect("propose");
            expected.push((offset, vec![name]));
        }
    }
    let offsets: Vec<u64> = expected.iter().map(|(o, _)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "offsets increase: {offsets:?}");
    let last = *offsets.last().expect("offsets");

    // Every node applies every committed batch, in order.
    for (q, rx) in nodes.iter().flatten().zip(subscribers.iter_mut()) {
        until("every node applying the proposals", || (q.image().1 >= Some(last)).then_some(())).await;
        let seen = drain(rx, &expected);
        assert_eq!(seen, expected, "node {} committed sequence", q.node_id());
    }

    // DescribeQuorum's view from the leader.
    let lq = nodes.iter().flatten().find(|q| q.node_id() == leader).expect("leader node");
    let description = until("the leader seeing every voter caught up", || {
        let d = lq.describe();
        d.voters.iter().all(|v| v.log_end_offset > last as i64 && v.last_caught_up_ms > 0).then_some(d)
    })
    .await;
    assert_eq!(description.leader, Some(leader));
    assert!(description.high_watermark > last as i64, "{description:?}");
    assert_eq!(description.voters.iter().map(|v| v.id).collect::<Vec<_>>(), vec![1, 2, 3]);

    // The leader goes away: a new one is elected and commits continue.
    let old_epoch = lq.epoch();
    let old = nodes[(leader - 1) as usize].take().expect("leader");
    let old_end = old.metrics().borrow().last_log_index.expect("old leader's log end");
    let old_addr = voters[(leader - 1) as usize].1.clone();
    old.shutdown().await;
    let new_leader = agreed_leader(&nodes).await;
    assert_ne!(new_leader, leader);
    for round in 0..5 {
        for q in nodes.iter().flatten() {
            assert!(q.epoch() > old_epoch, "node {} epoch {} after {old_epoch}", q.node_id(), q.epoch());
            let name = format!("after-{}-{round}", q.node_id());
            let offset = q.propose(vec![topic(&name)]).await.expect("propose after failover");
            expected.push((offset, vec![name]));
        }
    }
    // The new leader has purged past the old leader's log end: the restarted
    // node can only catch up by an InstallSnapshot over TCP.
    let nq = nodes.iter().flatten().find(|q| q.node_id() == new_leader).expect("new leader node");
    until("the new leader purging past the old leader's log", || {
        (nq.metrics().borrow().purged.map(|id| id.index) > Some(old_end)).then_some(())
    })
    .await;
    let last = expected.last().map(|(o, _)| *o).expect("offsets");
    let mut names: Vec<String> = expected.iter().flat_map(|(_, n)| n.clone()).collect();
    names.sort();
    for q in nodes.iter().flatten() {
        until("the survivors applying everything", || (q.image().1 >= Some(last)).then_some(())).await;
        assert_eq!(topic_names(q), names, "node {} lost nothing committed", q.node_id());
    }

    // The old leader restarts from its directory and catches up.
    let listener = TcpListener::bind(&old_addr).await.expect("rebind");
    let back = Quorum::start_on(listener, leader, voters.clone(), &dir(leader), options()).await.expect("restart");
    until("the restarted node catching up", || (topic_names(&back) == names).then_some(())).await;
    assert_eq!(back.cluster_id(), Some(cluster_id));
    nodes[(leader - 1) as usize] = Some(back);
    for q in nodes.into_iter().flatten() {
        q.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_the_connection_and_the_node_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let root = tempfile::tempdir().expect("tempdir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let q = Quorum::start_on(listener, 1, vec![(1, addr.clone())], root.path(), options()).await.expect("start");

    // Closed means: the node answers nothing and ends the stream.
    async fn closed(mut stream: tokio::net::TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await, Ok(Ok(0)) | Ok(Err(_)))
    }
    // Anything else than the preface first (an HTTP client, say).
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
    assert!(closed(stream).await, "a connection without the preface is closed");
    // A length beyond the frame bound.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    stream.write_all(&quorum::PREFACE).await.expect("write");
    stream.write_all(&((quorum::MAX_FRAME_BYTES as u32) + 1).to_be_bytes()).await.expect("write");
    assert!(closed(stream).await, "an oversized frame closes the connection");
    // A frame of the right length that is not a request.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let garbage = b"{\"Nonsense\":1}";
    stream.write_all(&quorum::PREFACE).await.expect("write");
    stream.write_all(&(garbage.len() as u32).to_be_bytes()).await.expect("write");
    stream.write_all(garbage).await.expect("write");
    assert!(closed(stream).await, "an undecodable frame closes the connection");

    // A one-voter quorum leads itself and still commits.
    let offset = q.propose(vec![topic("after-garbage")]).await.expect("propose");
    until("the proposal applied", || (q.image().1 >= Some(offset)).then_some(())).await;
    assert_eq!(topic_names(&q), vec!["after-garbage".to_owned()]);
    assert_eq!(q.describe().leader, Some(1));
    q.shutdown().await;
}

/// The controller's `MetadataSink` on the quorum: a follower's
/// `append_and_commit` goes through the leader and answers the delta of
/// exactly its change; with no leader it is NOT_CONTROLLER-like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_sink_commits_from_a_follower_and_answers_its_delta() {
    use metadata::{MetadataError, MetadataSink, PartitionRecord};
    use quorum::QuorumSink;
    use std::sync::Arc;

    let root = tempfile::tempdir().expect("tempdir");
    let mut options = options();
    options.propose_timeout = Duration::from_secs(3);
    // Log kept behind snapshots: a slow follower catches up by entries, so
    // its own change's delta is seen here (a snapshot would hide it).
    options.raft.snapshot_policy = openraft::SnapshotPolicy::LogsSinceLast(1000);
    options.raft.max_in_snapshot_log_to_keep = 100;
    let (nodes, _) = start_three(root.path(), options).await;
    let leader = agreed_leader(&nodes).await;
    let nodes: Vec<Arc<Quorum>> = nodes.into_iter().flatten().map(Arc::new).collect();
    let follower = nodes.iter().find(|q| q.node_id() != leader).expect("a follower").clone();

    let topic_id = Uuid::new_v4();
    let records = vec![
        MetadataRecord::Topic(TopicRecord { name: "via-sink".into(), topic_id }),
        MetadataRecord::Partition(PartitionRecord { topic_id, partition: 0, replicas: vec![1, 2, 3], isr: vec![1, 2, 3], leader: 1, leader_epoch: 0, ..Default::default() }),
    ];
    // Inside the runtime (block_in_place) as the controller's handlers call it.
    let mut sink: Box<dyn MetadataSink> = Box::new(QuorumSink::new(follower.clone(), tokio::runtime::Handle::current()));
    let committed = sink.append_and_commit(&records, 0).expect("append_and_commit from a follower");
    assert_eq!(committed.delta.created_topics, [topic_id].into());
    assert_eq!(committed.delta.partitions_of(topic_id).map(|(p, c)| (p, c.old.is_none(), c.new.leader)).collect::<Vec<_>>(), vec![(0, true, 1)]);
    assert!(committed.delta.deleted_topics.is_empty() && committed.delta.topic_configs.is_empty());
    assert_eq!(sink.image().topic("via-sink").map(|t| t.id), Some(topic_id), "the sink's image has the change");

    // Outside any runtime (a plain thread) it waits on the quorum's runtime;
    // the delta is only that change, not the one before.
    let second_id = Uuid::new_v4();
    let second = vec![MetadataRecord::Topic(TopicRecord { name: "from-a-thread".into(), topic_id: second_id })];
    let (sink, second_committed) = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || {
            let c = sink.append_and_commit(&second, 0);
            (sink, c)
        })
        .join()
        .expect("thread")
    })
    .await
    .expect("join");
    let second_committed = second_committed.expect("append_and_commit from a plain thread");
    assert!(second_committed.last_offset > committed.last_offset);
    assert_eq!(second_committed.delta.created_topics, [second_id].into());
    assert!(second_committed.delta.partitions.is_empty());

    // Every node ends with the same image.
    let last = second_committed.last_offset as u64;
    for q in &nodes {
        until("every node applying the sink's changes", || (q.image().1 >= Some(last)).then_some(())).await;
    }
    let images: Vec<_> = nodes.iter().map(|q| q.image().0).collect();
    assert!(images.windows(2).all(|w| w[0] == w[1]), "images differ: {images:?}");
    assert_eq!(&images[0], sink.image());
    drop(sink);

    // With the other two gone there is no leader: nothing is appended and the
    // error says so (the broker maps it to NOT_CONTROLLER).
    let mut alone = None;
    for q in nodes {
        if q.node_id() == follower.node_id() {
            alone = Some(q);
        } else {
            Arc::try_unwrap(q).ok().expect("only the test holds the node").shutdown().await;
        }
    }
    let alone = alone.expect("the follower");
    drop(follower);
    let mut sink = QuorumSink::new(alone.clone(), tokio::runtime::Handle::current());
    let err = sink.append_and_commit(&[topic("no-leader")], 0).expect_err("no leader");
    assert!(matches!(err, MetadataError::NotController(_)), "{err}");
    drop(sink);
    Arc::try_unwrap(alone).ok().expect("only the test holds the node").shutdown().await;
}

/// The active controller's sink commits only under its own leadership: on a
/// follower (a controller that lost the election while it decided) the change
/// is refused as NOT_CONTROLLER and never forwarded to the leader, so nothing
/// decided on a stale view is committed; on the leader it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_only_sink_refuses_on_a_follower_and_commits_nothing() {
    use metadata::{MetadataError, MetadataSink};
    use quorum::QuorumSink;
    use std::sync::Arc;

    let root = tempfile::tempdir().expect("tempdir");
    let mut options = options();
    options.propose_timeout = Duration::from_secs(3);
    let (nodes, _) = start_three(root.path(), options).await;
    let leader_id = agreed_leader(&nodes).await;
    let nodes: Vec<Arc<Quorum>> = nodes.into_iter().flatten().map(Arc::new).collect();
    let follower = nodes.iter().find(|q| q.node_id() != leader_id).expect("a follower").clone();
    let leader = nodes.iter().find(|q| q.node_id() == leader_id).expect("the leader").clone();

    let mut stale = QuorumSink::leader_only(follower.clone(), tokio::runtime::Handle::current());
    let err = stale.append_and_commit(&[topic("decided-by-a-follower")], 0).expect_err("a follower's decision");
    assert!(matches!(err, MetadataError::NotController(_)), "{err}");

    let mut active = QuorumSink::leader_only(leader.clone(), tokio::runtime::Handle::current());
    let committed = active.append_and_commit(&[topic("decided-by-the-leader")], 0).expect("the leader's decision");
    for q in &nodes {
        until("every node applying the leader's change", || (q.image().1 >= Some(committed.last_offset as u64)).then_some(())).await;
        let image = q.image().0;
        assert!(image.topic("decided-by-the-leader").is_some());
        assert!(image.topic("decided-by-a-follower").is_none(), "node {} has the follower's change", q.node_id());
    }
    drop((stale, active, follower, leader));
    for q in nodes {
        Arc::try_unwrap(q).ok().expect("only the test holds the node").shutdown().await;
    }
}

/// A broker-only node: it follows the log as an observer, by entries and, once
/// the leader purged past it, by snapshot; it proposes through the leader; the
/// leader describes it; it follows a new leader after a failover; and it
/// never counts as a voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_the_log_through_snapshots_and_a_failover() {
    let root = tempfile::tempdir().expect("tempdir");
    let (mut nodes, voters) = start_three(root.path(), options()).await;
    let leader = agreed_leader(&nodes).await;
    let lq = nodes[leader as usize - 1].as_ref().expect("leader");
    for i in 0..10 {
        lq.propose(vec![topic(&format!("before-{i}"))]).await.expect("propose");
    }
    // The leader snapshots every 4 entries and keeps no log behind: a fresh
    // observer starts from the snapshot.
    until("the leader purged its log", || (lq.metrics().borrow().purged.is_some()).then_some(())).await;
    let observer = Quorum::start_observer(4, voters.clone(), &node_dir(root.path(), 4), options()).await.expect("observer");
    assert!(observer.is_observer());
    let mut events = observer.subscribe();
    until("the observer has every topic", || (topic_names(&observer).len() == 10).then_some(())).await;
    assert_eq!(observer.cluster_id(), lq.cluster_id());
    assert_eq!(observer.leader(), Some(leader));
    // Its proposals go to the leader; it sees them come back as entries.
    let offset = observer.propose(vec![topic("from-the-observer")]).await.expect("propose through the leader");
    until("the observer applied its own proposal", || (observer.applied() >= Some(offset)).then_some(())).await;
    let mut saw = false;
    while let Ok(event) = events.try_recv() {
        saw |= matches!(event, Committed::Records { offset: at, .. } if at == offset);
    }
    assert!(saw, "the observer's subscribers saw the entry at {offset}");
    let described = until("the leader describes the observer", || {
        let d = lq.describe();
        d.observers.iter().any(|o| o.id == 4 && o.log_end_offset > offset as i64).then_some(d)
    })
    .await;
    assert_eq!(described.voters.iter().map(|v| v.id).collect::<Vec<_>>(), vec![1, 2, 3]);

    // The leader stops: the observer fetches from the new one.
    nodes[leader as usize - 1].take().expect("leader").shutdown().await;
    let new_leader = agreed_leader(&nodes).await;
    let nq = nodes[new_leader as usize - 1].as_ref().expect("new leader");
    nq.propose(vec![topic("after-failover")]).await.expect("propose after the failover");
    until("the observer follows the new leader", || {
        (observer.leader() == Some(new_leader) && topic_names(&observer).contains(&"after-failover".to_string())).then_some(())
    })
    .await;
    assert_eq!(observer.image().0, nq.image().0, "the observer's image is the leader's");
    // Restarted on its directory, it starts from the snapshot it kept and fetches the rest.
    let kept = observer.applied();
    observer.shutdown().await;
    nq.propose(vec![topic("while-the-observer-was-down")]).await.expect("propose");
    let observer = Quorum::start_observer(4, voters.clone(), &node_dir(root.path(), 4), options()).await.expect("restart");
    assert!(observer.applied().is_some() && observer.applied() <= kept, "restored {:?} of {kept:?}", observer.applied());
    until("the restarted observer caught up", || (observer.image().0 == nq.image().0).then_some(())).await;
    observer.shutdown().await;
    for q in nodes.into_iter().flatten() {
        q.shutdown().await;
    }
}
