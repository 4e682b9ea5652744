//! KIP-848's consumer group protocol end to end: ConsumerGroupHeartbeat
//! with server-side assignment and incremental reconciliation,
//! ConsumerGroupDescribe, ListGroups types, offsets shared with the classic
//! path (durable across a restart) and the edge's ACL checks, driven by
//! librdkafka (`group.protocol=consumer`, tests/python/kip848_*.py) and,
//! for exact codes, by raw requests. Each test has its own scratch
//! directory and broker. The Java consumer's check is
//! `consumer_group_protocol` in tests/java/ClientChecks.java.
//!
//! The brokers run with 500 ms heartbeats (Kafka's 5 s default would only
//! slow every hand-over down).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use kafka_protocol::ResponseError;

use common::{log_tail, run_script_ok, scratch, Broker};

/// Short KIP-848 timings (Kafka's bounds lowered with them, as a test
/// cluster of Kafka's would: group.consumer.min.*).
const GROUPS_YAML: &str = "groups:\n  initial_rebalance_delay_ms: 300\n  consumer_heartbeat_interval_ms: 500\n  consumer_min_heartbeat_interval_ms: 100\n  consumer_session_timeout_ms: 10000\n  consumer_min_session_timeout_ms: 1000\n";

fn run_script(broker: &Broker, script: &str, args: &[&str]) -> String {
    run_script_ok(script, args, || log_tail(broker, 80))
}

fn start(name: &str) -> (tempfile::TempDir, Broker) {
    let dir = scratch(name);
    let broker = Broker::start(dir.path(), GROUPS_YAML);
    (dir, broker)
}

/// One request on a fresh PLAINTEXT connection, its decoded answer.
fn call<Req, Resp>(bootstrap: &str, key: ApiKey, version: i16, req: &Req) -> Resp
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let mut s = TcpStream::connect(bootstrap).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("raw-848")));
    let mut body = bytes::BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .unwrap();
    req.encode(&mut body, version).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).unwrap();
    let mut b = bytes::Bytes::from(buf);
    ResponseHeader::decode(&mut b, Resp::header_version(version)).unwrap();
    Resp::decode(&mut b, version).unwrap()
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
    let req = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
        .with_timeout_ms(30000);
    let resp: CreateTopicsResponse = call(bootstrap, ApiKey::CreateTopics, 5, &req);
    assert_eq!(
        resp.topics[0].error_code, 0,
        "{:?}",
        resp.topics[0].error_message
    );
}

fn heartbeat(
    bootstrap: &str,
    req: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    call(bootstrap, ApiKey::ConsumerGroupHeartbeat, 1, req)
}

fn join_request(group: &str, member: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
    ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30000)
        .with_subscribed_topic_names(Some(
            topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.to_string())))
                .collect(),
        ))
        .with_topic_partitions(Some(vec![]))
}

// ---------------------------------------------------------------------- 1

