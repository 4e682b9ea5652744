//! Consumer groups end to end: the classic rebalance protocol, committed
//! offsets (durable in `__consumer_offsets`), the group admin APIs, the
//! `portcullis group` CLI and group ACLs, driven by the real clients
//! (confluent-kafka/librdkafka and kafka-python). Each test has its own
//! scratch directory and broker; the client side lives in
//! `tests/python/group_*.py`, each of which prints "ALL OK" last.
//!
//! The brokers run with a 300 ms initial rebalance delay (the default 3 s
//! would only slow every test down); clients use 500 ms heartbeats.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use common::{clean_log, log_tail, python, run_script_ok, scratch, wait_for, Broker};

const GROUPS_YAML: &str = "groups:\n  initial_rebalance_delay_ms: 300\n";

fn show_broker_log(broker: &Broker) {
    eprintln!("{}", log_tail(broker, 60));
}

/// Runs a script, requires its "ALL OK", and on failure shows the end of
/// the broker's log as well.
fn run_script(broker: &Broker, script: &str, args: &[&str]) -> String {
    run_script_ok(script, args, || log_tail(broker, 60))
}

/// The JSON after `KEY ` on a script's output line.
fn emitted(out: &str, key: &str) -> serde_json::Value {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} line in:\n{out}"));
    serde_json::from_str(line).unwrap()
}

fn start(name: &str) -> (tempfile::TempDir, Broker) {
    let dir = scratch(name);
    let broker = Broker::start(dir.path(), GROUPS_YAML);
    (dir, broker)
}

// ---------------------------------------------------------------------- 1

