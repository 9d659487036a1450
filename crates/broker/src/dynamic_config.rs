//! Live configuration: IncrementalAlterConfigs / AlterConfigs of topics and
//! brokers, validated as Kafka does, persisted as `ConfigRecord`s in the metadata
//! log and applied to the hosted partitions without a restart.
//!
//! Broker configs have Kafka's levels: per broker (resource name = node id) over
//! the cluster-wide default (empty name) over the static `server.properties`
//! over Kafka's defaults. Only the settings Kafka's `DynamicBrokerConfig` can
//! change live are accepted; topics inherit the dynamic broker defaults.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use metadata::{ConfigRecord, Image, MetadataRecord, RESOURCE_BROKER, RESOURCE_TOPIC};

use crate::config::{self, ServerConfig};
use crate::error::{BrokerError, Result};
use crate::{now_ms, topic_config, Broker};

/// Broker settings Kafka changes live besides the defaults of topic configs
/// (its log cleaner, thread pools, connection quotas, producer state, metrics).
const OTHER_DYNAMIC: &[&str] = &[
    "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
    "num.io.threads",
    "num.network.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "background.threads",
    "metric.reporters",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "max.connection.creation.rate",
    "producer.id.expiration.ms",
    "transaction.partition.verification.enable",
];

/// List-typed broker settings (APPEND / SUBTRACT apply to them).
const BROKER_LISTS: &[&str] = &["log.cleanup.policy", "metric.reporters"];

/// True if Kafka can change this broker setting without a restart.
pub fn is_dynamic_broker_config(key: &str) -> bool {
    topic_config::topic_name_for_broker_key(key).is_some() || OTHER_DYNAMIC.contains(&key)
}

/// True for settings whose values are secrets (shown as null, `is_sensitive`).
pub fn is_sensitive(key: &str) -> bool {
    key.contains("password") || key.ends_with("sasl.jaas.config") || key.ends_with(".key")
}

/// One change to one config, as IncrementalAlterConfigs names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    /// SET (0).
    Set(Option<String>),
    /// DELETE (1): back to the inherited value.
    Delete,
    /// APPEND (2): add items to a list.
    Append(Option<String>),
    /// SUBTRACT (3): remove items from a list.
    Subtract(Option<String>),
}

impl AlterOp {
    /// The operation for Kafka's `config_operation` byte.
    pub fn from_wire(op: i8, value: Option<String>) -> Option<AlterOp> {
        Some(match op {
            0 => AlterOp::Set(value),
            1 => AlterOp::Delete,
            2 => AlterOp::Append(value),
            3 => AlterOp::Subtract(value),
            _ => return None,
        })
    }
}

fn invalid_request(message: impl Into<String>) -> BrokerError {
    BrokerError::kafka(ResponseError::InvalidRequest, message)
}

fn invalid_config(message: impl Into<String>) -> BrokerError {
    BrokerError::kafka(ResponseError::InvalidConfig, message)
}

/// The broker config with the dynamic levels of `image` applied over the static one.
pub(crate) fn effective_server_config(static_config: &ServerConfig, image: &Image) -> std::result::Result<ServerConfig, config::ConfigError> {
    let node = static_config.node_id.to_string();
    let mut entries: Vec<(String, String, String)> =
        static_config.given.iter().map(|(k, v)| (k.clone(), v.clone(), "static broker config".to_string())).collect();
    for (level, origin) in [("", "dynamic default broker config"), (node.as_str(), "dynamic broker config")] {
        for (k, v) in image.broker_configs(level).into_iter().flatten() {
            entries.push((k.clone(), v.clone(), origin.to_string()));
        }
    }
    ServerConfig::from_entries(entries)
}