/// Two, then three, then two librdkafka consumers (group.protocol=consumer)
/// on six partitions: 3/3, 2/2/2 with each of the first two revoking
/// exactly one partition (the others never revoked), back to 3/3 without
/// any revocation; 1,800 records consumed exactly once with commits ending
/// at the high watermarks; ListGroups and ConsumerGroupDescribe show a
/// `consumer` group with the `uniform` assignor and the members' partitions.
#[test]
fn librdkafka_members_split_and_hand_over_incrementally() {
    let (_dir, broker) = start("k848-split");
    run_script(&broker, "kip848_split.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 2

/// A consumer-protocol group's commits survive a broker restart; a new
/// member resumes exactly at them.
#[test]
fn committed_offsets_resume_after_a_restart() {
    let (_dir, mut broker) = start("k848-resume");
    let b = broker.bootstrap.clone();
    run_script(&broker, "kip848_resume.py", &[&b, "first"]);
    broker.restart();
    let b = broker.bootstrap.clone();
    run_script(&broker, "kip848_resume.py", &[&b, "second"]);
}

// ---------------------------------------------------------------------- 3

/// The protocol's codes as Kafka answers them, on raw requests: a join
/// gets an epoch and the whole topic; a second member at first gets
/// nothing (the first still owns everything) and its partitions only once
/// the first's heartbeat shows them revoked; an epoch from the future is
/// FENCED_MEMBER_EPOCH; an unknown member UNKNOWN_MEMBER_ID; a regex
/// subscription INVALID_REQUEST; an unknown assignor UNSUPPORTED_ASSIGNOR;
/// ConsumerGroupDescribe shows both members, their epochs and partitions,
/// and a group that is not a consumer group is GROUP_ID_NOT_FOUND.
#[test]
fn raw_heartbeats_and_describe() {
    let (_dir, broker) = start("k848-raw");
    let b = &broker.bootstrap;
    create_topic(b, "raw-t", 4);
    let a = heartbeat(b, &join_request("raw-g", "member-a", &["raw-t"]));
    assert_eq!(a.error_code, 0, "{:?}", a.error_message);
    assert!(a.member_epoch > 0);
    let a_parts = &a.assignment.as_ref().unwrap().topic_partitions;
    assert_eq!(a_parts.len(), 1);
    assert_eq!(a_parts[0].partitions.len(), 4);
    let topic_id = a_parts[0].topic_id;

    let b1 = heartbeat(b, &join_request("raw-g", "member-b", &["raw-t"]));
    assert_eq!(b1.error_code, 0);
    assert!(b1.member_epoch > a.member_epoch);
    assert!(b1.assignment.unwrap().topic_partitions.is_empty());

    // a heartbeats still owning all four: it is told to keep two.
    let owned = |parts: Vec<i32>| {
        Some(vec![
            kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(parts),
        ])
    };
    let beat = |member: &str, epoch: i32, parts: Vec<i32>| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("raw-g")))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(owned(parts))
    };
    let a2 = heartbeat(b, &beat("member-a", a.member_epoch, vec![0, 1, 2, 3]));
    assert_eq!(a2.error_code, 0);
    assert_eq!(a2.member_epoch, a.member_epoch, "revoking keeps the epoch");
    let kept = a2.assignment.unwrap().topic_partitions[0]
        .partitions
        .clone();
    assert_eq!(kept.len(), 2);
    // b gets nothing until a's heartbeat no longer lists the other two.
    let b2 = heartbeat(b, &beat("member-b", b1.member_epoch, vec![]));
    assert!(b2
        .assignment
        .is_none_or(|x| x.topic_partitions.iter().all(|t| t.partitions.is_empty())));
    let a3 = heartbeat(b, &beat("member-a", a.member_epoch, kept.clone()));
    assert_eq!(a3.member_epoch, b1.member_epoch);
    let b3 = heartbeat(b, &beat("member-b", b1.member_epoch, vec![]));
    let mut b_parts = b3.assignment.unwrap().topic_partitions[0]
        .partitions
        .clone();
    b_parts.sort();
    let mut rest: Vec<i32> = (0..4).filter(|p| !kept.contains(p)).collect();
    rest.sort();
    assert_eq!(b_parts, rest);

    let fenced = heartbeat(b, &beat("member-a", a3.member_epoch + 5, kept.clone()));
    assert_eq!(fenced.error_code, ResponseError::FencedMemberEpoch.code());
    let unknown = heartbeat(b, &beat("nobody", 3, vec![]));
    assert_eq!(unknown.error_code, ResponseError::UnknownMemberId.code());
    let regex = heartbeat(
        b,
        &join_request("raw-g", "member-c", &["raw-t"])
            .with_subscribed_topic_regex(Some(StrBytes::from_static_str("raw-.*"))),
    );
    assert_eq!(regex.error_code, ResponseError::InvalidRequest.code());
    let assignor = heartbeat(
        b,
        &join_request("raw-g", "member-c", &["raw-t"])
            .with_server_assignor(Some(StrBytes::from_static_str("sticky"))),
    );
    assert_eq!(
        assignor.error_code,
        ResponseError::UnsupportedAssignor.code()
    );

    let desc: ConsumerGroupDescribeResponse = call(
        b,
        ApiKey::ConsumerGroupDescribe,
        ConsumerGroupDescribeRequest::VERSIONS.max,
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![
                GroupId(StrBytes::from_static_str("raw-g")),
                GroupId(StrBytes::from_static_str("no-such-group")),
            ])
            .with_include_authorized_operations(true),
    );
    let g = &desc.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.group_epoch, b1.member_epoch);
    assert_eq!(g.members.len(), 2);
    for m in &g.members {
        assert_eq!(m.member_epoch, b1.member_epoch);
        assert_eq!(m.member_type, 1);
        assert_eq!(
            m.assignment.topic_partitions[0].topic_name.as_str(),
            "raw-t"
        );
        assert_eq!(m.assignment.topic_partitions[0].partitions.len(), 2);
        assert_eq!(m.assignment, m.target_assignment);
    }
    assert_ne!(g.authorized_operations, i32::MIN);
    assert_eq!(
        desc.groups[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    // a leaves: b is told all four at a new epoch, without revoking.
    let left = heartbeat(b, &beat("member-a", LEAVE, vec![]));
    assert_eq!((left.error_code, left.member_epoch), (0, LEAVE));
    let b4 = heartbeat(b, &beat("member-b", b1.member_epoch, b_parts.clone()));
    assert!(b4.member_epoch > b1.member_epoch);
    assert_eq!(
        b4.assignment.unwrap().topic_partitions[0].partitions.len(),
        4
    );
}

const LEAVE: i32 = -1;

// ---------------------------------------------------------------------- 4

/// Static membership (group.instance.id) with librdkafka: a static member
/// that closes and comes back within its session gets its partitions back
/// while the other member sees nothing happen; a second process with an
/// active member's instance id gets UNRELEASED_INSTANCE_ID.
#[test]
fn static_members_come_back_to_their_partitions() {
    let (_dir, broker) = start("k848-static");
    run_script(&broker, "kip848_static.py", &[&broker.bootstrap]);
}

// ---------------------------------------------------------------------- 5

/// `portcullis group list` shows a consumer-protocol group with its type,
/// state and members; `describe` shows its assignor, epochs, members with
/// their partitions, and the committed offsets with their owners;
/// `reset-offsets` refuses while it has members.
#[test]
fn cli_lists_and_describes_consumer_groups() {
    let (_dir, broker) = start("k848-cli");
    let mut hold = Hold::start(&broker, "cli848-group", "cli848-topic");
    let ready = hold.wait_line("READY", &broker);
    eprintln!("{ready}");
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", &broker.bootstrap]);
        broker.cli(&all, "")
    };
    let out = cli(&["group", "list"]);
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{list}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = list
        .lines()
        .find(|l| l.starts_with("cli848-group"))
        .unwrap_or_else(|| panic!("no row:\n{list}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["cli848-group", "Stable", "consumer", "consumer", "2"],
        "{list}"
    );
    let out = cli(&["group", "describe", "cli848-group"]);
    let describe = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{describe}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        describe.starts_with("group cli848-group: state Stable, type consumer, assignor uniform"),
        "{describe}"
    );
    let members: Vec<&str> = describe
        .lines()
        .filter(|l| l.starts_with("member "))
        .collect();
    assert_eq!(members.len(), 2, "{describe}");
    assert!(
        members.iter().all(|m| m.contains(" client hold-")),
        "{describe}"
    );
    let owners: Vec<(String, String)> = describe
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 6 && f[0] == "cli848-topic").then(|| (f[2].to_string(), f[5].to_string()))
        })
        .collect();
    assert_eq!(owners.len(), 4, "{describe}");
    assert!(
        owners
            .iter()
            .all(|(committed, owner)| committed == "25" && owner.starts_with("hold-")),
        "{describe}"
    );
    let out = cli(&[
        "group",
        "reset-offsets",
        "cli848-group",
        "--topic",
        "cli848-topic",
        "--to-earliest",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is Stable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hold.stop(&broker);
}

/// The members of a tests/python/kip848_*.py script that waits on stdin.
struct Hold {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Hold {
    fn start(broker: &Broker, group: &str, topic: &str) -> Hold {
        Hold::script(broker, "kip848_hold.py", &[group, topic])
    }

    fn script(broker: &Broker, script: &str, args: &[&str]) -> Hold {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/python")
            .join(script);
        let stderr = std::fs::File::create(broker.dir.join("hold.stderr")).unwrap();
        let mut child = Command::new(common::python())
            .arg(script)
            .arg(&broker.bootstrap)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start the members");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Hold {
            child,
            stdin,
            lines: rx,
        }
    }

    fn wait_line(&self, prefix: &str, broker: &Broker) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(l) if l.starts_with("FAIL") => panic!("members: {l}\n{}", log_tail(broker, 60)),
                Ok(_) => {}
                Err(_) => panic!(
                    "the members printed no {prefix}; stderr:\n{}\n{}",
                    std::fs::read_to_string(broker.dir.join("hold.stderr")).unwrap_or_default(),
                    log_tail(broker, 60)
                ),
            }
        }
    }

    fn stop(&mut self, broker: &Broker) {
        drop(self.stdin.take());
        self.wait_line("ALL OK", broker);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "members exited with {status}");
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------- 6