/// Three confluent-kafka consumers in one group on a 6-partition topic get
/// two partitions each (disjoint, all six covered) and together consume
/// 3,000 records exactly once, each record from its own partition's owner,
/// committing as they go; the group's commits end at the high watermarks.
#[test]
fn three_consumers_split_partitions_and_consume_exactly_once() {
    let (_dir, broker) = start("cg-split");
    run_script(&broker, "group_split.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 2

/// One of three members close()s (LeaveGroup): the other two hold all six
/// partitions long before its session (30 s) could have expired, and then
/// consume exactly the records produced afterwards (nothing committed is
/// read again).
#[test]
fn leaving_member_partitions_move_to_the_others() {
    let (_dir, broker) = start("cg-leave");
    run_script(&broker, "group_takeover.py", &[&broker.bootstrap, "leave"]);
}

/// A member in a child process (session.timeout.ms=6000) is killed with
/// SIGKILL, so it never leaves: the survivor's assignment does not change
/// before the dead member's session can have expired, then it takes over
/// all six partitions and resumes exactly at the dead member's commits.
/// The broker logs the expiry.
#[test]
fn killed_member_partitions_move_after_session_timeout() {
    let (_dir, broker) = start("cg-kill");
    run_script(&broker, "group_takeover.py", &[&broker.bootstrap, "kill"]);
    let log = clean_log(&broker.log());
    assert!(
        log.lines()
            .any(|l| l.contains("member session expired") && l.contains("group=takeover-kill")),
        "the broker did not log the session expiry"
    );
}

// ---------------------------------------------------------------------- 3

/// Commit, stop, restart: a consumer commits after processing 700 records
/// (offsets stored one by one), processes 200 more without committing and
/// closes; a new member starts exactly at the commits: the 200 again, every
/// later record, and none of the 700.
#[test]
fn consumer_resumes_exactly_after_last_commit() {
    let (_dir, broker) = start("cg-resume");
    run_script(&broker, "group_resume.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 4

/// Committed offsets survive a clean restart and, for acknowledged commits,
/// a SIGKILL: committed() returns them afterwards and a new member resumes
/// there. The second round moves offsets both forward and back and adds a
/// second group.
#[test]
fn committed_offsets_survive_restart_and_kill9() {
    let (_dir, mut broker) = start("cg-restart");
    let b = broker.bootstrap.clone();
    let round1 = r#"{"0": 100, "1": 250, "2": 399}"#;
    let round2 = r#"{"0": 300, "1": 10, "2": 400}"#;
    let other = r#"{"0": 1, "1": 2, "2": 3}"#;
    run_script(&broker, "group_restart.py", &[&b, "setup"]);
    run_script(&broker, "group_restart.py", &[&b, "commit", "g1", round1]);

    broker.restart();
    assert_eq!(broker.bootstrap, b);
    run_script(&broker, "group_restart.py", &[&b, "verify", "g1", round1]);
    run_script(&broker, "group_restart.py", &[&b, "commit", "g1", round2]);
    run_script(&broker, "group_restart.py", &[&b, "commit", "g2", other]);

    broker.restart_after_kill9();
    run_script(&broker, "group_restart.py", &[&b, "verify", "g1", round2]);
    run_script(&broker, "group_restart.py", &[&b, "verify", "g2", other]);
}

// ---------------------------------------------------------------------- 5

/// kafka-python's own group code: a KafkaConsumer with group_id consumes
/// everything, commits, committed() equals the end offsets and a new member
/// resumes there; two KafkaConsumers (a thread each) split four partitions
/// 2/2 and consume the next records exactly once.
#[test]
fn kafka_python_group_consume_commit_and_split() {
    let (_dir, broker) = start("cg-kafka-python");
    run_script(&broker, "group_kafka_python.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 6

/// cooperative-sticky: a third member joins a 3/3 group; each of the two
/// keeps two of its three partitions, is revoked only the one that moves
/// (incrementally, never everything) and gets nothing re-assigned; the
/// newcomer gets the two moved ones. Records are consumed exactly once.
#[test]
fn cooperative_sticky_rebalance_is_incremental() {
    let (_dir, broker) = start("cg-cooperative");
    run_script(&broker, "group_cooperative.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 7

/// Static membership: a follower with group.instance.id=static-1 closes
/// (no LeaveGroup: it stays a member) and a new consumer with the same
/// instance id gets the same partitions back at once, while the other
/// member sees no rebalance at all.
#[test]
fn static_member_restart_keeps_assignment_without_rebalance() {
    let (_dir, broker) = start("cg-static");
    run_script(&broker, "group_static.py", &[&broker.bootstrap, "follower"]);
}

/// The same when the static member is the group's leader. Kafka's
/// coordinator does not rebalance then either (a Stable group whose
/// selected protocol stays the same hands the rejoining static leader the
/// current generation; KIP-345, KIP-814); Portcullis starts a full
/// rebalance, so the other member is revoked everything.
#[test]
fn static_leader_restart_keeps_assignment_without_rebalance() {
    let (_dir, broker) = start("cg-static-leader");
    run_script(&broker, "group_static.py", &[&broker.bootstrap, "leader"]);
}

/// The same with cooperative-sticky members. Their subscription metadata
/// carries the owned partitions and the generation, so the restarted
/// member's differs from its predecessor's; Portcullis rebalances when the
/// metadata bytes differ (coordinator.rs join(): `unchanged`), where Kafka
/// only rebalances a Stable group if the selected protocol would change.
/// The other member sees a (non-revoking) cooperative rebalance.
#[test]
fn static_member_restart_cooperative_without_rebalance() {
    let (_dir, broker) = start("cg-static-coop");
    run_script(
        &broker,
        "group_static.py",
        &[&broker.bootstrap, "cooperative"],
    );
}

// -------------------------------------------------- protocol and retention

/// Protocol selection: [range, roundrobin] and [roundrobin] members get
/// roundrobin; a cooperative-sticky-only consumer is refused with
/// INCONSISTENT_GROUP_PROTOCOL (23) without disturbing the group; session
/// timeouts outside [min, max]_session_timeout_ms are refused with
/// INVALID_SESSION_TIMEOUT (26).
#[test]
fn protocol_selection_and_join_validation() {
    let (_dir, broker) = start("cg-protocol");
    run_script(&broker, "group_protocol.py", &[&broker.bootstrap]);
}

/// groups.initial_rebalance_delay_ms (5 s here): the first member of a new
/// group waits out the delay, so a second member joining meanwhile is in
/// the first generation: one assignment of three partitions each, no
/// revocation, and nothing assigned before the delay has passed.
#[test]
fn initial_rebalance_delay_gathers_members_into_one_generation() {
    let dir = scratch("cg-initial-delay");
    let broker = Broker::start(dir.path(), "groups:\n  initial_rebalance_delay_ms: 5000\n");
    run_script(&broker, "group_initial_delay.py", &[&broker.bootstrap]);
}

const RETENTION_YAML: &str =
    "groups:\n  initial_rebalance_delay_ms: 300\n  offsets_retention_ms: 2000\n";

/// groups.offsets_retention_ms: the offsets of a group that has been empty
/// that long expire (not before); those of a group with a member stay.
#[test]
fn offsets_of_an_empty_group_expire_after_retention() {
    let dir = scratch("cg-retention");
    let broker = Broker::start(dir.path(), RETENTION_YAML);
    run_script(
        &broker,
        "group_retention.py",
        &[&broker.bootstrap, "offsets"],
    );
}

/// After its offsets expired, an empty group is gone in Kafka (Empty
/// without offsets -> Dead, removed from the coordinator). Portcullis's
/// expiry task (src/broker.rs spawn_offset_expiry) only tombstones the
/// offsets: the group stays in the coordinator's map, listed as Empty,
/// forever (as does any group that never committed) — every throwaway
/// group.id is kept until a restart.
#[test]
fn expired_empty_group_is_forgotten() {
    let dir = scratch("cg-retention-group");
    let broker = Broker::start(dir.path(), RETENTION_YAML);
    run_script(&broker, "group_retention.py", &[&broker.bootstrap, "group"]);
}

/// Static membership fencing: a second librdkafka consumer with the same
/// group.instance.id takes the first one's place; the first gets the fatal
/// FENCED_INSTANCE_ID within one session timeout and never gets anything
/// back, the coordinator never lists two members (issue #15 item 1).
#[test]
fn duplicate_static_member_is_fenced_fatally() {
    let (_dir, broker) = start("cg-static-fence");
    run_script(&broker, "group_static_fencing.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 8

fn encode_request<Q: Encodable>(api: ApiKey, version: i16, corr: i32, req: &Q) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("cg-raw")));
    let mut buf = bytes::BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

fn call<Q: Encodable, R: Decodable>(addr: &str, api: ApiKey, version: i16, req: &Q) -> R {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&encode_request(api, version, 7, req)).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let mut buf = bytes::Bytes::from(body);
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    R::decode(&mut buf, version).unwrap()
}

/// ListGroups (incl. a state filter) and DescribeGroups through
/// confluent-kafka's AdminClient show states, members, client ids and
/// assignments; DeleteGroups fails with NON_EMPTY_GROUP (68) while the
/// group has members and GROUP_ID_NOT_FOUND (69) for an unknown one, and on
/// an empty group succeeds and takes its offsets along; OffsetFetch one
/// group per call (confluent-kafka) and several in one v8 request
/// (kafka-python, and raw here); OffsetDelete is refused with
/// GROUP_SUBSCRIBED_TO_TOPIC (86) for a group with members.
#[test]
fn admin_list_describe_delete_groups_and_fetch_offsets() {
    let (_dir, broker) = start("cg-admin");
    run_script(&broker, "group_admin.py", &[&broker.bootstrap]);

    // One OffsetFetch v8 for two groups: all of admin-other's offsets, and
    // two partitions of a group that has none.
    let topic = |n: &str| TopicName(StrBytes::from_string(n.to_string()));
    let req = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("admin-other")))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("admin-nobody")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic("admin-topic"))
                .with_partition_indexes(vec![0, 1])])),
    ]);
    let resp: OffsetFetchResponse = call(&broker.bootstrap, ApiKey::OffsetFetch, 8, &req);
    // (group, error, [(topic, partition, committed offset, error)])
    type Fetched = Vec<(String, i16, Vec<(String, i32, i64, i16)>)>;
    let got: Fetched = resp
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.error_code,
                g.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                t.name.to_string(),
                                p.partition_index,
                                p.committed_offset,
                                p.error_code,
                            )
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "admin-other".to_string(),
                0,
                vec![("admin-topic".to_string(), 0, 5, 0)]
            ),
            (
                "admin-nobody".to_string(),
                0,
                vec![
                    ("admin-topic".to_string(), 0, -1, 0),
                    ("admin-topic".to_string(), 1, -1, 0)
                ]
            ),
        ],
        "multi-group OffsetFetch v8"
    );
}

