//! Coordinator tests over a real on-disk `__consumer_offsets` partition: what is
//! committed survives a replay, deletions and expiry are stored as tombstones,
//! and KIP-848 groups come back with their members, epochs and assignments.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use storage::{Log, LogConfig};
use uuid::Uuid;

use super::store::OffsetValue;
use super::*;
use crate::partition::LeaderAndIsr;

struct Topics;

impl TopicCatalog for Topics {
    fn by_name(&self, name: &str) -> Option<(Uuid, i32)> {
        (name == "t").then(|| (Uuid::nil(), 2))
    }
    fn by_id(&self, _id: Uuid) -> Option<(String, i32)> {
        None
    }
    fn names(&self) -> Vec<String> {
        vec!["t".into()]
    }
}

fn config() -> GroupConfig {
    crate::config::ServerConfig::from_entries(vec![]).expect("defaults").groups
}

fn open_partition(dir: &std::path::Path) -> Arc<Partition> {
    let log = Log::open(&dir.join("__consumer_offsets-0"), LogConfig::default(), true).expect("open log");
    Arc::new(Partition::new(OFFSETS_TOPIC.into(), Uuid::nil(), 0, log, 0))
}

fn coordinator(dir: &std::path::Path, cfg: GroupConfig, now: i64) -> GroupCoordinator {
    let c = GroupCoordinator::new(cfg);
    c.load_partitions(vec![open_partition(dir)], now).expect("load");
    c
}

fn offset(o: i64, now: i64) -> OffsetValue {
    OffsetValue { offset: o, leader_epoch: -1, metadata: "m".into(), commit_timestamp: now }
}

fn committed(c: &GroupCoordinator, group: &str) -> Vec<((String, i32), i64)> {
    c.fetch_offsets(group, None).expect("served").into_iter().filter_map(|(tp, v)| v.map(|v| (tp, v.offset))).collect()
}

#[test]
fn commits_survive_a_replay_and_deletions_stay_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let c = coordinator(dir.path(), config(), 0);
        let results = block_on(c.commit_offsets("g1", "", None, -1, vec![(("t".into(), 0), offset(5, 1)), (("t".into(), 1), offset(7, 1))], &Topics, 1))
            .expect("admin commit to a new group");
        assert!(results.iter().all(|(_, r)| r.is_ok()));
        let unknown = block_on(c.commit_offsets("g1", "", None, -1, vec![(("nope".into(), 0), offset(1, 2))], &Topics, 2)).expect("commit");
        assert_eq!(unknown[0].1, Err(ResponseError::UnknownTopicOrPartition));
        block_on(c.commit_offsets("g2", "", None, -1, vec![(("t".into(), 0), offset(9, 3))], &Topics, 3)).expect("commit");
        block_on(c.commit_offsets("g1", "", None, -1, vec![(("t".into(), 0), offset(6, 4))], &Topics, 4)).expect("commit");
        assert_eq!(block_on(c.delete_groups(&["g2".into(), "g3".into()], 5))[1].1, Err(ResponseError::GroupIdNotFound));
        block_on(c.delete_offsets("g1", vec![("t".into(), 1)], 6)).expect("delete offsets");
    }
    let c = coordinator(dir.path(), config(), 10);
    assert_eq!(committed(&c, "g1"), vec![(("t".to_string(), 0), 6)]);
    assert!(committed(&c, "g2").is_empty(), "deleted group stays deleted");
    assert!(!c.with_groups("g2", |g| g.contains_key("g2")));
}

#[test]
fn generation_commits_need_a_member_and_unknown_groups_need_generation_minus_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), config(), 0);
    let err = block_on(c.commit_offsets("g", "m", None, 3, vec![(("t".into(), 0), offset(1, 0))], &Topics, 0));
    assert_eq!(err.err(), Some(ResponseError::GroupIdNotFound), "ILLEGAL_GENERATION before OffsetCommit v9");
    assert!(!c.with_groups("g", |g| g.contains_key("g")), "a refused commit creates no group");
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.offsets_retention_ms = 60_000;
    cfg.offsets_retention_check_interval_ms = 1;
    {
        let c = coordinator(dir.path(), cfg.clone(), 0);
        block_on(c.commit_offsets("old", "", None, -1, vec![(("t".into(), 0), offset(1, 1_000))], &Topics, 1_000)).expect("commit");
        block_on(c.commit_offsets("new", "", None, -1, vec![(("t".into(), 0), offset(2, 50_000))], &Topics, 50_000)).expect("commit");
        c.tick(61_000);
        assert!(committed(&c, "old").is_empty(), "expired");
        assert!(!c.with_groups("old", |g| g.contains_key("old")), "a group left with nothing is removed");
        assert_eq!(committed(&c, "new").len(), 1, "not yet expired");
    }
    let c = coordinator(dir.path(), cfg, 62_000);
    assert!(committed(&c, "old").is_empty(), "expiry is stored");
    assert_eq!(committed(&c, "new").len(), 1);
}

#[test]
fn offsets_of_a_deleted_topic_are_forgotten_for_good() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let c = coordinator(dir.path(), config(), 0);
        block_on(c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(5, 1)), (("t".into(), 1), offset(6, 1))], &Topics, 1))
            .expect("commit");
        c.forget_topic("t", 2);
        assert!(committed(&c, "g").is_empty());
    }
    let c = coordinator(dir.path(), config(), 3);
    assert!(committed(&c, "g").is_empty(), "the tombstones are stored");
}