/// ACLs for the consumer protocol on a SASL_SSL broker where bob may read
/// the topic `orders` and the group `billing`, and describe (not read) the
/// group `other`: bob consumes through `billing`; in `other` his
/// heartbeats get GROUP_AUTHORIZATION_FAILED; a
/// subscription naming `secret` (no Describe) gets
/// TOPIC_AUTHORIZATION_FAILED; he may not describe admin's group. The
/// audit log has the denials, as ConsumerGroupHeartbeat and
/// ConsumerGroupDescribe decisions.
#[test]
fn consumer_protocol_acls_and_audit() {
    let dir = scratch("k848-acl");
    let acl_file = dir.path().join("acls.yaml");
    std::fs::write(
        &acl_file,
        "rules:\n  - {allow: \"User:bob\", operations: [read], topic: orders}\n  - {allow: \"User:bob\", operations: [read], group: billing}\n  - {allow: \"User:bob\", operations: [describe], group: other}\n",
    )
    .unwrap();
    let yaml = format!("acl:\n  file: {}\n{GROUPS_YAML}", acl_file.display());
    let broker = Broker::start_secure(dir.path(), &yaml);
    let admin_password = broker.admin_password.clone().expect("admin password");
    broker.add_user("bob", "bob-Secret-42");
    broker.wait_users_loaded(2, Duration::from_secs(30));
    let env = serde_json::json!({
        "bootstrap": broker.addr("SASL_SSL"),
        "ca": broker.ca_file(),
        "admin_password": admin_password,
        "bob_password": "bob-Secret-42",
    })
    .to_string();
    run_script(&broker, "kip848_acl.py", &[&env]);
    let audit = std::fs::read_to_string(dir.path().join("audit/audit.log")).unwrap();
    let denied = |api: &str, rt: &str, name: &str, code: i64| {
        audit.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["api"] == api
                && v["decision"] == "deny"
                && v["resource_type"] == rt
                && v["resource_name"] == name
                && v["principal"] == "User:bob"
                && (code < 0 || v["error_code"] == code)
        })
    };
    assert!(
        denied("ConsumerGroupHeartbeat", "group", "other", -1),
        "no audit record of bob's heartbeat in `other`"
    );
    assert!(
        denied("ConsumerGroupHeartbeat", "topic", "secret", -1),
        "no audit record of bob's subscription to `secret`"
    );
    // librdkafka asks for the coordinator first, which Describe on the
    // group also guards: the refusal may come from either.
    assert!(
        denied("ConsumerGroupDescribe", "group", "admin-only", 30)
            || denied("FindCoordinator", "group", "admin-only", -1),
        "no audit record of bob describing admin-only"
    );
}

