//! SCRAM-SHA-256 beside SCRAM-SHA-512 (issue #15 item 4), with the real
//! Python clients (confluent-kafka / librdkafka and kafka-python; the
//! client side is `tests/python/sec_scram_sha256.py`): logins with either
//! mechanism, a user lacking the mechanism asked for refused exactly as an
//! unknown user, AlterUserScramCredentials per mechanism (and refused for a
//! non-super user), `sasl.mechanisms` narrowing what is offered, the same
//! client checks through a gateway, and the audit records naming the
//! mechanism. Each test has its own scratch directory and brokers.

mod common;

use std::path::Path;

use serde_json::Value;

use common::audit_files::{is, raw_lines, s, show};
use common::{log_tail, run_script_ok, scratch, tail, Broker};

fn pw(user: &str) -> String {
    format!("{user}-Sha-Secret-1")
}

/// The broker's `sasl:` section: the scratch credential store, the given
/// mechanisms, and no login throttle. The scripts refuse dozens of logins
/// from one address on purpose (librdkafka reconnects after each), which
/// the throttle would answer with growing delays and unanswered closes;
/// the throttle treats both mechanisms alike and has its own tests.
fn sasl_yaml(dir: &Path, mechanisms: Option<&str>) -> String {
    let mut y = format!(
        "sasl:\n  credentials: {}\n  login_throttle:\n    enabled: false\n",
        dir.join("credentials.yaml").display()
    );
    if let Some(m) = mechanisms {
        y.push_str(&format!("  mechanisms: {m}\n"));
    }
    y
}

/// `portcullis user add NAME [--mechanism M]...`, waiting (the CLI does)
/// until the running broker has applied the store.
fn add_user(broker: &Broker, name: &str, mechanisms: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    for m in mechanisms {
        args.extend(["--mechanism", m]);
    }
    let out = broker.cli(&args, &format!("{}\n", pw(name)));
    assert!(
        out.status.success(),
        "user add {name} {mechanisms:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The script's users: `both` (both mechanisms, the default), `only512`,
/// `only256`, and `alice` (no super user).
fn add_script_users(broker: &Broker) {
    add_user(broker, "both", &[]);
    add_user(broker, "only512", &["SCRAM-SHA-512"]);
    add_user(broker, "only256", &["SCRAM-SHA-256"]);
    add_user(broker, "alice", &[]);
}

/// `portcullis user list` lines: (name, mechanism, iterations).
fn user_list(broker: &Broker) -> Vec<(String, String, String)> {
    let out = broker.cli(&["user", "list"], "");
    assert!(out.status.success(), "user list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.split('\t');
            Some((
                p.next()?.to_string(),
                p.next()?.to_string(),
                p.next()?.to_string(),
            ))
        })
        .collect()
}

fn run_phase(broker: &Broker, phase: &str, context: impl FnOnce() -> String) {
    let admin_pw = broker
        .admin_password
        .clone()
        .expect("bootstrap admin password printed");
    let ca = broker.ca_file();
    run_script_ok(
        "sec_scram_sha256.py",
        &[
            phase,
            broker.addr("SASL_SSL"),
            ca.to_str().unwrap(),
            &admin_pw,
        ],
        context,
    );
}

fn audit(dir: &Path) -> Vec<Value> {
    raw_lines(&dir.join("audit/audit.log"))
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The audit says which mechanism: logins (accepted and refused) and the
/// credential changes made over the Kafka API.
fn assert_audit_names_mechanisms(dir: &Path) {
    let recs = audit(dir);
    let auth = |user: &str, mechanism: &str, decision: &str| {
        recs.iter().any(|r| {
            is(r, "event", "authentication")
                && is(r, "user", user)
                && is(r, "mechanism", mechanism)
                && is(r, "decision", decision)
        })
    };
    let all_auth: Vec<&Value> = recs
        .iter()
        .filter(|r| is(r, "event", "authentication"))
        .collect();
    for (user, mechanism, decision) in [
        ("both", "SCRAM-SHA-256", "success"),
        ("both", "SCRAM-SHA-512", "success"),
        ("carol", "SCRAM-SHA-256", "success"),
        ("only512", "SCRAM-SHA-256", "failure"),
        ("both", "SCRAM-SHA-256", "failure"),
    ] {
        assert!(
            auth(user, mechanism, decision),
            "no {decision} of {user} with {mechanism} in the audit:\n{}",
            show(&all_auth[all_auth.len().saturating_sub(40)..])
        );
    }
    let admin: Vec<&Value> = recs
        .iter()
        .filter(|r| is(r, "event", "admin_action"))
        .collect();
    let action = |name: &str, what: &str, mechanism: &str| {
        admin.iter().any(|r| {
            is(r, "action", what)
                && is(r, "resource_name", name)
                && r.get("details").and_then(|d| s(d, "mechanism")) == Some(mechanism)
                && is(r, "principal", "User:admin")
        })
    };
    for (name, what, mechanism) in [
        ("carol", "upsert_scram_credential", "SCRAM-SHA-256"),
        ("erin", "upsert_scram_credential", "SCRAM-SHA-256"),
        ("erin", "upsert_scram_credential", "SCRAM-SHA-512"),
        ("both", "delete_scram_credential", "SCRAM-SHA-256"),
    ] {
        assert!(
            action(name, what, mechanism),
            "no {what} of {name} ({mechanism}) in the audit:\n{}",
            show(&admin)
        );
    }
    assert!(
        !admin.iter().any(|r| is(r, "resource_name", "dave")),
        "alice's refused upsert audited as done:\n{}",
        show(&admin)
    );
}

/// Embedded: both mechanisms enabled (the default). Logins with either,
/// refusals alike, credentials over the Kafka API per mechanism, the
/// non-super user refused; `user list` and the audit name the mechanisms.
#[test]
fn sha256_and_sha512_logins_and_credentials_embedded() {
    let dir = scratch("sha256-embedded");
    let broker = Broker::start_secure(dir.path(), &sasl_yaml(dir.path(), None));
    add_script_users(&broker);
    let users = user_list(&broker);
    for (name, mechanisms) in [
        ("both", &["SCRAM-SHA-256", "SCRAM-SHA-512"][..]),
        ("only512", &["SCRAM-SHA-512"][..]),
        ("only256", &["SCRAM-SHA-256"][..]),
    ] {
        let listed: Vec<&str> = users
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, m, _)| m.as_str())
            .collect();
        assert_eq!(listed, mechanisms, "user list for {name}: {users:?}");
    }

    run_phase(&broker, "both", || log_tail(&broker, 80));

    let users = user_list(&broker);
    assert!(
        users.contains(&(
            "carol".into(),
            "SCRAM-SHA-256".into(),
            "iterations=4096".into()
        )),
        "the API's upsert is in the store: {users:?}"
    );
    assert!(
        !users
            .iter()
            .any(|(n, m, _)| n == "both" && m == "SCRAM-SHA-256"),
        "the API's delete is in the store: {users:?}"
    );
    assert_audit_names_mechanisms(dir.path());
}

