//! The Kafka APIs of the CONTROLLER listener (cluster mode): what brokers and
//! tools send to a controller, as Kafka's `ControllerApis`. The listener's
//! accept loop ([`crate::cluster_node`]) hands every connection that does not
//! start with the quorum's preface to [`crate::net`], which decodes requests
//! against [`supported_versions`] and dispatches them to [`handle`].
//!
//! A controller request reaching a node that is not the active controller is
//! answered NOT_CONTROLLER (the sender finds the active one and retries).
//!
//! The broker-to-controller APIs (BrokerRegistration, BrokerHeartbeat,
//! AlterPartition, AllocateProducerIds) are decoded here and decided by the
//! active controller through [`ControllerDecisions`]; the admin requests a
//! broker forwards (CreateTopics, DeleteTopics, CreatePartitions,
//! IncrementalAlterConfigs, AlterConfigs) run the broker's own handlers on the
//! active controller ([`forwarded`]).

use std::ops::Range;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_request::BrokerState;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    create_partitions_response, create_topics_response, delete_topics_response, AllocateProducerIdsResponse,
    AlterConfigsResponse, AlterPartitionRequest, AlterPartitionResponse, ApiKey, ApiVersionsResponse,
    BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerRegistrationRequest, BrokerRegistrationResponse,
    CreatePartitionsResponse, CreateTopicsResponse, DeleteTopicsResponse, IncrementalAlterConfigsResponse, ProducerId,
    RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::error::BrokerError;
use crate::handlers::{self, blocking, cluster, describe_quorum, Reply};
use crate::Broker;

/// The APIs the CONTROLLER listener serves and the highest version of each
/// implemented; the lowest is the protocol crate's lowest. The
/// broker-to-controller APIs ([`BROKER_APIS`]) and the forwarded admin
/// requests ([`FORWARDED_APIS`]) are served too.
const IMPLEMENTED: &[(ApiKey, i16)] = &[(ApiKey::ApiVersions, 4), (ApiKey::DescribeQuorum, 2), (ApiKey::DescribeCluster, 1)];

/// The version range served for `key` on the CONTROLLER listener, if any.
pub(crate) fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    IMPLEMENTED.iter().chain(BROKER_APIS).chain(FORWARDED_APIS).find(|(k, _)| *k == key).map(|(k, max)| {
        let range = k.valid_versions();
        (range.min, (*max).min(range.max))
    })
}

fn api_keys() -> Vec<ApiVersion> {
    IMPLEMENTED
        .iter()
        .chain(BROKER_APIS)
        .chain(FORWARDED_APIS)
        .filter_map(|(key, _)| supported_versions(*key).map(|range| (*key, range)))
        .map(|(key, (min, max))| ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max))
        .collect()
}

/// The v0 answer to an ApiVersions request of a version not spoken here.
pub(crate) fn unsupported_version_response() -> ResponseKind {
    ApiVersionsResponse::default().with_error_code(ResponseError::UnsupportedVersion.code()).with_api_keys(api_keys()).into()
}

/// Runs the controller handler of a decoded request.
pub(crate) async fn handle(broker: &Arc<Broker>, version: i16, request: RequestKind) -> Reply {
    let response: ResponseKind = match request {
        RequestKind::ApiVersions(_) => ApiVersionsResponse::default().with_api_keys(api_keys()).into(),
        RequestKind::DescribeQuorum(req) => describe_quorum::handle(broker, &req, version).into(),
        // The cluster id for kafka-metadata-quorum.sh --bootstrap-controller.
        RequestKind::DescribeCluster(req) => cluster::describe_controllers(broker, req, version).into(),
        other => {
            let active = broker.active_controller() == Some(broker.config.node_id);
            // Decisions commit to the metadata quorum: blocking.
            let decided = blocking(|| {
                let mut controller = broker.controller.lock();
                let decisions: Option<&mut dyn ControllerDecisions> = if active { Some(&mut *controller) } else { None };
                decide(decisions, version, other, crate::now_ms())
            });
            let other = match decided {
                Ok(response) => return Reply::Response(Box::new(response)),
                Err(other) => other,
            };
            match forwarded(broker, active, version, other) {
                Ok(response) => response,
                Err(other) => {
                    // Unreachable: net.rs decodes only the APIs listed above.
                    tracing::warn!(request = ?std::mem::discriminant(&other), "no controller handler");
                    return Reply::Close;
                }
            }
        }
    };
    Reply::Response(Box::new(response))
}

