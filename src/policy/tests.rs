//! Policy engine tests: the file (errors with line numbers), each rule
//! kind allowing and blocking, scoping, audit vs block, a 1,000-rule set,
//! facts from real record batches, and the hot-reloaded store.

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::file::{self, PolicyFileError};
use super::model::Action;
use super::produce::{FactsError, ProduceFacts};
use super::set::{PolicySet, MAX_AUDITED};
use super::store::PolicyStore;
use crate::log::batch::BatchSpan;
use crate::util::hot_reload::Reloaded;

const ISSUE_EXAMPLE: &str = r#"
rules:
  - name: topic-naming
    action: block            # block | audit
    principals: ["User:*"]
    topics: {prefix: "src-"}
    create_topic:
      name_pattern: '^(src|sink)-[a-z0-9]+(-[a-z0-9]+)*-(avro|json|protobuf|csv)$'
      partitions: {min: 3, max: 64}
      replication_factor: {min: 1, max: 3}
      configs:
        allowed: [retention.ms, retention.bytes, cleanup.policy, max.message.bytes, segment.bytes]
        retention.ms: {min: 86400000}
        retention.bytes: {min: 1024, max: 1099511627776}
        cleanup.policy: {values: [delete, compact]}
        max.message.bytes: {max: 1048588}
        segment.bytes: {min: 1048576}
  - name: critical-producers
    action: block
    topics: {prefix: "src-"}
    produce:
      acks: [all]
      idempotence_required: true
      transactions_required: false
      compression: [zstd, lz4]
      max_record_bytes: 1048576
      required_headers: [trace-id]
  - name: consumers
    action: audit
    consume:
      group_id_pattern: '^[a-z]+-(consumer|app)$'
      client_id_required: true
      client_id_pattern: '^[a-z0-9-]+$'
"#;

fn set(text: &str) -> PolicySet {
    file::parse(text, "policies.yaml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> PolicyFileError {
    match file::parse(text, "policies.yaml") {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e,
    }
}

fn rule_line(e: &PolicyFileError) -> usize {
    match e {
        PolicyFileError::Rule { line, .. } => *line,
        PolicyFileError::Yaml { error, .. } => error.line.unwrap_or(0),
        other => panic!("not a line error: {other}"),
    }
}

// ---- the file ----

#[test]
fn the_issue_example_and_the_shipped_example_parse() {
    let s = set(ISSUE_EXAMPLE);
    assert_eq!(s.len(), 3);
    assert_eq!(s.rules()[0].name, "topic-naming");
    assert_eq!(s.rules()[0].line, 3);
    assert_eq!(s.rules()[1].line, 18);
    assert_eq!(s.rules()[2].line, 28);
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("acl/policies.example.yaml"),
    )
    .unwrap();
    let s = set(&shipped);
    // Every rule kind is shown.
    let m = |f: fn(&crate::policy::model::RuleModel) -> bool| s.rules().iter().any(|r| f(&r.model));
    assert!(m(|r| r
        .create_topic
        .as_ref()
        .is_some_and(|c| c.configs.is_some())));
    assert!(m(|r| r.create_partitions.is_some()));
    assert!(m(|r| r.alter_configs.is_some()));
    assert!(m(|r| r.produce.is_some()));
    assert!(m(|r| r.consume.is_some()));
    assert!(m(|r| r.action == Action::Audit));
    // The naming convention is in it, and works.
    let d = s.create_topic("User:alice", "orders", 3, 1, &[]);
    assert_eq!(d.blocked.unwrap().rule, "topic-naming");
    assert!(s
        .create_topic("User:alice", "src-app-credit-card-avro", 3, 1, &[])
        .is_allowed());
}

#[test]
fn empty_file_and_empty_rules_are_no_policies() {
    assert!(set("").is_empty());
    assert!(set("rules: []\n").is_empty());
    assert!(set("# nothing\n").is_empty());
}