fn join(member: &str) -> consumer::Heartbeat {
    consumer::Heartbeat {
        member_id: member.into(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec!["t".into()]),
        owned: Some(assignor::Assignment::new()),
        client_id: format!("client-{member}"),
        client_host: "/127.0.0.1".into(),
        ..consumer::Heartbeat::default()
    }
}

fn beat(member: &str, epoch: i32, owned: &[i32]) -> consumer::Heartbeat {
    let owned = if owned.is_empty() {
        assignor::Assignment::new()
    } else {
        assignor::Assignment::from([(Uuid::nil(), owned.iter().copied().collect())])
    };
    consumer::Heartbeat {
        member_id: member.into(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: Some(owned),
        client_id: format!("client-{member}"),
        client_host: "/127.0.0.1".into(),
        ..consumer::Heartbeat::default()
    }
}

fn partitions(a: &Option<assignor::Assignment>) -> Vec<i32> {
    a.as_ref().and_then(|a| a.get(&Uuid::nil())).map(|ps| ps.iter().copied().collect()).unwrap_or_default()
}

/// What a consumer group looks like from outside: state, group and assignment
/// epochs, and each member's id, epoch, client id, partitions and target.
type Snapshot = (&'static str, i32, i32, Vec<(String, i32, String, Vec<i32>, Vec<i32>)>);

fn snapshot(c: &GroupCoordinator, group: &str) -> Snapshot {
    let d = c.consumer_describe(&[group.to_string()]).remove(0).expect("a consumer group");
    let members = d
        .members
        .iter()
        .map(|(m, target)| {
            let list = |a: &assignor::Assignment| a.values().flatten().copied().collect::<Vec<i32>>();
            (m.id.clone(), m.epoch, m.client_id.clone(), list(&m.assigned), list(target))
        })
        .collect();
    (d.state, d.epoch, d.assignment_epoch, members)
}

#[test]
fn consumer_group_members_and_assignments_survive_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mid, kept) = {
        let c = coordinator(dir.path(), config(), 0);
        let hb = |h, now| block_on(c.consumer_heartbeat("cg", h, &Topics, now)).expect("heartbeat");
        assert_eq!(partitions(&hb(join("a"), 0).assignment), vec![0, 1]);
        hb(beat("a", 1, &[0, 1]), 1);
        assert_eq!(hb(join("b"), 2).member_epoch, 2);
        // a must revoke one partition: it stays at epoch 1 until it does.
        let kept = partitions(&hb(beat("a", 1, &[0, 1]), 3).assignment);
        assert_eq!(kept.len(), 1);
        let mid = snapshot(&c, "cg");
        assert_eq!(mid.0, "Reconciling");
        (mid, kept)
    };

    // Mid-revocation, the group comes back as it was; a finishes revoking.
    let c = coordinator(dir.path(), config(), 100);
    assert_eq!(snapshot(&c, "cg"), mid);
    let hb = |h, now| block_on(c.consumer_heartbeat("cg", h, &Topics, now)).expect("heartbeat");
    assert_eq!(hb(beat("a", 1, &kept), 101).member_epoch, 2);
    let given = partitions(&hb(beat("b", 2, &[]), 102).assignment);
    assert_eq!(given.len(), 1);
    hb(beat("b", 2, &given), 103);
    let stable = snapshot(&c, "cg");
    assert_eq!(stable.0, "Stable");
    assert_eq!((stable.1, stable.2), (2, 2));
    drop(c);

    let c = coordinator(dir.path(), config(), 200);
    assert_eq!(snapshot(&c, "cg"), stable);
    // The members carry on at their epochs: nothing new to assign, no rebalance.
    let r = block_on(c.consumer_heartbeat("cg", beat("a", 2, &kept), &Topics, 201)).expect("a is still a member");
    assert_eq!((r.member_epoch, r.assignment), (2, None));
    let r = block_on(c.consumer_heartbeat("cg", beat("b", 2, &given), &Topics, 202)).expect("b is still a member");
    assert_eq!((r.member_epoch, r.assignment), (2, None));
    assert_eq!(snapshot(&c, "cg"), stable);
    // Their epochs are good for committing offsets.
    let results = block_on(c.commit_offsets("cg", "a", None, 2, vec![(("t".into(), kept[0]), offset(3, 203))], &Topics, 203));
    assert!(results.expect("commit").iter().all(|(_, r)| r.is_ok()));
}

#[test]
fn members_who_left_stay_gone_and_restored_members_expire_without_heartbeats() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config();
    let session = i64::from(cfg.consumer_session_timeout_ms);
    {
        let c = coordinator(dir.path(), cfg.clone(), 0);
        let hb = |h, now| block_on(c.consumer_heartbeat("cg", h, &Topics, now)).expect("heartbeat");
        hb(join("a"), 0);
        hb(join("b"), 1);
        hb(consumer::Heartbeat { member_epoch: consumer::LEAVE_EPOCH, ..beat("b", 2, &[]) }, 2);
        assert_eq!(snapshot(&c, "cg").3.len(), 1);
    }
    let c = coordinator(dir.path(), cfg.clone(), 1_000);
    let (_, epoch, _, members) = snapshot(&c, "cg");
    assert_eq!(epoch, 3, "joins of a and b, leave of b");
    assert_eq!(members.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), vec!["a"]);
    let e = block_on(c.consumer_heartbeat("cg", beat("b", 2, &[]), &Topics, 1_001)).expect_err("b left");
    assert_eq!(e.error, ResponseError::UnknownMemberId);
    // a does not heartbeat: its session, restarted by the load, ends.
    c.tick(1_000 + session - 1);
    assert_eq!(snapshot(&c, "cg").3.len(), 1);
    c.tick(1_000 + session);
    assert_eq!(snapshot(&c, "cg").0, "Empty");
    drop(c);

    let c = coordinator(dir.path(), cfg.clone(), 2 * session);
    assert_eq!(snapshot(&c, "cg").0, "Empty", "the expiry is stored");
    assert_eq!(block_on(c.delete_groups(&["cg".into()], 2 * session))[0].1, Ok(()));
    drop(c);
    let c = coordinator(dir.path(), cfg, 3 * session);
    assert!(!c.with_groups("cg", |g| g.contains_key("cg")), "a deleted consumer group stays deleted");
}

