//! The security edge through the real Python clients (confluent-kafka /
//! librdkafka and kafka-python): SASL_SSL + SCRAM-SHA-512 round trips,
//! refused logins and their Kafka error codes, mTLS principals, SCRAM
//! credential administration over the Kafka APIs, revocation of open
//! sessions, and KIP-368 re-authentication. Each test has its own scratch
//! directory and broker; the client side lives in `tests/python/sec_*.py`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{clean_log, log_tail, run_script_ok, scratch, wait_for, Broker, BIN};

/// Runs a script, requires its "ALL OK", and on failure shows the end of
/// the broker's log as well: the client's view alone rarely explains a
/// failure at the security edge.
fn run_script(broker: &Broker, script: &str, args: &[&str]) -> String {
    run_script_ok(script, args, || log_tail(broker, 80))
}

/// The value of `key=` in a cleaned log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    line[start..].split_whitespace().next()
}

fn certs_init(dir: &Path, clients: &[&str]) {
    let mut cmd = Command::new(BIN);
    cmd.args(["certs", "init", "--dir"]).arg(dir);
    for c in clients {
        cmd.args(["--client", c]);
    }
    let out = cmd.output().expect("run portcullis certs init");
    assert!(
        out.status.success(),
        "certs init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `portcullis user list` as (name, mechanism, iterations).
fn user_list(broker: &Broker) -> BTreeMap<String, (String, u32)> {
    let out = broker.cli(&["user", "list"], "");
    assert!(
        out.status.success(),
        "user list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let name = parts.next()?.to_string();
            let mechanism = parts.next()?.to_string();
            let iterations = parts.next()?.strip_prefix("iterations=")?.parse().ok()?;
            Some((name, (mechanism, iterations)))
        })
        .collect()
}

fn ca(broker: &Broker) -> String {
    broker.ca_file().to_str().unwrap().to_string()
}

// ---------------------------------------------------------------- 1 and 2

/// confluent-kafka over SASL_SSL with a user made by `portcullis user add`:
/// CreateTopics, 2,000 records with acks=all over two partitions, read back
/// with assign(): same keys, values and headers, in order, at the offsets
/// the producer was told, and nothing else.
#[test]
fn confluent_scram_sha512_round_trip() {
    let dir = scratch("sec-py-confluent");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user("alice", "alice-secret-1");
    run_script(
        &broker,
        "sec_confluent_roundtrip.py",
        &[
            broker.addr("SASL_SSL"),
            &ca(&broker),
            "alice",
            "alice-secret-1",
            "secure-confluent",
            "2000",
        ],
    );
    let log = clean_log(&broker.log());
    assert!(
        log.lines()
            .any(|l| l.contains("SASL/SCRAM-SHA-512 authenticated")
                && field(l, "principal") == Some("User:alice")),
        "no authentication of User:alice logged"
    );
}

/// kafka-python (its own protocol and SCRAM code) over SASL_SSL: create,
/// produce with acks=all, read back byte for byte.
#[test]
fn kafka_python_scram_sha512_round_trip() {
    let dir = scratch("sec-py-kafka-python");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user("alice", "alice-secret-2");
    run_script(
        &broker,
        "sec_kafka_python_roundtrip.py",
        &[
            broker.addr("SASL_SSL"),
            &ca(&broker),
            "alice",
            "alice-secret-2",
            "secure-kafka-python",
            "2000",
        ],
    );
}

// ---------------------------------------------------------------------- 3

/// Wrong password and unknown user: SASL_AUTHENTICATION_FAILED (58) with
/// one and the same message; PLAIN: UNSUPPORTED_SASL_MECHANISM (33); a
/// client trusting another CA fails the TLS handshake. Both clients; nothing any of them produced lands.
#[test]
fn refused_logins_report_kafka_error_codes() {
    let dir = scratch("sec-py-refused");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user("alice", "alice-secret-3");
    let other = dir.path().join("other-ca");
    certs_init(&other, &[]);
    run_script(
        &broker,
        "sec_negative_logins.py",
        &[
            broker.addr("SASL_SSL"),
            &ca(&broker),
            other.join("ca.crt").to_str().unwrap(),
            "alice",
            "alice-secret-3",
            "refused-topic",
        ],
    );
    let log = clean_log(&broker.log());
    for needle in [
        "wrong_password",
        "unknown_user",
        "client asked for mechanism `PLAIN`",
        "TLS handshake failed",
    ] {
        assert!(log.contains(needle), "broker log lacks `{needle}`");
    }
    // The refused clients never got past the edge.
    assert!(
        !log.lines()
            .any(|l| l.contains("SASL/SCRAM-SHA-512 authenticated")
                && field(l, "principal") == Some("User:mallory")),
        "mallory authenticated?"
    );
}

/// Regression test for the broker closing a refused connection at once.
#[test]
fn kafka_python_unmodified_sees_refused_login_codes() {
    let dir = scratch("sec-py-kp-unpatched");
    // 40 refused logins from one address: without the login throttle, whose
    // delays would turn them into client timeouts.
    let broker = Broker::start_secure(
        dir.path(),
        &format!(
            "sasl:\n  credentials: {}\n  login_throttle: {{enabled: false}}\n",
            dir.path().join("credentials.yaml").display()
        ),
    );
    broker.add_user("alice", "alice-secret-3b");
    run_script(
        &broker,
        "sec_kp_login_errors_unpatched.py",
        &[
            broker.addr("SASL_SSL"),
            &ca(&broker),
            "alice",
            "alice-secret-3b",
            "20",
        ],
    );
}

// ---------------------------------------------------------------------- 4

/// A broker with an mTLS `SSL` listener (client_auth: required, client CA
/// = the dev CA, made with a client certificate for alice before start)
/// and a PLAINTEXT listener for setup; `tls_principal` holds the principal
/// lines of the `tls:` section.
fn mtls_round_trip(name: &str, tls_principal: &str) {
    let dir = scratch(name);
    let certs = dir.path().join("certs");
    certs_init(&certs, &["alice"]);
    let extra = format!(
        "tls:\n  cert: {c}/server.crt\n  key: {c}/server.key\n  client_auth: required\n  client_ca: {c}/ca.crt\n{tls_principal}certs:\n  dir: {c}\n  auto_generate: true\n",
        c = certs.display()
    );
    let broker = Broker::start_listeners(dir.path(), &["SSL", "PLAINTEXT"], &extra);
    run_script(
        &broker,
        "sec_mtls.py",
        &[
            broker.addr("PLAINTEXT"),
            broker.addr("SSL"),
            &ca(&broker),
            certs.join("client-alice.crt").to_str().unwrap(),
            certs.join("client-alice.key").to_str().unwrap(),
            "mtls-topic",
            "500",
        ],
    );
    let log = clean_log(&broker.log());
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("TLS client certificate accepted"))
        .collect();
    assert!(!accepted.is_empty(), "no TLS client certificate accepted");
    for l in &accepted {
        assert_eq!(field(l, "principal"), Some("User:alice"), "{l}");
    }
    // The client without a certificate was refused in the handshake.
    assert!(
        log.contains("TLS handshake failed"),
        "no refused handshake logged"
    );
}

