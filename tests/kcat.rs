//! kcat (librdkafka's command-line client) against a real broker: metadata
//! listing and a line-oriented produce/consume round trip. kcat cannot
//! create topics, so the Python admin client does that.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{run_python, scratch, Broker};

/// A hung kcat must fail the test, not hang it; generous for busy CI.
const KCAT_TIMEOUT: Duration = Duration::from_secs(120);

/// Fails loudly when kcat is missing: a skipped test would look like a pass.
fn require_kcat() {
    match Command::new("kcat").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`kcat -V` failed ({}); reinstall it: apt-get install kcat\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("kcat is not on PATH ({e}); install it: apt-get install kcat"),
    }
}

/// Runs kcat with `stdin` fed to it, killing it at the deadline.
fn kcat(args: &[&str], stdin: &[u8]) -> Output {
    require_kcat();
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat");
    // Feed and drain on threads so a full pipe cannot deadlock us.
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + KCAT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for kcat") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap();
            panic!(
                "kcat {args:?} still running after {KCAT_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn kcat_ok(args: &[&str], stdin: &[u8]) -> String {
    let out = kcat(args, stdin);
    assert!(
        out.status.success(),
        "kcat {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("kcat output is UTF-8")
}

fn create_topic(broker: &Broker, topic: &str, partitions: u32) {
    run_python(
        "create_topic.py",
        &[&broker.bootstrap, topic, &partitions.to_string()],
    );
}

#[test]
fn kcat_lists_broker_and_topic_partitions() {
    let started = Instant::now();
    require_kcat();
    let dir = scratch("kcat-metadata");
    let broker = Broker::start(dir.path(), "");
    create_topic(&broker, "kcat-meta", 3);

    let listing = kcat_ok(&["-L", "-b", &broker.bootstrap], b"");
    let lines: Vec<&str> = listing.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"1 brokers:"),
        "expected exactly one broker:\n{listing}"
    );
    // The broker must advertise the address the client came in on, or every
    // follow-up connection would go somewhere else.
    let broker_line = format!("broker 0 at {} (controller)", broker.bootstrap);
    assert!(
        lines.contains(&broker_line.as_str()),
        "no `{broker_line}` in:\n{listing}"
    );

    let header = "topic \"kcat-meta\" with 3 partitions:";
    let at = lines
        .iter()
        .position(|l| *l == header)
        .unwrap_or_else(|| panic!("no `{header}` in:\n{listing}"));
    for p in 0..3 {
        let want = format!("partition {p}, leader 0, replicas: 0, isrs: 0");
        assert_eq!(
            lines.get(at + 1 + p),
            Some(&want.as_str()),
            "partition {p} of kcat-meta:\n{listing}"
        );
    }
    assert!(
        !listing.to_lowercase().contains("error"),
        "errors in metadata listing:\n{listing}"
    );
    eprintln!("kcat metadata test: {:.1?}", started.elapsed());
}

/// `kcat -P -K:`: one record per line, key before the first `:`.
fn produce_lines(broker: &Broker, topic: &str, lines: &[(String, String)]) {
    let input: String = lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    kcat_ok(
        &["-P", "-b", &broker.bootstrap, "-t", topic, "-K:"],
        input.as_bytes(),
    );
}

/// Every record from the beginning, formatted by `-f`; `-e` exits at the end
/// of the last partition.
fn consume_all(broker: &Broker, topic: &str, format: &str) -> String {
    let args = [
        "-C",
        "-b",
        &broker.bootstrap,
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-f",
        format,
    ];
    kcat_ok(&args, b"")
}

/// Lines as kcat -K: reads them: key, then value after the first `:`.
fn sample_lines() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("alpha".into(), "1".into()),
        ("beta".into(), "value with spaces".into()),
        // Only the first delimiter splits: the rest stays in the value.
        ("gamma".into(), "a:b:c".into()),
        ("unicode".into(), "héllo wörld ✓".into()),
        ("empty".into(), String::new()),
    ];
    v.extend((0..2000).map(|i| (format!("k{i}"), format!("v{i}-{}", "x".repeat(i % 97)))));
    v
}

