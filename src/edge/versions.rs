//! ApiVersions and the table of what this broker really handles.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::ResponseError;

use super::errors;
use super::RequestContext;

/// Who answers an API.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Served {
    /// The edge itself, in both modes (ApiVersions, SASL, ACLs, SCRAM
    /// credentials): these never reach a back end.
    Edge,
    /// The back end, with what the edge allowed.
    Backend,
}

/// One row of the API table: the versions we serve, who answers, and
/// whether an allowed decision counts as an admin operation for the
/// `admin` audit level.
#[derive(Clone, Copy, Debug)]
pub struct Api {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    pub served: Served,
    pub admin: bool,
}

const fn api(key: ApiKey, min: i16, max: i16, served: Served, admin: bool) -> Api {
    Api {
        key,
        min,
        max,
        served,
        admin,
    }
}

/// Every API this broker answers. Produce and Fetch stop at 12: v13
/// addresses topics by id only, which we do not serve yet. Every range is
/// checked against the kafka-protocol crate's own in the tests below.
pub const SUPPORTED: &[Api] = &[
    api(ApiKey::Produce, 3, 12, Served::Backend, false),
    api(ApiKey::Fetch, 4, 12, Served::Backend, false),
    api(ApiKey::ListOffsets, 1, 10, Served::Backend, false),
    api(ApiKey::Metadata, 0, 12, Served::Backend, false),
    api(ApiKey::ApiVersions, 0, 4, Served::Edge, false),
    api(ApiKey::CreateTopics, 2, 7, Served::Backend, true),
    api(ApiKey::DeleteTopics, 1, 6, Served::Backend, true),
    api(ApiKey::DeleteRecords, 0, 2, Served::Backend, true),
    api(ApiKey::DescribeConfigs, 1, 4, Served::Backend, false),
    api(ApiKey::CreatePartitions, 0, 3, Served::Backend, true),
    api(ApiKey::IncrementalAlterConfigs, 0, 1, Served::Backend, true),
    api(ApiKey::AlterConfigs, 0, 2, Served::Backend, true),
    api(ApiKey::DescribeCluster, 0, 2, Served::Backend, false),
    api(ApiKey::DescribeLogDirs, 1, 4, Served::Backend, false),
    api(ApiKey::DescribeClientQuotas, 0, 1, Served::Edge, false),
    api(ApiKey::AlterClientQuotas, 0, 1, Served::Edge, true),
    api(ApiKey::SaslHandshake, 0, 1, Served::Edge, false),
    api(ApiKey::SaslAuthenticate, 0, 2, Served::Edge, false),
    api(
        ApiKey::DescribeUserScramCredentials,
        0,
        0,
        Served::Edge,
        true,
    ),
    api(ApiKey::AlterUserScramCredentials, 0, 0, Served::Edge, true),
    api(ApiKey::FindCoordinator, 0, 4, Served::Backend, false),
    api(ApiKey::JoinGroup, 0, 9, Served::Backend, false),
    api(ApiKey::SyncGroup, 0, 5, Served::Backend, false),
    api(ApiKey::Heartbeat, 0, 4, Served::Backend, false),
    api(ApiKey::LeaveGroup, 0, 5, Served::Backend, false),
    api(ApiKey::OffsetCommit, 2, 9, Served::Backend, false),
    api(ApiKey::OffsetFetch, 1, 9, Served::Backend, false),
    api(ApiKey::ListGroups, 0, 5, Served::Backend, false),
    api(ApiKey::DescribeGroups, 0, 5, Served::Backend, false),
    api(ApiKey::DeleteGroups, 0, 2, Served::Backend, true),
    api(ApiKey::OffsetDelete, 0, 0, Served::Backend, true),
    api(ApiKey::ConsumerGroupHeartbeat, 0, 1, Served::Backend, false),
    api(ApiKey::ConsumerGroupDescribe, 0, 1, Served::Backend, false),
    api(ApiKey::InitProducerId, 0, 5, Served::Backend, false),
    api(ApiKey::AddPartitionsToTxn, 0, 3, Served::Backend, false),
    api(ApiKey::AddOffsetsToTxn, 0, 3, Served::Backend, false),
    api(ApiKey::TxnOffsetCommit, 0, 3, Served::Backend, false),
    api(ApiKey::EndTxn, 0, 3, Served::Backend, false),
    api(ApiKey::DescribeTransactions, 0, 0, Served::Backend, false),
    api(ApiKey::ListTransactions, 0, 1, Served::Backend, false),
    api(ApiKey::CreateAcls, 1, 3, Served::Edge, true),
    api(ApiKey::DescribeAcls, 1, 3, Served::Edge, true),
    api(ApiKey::DeleteAcls, 1, 3, Served::Edge, true),
];

fn row(api: ApiKey) -> Option<&'static Api> {
    SUPPORTED.iter().find(|a| a.key == api)
}

/// Whether the back end executes this API (the gateway forwards it).
pub fn forwards(api: ApiKey) -> bool {
    row(api).is_some_and(|a| a.served == Served::Backend)
}

/// Whether an allowed decision on this API is an admin operation.
pub fn is_admin(api: ApiKey) -> bool {
    row(api).is_some_and(|a| a.admin)
}

pub fn supported(api: ApiKey) -> Option<(i16, i16)> {
    row(api).map(|a| (a.min, a.max))
}

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