// ---------------------------------------------------------------------- 9

/// A group member in a Python process that stays in the group until its
/// stdin is closed.
struct BackgroundMember {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl BackgroundMember {
    fn start(broker: &Broker, group: &str) -> BackgroundMember {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/group_cli.py");
        let stderr = std::fs::File::create(broker.dir.join("member.stderr")).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .args([&broker.bootstrap, "member", group])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the group member");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        BackgroundMember {
            child,
            stdin,
            lines: rx,
        }
    }

    fn wait_line(&self, prefix: &str, broker: &Broker) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) if l.starts_with("FAIL") => {
                    show_broker_log(broker);
                    panic!("group member: {l}")
                }
                Ok(_) => {}
                Err(_) => {
                    show_broker_log(broker);
                    panic!(
                        "group member printed no {prefix}; stderr:\n{}",
                        std::fs::read_to_string(broker.dir.join("member.stderr"))
                            .unwrap_or_default()
                    )
                }
            }
        }
    }

    /// Closes stdin: the member close()s (LeaveGroup) and exits.
    fn stop(&mut self, broker: &Broker) {
        drop(self.stdin.take());
        self.wait_line("ALL OK", broker);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "group member exited with {status}");
    }
}

impl Drop for BackgroundMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `portcullis <args> --bootstrap <broker>` (the config the harness wrote
/// has port 0: the broker picks its port, so the CLI's default from the
/// config would not reach it).
fn cli(broker: &Broker, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--bootstrap", &broker.bootstrap]);
    broker.cli(&all, "")
}

fn cli_ok(broker: &Broker, args: &[&str]) -> String {
    let out = cli(broker, args);
    if !out.status.success() {
        show_broker_log(broker);
    }
    assert!(
        out.status.success(),
        "portcullis {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state `group list` shows for `group`.
fn listed_state(broker: &Broker, group: &str) -> Option<String> {
    let out = cli_ok(broker, &["group", "list"]);
    out.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&group)).then(|| f.get(1).unwrap_or(&"").to_string())
    })
}