/// mTLS with the principal from the subject DN (`CN=alice`), mapped by a
/// Kafka rule to `alice`: without a certificate a client gets no metadata;
/// with alice's it produces and consumes, as `User:alice`.
#[test]
fn mtls_required_subject_principal() {
    mtls_round_trip(
        "sec-py-mtls-subject",
        "  principal_from: subject\n  principal_mapping_rules: [\"RULE:^CN=([^,]+)$/$1/\", \"DEFAULT\"]\n",
    );
}

/// The same with `principal_from: san_uri` (the client certificate's URI
/// SAN is `spiffe://portcullis/user/alice`) and the rule
/// `RULE:^spiffe://portcullis/user/(.*)$/$1/`, written as Kafka's rule
/// grammar wants it: `/` separates pattern and replacement, so the slashes
/// inside the pattern are escaped (unescaped, Kafka and Portcullis both
/// refuse the rule). Single-quoted YAML keeps the backslashes.
#[test]
fn mtls_required_san_uri_principal() {
    mtls_round_trip(
        "sec-py-mtls-san",
        "  principal_from: san_uri\n  principal_mapping_rules: ['RULE:^spiffe:\\/\\/portcullis\\/user\\/(.*)$/$1/']\n",
    );
}

// ---------------------------------------------------------------------- 5

/// Describe/AlterUserScramCredentials with confluent-kafka's AdminClient:
/// the super user `admin` creates bob (who can then log in and produce),
/// describe shows SCRAM-SHA-512 with the iterations, alice gets
/// CLUSTER_AUTHORIZATION_FAILED, a missing user RESOURCE_NOT_FOUND, a
/// deleted bob cannot log in (58); `portcullis user list` agrees at every
/// step, and a user added with the CLI shows up in describe.
#[test]
fn scram_credentials_admin_api_writes_through() {
    let dir = scratch("sec-py-admin");
    let broker = Broker::start_secure(dir.path(), "");
    let admin_pw = broker
        .admin_password
        .clone()
        .expect("bootstrap admin password printed");
    broker.add_user("alice", "alice-secret-5");
    let bootstrap = broker.addr("SASL_SSL").to_string();
    let ca = ca(&broker);
    let phase = |phase: &str, iterations: &str| {
        run_script(
            &broker,
            "sec_admin_credentials.py",
            &[
                phase,
                &bootstrap,
                &ca,
                &admin_pw,
                "alice-secret-5",
                iterations,
            ],
        )
    };

    phase("upsert", "4567");
    let users = user_list(&broker);
    assert_eq!(
        users.get("bob"),
        Some(&("SCRAM-SHA-512".to_string(), 4567)),
        "{users:?}"
    );
    assert!(
        users.contains_key("alice") && users.contains_key("admin"),
        "{users:?}"
    );
    assert!(
        !users.contains_key("carol"),
        "alice's refused upsert: {users:?}"
    );

    let out = broker.cli(
        &[
            "user",
            "add",
            "dave",
            "--password-stdin",
            "--iterations",
            "5000",
        ],
        "dave-secret\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    phase("cli", "5000");

    phase("delete", "0");
    let users = user_list(&broker);
    assert!(!users.contains_key("bob"), "bob still listed: {users:?}");
    assert_eq!(
        users.keys().map(String::as_str).collect::<Vec<_>>(),
        ["admin", "alice", "dave"]
    );

    let log = clean_log(&broker.log());
    assert!(
        log.lines().any(|l| l.contains("SCRAM credential set")
            && field(l, "principal") == Some("User:admin")
            && field(l, "user") == Some("bob")),
        "upsert not logged"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("SCRAM credential deleted") && field(l, "user") == Some("bob")),
        "delete not logged"
    );
}

