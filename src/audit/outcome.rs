//! The codes an audited decision records when the answer does not name its
//! resource (the edge's API homes read the answer; see `coalesce::Outcomes`).

use kafka_protocol::ResponseError;

/// The first error among `codes` (0 when none): a topic answered per
/// partition records its worst partition code.
pub fn worst(codes: impl Iterator<Item = i16>) -> i16 {
    codes.fold(0, |acc, c| if acc == 0 { c } else { acc })
}

/// The code Kafka gives for a denial on this resource type.
pub fn denial_code(resource_type: &str) -> i16 {
    match resource_type {
        "group" => ResponseError::GroupAuthorizationFailed.code(),
        "cluster" => ResponseError::ClusterAuthorizationFailed.code(),
        "transactional_id" => ResponseError::TransactionalIdAuthorizationFailed.code(),
        _ => ResponseError::TopicAuthorizationFailed.code(),
    }
}

/// The code assumed for a decision the response does not name.
pub fn fallback_code(resource_type: &str, denied: bool, top: Option<i16>) -> i16 {
    match top {
        Some(c) if resource_type == "cluster" => c,
        _ if denied => denial_code(resource_type),
        _ => 0,
    }
}
