//! Topic-level configs: Kafka's names, their broker-derived defaults, validation,
//! and the [`LogConfig`] they give a partition's log.

use std::collections::BTreeMap;

use storage::{LogConfig, TimestampType};

use crate::config::ServerConfig;

/// How a topic config's value is checked.
#[derive(Clone, Copy)]
enum Kind {
    Long { min: i64 },
    Int { min: i64 },
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

const DEFS: &[TopicConfigDef] = &[
    TopicConfigDef { name: "cleanup.policy", broker_synonym: Some("log.cleanup.policy"), kind: Kind::List(&["delete", "compact"]) },
    TopicConfigDef { name: "compression.type", broker_synonym: Some("compression.type"), kind: Kind::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]) },
    TopicConfigDef { name: "delete.retention.ms", broker_synonym: Some("log.cleaner.delete.retention.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "file.delete.delay.ms", broker_synonym: Some("log.segment.delete.delay.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "flush.messages", broker_synonym: Some("log.flush.interval.messages"), kind: Kind::Long { min: 1 } },
    TopicConfigDef { name: "flush.ms", broker_synonym: Some("log.flush.interval.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "index.interval.bytes", broker_synonym: Some("log.index.interval.bytes"), kind: Kind::Int { min: 0 } },
    TopicConfigDef { name: "max.compaction.lag.ms", broker_synonym: Some("log.cleaner.max.compaction.lag.ms"), kind: Kind::Long { min: 1 } },
    TopicConfigDef { name: "max.message.bytes", broker_synonym: Some("message.max.bytes"), kind: Kind::Int { min: 0 } },
    TopicConfigDef { name: "message.timestamp.type", broker_synonym: Some("log.message.timestamp.type"), kind: Kind::OneOf(&["CreateTime", "LogAppendTime"]) },
    TopicConfigDef { name: "message.timestamp.before.max.ms", broker_synonym: Some("log.message.timestamp.before.max.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "message.timestamp.after.max.ms", broker_synonym: Some("log.message.timestamp.after.max.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "min.cleanable.dirty.ratio", broker_synonym: Some("log.cleaner.min.cleanable.ratio"), kind: Kind::Double },
    TopicConfigDef { name: "min.compaction.lag.ms", broker_synonym: Some("log.cleaner.min.compaction.lag.ms"), kind: Kind::Long { min: 0 } },
    TopicConfigDef { name: "min.insync.replicas", broker_synonym: Some("min.insync.replicas"), kind: Kind::Int { min: 1 } },
    TopicConfigDef { name: "preallocate", broker_synonym: Some("log.preallocate"), kind: Kind::Bool },
    TopicConfigDef { name: "retention.bytes", broker_synonym: Some("log.retention.bytes"), kind: Kind::Long { min: -1 } },
    TopicConfigDef { name: "retention.ms", broker_synonym: Some("log.retention.ms"), kind: Kind::Long { min: -1 } },
    TopicConfigDef { name: "segment.bytes", broker_synonym: Some("log.segment.bytes"), kind: Kind::Int { min: 14 } },
    TopicConfigDef { name: "segment.index.bytes", broker_synonym: Some("log.index.size.max.bytes"), kind: Kind::Int { min: 8 } },
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
    let given = |key: &str| server.given.get(key).cloned();
    match name {
        "cleanup.policy" => given("log.cleanup.policy").unwrap_or_else(|| "delete".into()),
        "compression.type" => given("compression.type").unwrap_or_else(|| "producer".into()),
        "delete.retention.ms" => "86400000".into(),
        "file.delete.delay.ms" => "60000".into(),
        "flush.messages" => match server.log_flush_interval_messages {
            u64::MAX => LONG_MAX.into(),
            n => n.to_string(),
        },
        "flush.ms" => server.log_flush_interval_ms.map_or_else(|| LONG_MAX.into(), |n| n.to_string()),
        "index.interval.bytes" => server.log_index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => LONG_MAX.into(),
        "max.message.bytes" => server.message_max_bytes.to_string(),
        "message.timestamp.type" => if server.log_append_time { "LogAppendTime" } else { "CreateTime" }.into(),
        "message.timestamp.before.max.ms" | "message.timestamp.after.max.ms" => LONG_MAX.into(),
        "min.cleanable.dirty.ratio" => "0.5".into(),
        "min.compaction.lag.ms" | "segment.jitter.ms" => "0".into(),
        "min.insync.replicas" => given("min.insync.replicas").unwrap_or_else(|| "1".into()),
        "preallocate" | "unclean.leader.election.enable" | "remote.storage.enable" => "false".into(),
        "retention.bytes" => server.log_retention_bytes.to_string(),
        "retention.ms" => server.log_retention_ms.to_string(),
        "segment.bytes" => server.log_segment_bytes.to_string(),
        "segment.index.bytes" => server.log_index_size_max_bytes.to_string(),
        "segment.ms" => server.log_roll_ms.to_string(),
        "local.retention.bytes" | "local.retention.ms" => "-2".into(),
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
        Kind::Long { min } | Kind::Int { min } => {
            let max = if matches!(def.kind, Kind::Int { .. }) { i32::MAX as i64 } else { i64::MAX };
            match value.trim().parse::<i64>() {
                Ok(v) if v >= min && v <= max => Ok(()),
                Ok(_) => bad(&format!("Value must be at least {min}")),
                Err(_) => bad("Not a number"),
            }
        }
        Kind::Double => value.trim().parse::<f64>().map(|_| ()).or_else(|_| bad("Not a number")),
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
            if value.split(',').map(str::trim).all(|v| allowed.contains(&v)) {
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
}
