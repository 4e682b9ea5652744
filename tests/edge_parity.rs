//! Embedded and gateway mode give the same answers and the same audit
//! records for the same request (issue #13, item 5).
//!
//! Broker E (embedded back end) and gateway G (in front of an upstream
//! Portcullis U) have the same users and read the very same ACL file. The
//! same topics exist on both sides (created on E, and through G on U). One
//! authenticated connection per side, as alice, sends the same raw Kafka
//! requests (refused and allowed parts) to both; the answers are compared
//! field by field after normalizing what legitimately differs (node ids,
//! addresses, cluster and topic ids, throttle times, member and producer
//! ids, authorized-operations bitsets: `VARYING` in tests/common/parity.rs),
//! list elements matched by name so order does not matter. Then the audit
//! records each side wrote for each request are compared field by field,
//! without time, seq, prev_hash, address, port, listener and correlation id.
//!
//! Every difference is collected and all are printed before the test fails,
//! so one run shows everything that still differs.

mod common;
#[path = "common/parity.rs"]
mod parity;

use std::fmt::Debug;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use common::wait_for;
use parity::{
    audit_records, diff_answers, diff_audit, records_of, wait_record, Conn, Difference, Sides,
    DEADLINE,
};

/// alice: read/write (so describe) and describe_configs on `allowed-t`,
/// create under `alice-`, read on group `g-ok`, write on transactional id
/// `tx-ok`; nothing on `denied-t`, `g-no`, `tx-no`. bob: read on
/// `denied-t` (so the denied resources are not rule-less).
const ACLS: &str = "allow_everyone_if_no_acl_found: false
rules:
  - {allow: \"User:alice\", operations: [read, write, describe_configs], topic: allowed-t}
  - {allow: \"User:alice\", operations: [create, write], topic_prefix: alice-}
  - {allow: \"User:alice\", operations: [read], group: g-ok}
  - {allow: \"User:alice\", operations: [write], transactional_id: tx-ok}
  - {allow: \"User:bob\", operations: [read], topic: denied-t}
  - {allow: \"User:bob\", operations: [read], group: g-no}
";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn group(v: &str) -> GroupId {
    GroupId(s(v))
}

fn txn(v: &str) -> TransactionalId {
    TransactionalId(s(v))
}

/// One request sent to both sides: where its audit records are.
struct Sent {
    what: String,
    correlation_id: i32,
    emb_port: u16,
    gw_port: u16,
}

struct Parity<'a> {
    sides: &'a Sides,
    emb: Conn,
    gw: Conn,
    correlation_id: i32,
    sent: Vec<Sent>,
    diffs: Vec<Difference>,
}

impl Parity<'_> {
    /// Sends `req` to E and to G (same correlation id) and compares the
    /// answers. A side that closed the connection is logged in again.
    fn same<R: Request>(&mut self, what: &str, version: i16, req: R) -> Option<R::Response>
    where
        R::Response: Debug,
    {
        self.correlation_id += 1;
        let corr = self.correlation_id;
        let (emb_port, gw_port) = (self.emb.port, self.gw.port);
        let e = self.emb.call(corr, version, &req);
        let g = self.gw.call(corr, version, &req);
        if e.is_err() {
            self.emb = self.sides.login_emb("alice");
        }
        if g.is_err() {
            self.gw = self.sides.login_gw("alice");
        }
        diff_answers(what, &e, &g, &mut self.diffs);
        self.sent.push(Sent {
            what: what.to_string(),
            correlation_id: corr,
            emb_port,
            gw_port,
        });
        e.ok()
    }
}

/// Admin creates `allowed-t` (2 partitions) and `denied-t` (1) on one side
/// and waits until Metadata shows them with leaders.
fn create_topics(mut admin: Conn, side: &str) {
    let req = CreateTopicsRequest::default()
        .with_topics(
            [("allowed-t", 2), ("denied-t", 1)]
                .iter()
                .map(|(n, p)| {
                    CreatableTopic::default()
                        .with_name(topic(n))
                        .with_num_partitions(*p)
                        .with_replication_factor(1)
                })
                .collect(),
        )
        .with_timeout_ms(30_000);
    let resp = admin
        .call(10, 7, &req)
        .unwrap_or_else(|e| panic!("{side}: CreateTopics: {e}"));
    for t in &resp.topics {
        assert_eq!(t.error_code, 0, "{side}: create {}: {t:?}", t.name.as_str());
    }
    let mut corr = 10;
    wait_for(&format!("{side}: the topics' leaders"), DEADLINE, || {
        corr += 1;
        let md: MetadataResponse = admin
            .call(
                corr,
                12,
                &MetadataRequest::default().with_topics(Some(
                    ["allowed-t", "denied-t"]
                        .iter()
                        .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                        .collect(),
                )),
            )
            .unwrap_or_else(|e| panic!("{side}: Metadata: {e}"));
        md.topics
            .iter()
            .all(|t| {
                t.error_code == 0
                    && !t.partitions.is_empty()
                    && t.partitions
                        .iter()
                        .all(|p| p.error_code == 0 && p.leader_id.0 >= 0)
            })
            .then_some(())
    });
}

/// One record, the same bytes on both sides.
fn batch(timestamp: i64) -> Bytes {
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"parity")),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [rec].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Partition 0 of each topic, for the requests that name partitions.
fn both_topics() -> [&'static str; 2] {
    ["allowed-t", "denied-t"]
}

fn send_everything(p: &mut Parity<'_>) {
    // --- Metadata
    p.same(
        "Metadata allowed-t + denied-t",
        12,
        MetadataRequest::default()
            .with_topics(Some(
                both_topics()
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic(n))))
                    .collect(),
            ))
            .with_include_topic_authorized_operations(true),
    );
    p.same(
        "Metadata all topics",
        12,
        MetadataRequest::default()
            .with_topics(None)
            .with_include_topic_authorized_operations(true),
    );

    // --- Data
    let records = batch(now_ms());
    p.same(
        "Produce allowed-t + denied-t (acks=1)",
        12,
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(30_000)
            .with_topic_data(
                both_topics()
                    .iter()
                    .map(|n| {
                        TopicProduceData::default()
                            .with_name(topic(n))
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(records.clone()))])
                    })
                    .collect(),
            ),
    );
    p.same(
        "Fetch allowed-t + denied-t",
        12,
        FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(
                both_topics()
                    .iter()
                    .map(|n| {
                        FetchTopic::default()
                            .with_topic(topic(n))
                            .with_partitions(vec![FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20)])
                    })
                    .collect(),
            ),
    );
    p.same(
        "ListOffsets allowed-t + denied-t (latest)",
        10,
        ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_timeout_ms(30_000)
            .with_topics(
                both_topics()
                    .iter()
                    .map(|n| {
                        ListOffsetsTopic::default()
                            .with_name(topic(n))
                            .with_partitions(vec![ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1)])
                    })
                    .collect(),
            ),
    );

    // --- Topic administration
    p.same(
        "CreateTopics denied-new + alice-new (prefix rule)",
        7,
        CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                ["denied-new", "alice-new"]
                    .iter()
                    .map(|n| {
                        CreatableTopic::default()
                            .with_name(topic(n))
                            .with_num_partitions(1)
                            .with_replication_factor(1)
                    })
                    .collect(),
            ),
    );
    p.same(
        "DeleteTopics denied-t",
        6,
        DeleteTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic("denied-t")))
            ]),
    );
    p.same(
        "CreatePartitions denied-t",
        3,
        CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic("denied-t"))
                .with_count(3)]),
    );
    p.same(
        "DescribeConfigs topics denied-t + allowed-t",
        4,
        DescribeConfigsRequest::default().with_resources(
            both_topics()
                .iter()
                .map(|n| {
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(n))
                        .with_configuration_keys(None)
                })
                .collect(),
        ),
    );
    p.same(
        "DescribeConfigs broker 0 (non-super)",
        4,
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(s("0"))
            .with_configuration_keys(None)]),
    );
    p.same(
        "IncrementalAlterConfigs denied-t",
        1,
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("denied-t"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("1000")))]),
        ]),
    );
    let legacy = p.same(
        "AlterConfigs (legacy) allowed-t + denied-t",
        2,
        AlterConfigsRequest::default().with_resources(
            both_topics()
                .iter()
                .map(|n| {
                    alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s(n))
                        .with_configs(vec![alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("1000")))])
                })
                .collect(),
        ),
    );
    // alice has no ALTER_CONFIGS on either topic.
    assert_eq!(
        legacy.map(|r| r.responses.iter().map(|t| t.error_code).collect::<Vec<_>>()),
        Some(vec![29, 29]),
        "legacy AlterConfigs as alice"
    );

    // --- Groups
    p.same(
        "FindCoordinator groups g-no + g-ok",
        4,
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("g-no"), s("g-ok")]),
    );
    p.same(
        "FindCoordinator transaction tx-no",
        4,
        FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![s("tx-no")]),
    );
    let commit = |g: &str, topics: &[&str]| {
        OffsetCommitRequest::default()
            .with_group_id(group(g))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(
                topics
                    .iter()
                    .map(|n| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic(n))
                            .with_partitions(vec![OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1)
                                .with_committed_leader_epoch(-1)])
                    })
                    .collect(),
            )
    };
    p.same(
        "OffsetCommit g-no (allowed-t)",
        9,
        commit("g-no", &["allowed-t"]),
    );
    p.same(
        "OffsetCommit g-ok allowed-t + denied-t",
        9,
        commit("g-ok", &both_topics()),
    );
    p.same(
        "OffsetFetch g-no + g-ok (allowed-t + denied-t)",
        9,
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group("g-no"))
                .with_member_epoch(-1)
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(group("g-ok"))
                .with_member_epoch(-1)
                .with_topics(Some(
                    both_topics()
                        .iter()
                        .map(|n| {
                            OffsetFetchRequestTopics::default()
                                .with_name(topic(n))
                                .with_partition_indexes(vec![0])
                        })
                        .collect(),
                )),
        ]),
    );
    let join = |g: &str| {
        JoinGroupRequest::default()
            .with_group_id(group(g))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(&[
                    0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
                ]))])
    };
    p.same("JoinGroup g-no", 9, join("g-no"));
    p.same("JoinGroup g-ok (no member id yet)", 9, join("g-ok"));
    p.same(
        "DescribeGroups g-no + g-ok",
        5,
        DescribeGroupsRequest::default()
            .with_groups(vec![group("g-no"), group("g-ok")])
            .with_include_authorized_operations(true),
    );
    p.same("ListGroups", 5, ListGroupsRequest::default());
    p.same(
        "DeleteGroups g-no",
        2,
        DeleteGroupsRequest::default().with_groups_names(vec![group("g-no")]),
    );

    // --- Transactions
    let init = |t: &str| {
        InitProducerIdRequest::default()
            .with_transactional_id(Some(txn(t)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1)
    };
    p.same("InitProducerId tx-no", 5, init("tx-no"));
    p.same("InitProducerId tx-ok", 5, init("tx-ok"));
    p.same(
        "AddOffsetsToTxn tx-no",
        3,
        AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn("tx-no"))
            .with_producer_id(1000.into())
            .with_producer_epoch(0)
            .with_group_id(group("g-ok")),
    );
    p.same(
        "EndTxn tx-no",
        3,
        EndTxnRequest::default()
            .with_transactional_id(txn("tx-no"))
            .with_producer_id(1000.into())
            .with_producer_epoch(0)
            .with_committed(false),
    );
    p.same(
        "DescribeTransactions tx-no + tx-ok",
        0,
        DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![txn("tx-no"), txn("tx-ok")]),
    );

    // --- Served at the edge in both modes
    p.same(
        "CreateAcls (non-super)",
        3,
        CreateAclsRequest::default().with_creations(vec![AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(s("denied-t"))
            .with_resource_pattern_type(3)
            .with_principal(s("User:alice"))
            .with_host(s("*"))
            .with_operation(2)
            .with_permission_type(3)]),
    );
    p.same(
        "DescribeUserScramCredentials alice (non-super)",
        0,
        DescribeUserScramCredentialsRequest::default()
            .with_users(Some(vec![UserName::default().with_name(s("alice"))])),
    );
    p.same(
        "DescribeUserScramCredentials all (non-super)",
        0,
        DescribeUserScramCredentialsRequest::default().with_users(None),
    );

    // --- Describing the cluster: DescribeCluster is answered for any
    // logged-in client (as Kafka does); log dirs and client quotas need
    // DESCRIBE / DESCRIBE_CONFIGS on the cluster, which alice lacks.
    let cluster = p.same(
        "DescribeCluster (non-super)",
        1,
        DescribeClusterRequest::default(),
    );
    assert_eq!(
        cluster.map(|r| r.error_code),
        Some(0),
        "DescribeCluster as alice"
    );
    let dirs = p.same(
        "DescribeLogDirs all (non-super)",
        4,
        DescribeLogDirsRequest::default().with_topics(None),
    );
    assert_eq!(
        dirs.map(|r| (r.error_code, r.results.len())),
        Some((31, 0)),
        "DescribeLogDirs as alice: CLUSTER_AUTHORIZATION_FAILED, no log dir"
    );
    let quotas = p.same(
        "DescribeClientQuotas (non-super)",
        1,
        DescribeClientQuotasRequest::default(),
    );
    assert_eq!(
        quotas.map(|r| (r.error_code, r.entries.is_none())),
        Some((31, true)),
        "DescribeClientQuotas as alice: CLUSTER_AUTHORIZATION_FAILED"
    );
}