/// `sasl.mechanisms: [SCRAM-SHA-512]`: a SCRAM-SHA-256 handshake is refused
/// with UNSUPPORTED_SASL_MECHANISM and the enabled list, and so is an
/// upsert of a SCRAM-SHA-256 credential.
#[test]
fn sha256_refused_when_not_enabled() {
    let dir = scratch("sha256-disabled");
    let broker = Broker::start_secure(dir.path(), &sasl_yaml(dir.path(), Some("[SCRAM-SHA-512]")));
    // No --mechanism: the config's one.
    add_user(&broker, "both", &[]);
    let users = user_list(&broker);
    assert!(
        users
            .iter()
            .filter(|(n, _, _)| n == "both")
            .all(|(_, m, _)| m == "SCRAM-SHA-512"),
        "{users:?}"
    );
    run_phase(&broker, "sha512only", || log_tail(&broker, 80));
    let log = broker.log();
    assert!(
        log.contains("client asked for mechanism `SCRAM-SHA-256`"),
        "the refusal is not logged:\n{}",
        tail(&log, 40)
    );
}

/// The same client checks through a gateway (in front of an upstream
/// Portcullis): SASL and the credential APIs are the gateway's edge. The
/// gateway itself logs in upstream with SCRAM-SHA-256
/// (`gateway.sasl.mechanism`), as a service user holding only that
/// mechanism's credential.
#[test]
fn sha256_through_the_gateway() {
    let dir = scratch("sha256-gateway");
    let up_dir = dir.path().join("up");
    let gw_dir = dir.path().join("gw");
    std::fs::create_dir_all(&up_dir).unwrap();
    // Upstream: SASL_PLAINTEXT; the service user may describe the cluster
    // (DescribeCluster is forwarded) besides the harness's topic rules.
    let up_acl = up_dir.join("acls.yaml");
    std::fs::write(
        &up_acl,
        "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n  - {allow: \"User:gw-svc\", operations: [describe], cluster: kafka-cluster}\n",
    )
    .unwrap();
    let up = Broker::start_listeners(
        &up_dir,
        &["SASL_PLAINTEXT"],
        &format!("acl:\n  file: {}\n", up_acl.display()),
    );
    add_user(&up, "gw-svc", &["SCRAM-SHA-256"]);

    let gw_yaml = format!(
        "backend: gateway\ngateway:\n  bootstrap_servers: [\"{up}\"]\n  security_protocol: SASL_PLAINTEXT\n  sasl:\n    mechanism: SCRAM-SHA-256\n    username: gw-svc\n    password: {svc_pw}\n{sasl}",
        up = up.addr("SASL_PLAINTEXT"),
        svc_pw = pw("gw-svc"),
        sasl = sasl_yaml(&gw_dir, None),
    );
    let gw = Broker::start_secure(&gw_dir, &gw_yaml);
    add_script_users(&gw);
    run_phase(&gw, "both", || {
        format!(
            "--- gateway:\n{}\n--- upstream:\n{}",
            log_tail(&gw, 60),
            log_tail(&up, 30)
        )
    });
    assert_audit_names_mechanisms(&gw_dir);

    // The credentials stayed at the gateway's edge; upstream, only the
    // service user logged in, with SCRAM-SHA-256.
    let up_users = user_list(&up);
    assert!(
        up_users
            .iter()
            .all(|(n, _, _)| n == "gw-svc" || n == "admin"),
        "the upstream's store got client users: {up_users:?}"
    );
    let up_auth: Vec<Value> = audit(&up_dir)
        .into_iter()
        .filter(|r| is(r, "event", "authentication") && is(r, "decision", "success"))
        .collect();
    assert!(
        !up_auth.is_empty()
            && up_auth
                .iter()
                .all(|r| is(r, "user", "gw-svc") && is(r, "mechanism", "SCRAM-SHA-256")),
        "upstream logins:\n{}",
        show(&up_auth.iter().collect::<Vec<_>>())
    );
}

