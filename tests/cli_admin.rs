//! The admin command line against a SASL_SSL broker, through the real
//! binary: `topic create|list|describe|alter|delete`, `cluster info`,
//! `quota list|set|remove`, `--output json`, refusals (Kafka's error
//! names, exit code 3) and usage errors (exit code 2). librdkafka checks
//! what the commands did from the outside (DescribeConfigs, produce).

mod common;

use std::process::Output;
use std::time::Duration;

use common::{scratch, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A broker whose ACL file has no rules: the super user `admin` may do
/// anything, `alice` (a plain user) nothing.
fn start(name: &str) -> (tempfile::TempDir, Broker) {
    let dir = scratch(name);
    let acl = dir.path().join("acls.yaml");
    std::fs::write(&acl, "rules: []\n").unwrap();
    let broker = Broker::start_secure(dir.path(), &format!("acl:\n  file: {}\n", acl.display()));
    assert!(broker.admin_password.is_some(), "no admin password printed");
    broker.add_user("alice", "alice-secret");
    broker.wait_users_loaded(2, Duration::from_secs(20));
    (dir, broker)
}

/// `portcullis <args>` logged in as `user` (password on stdin).
fn cli_as(broker: &Broker, user: &str, password: &str, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend([
        "--bootstrap",
        &broker.bootstrap,
        "--user",
        user,
        "--password-stdin",
    ]);
    broker.cli(&all, &format!("{password}\n"))
}

fn admin(broker: &Broker, args: &[&str]) -> Output {
    let pw = broker.admin_password.clone().unwrap();
    cli_as(broker, "admin", &pw, args)
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: Output, what: &str) -> serde_json::Value {
    let stdout = ok(out, what);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{stdout}"))
}

fn rdkafka_config(broker: &Broker) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &broker.bootstrap)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "admin")
        .set("sasl.password", broker.admin_password.as_deref().unwrap())
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap());
    c
}

/// The topic's configs as librdkafka's admin client reads them.
fn rdkafka_topic_config(broker: &Broker, topic: &str, key: &str) -> Option<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: AdminClient<DefaultClientContext> = rdkafka_config(broker).create().unwrap();
    let res = rt
        .block_on(admin.describe_configs(
            &[ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(20))),
        ))
        .expect("describe_configs");
    let r = res.into_iter().next().unwrap().expect("topic configs");
    r.get(key).and_then(|e| e.value.clone())
}