/// confluent-kafka's describe_user_scram_credentials() with no users sends
/// an empty user array, which Kafka answers with all users.
#[test]
fn scram_credentials_describe_all_with_empty_user_list() {
    let dir = scratch("sec-py-describe-all");
    let broker = Broker::start_secure(dir.path(), "");
    let admin_pw = broker.admin_password.clone().unwrap();
    broker.add_user("alice", "alice-secret-5b");
    run_script(
        &broker,
        "sec_admin_describe_all.py",
        &[
            broker.addr("SASL_SSL"),
            &ca(&broker),
            &admin_pw,
            "admin",
            "alice",
        ],
    );
}

// ---------------------------------------------------------------------- 6

fn revocation(mode: &str) {
    let dir = scratch(&format!("sec-py-revoke-{mode}"));
    let broker = Broker::start_secure(dir.path(), "");
    let admin_pw = broker.admin_password.clone().unwrap();
    broker.add_user("alice", "alice-old-pw");
    run_script(
        &broker,
        "sec_revocation.py",
        &[
            mode,
            broker.addr("SASL_SSL"),
            &ca(&broker),
            BIN,
            broker.config_path().to_str().unwrap(),
            &admin_pw,
            &format!("revoke-{mode}"),
        ],
    );
    // The open connections were closed by the broker at their next request
    // (the script already saw their records fail). The log line may trail
    // the client's view by a moment.
    wait_for(
        "the broker to log the closed session",
        Duration::from_secs(30),
        || {
            clean_log(&broker.log())
                .contains("credentials of User:alice were removed or changed")
                .then_some(())
        },
    );
}

/// `portcullis user remove alice` while alice has two producers open: new
/// logins fail with 58 within a deadline (hot reload), the open connections
/// are closed at their next request and their records are not delivered.
#[test]
fn removed_user_loses_new_and_open_sessions() {
    revocation("remove");
}

/// `portcullis user passwd alice`: the old password stops working (new and
/// open connections), the new one works at once.
#[test]
fn changed_password_ends_old_sessions() {
    revocation("passwd");
}

// ---------------------------------------------------------------------- 7

/// Session lifetime 2 s: a producer keeps producing (one record per
/// ~100 ms, acks=all) for 7 s; every record is delivered, and the broker
/// authenticated one and the same connection of User:alice at least three
/// times (KIP-368 re-authentication rather than reconnects).
fn reauthentication(client: &str) {
    let dir = scratch(&format!("sec-py-reauth-{client}"));
    let extra = format!(
        "sasl:\n  credentials: {}\n  connections_max_reauth_ms: 2000\n",
        dir.path().join("credentials.yaml").display()
    );
    let broker = Broker::start_secure(dir.path(), &extra);
    broker.add_user("alice", "alice-secret-7");
    run_script(
        &broker,
        "sec_reauth.py",
        &[
            client,
            broker.addr("SASL_SSL"),
            &ca(&broker),
            "alice",
            "alice-secret-7",
            &format!("reauth-{client}"),
            "7",
        ],
    );
    let log = clean_log(&broker.log());
    let mut per_peer: BTreeMap<&str, usize> = BTreeMap::new();
    for l in log.lines().filter(|l| {
        l.contains("SASL/SCRAM-SHA-512 authenticated")
            && field(l, "principal") == Some("User:alice")
    }) {
        *per_peer.entry(field(l, "peer").unwrap_or("?")).or_default() += 1;
    }
    let expired = log.matches("session of User:alice expired").count();
    eprintln!(
        "{client}: authentications per connection {per_peer:?}; expired-session closes: {expired}"
    );
    let total: usize = per_peer.values().sum();
    assert!(
        total >= 3,
        "only {total} authentications of User:alice: {per_peer:?}"
    );
    let most = per_peer.values().copied().max().unwrap_or(0);
    assert!(
        most >= 3,
        "no connection re-authenticated at least twice: {per_peer:?}"
    );
}

#[test]
fn kip368_reauthentication_confluent() {
    reauthentication("confluent");
}

#[test]
fn kip368_reauthentication_kafka_python() {
    reauthentication("kafka-python");
}