/// (partition, committed, end, lag, owner) rows of `group describe` for `topic`.
fn described_offsets(describe: &str, topic: &str) -> Vec<(i32, i64, i64, i64, String)> {
    describe
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 6 || f[0] != topic {
                return None;
            }
            Some((
                f[1].parse().ok()?,
                f[2].parse().ok()?,
                f[3].parse().ok()?,
                f[4].parse().ok()?,
                f[5].to_string(),
            ))
        })
        .collect()
}

/// `reset-offsets` output: "topic partition -> offset" per partition.
fn reset_result(out: &str) -> Vec<(i32, i64)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 4 && f[2] == "->").then(|| (f[1].parse().unwrap(), f[3].parse().unwrap()))
        })
        .collect()
}

fn reset(broker: &Broker, to: &[&str]) -> Vec<(i32, i64)> {
    let mut args = vec![
        "group",
        "reset-offsets",
        "cli-group",
        "--topic",
        "cli-topic",
    ];
    args.extend_from_slice(to);
    reset_result(&cli_ok(broker, &args))
}

fn committed_by_describe(broker: &Broker) -> Vec<(i32, i64)> {
    let out = cli_ok(broker, &["group", "describe", "cli-group"]);
    described_offsets(&out, "cli-topic")
        .into_iter()
        .map(|(p, c, ..)| (p, c))
        .collect()
}

/// A new member of cli-group reads from the committed offsets:
/// (first offset per partition, records read).
fn reread(broker: &Broker) -> (serde_json::Value, u64) {
    let out = run_script(
        broker,
        "group_cli.py",
        &[&broker.bootstrap, "reread", "cli-group"],
    );
    (
        emitted(&out, "FIRSTS"),
        emitted(&out, "COUNT").as_u64().unwrap(),
    )
}