#[test]
fn errors_name_the_line_and_never_the_content() {
    // Unknown key inside a rule: serde's line.
    let e = err("rules:\n  - name: a\n    action: block\n    produce:\n      akcs: [all]\n");
    assert_eq!(rule_line(&e), 5, "{e}");
    // Unknown action.
    let e = err("rules:\n  - name: a\n    action: deny\n    produce: {acks: [all]}\n");
    assert_eq!(rule_line(&e), 3, "{e}");
    // Unknown codec, unknown acks.
    let e = err("rules:\n  - name: a\n    action: block\n    produce: {compression: [brotli]}\n");
    assert_eq!(rule_line(&e), 4, "{e}");
    let e = err("rules:\n  - name: a\n    action: block\n    produce: {acks: [2]}\n");
    assert_eq!(rule_line(&e), 4, "{e}");
    // Bad regex: the rule's line, and the pattern is not quoted.
    let e = err("rules:\n  - name: ok\n    action: audit\n    consume: {client_id_required: true}\n  - name: bad\n    action: block\n    create_topic: {name_pattern: '(unclosed-SECRET'}\n");
    assert_eq!(rule_line(&e), 5, "{e}");
    assert!(!e.to_string().contains("SECRET"), "{e}");
    assert!(e.to_string().contains("name_pattern"), "{e}");
    // min > max.
    let e = err("rules:\n  - name: a\n    action: block\n    create_topic: {partitions: {min: 10, max: 3}}\n");
    assert_eq!(rule_line(&e), 2, "{e}");
    assert!(e.to_string().contains("min is greater than max"), "{e}");
    // Config bound min > max, and a config key that is not a name.
    let e = err("rules:\n  - name: a\n    action: block\n    create_topic:\n      configs:\n        retention.ms: {min: 10, max: 3}\n");
    assert_eq!(rule_line(&e), 2, "{e}");
    let e = err("rules:\n  - name: a\n    action: block\n    create_topic:\n      configs:\n        'BEGIN KEY': {min: 1}\n");
    assert!(!e.to_string().contains("BEGIN"), "{e}");
    // Unknown key inside `configs` bounds keeps its line (no flatten).
    let e = err("rules:\n  - name: a\n    action: block\n    create_topic:\n      configs:\n        retention.ms: {minimum: 1}\n");
    assert_eq!(rule_line(&e), 6, "{e}");
    // Duplicate names, empty principals, two topic scopes, nothing checked.
    let e = err("rules:\n  - {name: a, action: block, consume: {client_id_required: true}}\n  - {name: a, action: block, consume: {client_id_required: true}}\n");
    assert_eq!(rule_line(&e), 3, "{e}");
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = err("rules:\n  - {name: a, action: block, principals: [], consume: {client_id_required: true}}\n");
    assert_eq!(rule_line(&e), 2, "{e}");
    let e = err("rules:\n  - {name: a, action: block, topics: {name: x, prefix: y}, produce: {acks: [all]}}\n");
    assert_eq!(rule_line(&e), 2, "{e}");
    let e = err("rules:\n  - {name: a, action: block}\n");
    assert!(e.to_string().contains("checks nothing"), "{e}");
    let e =
        err("rules:\n  - {name: a, action: block, principals: [alice], produce: {acks: [all]}}\n");
    assert!(e.to_string().contains("TYPE:NAME"), "{e}");
    // Not YAML at all.
    let e = err("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n");
    assert!(!e.to_string().contains("MIIE"), "{e}");
    // Not UTF-8: the line.
    let e = file::parse_bytes(b"rules: []\n# \xff\n", "p").unwrap_err();
    assert!(matches!(e, PolicyFileError::NotUtf8 { line: 2, .. }), "{e}");
}

#[test]
fn hostile_sizes_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.yaml");
    let mut f = std::fs::File::create(&p).unwrap();
    use std::io::Write;
    f.set_len(file::MAX_FILE_BYTES + 1).unwrap();
    f.flush().unwrap();
    assert!(matches!(
        file::load(&p, false),
        Err(PolicyFileError::TooLarge { .. })
    ));
    // A regex that compiles past the limit.
    let e = err("rules:\n  - name: a\n    action: block\n    create_topic: {name_pattern: '\\w{1000}\\w{1000}\\w{1000}'}\n");
    assert!(e.to_string().contains("size limit"), "{e}");
    // More than 64 distinct required headers.
    let keys: Vec<String> = (0..65).map(|i| format!("h{i}")).collect();
    let text = format!(
        "rules:\n  - name: a\n    action: block\n    produce: {{required_headers: [{}]}}\n",
        keys.join(", ")
    );
    assert!(err(&text).to_string().contains("64"));
}

