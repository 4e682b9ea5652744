//! `portcullis policy list|check` on a temporary config and policy file,
//! no broker: decisions and their exit codes (0 allowed, 1 blocked, 2
//! usage), a broken file refused with its line, the default path absent
//! meaning no policies and an explicit one absent an error.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

const POLICIES: &str = r#"# test policies
rules:
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
      compression: [zstd, lz4]
      required_headers: [trace-id]
  - name: consumers
    action: audit
    consume:
      group_id_pattern: '^[a-z]+-(consumer|app)$'
"#;

fn setup(policies: Option<&str>, explicit: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("config")).unwrap();
    std::fs::create_dir_all(dir.path().join("acl")).unwrap();
    let mut cfg = String::from(
        "listeners:\n  - {name: plain, address: \"127.0.0.1:9092\", security_protocol: PLAINTEXT}\n",
    );
    if explicit {
        cfg += "policy:\n  file: acl/policies.yaml\n";
    }
    std::fs::write(dir.path().join("config/portcullis.yaml"), cfg).unwrap();
    if let Some(p) = policies {
        std::fs::write(dir.path().join("acl/policies.yaml"), p).unwrap();
    }
    dir
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("PORTCULLIS_LOG")
        .output()
        .expect("run portcullis");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_prints_the_rules_in_order_as_text_and_json() {
    let dir = setup(Some(POLICIES), false);
    let (code, out, err) = run(dir.path(), &["policy", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("topic-naming") && lines[0].contains("line 3"),
        "{out}"
    );
    assert!(
        lines[1].contains("topics src-*") && lines[1].contains("produce"),
        "{out}"
    );
    assert!(err.contains("3 rule(s)"), "{err}");
    let (code, out, _) = run(dir.path(), &["policy", "list", "--output", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["rules"][1]["name"], "critical-producers");
    assert_eq!(v["rules"][1]["action"], "block");
    assert_eq!(v["rules"][1]["rule"]["produce"]["acks"][0], "all");
    assert_eq!(v["rules"][2]["line"], 19);
}

#[test]
fn check_prints_the_decision_and_exits_1_when_blocked() {
    let dir = setup(Some(POLICIES), false);
    let d = dir.path();
    let (code, out, err) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--create-topic",
            "orders",
            "--partitions",
            "3",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("BLOCK: User:alice create topic orders: policy topic-naming: topic name orders does not match"), "{out}");
    assert!(out.contains("(rule topic-naming, line 3)"), "{out}");
    assert!(err.contains("blocked by policy topic-naming"), "{err}");

    let ok = [
        "policy",
        "check",
        "--principal",
        "User:alice",
        "--create-topic",
        "src-app-credit-card-avro",
        "--partitions",
        "3",
    ];
    let (code, out, _) = run(d, &ok);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW:"), "{out}");
    // --config KEY=VALUE is a topic config; a path still names the config.
    let mut with_cfg = ok.to_vec();
    with_cfg.extend([
        "--config",
        "retention.ms=1000",
        "--config",
        "config/portcullis.yaml",
    ]);
    let (code, out, _) = run(d, &with_cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("retention.ms=1000"), "{out}");

    // Produce: acks=1 refused, an idempotent acks=all zstd producer with the header passes.
    let (code, out, _) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--produce",
            "src-orders",
            "--acks",
            "1",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("acks=1 is not allowed (allowed: all)"),
        "{out}"
    );
    let good = [
        "policy",
        "check",
        "--principal",
        "User:alice",
        "--produce",
        "src-orders",
        "--acks",
        "all",
        "--idempotent",
        "--compression",
        "zstd",
        "--header",
        "trace-id",
    ];
    let (code, out, _) = run(d, &good);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(d, &good[..good.len() - 2]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("trace-id"), "{out}");
    let (code, _, _) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--produce",
            "other",
            "--acks",
            "0",
        ],
    );
    assert_eq!(code, 0);

    // Config changes and CreatePartitions, as `topic alter` spells them.
    let alter = |extra: &[&str]| {
        let mut a = vec![
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--alter-topic",
            "orders",
        ];
        a.extend_from_slice(extra);
        run(d, &a)
    };
    assert_eq!(alter(&["--config", "retention.ms=1000"]).0, 1);
    assert_eq!(alter(&["--config", "retention.ms=86400000"]).0, 0);
    assert_eq!(alter(&["--delete-config", "retention.ms"]).0, 0);
    let (code, out, _) = alter(&["--partitions", "65"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("65 partitions in total: must be between 3 and 64"),
        "{out}"
    );
    assert_eq!(alter(&["--partitions", "64"]).0, 0);
    assert_eq!(alter(&[]).0, 2);

    // Audit-only violations: printed, exit 0; JSON says so too.
    let (code, out, _) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--consume",
            "--group",
            "Billing",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("AUDIT: policy consumers: group id Billing"),
        "{out}"
    );
    let (code, out, _) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:alice",
            "--consume",
            "--group",
            "Billing",
            "--output",
            "json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "allow");
    assert_eq!(v["audited"][0]["rule"], "consumers");

    // Usage errors exit 2 before any file is read.
    let (code, _, err) = run(
        d,
        &["policy", "check", "--principal", "User:alice", "--consume"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(d, &["policy", "check", "--principal", "User:alice"]);
    assert_eq!(code, 2);
    let (code, _, _) = run(
        d,
        &[
            "policy",
            "check",
            "--principal",
            "User:a",
            "--produce",
            "t",
            "--acks",
            "2",
        ],
    );
    assert_eq!(code, 2);
}

#[test]
fn a_broken_file_is_refused_with_its_line() {
    let broken = "rules:\n  - name: ok\n    action: block\n    produce: {acks: [all]}\n  - name: bad\n    action: block\n    create_topic:\n      partitions: {min: 10, max: 3}\n";
    let dir = setup(Some(broken), false);
    for args in [
        &["policy", "list"][..],
        &[
            "policy",
            "check",
            "--principal",
            "User:a",
            "--create-topic",
            "x",
        ][..],
    ] {
        let (code, out, err) = run(dir.path(), args);
        assert_eq!(code, 1, "{out}{err}");
        assert!(err.contains("line 5"), "{err}");
        assert!(err.contains("min is greater than max"), "{err}");
    }
    // Bad YAML: line and kind, no content.
    std::fs::write(
        dir.path().join("acl/policies.yaml"),
        "rules:\n  - name: a\n    action: block\n    produce:\n      acks: [all]\n      secret_key: PRIVATE\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["policy", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("line 6"), "{err}");
    assert!(!err.contains("PRIVATE"), "{err}");
}

#[test]
fn absent_default_file_is_no_policies_absent_explicit_file_is_an_error() {
    let dir = setup(None, false);
    let (code, out, err) = run(
        dir.path(),
        &[
            "policy",
            "check",
            "--principal",
            "User:a",
            "--create-topic",
            "orders",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ALLOW:"), "{out}");
    assert!(err.contains("no policies"), "{err}");
    let dir = setup(None, true);
    let (code, _, err) = run(dir.path(), &["policy", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not exist"), "{err}");
    let (code, _, err) = run(dir.path(), &["policy", "list", "--file", "elsewhere.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("elsewhere.yaml"), "{err}");
}