// ---------------------------------------------------------------------- 7

/// Expiry, on raw requests with a 1.5 s session: a member that stops
/// heartbeating is fenced and its partitions go to the other member; a
/// member that does not revoke within its rebalance timeout is fenced too
/// (its next heartbeat gets UNKNOWN_MEMBER_ID), so a stuck member cannot
/// hold partitions another member is waiting for.
#[test]
fn silent_and_stuck_members_are_fenced() {
    let dir = scratch("k848-expiry");
    let broker = Broker::start(
        dir.path(),
        "groups:\n  consumer_heartbeat_interval_ms: 300\n  consumer_min_heartbeat_interval_ms: 100\n  consumer_session_timeout_ms: 1500\n  consumer_min_session_timeout_ms: 1000\n",
    );
    let b = &broker.bootstrap;
    create_topic(b, "exp-t", 2);
    let owned_of = |r: &ConsumerGroupHeartbeatResponse| {
        r.assignment
            .as_ref()
            .map(|a| a.topic_partitions.clone())
            .unwrap_or_default()
    };
    let beat = |member: &str,
                epoch: i32,
                owned: Vec<
        kafka_protocol::messages::consumer_group_heartbeat_response::TopicPartitions,
    >| {
        heartbeat(
            b,
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("exp-g")))
                .with_member_id(StrBytes::from_string(member.into()))
                .with_member_epoch(epoch)
                .with_rebalance_timeout_ms(-1)
                .with_topic_partitions(Some(
                    owned
                        .into_iter()
                        .map(|t| {
                            kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions::default()
                                .with_topic_id(t.topic_id)
                                .with_partitions(t.partitions)
                        })
                        .collect(),
                )),
        )
    };
    // Silent: a joins, b joins, a hands over; then b goes quiet.
    let a = heartbeat(b, &join_request("exp-g", "a", &["exp-t"]));
    let a_owned = owned_of(&a);
    let bj = heartbeat(b, &join_request("exp-g", "b", &["exp-t"]));
    let a2 = beat("a", a.member_epoch, a_owned.clone());
    let a3 = beat("a", a2.member_epoch, owned_of(&a2));
    assert_eq!(a3.error_code, 0);
    let b2 = beat("b", bj.member_epoch, vec![]);
    assert_eq!(owned_of(&b2)[0].partitions.len(), 1);
    let started = std::time::Instant::now();
    let mut last = a3;
    let mut a_parts = owned_of(&a2);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let r = beat("a", last.member_epoch, a_parts.clone());
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        if let Some(x) = r.assignment.as_ref() {
            a_parts = x.topic_partitions.clone();
        }
        last = r;
        if a_parts.first().is_some_and(|t| t.partitions.len() == 2) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "b was never fenced"
        );
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "fenced before its session ran out"
    );
    let gone = beat("b", b2.member_epoch, owned_of(&b2));
    assert_eq!(gone.error_code, ResponseError::UnknownMemberId.code());

    // Stuck: a's rebalance timeout becomes 1 s; c joins; a is asked to
    // revoke and never does: it is fenced, and c gets both partitions.
    let shorter = heartbeat(
        b,
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("exp-g")))
            .with_member_id(StrBytes::from_static_str("a"))
            .with_member_epoch(last.member_epoch)
            .with_rebalance_timeout_ms(1000),
    );
    assert_eq!(shorter.error_code, 0);
    let cj = heartbeat(b, &join_request("exp-g", "c", &["exp-t"]));
    assert_eq!(cj.error_code, 0);
    let a_asked = beat("a", last.member_epoch, a_parts.clone());
    assert_eq!(
        owned_of(&a_asked)[0].partitions.len(),
        1,
        "a is asked to revoke one"
    );
    let started = std::time::Instant::now();
    let mut c_epoch = cj.member_epoch;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        // a keeps heartbeating (its session is fine) but owns both still.
        let _ = beat("a", last.member_epoch, a_parts.clone());
        let c = beat("c", c_epoch, vec![]);
        c_epoch = c.member_epoch;
        if owned_of(&c)
            .first()
            .is_some_and(|t| t.partitions.len() == 2)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a was never fenced"
        );
    }
    let after = beat("a", last.member_epoch, a_parts);
    assert_eq!(after.error_code, ResponseError::UnknownMemberId.code());
}

