//! SASL_SSL + SCRAM-SHA-512 with librdkafka (the `rdkafka` crate).

mod common;

use std::time::Duration;

use common::{scratch, wait_for, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use std::sync::{Arc, Mutex};

/// Collects librdkafka's error callbacks (authentication failures arrive here).
#[derive(Clone, Default)]
struct ErrorLog(Arc<Mutex<Vec<(RDKafkaErrorCode, String)>>>);

impl ClientContext for ErrorLog {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.0.lock().unwrap().push((code, reason.to_string()));
        }
    }
}
impl rdkafka::consumer::ConsumerContext for ErrorLog {}
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

fn secure_config(broker: &Broker, user: &str, password: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker.addr("SASL_SSL"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap());
    c
}

/// Creates `name` through an admin client made of `config`.
fn create_topic(rt: &tokio::runtime::Runtime, config: &ClientConfig, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = config.create().unwrap();
    let res = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
        ))
        .unwrap();
    assert!(res[0].is_ok(), "{res:?}");
}

#[test]
fn scram_user_produces_and_consumes_and_bad_logins_are_refused() {
    let dir = scratch("sec-rdkafka");
    let broker = Broker::start_secure(dir.path(), "");
    assert!(
        broker.admin_password.is_some(),
        "bootstrap admin printed once"
    );
    broker.add_user("alice", "alice-secret");
    let rt = tokio::runtime::Runtime::new().unwrap();

    create_topic(
        &rt,
        &secure_config(&broker, "alice", "alice-secret"),
        "secure-topic",
        2,
    );

    let producer: FutureProducer = secure_config(&broker, "alice", "alice-secret")
        .set("acks", "all")
        .create()
        .unwrap();
    for i in 0..500 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        rt.block_on(producer.send(
            FutureRecord::to("secure-topic").key(&key).payload(&value),
            Duration::from_secs(30),
        ))
        .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
    }

    let consumer: BaseConsumer = secure_config(&broker, "alice", "alice-secret")
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("secure-topic", 0, Offset::Beginning)
        .unwrap();
    tpl.add_partition_offset("secure-topic", 1, Offset::Beginning)
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let mut seen = 0;
    wait_for("500 records over SASL_SSL", Duration::from_secs(60), || {
        while let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            assert!(m.payload().unwrap().starts_with(b"v"));
            seen += 1;
        }
        (seen >= 500).then_some(())
    });
    assert_eq!(seen, 500);

    // Wrong password and unknown user: the same SASL authentication error,
    // reported by librdkafka's error callback, and nothing gets through.
    let mut messages = Vec::new();
    for (user, pw) in [("alice", "wrong"), ("mallory", "alice-secret")] {
        let ctx = ErrorLog::default();
        let c: BaseConsumer<ErrorLog> = secure_config(&broker, user, pw)
            .set("group.id", "unused")
            .create_with_context(ctx.clone())
            .unwrap();
        let msg = wait_for("an authentication error", Duration::from_secs(30), || {
            let _ = c.poll(Duration::from_millis(100));
            ctx.0
                .lock()
                .unwrap()
                .iter()
                .find(|(code, _)| *code == RDKafkaErrorCode::Authentication)
                .map(|(_, m)| m.clone())
        });
        assert!(
            msg.contains("Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"),
            "{user}: {msg}"
        );
        assert!(c.fetch_metadata(None, Duration::from_secs(2)).is_err());
        // Strip librdkafka's per-connection prefix and timing suffix.
        let core = msg
            .split("SASL authentication error: ")
            .nth(1)
            .unwrap_or(&msg);
        messages.push(core.split(" (after").next().unwrap().to_string());
    }
    assert_eq!(
        messages[0], messages[1],
        "unknown user looks like wrong password"
    );
    let log = broker.log();
    assert!(log.contains("wrong_password"), "{log}");
    assert!(log.contains("unknown_user"), "{log}");
}

/// Megabytes read back record for record over both kinds of listener: a
/// Fetch answer's large record sets leave the broker as parts of their
/// own (not copied into the frame), over TLS as records of their own.
#[test]
fn megabyte_fetches_arrive_intact_over_tls_and_plaintext() {
    let dir = scratch("sec-rdkafka-bulk");
    let broker = Broker::start_listeners(dir.path(), &["PLAINTEXT", "SASL_SSL"], "");
    broker.add_user("alice", "alice-secret");
    const RECORDS: usize = 3_000;
    let value = |i: usize| -> Vec<u8> { (0..2048).map(|j| ((i * 31 + j) % 251) as u8).collect() };

    let mut plain = ClientConfig::new();
    plain.set("bootstrap.servers", broker.addr("PLAINTEXT"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    create_topic(&rt, &plain, "bulk", 2);
    let producer: BaseProducer = plain
        .clone()
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let key = i.to_string();
        let v = value(i);
        let mut rec = BaseRecord::to("bulk")
            .key(&key)
            .payload(&v)
            .partition((i % 2) as i32);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert_eq!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::QueueFull),
                        "{e}"
                    );
                    rec = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    for config in [plain, secure_config(&broker, "alice", "alice-secret")] {
        let protocol = config
            .get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_string();
        let consumer: BaseConsumer = config
            .clone()
            .set("group.id", "unused")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("bulk", p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut seen = vec![false; RECORDS];
        let mut count = 0;
        wait_for(
            &format!("{RECORDS} records over {protocol}"),
            Duration::from_secs(60),
            || {
                while let Some(m) = consumer.poll(Duration::from_millis(200)) {
                    let m = m.unwrap();
                    let i: usize = std::str::from_utf8(m.key().unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(
                        m.payload() == Some(&value(i)[..]),
                        "{protocol}: record {i} differs"
                    );
                    assert!(!seen[i], "{protocol}: record {i} twice");
                    seen[i] = true;
                    count += 1;
                }
                (count == RECORDS).then_some(())
            },
        );
    }
}
