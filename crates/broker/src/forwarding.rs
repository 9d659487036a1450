//! Forwarding of admin requests to the active controller, as Kafka's brokers
//! do (KIP-590): in cluster mode, a node that is not the active controller
//! sends CreateTopics, DeleteTopics, CreatePartitions, IncrementalAlterConfigs
//! and AlterConfigs over a [`ControllerChannel`] to the CONTROLLER listener of
//! the active controller (which runs them: [`crate::controller_api::forwarded`])
//! and returns its answer to the client.
//!
//! Kafka wraps a forwarded request in an Envelope carrying the client's
//! principal; Potok has no authentication yet, so the request goes as it
//! came, at the client's version (the controller serves the same versions as
//! the broker listener), and the answer is re-encoded at that version.
//!
//! The channel follows NOT_CONTROLLER to the next voter and retries until the
//! request's `timeout_ms` (IncrementalAlterConfigs and AlterConfigs have none:
//! `request.timeout.ms`). If no controller answers in time, every topic or
//! resource gets REQUEST_TIMED_OUT (NOT_CONTROLLER without voters,
//! UNSUPPORTED_VERSION if the controller cannot take the client's version), as
//! Kafka's `ForwardingManager`.
//!
//! Kafka's brokers answer as soon as the controller has; Potok answers once
//! the change is visible in this node's own metadata (the local path answers
//! once published too; for CreateTopics also a topic answered
//! TOPIC_ALREADY_EXISTS), bounded by the same timeout, so a client's Metadata
//! or DescribeConfigs right after sees what it changed. [`create_topics`] is
//! also how a node creates the topics it needs itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, AlterConfigsResponse, CreateTopicsRequest,
    CreateTopicsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::Request;
use metadata::Image;
use tokio::time::Instant;

use crate::controller_channel::{ChannelError, ControllerChannel, ControllerReply};
use crate::Broker;

/// How often the image is checked while waiting for a forwarded change.
const VISIBLE_POLL: Duration = Duration::from_millis(10);

/// Config resource types (Kafka's `ConfigResource.Type`).
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// IncrementalAlterConfigs operations checked for visibility (APPEND and
/// SUBTRACT are not: the image changing is enough).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Forwards `request` to the active controller if this node is a cluster
/// node that is not it, and returns the answer; Err gives the request back
/// when this node handles it itself (a single node, the active controller,
/// or an API that is not forwarded).
pub(crate) async fn forward(broker: &Arc<Broker>, version: i16, request: RequestKind) -> Result<ResponseKind, RequestKind> {
    let Some(channel) = broker.forwarding_channel() else { return Err(request) };
    if broker.is_active_controller() {
        return Err(request);
    }
    let default_timeout = channel.request_timeout();
    let budget = |timeout_ms: i32| if timeout_ms > 0 { Duration::from_millis(timeout_ms as u64) } else { default_timeout };
    let start = Instant::now();
    match request {
        RequestKind::CreateTopics(req) => {
            let sent = create_topics(broker, &channel, &req, Some(version), budget(req.timeout_ms)).await;
            answered(sent, req.into())
        }
        RequestKind::DeleteTopics(req) => {
            let timeout = budget(req.timeout_ms);
            let sent = send(&channel, &req, Some(version), timeout).await;
            let answer = answered(sent, req.into())?;
            if let ResponseKind::DeleteTopics(r) = &answer {
                // Below v6 the answer has no topic id: the topic is known by name.
                let deleted: Vec<(uuid::Uuid, Option<String>)> =
                    r.responses.iter().filter(|t| t.error_code == 0).map(|t| (t.topic_id, t.name.as_ref().map(|n| n.0.to_string()))).collect();
                let done = |image: &Image| {
                    deleted.iter().all(|(id, name)| match name {
                        Some(name) if id.is_nil() => image.topic(name).is_none(),
                        _ => image.topic_by_id(*id).is_none(),
                    })
                };
                visible(broker, start + timeout, "DeleteTopics", done).await;
            }
            Ok(answer)
        }
        RequestKind::CreatePartitions(req) => {
            let timeout = budget(req.timeout_ms);
            let sent = send(&channel, &req, Some(version), timeout).await;
            let answer = answered(sent, req.clone().into())?;
            if let (false, ResponseKind::CreatePartitions(r)) = (req.validate_only, &answer) {
                let grown: Vec<(String, usize)> = r
                    .results
                    .iter()
                    .filter(|t| t.error_code == 0)
                    .filter_map(|t| req.topics.iter().find(|asked| asked.name == t.name))
                    .map(|t| (t.name.0.to_string(), usize::try_from(t.count).unwrap_or(0)))
                    .collect();
                // A topic deleted meanwhile is not waited for.
                let done = |image: &Image| grown.iter().all(|(name, count)| image.topic(name).is_none_or(|t| t.partitions.len() >= *count));
                visible(broker, start + timeout, "CreatePartitions", done).await;
            }
            Ok(answer)
        }
        RequestKind::IncrementalAlterConfigs(req) => alter_configs(broker, &channel, req, version, default_timeout).await,
        RequestKind::AlterConfigs(req) => alter_configs(broker, &channel, req, version, default_timeout).await,
        other => Err(other),
    }
}

