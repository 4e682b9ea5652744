//! Fills in the outcome of audited decisions: the Kafka error code the
//! client actually received for each resource, read from the response.

use std::collections::HashMap;

use kafka_protocol::messages::ResponseKind;

use super::event::{AuditEvent, EventKind};

fn worst(codes: impl Iterator<Item = i16>) -> i16 {
    codes.fold(0, |acc, c| if acc == 0 { c } else { acc })
}

/// (resource name -> error code) for responses keyed by topic or config
/// resource, or a single code for cluster-level responses.
fn codes(resp: &ResponseKind) -> (HashMap<String, i16>, Option<i16>) {
    let mut m = HashMap::new();
    let mut top = None;
    match resp {
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                m.insert(
                    t.name.to_string(),
                    worst(t.partition_responses.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &r.responses {
                m.insert(
                    t.topic.to_string(),
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
            top = Some(r.error_code);
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                m.insert(
                    t.name.to_string(),
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::Metadata(r) => {
            for t in &r.topics {
                if let Some(n) = &t.name {
                    m.insert(n.to_string(), t.error_code);
                }
            }
        }
        ResponseKind::CreateTopics(r) => {
            for t in &r.topics {
                m.insert(t.name.to_string(), t.error_code);
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &r.responses {
                if let Some(n) = &t.name {
                    m.insert(n.to_string(), t.error_code);
                }
            }
        }
        ResponseKind::CreatePartitions(r) => {
            for t in &r.results {
                m.insert(t.name.to_string(), t.error_code);
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for t in &r.topics {
                m.insert(
                    t.name.to_string(),
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for t in &r.results {
                m.insert(t.resource_name.to_string(), t.error_code);
            }
        }
        ResponseKind::IncrementalAlterConfigs(r) => {
            for t in &r.responses {
                m.insert(t.resource_name.to_string(), t.error_code);
            }
        }
        ResponseKind::DescribeCluster(r) => top = Some(r.error_code),
        ResponseKind::DescribeAcls(r) => top = Some(r.error_code),
        ResponseKind::CreateAcls(r) => top = Some(worst(r.results.iter().map(|x| x.error_code))),
        ResponseKind::DeleteAcls(r) => {
            top = Some(worst(r.filter_results.iter().map(|x| x.error_code)))
        }
        ResponseKind::DescribeUserScramCredentials(r) => top = Some(r.error_code),
        ResponseKind::AlterUserScramCredentials(r) => {
            top = Some(worst(r.results.iter().map(|x| x.error_code)))
        }
        _ => {}
    }
    (m, top)
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

pub fn fill(events: &mut [AuditEvent], resp: Option<&ResponseKind>) {
    let (by_name, top) = resp.map(codes).unwrap_or_default();
    for ev in events.iter_mut() {
        if ev.event != Some(EventKind::Authorization) || ev.error_code.is_some() {
            continue;
        }
        let rt = ev.resource_type.clone().unwrap_or_default();
        let from_resp = ev
            .resource_name
            .as_ref()
            .and_then(|n| by_name.get(n).copied())
            .or(if rt == "cluster" { top } else { None });
        ev.error_code = Some(match from_resp {
            Some(c) => c,
            None if ev.is_denial() => denial_code(&rt),
            None => 0,
        });
    }
}