// ---- topic creation, config changes, partitions ----

#[test]
fn create_topic_naming_partitions_replication_and_configs() {
    let s = set(r#"
rules:
  - name: topic-naming
    action: block
    create_topic:
      name_pattern: '^(src|sink)-[a-z0-9]+(-[a-z0-9]+)*-(avro|json|protobuf|csv)$'
      partitions: {min: 3, max: 64}
      replication_factor: {min: 2, max: 3}
      configs:
        allowed: [retention.ms, cleanup.policy]
        retention.ms: {min: 86400000}
        cleanup.policy: {values: [delete, compact]}
"#);
    let ok = "src-app-credit-card-avro";
    assert!(s.create_topic("User:a", ok, 3, 2, &[]).is_clean());
    let d = s.create_topic("User:a", "orders", 3, 2, &[]);
    let v = d.blocked.unwrap();
    assert_eq!(v.rule, "topic-naming");
    assert_eq!(v.action, Action::Block);
    assert!(
        v.message
            .starts_with("policy topic-naming: topic name orders does not match ^(src|sink)"),
        "{}",
        v.message
    );
    assert!(s
        .create_topic("User:a", ok, 1, 2, &[])
        .blocked
        .unwrap()
        .message
        .contains("1 partitions"));
    assert!(!s.create_topic("User:a", ok, 65, 2, &[]).is_allowed());
    assert!(!s.create_topic("User:a", ok, 3, 1, &[]).is_allowed());
    // -1: the broker's default, not known here: not checked.
    assert!(s.create_topic("User:a", ok, -1, -1, &[]).is_allowed());
    let good = [
        ("retention.ms", Some("86400000")),
        ("cleanup.policy", Some("compact,delete")),
    ];
    assert!(s.create_topic("User:a", ok, 3, 2, &good).is_allowed());
    let short = [("retention.ms", Some("1000"))];
    let m = s
        .create_topic("User:a", ok, 3, 2, &short)
        .blocked
        .unwrap()
        .message;
    assert!(m.contains("retention.ms=1000"), "{m}");
    let nan = [("retention.ms", Some("soon"))];
    assert!(!s.create_topic("User:a", ok, 3, 2, &nan).is_allowed());
    let bad_value = [("cleanup.policy", Some("delete,forever"))];
    assert!(!s.create_topic("User:a", ok, 3, 2, &bad_value).is_allowed());
    let not_allowed = [("segment.ms", Some("1"))];
    let m = s
        .create_topic("User:a", ok, 3, 2, &not_allowed)
        .blocked
        .unwrap()
        .message;
    assert!(m.contains("segment.ms is not allowed"), "{m}");

    // Config changes: the same bounds; deletions allowed.
    assert!(s
        .alter_topic_configs("User:a", "anything", &good)
        .is_allowed());
    assert!(!s
        .alter_topic_configs("User:a", "anything", &short)
        .is_allowed());
    assert!(s
        .alter_topic_configs("User:a", "anything", &[("retention.ms", None)])
        .is_allowed());
    assert!(s
        .alter_topic_configs("User:a", "anything", &[("segment.ms", None)])
        .is_allowed());

    // CreatePartitions: create_topic.partitions when there is no separate bound.
    assert!(s.create_partitions("User:a", "x", 64).is_allowed());
    assert!(!s.create_partitions("User:a", "x", 65).is_allowed());
}

#[test]
fn create_partitions_and_alter_configs_sections() {
    let s = set(r#"
rules:
  - name: growth
    action: block
    topics: {name: orders}
    create_topic: {partitions: {min: 3, max: 8}}
    create_partitions: {max: 100}
  - name: no-compaction
    action: block
    alter_configs:
      cleanup.policy: {values: [delete]}
"#);
    assert!(s.create_partitions("User:a", "orders", 100).is_allowed());
    assert!(!s.create_partitions("User:a", "orders", 101).is_allowed());
    assert!(s.create_partitions("User:a", "other", 1000).is_allowed());
    // alter_configs bounds changes, not creation.
    let compact = [("cleanup.policy", Some("compact"))];
    assert!(s.create_topic("User:a", "t", 3, 1, &compact).is_allowed());
    let d = s.alter_topic_configs("User:a", "t", &compact);
    assert_eq!(d.blocked.unwrap().rule, "no-compaction");
}

// ---- scoping, audit vs block ----

#[test]
fn principal_and_topic_scopes() {
    let s = set(r#"
rules:
  - name: alice-only
    action: block
    principals: ["User:alice"]
    produce: {acks: [all]}
  - name: team
    action: block
    principals: ["User:team-*"]
    topics: {prefix: "src-"}
    produce: {acks: [all]}
  - name: exact-topic
    action: block
    topics: {name: payments}
    produce: {acks: [all, 1]}
  - name: pattern-topic
    action: block
    topics: {pattern: '^[a-z]+-avro$'}
    produce: {acks: [all]}
"#);
    let f = ProduceFacts::default();
    assert!(!s.produce("User:alice", "x", 1, None, &f).is_allowed());
    assert!(s.produce("User:alice", "x", -1, None, &f).is_allowed());
    assert!(s.produce("User:bob", "x", 1, None, &f).is_allowed());
    assert!(!s.produce("User:team-a", "src-x", 1, None, &f).is_allowed());
    assert!(s.produce("User:team-a", "sink-x", 1, None, &f).is_allowed());
    assert!(s.produce("User:teamb", "src-x", 1, None, &f).is_allowed());
    assert!(s.produce("User:bob", "payments", 1, None, &f).is_allowed());
    assert_eq!(
        s.produce("User:bob", "payments", 0, None, &f)
            .blocked
            .unwrap()
            .rule,
        "exact-topic"
    );
    assert!(!s
        .produce("User:bob", "orders-avro", 0, None, &f)
        .is_allowed());
    assert!(s
        .produce("User:bob", "orders-json", 0, None, &f)
        .is_allowed());
    assert!(!s.produce_needs("User:bob", "orders-json").applies);
    assert!(s.produce_needs("User:bob", "orders-avro").applies);
}

#[test]
fn first_block_wins_and_audits_are_all_collected() {
    let mut text = String::from("rules:\n");
    for i in 0..3 {
        text += &format!("  - {{name: audit-{i}, action: audit, produce: {{acks: [all]}}}}\n");
    }
    text += "  - {name: block-a, action: block, topics: {prefix: t}, produce: {acks: [all]}}\n";
    text += "  - {name: block-b, action: block, produce: {acks: [all]}}\n";
    for i in 3..40 {
        // Odd ones scoped by prefix: visited after every unscoped rule.
        let scope = if i % 2 == 1 {
            ", topics: {prefix: to}"
        } else {
            ""
        };
        text +=
            &format!("  - {{name: audit-{i}, action: audit{scope}, produce: {{acks: [all]}}}}\n");
    }
    let s = set(&text);
    let d = s.produce("User:x", "topic", 1, None, &ProduceFacts::default());
    // block-a comes first in the file, though the index visits unscoped
    // rules before prefixed ones.
    assert_eq!(d.blocked.as_ref().unwrap().rule, "block-a");
    assert_eq!(d.audited.len(), MAX_AUDITED);
    assert_eq!(d.audited[0].rule, "audit-0");
    // The first sixteen in file order, though prefixed and unscoped rules
    // are visited in another order.
    let names: Vec<&str> = d.audited.iter().map(|v| v.rule.as_str()).collect();
    let want: Vec<String> = (0..MAX_AUDITED).map(|i| format!("audit-{i}")).collect();
    assert_eq!(names, want);
    assert!(d.audited.iter().all(|v| v.action == Action::Audit));
    // Audit-only: allowed, violations kept.
    let s = set("rules:\n  - {name: soft, action: audit, produce: {acks: [all]}}\n");
    let d = s.produce("User:x", "t", 0, None, &ProduceFacts::default());
    assert!(d.is_allowed());
    assert_eq!(d.audited.len(), 1);
    assert!(d.audited[0]
        .message
        .starts_with("policy soft: acks=0 is not allowed"));
}

#[test]
fn a_rule_naming_several_matching_principals_is_reported_once() {
    let s = set("rules:\n  - {name: r, action: audit, principals: [\"User:alice\", \"User:al*\"], produce: {acks: [all]}}\n");
    let d = s.produce("User:alice", "t", 1, None, &ProduceFacts::default());
    assert_eq!(d.audited.len(), 1);
}

#[test]
fn a_thousand_rules_evaluate_correctly() {
    let mut text = String::from("rules:\n");
    for i in 0..1000 {
        text += &match i % 4 {
            0 => format!("  - {{name: r{i}, action: block, principals: [\"User:u{i}\"], topics: {{prefix: \"t{i}-\"}}, produce: {{acks: [all]}}}}\n"),
            1 => format!("  - {{name: r{i}, action: block, topics: {{name: \"n{i}\"}}, produce: {{idempotence_required: true}}, create_topic: {{partitions: {{min: 3}}}}}}\n"),
            2 => format!("  - {{name: r{i}, action: audit, principals: [\"User:team{i}-*\"], produce: {{acks: [all]}}}}\n"),
            _ => format!("  - {{name: r{i}, action: block, topics: {{prefix: \"p{i}-\"}}, create_topic: {{name_pattern: '^p{i}-ok$'}}}}\n"),
        };
    }
    let s = set(&text);
    assert_eq!(s.len(), 1000);
    let f = ProduceFacts::default();
    // Untouched traffic: no rule applies.
    assert!(!s.produce_needs("User:nobody", "orders").applies);
    assert!(s.produce("User:nobody", "orders", 1, None, &f).is_clean());
    // Literal principal + prefix topic.
    assert_eq!(
        s.produce("User:u400", "t400-x", 1, None, &f)
            .blocked
            .unwrap()
            .rule,
        "r400"
    );
    assert!(s.produce("User:u400", "t401-x", 1, None, &f).is_clean());
    assert!(s.produce("User:u401", "t400-x", 1, None, &f).is_clean());
    // Literal topic.
    let not_idem = ProduceFacts {
        non_idempotent: true,
        ..Default::default()
    };
    assert_eq!(
        s.produce("User:x", "n501", 1, None, &not_idem)
            .blocked
            .unwrap()
            .rule,
        "r501"
    );
    assert!(s.produce_needs("User:x", "n501").batches);
    assert!(!s.create_topic("User:x", "n501", 1, 1, &[]).is_allowed());
    // Principal prefix.
    let d = s.produce("User:team602-z", "any", 1, None, &f);
    assert!(d.is_allowed());
    assert_eq!(d.audited[0].rule, "r602");
    // Topic prefix with a name pattern.
    assert!(s.create_topic("User:x", "p703-ok", 3, 1, &[]).is_allowed());
    assert_eq!(
        s.create_topic("User:x", "p703-no", 3, 1, &[])
            .blocked
            .unwrap()
            .rule,
        "r703"
    );
}

// ---- produce ----

fn record(offset: i64, value: &[u8], headers: &[&str]) -> Record {
    let mut h = IndexMap::new();
    for k in headers {
        h.insert(
            StrBytes::from_string(k.to_string()),
            Some(Bytes::from_static(b"v")),
        );
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::copy_from_slice(value)),
        headers: h,
    }
}

/// A v2 batch as a client encodes it, then in `codec` through the log
/// engine's recompression.
fn batch(records: &[Record], codec: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    // The encoder starts a new batch where producer fields change.
    let (found, end) = crate::log::batch::whole_batches(&buf);
    assert_eq!(end, buf.len());
    let spans: Vec<BatchSpan> = found
        .into_iter()
        .map(|(start, header)| BatchSpan { start, header })
        .collect();
    crate::log::recompress::to_codec(&buf, &spans, codec)
        .unwrap()
        .0
}

#[test]
fn facts_from_real_batches() {
    let s = set(ISSUE_EXAMPLE);
    let needs = s.produce_needs("User:a", "src-x");
    assert!(needs.applies && needs.batches && needs.record_sizes && needs.header_mask == 1);
    let mut idem: Vec<Record> = (0..3)
        .map(|i| record(i, b"hello", &["trace-id", "other"]))
        .collect();
    for r in &mut idem {
        r.producer_id = 7;
        r.producer_epoch = 0;
        r.sequence = r.offset as i32;
    }
    for codec in [4i16, 3] {
        let b = batch(&idem, codec);
        let f = ProduceFacts::from_records(&b, &needs).unwrap();
        assert_eq!(f.batches, 1);
        assert_eq!(f.records, 3);
        assert_eq!(f.codecs, 1 << codec);
        assert!(!f.non_idempotent);
        assert!(f.non_transactional);
        assert_eq!(f.max_value_bytes, 5);
        assert_eq!(f.missing_headers, 0);
        assert!(s.produce("User:a", "src-x", -1, None, &f).is_allowed());
        let m = s
            .produce("User:a", "src-x", 1, None, &f)
            .blocked
            .unwrap()
            .message;
        assert_eq!(
            m,
            "policy critical-producers: acks=1 is not allowed (allowed: all)"
        );
    }
    // gzip: not an allowed codec.
    let f = ProduceFacts::from_records(&batch(&idem, 1), &needs).unwrap();
    let m = s
        .produce("User:a", "src-x", -1, None, &f)
        .blocked
        .unwrap()
        .message;
    assert!(
        m.contains("compression gzip is not allowed (allowed: lz4, zstd)"),
        "{m}"
    );
    // Not idempotent.
    let plain: Vec<Record> = (0..2).map(|i| record(i, b"x", &["trace-id"])).collect();
    let f = ProduceFacts::from_records(&batch(&plain, 4), &needs).unwrap();
    let m = s
        .produce("User:a", "src-x", -1, None, &f)
        .blocked
        .unwrap()
        .message;
    assert!(m.contains("not idempotent"), "{m}");
    // A record without the header, in the second batch of two.
    let mut two = batch(&idem, 4);
    let mut missing = idem.clone();
    missing[1] = record(1, b"x", &["other"]);
    missing[1].producer_id = 7;
    missing[1].producer_epoch = 0;
    missing[1].sequence = 1;
    two.extend(batch(&missing, 4));
    let f = ProduceFacts::from_records(&two, &needs).unwrap();
    assert_eq!(f.batches, 2);
    assert_eq!(f.missing_headers, 1);
    let m = s
        .produce("User:a", "src-x", -1, None, &f)
        .blocked
        .unwrap()
        .message;
    assert!(m.contains("lacks the required header trace-id"), "{m}");
    // Too large a value.
    let mut big = vec![record(0, &vec![b'x'; 1_048_577], &["trace-id"])];
    big[0].producer_id = 7;
    let f = ProduceFacts::from_records(&batch(&big, 4), &needs).unwrap();
    assert_eq!(f.max_value_bytes, 1_048_577);
    assert!(s
        .produce("User:a", "src-x", -1, None, &f)
        .blocked
        .unwrap()
        .message
        .contains("exceeds"));
    // Merged partitions keep the worst of each.
    let mut merged = ProduceFacts::from_records(&batch(&idem, 4), &needs).unwrap();
    merged.merge(&ProduceFacts::from_records(&batch(&plain, 4), &needs).unwrap());
    assert!(merged.non_idempotent);
    // Needs nothing: the bytes are not even looked at.
    let none = s.produce_needs("User:a", "elsewhere");
    assert!(!none.applies);
    assert_eq!(
        ProduceFacts::from_records(b"garbage", &none).unwrap(),
        ProduceFacts::default()
    );
}

#[test]
fn transactions_required() {
    let s = set("rules:\n  - {name: tx, action: block, produce: {transactions_required: true}}\n");
    let needs = s.produce_needs("User:a", "t");
    assert!(needs.batches && !needs.records());
    let mut recs = vec![record(0, b"v", &[])];
    recs[0].producer_id = 3;
    recs[0].transactional = true;
    let f = ProduceFacts::from_records(&batch(&recs, 0), &needs).unwrap();
    assert!(!f.non_transactional);
    assert!(s.produce("User:a", "t", -1, Some("tx-1"), &f).is_allowed());
    assert!(!s.produce("User:a", "t", -1, None, &f).is_allowed());
}

#[test]
fn hostile_record_bytes_are_refused_not_trusted() {
    let s = set(ISSUE_EXAMPLE);
    let needs = s.produce_needs("User:a", "src-x");
    let b = batch(&[record(0, b"hello", &["trace-id"])], 0);
    // Truncated anywhere: an error, never a panic.
    for cut in 0..b.len() {
        let _ = ProduceFacts::from_records(&b[..cut], &needs);
    }
    assert_eq!(
        ProduceFacts::from_records(&b[..30], &needs),
        Err(FactsError::Truncated)
    );
    // A record length past the batch.
    let mut bad = b.clone();
    bad[61] = 0x7e;
    assert!(ProduceFacts::from_records(&bad, &needs).is_err());
    // Old magic.
    let mut old = b.clone();
    old[16] = 1;
    assert_eq!(
        ProduceFacts::from_records(&old, &needs),
        Err(FactsError::Magic(1))
    );
    // Every single-byte corruption of the records is handled.
    for i in 61..b.len() {
        let mut c = b.clone();
        c[i] ^= 0xff;
        let _ = ProduceFacts::from_records(&c, &needs);
    }
}

// ---- consume ----

#[test]
fn consumer_group_and_client_ids() {
    let s = set(ISSUE_EXAMPLE);
    assert!(s
        .consume("User:a", Some("billing-app"), Some("billing-1"))
        .is_clean());
    let d = s.consume("User:a", Some("Billing"), Some("billing-1"));
    assert!(d.is_allowed());
    assert!(
        d.audited[0]
            .message
            .contains("group id Billing does not match"),
        "{:?}",
        d
    );
    assert!(s.consume("User:a", None, Some("x")).is_clean());
    assert!(!s.consume("User:a", None, None).is_clean());
    assert!(!s.consume("User:a", None, Some("")).is_clean());
    assert!(!s.consume("User:a", None, Some("Bad Id")).is_clean());
    let e = err("rules:\n  - {name: c, action: block, topics: {prefix: x}, consume: {client_id_required: true}}\n");
    assert!(e.to_string().contains("consume"), "{e}");
}

// ---- the store ----

#[test]
fn store_keeps_the_last_good_version_and_missing_follows_explicitness() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    // Missing at the default path: no policies; explicitly: an error.
    let store = PolicyStore::open(&path, true).unwrap();
    assert!(store.snapshot().is_empty());
    assert!(matches!(
        PolicyStore::open(&path, false),
        Err(PolicyFileError::Missing { .. })
    ));
    std::fs::write(
        &path,
        "rules:\n  - {name: a, action: block, produce: {acks: [all]}}\n",
    )
    .unwrap();
    assert!(matches!(
        store.reload(),
        Ok(Reloaded::Applied { entries: 1 })
    ));
    assert!(matches!(store.reload(), Ok(Reloaded::Unchanged)));
    let held = store.snapshot();
    // A broken version: refused with its line; the rules in force stay.
    std::fs::write(
        &path,
        "rules:\n  - {name: a, action: block, produce: {acks: [all]}}\n  - {name: b, action: blok, produce: {acks: [all]}}\n",
    )
    .unwrap();
    let e = store.reload().unwrap_err();
    assert!(e.to_string().contains("line 3"), "{e}");
    assert_eq!(store.version().generation, 2);
    assert_eq!(store.snapshot().len(), 1);
    // Empty: a write in progress.
    std::fs::write(&path, "").unwrap();
    assert!(matches!(store.reload(), Err(PolicyFileError::Empty { .. })));
    std::fs::write(&path, "rules: []\n").unwrap();
    assert!(matches!(
        store.reload(),
        Ok(Reloaded::Applied { entries: 0 })
    ));
    // A snapshot taken before stays whole.
    assert_eq!(held.len(), 1);
    // An explicitly configured file that disappears is refused.
    let strict = PolicyStore::open(&path, false).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        strict.reload(),
        Err(PolicyFileError::Missing { .. })
    ));
    assert!(matches!(
        store.reload(),
        Ok(Reloaded::Applied { entries: 0 })
    ));
}