/// Sends a CreateTopics to the active controller at `version` (None: the
/// newest both sides have) and, unless it only validates, waits until this
/// node's image has the topics it created, and those it answered already
/// exist, at most `timeout` from now in all. Shared by a client's forwarded
/// CreateTopics and the topics a node creates itself
/// (`Broker::create_topic` off the active controller), which then find them
/// in the image at once.
pub(crate) async fn create_topics(
    broker: &Broker,
    channel: &ControllerChannel,
    req: &CreateTopicsRequest,
    version: Option<i16>,
    timeout: Duration,
) -> Result<CreateTopicsResponse, ChannelError> {
    let deadline = Instant::now() + timeout;
    let answer = send(channel, req, version, timeout).await?;
    if !req.validate_only {
        // Below v7 the answer has no topic id: the topic is known by name.
        let created: Vec<(uuid::Uuid, &str)> =
            answer.topics.iter().filter(|t| t.error_code == 0).map(|t| (t.topic_id, t.name.0.as_str())).collect();
        let exists = ResponseError::TopicAlreadyExists.code();
        let existing: Vec<&str> = answer.topics.iter().filter(|t| t.error_code == exists).map(|t| t.name.0.as_str()).collect();
        let done = |image: &Image| {
            created.iter().all(|(id, name)| if id.is_nil() { image.topic(name).is_some() } else { image.topic_by_id(*id).is_some() })
                && existing.iter().all(|name| image.topic(name).is_some())
        };
        visible(broker, deadline, "CreateTopics", done).await;
    }
    Ok(answer)
}

/// Sends `req` at `version` (None: the newest both sides have), giving up
/// after `timeout` whatever an attempt is doing (a connection attempt may
/// take longer on its own).
async fn send<R>(channel: &ControllerChannel, req: &R, version: Option<i16>, timeout: Duration) -> Result<R::Response, ChannelError>
where
    R: Request,
    R::Response: ControllerReply,
{
    match tokio::time::timeout(timeout, channel.send_version(req, version, timeout)).await {
        Ok(answer) => answer,
        Err(_) => Err(ChannelError::Timeout {
            api: format!("{:?}", kafka_protocol::messages::ApiKey::try_from(R::KEY).unwrap_or(kafka_protocol::messages::ApiKey::ApiVersions)),
            waited: timeout,
            last: "no answer yet".into(),
        }),
    }
}

