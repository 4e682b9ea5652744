//! The Java client (Apache Kafka's `kafka-clients`, the release pinned in
//! tests/kafka/pom.xml) over SASL_SSL with SCRAM-SHA-512, issue #14 items 3
//! and 4: idempotent and transactional producers, consumers in groups
//! (static membership, read_committed) and `Admin` (topics, configs, ACLs,
//! SCRAM credentials, consumer group offsets, DescribeCluster, authorized
//! operations, DeleteRecords, ListOffsets), on each back end.
//!
//! The checks are one Java program, `tests/java/ClientChecks.java`, run as a
//! single-file source program in one small JVM that runs them all in a row
//! and prints one `OK`/`FAIL` line per check (see its header). The user's
//! clients use the README's Java `client.properties` (PEM truststore of the
//! broker's CA), read from the README and filled in, so the snippet users
//! copy is the one tested; `login_pkcs12` runs the README's `keytool`
//! command for the PKCS12 alternative.
//!
//! - `java_clients_against_portcullis`: every check against embedded
//!   Portcullis;
//! - `java_clients_through_gateway`: every check against Portcullis in
//!   gateway mode in front of a real 3-broker Apache Kafka (replication
//!   factor 3 by default, `min.insync.replicas` 2);
//! - `java_clients_against_kafka`: the same checks against Apache Kafka
//!   itself (SASL_SSL, StandardAuthorizer, `User:admin` super user, the
//!   user granted what Portcullis's test ACL file grants): every check,
//!   probes included, passes there. This is what proves the checks test
//!   Kafka's behaviour and not a guess of it.
//!
//! On Portcullis every check must pass, except the `probe_*` checks a back
//! end deliberately answers differently: those must fail with the
//! exception listed in [`DIFFERS`] (Kafka's error class for the refusal),
//! and start failing the test the day they pass. Each test prints a table
//! of its checks and records them in the README's compatibility table
//! (tests/common/compat.rs).

#[path = "common/backends.rs"]
mod backends;
mod common;
#[path = "common/compat.rs"]
mod compat;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use backends::Backend;
use common::kafka::{java_program, KafkaCluster, KafkaOpts, Listener, ADMIN, ADMIN_PASSWORD};
use common::scratch;
use compat::{Cell, Column};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The non-super user every client check runs as.
const ALICE: (&str, &str) = ("alice", "alice-Java-Secret-1");

/// Every check of `ClientChecks.java`, in the order they run.
const CHECKS: &[&str] = &[
    "login",
    "login_pkcs12",
    "login_refused",
    "idempotent_producer_group_consumer",
    "transactions_read_committed",
    "static_membership",
    "consumer_group_protocol",
    "admin_topics",
    "admin_configs",
    "admin_broker_and_group_configs",
    "admin_acls",
    "admin_scram_credentials",
    "admin_consumer_groups",
    "admin_describe_cluster",
    "admin_authorized_operations",
    "admin_delete_records_list_offsets",
    "probe_compact_topic",
    "probe_scram_sha256",
    "probe_describe_cluster_as_user",
    "probe_describe_topics_as_user",
];

/// Where a back end deliberately answers differently from Apache Kafka:
/// (probe, the back ends that refuse, the exception Kafka's Java client
/// raises for the refusal, why). Everything else must pass as it does
/// against Kafka. None today: `probe_compact_topic` left it when the
/// embedded log learnt compaction.
const DIFFERS: &[(&str, &[Column], &str, &str)] = &[];

/// The deliberate refusal of `check` on `column`, if any: (exception, why).
fn differs(check: &str, column: Column) -> Option<(&'static str, &'static str)> {
    DIFFERS
        .iter()
        .find(|(c, cols, _, _)| *c == check && cols.contains(&column))
        .map(|(_, _, e, why)| (*e, *why))
}

/// The client's name in the README's compatibility table.
fn client_name() -> String {
    format!("Java client {}", common::kafka::version())
}

