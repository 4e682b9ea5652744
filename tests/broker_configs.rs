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
