//! Reads the outcome of audited decisions from the response: the Kafka
//! error code the client actually received for each resource. The response
//! is walked in place, never copied: it may name millions of resources.

use kafka_protocol::messages::ResponseKind;

fn worst(codes: impl Iterator<Item = i16>) -> i16 {
    codes.fold(0, |acc, c| if acc == 0 { c } else { acc })
}

/// The resource kind of a config resource (`2` topic, `4` broker, whose
/// configs are authorized on the cluster).
fn config_kind(resource_type: i8) -> &'static str {
    match resource_type {
        2 => "topic",
        4 => "cluster",
        _ => "",
    }
}

/// Calls `f(kind, name, code)` for every resource the response names, with
/// the worst partition code for topics answered per partition.
pub fn for_each_code(resp: &ResponseKind, mut f: impl FnMut(&'static str, &str, i16)) {
    match resp {
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                f(
                    "topic",
                    &t.name,
                    worst(t.partition_responses.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &r.responses {
                f(
                    "topic",
                    &t.topic,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                f(
                    "topic",
                    &t.name,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                if let Some(n) = &t.name {
                    f("topic", n, t.error_code);
                }
            }
        }
        ResponseKind::CreateTopics(r) => {
            for t in &r.topics {
                f("topic", &t.name, t.error_code);
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &r.responses {
                if let Some(n) = &t.name {
                    f("topic", n, t.error_code);
                }
            }
        }
        ResponseKind::CreatePartitions(r) => {
            for t in &r.results {
                f("topic", &t.name, t.error_code);
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for t in &r.topics {
                f(
                    "topic",
                    &t.name,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for t in &r.results {
                f(config_kind(t.resource_type), &t.resource_name, t.error_code);
            }
        }
        ResponseKind::IncrementalAlterConfigs(r) => {
            for t in &r.responses {
                f(config_kind(t.resource_type), &t.resource_name, t.error_code);
            }
        }
        ResponseKind::DescribeGroups(r) => {
            for g in &r.groups {
                f("group", &g.group_id, g.error_code);
            }
        }
        ResponseKind::DeleteGroups(r) => {
            for g in &r.results {
                f("group", &g.group_id, g.error_code);
            }
        }
        _ => {}
    }
}

/// The single code of a cluster-level response.
pub fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::Fetch(r) => Some(r.error_code),
        ResponseKind::DescribeCluster(r) => Some(r.error_code),
        ResponseKind::DescribeAcls(r) => Some(r.error_code),
        ResponseKind::CreateAcls(r) => Some(worst(r.results.iter().map(|x| x.error_code))),
        ResponseKind::DeleteAcls(r) => Some(worst(r.filter_results.iter().map(|x| x.error_code))),
        ResponseKind::DescribeUserScramCredentials(r) => Some(r.error_code),
        ResponseKind::AlterUserScramCredentials(r) => {
            Some(worst(r.results.iter().map(|x| x.error_code)))
        }
        _ => None,
    }
}

/// The code Kafka gives for a denial on this resource type.
pub fn denial_code(resource_type: &str) -> i16 {
    match resource_type {
        "topic" => 29,
        "group" => 30,
        "cluster" => 31,
        "transactional_id" => 53,
        _ => 29,
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