/// `portcullis group`: `list` shows the group and its state; `describe`
/// shows the member, its assignment, committed offsets, end offsets, lag
/// and owner; `reset-offsets` refuses a group with an active member (and
/// changes nothing), and on the empty group moves the offsets
/// --to-earliest (the next member re-reads from 0), --to-offset (clamped
/// to the log), --to-latest and --to-datetime (with a UTC offset).
#[test]
fn cli_group_list_describe_and_reset_offsets() {
    let (_dir, broker) = start("cg-cli");
    let started = Instant::now();
    run_script(&broker, "group_cli.py", &[&broker.bootstrap, "setup"]);

    let mut member = BackgroundMember::start(&broker, "cli-group");
    let ready = member.wait_line("READY", &broker);
    eprintln!("member: {ready}");
    assert_eq!(
        listed_state(&broker, "cli-group").as_deref(),
        Some("Stable")
    );
    let list = cli_ok(&broker, &["group", "list"]);
    let row = list.lines().find(|l| l.starts_with("cli-group")).unwrap();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()
            == ["cli-group", "Stable", "classic", "consumer", "1"],
        "group list row: {row}"
    );

    let describe = cli_ok(&broker, &["group", "describe", "cli-group"]);
    eprintln!("{describe}");
    assert!(
        describe.contains("group cli-group: state Stable, protocol consumer range"),
        "describe header:\n{describe}"
    );
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with("member cli-member-") && l.contains("client cli-member")),
        "describe shows no member cli-member:\n{describe}"
    );
    assert!(
        describe.lines().any(|l| l.trim() == "cli-topic: [0, 1, 2]"),
        "describe shows no assignment:\n{describe}"
    );
    let rows = described_offsets(&describe, "cli-topic");
    let owner = "cli-member".to_string();
    assert_eq!(
        rows,
        vec![
            (0, 60, 100, 40, owner.clone()),
            (1, 70, 100, 30, owner.clone()),
            (2, 80, 100, 20, owner.clone()),
        ],
        "describe offsets:\n{describe}"
    );

    // An active member: no reset, and nothing changes.
    let out = cli(
        &broker,
        &[
            "group",
            "reset-offsets",
            "cli-group",
            "--topic",
            "cli-topic",
            "--to-earliest",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "reset-offsets of a Stable group succeeded"
    );
    assert!(
        stderr.contains("is Stable") && stderr.contains("stop its consumers"),
        "reset-offsets refusal: {stderr}"
    );
    assert_eq!(
        committed_by_describe(&broker),
        vec![(0, 60), (1, 70), (2, 80)]
    );

    member.stop(&broker);
    wait_for("cli-group to be Empty", Duration::from_secs(30), || {
        (listed_state(&broker, "cli-group").as_deref() == Some("Empty")).then_some(())
    });

    assert_eq!(
        reset(&broker, &["--to-earliest"]),
        vec![(0, 0), (1, 0), (2, 0)]
    );
    let describe = cli_ok(&broker, &["group", "describe", "cli-group"]);
    assert!(
        describe.contains("group cli-group: state Empty"),
        "describe:\n{describe}"
    );
    assert_eq!(
        described_offsets(&describe, "cli-topic"),
        vec![
            (0, 0, 100, 100, "-".to_string()),
            (1, 0, 100, 100, "-".to_string()),
            (2, 0, 100, 100, "-".to_string()),
        ]
    );
    let (firsts, count) = reread(&broker);
    assert_eq!(firsts, serde_json::json!({"0": 0, "1": 0, "2": 0}));
    assert_eq!(count, 300);

    assert_eq!(
        reset(&broker, &["--to-offset", "42"]),
        vec![(0, 42), (1, 42), (2, 42)]
    );
    assert_eq!(
        committed_by_describe(&broker),
        vec![(0, 42), (1, 42), (2, 42)]
    );
    let (firsts, count) = reread(&broker);
    assert_eq!(firsts, serde_json::json!({"0": 42, "1": 42, "2": 42}));
    assert_eq!(count, 3 * 58);

    // Beyond the end: clamped to the end offset.
    assert_eq!(
        reset(&broker, &["--to-offset", "1000"]),
        vec![(0, 100), (1, 100), (2, 100)]
    );
    assert_eq!(
        reset(&broker, &["--to-earliest"]),
        vec![(0, 0), (1, 0), (2, 0)]
    );
    assert_eq!(
        reset(&broker, &["--to-latest"]),
        vec![(0, 100), (1, 100), (2, 100)]
    );

    // Seq i has timestamp 2023-11-14T22:13:20Z + i seconds; i = 151 is
    // 22:15:51Z. The first records at or after it: partition 0 offset 51
    // (seq 153), partitions 1 and 2 offset 50 (seqs 151 and 152).
    assert_eq!(
        reset(&broker, &["--to-datetime", "2023-11-14T23:15:51+01:00"]),
        vec![(0, 51), (1, 50), (2, 50)]
    );
    assert_eq!(
        committed_by_describe(&broker),
        vec![(0, 51), (1, 50), (2, 50)]
    );
    let (firsts, count) = reread(&broker);
    assert_eq!(firsts, serde_json::json!({"0": 51, "1": 50, "2": 50}));
    assert_eq!(count, 49 + 50 + 50);
    // After the last record: the end.
    assert_eq!(
        reset(&broker, &["--to-datetime", "2030-01-01T00:00:00Z"]),
        vec![(0, 100), (1, 100), (2, 100)]
    );
    eprintln!("cli test: {:.1?}", started.elapsed());
}

