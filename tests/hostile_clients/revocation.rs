//! Hostile clients: revocation (see main.rs).
//!
//! An attacker who fills the broker's fd table makes every reload fail with
//! "Too many open files". A revocation made meanwhile (`user passwd`,
//! `acl remove`) must not be lost: the broker keeps the old state, says so
//! (log, audit, the CLI), retries, and applies the change once the fault
//! clears, without any further change to the files. Also: a refused file is
//! never echoed (a symlink to a private key), and a missing ACL file is
//! refused like any invalid version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use portcullis::util::hot_reload::{ack_path_for, hex, read_ack, sha256, Ack};

use crate::common::audit_files::{is, n, raw_lines, s};
use crate::common::{log_tail, run_script_ok, scratch, wait_for, Broker, BIN};

const SASL_AUTHENTICATION_FAILED: i64 = 58;
const TOPIC_AUTHORIZATION_FAILED: i64 = 29;
/// Longest retry delay (5 s) plus room for a loaded machine.
const APPLY_DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "SECRETMARKER";

fn acl_text(bob_writes: bool) -> String {
    let mut t = String::from("allow_everyone_if_no_acl_found: false\nrules:\n");
    if bob_writes {
        t.push_str("  - {allow: \"User:bob\", operations: [write, describe], topic: \"revo\"}\n");
    }
    t.push_str("  - {allow: \"User:alice\", operations: [describe], topic: \"revo\"}\n");
    t
}

struct Setup {
    broker: Broker,
    acl: PathBuf,
    creds: PathBuf,
    audit: PathBuf,
    env: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn start(name: &str) -> Setup {
        let dir = scratch(name);
        let acl = dir.path().join("acls.yaml");
        std::fs::write(&acl, acl_text(true)).unwrap();
        let broker =
            Broker::start_secure(dir.path(), &format!("acl:\n  file: {}\n", acl.display()));
        let creds = dir.path().join("credentials.yaml");
        broker.add_user("alice", "alice-old-pw");
        broker.add_user("bob", "bob-pw");
        let env = serde_json::json!({
            "bootstrap": broker.addr("SASL_SSL"),
            "ca": broker.ca_file(),
        })
        .to_string();
        let s = Setup {
            audit: dir.path().join("audit/audit.log"),
            broker,
            acl,
            creds,
            env,
            _dir: dir,
        };
        s.wait_in_force(&s.creds.clone(), 0);
        s.wait_in_force(&s.acl.clone(), 0);
        s
    }

    /// Runs the probes; returns each one's Kafka error code (0: success).
    fn probe(&self, probes: &[&str]) -> Vec<i64> {
        let mut args = vec![self.env.as_str()];
        args.extend_from_slice(probes);
        let out = run_script_ok("revocation_probe.py", &args, || log_tail(&self.broker, 40));
        out.lines()
            .filter_map(|l| l.strip_prefix("RESULT "))
            .map(|j| {
                let v: Value = serde_json::from_str(j).unwrap();
                n(&v, "code").unwrap()
            })
            .collect()
    }

    fn admin_pw(&self) -> String {
        self.broker.admin_password.clone().unwrap()
    }

    /// Waits until the broker acknowledges the content on disk of `file`
    /// with a generation above `after`; returns the acknowledgement.
    fn wait_in_force(&self, file: &Path, after: u64) -> Ack {
        wait_for(
            &format!("the broker to acknowledge {}", file.display()),
            APPLY_DEADLINE,
            || {
                let want = hex(&sha256(&std::fs::read(file).ok()?));
                read_ack(&ack_path_for(file))
                    .ok()
                    .flatten()
                    .filter(|a| a.sha256 == want && a.generation > after)
            },
        )
    }

    fn ack(&self, file: &Path) -> Ack {
        read_ack(&ack_path_for(file))
            .unwrap()
            .expect("an acknowledgement")
    }