/// The items of a comma-separated list value.
fn list_items(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// The records that alter the configs of one resource, validated against
/// `image` as Kafka does (none if nothing changes). `incremental`
/// (IncrementalAlterConfigs) applies `ops` to the current overrides;
/// otherwise (AlterConfigs) the resource's overrides become exactly the SET
/// values given. Topic defaults and inherited list values come from
/// `static_config` with the image's dynamic broker configs applied.
pub(crate) fn config_records(
    static_config: &ServerConfig,
    image: &Image,
    resource_type: i8,
    resource_name: &str,
    ops: &[(String, AlterOp)],
    incremental: bool,
) -> Result<Vec<MetadataRecord>> {
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = ops.iter().find(|(k, _)| !seen.insert(k.clone())) {
        return Err(invalid_request(format!("Error due to duplicate config keys: {dup}")));
    }
    let is_topic = match resource_type {
        RESOURCE_TOPIC => true,
        RESOURCE_BROKER => false,
        other => return Err(invalid_request(format!("Unsupported resource type {other} for configs"))),
    };
    // As at start: a stored dynamic config that no longer applies is skipped.
    let effective = effective_server_config(static_config, image).unwrap_or_else(|_| static_config.clone());
    let current: BTreeMap<String, String> = if is_topic {
        match image.topic(resource_name) {
            Some(topic) => topic.configs.clone(),
            None => {
                return Err(BrokerError::kafka(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{resource_name}' does not exist."),
                ))
            }
        }
    } else {
        if !resource_name.is_empty() && resource_name.parse::<i32>().is_err() {
            return Err(invalid_request("Unable to parse broker name as a base 10 number."));
        }
        image.broker_configs(resource_name).cloned().unwrap_or_default()
    };
    // The value a list operation starts from: the override, else what is inherited.
    let inherited = |key: &str| -> String {
        if is_topic {
            topic_config::effective(key, &current, &effective)
        } else {
            effective.given.get(key).cloned().unwrap_or_default()
        }
    };
    let is_list = |key: &str| if is_topic { topic_config::is_list(key) } else { BROKER_LISTS.contains(&key) };
    let mut next = if incremental { current.clone() } else { BTreeMap::new() };
    for (key, op) in ops {
        if is_topic && !topic_config::is_known(key) {
            return Err(invalid_config(format!("Unknown topic config name: {key}")));
        }
        let null = || invalid_request(format!("Null value not supported for : {key}"));
        match op {
            AlterOp::Set(value) => {
                next.insert(key.clone(), value.clone().ok_or_else(null)?);
            }
            AlterOp::Delete => {
                next.remove(key);
            }
            AlterOp::Append(value) | AlterOp::Subtract(value) => {
                let append = matches!(op, AlterOp::Append(_));
                if !is_list(key) {
                    let verb = if append { "append" } else { "subtract" };
                    return Err(invalid_config(format!("Config value {verb} is not allowed for config key: {key}")));
                }
                let given = list_items(&value.clone().ok_or_else(null)?);
                let mut items = list_items(&current.get(key).cloned().unwrap_or_else(|| inherited(key)));
                if append {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|i| !given.contains(i));
                }
                next.insert(key.clone(), items.join(","));
            }
        }
    }
    if is_topic {
        for (key, value) in &next {
            if current.get(key) != Some(value) {
                topic_config::validate(key, value).map_err(invalid_config)?;
            }
        }
    } else {
        validate_broker_configs(static_config, resource_name, ops, &next, image)?;
    }
    let mut records = Vec::new();
    let mut push = |name: &str, value: Option<&String>| {
        records.push(MetadataRecord::Config(ConfigRecord {
            resource_type,
            resource_name: resource_name.to_string(),
            name: name.to_string(),
            value: value.cloned(),
        }));
    };
    for (key, value) in &next {
        if current.get(key) != Some(value) {
            push(key, Some(value));
        }
    }
    for key in current.keys().filter(|k| !next.contains_key(*k)) {
        push(key, None);
    }
    Ok(records)
}