/// `--to-datetime` when the producer batched the records (the normal
/// case): it must land on the first *record* at or after the time. It
/// lands on the first offset of the batch holding it instead, because
/// ListOffsets by timestamp answers at batch granularity
/// (src/log/partition.rs `offset_for_timestamp`: "the first batch whose
/// max timestamp is at least ts"), where Kafka scans the batch for the
/// first record with timestamp >= ts.
#[test]
fn cli_reset_offsets_to_datetime_inside_a_batch() {
    let (_dir, broker) = start("cg-cli-datetime");
    run_script(
        &broker,
        "group_cli.py",
        &[&broker.bootstrap, "setup-batched"],
    );
    assert_eq!(
        reset(&broker, &["--to-datetime", "2023-11-14T22:15:51Z"]),
        vec![(0, 51), (1, 50), (2, 50)]
    );
}

// --------------------------------------------------------------------- 10

/// Group ACLs on a SASL_SSL broker with only these rules: bob may read the
/// topic `orders` and the group `billing`. bob consumes `orders` through
/// `billing` and commits (but not a topic he may not read: 29); in the
/// group `other` he gets GROUP_AUTHORIZATION_FAILED (30) and no records;
/// ListGroups as bob shows only `billing`; DescribeGroups/OffsetFetch of
/// admin's group are refused with 30.
#[test]
fn group_acls_on_secure_broker() {
    let dir = scratch("cg-acl");
    let acl_file = dir.path().join("acls.yaml");
    std::fs::write(
        &acl_file,
        "rules:\n  - {allow: \"User:bob\", operations: [read], topic: orders}\n  - {allow: \"User:bob\", operations: [read], group: billing}\n",
    )
    .unwrap();
    let yaml = format!("acl:\n  file: {}\n{GROUPS_YAML}", acl_file.display());
    let broker = Broker::start_secure(dir.path(), &yaml);
    let admin_password = broker
        .admin_password
        .clone()
        .expect("the broker did not create the admin user");
    broker.add_user("bob", "bob-Secret-42");
    broker.wait_users_loaded(2, Duration::from_secs(30));
    let env = serde_json::json!({
        "bootstrap": broker.addr("SASL_SSL"),
        "ca": broker.ca_file(),
        "admin_password": admin_password,
        "bob_password": "bob-Secret-42",
    })
    .to_string();
    run_script(&broker, "group_acl.py", &[&env]);
}