#[test]
fn a_static_member_taken_over_by_a_new_instance_is_replaced_in_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let static_join = |id: &str| consumer::Heartbeat { instance_id: Some("i1".into()), ..join(id) };
    {
        let c = coordinator(dir.path(), config(), 0);
        let hb = |h, now| block_on(c.consumer_heartbeat("cg", h, &Topics, now)).expect("heartbeat");
        hb(static_join("a"), 0);
        let leave = consumer::Heartbeat { member_epoch: consumer::LEAVE_STATIC_EPOCH, ..static_join("a") };
        hb(leave, 1);
        assert_eq!(partitions(&hb(static_join("a2"), 2).assignment), vec![0, 1]);
    }
    let c = coordinator(dir.path(), config(), 100);
    let (state, epoch, _, members) = snapshot(&c, "cg");
    assert_eq!((state, epoch), ("Stable", 1), "a takeover does not rebalance");
    assert_eq!(members, vec![("a2".to_string(), 1, "client-a2".to_string(), vec![0, 1], vec![0, 1])]);
    // The instance id still belongs to a2.
    let e = block_on(c.consumer_heartbeat("cg", static_join("a3"), &Topics, 101)).expect_err("a2 holds i1");
    assert_eq!(e.error, ResponseError::UnreleasedInstanceId);
}

/// A coordinator over a partition whose log dir can be failed under it.
fn failing_coordinator(dir: &std::path::Path, cfg: GroupConfig) -> (GroupCoordinator, Arc<crate::log_dir_health::LogDirHealth>) {
    let health = Arc::new(crate::log_dir_health::LogDirHealth::new(dir.to_path_buf(), false));
    let log = Log::open(&dir.join("__consumer_offsets-0"), LogConfig::default(), true).expect("open log");
    let partition = Partition::new(OFFSETS_TOPIC.into(), Uuid::nil(), 0, log, 0).in_log_dir(Arc::clone(&health));
    let c = GroupCoordinator::new(cfg);
    c.load_partitions(vec![Arc::new(partition)], 0).expect("load");
    (c, health)
}

#[test]
fn an_offset_commit_that_cannot_be_stored_is_refused_and_not_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, health) = failing_coordinator(dir.path(), config());
    block_on(c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(5, 1))], &Topics, 1)).expect("commit");
    health.fail(&"disk gone");
    let results = block_on(c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(6, 2)), (("t".into(), 1), offset(7, 2))], &Topics, 2))
        .expect("a result per partition");
    assert_eq!(results.iter().map(|(_, r)| *r).collect::<Vec<_>>(), vec![Err(ResponseError::NotCoordinator); 2]);
    assert_eq!(committed(&c, "g"), vec![(("t".to_string(), 0), 5)], "the refused commit is not visible");
    let fresh = block_on(c.commit_offsets("g2", "", None, -1, vec![(("t".into(), 0), offset(1, 3))], &Topics, 3)).expect("results");
    assert_eq!(fresh[0].1, Err(ResponseError::NotCoordinator));
    assert!(!c.with_groups("g2", |g| g.contains_key("g2")), "a refused commit creates no group");
}

fn classic_join(member: &str) -> classic::JoinRequest {
    classic::JoinRequest {
        member_id: member.into(),
        group_instance_id: None,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        rebalance_timeout_ms: 30_000,
        session_timeout_ms: 10_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), bytes::Bytes::from_static(b"meta"))],
        require_known_member_id: false,
    }
}

fn classic_state(c: &GroupCoordinator) -> Option<(&'static str, i32, usize)> {
    c.with_groups("cg", |groups| {
        groups.get("cg").and_then(|g| match &g.membership {
            Membership::Classic(g) => Some((g.state.name(), g.generation, g.members.len())),
            Membership::Consumer(_) => None,
        })
    })
}

fn no_delay() -> GroupConfig {
    GroupConfig { initial_rebalance_delay_ms: 0, ..config() }
}

/// The response of an answered join.
fn joined(answer: classic::Answer<kafka_protocol::messages::JoinGroupResponse>) -> kafka_protocol::messages::JoinGroupResponse {
    match answer {
        classic::Answer::Now(r) => r,
        classic::Answer::Later(mut rx) => rx.try_recv().expect("answered at once"),
    }
}

/// A stable group of one member, its assignment stored: the member id.
fn stable_classic(c: &GroupCoordinator, instance: Option<&str>) -> String {
    let shard = c.shard("cg").expect("served");
    let mut groups = shard.lock().expect("active");
    let group = GroupCoordinator::classic_group(&mut groups, "cg", true, 0).expect("created");
    let req = classic::JoinRequest { group_instance_id: instance.map(str::to_string), ..classic_join("") };
    let member = joined(group.join(req, &c.config, 0)).member_id.to_string();
    let answer = group.sync(&member, instance, 1, (None, None), vec![(member.clone(), bytes::Bytes::from_static(b"a"))], 0);
    assert!(shard.finish_classic(&mut groups, "cg", 0).expect("stored").is_none(), "committed at once");
    let classic::Answer::Later(mut rx) = answer else { panic!("the leader waits for the store") };
    assert_eq!(rx.try_recv().expect("answered once stored").assignment, bytes::Bytes::from_static(b"a"));
    member
}