/// The broker-to-controller APIs this module decides and the highest
/// version of each implemented (the lowest is the protocol crate's lowest);
/// the CONTROLLER listener's list of served APIs includes them.
pub(crate) const BROKER_APIS: &[(ApiKey, i16)] = &[
    (ApiKey::BrokerRegistration, 4),
    (ApiKey::BrokerHeartbeat, 1),
    (ApiKey::AlterPartition, 3),
    (ApiKey::AllocateProducerIds, 0),
];

/// The admin APIs brokers forward to the active controller, with the
/// highest version served (the broker listener's own maximum).
pub(crate) const FORWARDED_APIS: &[(ApiKey, i16)] = &[
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::AlterConfigs, 2),
];

/// What the active controller decides for the broker-to-controller APIs;
/// [`crate::controller::Controller`] implements it. Each answer is the
/// complete response (errors included), computed against the committed image.
pub(crate) trait ControllerDecisions {
    /// BrokerRegistration: a new broker epoch, or why not.
    fn register_broker(&mut self, req: &BrokerRegistrationRequest, now_ms: i64) -> BrokerRegistrationResponse;
    /// BrokerHeartbeat: the broker's session, fencing and controlled shutdown.
    fn broker_heartbeat(&mut self, req: &BrokerHeartbeatRequest, now_ms: i64) -> BrokerHeartbeatResponse;
    /// AlterPartition: ISR changes a leader asks for (`new_isr_with_epochs`
    /// is always filled, whatever the request version).
    fn alter_partition(&mut self, req: &AlterPartitionRequest, now_ms: i64) -> AlterPartitionResponse;
    /// AllocateProducerIds: a block of producer ids for a broker of this epoch.
    fn allocate_producer_ids(&mut self, broker_id: i32, broker_epoch: i64, now_ms: i64) -> Result<Range<i64>, BrokerError>;
}

impl ControllerDecisions for crate::controller::Controller {
    fn register_broker(&mut self, req: &BrokerRegistrationRequest, now_ms: i64) -> BrokerRegistrationResponse {
        crate::controller::Controller::register_broker(self, req, now_ms)
    }

    fn broker_heartbeat(&mut self, req: &BrokerHeartbeatRequest, now_ms: i64) -> BrokerHeartbeatResponse {
        crate::controller::Controller::broker_heartbeat(self, req, now_ms)
    }

    fn alter_partition(&mut self, req: &AlterPartitionRequest, now_ms: i64) -> AlterPartitionResponse {
        crate::controller::Controller::alter_partition(self, req, now_ms)
    }

    fn allocate_producer_ids(&mut self, broker_id: i32, broker_epoch: i64, now_ms: i64) -> Result<Range<i64>, BrokerError> {
        crate::controller::Controller::allocate_producer_ids(self, broker_id, broker_epoch, now_ms)
    }
}