    fn records(&self) -> Vec<Value> {
        raw_lines(&self.audit)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn cli(&self, args: &[&str], stdin: &str) -> (Option<i32>, String, String) {
        let out = self.broker.cli(args, stdin);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The soft RLIMIT_NOFILE of `pid`; sets it to `new` if given.
fn nofile(pid: u32, new: Option<u64>) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let mut set = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit reads `set` and writes `old`, both live locals.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    if let Some(n) = new {
        set.rlim_cur = n;
        set.rlim_max = old.rlim_max;
        // SAFETY: as above.
        let rc = unsafe {
            libc::prlimit(
                pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                &set,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    }
    old.rlim_cur
}

/// The lowest fd number `pid` does not use: with the soft limit there (or
/// lower), every open, socket or accept fails with EMFILE, as with a full
/// fd table. Capped low so a descriptor closed meanwhile cannot fall under
/// it (the first ten are the broker's own, opened at start).
fn fd_table_full_limit(pid: u32) -> u64 {
    let used: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|f| !used.contains(f)).unwrap();
    lowest_free.min(10)
}

/// Refused reload attempts of one file ("ACL file", "credential file").
fn refused_reloads(recs: &[Value], what: &str) -> Vec<Value> {
    recs.iter()
        .filter(|r| {
            (is(r, "event", "acl_reload") || is(r, "event", "file_reload"))
                && is(r, "decision", "refused")
                && s(&r["details"], "what") == Some(what)
        })
        .cloned()
        .collect()
}

/// The attack: the broker cannot open files while `user passwd` and `acl
/// remove` rewrite theirs. Both are reported as not applied, the broker
/// retries (log + audit) with the old state in force, and once the fault
/// clears both are applied without any further file change.
#[test]
fn revocations_made_while_reloads_fail_are_applied_once_the_fault_clears() {
    let t = Setup::start("revocation-emfile");
    let admin = format!("create:admin:{}:revo", t.admin_pw());
    assert_eq!(
        t.probe(&[
            &admin,
            "login:alice:alice-old-pw",
            "produce:bob:bob-pw:revo"
        ]),
        vec![0, 0, 0],
        "before the change"
    );
    let creds_before = t.ack(&t.creds);
    let acl_before = t.ack(&t.acl);
    assert_eq!(creds_before.pid, t.broker.pid());

    // The fault: no descriptor can be opened in the broker.
    let pid = t.broker.pid();
    let original = nofile(pid, None);
    let limit = fd_table_full_limit(pid);
    nofile(pid, Some(limit));
    let fault_start = Instant::now();

    let (code, out, err) = t.cli(
        &[
            "user",
            "passwd",
            "alice",
            "--password-stdin",
            "--wait-secs",
            "3",
        ],
        "alice-new-pw\n",
    );
    assert!(out.contains("password of `alice` changed"), "{out}{err}");
    assert!(
        err.contains("NOT yet applied by a running broker")
            && err.contains(&format!("pid {pid}"))
            && err.contains(&format!("generation {}", creds_before.generation)),
        "user passwd during the fault: {err}"
    );
    assert_eq!(code, Some(3), "user passwd exit status: {err}");
    let (code, out, err) = t.cli(
        &[
            "acl",
            "remove",
            "--principal",
            "User:bob",
            "--topic",
            "revo",
            "--wait-secs",
            "3",
        ],
        "",
    );
    assert!(out.contains("removed"), "{out}{err}");
    assert!(
        err.contains("NOT yet applied by a running broker")
            && err.contains(&format!("generation {}", acl_before.generation)),
        "acl remove during the fault: {err}"
    );
    assert_eq!(code, Some(3), "acl remove exit status: {err}");

    // The broker keeps retrying, visibly, with the old state in force.
    let recs = wait_for("retried reloads in the audit log", APPLY_DEADLINE, || {
        let recs = t.records();
        let acl = refused_reloads(&recs, "ACL file");
        let cred = refused_reloads(&recs, "credential file");
        (acl.len() >= 4 && cred.len() >= 4).then_some(recs)
    });
    let fault_secs = fault_start.elapsed().as_secs_f64();
    for event in ["ACL file", "credential file"] {
        let refused = refused_reloads(&recs, event);
        for r in &refused {
            let reason = s(r, "reason").unwrap_or_default();
            assert!(
                reason.contains("Too many open files"),
                "{event} refused for another reason: {r}"
            );
        }
        let attempts: Vec<i64> = refused
            .iter()
            .map(|r| n(&r["details"], "attempt").unwrap())
            .collect();
        assert!(
            attempts.windows(2).all(|w| w[1] == w[0] + 1),
            "{event}: attempts {attempts:?}"
        );
        let delays: Vec<i64> = refused
            .iter()
            .map(|r| n(&r["details"], "retry_in_ms").unwrap())
            .collect();
        assert_eq!(
            &delays[..3],
            &[100, 200, 400],
            "{event}: backoff {delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= 5000), "{event}: {delays:?}");
        eprintln!(
            "{event}: {} refused attempts in {fault_secs:.1} s of fault, retry delays {delays:?} ms",
            refused.len()
        );
    }
    assert_eq!(
        t.ack(&t.creds),
        creds_before,
        "credentials acknowledged during the fault"
    );
    assert_eq!(
        t.ack(&t.acl),
        acl_before,
        "ACL acknowledged during the fault"
    );
    let log = t.broker.log();
    let log_lines = log
        .lines()
        .filter(|l| l.contains("refused, the version in force stays"))
        .count();
    assert!(
        log_lines >= 2,
        "no retry log lines:\n{}",
        log_tail(&t.broker, 30)
    );
    let attempts = refused_reloads(&t.records(), "ACL file").len()
        + refused_reloads(&t.records(), "credential file").len();
    assert!(
        log_lines <= attempts,
        "{log_lines} log lines for {attempts} failed attempts: not rate-limited"
    );
    eprintln!(
        "fault: soft RLIMIT_NOFILE {limit} (was {original}); {attempts} failed attempts audited, {log_lines} log lines"
    );

    // The fault clears; nothing touches the files again.
    let creds_mtime = std::fs::metadata(&t.creds).unwrap().modified().unwrap();
    let acl_mtime = std::fs::metadata(&t.acl).unwrap().modified().unwrap();
    nofile(pid, Some(original));
    let cleared = Instant::now();
    let creds_after = t.wait_in_force(&t.creds, creds_before.generation);
    let acl_after = t.wait_in_force(&t.acl, acl_before.generation);
    let applied_in = cleared.elapsed();
    eprintln!(
        "applied {applied_in:.1?} after the fault cleared: credentials generation {} -> {}, ACL generation {} -> {}",
        creds_before.generation, creds_after.generation, acl_before.generation, acl_after.generation
    );
    assert!(applied_in <= APPLY_DEADLINE);
    assert_eq!(
        std::fs::metadata(&t.creds).unwrap().modified().unwrap(),
        creds_mtime
    );
    assert_eq!(
        std::fs::metadata(&t.acl).unwrap().modified().unwrap(),
        acl_mtime
    );

    assert_eq!(
        t.probe(&[
            "login:alice:alice-old-pw",
            "login:alice:alice-new-pw",
            "produce:bob:bob-pw:revo"
        ]),
        vec![SASL_AUTHENTICATION_FAILED, 0, TOPIC_AUTHORIZATION_FAILED],
        "after the fault cleared: old password, new password, removed ACL"
    );
    let recs = t.records();
    let applied = recs
        .iter()
        .find(|r| {
            is(r, "event", "acl_reload")
                && is(r, "decision", "accepted")
                && n(&r["details"], "failed_attempts").unwrap_or(0) > 0
        })
        .expect("an acl_reload accepted after failed attempts");
    assert_eq!(n(&applied["details"], "rules"), Some(1), "{applied}");

    // The CLI now says applied.
    let (code, _, err) = t.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        "alice-third-pw\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("applied by the running broker (generation"),
        "{err}"
    );
}

fn fake_key(dir: &Path) -> PathBuf {
    let key = dir.join("ca.key");
    std::fs::write(
        &key,
        format!("-----BEGIN PRIVATE KEY----- {SECRET}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC{SECRET}\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    key
}

/// Replaces `file` by a symlink to `target` in one rename.
fn symlink_over(target: &Path, file: &Path) {
    let tmp = file.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// `serve` with this config must fail; returns its stderr.
fn serve_fails(config: &Path) -> String {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker started with {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `acl/acls.yaml -> ca.key`: the refusal names the path, line and kind of
/// error, and neither the broker's log, nor the audit log, nor the CLI
/// prints the key. Same for the credential store and the config file.
#[test]
fn a_refused_file_is_never_echoed() {
    let t = Setup::start("revocation-echo");
    let dir = t.broker.dir.clone();
    let key = fake_key(&dir);
    let acl_saved = dir.join("acls.saved");
    let creds_saved = dir.join("credentials.saved");
    std::fs::copy(&t.acl, &acl_saved).unwrap();
    std::fs::copy(&t.creds, &creds_saved).unwrap();

    symlink_over(&key, &t.acl);
    symlink_over(&key, &t.creds);
    let recs = wait_for("both refusals in the audit log", APPLY_DEADLINE, || {
        let recs = t.records();
        (!refused_reloads(&recs, "ACL file").is_empty()
            && !refused_reloads(&recs, "credential file").is_empty())
        .then_some(recs)
    });
    let refusal = &refused_reloads(&recs, "ACL file")[0];
    let reason = s(refusal, "reason").unwrap();
    assert!(
        reason.contains(&t.acl.display().to_string()) && reason.contains("line 1"),
        "{reason}"
    );
    eprintln!("refusal: {reason}");
    // The rules and users in force stay.
    assert_eq!(t.probe(&["login:alice:alice-old-pw"]), vec![0]);

    let mut outputs = Vec::new();
    for args in [
        vec!["acl", "list"],
        vec![
            "acl",
            "add",
            "--allow",
            "--principal",
            "User:x",
            "--operation",
            "read",
            "--topic",
            "t",
        ],
        vec!["user", "list"],
    ] {
        let (code, out, err) = t.cli(&args, "");
        assert_ne!(code, Some(0), "{args:?} on a key file succeeded: {out}");
        outputs.push(format!("{args:?}: {out}{err}"));
    }
    for config_args in [vec!["user", "list"], vec!["acl", "list"]] {
        let out = Command::new(BIN)
            .args(&config_args)
            .arg("--config")
            .arg(&key)
            .output()
            .unwrap();
        assert!(!out.status.success());
        outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    outputs.push(serve_fails(&key));
    // A broker started on the symlinked ACL file refuses to start, quietly.
    let cfg = dir.join("echo-start.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {d}/data2\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\nacl:\n  file: {a}\naudit:\n  file: {d}/audit2/audit.log\nops:\n  address: 127.0.0.1:0\n",
            d = dir.display(),
            a = t.acl.display()
        ),
    )
    .unwrap();
    let start_err = serve_fails(&cfg);
    assert!(start_err.contains("line 1"), "{start_err}");
    outputs.push(start_err);

    let all = outputs.join("\n");
    assert!(!all.contains(SECRET), "a CLI printed the key:\n{all}");
    assert!(
        !all.contains("BEGIN PRIVATE KEY"),
        "a CLI printed the key:\n{all}"
    );
    assert!(
        !t.broker.log().contains(SECRET),
        "the broker log has the key"
    );
    let audit: String = raw_lines(&t.audit).join("\n");
    assert!(!audit.contains(SECRET), "the audit log has the key");
    eprintln!(
        "{} CLI/start outputs, {} bytes of broker log, {} bytes of audit: no key material",
        outputs.len(),
        t.broker.log().len(),
        audit.len()
    );

    // Put the files back: the broker is in sync again.
    std::fs::rename(&acl_saved, &t.acl).unwrap();
    std::fs::rename(&creds_saved, &t.creds).unwrap();
    wait_for("in_sync records", APPLY_DEADLINE, || {
        let recs = t.records();
        let in_sync = |e: &str| {
            recs.iter()
                .any(|r| is(r, "event", e) && is(r, "decision", "in_sync"))
        };
        (in_sync("acl_reload") && in_sync("file_reload")).then_some(())
    });
}

/// A missing ACL file: at start the broker refuses (unless
/// `acl.allow_missing`); at runtime the rules in force stay, with a log
/// line and audit records, until the file is back.
#[test]
fn a_missing_acl_file_is_refused() {
    let t = Setup::start("revocation-missing");
    let dir = t.broker.dir.clone();
    assert_eq!(
        t.probe(&[
            &format!("create:admin:{}:revo", t.admin_pw()),
            "produce:bob:bob-pw:revo"
        ]),
        vec![0, 0]
    );
    let saved = dir.join("acls.saved");
    std::fs::rename(&t.acl, &saved).unwrap();
    let recs = wait_for("missing-file refusals", APPLY_DEADLINE, || {
        let r = refused_reloads(&t.records(), "ACL file");
        (r.len() >= 2).then_some(r)
    });
    assert!(
        s(&recs[0], "reason").unwrap().contains("does not exist"),
        "{}",
        recs[0]
    );
    assert!(t.broker.log().contains("does not exist"));
    assert_eq!(
        t.probe(&["produce:bob:bob-pw:revo"]),
        vec![0],
        "the rules in force must stay while the file is missing"
    );
    std::fs::rename(&saved, &t.acl).unwrap();
    wait_for("in sync again", APPLY_DEADLINE, || {
        t.records()
            .iter()
            .any(|r| is(r, "event", "acl_reload") && is(r, "decision", "in_sync"))
            .then_some(())
    });

    // At start: refused without the file, unless allowed.
    let missing = dir.join("no-such-acls.yaml");
    let cfg = dir.join("missing-start.yaml");
    let base = format!(
        "data_dir: {d}/data3\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:0\naudit:\n  file: {d}/audit3/audit.log\nacl:\n  file: {m}\nops:\n  address: 127.0.0.1:0\n",
        d = dir.display(),
        m = missing.display()
    );
    std::fs::write(&cfg, &base).unwrap();
    let err = serve_fails(&cfg);
    assert!(
        err.contains("does not exist") && err.contains("allow_missing"),
        "{err}"
    );
    let allowed = scratch("revocation-missing-allowed");
    let b = Broker::start(
        allowed.path(),
        &format!(
            "acl:\n  file: {}\n  allow_missing: true\n",
            allowed.path().join("none.yaml").display()
        ),
    );
    assert!(!b.bootstrap.is_empty());
}