#[test]
fn a_join_that_cannot_be_stored_is_refused_and_leaves_the_group_as_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, health) = failing_coordinator(dir.path(), no_delay());
    let old = stable_classic(&c, Some("i1"));
    health.fail(&"disk gone");
    // The static member comes back with a new member id: the replacement is stored, and cannot be.
    let shard = c.shard("cg").expect("served");
    let mut groups = shard.lock().expect("active");
    let group = GroupCoordinator::classic_group(&mut groups, "cg", true, 1).expect("the group");
    let req = classic::JoinRequest { group_instance_id: Some("i1".into()), ..classic_join("") };
    let _ = group.join(req, &c.config, 1);
    assert_eq!(shard.finish_classic(&mut groups, "cg", 1).err(), Some(ResponseError::NotCoordinator), "the handler answers this");
    drop(groups);
    assert_eq!(classic_state(&c), Some(("Stable", 1, 1)));
    let members: Vec<String> = c.with_groups("cg", |groups| match &groups["cg"].membership {
        Membership::Classic(g) => g.members.keys().cloned().collect(),
        Membership::Consumer(_) => Vec::new(),
    });
    assert_eq!(members, vec![old], "the old member id is still the one stored");
}

#[test]
fn a_sync_that_cannot_be_stored_is_refused_and_the_assignment_not_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, health) = failing_coordinator(dir.path(), no_delay());
    let shard = c.shard("cg").expect("served");
    let member = {
        let mut groups = shard.lock().expect("active");
        let group = GroupCoordinator::classic_group(&mut groups, "cg", true, 0).expect("created");
        let member = joined(group.join(classic_join(""), &c.config, 0)).member_id.to_string();
        shard.finish_classic(&mut groups, "cg", 0).expect("nothing to store yet");
        member
    };
    assert_eq!(classic_state(&c), Some(("CompletingRebalance", 1, 1)));
    health.fail(&"disk gone");
    let mut groups = shard.lock().expect("active");
    let group = GroupCoordinator::classic_group(&mut groups, "cg", false, 1).expect("the group");
    let answer = group.sync(&member, None, 1, (None, None), vec![(member.clone(), bytes::Bytes::from_static(b"a"))], 1);
    assert_eq!(shard.finish_classic(&mut groups, "cg", 1).err(), Some(ResponseError::NotCoordinator), "the handler answers this");
    drop(groups);
    let classic::Answer::Later(mut rx) = answer else { panic!("the leader waits for the store") };
    let waiting = rx.try_recv().expect("the waiting members are answered");
    assert_eq!(waiting.error_code, ResponseError::NotCoordinator.code(), "no assignment that is not stored");
    assert_eq!(classic_state(&c), None, "nothing of the group was stored: it is not kept");
}

#[test]
fn a_consumer_heartbeat_that_cannot_be_stored_is_refused_and_undone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (c, health) = failing_coordinator(dir.path(), config());
    block_on(c.consumer_heartbeat("cg", join("a"), &Topics, 0)).expect("a joins");
    let before = snapshot(&c, "cg");
    health.fail(&"disk gone");
    let e = block_on(c.consumer_heartbeat("cg", join("b"), &Topics, 1)).expect_err("b's join cannot be stored");
    assert_eq!(e.error, ResponseError::NotCoordinator);
    assert_eq!(snapshot(&c, "cg"), before, "b is not a member, the epoch did not move");
    let e = block_on(c.consumer_heartbeat("new", join("x"), &Topics, 2)).expect_err("cannot be stored");
    assert_eq!(e.error, ResponseError::NotCoordinator);
    assert!(!c.with_groups("new", |g| g.contains_key("new")), "a group that could not be stored is not kept");
}

#[test]
fn a_session_expiry_that_cannot_be_stored_is_stored_with_the_next_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config();
    let session = i64::from(cfg.consumer_session_timeout_ms);
    let c = coordinator(dir.path(), cfg.clone(), 0);
    block_on(c.consumer_heartbeat("cg", join("a"), &Topics, 0)).expect("a joins");
    block_on(c.consumer_heartbeat("cg", join("b"), &Topics, 0)).expect("b joins");
    let epoch = block_on(c.consumer_heartbeat("cg", beat("a", 1, &[0, 1]), &Topics, session - 1)).expect("a heartbeats").member_epoch;
    // For a while the group's partition cannot be written.
    let failed_dir = tempfile::tempdir().expect("tempdir");
    let (failed, health) = failing_coordinator(failed_dir.path(), cfg.clone());
    health.fail(&"disk gone");
    let swap = || c.with_groups("cg", |healthy| failed.with_groups("cg", |broken| std::mem::swap(healthy, broken)));
    swap();
    failed.tick(session); // b expires: its tombstones cannot be written
    assert_eq!(snapshot(&failed, "cg").3.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), vec!["a"]);
    swap();
    block_on(c.consumer_heartbeat("cg", beat("a", epoch, &[0]), &Topics, session + 1)).expect("a heartbeats");
    let expired = snapshot(&c, "cg");
    drop(c);
    let c = coordinator(dir.path(), cfg, session + 2);
    assert_eq!(snapshot(&c, "cg"), expired, "the expiry was stored with the next heartbeat");
}