#[test]
fn embedded_and_gateway_answer_and_audit_the_same() {
    let started = Instant::now();
    let sides = Sides::start("edge-parity", ACLS, &["alice", "bob"]);
    create_topics(sides.login_emb("admin"), "embedded");
    create_topics(sides.login_gw("admin"), "gateway");
    let setup = started.elapsed();

    let mut p = Parity {
        emb: sides.login_emb("alice"),
        gw: sides.login_gw("alice"),
        sides: &sides,
        correlation_id: 100,
        sent: Vec::new(),
        diffs: Vec::new(),
    };
    send_everything(&mut p);

    // A last denial: once both logs hold its record, they hold every
    // earlier one (one writer per broker, records queued before answers).
    p.same(
        "Metadata denied-t (last request)",
        12,
        MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic("denied-t")))
        ])),
    );
    let last = p.sent.last().unwrap();
    for (log, port, side) in [
        (&sides.emb_audit, last.emb_port, "embedded"),
        (&sides.gw_audit, last.gw_port, "gateway"),
    ] {
        assert!(
            wait_record(log, port, last.correlation_id),
            "the {side} audit log never recorded the last denial ({}); {}",
            log.display(),
            sides.logs()
        );
    }
    let (emb_recs, gw_recs) = (
        audit_records(&sides.emb_audit),
        audit_records(&sides.gw_audit),
    );
    for sent in &p.sent {
        diff_audit(
            &sent.what,
            &records_of(&emb_recs, sent.emb_port, sent.correlation_id),
            &records_of(&gw_recs, sent.gw_port, sent.correlation_id),
            &mut p.diffs,
        );
    }

    eprintln!(
        "edge parity: {} requests, {} differences; setup {setup:.1?}, total {:.1?}",
        p.sent.len(),
        p.diffs.len(),
        started.elapsed()
    );
    let report: Vec<String> = p.diffs.iter().map(|d| d.to_string()).collect();
    assert!(
        p.diffs.is_empty(),
        "embedded and gateway mode differ in {} places:\n{}",
        p.diffs.len(),
        report.join("\n"),
    );
}
