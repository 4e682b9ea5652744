//! Crash safety of the log cleaner with the real binary: for each step of
//! a segment swap (see src/log/cleaner/swap.rs), the broker is made to
//! abort there (`PORTCULLIS_CLEANER_CRASH_AT`, the process dies as under
//! kill -9), restarted, and read with librdkafka: every record it serves is
//! one that was written, at its original offset, none twice, every key's
//! latest value is there; after the restart the cleaner finishes, each key
//! is left once, and `portcullis topic inspect` shows the pass.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use common::{scratch, wait_for, Broker};

const TOPIC: &str = "crash";
const STEPS: &[&str] = &[
    "cleaned-written",
    "swap-committed",
    "old-partly-deleted",
    "old-deleted",
    "swapped",
];
/// What the cleaner must leave alone until the test turns it on.
const CONFIGS: &[(&str, &str)] = &[
    ("segment.bytes", "4096"),
    ("min.cleanable.dirty.ratio", "0.01"),
];

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// (offset, key, value) of every record from the log start.
fn read_all(bootstrap: &str) -> Vec<(i64, String, Option<String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let (_, high) = wait_for("the high watermark", Duration::from_secs(60), || {
        c.fetch_watermarks(TOPIC, 0, Duration::from_secs(5)).ok()
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let value = m.payload().map(|v| String::from_utf8(v.to_vec()).unwrap());
            out.push((m.offset(), key, value));
            if m.offset() + 1 >= high {
                return out;
            }
        }
        assert!(
            Instant::now() < deadline,
            "read {} records, high watermark {high}",
            out.len()
        );
    }
}

fn describe(broker: &Broker) -> serde_json::Value {
    let out = broker.cli(&["topic", "inspect", TOPIC, "--json"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json")
}

#[test]
fn a_crash_at_every_step_of_a_clean_loses_and_duplicates_nothing() {
    let started = Instant::now();
    for step in STEPS {
        let dir = scratch(&format!("compaction-crash-{step}"));
        let mut broker = Broker::start(dir.path(), "log:\n  cleaner_backoff_ms: 100\n");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut t =
            NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1)).set("cleanup.policy", "delete");
        for (k, v) in CONFIGS {
            t = t.set(k, v);
        }
        for r in rt
            .block_on(admin(&broker.bootstrap).create_topics(&[t], &AdminOptions::new()))
            .unwrap()
        {
            r.unwrap();
        }
        // 60 keys x 15 versions, 5 keys deleted, then filler so all of it
        // is in sealed segments.
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &broker.bootstrap)
            .set("linger.ms", "2")
            .set("batch.num.messages", "20")
            .create()
            .unwrap();
        let send = |k: String, v: Option<String>| loop {
            let mut rec = BaseRecord::<String, String>::to(TOPIC).key(&k);
            if let Some(v) = &v {
                rec = rec.payload(v);
            }
            match p.send(rec) {
                Ok(()) => {
                    p.poll(Duration::ZERO);
                    break;
                }
                // A full queue: let deliveries drain, then retry.
                Err((e, _)) => {
                    assert!(
                        matches!(e, rdkafka::error::KafkaError::MessageProduction(_)),
                        "{e}"
                    );
                    p.poll(Duration::from_millis(10));
                }
            }
        };
        for v in 0..15 {
            for k in 0..60 {
                send(
                    format!("k{k}"),
                    Some(format!("k{k}-v{v}-{}", "x".repeat(40))),
                );
            }
        }
        for k in 0..5 {
            send(format!("k{k}"), None);
        }
        for f in 0..100 {
            send(format!("filler{}", f % 5), Some("f".repeat(60)));
        }
        p.flush(Duration::from_secs(30)).unwrap();
        let written = read_all(&broker.bootstrap);
        let original: HashMap<i64, (String, Option<String>)> = written
            .iter()
            .map(|(o, k, v)| (*o, (k.clone(), v.clone())))
            .collect();
        let mut latest: BTreeMap<String, i64> = BTreeMap::new();
        for (o, k, _) in &written {
            latest.insert(k.clone(), *o);
        }

        // Turn compaction on in a broker told to abort at `step`.
        broker.stop();
        broker.set_env("PORTCULLIS_CLEANER_CRASH_AT", Some(step));
        broker.relaunch();
        let alter = CONFIGS
            .iter()
            .fold(
                AlterConfig::new(ResourceSpecifier::Topic(TOPIC)),
                |a, (k, v)| a.set(k, v),
            )
            .set("cleanup.policy", "compact");
        for r in rt
            .block_on(admin(&broker.bootstrap).alter_configs(&[alter], &AdminOptions::new()))
            .unwrap()
        {
            r.unwrap();
        }
        wait_for(
            &format!("the crash at {step}"),
            Duration::from_secs(60),
            || (!broker.is_running()).then_some(()),
        );
        assert!(
            broker.log().contains("PORTCULLIS_CLEANER_CRASH_AT"),
            "{step}: {}",
            common::log_tail(&broker, 20)
        );

        // After the crash: nothing invented, nothing twice, nothing lost.
        broker.set_env("PORTCULLIS_CLEANER_CRASH_AT", None);
        broker.relaunch();
        let check = |got: &[(i64, String, Option<String>)], when: &str| {
            assert!(
                got.windows(2).all(|w| w[0].0 < w[1].0),
                "{step} {when}: offsets"
            );
            for (o, k, v) in got {
                assert_eq!(
                    original.get(o),
                    Some(&(k.clone(), v.clone())),
                    "{step} {when}: offset {o}"
                );
            }
            for (k, o) in &latest {
                assert!(
                    got.iter().any(|(go, gk, _)| go == o && gk == k),
                    "{step} {when}: latest {k}@{o}"
                );
            }
        };
        let after_crash = read_all(&broker.bootstrap);
        check(&after_crash, "after the crash");

        // The cleaner finishes: one record per key (tombstones included,
        // their delete.retention.ms is a day), and describe shows it.
        let done = wait_for(
            &format!("{step}: a completed pass"),
            Duration::from_secs(60),
            || {
                let d = describe(&broker);
                let cp = &d["partitions"][0]["checkpoint"];
                (cp["passes"].as_u64() >= Some(1) && cp["last_clean_ms"].as_i64() > Some(0))
                    .then_some(d)
            },
        );
        assert_eq!(done["compacted"], true, "{done}");
        let cleaned = read_all(&broker.bootstrap);
        check(&cleaned, "cleaned");
        // The filler's tail is in the active segment, which is never
        // cleaned; every other key is left once.
        let keys: Vec<&String> = cleaned
            .iter()
            .map(|(_, k, _)| k)
            .filter(|k| !k.starts_with("filler"))
            .collect();
        assert_eq!(keys.len(), 60, "{step}: one record per key: {keys:?}");
        let text = broker.cli(&["topic", "inspect", TOPIC], "");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("DIRTY RATIO") && text.contains("pass "),
            "{text}"
        );
        eprintln!(
            "{step}: {} records written, {} served after the crash, {} after cleaning; {}",
            written.len(),
            after_crash.len(),
            cleaned.len(),
            text.lines().last().unwrap_or("")
        );
    }
    eprintln!("all steps in {:.1?}", started.elapsed());
}