/// The controller's answer, or the request's error answer when there was none.
#[allow(clippy::result_large_err)] // the request comes back unboxed, as in `forward`
fn answered<T: Into<ResponseKind>>(sent: Result<T, ChannelError>, request: RequestKind) -> Result<ResponseKind, RequestKind> {
    match sent {
        Ok(answer) => Ok(answer.into()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot forward an admin request to the active controller");
            let error = e.response_error();
            let message = match error {
                ResponseError::RequestTimedOut => "Timed out waiting for the active controller to answer the forwarded request.",
                ResponseError::UnsupportedVersion => "The active controller does not support this request version.",
                _ => "No controller to forward the request to.",
            };
            crate::controller_api::refused(request, error, message)
        }
    }
}

/// Waits until `done` holds for this node's published image, at most until `deadline`.
async fn visible(broker: &Broker, deadline: Instant, api: &str, done: impl Fn(&Image) -> bool) {
    while !done(&broker.image()) {
        if Instant::now() >= deadline {
            tracing::info!(api, "a forwarded change was not visible here before the request's timeout; answering anyway");
            return;
        }
        tokio::time::sleep(VISIBLE_POLL).await;
    }
}

/// A config resource a forwarded alter changed, and how to tell it is published.
struct ConfigChange {
    resource_type: i8,
    name: String,
    /// The configs set (Some) and removed (None).
    expected: Vec<(String, Option<String>)>,
    /// The resource's configs before the request.
    before: Option<BTreeMap<String, String>>,
}

impl ConfigChange {
    /// Whether `image` shows the change: the expected values, or at least a
    /// change from before (the controller may normalise a value); always
    /// for resources the image does not hold (broker loggers).
    fn seen(&self, image: &Image) -> bool {
        if self.resource_type != RESOURCE_TOPIC && self.resource_type != RESOURCE_BROKER {
            return true;
        }
        let now = resource_configs(image, self.resource_type, &self.name);
        if now != self.before {
            return true;
        }
        let configs = now.unwrap_or_default();
        self.expected.iter().all(|(name, value)| configs.get(name) == value.as_ref())
    }
}

/// A resource a config alter names: its type and name, and the configs it
/// sets (Some) or removes (None).
type Asked<'a> = (i8, &'a str, Vec<(String, Option<String>)>);

/// IncrementalAlterConfigs and AlterConfigs, as forwarding waits for them.
trait ConfigAlter: Request + Into<RequestKind>
where
    Self::Response: ControllerReply + Into<ResponseKind>,
{
    /// The API's name, for the log.
    const API: &'static str;
    /// True if the controller only checks the request.
    fn validate_only(&self) -> bool;
    /// Each resource the request names.
    fn asked(&self) -> Vec<Asked<'_>>;
    /// The resources the controller altered: type and name.
    fn altered(answer: &Self::Response) -> Vec<(i8, &str)>;
}

impl ConfigAlter for IncrementalAlterConfigsRequest {
    const API: &'static str = "IncrementalAlterConfigs";

    fn validate_only(&self) -> bool {
        self.validate_only
    }

    fn asked(&self) -> Vec<Asked<'_>> {
        let expected = |c: &incremental_alter_configs_request::AlterableConfig| match c.config_operation {
            OP_SET => Some((c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))),
            OP_DELETE => Some((c.name.to_string(), None)),
            _ => None,
        };
        self.resources.iter().map(|x| (x.resource_type, x.resource_name.as_str(), x.configs.iter().filter_map(expected).collect())).collect()
    }

    fn altered(answer: &IncrementalAlterConfigsResponse) -> Vec<(i8, &str)> {
        answer.responses.iter().filter(|a| a.error_code == 0).map(|a| (a.resource_type, a.resource_name.as_str())).collect()
    }
}

impl ConfigAlter for AlterConfigsRequest {
    const API: &'static str = "AlterConfigs";

    fn validate_only(&self) -> bool {
        self.validate_only
    }

