//! Policies at the edge (issue #18) with real clients, in embedded and in
//! gateway mode: a naming rule refuses `orders` with POLICY_VIOLATION and a
//! message naming the rule while `src-app-credit-card-avro` is created; a
//! producer with acks=1 is refused where a rule requires acks=all and
//! idempotence while an idempotent acks=all producer succeeds; an
//! audit-action rule lets the request through and records the violation;
//! a broken policy file keeps the rules in force.

mod common;

use std::time::Duration;

use common::{log_tail, scratch, wait_for, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

const ACLS: &str = "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n  - {allow: \"User:*\", operations: [create], cluster: kafka-cluster}\n  - {allow: \"User:*\", operations: [idempotent_write], cluster: kafka-cluster}\n";

/// The issue's file, plus an audit-only consumer rule.
const POLICIES: &str = r#"rules:
  - name: topic-naming
    action: block
    principals: ["User:*"]
    create_topic:
      name_pattern: '^(src|sink)-[a-z0-9]+(-[a-z0-9]+)*-(avro|json|protobuf|csv)$'
      partitions: {min: 3, max: 64}
      configs:
        retention.ms: {min: 86400000}
  - name: critical-producers
    action: block
    topics: {prefix: "src-"}
    produce:
      acks: [all]
      idempotence_required: true
  - name: consumer-groups
    action: audit
    consume:
      group_id_pattern: '^[a-z]+-app$'
"#;

const DEADLINE: Duration = Duration::from_secs(60);
const PASSWORD: &str = "alice-Policy-Secret-3";

struct Setup {
    broker: Broker,
    // The upstream of a gateway, dropped after it.
    _up: Option<Broker>,
    _dir: tempfile::TempDir,
}

fn write_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let acl = dir.join("acls.yaml");
    std::fs::write(&acl, ACLS).unwrap();
    let policies = dir.join("policies.yaml");
    std::fs::write(&policies, POLICIES).unwrap();
    (acl, policies)
}

fn start(name: &str, gateway: bool) -> Setup {
    let dir = scratch(name);
    let (acl, policies) = write_files(&dir.path().join("edge"));
    let mut extra = format!(
        "acl:\n  file: {}\npolicy:\n  file: {}\naudit:\n  file: {}\n  allow_level: admin\n",
        acl.display(),
        policies.display(),
        dir.path().join("edge/audit/audit.log").display()
    );
    let up = gateway.then(|| {
        let up_dir = dir.path().join("up");
        std::fs::create_dir_all(&up_dir).unwrap();
        let up_acl = up_dir.join("acls.yaml");
        std::fs::write(
            &up_acl,
            "rules:\n  - {allow: \"User:ANONYMOUS\", operations: [all], topic: \"*\"}\n  - {allow: \"User:ANONYMOUS\", operations: [all], group: \"*\"}\n  - {allow: \"User:ANONYMOUS\", operations: [create, describe, idempotent_write], cluster: kafka-cluster}\n",
        )
        .unwrap();
        let up = Broker::start(&up_dir, &format!("acl:\n  file: {}\n", up_acl.display()));
        extra.push_str(&format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{}\"]\n  security_protocol: PLAINTEXT\n",
            up.addr("PLAINTEXT")
        ));
        up
    });
    let broker = Broker::start_secure(&dir.path().join("edge"), &extra);
    broker.add_user("alice", PASSWORD);
    broker.wait_users_loaded(2, DEADLINE);
    Setup {
        broker,
        _up: up,
        _dir: dir,
    }
}

fn config(broker: &Broker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "alice")
        .set("sasl.password", PASSWORD)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap())
        .set("log_level", "3");
    c
}

/// Creates one topic with librdkafka's admin client; its error code on
/// failure.
fn create(
    rt: &tokio::runtime::Runtime,
    broker: &Broker,
    name: &str,
    partitions: i32,
) -> Result<(), RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = config(broker).create().unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ))
        .unwrap();
    match res.into_iter().next().unwrap() {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(code),
    }
}