/// The whole JVM run (compilation of the checks included).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// `CHECKS`, or those named in `PORTCULLIS_JAVA_CHECKS` (comma-separated;
/// for working on one check).
fn selected() -> Vec<&'static str> {
    match std::env::var("PORTCULLIS_JAVA_CHECKS") {
        Ok(only) if !only.trim().is_empty() => {
            let only: Vec<&str> = only.split(',').map(str::trim).collect();
            for o in &only {
                assert!(CHECKS.contains(o), "PORTCULLIS_JAVA_CHECKS: no check {o}");
            }
            CHECKS
                .iter()
                .copied()
                .filter(|c| only.contains(c))
                .collect()
        }
        _ => CHECKS.to_vec(),
    }
}

/// One check's outcome, from its line on the program's stdout.
#[derive(Debug, Clone)]
struct Outcome {
    check: String,
    ok: bool,
    ms: u64,
    /// OK: what it proved; FAIL: `<step>: <exception class>: <message>`.
    detail: String,
    /// FAIL only.
    exception: String,
}

/// How the clients reach the broker.
struct Target<'a> {
    bootstrap: &'a str,
    ca: &'a Path,
    admin_password: &'a str,
    /// Scratch directory: properties, truststore, the JVM's stderr.
    dir: &'a Path,
}

/// The README's Java `client.properties` block, filled in for `target`
/// and `ALICE`. Each of the README's placeholders (`127.0.0.1:9093`,
/// `alice`, `s3cret`, `certs/ca.crt`) must be there exactly once, so the
/// snippet cannot drift from what is tested.
fn readme_properties(t: &Target<'_>) -> String {
    let readme = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("README.md")).unwrap();
    let start = readme
        .find("```properties\n")
        .expect("README.md has a ```properties block (the Java client settings)");
    let body = &readme[start + "```properties\n".len()..];
    let block = &body[..body.find("```").expect("unterminated ```properties block")];
    let mut props = block.to_string();
    for (placeholder, value) in [
        ("127.0.0.1:9093", t.bootstrap.to_string()),
        ("username=\"alice\"", format!("username=\"{}\"", ALICE.0)),
        ("password=\"s3cret\"", format!("password=\"{}\"", ALICE.1)),
        ("certs/ca.crt", t.ca.display().to_string()),
    ] {
        assert_eq!(
            props.matches(placeholder).count(),
            1,
            "README's Java properties should have {placeholder} once:\n{block}"
        );
        props = props.replace(placeholder, &value);
    }
    for key in [
        "security.protocol=SASL_SSL",
        "sasl.mechanism=SCRAM-SHA-512",
        "ssl.truststore.type=PEM",
    ] {
        assert!(
            props.lines().any(|l| l.trim() == key),
            "README's Java properties lack {key}:\n{block}"
        );
    }
    props
}

/// Runs the README's `keytool -importcert ...` command (with `-noprompt`
/// added: no terminal here) on the CA; returns `path:password` of the
/// PKCS12 truststore it made.
fn readme_pkcs12(t: &Target<'_>) -> String {
    let readme = std::fs::read_to_string(Path::new(MANIFEST_DIR).join("README.md")).unwrap();
    let cmd = readme
        .split('`')
        .find(|s| s.starts_with("keytool -importcert"))
        .expect("README.md has a `keytool -importcert ...` command");
    let store = t.dir.join("truststore.p12");
    let mut args: Vec<String> = cmd
        .split_whitespace()
        .skip(1)
        .map(|a| match a {
            "certs/ca.crt" => t.ca.display().to_string(),
            "truststore.p12" => store.display().to_string(),
            _ => a.to_string(),
        })
        .collect();
    let password = args
        .iter()
        .position(|a| a == "-storepass")
        .map(|i| args[i + 1].clone())
        .expect("the README's keytool command sets -storepass");
    args.push("-noprompt".into());
    let out = Command::new("keytool")
        .args(&args)
        .output()
        .expect("run keytool");
    assert!(
        out.status.success() && store.exists(),
        "keytool {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{}:{password}", store.display())
}