/// `__consumer_offsets`-`index` led by broker 0 at epoch 1 with a follower, 1,
/// in the ISR: the high watermark moves only when 1 fetches.
fn replicated_partition(dir: &std::path::Path, index: i32) -> Arc<Partition> {
    let log = Log::open(&dir.join(format!("__consumer_offsets-{index}")), LogConfig::default(), true).expect("open log");
    let partition = Partition::open(OFFSETS_TOPIC.into(), Uuid::nil(), index, log, 0);
    partition.make_leader(&LeaderAndIsr { leader_epoch: 1, replicas: vec![0, 1], isr: vec![0, 1] }, 0).expect("leader");
    Arc::new(partition)
}

/// Broker 1 fetches `partition` up to its log end, as a caught-up follower.
fn follower_catches_up(partition: &Partition) {
    partition.fetch_records(partition.log_end_offset(), 1 << 20, -1, Some(1), 0).expect("follower fetch");
}

/// Two group ids that hash to partitions 0 and 1 of two.
fn groups_on_two_partitions() -> (String, String) {
    let on = |p| (0..).map(|i| format!("g{i}")).find(|g| store::partition_for(g, 2) == p).expect("an id");
    (on(0), on(1))
}

#[test]
fn a_shard_serves_only_while_led_and_comes_back_with_its_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (on0, on1) = groups_on_two_partitions();
    let partitions = |d: &std::path::Path| {
        (0..2).map(|i| {
            let log = Log::open(&d.join(format!("__consumer_offsets-{i}")), LogConfig::default(), true).expect("open log");
            Arc::new(Partition::new(OFFSETS_TOPIC.into(), Uuid::nil(), i, log, 0))
        }).collect::<Vec<_>>()
    };
    let led = partitions(dir.path());
    let c = GroupCoordinator::new(config());
    c.load_partitions(led.clone(), 0).expect("load");
    for g in [&on0, &on1] {
        block_on(c.commit_offsets(g, "", None, -1, vec![(("t".into(), 0), offset(4, 1))], &Topics, 1)).expect("commit");
    }
    // Another broker leads partition 1 from epoch 1: its groups are not served here.
    c.on_resign(1, 1);
    assert_eq!(c.fetch_offsets(&on1, None).err(), Some(ResponseError::NotCoordinator));
    let refused = block_on(c.commit_offsets(&on1, "", None, -1, vec![(("t".into(), 0), offset(5, 2))], &Topics, 2));
    assert_eq!(refused.err(), Some(ResponseError::NotCoordinator));
    assert_eq!(c.check_fetch_member(&on1, "m", 1), Err(ResponseError::NotCoordinator));
    assert_eq!(block_on(c.delete_groups(&[on1.clone()], 2))[0].1, Err(ResponseError::NotCoordinator));
    let e = block_on(c.consumer_heartbeat(&on1, join("a"), &Topics, 2)).expect_err("not served");
    assert_eq!(e.error, ResponseError::NotCoordinator);
    assert_eq!(committed(&c, &on0), vec![(("t".to_string(), 0), 4)], "partition 0 is still served");
    let mut listed = Vec::new();
    c.each_group(|id, _| listed.push(id.to_string())).expect("listed");
    assert_eq!(listed, vec![on0.clone()], "only served groups are listed");
    // A resignation older than the shard it would end changes nothing.
    c.on_resign(0, -1);
    assert_eq!(committed(&c, &on0).len(), 1);
    // Leading partition 1 again (epoch 2): its groups are loaded from it.
    c.on_become_leader(Arc::clone(&led[1]), 2, 2, || 3);
    c.wait_loaded().expect("loaded");
    assert_eq!(committed(&c, &on1), vec![(("t".to_string(), 0), 4)]);
}

#[test]
fn a_loading_shard_answers_load_in_progress_and_a_failed_one_not_coordinator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shard = shard::Shard::new(open_partition(dir.path()), 0, 1);
    assert_eq!(shard.lock().err(), Some(ResponseError::CoordinatorLoadInProgress));
    shard.load(&config(), &|| 0).expect("load");
    assert!(shard.lock().is_ok());
    shard.unload();
    assert_eq!(shard.lock().err(), Some(ResponseError::NotCoordinator));
    // A partition that cannot be read: the shard is not served.
    let broken = tempfile::tempdir().expect("tempdir");
    let health = Arc::new(crate::log_dir_health::LogDirHealth::new(broken.path().to_path_buf(), false));
    let log = Log::open(&broken.path().join("__consumer_offsets-0"), LogConfig::default(), true).expect("open log");
    let partition = Arc::new(Partition::new(OFFSETS_TOPIC.into(), Uuid::nil(), 0, log, 0).in_log_dir(Arc::clone(&health)));
    let written = shard::Shard::new(Arc::clone(&partition), 0, 1);
    let key = store::StoredKey::Offset { group: "g".into(), topic: "t".into(), partition: 0 };
    written.write(vec![(key, Some(store::StoredValue::Offset(offset(1, 0))))], 0).expect("written");
    health.fail(&"disk gone");
    let shard = shard::Shard::new(partition, 0, 1);
    assert!(shard.load(&config(), &|| 0).is_err());
    assert!(shard.wait_loaded().is_err());
    assert_eq!(shard.lock().err(), Some(ResponseError::NotCoordinator));
}

/// The clock of a load that begins at `start` and is done at `done`: its
/// first reading is `start`, every later one `done`.
fn load_clock(start: i64, done: i64) -> impl Fn() -> i64 + Send + 'static {
    let readings = std::sync::atomic::AtomicUsize::new(0);
    move || if readings.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0 { start } else { done }
}

