//! DescribeConfigs for topics and the broker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use super::topics::{SOURCE_DEFAULT, SOURCE_STATIC_BROKER, SOURCE_TOPIC};
use crate::topic_config;
use crate::Broker;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

pub(crate) fn describe(broker: &Arc<Broker>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
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
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let overrides = broker
                        .metadata
                        .lock()
                        .image()
                        .topic(resource.resource_name.as_str())
                        .map(|t| t.configs.clone());
                    let Some(overrides) = overrides else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "Topic {} does not exist.",
                                resource.resource_name.as_str()
                            ))));
                    };
                    let configs = topic_config::describe(&overrides, &broker.config)
                        .into_iter()
                        .filter(|c| wanted(c.name))
                        .map(|c| {
                            let source = if c.is_topic_override {
                                SOURCE_TOPIC
                            } else if c.broker_synonym.is_some() {
                                SOURCE_STATIC_BROKER
                            } else {
                                SOURCE_DEFAULT
                            };
                            let mut synonyms = Vec::new();
                            if req.include_synonyms {
                                if c.is_topic_override {
                                    synonyms.push(synonym(c.name, &c.value, SOURCE_TOPIC));
                                }
                                if let Some((name, value)) = &c.broker_synonym {
                                    synonyms.push(synonym(name, value, SOURCE_STATIC_BROKER));
                                }
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(c.name))
                                .with_value(Some(str_bytes(c.value)))
                                .with_config_source(source)
                                .with_synonyms(synonyms)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let node = broker.config.node_id.to_string();
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != node {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!("Unexpected broker id, expected {node} but received {name}"))));
                    }
                    let configs = broker
                        .config
                        .describe()
                        .into_iter()
                        .filter(|(k, _, _)| wanted(k))
                        .map(|(k, v, given)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(k))
                                .with_value(v.map(str_bytes))
                                .with_config_source(if given { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT })
                                .with_read_only(true)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                _ => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes("Unsupported resource type"))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}
