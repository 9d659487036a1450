//! Coordinator tests over a real on-disk `__consumer_offsets` partition: what is
//! committed survives a replay, deletions and expiry are stored as tombstones.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use storage::{Log, LogConfig};
use uuid::Uuid;

use super::store::OffsetValue;
use super::*;

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
    c.load(vec![open_partition(dir)], now).expect("load");
    c
}

fn offset(o: i64, now: i64) -> OffsetValue {
    OffsetValue { offset: o, leader_epoch: -1, metadata: "m".into(), commit_timestamp: now }
}

fn committed(c: &GroupCoordinator, group: &str) -> Vec<((String, i32), i64)> {
    c.fetch_offsets(group, None).into_iter().filter_map(|(tp, v)| v.map(|v| (tp, v.offset))).collect()
}

#[test]
fn commits_survive_a_replay_and_deletions_stay_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let c = coordinator(dir.path(), config(), 0);
        let results = c
            .commit_offsets("g1", "", None, -1, vec![(("t".into(), 0), offset(5, 1)), (("t".into(), 1), offset(7, 1))], &Topics, 1)
            .expect("admin commit to a new group");
        assert!(results.iter().all(|(_, r)| r.is_ok()));
        let unknown = c.commit_offsets("g1", "", None, -1, vec![(("nope".into(), 0), offset(1, 2))], &Topics, 2).expect("commit");
        assert_eq!(unknown[0].1, Err(ResponseError::UnknownTopicOrPartition));
        c.commit_offsets("g2", "", None, -1, vec![(("t".into(), 0), offset(9, 3))], &Topics, 3).expect("commit");
        c.commit_offsets("g1", "", None, -1, vec![(("t".into(), 0), offset(6, 4))], &Topics, 4).expect("commit");
        assert_eq!(c.delete_groups(&["g2".into(), "g3".into()], 5)[1].1, Err(ResponseError::GroupIdNotFound));
        c.delete_offsets("g1", vec![("t".into(), 1)], 6).expect("delete offsets");
    }
    let c = coordinator(dir.path(), config(), 10);
    assert_eq!(committed(&c, "g1"), vec![(("t".to_string(), 0), 6)]);
    assert!(committed(&c, "g2").is_empty(), "deleted group stays deleted");
    assert!(!c.lock().contains_key("g2"));
}

#[test]
fn generation_commits_need_a_member_and_unknown_groups_need_generation_minus_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), config(), 0);
    let err = c.commit_offsets("g", "m", None, 3, vec![(("t".into(), 0), offset(1, 0))], &Topics, 0);
    assert_eq!(err.err(), Some(ResponseError::GroupIdNotFound), "ILLEGAL_GENERATION before OffsetCommit v9");
    assert!(!c.lock().contains_key("g"), "a refused commit creates no group");
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.offsets_retention_ms = 60_000;
    cfg.offsets_retention_check_interval_ms = 1;
    {
        let c = coordinator(dir.path(), cfg.clone(), 0);
        c.commit_offsets("old", "", None, -1, vec![(("t".into(), 0), offset(1, 1_000))], &Topics, 1_000).expect("commit");
        c.commit_offsets("new", "", None, -1, vec![(("t".into(), 0), offset(2, 50_000))], &Topics, 50_000).expect("commit");
        c.tick(61_000);
        assert!(committed(&c, "old").is_empty(), "expired");
        assert!(!c.lock().contains_key("old"), "a group left with nothing is removed");
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
        c.commit_offsets("g", "", None, -1, vec![(("t".into(), 0), offset(5, 1)), (("t".into(), 1), offset(6, 1))], &Topics, 1)
            .expect("commit");
        c.forget_topic("t", 2);
        assert!(committed(&c, "g").is_empty());
    }
    let c = coordinator(dir.path(), config(), 3);
    assert!(committed(&c, "g").is_empty(), "the tombstones are stored");
}