/// Decides a broker-to-controller request: `decisions` is the active
/// controller, None when this node is not it (NOT_CONTROLLER). Any other
/// request comes back as Err.
pub(crate) fn decide(
    decisions: Option<&mut dyn ControllerDecisions>,
    version: i16,
    request: RequestKind,
    now_ms: i64,
) -> Result<ResponseKind, RequestKind> {
    let not_controller = ResponseError::NotController.code();
    let Some(controller) = decisions else {
        return match request {
            RequestKind::BrokerRegistration(_) => {
                Ok(BrokerRegistrationResponse::default().with_error_code(not_controller).with_broker_epoch(-1).into())
            }
            RequestKind::BrokerHeartbeat(_) => {
                Ok(BrokerHeartbeatResponse::default().with_error_code(not_controller).with_is_fenced(true).into())
            }
            RequestKind::AlterPartition(_) => Ok(AlterPartitionResponse::default().with_error_code(not_controller).into()),
            RequestKind::AllocateProducerIds(_) => {
                Ok(AllocateProducerIdsResponse::default().with_error_code(not_controller).into())
            }
            other => Err(other),
        };
    };
    Ok(match request {
        RequestKind::BrokerRegistration(req) => controller.register_broker(&req, now_ms).into(),
        RequestKind::BrokerHeartbeat(req) => controller.broker_heartbeat(&req, now_ms).into(),
        RequestKind::AlterPartition(mut req) => {
            if version < 3 {
                // Before v3 the ISR came without broker epochs (-1: not checked).
                for partition in req.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                    partition.new_isr_with_epochs = partition
                        .new_isr
                        .iter()
                        .map(|&id| BrokerState::default().with_broker_id(id).with_broker_epoch(-1))
                        .collect();
                }
            }
            controller.alter_partition(&req, now_ms).into()
        }
        RequestKind::AllocateProducerIds(req) => {
            match controller.allocate_producer_ids(req.broker_id.0, req.broker_epoch, now_ms) {
                Ok(ids) => AllocateProducerIdsResponse::default()
                    .with_producer_id_start(ProducerId(ids.start))
                    .with_producer_id_len((ids.end - ids.start) as i32)
                    .into(),
                Err(e) => {
                    tracing::info!(broker = req.broker_id.0, error = %e, "refused a producer id block");
                    AllocateProducerIdsResponse::default().with_error_code(e.code()).with_producer_id_start(ProducerId(-1)).into()
                }
            }
        }
        other => return Err(other),
    })
}

/// Runs an admin request a broker forwarded: the broker's own handler when
/// this node is the active controller, else NOT_CONTROLLER for each of its
/// topics or resources. Any other request comes back as Err.
pub(crate) fn forwarded(broker: &Arc<Broker>, active: bool, version: i16, request: RequestKind) -> Result<ResponseKind, RequestKind> {
    if !active {
        return not_controller(request);
    }
    Ok(match request {
        // These create or delete logs and fsync the metadata log.
        RequestKind::CreateTopics(req) => blocking(|| handlers::topics::create(broker, req, version)).into(),
        RequestKind::DeleteTopics(req) => blocking(|| handlers::topics::delete(broker, req)).into(),
        RequestKind::CreatePartitions(req) => blocking(|| handlers::topics::create_partitions(broker, req)).into(),
        RequestKind::IncrementalAlterConfigs(req) => blocking(|| handlers::configs::incremental_alter(broker, req)).into(),
        RequestKind::AlterConfigs(req) => blocking(|| handlers::configs::alter(broker, req)).into(),
        other => return Err(other),
    })
}

/// Each config resource of an (Incremental)AlterConfigs request answered with
/// `code` (the two APIs have distinct but alike resource response types).
macro_rules! refused_resources {
    ($req:expr, $module:path, $code:expr, $message:expr) => {{
        use $module as m;
        $req.resources
            .into_iter()
            .map(|r| {
                m::AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_code($code)
                    .with_error_message($message())
            })
            .collect()
    }};
}

/// The NOT_CONTROLLER answer to a forwarded admin request, per topic or resource.
fn not_controller(request: RequestKind) -> Result<ResponseKind, RequestKind> {
    refused(request, ResponseError::NotController, "This is not the active controller.")
}