    fn asked(&self) -> Vec<Asked<'_>> {
        let expected = |c: &alter_configs_request::AlterableConfig| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()));
        self.resources.iter().map(|x| (x.resource_type, x.resource_name.as_str(), x.configs.iter().map(expected).collect())).collect()
    }

    fn altered(answer: &AlterConfigsResponse) -> Vec<(i8, &str)> {
        answer.responses.iter().filter(|a| a.error_code == 0).map(|a| (a.resource_type, a.resource_name.as_str())).collect()
    }
}

/// Forwards a config alter and, unless it only validates, waits until this
/// node's image shows every resource the controller altered, at most
/// `timeout` from now in all.
async fn alter_configs<R>(broker: &Broker, channel: &ControllerChannel, req: R, version: i16, timeout: Duration) -> Result<ResponseKind, RequestKind>
where
    R: ConfigAlter,
    R::Response: ControllerReply + Into<ResponseKind>,
{
    let deadline = Instant::now() + timeout;
    let before = broker.image();
    let answer = match send(channel, &req, Some(version), timeout).await {
        Ok(answer) => answer,
        Err(e) => return answered::<R::Response>(Err(e), req.into()),
    };
    if !req.validate_only() {
        let asked = req.asked();
        let changes: Vec<ConfigChange> = R::altered(&answer)
            .into_iter()
            .filter_map(|(resource_type, name)| {
                let (_, _, expected) = asked.iter().find(|(t, n, _)| *t == resource_type && *n == name)?;
                let before = resource_configs(&before, resource_type, name);
                Some(ConfigChange { resource_type, name: name.to_string(), expected: expected.clone(), before })
            })
            .collect();
        visible(broker, deadline, R::API, |image| changes.iter().all(|c| c.seen(image))).await;
    }
    Ok(answer.into())
}

/// The configs of a topic or broker resource in `image`.
fn resource_configs(image: &Image, resource_type: i8, name: &str) -> Option<BTreeMap<String, String>> {
    match resource_type {
        RESOURCE_TOPIC => image.topic(name).map(|t| t.configs.clone()),
        RESOURCE_BROKER => image.broker_configs(name).cloned(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{create_topics_request::CreatableTopic, CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::controller_api::testing::TestController;
    use crate::controller_channel::ChannelConfig;

    fn create(topics: &[&str]) -> CreateTopicsRequest {
        CreateTopicsRequest::default().with_timeout_ms(300).with_topics(
            topics.iter().map(|t| CreatableTopic::default().with_name(TopicName(StrBytes::from_string(t.to_string())))).collect(),
        )
    }

    fn errors(answer: Result<ResponseKind, RequestKind>) -> Vec<(String, i16)> {
        let Ok(ResponseKind::CreateTopics(r)) = answer else { panic!("a CreateTopics answer") };
        r.topics.iter().map(|t| (t.name.0.to_string(), t.error_code)).collect()
    }

    #[tokio::test]
    async fn no_reachable_controller_answers_each_topic_request_timed_out_within_the_request_timeout() {
        let down = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = down.local_addr().expect("address").to_string();
        drop(down);
        let config = ChannelConfig {
            voters: vec![(1, address)],
            client_id: "test".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(10),
        };
        let channel = ControllerChannel::new(config, Arc::new(|| Some(1)));
        let req = create(&["a", "b"]);
        let start = std::time::Instant::now();
        let sent = send(&channel, &req, Some(7), Duration::from_millis(req.timeout_ms as u64)).await;
        let code = ResponseError::RequestTimedOut.code();
        assert_eq!(errors(answered(sent, req.into())), vec![("a".into(), code), ("b".into(), code)]);
        assert!(start.elapsed() < Duration::from_secs(5), "waited {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_controller_without_the_api_answers_each_topic_unsupported_version() {
        let controller = TestController::start(true).await;
        let req = create(&["a"]);
        let sent = send(&controller.channel("forwarding"), &req, Some(7), Duration::from_secs(5)).await;
        assert_eq!(errors(answered(sent, req.into())), vec![("a".into(), ResponseError::UnsupportedVersion.code())]);
    }
}