#[test]
fn the_config_says_whether_the_path_was_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let listeners =
        "listeners:\n  - {name: p, address: \"127.0.0.1:9092\", security_protocol: PLAINTEXT}\n";
    let cfg = crate::config::Config::parse(listeners).unwrap();
    assert_eq!(
        cfg.policy.file,
        std::path::PathBuf::from("acl/policies.yaml")
    );
    assert!(!cfg.is_explicit("policy.file"));
    let missing = dir.path().join("absent.yaml");
    let text = format!("{listeners}policy:\n  file: {}\n", missing.display());
    let cfg = crate::config::Config::parse(&text).unwrap();
    assert!(cfg.is_explicit("policy.file"));
    assert!(matches!(
        PolicyStore::from_config(&cfg),
        Err(PolicyFileError::Missing { .. })
    ));
    assert!(crate::config::Config::parse(&format!("{listeners}policy:\n  fiel: x\n")).is_err());
}

#[test]
fn the_watcher_applies_and_acknowledges_and_reports_failures() {
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policies.yaml");
    std::fs::write(&path, "rules: []\n").unwrap();
    let store = PolicyStore::open(&path, false).unwrap();
    let reports: Arc<Mutex<Vec<String>>> = Arc::default();
    let r = reports.clone();
    let reporter: crate::util::hot_reload::Reporter = Arc::new(move |rep| {
        if let crate::util::hot_reload::ReloadReport::Failed { error, .. } = rep {
            r.lock().unwrap().push(error.to_string());
        }
    });
    let _h = crate::util::hot_reload::spawn(&store, Some(reporter), false).unwrap();
    std::fs::write(
        &path,
        "rules:\n  - {name: a, action: audit, produce: {acks: [all]}}\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.snapshot().len() != 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.snapshot().len(), 1);
    std::fs::write(
        &path,
        "rules:\n  - {name: a, action: audit, produce: {akcs: [all]}}\n",
    )
    .unwrap();
    while reports.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let first = reports.lock().unwrap().first().cloned().unwrap();
    assert!(first.contains("line 2"), "{first}");
    assert_eq!(store.snapshot().len(), 1);
    assert!(crate::util::hot_reload::ack_path_for(&path).exists());
}

/// Cost of the produce path per request, 1,000 rules vs none (run with
/// `cargo test --release --lib policy::tests::timing -- --ignored
/// --nocapture`; debug builds give an upper bound).
#[test]
#[ignore]
fn timing_produce_path_with_a_thousand_rules() {
    let mut text = String::from("rules:\n");
    for i in 0..1000 {
        text += &format!("  - {{name: r{i}, action: block, principals: [\"User:u{i}\", \"User:team{i}-*\"], topics: {{prefix: \"t{i}-\"}}, produce: {{acks: [all], idempotence_required: true}}}}\n");
    }
    let full = set(&text);
    let empty = PolicySet::default();
    let facts = ProduceFacts::default();
    for (label, s) in [("none", &empty), ("1000 rules", &full)] {
        let n = 200_000u32;
        let start = std::time::Instant::now();
        let mut applied = 0u32;
        for i in 0..n {
            let topic = if i % 2 == 0 { "orders" } else { "t500-orders" };
            let needs = s.produce_needs("User:alice", std::hint::black_box(topic));
            if needs.applies {
                applied += 1;
                let d = s.produce("User:alice", topic, -1, None, &facts);
                assert!(d.is_clean());
            }
        }
        let per = start.elapsed() / n;
        eprintln!("{label}: {per:?} per topic-produce check ({applied} applied)");
    }
}