#[test]
fn sessions_of_loaded_members_start_when_the_load_is_done_not_when_it_began() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = no_delay();
    let consumer_session = i64::from(cfg.consumer_session_timeout_ms);
    let classic_session = i64::from(classic_join("").session_timeout_ms);
    {
        let c = coordinator(dir.path(), cfg.clone(), 0);
        block_on(c.consumer_heartbeat("kg", join("a"), &Topics, 0)).expect("joined");
        stable_classic(&c, None);
    }
    // A new coordinator becomes the leader at 100; replaying takes it 8 s.
    let (start, done) = (100, 8_100);
    let c = GroupCoordinator::new(cfg);
    c.on_become_leader(open_partition(dir.path()), 1, 1, load_clock(start, done));
    c.wait_loaded().expect("loaded");
    // The members could not heartbeat while it loaded: their sessions are
    // counted from the end of the load, not from its start.
    c.tick(start + classic_session);
    assert_eq!(classic_state(&c), Some(("Stable", 1, 1)), "the classic member keeps its generation");
    c.tick(done + classic_session - 1);
    assert_eq!(classic_state(&c), Some(("Stable", 1, 1)));
    c.tick(done + classic_session);
    assert_eq!(classic_state(&c).map(|s| s.2), Some(0), "a silent classic member expires a session after the load");
    c.tick(start + consumer_session);
    assert_eq!(snapshot(&c, "kg").3.len(), 1, "the consumer group member is still there");
    c.tick(done + consumer_session - 1);
    assert_eq!(snapshot(&c, "kg").3.len(), 1);
    c.tick(done + consumer_session);
    assert_eq!(snapshot(&c, "kg").0, "Empty", "a silent consumer group member expires a session after the load");
}

#[tokio::test]
async fn a_commit_is_answered_and_visible_only_once_below_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tempdir");
    let partition = replicated_partition(dir.path(), 0);
    let c = Arc::new(GroupCoordinator::new(config()));
    c.load_partitions(vec![Arc::clone(&partition)], 0).expect("load");
    let committing = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(7, 1))], &Topics, 1).await })
    };
    while partition.log_end_offset() == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!committing.is_finished(), "not answered before the follower has the record");
    assert!(committed(&c, "g").is_empty(), "not visible before it is committed");
    follower_catches_up(&partition);
    let results = committing.await.expect("join").expect("results");
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(committed(&c, "g"), vec![(("t".to_string(), 0), 7)]);
}

#[tokio::test]
async fn a_commit_the_isr_does_not_take_in_time_is_refused_and_not_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let partition = replicated_partition(dir.path(), 0);
    let c = GroupCoordinator::new(GroupConfig { offsets_commit_timeout_ms: 1, ..config() });
    c.load_partitions(vec![Arc::clone(&partition)], 0).expect("load");
    let results = c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(7, 1))], &Topics, 1).await.expect("results");
    assert_eq!(results[0].1, Err(ResponseError::CoordinatorNotAvailable), "Kafka's answer to a commit that timed out");
    assert!(committed(&c, "g").is_empty());
    assert_eq!(partition.log_end_offset(), 1, "appended, never committed");
}

#[tokio::test]
async fn a_sync_is_answered_once_the_assignment_is_committed_and_a_timeout_rebalances() {
    let dir = tempfile::tempdir().expect("tempdir");
    let partition = replicated_partition(dir.path(), 0);
    let cfg = GroupConfig { offsets_commit_timeout_ms: 600_000, ..no_delay() };
    let c = GroupCoordinator::new(cfg.clone());
    c.load_partitions(vec![Arc::clone(&partition)], 0).expect("load");
    let shard = c.shard("cg").expect("served");
    let (answer, pending) = {
        let mut groups = shard.lock().expect("active");
        let group = GroupCoordinator::classic_group(&mut groups, "cg", true, 0).expect("created");
        let member = joined(group.join(classic_join(""), &c.config, 0)).member_id.to_string();
        let answer = group.sync(&member, None, 1, (None, None), vec![(member.clone(), bytes::Bytes::from_static(b"a"))], 0);
        (answer, shard.finish_classic(&mut groups, "cg", 0).expect("appended").expect("not yet committed"))
    };
    let classic::Answer::Later(mut rx) = answer else { panic!("the leader waits for the store") };
    assert!(rx.try_recv().is_err(), "no assignment before the record is committed");
    follower_catches_up(&partition);
    shard.settle_classic("cg", pending, &cfg, 1).await.expect("committed");
    assert_eq!(rx.try_recv().expect("answered").assignment, bytes::Bytes::from_static(b"a"));

    // A rejoin whose record the follower never takes: REBALANCE_IN_PROGRESS, and the group rebalances.
    let cfg = GroupConfig { offsets_commit_timeout_ms: 1, ..cfg };
    let pending = {
        let mut groups = shard.lock().expect("active");
        let group = GroupCoordinator::classic_group(&mut groups, "cg", false, 2).expect("the group");
        let member = group.members.keys().next().cloned().expect("a member");
        let answer = group.sync(&member, None, 1, (None, None), Vec::new(), 2);
        assert!(matches!(answer, classic::Answer::Now(_)), "a stable group answers at once");
        group.dirty = true;
        shard.finish_classic(&mut groups, "cg", 2).expect("appended").expect("not yet committed")
    };
    assert_eq!(shard.settle_classic("cg", pending, &cfg, 3).await, Err(ResponseError::RebalanceInProgress));
    assert_eq!(classic_state(&c).map(|s| s.0), Some("PreparingRebalance"));
}