/// `narrow` keeps what the back end also speaks (the gateway's upstream).
pub fn handle(
    ctx: &RequestContext<'_>,
    narrow: impl FnOnce(Vec<ApiVersion>) -> Vec<ApiVersion>,
    req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    // KIP-511: v3+ names the client software; Kafka refuses names that are
    // not plain tokens, so a client cannot smuggle newlines, escape codes or
    // megabytes into our logs and audit records through them.
    if ctx.version >= 3
        && !(valid_software_token(&req.client_software_name)
            && valid_software_token(&req.client_software_version))
    {
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let list = narrow(api_list());
    ApiVersionsResponse::default()
        .with_error_code(errors::NONE)
        .with_api_keys(list)
}

/// Longest client software name or version accepted. Kafka's pattern has no
/// length limit (the pre-login frame cap bounds it); real clients send a few
/// dozen characters.
const MAX_SOFTWARE_TOKEN: usize = 256;

/// Kafka's `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`, with a length cap.
pub fn valid_software_token(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && b.len() <= MAX_SOFTWARE_TOKEN
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

/// KIP-511: a v0 response carrying UNSUPPORTED_VERSION and our list.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Message;

    #[test]
    fn software_tokens_follow_kafkas_pattern() {
        for ok in ["librdkafka", "2.3.0", "apache-kafka-java", "a", "1.0.0-rc1"] {
            assert!(valid_software_token(ok), "{ok}");
        }
        let long = "a".repeat(MAX_SOFTWARE_TOKEN + 1);
        for bad in [
            "",
            "-x",
            "x-",
            "a b",
            "x\ny",
            "\u{1b}[31m",
            "caf\u{e9}",
            &long,
        ] {
            assert!(!valid_software_token(bad), "{bad:?}");
        }
    }

    fn crate_range(api: ApiKey) -> (i16, i16) {
        let r = match api {
            ApiKey::Produce => ProduceRequest::VERSIONS,
            ApiKey::Fetch => FetchRequest::VERSIONS,
            ApiKey::ListOffsets => ListOffsetsRequest::VERSIONS,
            ApiKey::Metadata => MetadataRequest::VERSIONS,
            ApiKey::ApiVersions => ApiVersionsRequest::VERSIONS,
            ApiKey::CreateTopics => CreateTopicsRequest::VERSIONS,
            ApiKey::DeleteTopics => DeleteTopicsRequest::VERSIONS,
            ApiKey::DeleteRecords => DeleteRecordsRequest::VERSIONS,
            ApiKey::DescribeConfigs => DescribeConfigsRequest::VERSIONS,
            ApiKey::CreatePartitions => CreatePartitionsRequest::VERSIONS,
            ApiKey::IncrementalAlterConfigs => IncrementalAlterConfigsRequest::VERSIONS,
            ApiKey::AlterConfigs => AlterConfigsRequest::VERSIONS,
            ApiKey::DescribeCluster => DescribeClusterRequest::VERSIONS,
            ApiKey::DescribeLogDirs => DescribeLogDirsRequest::VERSIONS,
            ApiKey::DescribeClientQuotas => DescribeClientQuotasRequest::VERSIONS,
            ApiKey::AlterClientQuotas => AlterClientQuotasRequest::VERSIONS,
            ApiKey::SaslHandshake => SaslHandshakeRequest::VERSIONS,
            ApiKey::SaslAuthenticate => SaslAuthenticateRequest::VERSIONS,
            ApiKey::DescribeUserScramCredentials => DescribeUserScramCredentialsRequest::VERSIONS,
            ApiKey::AlterUserScramCredentials => AlterUserScramCredentialsRequest::VERSIONS,
            ApiKey::CreateAcls => CreateAclsRequest::VERSIONS,
            ApiKey::InitProducerId => InitProducerIdRequest::VERSIONS,
            ApiKey::AddPartitionsToTxn => AddPartitionsToTxnRequest::VERSIONS,
            ApiKey::AddOffsetsToTxn => AddOffsetsToTxnRequest::VERSIONS,
            ApiKey::TxnOffsetCommit => TxnOffsetCommitRequest::VERSIONS,
            ApiKey::EndTxn => EndTxnRequest::VERSIONS,
            ApiKey::DescribeTransactions => DescribeTransactionsRequest::VERSIONS,
            ApiKey::ListTransactions => ListTransactionsRequest::VERSIONS,
            ApiKey::FindCoordinator => FindCoordinatorRequest::VERSIONS,
            ApiKey::JoinGroup => JoinGroupRequest::VERSIONS,
            ApiKey::SyncGroup => SyncGroupRequest::VERSIONS,
            ApiKey::Heartbeat => HeartbeatRequest::VERSIONS,
            ApiKey::LeaveGroup => LeaveGroupRequest::VERSIONS,
            ApiKey::OffsetCommit => OffsetCommitRequest::VERSIONS,
            ApiKey::OffsetFetch => OffsetFetchRequest::VERSIONS,
            ApiKey::ListGroups => ListGroupsRequest::VERSIONS,
            ApiKey::DescribeGroups => DescribeGroupsRequest::VERSIONS,
            ApiKey::DeleteGroups => DeleteGroupsRequest::VERSIONS,
            ApiKey::OffsetDelete => OffsetDeleteRequest::VERSIONS,
            ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::VERSIONS,
            ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::VERSIONS,
            ApiKey::DescribeAcls => DescribeAclsRequest::VERSIONS,
            ApiKey::DeleteAcls => DeleteAclsRequest::VERSIONS,
            other => panic!("no range for {other:?}"),
        };
        (r.min, r.max)
    }

    #[test]
    fn advertised_versions_are_within_the_codec() {
        for &Api {
            key: api,
            min: lo,
            max: hi,
            ..
        } in SUPPORTED
        {
            let (cmin, cmax) = crate_range(api);
            assert!(lo >= cmin && hi <= cmax && lo <= hi, "{api:?}");
        }
    }
}