// ---------------------------------------------------------------------- 8

/// One group id, one protocol, as Kafka rules: a classic JoinGroup for a
/// consumer group with members is INCONSISTENT_GROUP_PROTOCOL; a consumer
/// heartbeat joining a classic group with members is GROUP_ID_NOT_FOUND;
/// an empty classic group is taken over by a consumer join (Kafka converts
/// it), keeping its committed offsets; ListGroups v5 types each group.
#[test]
fn classic_and_consumer_groups_do_not_mix() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{
        JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
        ListGroupsRequest, ListGroupsResponse,
    };
    let (_dir, broker) = start("k848-mix");
    let b = &broker.bootstrap;
    create_topic(b, "mix-t", 2);
    let classic_join = |group: &'static str| -> JoinGroupResponse {
        call(
            b,
            ApiKey::JoinGroup,
            3,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(group)))
                .with_session_timeout_ms(10000)
                .with_rebalance_timeout_ms(10000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]),
        )
    };
    // A consumer group with a member refuses classic members.
    let c = heartbeat(b, &join_request("mix-consumer", "m1", &["mix-t"]));
    assert_eq!(c.error_code, 0);
    let j = classic_join("mix-consumer");
    assert_eq!(
        j.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // A classic group with a member refuses consumer members.
    let j = classic_join("mix-classic");
    assert_eq!(j.error_code, 0);
    let h = heartbeat(b, &join_request("mix-classic", "m2", &["mix-t"]));
    assert_eq!(h.error_code, ResponseError::GroupIdNotFound.code());
    // Once empty, the classic group is taken over.
    let left: LeaveGroupResponse = call(
        b,
        ApiKey::LeaveGroup,
        0,
        &LeaveGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("mix-classic")))
            .with_member_id(j.member_id.clone()),
    );
    assert_eq!(left.error_code, 0);
    let h = heartbeat(b, &join_request("mix-classic", "m2", &["mix-t"]));
    assert_eq!(h.error_code, 0, "{:?}", h.error_message);
    let listed: ListGroupsResponse = call(b, ApiKey::ListGroups, 5, &ListGroupsRequest::default());
    let mut types: Vec<(String, String, String)> = listed
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.to_string(),
                g.group_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            ("mix-classic".into(), "consumer".into(), "Stable".into()),
            ("mix-consumer".into(), "consumer".into(), "Stable".into()),
        ]
    );
    let only_classic: ListGroupsResponse = call(
        b,
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default().with_types_filter(vec![StrBytes::from_static_str("classic")]),
    );
    assert!(only_classic.groups.is_empty());
}