/// `count` partitions of `__consumer_offsets` in `dir`, led here.
fn offsets_partitions(dir: &std::path::Path, count: i32) -> Vec<Arc<Partition>> {
    (0..count)
        .map(|i| {
            let log = Log::open(&dir.join(format!("__consumer_offsets-{i}")), LogConfig::default(), true).expect("open log");
            Arc::new(Partition::new(OFFSETS_TOPIC.into(), Uuid::nil(), i, log, 0))
        })
        .collect()
}

/// A coordinator leading `led` of `count` partitions in `dir`, loaded.
fn leading(dir: &std::path::Path, count: i32, led: &[i32], now: i64) -> GroupCoordinator {
    let c = GroupCoordinator::new(config());
    for p in offsets_partitions(dir, count).into_iter().filter(|p| led.contains(&p.index)) {
        c.on_become_leader(p, 0, count, move || now);
    }
    c.wait_loaded().expect("loaded");
    c
}

/// A group id whose hash is negative, so that earlier versions (masking the
/// hash) put it in another partition of `count` than Kafka: (id, old, Kafka's).
fn misplaced_group(count: i32) -> (String, i32, i32) {
    (0..)
        .map(|i| format!("legacy-group-{i}"))
        .map(|g| {
            let (old, new) = (store::legacy_partition_for(&g, count), store::partition_for(&g, count));
            (g, old, new)
        })
        .find(|(_, old, new)| old != new)
        .expect("an id")
}

/// Appends records to partition `index` of `dir` as an earlier version did.
fn write_records(dir: &std::path::Path, count: i32, index: i32, records: Vec<(store::StoredKey, Option<store::StoredValue>)>) {
    let partition = offsets_partitions(dir, count).swap_remove(index as usize);
    shard::Shard::new(partition, 0, count).write(records, 0).expect("written");
}

fn offset_record(group: &str, partition: i32, o: i64) -> (store::StoredKey, Option<store::StoredValue>) {
    (store::StoredKey::Offset { group: group.into(), topic: "t".into(), partition }, Some(store::StoredValue::Offset(offset(o, 1))))
}

/// Every record of partition `index` of `dir` belonging to `group`, in order.
fn records_of(dir: &std::path::Path, count: i32, index: i32, group: &str) -> Vec<(store::StoredKey, Option<store::StoredValue>)> {
    let partition = offsets_partitions(dir, count).swap_remove(index as usize);
    let mut out = Vec::new();
    let read = |offset| partition.read(offset, 1 << 20);
    crate::record_batch::scan(read, partition.log_start_offset(), partition.log_end_offset(), |_, batch| {
        for record in batch {
            let key = store::StoredKey::decode(record.key.expect("a key")).expect("key").expect("known");
            let value = record.value.map(|v| store::StoredValue::decode(&key, v).expect("value"));
            if key.group() == group {
                out.push((key, value));
            }
        }
        Ok(())
    })
    .expect("scanned");
    out
}

#[test]
fn a_group_written_to_its_legacy_partition_is_moved_to_kafkas_with_its_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    let classic = store::ClassicGroupValue {
        protocol_type: "consumer".into(),
        generation: 4,
        protocol: Some("range".into()),
        leader: None,
        state_timestamp: 1,
        members: Vec::new(),
    };
    write_records(dir.path(), 3, old, vec![
        offset_record(&g, 0, 5),
        (store::StoredKey::ClassicGroup(g.clone()), Some(store::StoredValue::ClassicGroup(classic))),
        offset_record(&g, 1, 7),
        offset_record(&g, 0, 6),
    ]);
    let expected = vec![(("t".to_string(), 0), 6), (("t".to_string(), 1), 7)];
    {
        let c = leading(dir.path(), 3, &[0, 1, 2], 10);
        assert_eq!(committed(&c, &g), expected, "served from Kafka's partition at once");
        assert_eq!(classic_generation(&c, &g), Some(4));
    }
    // Kafka's partition has the group's offsets and metadata; the old one tombstones after them.
    let copied = records_of(dir.path(), 3, new, &g);
    assert_eq!(copied.len(), 3, "the group record and two offsets: {copied:?}");
    assert!(copied.iter().all(|(_, v)| v.is_some()));
    let old_records = records_of(dir.path(), 3, old, &g);
    let tombstones: Vec<_> = old_records[4..].iter().map(|(k, v)| (k.clone(), v.is_none())).collect();
    assert_eq!(tombstones.len(), 3);
    assert!(tombstones.iter().all(|(_, t)| *t), "{tombstones:?}");
    // Kafka's partition alone serves it after a restart, and nothing is moved again.
    let c = leading(dir.path(), 3, &[new], 20);
    assert_eq!(committed(&c, &g), expected);
    assert_eq!(classic_generation(&c, &g), Some(4));
    drop(c);
    let c = leading(dir.path(), 3, &[0, 1, 2], 30);
    assert_eq!(committed(&c, &g), expected);
    drop(c);
    assert_eq!(records_of(dir.path(), 3, new, &g).len(), 3, "no second copy");
    assert_eq!(records_of(dir.path(), 3, old, &g).len(), 7, "no second tombstones");
}

fn classic_generation(c: &GroupCoordinator, group: &str) -> Option<i32> {
    c.with_groups(group, |groups| match groups.get(group).map(|g| &g.membership) {
        Some(Membership::Classic(g)) => Some(g.generation),
        _ => None,
    })
}

