//! Topic-level configs: Kafka's names, their broker-derived defaults, validation,
//! their types and documentation, and the [`LogConfig`] and [`ProducePolicy`]
//! they give a partition.

use std::collections::BTreeMap;

use records::TimestampType;
use storage::LogConfig;

use crate::config::ServerConfig;
use crate::recompress::{Codec, ProducePolicy};

/// How a topic config's value is checked.
#[derive(Clone, Copy)]
enum Kind {
    Long { min: i64 },
    Int { min: i64, max: i64 },
    Double,
    Bool,
    OneOf(&'static [&'static str]),
    List(&'static [&'static str]),
    Text,
}

/// One topic-level config: its name, the broker setting it defaults to, and its type.
struct TopicConfigDef {
    name: &'static str,
    broker_synonym: Option<&'static str>,
    kind: Kind,
}

const LONG_MAX: &str = "9223372036854775807";
const INT_MAX: i64 = i32::MAX as i64;

const DEFS: &[TopicConfigDef] = &[
    TopicConfigDef { name: "cleanup.policy", broker_synonym: Some("log.cleanup.policy"), kind: Kind::List(&["delete", "compact"]) },
    TopicConfigDef { name: "compression.type", broker_synonym: Some("compression.type"), kind: Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]) },
    TopicConfigDef { name: "compression.gzip.level", broker_synonym: Some("compression.gzip.level"), kind: Kind::Int { min: -1, max: 9 } },
    TopicConfigDef { name: "compression.lz4.level", broker_synonym: Some("compression.lz4.level"), kind: Kind::Int { min: 1, max: 17 } },
    TopicConfigDef { name: "compression.zstd.level", broker_synonym: Some("compression.zstd.level"), kind: Kind::Int { min: -131072, max: 22 } },
    TopicConfigDef { name: "delete.retention.ms", broker_synonym: Some("log.cleaner.delete.retention.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "file.delete.delay.ms", broker_synonym: Some("log.segment.delete.delay.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "flush.messages", broker_synonym: Some("log.flush.interval.messages"), kind: Kind::Long { min: 1 } },
    TopicConfigDef { name: "flush.ms", broker_synonym: Some("log.flush.interval.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "index.interval.bytes", broker_synonym: Some("log.index.interval.bytes"), kind: Kind::Int { min: 0, max: INT_MAX } },
    TopicConfigDef { name: "max.compaction.lag.ms", broker_synonym: Some("log.cleaner.max.compaction.lag.ms"), kind: Kind::Long { min: 1 } },
    TopicConfigDef { name: "max.message.bytes", broker_synonym: Some("message.max.bytes"), kind: Kind::Int { min: 0, max: INT_MAX } },
    TopicConfigDef { name: "message.timestamp.type", broker_synonym: Some("log.message.timestamp.type"), kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]) },
    TopicConfigDef { name: "message.timestamp.before.max.ms", broker_synonym: Some("log.message.timestamp.before.max.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "message.timestamp.after.max.ms", broker_synonym: Some("log.message.timestamp.after.max.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "min.cleanable.dirty.ratio", broker_synonym: Some("log.cleaner.min.cleanable.ratio"), kind: Kind::Double },
    TopicConfigDef { name: "min.compaction.lag.ms", broker_synonym: Some("log.cleaner.min.compaction.lag.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "min.insync.replicas", broker_synonym: Some("min.insync.replicas"), kind: Kind::Int { min: 1, max: INT_MAX } },
    TopicConfigDef { name: "preallocate", broker_synonym: Some("log.preallocate"), kind: Kind::Bool },
    TopicConfigDef { name: "retention.bytes", broker_synonym: Some("log.retention.bytes"), kind: Kind::Long { min: -1 } },
    TopicConfigDef { name: "retention.ms", broker_synonym: Some("log.retention.ms"), kind: Kind::Long { min: -1 } },
    TopicConfigDef { name: "segment.bytes", broker_synonym: Some("log.segment.bytes"), kind: Kind::Int { min: 14, max: INT_MAX } },
    TopicConfigDef { name: "segment.index.bytes", broker_synonym: Some("log.index.size.max.bytes"), kind: Kind::Int { min: 8, max: INT_MAX } },
    TopicConfigDef { name: "segment.jitter.ms", broker_synonym: Some("log.roll.jitter.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "segment.ms", broker_synonym: Some("log.roll.ms"), kind: Kind::Long { min: 1 } },
    TopicConfigDef { name: "unclean.leader.election.enable", broker_synonym: Some("unclean.leader.election.enable"), kind: Kind::Bool },
    TopicConfigDef { name: "follower.replication.throttled.replicas", broker_synonym: None, kind: Kind::Text },
    TopicConfigDef { name: "leader.replication.throttled.replicas", broker_synonym: None, kind: Kind::Text },
    TopicConfigDef { name: "local.retention.bytes", broker_synonym: Some("log.local.retention.bytes"), kind: Kind::Long { min: -2 } },
    TopicConfigDef { name: "local.retention.ms", broker_synonym: Some("log.local.retention.ms"), kind: Kind::Long { min: -2 } },
    TopicConfigDef { name: "remote.storage.enable", broker_synonym: None, kind: Kind::Bool },
];

/// The default value of a topic config, derived from the broker's config as Kafka does.
fn default_value(name: &str, server: &ServerConfig) -> String {
    let given = |key: &str, code_default: &str| server.given.get(key).cloned().unwrap_or_else(|| code_default.into());
    match name {
        "cleanup.policy" => given("log.cleanup.policy", "delete"),
        "compression.type" => given("compression.type", "producer"),
        "compression.gzip.level" => given("compression.gzip.level", "-1"),
        "compression.lz4.level" => given("compression.lz4.level", "9"),
        "compression.zstd.level" => given("compression.zstd.level", "3"),
        "delete.retention.ms" => given("log.cleaner.delete.retention.ms", "86400000"),
        "file.delete.delay.ms" => given("log.segment.delete.delay.ms", "60000"),
        "flush.messages" => match server.log_flush_interval_messages {
            u64::MAX => LONG_MAX.into(),
            n => n.to_string(),
        },
        "flush.ms" => server.log_flush_interval_ms.map_or_else(|| LONG_MAX.into(), |n| n.to_string()),
        "index.interval.bytes" => server.log_index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => given("log.cleaner.max.compaction.lag.ms", LONG_MAX),
        "max.message.bytes" => server.message_max_bytes.to_string(),
        "message.timestamp.type" => if server.log_append_time { "LogAppendTime" } else { "CreateTime" }.into(),
        "message.timestamp.before.max.ms" => given("log.message.timestamp.before.max.ms", LONG_MAX),
        "message.timestamp.after.max.ms" => given("log.message.timestamp.after.max.ms", LONG_MAX),
        "min.cleanable.dirty.ratio" => given("log.cleaner.min.cleanable.ratio", "0.5"),
        "min.compaction.lag.ms" => given("log.cleaner.min.compaction.lag.ms", "0"),
        "segment.jitter.ms" => given("log.roll.jitter.ms", "0"),
        "min.insync.replicas" => given("min.insync.replicas", "1"),
        "preallocate" => given("log.preallocate", "false"),
        "unclean.leader.election.enable" => given("unclean.leader.election.enable", "false"),
        "remote.storage.enable" => "false".into(),
        "retention.bytes" => server.log_retention_bytes.to_string(),
        "retention.ms" => server.log_retention_ms.to_string(),
        "segment.bytes" => server.log_segment_bytes.to_string(),
        "segment.index.bytes" => server.log_index_size_max_bytes.to_string(),
        "segment.ms" => server.log_roll_ms.to_string(),
        "local.retention.bytes" => given("log.local.retention.bytes", "-2"),
        "local.retention.ms" => given("log.local.retention.ms", "-2"),
        _ => String::new(),
    }
}

/// Checks one topic config; the error says what is wrong, for INVALID_CONFIG.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = DEFS
        .iter()
        .find(|d| d.name == name)
        .ok_or_else(|| format!("Unknown topic config name: {name}"))?;
    let bad = |what: &str| Err(format!("Invalid value {value} for configuration {name}: {what}"));
    match def.kind {
        Kind::Long { min } => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(&format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type LONG"),
        },
        Kind::Int { min, max } => match value.trim().parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(()),
            Ok(_) if max == INT_MAX => bad(&format!("Value must be at least {min}")),
            Ok(_) => bad(&format!("Value must be in the range [{min}, {max}]")),
            Err(_) => bad("Not a number of type INT"),
        },
        Kind::Double => value.trim().parse::<f64>().map(|_| ()).or_else(|_| bad("Not a number of type DOUBLE")),
        Kind::Bool => match value.trim() {
            v if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") => Ok(()),
            _ => bad("Expected value to be either true or false"),
        },
        Kind::OneOf(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                bad(&format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        Kind::List(allowed) => {
            // Kafka's ValidList: known items, no empty list for cleanup.policy.
            if !value.trim().is_empty() && value.split(',').map(str::trim).all(|v| allowed.contains(&v)) {
                Ok(())
            } else {
                bad(&format!("Values must be from: {}", allowed.join(", ")))
            }
        }
        Kind::Text => Ok(()),
    }
}

/// A topic config as DescribeConfigs reports it.
pub struct DescribedConfig {
    /// Kafka's name.
    pub name: &'static str,
    /// The effective value.
    pub value: String,
    /// True if set on the topic, false if a default.
    pub is_topic_override: bool,
    /// The broker setting the default came from, if it was given explicitly.
    pub broker_synonym: Option<(&'static str, String)>,
}

/// Every topic config with its effective value, for DescribeConfigs.
pub fn describe(overrides: &BTreeMap<String, String>, server: &ServerConfig) -> Vec<DescribedConfig> {
    DEFS.iter()
        .map(|def| {
            let broker_synonym = def
                .broker_synonym
                .and_then(|s| server.given.get(s).map(|v| (s, v.clone())));
            match overrides.get(def.name) {
                Some(v) => DescribedConfig { name: def.name, value: v.clone(), is_topic_override: true, broker_synonym },
                None => DescribedConfig {
                    name: def.name,
                    value: default_value(def.name, server),
                    is_topic_override: false,
                    broker_synonym,
                },
            }
        })
        .collect()
}

/// The effective value of one topic config.
pub fn effective(name: &str, overrides: &BTreeMap<String, String>, server: &ServerConfig) -> String {
    overrides.get(name).cloned().unwrap_or_else(|| default_value(name, server))
}

/// The topic config a broker setting is the default of (`log.retention.hours`
/// gives `retention.ms`), if it is one.
pub fn topic_name_for_broker_key(key: &str) -> Option<&'static str> {
    let key = match key {
        "log.retention.minutes" | "log.retention.hours" => "log.retention.ms",
        "log.roll.hours" => "log.roll.ms",
        "log.roll.jitter.hours" => "log.roll.jitter.ms",
        other => other,
    };
    DEFS.iter().find(|d| d.broker_synonym == Some(key)).map(|d| d.name)
}

/// The broker setting a topic config defaults to, if any.
pub fn broker_synonym(name: &str) -> Option<&'static str> {
    DEFS.iter().find(|d| d.name == name).and_then(|d| d.broker_synonym)
}

/// True if the topic config is a known one.
pub fn is_known(name: &str) -> bool {
    DEFS.iter().any(|d| d.name == name)
}

/// True for list-typed configs (APPEND and SUBTRACT apply to them).
pub fn is_list(name: &str) -> bool {
    DEFS.iter().any(|d| d.name == name && matches!(d.kind, Kind::List(_) | Kind::Text))
}

/// Kafka's `ConfigType` id of a topic config (DescribeConfigs v3+).
pub fn config_type(name: &str) -> i8 {
    match DEFS.iter().find(|d| d.name == name).map(|d| d.kind) {
        Some(Kind::Bool) => 1,
        Some(Kind::OneOf(_)) => 2,
        Some(Kind::Int { .. }) => 3,
        Some(Kind::Long { .. }) => 5,
        Some(Kind::Double) => 6,
        Some(Kind::List(_) | Kind::Text) => 7,
        None => 0,
    }
}

/// One line on what a topic config does (DescribeConfigs `include_documentation`).
pub fn documentation(name: &str) -> Option<&'static str> {
    Some(match name {
        "cleanup.policy" => "What happens to old segments: delete them past retention, compact them to the latest record per key, or both.",
        "compression.type" => "Codec batches are stored with; producer keeps the producer's codec, any other value recompresses batches that differ.",
        "compression.gzip.level" => "Compression level used when the broker recompresses to gzip.",
        "compression.lz4.level" => "Compression level used when the broker recompresses to lz4.",
        "compression.zstd.level" => "Compression level used when the broker recompresses to zstd.",
        "delete.retention.ms" => "How long tombstones stay readable in a compacted topic.",
        "file.delete.delay.ms" => "Delay before a deleted segment's files are removed from disk.",
        "flush.messages" => "Fsync the log after this many records.",
        "flush.ms" => "Fsync the log when unflushed data is this old.",
        "index.interval.bytes" => "Bytes appended between two entries of the sparse offset index.",
        "max.compaction.lag.ms" => "Longest a record may stay uncompacted.",
        "max.message.bytes" => "Largest record batch (after compression) the topic accepts.",
        "message.timestamp.type" => "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches with the broker's clock.",
        "message.timestamp.before.max.ms" => "How far in the past a CreateTime timestamp may be before the batch is refused.",
        "message.timestamp.after.max.ms" => "How far in the future a CreateTime timestamp may be before the batch is refused.",
        "min.cleanable.dirty.ratio" => "Share of uncompacted bytes in the log that triggers compaction.",
        "min.compaction.lag.ms" => "Shortest time a record stays uncompacted.",
        "min.insync.replicas" => "In-sync replicas needed to acknowledge an acks=all produce.",
        "preallocate" => "Preallocate segment files on creation.",
        "retention.bytes" => "Delete the oldest segments once a partition is larger than this (-1: no limit).",
        "retention.ms" => "Delete segments whose newest record is older than this (-1: keep forever).",
        "segment.bytes" => "Roll a new segment when the active one would exceed this size.",
        "segment.index.bytes" => "Largest size of a segment's index files.",
        "segment.jitter.ms" => "Random amount subtracted from segment.ms so segments do not roll together.",
        "segment.ms" => "Roll a new segment when the active one is this old.",
        "unclean.leader.election.enable" => "Allow an out-of-sync replica to become leader, at the cost of losing records.",
        "follower.replication.throttled.replicas" => "Replicas whose follower-side replication is throttled.",
        "leader.replication.throttled.replicas" => "Replicas whose leader-side replication is throttled.",
        "local.retention.bytes" => "Local bytes kept when tiered storage is on (-2: use retention.bytes).",
        "local.retention.ms" => "Local time kept when tiered storage is on (-2: use retention.ms).",
        "remote.storage.enable" => "Tier the topic's segments to remote storage.",
        _ => return None,
    })
}

/// The produce-time policy (compression, timestamp bounds) of a topic.
pub fn produce_policy(overrides: &BTreeMap<String, String>, server: &ServerConfig) -> ProducePolicy {
    let text = |name: &str| effective(name, overrides, server);
    let num = |name: &str| text(name).trim().parse::<i64>().unwrap_or(i64::MAX);
    let level = |name: &str, default: i32| text(name).trim().parse::<i32>().unwrap_or(default);
    let target = match text("compression.type").trim() {
        "uncompressed" => Some(Codec::None),
        "gzip" => Some(Codec::Gzip(level("compression.gzip.level", -1))),
        "snappy" => Some(Codec::Snappy),
        "lz4" => Some(Codec::Lz4(level("compression.lz4.level", 9))),
        "zstd" => Some(Codec::Zstd(level("compression.zstd.level", 3))),
        _ => None,
    };
    ProducePolicy {
        target,
        log_append_time: text("message.timestamp.type") == "LogAppendTime",
        timestamp_before_max_ms: num("message.timestamp.before.max.ms"),
        timestamp_after_max_ms: num("message.timestamp.after.max.ms"),
        min_insync_replicas: text("min.insync.replicas").trim().parse().unwrap_or(1),
    }
}

/// The log settings for a topic with these overrides.
pub fn log_config(overrides: &BTreeMap<String, String>, server: &ServerConfig) -> LogConfig {
    let num = |name: &str| effective(name, overrides, server).trim().parse::<i64>().unwrap_or(i64::MAX);
    let flush_ms = num("flush.ms");
    LogConfig {
        segment_bytes: num("segment.bytes").max(14) as u64,
        segment_ms: num("segment.ms").max(1) as u64,
        index_interval_bytes: num("index.interval.bytes").max(0) as u64,
        segment_index_bytes: num("segment.index.bytes").max(8) as u64,
        flush_interval_messages: num("flush.messages").max(1) as u64,
        flush_interval_ms: if flush_ms == i64::MAX { None } else { Some(flush_ms.max(0) as u64) },
        max_message_bytes: num("max.message.bytes").max(0) as usize,
        timestamp_type: if effective("message.timestamp.type", overrides, server) == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_topic_configs_are_rejected() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "soon").is_err());
        assert!(validate("no.such.config", "1").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("cleanup.policy", "").is_err());
        assert!(validate("compression.zstd.level", "23").is_err());
        assert!(validate("compression.gzip.level", "-1").is_ok());
        assert!(validate("max.message.bytes", "2147483648").is_err());
    }

    #[test]
    fn topic_overrides_win_over_broker_defaults() {
        let server = ServerConfig::from_entries(vec![(
            "log.segment.bytes".into(),
            "1000000".into(),
            "test".into(),
        )])
        .expect("config");
        let mut overrides = BTreeMap::new();
        assert_eq!(log_config(&overrides, &server).segment_bytes, 1_000_000);
        overrides.insert("segment.bytes".to_string(), "2000".to_string());
        assert_eq!(log_config(&overrides, &server).segment_bytes, 2000);
        assert_eq!(log_config(&overrides, &server).flush_interval_ms, None);
    }

    #[test]
    fn broker_keys_map_to_their_topic_configs() {
        assert_eq!(topic_name_for_broker_key("log.retention.hours"), Some("retention.ms"));
        assert_eq!(topic_name_for_broker_key("message.max.bytes"), Some("max.message.bytes"));
        assert_eq!(topic_name_for_broker_key("num.io.threads"), None);
        assert!(is_list("cleanup.policy") && !is_list("retention.ms"));
        assert!(DEFS.iter().all(|d| documentation(d.name).is_some() && config_type(d.name) != 0));
    }
}