/// The answer to an admin request of the forwarded APIs ([`FORWARDED_APIS`])
/// that fails whole: `error` and `message` for each of its topics or
/// resources. Any other request comes back as Err.
// Unboxed, as the request handed back by `decide` and `forwarded`.
#[allow(clippy::result_large_err)]
pub(crate) fn refused(request: RequestKind, error: ResponseError, message: &str) -> Result<ResponseKind, RequestKind> {
    let code = error.code();
    let message = || Some(StrBytes::from_string(message.to_string()));
    Ok(match request {
        RequestKind::CreateTopics(req) => CreateTopicsResponse::default()
            .with_topics(
                req.topics
                    .into_iter()
                    .map(|t| {
                        create_topics_response::CreatableTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(code)
                            .with_error_message(message())
                            .with_num_partitions(-1)
                            .with_replication_factor(-1)
                    })
                    .collect(),
            )
            .into(),
        RequestKind::DeleteTopics(req) => {
            let by_name = req.topic_names.into_iter().map(|n| (Some(n), uuid::Uuid::nil()));
            let by_state = req.topics.into_iter().map(|t| (t.name, t.topic_id));
            DeleteTopicsResponse::default()
                .with_responses(
                    by_name
                        .chain(by_state)
                        .map(|(name, id)| {
                            delete_topics_response::DeletableTopicResult::default()
                                .with_name(name)
                                .with_topic_id(id)
                                .with_error_code(code)
                                .with_error_message(message())
                        })
                        .collect(),
                )
                .into()
        }
        RequestKind::CreatePartitions(req) => CreatePartitionsResponse::default()
            .with_results(
                req.topics
                    .into_iter()
                    .map(|t| {
                        create_partitions_response::CreatePartitionsTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(code)
                            .with_error_message(message())
                    })
                    .collect(),
            )
            .into(),
        RequestKind::IncrementalAlterConfigs(req) => IncrementalAlterConfigsResponse::default()
            .with_responses(refused_resources!(req, kafka_protocol::messages::incremental_alter_configs_response, code, message))
            .into(),
        RequestKind::AlterConfigs(req) => AlterConfigsResponse::default()
            .with_responses(refused_resources!(req, kafka_protocol::messages::alter_configs_response, code, message))
            .into(),
        other => return Err(other),
    })
}