#[test]
fn a_group_kafkas_partition_already_has_keeps_its_offsets_and_the_legacy_records_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    write_records(dir.path(), 3, old, vec![offset_record(&g, 0, 5), offset_record(&g, 1, 2)]);
    write_records(dir.path(), 3, new, vec![offset_record(&g, 0, 9)]);
    let c = leading(dir.path(), 3, &[0, 1, 2], 10);
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 0), 9)], "Kafka's partition wins");
    drop(c);
    assert_eq!(records_of(dir.path(), 3, new, &g).len(), 1, "nothing copied over it");
    let old_records = records_of(dir.path(), 3, old, &g);
    assert_eq!(old_records.len(), 4);
    assert!(old_records[2..].iter().all(|(_, v)| v.is_none()), "the legacy records are tombstoned");
    let c = leading(dir.path(), 3, &[0, 1, 2], 20);
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 0), 9)]);
}

#[test]
fn a_move_interrupted_after_the_copy_finishes_without_a_second_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    // The copy was committed, the crash came before the tombstones.
    write_records(dir.path(), 3, old, vec![offset_record(&g, 0, 5)]);
    write_records(dir.path(), 3, new, vec![offset_record(&g, 0, 5)]);
    let c = leading(dir.path(), 3, &[0, 1, 2], 10);
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 0), 5)]);
    drop(c);
    assert_eq!(records_of(dir.path(), 3, new, &g).len(), 1);
    assert_eq!(records_of(dir.path(), 3, old, &g).iter().filter(|(_, v)| v.is_none()).count(), 1);
}

#[test]
fn a_misplaced_group_whose_kafka_partition_is_led_elsewhere_is_left_in_place_until_it_is_led_here() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    write_records(dir.path(), 3, old, vec![offset_record(&g, 1, 8)]);
    let c = GroupCoordinator::new(config());
    let partitions = offsets_partitions(dir.path(), 3);
    c.on_become_leader(Arc::clone(&partitions[old as usize]), 0, 3, || 10);
    c.wait_loaded().expect("loaded");
    c.tick(11);
    assert_eq!(c.fetch_offsets(&g, None).err(), Some(ResponseError::NotCoordinator), "another broker coordinates it");
    assert!(records_of(dir.path(), 3, old, &g).iter().all(|(_, v)| v.is_some()), "nothing deleted that was not copied");
    assert!(records_of(dir.path(), 3, new, &g).is_empty());
    // Leading Kafka's partition too: the next pass moves the group.
    c.on_become_leader(Arc::clone(&partitions[new as usize]), 0, 3, || 12);
    c.wait_loaded().expect("loaded");
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 1), 8)]);
    assert_eq!(records_of(dir.path(), 3, old, &g).last().map(|(_, v)| v.is_none()), Some(true));
}

#[tokio::test]
async fn a_misplaced_group_waits_with_load_in_progress_until_its_copy_is_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    write_records(dir.path(), 3, old, vec![offset_record(&g, 0, 3)]);
    let c = GroupCoordinator::new(config());
    let old_partition = offsets_partitions(dir.path(), 3).swap_remove(old as usize);
    // Kafka's partition is replicated: the copy is committed only once the follower has it.
    let new_partition = replicated_partition(dir.path(), new);
    c.on_become_leader(old_partition, 0, 3, || 10);
    c.on_become_leader(Arc::clone(&new_partition), 1, 3, || 10);
    c.wait_loaded().expect("loaded");
    assert_eq!(c.fetch_offsets(&g, None).err(), Some(ResponseError::CoordinatorLoadInProgress), "not answered as a group without offsets");
    let refused = c.commit_offsets(&g, "", None, -1, vec![(("t".into(), 0), offset(4, 11))], &Topics, 11).await;
    assert_eq!(refused.err(), Some(ResponseError::CoordinatorLoadInProgress));
    assert_eq!(records_of(dir.path(), 3, old, &g).len(), 1, "no tombstone before the copy is committed");
    follower_catches_up(&new_partition);
    c.tick(12);
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 0), 3)]);
    assert_eq!(records_of(dir.path(), 3, old, &g).len(), 2, "tombstoned once the copy is committed");
}

#[test]
fn a_misplaced_consumer_group_keeps_its_members_and_assignments_when_moved() {
    // A KIP-848 group as an earlier version stored it (here on one partition, where placement does not matter).
    let source = tempfile::tempdir().expect("tempdir");
    let (g, old, new) = misplaced_group(3);
    let (before, records) = {
        let c = coordinator(source.path(), config(), 0);
        let hb = |h, now| block_on(c.consumer_heartbeat(&g, h, &Topics, now)).expect("heartbeat");
        let given = partitions(&hb(join("a"), 0).assignment);
        hb(beat("a", 1, &given), 1);
        block_on(c.commit_offsets(&g, "a", None, 1, vec![(("t".into(), 0), offset(3, 2))], &Topics, 2)).expect("commit");
        (snapshot(&c, &g), records_of(source.path(), 1, 0, &g))
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_records(dir.path(), 3, old, records);
    let c = leading(dir.path(), 3, &[0, 1, 2], 100);
    assert_eq!(snapshot(&c, &g), before);
    assert_eq!(committed(&c, &g), vec![(("t".to_string(), 0), 3)]);
    drop(c);
    let c = leading(dir.path(), 3, &[new], 200);
    assert_eq!(snapshot(&c, &g), before, "Kafka's partition alone has the whole group");
    let r = block_on(c.consumer_heartbeat(&g, beat("a", 1, &[0, 1]), &Topics, 201)).expect("a is still a member");
    assert_eq!(r.member_epoch, 1);
}