#[test]
fn kcat_produce_then_consume_single_partition_exact() {
    let started = Instant::now();
    require_kcat();
    let dir = scratch("kcat-roundtrip");
    let broker = Broker::start(dir.path(), "");
    let topic = "kcat-lines";
    create_topic(&broker, topic, 1);

    let lines = sample_lines();
    produce_lines(&broker, topic, &lines);
    let got = consume_all(&broker, topic, "%k=%s\n");
    let want: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    // One partition: content and order must both be exact.
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "kcat read back {} lines, wrote {}; first difference at line {first}: got {:?}, want {:?}",
            got.lines().count(),
            want.lines().count(),
            got.lines().nth(first),
            want.lines().nth(first)
        );
    }
    eprintln!(
        "kcat single-partition round trip: {:.1?}",
        started.elapsed()
    );
}

#[test]
fn kcat_keyed_produce_then_consume_three_partitions() {
    let started = Instant::now();
    require_kcat();
    let dir = scratch("kcat-keyed");
    let broker = Broker::start(dir.path(), "");
    let topic = "kcat-keyed";
    create_topic(&broker, topic, 3);

    let lines = sample_lines();
    produce_lines(&broker, topic, &lines);
    let got = consume_all(&broker, topic, "%p %o %k=%s\n");

    // Partitions interleave arbitrarily in kcat's output, so check per
    // partition: offsets dense from 0, records in the order they were sent.
    let position: BTreeMap<String, usize> = lines
        .iter()
        .enumerate()
        .map(|(i, (k, _))| (k.clone(), i))
        .collect();
    let mut per_partition: BTreeMap<u32, Vec<(i64, String, String)>> = BTreeMap::new();
    for line in got.lines() {
        let (p, rest) = line.split_once(' ').expect("partition field");
        let (o, kv) = rest.split_once(' ').expect("offset field");
        let (k, v) = kv.split_once('=').expect("key=value");
        per_partition.entry(p.parse().unwrap()).or_default().push((
            o.parse().unwrap(),
            k.to_string(),
            v.to_string(),
        ));
    }
    let mut seen = 0;
    for (p, records) in &per_partition {
        assert!(*p < 3, "record in nonexistent partition {p}");
        let mut last = None;
        for (n, (offset, k, v)) in records.iter().enumerate() {
            assert_eq!(*offset, n as i64, "partition {p}: offsets not dense");
            let i = *position
                .get(k)
                .unwrap_or_else(|| panic!("partition {p}: unknown key {k:?}"));
            assert_eq!(
                v, &lines[i].1,
                "partition {p} offset {offset}: value of {k}"
            );
            assert!(
                last.is_none_or(|l| l < i),
                "partition {p}: key {k} (line {i}) read after line {last:?}"
            );
            last = Some(i);
            seen += 1;
        }
    }
    assert_eq!(seen, lines.len(), "every line read back exactly once");
    // Keys spread over partitions: all three must have received something.
    assert_eq!(
        per_partition.len(),
        3,
        "records landed in only {:?}",
        per_partition.keys().collect::<Vec<_>>()
    );
    eprintln!("kcat three-partition round trip: {:.1?}", started.elapsed());
}

#[test]
fn kcat_logs_in_with_scram_over_tls_and_wrong_password_is_refused() {
    // Debian's kcat links librdkafka 2.0, whose SCRAM client repeats its own
    // nonce in client-final; the broker accepts that form (see scram.rs).
    require_kcat();
    let dir = common::scratch("kcat-sasl");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user("kate", "kate-secret");
    let ca = broker.ca_file();
    let sasl = |pw: &str| -> Vec<String> {
        vec![
            "-b".into(),
            broker.addr("SASL_SSL").into(),
            "-X".into(),
            "security.protocol=SASL_SSL".into(),
            "-X".into(),
            "sasl.mechanisms=SCRAM-SHA-512".into(),
            "-X".into(),
            "sasl.username=kate".into(),
            "-X".into(),
            format!("sasl.password={pw}"),
            "-X".into(),
            format!("ssl.ca.location={}", ca.display()),
            "-m".into(),
            "5".into(),
            "-L".into(),
        ]
    };
    let ok = common::wait_for("kcat SASL_SSL login", Duration::from_secs(30), || {
        let args = sasl("kate-secret");
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = kcat(&refs, b"");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("1 brokers")).then_some(text)
    });
    assert!(ok.contains("(controller)"), "{ok}");
    let args = sasl("wrong");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kcat(&refs, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a wrong password must not list metadata"
    );
    assert!(
        err.contains("Authentication failed during authentication due to invalid credentials"),
        "{err}"
    );
}