/// Kafka's checks of a broker config change: only dynamic settings, values
/// that parse, and the whole resulting config valid.
fn validate_broker_configs(
    static_config: &ServerConfig,
    resource_name: &str,
    ops: &[(String, AlterOp)],
    next: &BTreeMap<String, String>,
    image: &Image,
) -> Result<()> {
    let resource = format!("ConfigResource(type=BROKER, name='{resource_name}')");
    let unknown: Vec<&str> = ops.iter().map(|(k, _)| k.as_str()).filter(|k| !config::is_known_key(k)).collect();
    if !unknown.is_empty() {
        return Err(invalid_request(format!("Invalid config value for resource {resource}: Unknown broker configs: {}", unknown.join(", "))));
    }
    let fixed: Vec<&str> = ops.iter().map(|(k, _)| k.as_str()).filter(|k| !is_dynamic_broker_config(k)).collect();
    if !fixed.is_empty() {
        return Err(invalid_request(format!(
            "Invalid config value for resource {resource}: Cannot update these configs dynamically: Set({})",
            fixed.join(", ")
        )));
    }
    for (key, value) in next {
        if let Some(topic_key) = topic_config::topic_name_for_broker_key(key) {
            let as_topic = if topic_key == "retention.ms" || topic_key == "segment.ms" || topic_key == "segment.jitter.ms" {
                None // hours / minutes variants: checked as numbers below
            } else {
                Some(topic_key)
            };
            if let Some(topic_key) = as_topic {
                topic_config::validate(topic_key, value).map_err(|m| {
                    invalid_request(format!("Invalid config value for resource {resource}: {}", m.replace(topic_key, key)))
                })?;
            }
        }
    }
    // The whole config with this level replaced must still parse.
    let mut candidate = image.clone();
    let config = |key: String, value: Option<String>| {
        MetadataRecord::Config(ConfigRecord {
            resource_type: RESOURCE_BROKER,
            resource_name: resource_name.to_string(),
            name: key,
            value,
        })
    };
    let mut replaced: Vec<MetadataRecord> =
        image.broker_configs(resource_name).into_iter().flatten().map(|(k, _)| config(k.clone(), None)).collect();
    replaced.extend(next.iter().map(|(k, v)| config(k.clone(), Some(v.clone()))));
    candidate.apply_all(&replaced);
    let mut as_this_node = static_config.clone();
    if let Ok(id) = resource_name.parse::<i32>() {
        as_this_node.node_id = id;
    }
    effective_server_config(&as_this_node, &candidate)
        .map(|_| ())
        .map_err(|e| invalid_request(format!("Invalid config value for resource {resource}: {e}")))
}

impl Broker {
    /// The broker config in effect: the static one with the dynamic broker
    /// configs applied (kept by the metadata publisher). Topic defaults
    /// derive from it.
    pub fn effective_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.effective.read())
    }

    /// Alters the configs of one resource through the controller (see
    /// [`config_records`]); the publisher applies the committed change to the
    /// hosted partitions. With `validate_only` nothing changes.
    pub fn alter_configs(
        &self,
        resource_type: i8,
        resource_name: &str,
        ops: Vec<(String, AlterOp)>,
        incremental: bool,
        validate_only: bool,
    ) -> Result<()> {
        let mut controller = self.controller.lock();
        let records = controller.alter_configs(resource_type, resource_name, &ops, incremental)?;
        if validate_only || records.is_empty() {
            return Ok(());
        }
        let committed = controller.commit(&records, now_ms())?;
        let changed: Vec<&str> = records
            .iter()
            .filter_map(|r| match r {
                MetadataRecord::Config(c) => Some(c.name.as_str()),
                _ => None,
            })
            .collect();
        let what = if resource_type == RESOURCE_TOPIC { "topic" } else { "broker" };
        tracing::info!(resource = what, name = resource_name, configs = ?changed, "updated configs");
        self.publish_change(&committed, controller.image(), None);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_dynamic_rules_for_broker_settings() {
        for key in ["log.retention.ms", "log.retention.hours", "log.segment.bytes", "message.max.bytes", "log.cleaner.threads", "compression.type", "num.io.threads", "log.cleanup.policy"] {
            assert!(is_dynamic_broker_config(key), "{key}");
        }
        for key in ["node.id", "log.dirs", "num.partitions", "listeners", "log.cleaner.enable"] {
            assert!(!is_dynamic_broker_config(key), "{key}");
        }
    }

    #[test]
    fn dynamic_levels_apply_over_the_static_config() {
        let static_config = ServerConfig::from_entries(vec![("log.retention.hours".into(), "1".into(), "t".into())]).expect("config");
        let mut image = Image::default();
        let set = |image: &mut Image, name: &str, key: &str, value: &str| {
            image.apply_all([&MetadataRecord::Config(ConfigRecord {
                resource_type: RESOURCE_BROKER,
                resource_name: name.into(),
                name: key.into(),
                value: Some(value.into()),
            })]);
        };
        assert_eq!(effective_server_config(&static_config, &image).expect("cfg").log_retention_ms, 3_600_000);
        set(&mut image, "", "log.retention.ms", "5000");
        assert_eq!(effective_server_config(&static_config, &image).expect("cfg").log_retention_ms, 5000);
        set(&mut image, "1", "log.retention.ms", "7000");
        set(&mut image, "2", "log.retention.ms", "9000");
        assert_eq!(effective_server_config(&static_config, &image).expect("cfg").log_retention_ms, 7000);
    }
}
