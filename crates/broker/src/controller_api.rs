//! The Kafka APIs of the CONTROLLER listener (cluster mode): what brokers and
//! tools send to a controller, as Kafka's `ControllerApis`. The listener's
//! accept loop ([`crate::cluster_node`]) hands every connection that does not
//! start with the quorum's preface to [`crate::net`], which decodes requests
//! against [`supported_versions`] and dispatches them to [`handle`].
//!
//! A controller request reaching a node that is not the active controller is
//! answered NOT_CONTROLLER (the sender finds the active one and retries).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, RequestKind, ResponseKind};

use crate::handlers::{describe_quorum, Reply};
use crate::Broker;

/// The APIs the CONTROLLER listener serves and the highest version of each
/// implemented; the lowest is the protocol crate's lowest.
const IMPLEMENTED: &[(ApiKey, i16)] = &[(ApiKey::ApiVersions, 4), (ApiKey::DescribeQuorum, 2)];

/// The version range served for `key` on the CONTROLLER listener, if any.
pub(crate) fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    IMPLEMENTED.iter().find(|(k, _)| *k == key).map(|(k, max)| {
        let range = k.valid_versions();
        (range.min, (*max).min(range.max))
    })
}

fn api_keys() -> Vec<ApiVersion> {
    IMPLEMENTED
        .iter()
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
        other => {
            // Unreachable: net.rs decodes only the APIs listed above.
            tracing::warn!(request = ?std::mem::discriminant(&other), "no controller handler");
            return Reply::Close;
        }
    };
    Reply::Response(Box::new(response))
}