/// Our own client, logged in as alice.
async fn client(broker: &Broker) -> portcullis::client::Connection {
    let tls = portcullis::client::tls_connector(&broker.ca_file(), None).unwrap();
    let mut conn = portcullis::client::Connector::tls(tls)
        .with_server_name(Some("localhost".into()))
        .connect(broker.addr("SASL_SSL"))
        .await
        .unwrap();
    conn.api_versions().await.unwrap();
    conn.login_scram("alice", PASSWORD, None).await.unwrap();
    conn
}

fn audit_lines(broker: &Broker) -> Vec<String> {
    common::audit_files::raw_lines(&broker.dir.join("audit/audit.log"))
}

fn policies_hold(s: &Setup) {
    let broker = &s.broker;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let context = || log_tail(broker, 30);

    // Naming: `orders` refused with POLICY_VIOLATION, the convention's name
    // created; too few partitions refused too.
    let refused = create(&rt, broker, "orders", 3);
    assert_eq!(
        refused.err(),
        Some(RDKafkaErrorCode::PolicyViolation),
        "{refused:?}\n{}",
        context()
    );
    // The client gets the rule's name in the error message too.
    let answer = rt.block_on(async {
        let mut conn = client(broker).await;
        let req = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("orders")))
                .with_num_partitions(3)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000);
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, 7, &req).await.unwrap();
        // The broker's default partition count (-1): embedded checks its
        // default (1, below the minimum of 3); a gateway does not know the
        // upstream's and refuses while a bound applies.
        let defaulted = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_static_str(
                    "src-app-defaults-avro",
                )))
                .with_num_partitions(-1)
                .with_replication_factor(-1)])
            .with_timeout_ms(10_000);
        let d: CreateTopicsResponse = conn
            .call(ApiKey::CreateTopics, 7, &defaulted)
            .await
            .unwrap();
        assert_eq!(d.topics[0].error_code, 44, "{d:?}");
        resp.topics.into_iter().next().unwrap()
    });
    assert_eq!(answer.error_code, 44, "{answer:?}");
    let text = answer.error_message.as_deref().unwrap_or_default();
    assert!(text.contains("topic-naming"), "{text}");
    let msg = wait_for("the refusal audited with its rule", DEADLINE, || {
        audit_lines(broker)
            .into_iter()
            .find(|l| l.contains("policy_violation") && l.contains("orders"))
    });
    assert!(msg.contains("topic-naming"), "{msg}");
    assert!(msg.contains("\"blocked\""), "{msg}");
    let few = create(&rt, broker, "src-app-few-avro", 1);
    assert_eq!(few.err(), Some(RDKafkaErrorCode::PolicyViolation));
    create(&rt, broker, "src-app-credit-card-avro", 3)
        .unwrap_or_else(|e| panic!("the convention's name refused: {e:?}\n{}", context()));

    // Config changes (both APIs) and new partitions meet the same bounds.
    // (librdkafka's alter_configs does not report per-resource errors, so
    // the config changes go through our own client.)
    rt.block_on(async {
        use kafka_protocol::messages::alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use kafka_protocol::messages::incremental_alter_configs_request as inc;
        use kafka_protocol::messages::{
            AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
            IncrementalAlterConfigsResponse,
        };
        let mut conn = client(broker).await;
        let topic = || StrBytes::from_static_str("src-app-credit-card-avro");
        let legacy = |ms: &'static str| {
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(topic())
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_value(Some(StrBytes::from_static_str(ms)))])])
        };
        let r: AlterConfigsResponse = conn
            .call(ApiKey::AlterConfigs, 2, &legacy("60000"))
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, 44, "{r:?}");
        let why = r.responses[0].error_message.as_deref().unwrap_or_default();
        assert!(why.contains("topic-naming"), "{why}");
        let r: AlterConfigsResponse = conn
            .call(ApiKey::AlterConfigs, 2, &legacy("172800000"))
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, 0, "{r:?}");
        let incremental = IncrementalAlterConfigsRequest::default().with_resources(vec![
            inc::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(topic())
                .with_configs(vec![inc::AlterableConfig::default()
                    .with_name(StrBytes::from_static_str("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_static_str("1000")))]),
        ]);
        let r: IncrementalAlterConfigsResponse = conn
            .call(ApiKey::IncrementalAlterConfigs, 1, &incremental)
            .await
            .unwrap();
        assert_eq!(r.responses[0].error_code, 44, "{r:?}");
    });
    {
        use rdkafka::admin::NewPartitions;
        let admin: AdminClient<DefaultClientContext> = config(broker).create().unwrap();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        let more = NewPartitions::new("src-app-credit-card-avro", 100);
        let res = rt
            .block_on(admin.create_partitions(&[more], &opts))
            .unwrap();
        assert_eq!(
            res[0].as_ref().err().map(|e| e.1),
            Some(RDKafkaErrorCode::PolicyViolation),
            "100 partitions allowed: {res:?}"
        );
    }

    // Produce: acks=1 refused by critical-producers, idempotent acks=all in.
    let weak: FutureProducer = config(broker)
        .set("acks", "1")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    // Twenty refused requests, one after the other: each refused, and the
    // audit keeps one record for them (repeats are counted, not written).
    for _ in 0..20 {
        let sent = rt.block_on(
            weak.send(
                FutureRecord::to("src-app-credit-card-avro")
                    .key("k")
                    .payload("weak"),
                Duration::from_secs(20),
            ),
        );
        match sent {
            Err((KafkaError::MessageProduction(code), _)) => {
                assert_eq!(code, RDKafkaErrorCode::PolicyViolation, "{}", context())
            }
            other => panic!("acks=1 produce not refused: {other:?}\n{}", context()),
        }
    }
    let strong: FutureProducer = config(broker)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..10 {
        rt.block_on(
            strong.send(
                FutureRecord::to("src-app-credit-card-avro")
                    .key("k")
                    .payload(&format!("v{i}")),
                Duration::from_secs(30),
            ),
        )
        .unwrap_or_else(|(e, _)| panic!("idempotent acks=all refused: {e}\n{}", context()));
    }
    let line = wait_for("the produce refusal audited", DEADLINE, || {
        audit_lines(broker)
            .into_iter()
            .find(|l| l.contains("policy_violation") && l.contains("critical-producers"))
    });
    assert!(line.contains("src-app-credit-card-avro"), "{line}");
    let full = audit_lines(broker)
        .into_iter()
        .filter(|l| l.contains("critical-producers") && !l.contains("\"aggregated\""))
        .count();
    assert_eq!(full, 1, "20 refused produces wrote {full} full records");

    // An audit-action rule lets a group through and records the violation.
    let consumer: BaseConsumer = config(broker)
        .set("group.id", "Reporting_Team")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["src-app-credit-card-avro"]).unwrap();
    let mut got = 0;
    let started = std::time::Instant::now();
    while got < 10 && started.elapsed() < DEADLINE {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.unwrap_or_else(|e| {
                panic!("audit-only rule blocked the consumer: {e}\n{}", context())
            });
            got += 1;
        }
    }
    assert_eq!(got, 10, "{}", context());
    let line = wait_for("the audit-only violation recorded", DEADLINE, || {
        audit_lines(broker)
            .into_iter()
            .find(|l| l.contains("policy_violation") && l.contains("consumer-groups"))
    });
    assert!(line.contains("\"audited\""), "{line}");
    assert!(line.contains("Reporting_Team"), "{line}");
    drop(consumer);

    // A broken file is refused (its line named) and the rules in force stay.
    let policy_file = broker.dir.join("policies.yaml");
    std::fs::write(
        &policy_file,
        "rules:\n  - name: x\n    action: block\n    create_topic:\n      name_pattern: '([unclosed'\n",
    )
    .unwrap();
    let refusal = wait_for("the broken file refused", DEADLINE, || {
        audit_lines(broker).into_iter().find(|l| {
            l.contains("policies.yaml") && l.contains("\"refused\"")
                || l.contains("policies.yaml") && l.contains("line 5")
        })
    });
    assert!(refusal.contains("line"), "{refusal}");
    let still = create(&rt, broker, "orders-again", 3);
    assert_eq!(
        still.err(),
        Some(RDKafkaErrorCode::PolicyViolation),
        "a broken file dropped the rules in force"
    );
}

#[test]
fn policies_at_the_edge_embedded() {
    policies_hold(&start("policy-embedded", false));
}

#[test]
fn policies_at_the_edge_gateway() {
    policies_hold(&start("policy-gateway", true));
}