/// Runs `checks` in one JVM against `t`; returns each check's outcome (a
/// check with no line, the JVM having died or hung, is a FAIL saying so)
/// and the time the run took.
fn run_checks(t: &Target<'_>, checks: &[&str]) -> (Vec<Outcome>, Duration) {
    let config = t.dir.join("client.properties");
    std::fs::write(&config, readme_properties(t)).unwrap();
    let pkcs12 = readme_pkcs12(t);
    let stderr_path = t.dir.join("java-checks.stderr");
    let mut cmd = java_program("ClientChecks.java", &stderr_path);
    cmd.args(["--bootstrap", t.bootstrap])
        .arg("--ca")
        .arg(t.ca)
        .args(["--user", ALICE.0, "--password", ALICE.1])
        .args(["--admin-user", ADMIN, "--admin-password", t.admin_password])
        .arg("--config")
        .arg(&config)
        .args(["--pkcs12", &pkcs12])
        .args(checks);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start java");
    let pid = child.id() as libc::pid_t;
    // The watchdog: the whole process group at the deadline.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(RUN_TIMEOUT).is_err() {
            // SAFETY: plain syscall on the JVM's own process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    });
    let mut outcomes = BTreeMap::new();
    let mut done = false;
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 {
        let l = line.trim_end_matches('\n').to_string();
        line.clear();
        eprintln!("java: {l}");
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["OK", check, ms, detail] => {
                outcomes.insert(
                    check.to_string(),
                    Outcome {
                        check: check.to_string(),
                        ok: true,
                        ms: ms.parse().unwrap_or(0),
                        detail: detail.to_string(),
                        exception: String::new(),
                    },
                );
            }
            ["FAIL", check, ms, step, class, message] => {
                outcomes.insert(
                    check.to_string(),
                    Outcome {
                        check: check.to_string(),
                        ok: false,
                        ms: ms.parse().unwrap_or(0),
                        detail: format!("at '{step}': {class}: {message}"),
                        exception: class.to_string(),
                    },
                );
            }
            ["DONE", _] => done = true,
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    let _ = done_tx.send(());
    watchdog.join().unwrap();
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    let _ = std::fs::File::open(&stderr_path).and_then(|mut f| f.read_to_string(&mut stderr));
    if !done || !status.success() {
        eprintln!(
            "java checks: exit {status} after {elapsed:.1?}{}; last stderr lines:\n{}",
            if elapsed >= RUN_TIMEOUT {
                " (killed at the deadline)"
            } else {
                ""
            },
            common::tail(&stderr, 60)
        );
    }
    let out = checks
        .iter()
        .map(|c| {
            outcomes.remove(*c).unwrap_or_else(|| Outcome {
                check: c.to_string(),
                ok: false,
                ms: 0,
                detail: format!("no result: the JVM ended ({status}) before reporting it"),
                exception: String::new(),
            })
        })
        .collect();
    (out, elapsed)
}

/// Prints the outcomes as a table (a deliberate refusal on `column` with
/// its exception is marked as such).
fn print_table(title: &str, outcomes: &[Outcome], elapsed: Duration, column: Column) {
    eprintln!("\n{title} ({elapsed:.1?} for the JVM):");
    for o in outcomes {
        let status = match (o.ok, differs(&o.check, column)) {
            (true, _) => "OK",
            (false, Some((e, _))) if e == o.exception => "REFUSED",
            _ => "FAIL",
        };
        eprintln!("  {status:<7} {:<36} {:>6} ms  {}", o.check, o.ms, o.detail);
    }
}

/// Runs the checks on a Portcullis back end (`alice` added); asserts each
/// works or is its deliberate refusal, and records the run in the README.
fn check_portcullis(title: &str, backend: &Backend, scratch: tempfile::TempDir) {
    let started = Instant::now();
    let dir = &scratch.path().join("java");
    std::fs::create_dir_all(dir).unwrap();
    backend.add_user(ALICE.0, ALICE.1, 2);
    let admin_password = backend
        .broker
        .admin_password
        .clone()
        .expect("admin password");
    let ca = backend.broker.ca_file();
    let target = Target {
        bootstrap: backend.broker.addr("SASL_SSL"),
        ca: &ca,
        admin_password: &admin_password,
        dir,
    };
    let checks = selected();
    let (outcomes, elapsed) = run_checks(&target, &checks);
    print_table(title, &outcomes, elapsed, backend.column);

    let mut wrong = Vec::new();
    let mut cells = Vec::new();
    for o in &outcomes {
        match differs(&o.check, backend.column) {
            None if o.ok => cells.push((o.check.clone(), Cell::Works)),
            None => wrong.push(format!("{}: {}", o.check, o.detail)),
            Some((class, why)) if o.ok => wrong.push(format!(
                "{}: passes now, but is listed as a deliberate difference ({class}: {why}); \
                 remove it from DIFFERS and the README",
                o.check
            )),
            Some((class, why)) if o.exception != class => wrong.push(format!(
                "{}: want the deliberate refusal {class} ({why}), got {}",
                o.check, o.detail
            )),
            Some((class, _)) => cells.push((
                o.check.clone(),
                Cell::Refused(format!("`{}`", class.rsplit('.').next().unwrap_or(class))),
            )),
        }
    }
    if !wrong.is_empty() {
        eprintln!("{}", backend.logs_tail(40));
        eprintln!("keeping {} for inspection", scratch.keep().display());
    }
    assert!(
        wrong.is_empty(),
        "{} of {} Java client checks went wrong ({title}):\n  {}",
        wrong.len(),
        outcomes.len(),
        wrong.join("\n  ")
    );
    compat::record(
        &client_name(),
        backend.column,
        &cells,
        checks.len() == CHECKS.len(),
    );
    eprintln!("{title}: {:.1?}", started.elapsed());
}

#[test]
fn java_clients_against_portcullis() {
    let dir = scratch("java-clients");
    // A group's first member is not kept waiting for others (Kafka's
    // group.initial.rebalance.delay.ms, 0 in the Kafka harness too).
    let backend = Backend::embedded(
        &dir.path().join("broker"),
        "groups:\n  initial_rebalance_delay_ms: 0\n",
    );
    check_portcullis("Java client against embedded Portcullis", &backend, dir);
}

#[test]
fn java_clients_through_gateway() {
    let dir = scratch("java-clients-gateway");
    // In front of 3 brokers: leaders, coordinators and replicas spread
    // over them, reached through the gateway's per-broker ports.
    let backend = Backend::gateway("java-gw", &dir.path().join("gateway"), 3);
    check_portcullis(
        "Java client through the gateway in front of Apache Kafka",
        &backend,
        dir,
    );
}

#[test]
fn java_clients_against_kafka() {
    let started = Instant::now();
    let kafka = KafkaCluster::start(
        "java-clients",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[ALICE],
            authorizer: true,
            ..Default::default()
        },
    );
    let dir = scratch("java-clients-kafka");
    let ca = kafka.ca_file();
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: ADMIN_PASSWORD,
        dir: dir.path(),
    };
    // What Portcullis's test ACL file gives every user, as Kafka ACLs.
    let mut checks = vec!["grant_user_all"];
    let selected = selected();
    checks.extend(&selected);
    let (outcomes, elapsed) = run_checks(&target, &checks);
    print_table(
        &format!(
            "Java client against Apache Kafka {}",
            common::kafka::version()
        ),
        &outcomes,
        elapsed,
        Column::Kafka,
    );
    let wrong: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| format!("{}: {}", o.check, o.detail))
        .collect();
    if !wrong.is_empty() {
        eprintln!("{}", kafka.logs_tail(40));
    }
    assert!(
        wrong.is_empty(),
        "{} Java client checks failed against Apache Kafka (the reference: the check is wrong):\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
    let cells: Vec<(String, Cell)> = outcomes
        .iter()
        .filter(|o| o.check != "grant_user_all")
        .map(|o| (o.check.clone(), Cell::Works))
        .collect();
    compat::record(
        &client_name(),
        Column::Kafka,
        &cells,
        selected.len() == CHECKS.len(),
    );
    eprintln!("java_clients_against_kafka: {:.1?}", started.elapsed());
}