// ---------------------------------------------------------------------- 9

/// A live librdkafka member across a broker restart (the membership is in
/// memory): it rejoins by itself and goes on from its commits, reading
/// every record once.
#[test]
fn a_member_rejoins_after_a_broker_restart() {
    let (_dir, mut broker) = start("k848-live");
    let mut live = Hold::script(&broker, "kip848_live.py", &[]);
    live.wait_line("READY", &broker);
    broker.restart();
    // The script still has the old address: the harness restarts on the
    // same port.
    use std::io::Write as _;
    let mut stdin = live.stdin.take().unwrap();
    writeln!(stdin, "go").unwrap();
    stdin.flush().unwrap();
    let done = live.wait_line("ALL OK", &broker);
    eprintln!("{done}");
    drop(stdin);
    let status = live.child.wait().unwrap();
    assert!(status.success(), "the member exited with {status}");
}

// --------------------------------------------------------------------- 10

/// Offsets of a consumer-protocol member, on raw requests: OffsetCommit v9
/// with the member's epoch lands; with another epoch it is
/// STALE_MEMBER_EPOCH; v8 (a generation, which such a member has not got)
/// is UNSUPPORTED_VERSION; an admin-style commit (no member, epoch -1)
/// while the group has members is UNKNOWN_MEMBER_ID; OffsetFetch v9 checks
/// the member id and epoch the same way and returns the commit. And
/// DescribeGroups (v0-v5) answers Dead for a consumer group, as Kafka's do.
#[test]
fn offsets_of_consumer_members_check_the_member_epoch() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::{
        OffsetFetchRequestGroup, OffsetFetchRequestTopics,
    };
    use kafka_protocol::messages::{
        DescribeGroupsRequest, DescribeGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
        OffsetFetchRequest, OffsetFetchResponse,
    };
    let (_dir, broker) = start("k848-offsets");
    let b = &broker.bootstrap;
    create_topic(b, "off-t", 1);
    let j = heartbeat(b, &join_request("off-g", "m1", &["off-t"]));
    assert_eq!(j.error_code, 0);
    let commit = |version: i16, member: &'static str, epoch: i32, offset: i64| -> i16 {
        let r: OffsetCommitResponse = call(
            b,
            ApiKey::OffsetCommit,
            version,
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("off-g")))
                .with_member_id(StrBytes::from_static_str(member))
                .with_generation_id_or_member_epoch(epoch)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("off-t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        );
        r.topics[0].partitions[0].error_code
    };
    assert_eq!(commit(9, "m1", j.member_epoch, 7), 0);
    assert_eq!(
        commit(9, "m1", j.member_epoch - 1, 8),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit(8, "m1", j.member_epoch, 8),
        ResponseError::UnsupportedVersion.code()
    );
    assert_eq!(commit(9, "", -1, 8), ResponseError::UnknownMemberId.code());
    let fetch = |member: Option<&'static str>, epoch: i32| -> (i16, i64) {
        let r: OffsetFetchResponse = call(
            b,
            ApiKey::OffsetFetch,
            9,
            &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(StrBytes::from_static_str("off-g")))
                .with_member_id(member.map(StrBytes::from_static_str))
                .with_member_epoch(epoch)
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(TopicName(StrBytes::from_static_str("off-t")))
                    .with_partition_indexes(vec![0])]))]),
        );
        let g = &r.groups[0];
        let offset = g
            .topics
            .first()
            .map(|t| t.partitions[0].committed_offset)
            .unwrap_or(-1);
        (g.error_code, offset)
    };
    assert_eq!(fetch(Some("m1"), j.member_epoch), (0, 7));
    assert_eq!(fetch(None, -1), (0, 7), "an admin's fetch");
    assert_eq!(
        fetch(Some("m1"), j.member_epoch + 3).0,
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        fetch(Some("nobody"), 1).0,
        ResponseError::UnknownMemberId.code()
    );
    let d: DescribeGroupsResponse = call(
        b,
        ApiKey::DescribeGroups,
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_static_str("off-g"))]),
    );
    assert_eq!(d.groups[0].error_code, 0);
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
}