fn produce(broker: &Broker, topic: &str, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p: FutureProducer = rdkafka_config(broker)
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    rt.block_on(async {
        for i in 0..n {
            let key = format!("k{i}");
            let value = format!("value {i}");
            p.send(
                FutureRecord::to(topic)
                    .partition((i % 3) as i32)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
        }
    });
}

#[test]
fn topics_round_trip_through_the_command_line() {
    let (_dir, broker) = start("cli-admin-topics");

    let out = ok(
        admin(
            &broker,
            &[
                "topic",
                "create",
                "orders",
                "--partitions",
                "3",
                "--config",
                "retention.ms=86400000",
                "--cleanup-policy",
                "delete",
            ],
        ),
        "topic create",
    );
    assert!(out.contains("created topic `orders`"), "{out}");

    // Again: Kafka's error name, a non-zero exit (1: not a refusal).
    let again = admin(&broker, &["topic", "create", "orders", "--partitions", "3"]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("TOPIC_ALREADY_EXISTS"),
        "{}",
        text(&again)
    );

    let listed = ok(admin(&broker, &["topic", "list"]), "topic list");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("orders ") && l.contains(" 3")),
        "{listed}"
    );
    assert!(!listed.contains("__consumer_offsets"), "{listed}");
    let listed = json(
        admin(&broker, &["topic", "list", "--output", "json"]),
        "topic list --output json",
    );
    let orders = listed["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == "orders")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(orders["partitions"], 3, "{listed}");

    // The config as a third-party client reads it.
    assert_eq!(
        rdkafka_topic_config(&broker, "orders", "retention.ms").as_deref(),
        Some("86400000")
    );

    produce(&broker, "orders", 30);
    let d = json(
        admin(&broker, &["topic", "describe", "orders", "--json"]),
        "topic describe --json",
    );
    assert_eq!(d["configs"]["retention.ms"], "86400000", "{d}");
    assert_eq!(d["configs"]["cleanup.policy"], "delete", "{d}");
    let parts = d["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{d}");
    let mut total = 0;
    for p in parts {
        assert_eq!(p["log_start_offset"], 0, "{d}");
        assert_eq!(p["high_watermark"], 10, "10 records per partition: {d}");
        total += p["high_watermark"].as_i64().unwrap();
        assert!(p["segments"].as_i64().unwrap() >= 1, "{d}");
        assert!(p["size_bytes"].as_i64().unwrap() > 0, "{d}");
        assert!(p["leader"].as_i64().unwrap() >= 0, "{d}");
    }
    assert_eq!(total, 30);
    let table = ok(
        admin(&broker, &["topic", "describe", "orders"]),
        "topic describe",
    );
    eprintln!("portcullis topic describe orders:\n{table}");
    assert!(table.contains("retention.ms=86400000"), "{table}");
    assert!(
        table.contains("HIGH WATERMARK") && table.contains("SEGMENTS"),
        "{table}"
    );

    ok(
        admin(
            &broker,
            &[
                "topic",
                "alter",
                "orders",
                "--retention-ms",
                "3600000",
                "--delete-config",
                "cleanup.policy",
                "--partitions",
                "4",
            ],
        ),
        "topic alter",
    );
    assert_eq!(
        rdkafka_topic_config(&broker, "orders", "retention.ms").as_deref(),
        Some("3600000")
    );
    let d = json(
        admin(
            &broker,
            &["topic", "describe", "orders", "--output", "json"],
        ),
        "describe after alter",
    );
    assert_eq!(d["partitions"].as_array().unwrap().len(), 4, "{d}");
    assert_eq!(d["configs"]["retention.ms"], "3600000", "{d}");
    assert!(d["configs"].get("cleanup.policy").is_none(), "{d}");

    // Deleting needs --yes when nobody can be asked: a usage error.
    let refused = admin(&broker, &["topic", "delete", "orders"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        text(&refused)
    );
    ok(
        admin(&broker, &["topic", "delete", "orders", "--yes"]),
        "topic delete",
    );
    let listed = ok(admin(&broker, &["topic", "list"]), "list after delete");
    assert!(!listed.contains("orders"), "{listed}");
    let gone = admin(&broker, &["topic", "describe", "orders"]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"),
        "{}",
        text(&gone)
    );
}

#[test]
fn a_user_without_acls_is_refused_with_kafkas_error_and_exit_3() {
    let (_dir, broker) = start("cli-admin-refused");
    ok(
        admin(
            &broker,
            &["topic", "create", "private", "--partitions", "1"],
        ),
        "topic create as admin",
    );
    let alice = |args: &[&str]| cli_as(&broker, "alice", "alice-secret", args);
    for (args, want) in [
        (
            vec!["topic", "create", "mine", "--partitions", "1"],
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            vec!["topic", "describe", "private"],
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            vec!["topic", "alter", "private", "--retention-ms", "1000"],
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            vec!["topic", "delete", "private", "--yes"],
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (vec!["quota", "list"], "CLUSTER_AUTHORIZATION_FAILED"),
    ] {
        let out = alice(&args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: want {want}: {}", text(&out));
    }
    // A wrong password: the login is refused, exit 3 too.
    let out = cli_as(&broker, "alice", "wrong", &["topic", "list"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    // What alice may not see is not listed.
    let listed = ok(alice(&["topic", "list"]), "topic list as alice");
    assert!(!listed.contains("private"), "{listed}");
}

#[test]
fn cluster_info_usage_errors_and_completions() {
    let (_dir, broker) = start("cli-admin-cluster");
    let info = json(
        admin(&broker, &["cluster", "info", "--output", "json"]),
        "cluster info",
    );
    assert!(
        !info["cluster_id"].as_str().unwrap_or("").is_empty(),
        "{info}"
    );
    assert_eq!(info["principal"], "User:admin", "{info}");
    let brokers = info["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{info}");
    assert_eq!(
        format!(
            "{}:{}",
            brokers[0]["host"].as_str().unwrap(),
            brokers[0]["port"]
        ),
        broker.bootstrap,
        "{info}"
    );
    assert!(
        info["api_versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["api"] == "CreateTopics"),
        "{info}"
    );
    let table = ok(admin(&broker, &["cluster", "info"]), "cluster info");
    assert!(
        table.contains("cluster id") && table.contains("User:admin"),
        "{table}"
    );

    // Usage errors: exit 2 and clap's message naming the problem, before
    // any connection.
    for (args, needle) in [
        (vec!["topic", "create", "t"], "--partitions"),
        (
            vec!["topic", "create", "t", "--partitions", "x"],
            "invalid value",
        ),
        (
            vec![
                "quota",
                "set",
                "--principal",
                "User:a",
                "--producer-byte-rate",
                "-5",
            ],
            "-5",
        ),
        (vec!["topic", "describe"], "<NAME>"),
        (
            vec!["quota", "set", "--ip", "10.0.0.1", "--principal", "User:a"],
            "cannot be used with",
        ),
    ] {
        let out = broker.cli(&args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{args:?}: want `{needle}`: {}",
            text(&out)
        );
    }
    let out = std::process::Command::new(common::BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = ok(out, "completions bash");
    assert!(
        script.contains("complete") && script.contains("portcullis"),
        "{script}"
    );
}

#[test]
fn group_list_and_acl_and_user_lists_print_json() {
    let (_dir, broker) = start("cli-admin-json");
    let groups = json(
        admin(&broker, &["group", "list", "--output", "json"]),
        "group list",
    );
    assert!(groups["groups"].is_array(), "{groups}");
    let users = json(broker.cli(&["user", "list", "--json"], ""), "user list");
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"admin"),
        "{users}"
    );
    let acls = json(
        broker.cli(&["acl", "list", "--output", "json"], ""),
        "acl list",
    );
    assert_eq!(acls["rules"].as_array().map(|r| r.len()), Some(0), "{acls}");
}

#[test]
fn quotas_set_list_remove() {
    let (_dir, broker) = start("cli-admin-quota");
    let out = ok(
        admin(
            &broker,
            &[
                "quota",
                "set",
                "--principal",
                "User:alice",
                "--producer-byte-rate",
                "1048576",
            ],
        ),
        "quota set",
    );
    assert!(out.contains("producer_byte_rate=1048576"), "{out}");
    let listed = json(
        admin(&broker, &["quota", "list", "--output", "json"]),
        "quota list",
    );
    let entries = listed["entries"].as_array().unwrap();
    let alice = entries
        .iter()
        .find(|e| e["entity"][0]["type"] == "user" && e["entity"][0]["name"] == "alice")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(alice["quotas"]["producer_byte_rate"], 1048576.0, "{listed}");
    let text = ok(
        admin(&broker, &["quota", "list", "--principal", "User:alice"]),
        "quota list --principal",
    );
    assert!(
        text.contains("user=alice: producer_byte_rate=1048576"),
        "{text}"
    );

    // The default client-id entity: Kafka's `<default>`, a null name.
    ok(
        admin(
            &broker,
            &[
                "quota",
                "set",
                "--default-client-id",
                "--consumer-byte-rate",
                "2048",
                "--request-percentage",
                "50",
            ],
        ),
        "quota set default client-id",
    );
    let text = ok(admin(&broker, &["quota", "list"]), "quota list");
    assert!(
        text.contains("client-id=<default>: consumer_byte_rate=2048, request_percentage=50"),
        "{text}"
    );
    ok(
        admin(
            &broker,
            &[
                "quota",
                "remove",
                "--default-client-id",
                "--consumer-byte-rate",
                "--request-percentage",
            ],
        ),
        "quota remove default client-id",
    );
    ok(
        admin(
            &broker,
            &["quota", "remove", "--principal", "User:alice", "--all"],
        ),
        "quota remove",
    );
    let listed = json(
        admin(&broker, &["quota", "list", "--output", "json"]),
        "quota list after remove",
    );
    assert_eq!(
        listed["entries"].as_array().map(|e| e.len()),
        Some(0),
        "{listed}"
    );
}