/// A CONTROLLER-listener stand-in for the broker-side tests: a TCP server on
/// 127.0.0.1 that decodes real Kafka requests, answers ApiVersions with
/// [`BROKER_APIS`] and runs [`decide`] on a [`FakeDecisions`] (the decisions
/// themselves are the controller's and are tested there).
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::alter_partition_response;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::{ApiVersionsResponse, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use parking_lot::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Decisions simple enough to follow in a test: epochs count up, a
    /// broker is caught up (and unfenced) once its heartbeat reports
    /// `caught_up_at`, ISR changes bump the partition epoch.
    #[derive(Default)]
    pub(crate) struct FakeDecisions {
        pub(crate) next_epoch: i64,
        /// Broker id to its registered epoch.
        pub(crate) brokers: HashMap<i32, i64>,
        pub(crate) registrations: Vec<BrokerRegistrationRequest>,
        pub(crate) heartbeats: Vec<BrokerHeartbeatRequest>,
        pub(crate) alter_partitions: Vec<AlterPartitionRequest>,
        pub(crate) caught_up_at: i64,
        /// Partition epochs by (topic id, partition); 0 if absent.
        pub(crate) partition_epochs: HashMap<(uuid::Uuid, i32), i32>,
        /// The start of the next producer id block (blocks of 1000).
        pub(crate) next_producer_id: i64,
    }

    impl ControllerDecisions for FakeDecisions {
        fn register_broker(&mut self, req: &BrokerRegistrationRequest, _now_ms: i64) -> BrokerRegistrationResponse {
            self.registrations.push(req.clone());
            self.next_epoch += 1;
            self.brokers.insert(req.broker_id.0, self.next_epoch);
            BrokerRegistrationResponse::default().with_broker_epoch(self.next_epoch)
        }

        fn broker_heartbeat(&mut self, req: &BrokerHeartbeatRequest, _now_ms: i64) -> BrokerHeartbeatResponse {
            self.heartbeats.push(req.clone());
            if self.brokers.get(&req.broker_id.0) != Some(&req.broker_epoch) {
                return BrokerHeartbeatResponse::default().with_error_code(ResponseError::StaleBrokerEpoch.code()).with_is_fenced(true);
            }
            let caught_up = req.current_metadata_offset >= self.caught_up_at;
            BrokerHeartbeatResponse::default()
                .with_is_caught_up(caught_up)
                .with_is_fenced(!caught_up)
                .with_should_shut_down(req.want_shut_down)
        }

        fn alter_partition(&mut self, req: &AlterPartitionRequest, _now_ms: i64) -> AlterPartitionResponse {
            self.alter_partitions.push(req.clone());
            let topics = req
                .topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let epoch = self.partition_epochs.entry((t.topic_id, p.partition_index)).or_insert(0);
                            let answer = alter_partition_response::PartitionData::default().with_partition_index(p.partition_index);
                            if p.partition_epoch != *epoch {
                                return answer.with_error_code(ResponseError::InvalidUpdateVersion.code());
                            }
                            *epoch += 1;
                            answer
                                .with_leader_id(req.broker_id)
                                .with_leader_epoch(p.leader_epoch)
                                .with_isr(p.new_isr_with_epochs.iter().map(|b| b.broker_id).collect())
                                .with_partition_epoch(*epoch)
                        })
                        .collect();
                    alter_partition_response::TopicData::default().with_topic_id(t.topic_id).with_partitions(partitions)
                })
                .collect();
            AlterPartitionResponse::default().with_topics(topics)
        }

        fn allocate_producer_ids(&mut self, broker_id: i32, broker_epoch: i64, _now_ms: i64) -> Result<Range<i64>, BrokerError> {
            if self.brokers.get(&broker_id) != Some(&broker_epoch) {
                return Err(BrokerError::kafka(ResponseError::StaleBrokerEpoch, "stale broker epoch"));
            }
            let start = self.next_producer_id;
            self.next_producer_id += 1000;
            Ok(start..start + 1000)
        }
    }

    /// One stand-in controller: its address, whether it is active, its
    /// decisions, and how many connections it accepted.
    pub(crate) struct TestController {
        pub(crate) address: SocketAddr,
        pub(crate) active: Arc<AtomicBool>,
        pub(crate) decisions: Arc<Mutex<FakeDecisions>>,
        pub(crate) connections: Arc<AtomicUsize>,
        /// Requests answered NOT_CONTROLLER.
        pub(crate) refused: Arc<AtomicUsize>,
    }

    impl TestController {
        /// A channel of `purpose` to this controller alone (voter id 1), retrying every 10 ms.
        pub(crate) fn channel(&self, purpose: &str) -> Arc<crate::controller_channel::ControllerChannel> {
            let config = crate::controller_channel::ChannelConfig {
                voters: vec![(1, self.address.to_string())],
                client_id: purpose.into(),
                connect_timeout: std::time::Duration::from_secs(5),
                request_timeout: std::time::Duration::from_secs(5),
                retry_backoff: std::time::Duration::from_millis(10),
            };
            Arc::new(crate::controller_channel::ControllerChannel::new(config, Arc::new(|| None)))
        }

        /// Starts serving on a free port of 127.0.0.1.
        pub(crate) async fn start(active: bool) -> TestController {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let controller = TestController {
                address: listener.local_addr().expect("address"),
                active: Arc::new(AtomicBool::new(active)),
                decisions: Arc::new(Mutex::new(FakeDecisions::default())),
                connections: Arc::new(AtomicUsize::new(0)),
                refused: Arc::new(AtomicUsize::new(0)),
            };
            let (active, decisions, connections, refused) = (
                Arc::clone(&controller.active),
                Arc::clone(&controller.decisions),
                Arc::clone(&controller.connections),
                Arc::clone(&controller.refused),
            );
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (active, decisions, refused) = (Arc::clone(&active), Arc::clone(&decisions), Arc::clone(&refused));
                    tokio::spawn(serve(stream, active, decisions, refused));
                }
            });
            controller
        }
    }

    async fn serve(
        mut stream: tokio::net::TcpStream,
        active: Arc<AtomicBool>,
        decisions: Arc<Mutex<FakeDecisions>>,
        refused: Arc<AtomicUsize>,
    ) {
        loop {
            let Ok(size) = stream.read_i32().await else { return };
            let mut frame = vec![0u8; size.max(0) as usize];
            if stream.read_exact(&mut frame).await.is_err() {
                return;
            }
            let mut frame = Bytes::from(frame);
            let key = ApiKey::try_from((&frame[0..2]).get_i16()).expect("api key");
            let version = (&frame[2..4]).get_i16();
            let header = RequestHeader::decode(&mut frame, key.request_header_version(version)).expect("header");
            let response: ResponseKind = if key == ApiKey::ApiVersions {
                let apis = BROKER_APIS.iter().chain(&[(ApiKey::ApiVersions, 3)]).map(|(k, max)| {
                    ApiVersion::default().with_api_key(*k as i16).with_min_version(k.valid_versions().min).with_max_version(*max)
                });
                ApiVersionsResponse::default().with_api_keys(apis.collect()).into()
            } else {
                let request = RequestKind::decode(key, &mut frame, version).expect("request");
                let is_active = active.load(Ordering::SeqCst);
                if !is_active {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
                let mut guard = decisions.lock();
                let chosen: Option<&mut dyn ControllerDecisions> = if is_active { Some(&mut *guard) } else { None };
                decide(chosen, version, request, 0).unwrap_or_else(|_| panic!("{key:?} is not a broker API"))
            };
            let mut out = BytesMut::new();
            out.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(header.correlation_id)
                .encode(&mut out, key.response_header_version(version))
                .expect("encode header");
            response.encode(&mut out, version).expect("encode response");
            let length = (out.len() - 4) as i32;
            out[0..4].copy_from_slice(&length.to_be_bytes());
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    /// Waits until `done` holds, checking every few milliseconds; panics
    /// after a minute (a hang, not a slow run).
    pub(crate) async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed() < std::time::Duration::from_secs(60), "never happened: {what}");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{
        alter_configs_request, create_topics_request, incremental_alter_configs_request, AlterConfigsRequest,
        CreateTopicsRequest, IncrementalAlterConfigsRequest, TopicName,
    };

    use super::*;

    fn resource<T: Default>(build: impl Fn(T) -> T) -> T {
        build(T::default())
    }

    #[test]
    fn a_node_that_is_not_the_active_controller_refuses_each_topic_and_resource_with_not_controller() {
        let code = ResponseError::NotController.code();
        let topics = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("a"))),
            create_topics_request::CreatableTopic::default().with_name(TopicName(StrBytes::from_static_str("b"))),
        ]);
        let Ok(ResponseKind::CreateTopics(r)) = not_controller(topics.into()) else { panic!("CreateTopics") };
        let answered: Vec<(&str, i16)> = r.topics.iter().map(|t| (t.name.0.as_str(), t.error_code)).collect();
        assert_eq!(answered, vec![("a", code), ("b", code)]);

        let name = StrBytes::from_static_str("7");
        let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![resource(
            |r: incremental_alter_configs_request::AlterConfigsResource| r.with_resource_type(4).with_resource_name(name.clone()),
        )]);
        let Ok(ResponseKind::IncrementalAlterConfigs(r)) = not_controller(incremental.into()) else { panic!("incremental") };
        let answered: Vec<(i8, &str, i16)> = r.responses.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code)).collect();
        assert_eq!(answered, vec![(4, "7", code)]);
        let legacy = AlterConfigsRequest::default().with_resources(vec![resource(
            |r: alter_configs_request::AlterConfigsResource| r.with_resource_type(2).with_resource_name(name.clone()),
        )]);
        let Ok(ResponseKind::AlterConfigs(r)) = not_controller(legacy.into()) else { panic!("AlterConfigs") };
        let answered: Vec<(i8, &str, i16)> = r.responses.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.error_code)).collect();
        assert_eq!(answered, vec![(2, "7", code)]);

        let Ok(ResponseKind::BrokerHeartbeat(r)) = decide(None, 1, BrokerHeartbeatRequest::default().into(), 0) else {
            panic!("heartbeat")
        };
        assert_eq!((r.error_code, r.is_fenced), (code, true));
    }
}
