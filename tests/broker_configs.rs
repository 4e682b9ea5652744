//! Dynamic broker configs with a real client (librdkafka through
//! confluent-kafka, `tests/python/broker_configs.py`): described under
//! Kafka's names with their sources, changed without a restart (an existing
//! topic follows a new default), persisted in the data dir and still in
//! force after a restart; static ones refused with Kafka's code.

mod common;

use common::{clean_log, log_tail, run_script_ok, scratch, Broker};

#[test]
fn dynamic_broker_configs_apply_live_and_survive_a_restart() {
    let dir = scratch("broker-configs");
    let extra = format!(
        "log:\n  retention_ms: 3600000\nsasl:\n  credentials: {}\n  connections_max_reauth_ms: 60000\n",
        dir.path().join("credentials.yaml").display()
    );
    let mut broker = Broker::start_secure(dir.path(), &extra);
    let admin_pw = broker
        .admin_password
        .clone()
        .expect("bootstrap admin password printed");
    broker.add_user("alice", "alice-configs-1");
    let ca = broker.ca_file().to_str().unwrap().to_string();
    let run = |broker: &Broker, phase: &str| {
        let bootstrap = broker.addr("SASL_SSL").to_string();
        run_script_ok(
            "broker_configs.py",
            &[
                phase,
                &bootstrap,
                &ca,
                &admin_pw,
                "alice",
                "alice-configs-1",
            ],
            || log_tail(broker, 60),
        )
    };
    run(&broker, "before");
    let persisted = std::fs::read_to_string(
        dir.path()
            .join("data")
            .join(portcullis::dynamic_config::FILE_NAME),
    )
    .or_else(|_| {
        // The harness may keep the data dir elsewhere: find the file.
        let found = walk(dir.path(), portcullis::dynamic_config::FILE_NAME)
            .expect("dynamic-broker-configs.json in the scratch dir");
        std::fs::read_to_string(found)
    })
    .unwrap();
    assert!(
        persisted.contains("\"log.retention.ms\": \"7200000\"")
            && persisted.contains("\"max.connections.per.ip\": \"77\""),
        "{persisted}"
    );
    let log = clean_log(&broker.log());
    assert!(
        log.lines()
            .any(|l| l.contains("dynamic broker configs applied") && l.contains("7200000")),
        "no live application logged"
    );
    broker.restart();
    run(&broker, "after");
}

fn walk(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(f) = walk(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

/// One request on a raw connection, its decoded answer (`None`: the
/// broker closed the connection).
fn call<R: kafka_protocol::protocol::Request>(
    s: &mut std::net::TcpStream,
    version: i16,
    req: &R,
) -> Option<R::Response> {
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
    let mut buf = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .encode(&mut buf, R::header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let resp = common::raw_request(s, &buf)?;
    let mut resp = bytes::Bytes::from(resp);
    ResponseHeader::decode(&mut resp, R::Response::header_version(version)).unwrap();
    Some(R::Response::decode(&mut resp, version).unwrap())
}

fn s(v: &str) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(v.to_string())
}

/// What Kafka answers for the resource names Portcullis does not own
/// (another broker id, a non-numeric one, an empty group), Kafka's request
/// checks, group bounds, and a connection limit changed live.
#[test]
fn broker_and_group_resources_answer_like_kafka() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    use kafka_protocol::messages::{
        ApiVersionsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    };
    let dir = scratch("broker-configs-raw");
    let broker = Broker::start(dir.path(), "super_users: [\"User:ANONYMOUS\"]\n");
    let connect = || {
        let c = std::net::TcpStream::connect(&broker.bootstrap).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        c
    };
    let mut c = connect();
    let describe = |c: &mut std::net::TcpStream, rtype: i8, name: &str| {
        let r = call(
            c,
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(rtype)
                    .with_resource_name(s(name))
                    .with_configuration_keys(None),
            ]),
        )
        .expect("DescribeConfigs answered");
        r.results.into_iter().next().unwrap()
    };
    let alter =
        |c: &mut std::net::TcpStream, rtype: i8, name: &str, ops: &[(&str, i8, Option<&str>)]| {
            let r = call(
                c,
                1,
                &IncrementalAlterConfigsRequest::default().with_resources(vec![
                    AlterConfigsResource::default()
                        .with_resource_type(rtype)
                        .with_resource_name(s(name))
                        .with_configs(
                            ops.iter()
                                .map(|(k, op, v)| {
                                    AlterableConfig::default()
                                        .with_name(s(k))
                                        .with_config_operation(*op)
                                        .with_value(v.map(s))
                                })
                                .collect(),
                        ),
                ]),
            )
            .expect("IncrementalAlterConfigs answered");
            let r = r.responses.into_iter().next().unwrap();
            (
                r.error_code,
                r.error_message.map(|m| m.to_string()).unwrap_or_default(),
            )
        };
    const BROKER: i8 = 4;
    const GROUP: i8 = 32;

    let r = describe(&mut c, BROKER, "7");
    assert_eq!(r.error_code, 42);
    assert_eq!(
        r.error_message.as_deref(),
        Some("Unexpected broker id, expected 0 or empty string, but received 7")
    );
    let r = describe(&mut c, BROKER, "");
    assert_eq!(
        (r.error_code, r.configs.len()),
        (0, 0),
        "no dynamic default set"
    );
    let r = describe(&mut c, GROUP, "");
    assert_eq!(r.error_code, 42, "an empty group name");
    let r = describe(&mut c, GROUP, "g1");
    assert_eq!((r.error_code, r.configs.len()), (0, 21));

    let set = |k: &'static str, v: &'static str| (k, 0i8, Some(v));
    let (code, m) = alter(&mut c, BROKER, "7", &[set("log.retention.ms", "1000")]);
    assert_eq!(
        (code, m.as_str()),
        (42, "Unexpected broker id, expected 0, but received 7")
    );
    let (code, m) = alter(&mut c, BROKER, "x", &[set("log.retention.ms", "1000")]);
    assert_eq!(
        (code, m.as_str()),
        (42, "Node id must be an integer, but it is: x")
    );
    let (code, _) = alter(
        &mut c,
        BROKER,
        "0",
        &[
            set("log.retention.ms", "1000"),
            set("log.retention.ms", "2000"),
        ],
    );
    assert_eq!(code, 42, "duplicate keys");
    let (code, _) = alter(&mut c, BROKER, "0", &[("log.retention.ms", 0, None)]);
    assert_eq!(code, 42, "a null value");
    let (code, _) = alter(&mut c, BROKER, "0", &[("log.retention.ms", 2, Some("1"))]);
    assert_eq!(code, 40, "APPEND on a non-list config");
    let (code, m) = alter(
        &mut c,
        GROUP,
        "g1",
        &[set("consumer.heartbeat.interval.ms", "50000")],
    );
    assert_eq!(
        (code, m.as_str()),
        (
            40,
            "consumer.heartbeat.interval.ms must be less than or equal to 15000"
        )
    );

    // A limit lowered live refuses the next connection from this address;
    // removing it lets the next one in.
    assert_eq!(
        alter(&mut c, BROKER, "0", &[set("max.connections.per.ip", "1")]).0,
        0
    );
    let mut second = connect();
    assert!(
        call(&mut second, 3, &ApiVersionsRequest::default()).is_none(),
        "a second connection from one address under max.connections.per.ip=1"
    );
    assert_eq!(
        alter(&mut c, BROKER, "0", &[("max.connections.per.ip", 1, None)]).0,
        0
    );
    let mut third = connect();
    assert!(call(&mut third, 3, &ApiVersionsRequest::default()).is_some());
}
