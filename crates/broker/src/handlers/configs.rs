//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs for topics and brokers.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use metadata::{RESOURCE_BROKER, RESOURCE_TOPIC};

use super::str_bytes;
use crate::config::ServerConfig;
use crate::dynamic_config::{is_dynamic_broker_config, is_sensitive, AlterOp};
use crate::topic_config;
use crate::Broker;

/// Kafka's `ConfigResource.Type` id of a broker's loggers.
const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's config source ids.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DYNAMIC_BROKER: i8 = 2;
const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` ids used for broker settings.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const TYPE_PASSWORD: i8 = 9;

/// The levels a broker setting can be set at, highest precedence first.
struct Levels {
    per_broker: BTreeMap<String, String>,
    cluster_default: BTreeMap<String, String>,
    static_given: BTreeMap<String, String>,
    /// Kafka's defaults (a config with nothing given).
    defaults: BTreeMap<String, String>,
}

impl Levels {
    fn new(broker: &Broker) -> Levels {
        let node = broker.config.node_id.to_string();
        let image = broker.image();
        let mut defaults: BTreeMap<String, String> = ServerConfig::from_entries(Vec::new())
            .map(|c| c.describe().into_iter().filter_map(|(k, v, _)| v.map(|v| (k, v))).collect())
            .unwrap_or_default();
        // Kafka's defaults of these are given in hours (the ms settings default to null).
        for (ms, hours) in [("log.retention.ms", "log.retention.hours"), ("log.roll.ms", "log.roll.hours")] {
            defaults.remove(ms);
            defaults.insert(hours.to_string(), "168".to_string());
        }
        Levels {
            per_broker: image.broker_configs(&node).cloned().unwrap_or_default(),
            cluster_default: image.broker_configs("").cloned().unwrap_or_default(),
            static_given: broker.config.given.clone(),
            defaults,
        }
    }

    /// Where each of `keys` is set, in precedence order, as (key, value, source).
    fn synonyms(&self, keys: &[&str]) -> Vec<(String, String, i8)> {
        let mut out = Vec::new();
        for (level, source) in [
            (&self.per_broker, SOURCE_DYNAMIC_BROKER),
            (&self.cluster_default, SOURCE_DYNAMIC_DEFAULT_BROKER),
            (&self.static_given, SOURCE_STATIC_BROKER),
            (&self.defaults, SOURCE_DEFAULT),
        ] {
            for key in keys {
                if let Some(v) = level.get(*key) {
                    out.push((key.to_string(), v.clone(), source));
                }
            }
        }
        out
    }
}

/// Every broker key that sets the same thing as `key`, in Kafka's precedence order.
fn broker_key_synonyms(key: &str) -> Vec<&str> {
    match key {
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => {
            vec!["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
        }
        "log.roll.ms" | "log.roll.hours" => vec!["log.roll.ms", "log.roll.hours"],
        "log.roll.jitter.ms" | "log.roll.jitter.hours" => vec!["log.roll.jitter.ms", "log.roll.jitter.hours"],
        other => vec![other],
    }
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let levels = Levels::new(broker);
    let results = req
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource.configuration_keys.as_ref().is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let name = resource.resource_name.as_str();
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => describe_topic(broker, &levels, name),
                RESOURCE_BROKER => describe_broker(broker, &levels, name),
                RESOURCE_BROKER_LOGGER => describe_loggers(broker, name),
                _ => Err((ResponseError::InvalidRequest, "Unsupported resource type".to_string())),
            };
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| wanted(e.name.as_str()))
                        .map(|mut e| {
                            if !req.include_synonyms {
                                e.synonyms.clear();
                            }
                            if !req.include_documentation {
                                e.documentation = None;
                            }
                            e
                        })
                        .collect(),
                ),
                Err((error, message)) => {
                    result.with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

type Described = std::result::Result<Vec<DescribeConfigsResourceResult>, (ResponseError, String)>;

fn describe_topic(broker: &Broker, levels: &Levels, name: &str) -> Described {
    let overrides = broker.image().topic(name).map(|t| t.configs.clone());
    let Some(overrides) = overrides else {
        return Err((ResponseError::UnknownTopicOrPartition, format!("Topic {name} does not exist.")));
    };
    Ok(topic_entries(broker, levels, &overrides))
}

/// Every config of a topic with these overrides, with source, synonyms, type and doc.
fn topic_entries(broker: &Broker, levels: &Levels, overrides: &BTreeMap<String, String>) -> Vec<DescribeConfigsResourceResult> {
    let server = broker.effective_config();
    topic_config::describe(overrides, &server)
        .into_iter()
        .map(|c| {
            let mut synonyms = Vec::new();
            if c.is_topic_override {
                synonyms.push(synonym(c.name, &c.value, SOURCE_TOPIC));
            }
            if let Some(key) = topic_config::broker_synonym(c.name) {
                for (k, v, source) in levels.synonyms(&broker_key_synonyms(key)) {
                    synonyms.push(synonym(&k, &v, source));
                }
            }
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
            DescribeConfigsResourceResult::default()
                .with_name(str_bytes(c.name))
                .with_value(Some(str_bytes(c.value)))
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_config_type(topic_config::config_type(c.name))
                .with_documentation(topic_config::documentation(c.name).map(str_bytes))
        })
        .collect()
}

/// A topic's configs as CreateTopics v5+ reports them: `(name, value, source)`.
pub(crate) fn created_topic_configs(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<(String, Option<String>, i8)> {
    topic_entries(broker, &Levels::new(broker), overrides)
        .into_iter()
        .map(|e| (e.name.to_string(), e.value.map(|v| v.to_string()), e.config_source))
        .collect()
}

/// Kafka's type of a broker setting: its topic config's type, else from its value.
fn broker_config_type(key: &str, value: Option<&str>) -> i8 {
    if is_sensitive(key) {
        return TYPE_PASSWORD;
    }
    if let Some(topic_key) = topic_config::topic_name_for_broker_key(key) {
        return topic_config::config_type(topic_key);
    }
    match value {
        Some("true" | "false") => TYPE_BOOLEAN,
        Some(v) if v.parse::<i32>().is_ok() => TYPE_INT,
        Some(v) if v.parse::<i64>().is_ok() => TYPE_LONG,
        Some(v) if v.contains(',') || key.ends_with("listeners") || key == "log.dirs" => TYPE_LIST,
        _ => TYPE_STRING,
    }
}

fn broker_entry(key: &str, value: Option<String>, levels: &Levels, source_if_unset: i8) -> DescribeConfigsResourceResult {
    let synonyms: Vec<DescribeConfigsSynonym> = levels
        .synonyms(&broker_key_synonyms(key))
        .into_iter()
        .map(|(k, v, s)| synonym(&k, &v, s))
        .collect();
    let source = synonyms.first().map_or(source_if_unset, |s| s.source);
    let sensitive = is_sensitive(key);
    let documentation = topic_config::topic_name_for_broker_key(key).and_then(topic_config::documentation);
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(key))
        .with_config_type(broker_config_type(key, value.as_deref()))
        .with_value(if sensitive { None } else { value.map(str_bytes) })
        .with_config_source(source)
        .with_read_only(!is_dynamic_broker_config(key))
        .with_is_sensitive(sensitive)
        .with_synonyms(if sensitive { Vec::new() } else { synonyms })
        .with_documentation(documentation.map(str_bytes))
}

fn describe_broker(broker: &Broker, levels: &Levels, name: &str) -> Described {
    if name.is_empty() {
        // The cluster-wide default resource holds only what was set at that level.
        return Ok(levels
            .cluster_default
            .iter()
            .map(|(k, v)| {
                let mut entry = broker_entry(k, Some(v.clone()), levels, SOURCE_DYNAMIC_DEFAULT_BROKER);
                entry.config_source = SOURCE_DYNAMIC_DEFAULT_BROKER;
                entry
            })
            .collect());
    }
    let node = broker.config.node_id.to_string();
    if name != node {
        return Err((ResponseError::InvalidRequest, format!("Unexpected broker id, expected {node} but received {name}")));
    }
    Ok(broker
        .effective_config()
        .describe()
        .into_iter()
        .map(|(k, v, _)| broker_entry(&k, v, levels, SOURCE_DEFAULT))
        .collect())
}

/// The broker's loggers (`--entity-type broker-loggers`): the one root logger
/// and its level from `POTOK_LOG`.
fn describe_loggers(broker: &Broker, name: &str) -> Described {
    let node = broker.config.node_id.to_string();
    if name != node {
        return Err((ResponseError::InvalidRequest, format!("Unexpected broker id, expected {node} but received {name}")));
    }
    let level = std::env::var("POTOK_LOG").ok().filter(|v| !v.contains('=') && !v.is_empty()).unwrap_or_else(|| "info".into());
    Ok(vec![DescribeConfigsResourceResult::default()
        .with_name(str_bytes("root"))
        .with_value(Some(str_bytes(level.to_uppercase())))
        .with_config_source(SOURCE_DEFAULT)
        .with_config_type(TYPE_STRING)])
}

/// Runs one resource's alteration; the error code and message for its result.
fn alter_one(
    broker: &Broker,
    resource_type: i8,
    name: &str,
    ops: Vec<(String, AlterOp)>,
    incremental: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    if resource_type == RESOURCE_BROKER_LOGGER {
        return (
            ResponseError::InvalidRequest.code(),
            Some("Changing broker log levels at run time is not supported by Potok yet; set POTOK_LOG".into()),
        );
    }
    match broker.alter_configs(resource_type, name, ops, incremental, validate_only) {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(e.to_string())),
    }
}

pub(crate) fn incremental_alter(broker: &Arc<Broker>, req: IncrementalAlterConfigsRequest) -> IncrementalAlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|resource| {
            let ops: Option<Vec<(String, AlterOp)>> = resource
                .configs
                .into_iter()
                .map(|c| AlterOp::from_wire(c.config_operation, c.value.map(|v| v.to_string())).map(|op| (c.name.to_string(), op)))
                .collect();
            let (code, message) = match ops {
                Some(ops) => alter_one(broker, resource.resource_type, resource.resource_name.as_str(), ops, true, req.validate_only),
                None => (ResponseError::InvalidRequest.code(), Some("Unknown config operation".into())),
            };
            IncrementalResult::default()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

pub(crate) fn alter(broker: &Arc<Broker>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = req
        .resources
        .into_iter()
        .map(|resource| {
            let ops = resource
                .configs
                .into_iter()
                .map(|c| (c.name.to_string(), AlterOp::Set(c.value.map(|v| v.to_string()))))
                .collect();
            let (code, message) =
                alter_one(broker, resource.resource_type, resource.resource_name.as_str(), ops, false, req.validate_only);
            LegacyResult::default()
                .with_error_code(code)
                .with_error_message(message.map(str_bytes))
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