/// Sessions hold to their mechanism, over the wire with our own client
/// (`portcullis::client`): KIP-368 re-authentication with the session's
/// mechanism works, with the other one it is refused with
/// UNSUPPORTED_SASL_MECHANISM as Kafka does; a new password for one
/// mechanism ends the sessions that logged in with it and no others.
#[test]
fn sessions_keep_their_mechanism() {
    use portcullis::client::{Connection, Connector};
    use portcullis::security::scram::Mechanism::{ScramSha256, ScramSha512};

    let dir = scratch("sha256-sessions");
    let broker = Broker::start_listeners(dir.path(), &["SASL_PLAINTEXT"], "");
    add_user(&broker, "both", &[]);
    let addr = broker.addr("SASL_PLAINTEXT").to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let login = |m| {
            let addr = addr.clone();
            async move {
                let mut c: Connection = Connector::plaintext().connect(&addr).await.unwrap();
                c.api_versions().await.unwrap();
                c.login_scram_with(m, "both", &pw("both"), None)
                    .await
                    .unwrap_or_else(|e| panic!("{m} login: {e}"));
                c
            }
        };
        for (m, other) in [(ScramSha256, ScramSha512), (ScramSha512, ScramSha256)] {
            let mut c = login(m).await;
            c.login_scram_with(m, "both", &pw("both"), None)
                .await
                .unwrap_or_else(|e| panic!("{m} re-authentication: {e}"));
            let err = c
                .login_scram_with(other, "both", &pw("both"), None)
                .await
                .expect_err("re-authentication with the other mechanism");
            assert!(
                err.to_string().contains("handshake error 33"),
                "{m} then {other}: {err}"
            );
        }

        let mut on512 = login(ScramSha512).await;
        let mut on256 = login(ScramSha256).await;
        let out = broker.cli(
            &[
                "user",
                "passwd",
                "both",
                "--password-stdin",
                "--mechanism",
                "SCRAM-SHA-256",
            ],
            "another-Sha-Secret-2\n",
        );
        assert!(
            out.status.success(),
            "passwd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            on256.api_versions().await.is_err(),
            "the SCRAM-SHA-256 session outlived its credential"
        );
        on512
            .api_versions()
            .await
            .expect("the SCRAM-SHA-512 session is untouched");
    });
}