/// A group's own configs (KIP-848's `consumer.heartbeat.interval.ms` and
/// `consumer.session.timeout.ms`, set with IncrementalAlterConfigs on the
/// GROUP resource) apply to its members at once: the heartbeat interval
/// its members are told, and the session after which a silent member is
/// fenced; another group keeps the broker's settings.
#[test]
fn group_configs_set_a_groups_heartbeat_and_session() {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    };
    let (_dir, broker) = start("cp-group-configs");
    let b = &broker.bootstrap;
    create_topic(b, "cfg-t", 2);
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let set = |key: &str, value: &str| {
        let resp: IncrementalAlterConfigsResponse = call(
            b,
            ApiKey::IncrementalAlterConfigs,
            1,
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                AlterConfigsResource::default()
                    .with_resource_type(32)
                    .with_resource_name(s("cfg-g"))
                    .with_configs(vec![AlterableConfig::default()
                        .with_name(s(key))
                        .with_config_operation(0)
                        .with_value(Some(s(value)))]),
            ]),
        );
        assert_eq!(resp.responses[0].error_code, 0, "{key}={value}: {resp:?}");
    };
    // Within the bounds this test's broker allows (GROUPS_YAML).
    set("consumer.heartbeat.interval.ms", "700");
    set("consumer.session.timeout.ms", "1500");

    let joined = heartbeat(b, &join_request("cfg-g", "m-cfg", &["cfg-t"]));
    assert_eq!(joined.error_code, 0, "{joined:?}");
    assert_eq!(
        joined.heartbeat_interval_ms, 700,
        "the group's own interval"
    );
    let other = heartbeat(b, &join_request("other-g", "m-other", &["cfg-t"]));
    assert_eq!(
        other.heartbeat_interval_ms, 500,
        "the broker's interval (GROUPS_YAML)"
    );

    // Silent for 4 s: past its group's 1.5 s session, well inside the
    // broker's 10 s one. Its next heartbeat finds it fenced; the other
    // group's member, as silent, is still there.
    std::thread::sleep(Duration::from_secs(4));
    let member = joined.member_id.clone().unwrap();
    let again = heartbeat(
        b,
        &join_request("cfg-g", member.as_str(), &["cfg-t"]).with_member_epoch(joined.member_epoch),
    );
    assert!(
        again.error_code == ResponseError::UnknownMemberId.code()
            || again.error_code == ResponseError::FencedMemberEpoch.code(),
        "a member silent past its group's session was not fenced: {again:?}"
    );
    let other_member = other.member_id.clone().unwrap();
    let still = heartbeat(
        b,
        &join_request("other-g", other_member.as_str(), &["cfg-t"])
            .with_member_epoch(other.member_epoch),
    );
    assert_eq!(still.error_code, 0, "the broker's 10 s session: {still:?}");
}
