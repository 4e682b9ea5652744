//! Broker core, driven by librdkafka (the `rdkafka` crate) and by raw frames
//! for the hostile-input cases.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scratch, wait_for, Broker};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let res = rt
        .block_on(admin(bootstrap).create_topics(&[t], &AdminOptions::new()))
        .expect("create_topics");
    for r in res {
        r.unwrap_or_else(|e| panic!("create topic {name}: {e:?}"));
    }
}

/// Delivery reports: (key, partition, offset) of every acknowledged record.
type Acked = Vec<(Vec<u8>, i32, i64)>;
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Acked>>, Arc<Mutex<usize>>);

impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &DeliveryResult<'_>, _: ()) {
        match r {
            Ok(m) => self.0.lock().unwrap().push((
                m.key().unwrap_or_default().to_vec(),
                m.partition(),
                m.offset(),
            )),
            Err(_) => *self.1.lock().unwrap() += 1,
        }
    }
}

fn producer(bootstrap: &str, acks: &str, extra: &[(&str, &str)]) -> ThreadedProducer<Acks> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create_with_context(Acks::default()).expect("producer")
}

fn value_for(i: usize) -> Vec<u8> {
    let len = (i * 37) % 300;
    (0..len).map(|j| ((i + j) % 251) as u8).collect()
}

/// Reads every partition of `topic` from the start until `expected` records
/// arrived; returns them as (partition, offset, key, value, headers, ts).
type Rec = (i32, i64, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>, i64);
fn consume_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "unused-no-commits")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::with_capacity(expected);
    wait_for(
        &format!("{expected} records from {topic}"),
        Duration::from_secs(120),
        || {
            while let Some(m) = c.poll(Duration::from_millis(200)) {
                let m = m.expect("consume error");
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| (x.key.to_string(), x.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.partition(),
                    m.offset(),
                    m.key().unwrap_or_default().to_vec(),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                    m.timestamp().to_millis().unwrap_or(-1),
                ));
                if out.len() >= expected {
                    break;
                }
            }
            (out.len() >= expected).then_some(())
        },
    );
    // Nothing beyond what was produced.
    assert!(c.poll(Duration::from_millis(300)).is_none());
    out
}

#[test]
fn produce_100k_acks_all_and_read_back_identical() {
    let dir = scratch("roundtrip");
    let broker = Broker::start(dir.path(), "");
    create_topic(&broker.bootstrap, "orders", 3, &[]);
    let p = producer(&broker.bootstrap, "all", &[("compression.type", "lz4")]);
    let n = 100_000;
    for i in 0..n {
        let key = format!("key-{i}");
        let value = value_for(i);
        let headers = OwnedHeaders::new().insert(Header {
            key: "seq",
            value: Some(&i.to_string()),
        });
        let rec = BaseRecord::to("orders")
            .key(&key)
            .payload(&value)
            .headers(headers)
            .timestamp(1_700_000_000_000 + i as i64);
        let mut rec = rec;
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();
    let acks = p.context().0.lock().unwrap().clone();
    assert_eq!(acks.len(), n, "every record acknowledged");
    let by_key: HashMap<Vec<u8>, (i32, i64)> =
        acks.into_iter().map(|(k, p, o)| (k, (p, o))).collect();

    let records = consume_all(&broker.bootstrap, "orders", 3, n);
    assert_eq!(records.len(), n);
    let mut last_offset = [-1i64; 3];
    for (part, off, key, value, headers, ts) in records {
        let i: usize = std::str::from_utf8(&key).unwrap()[4..].parse().unwrap();
        assert_eq!(
            by_key[&key],
            (part, off),
            "record {i} where it was acknowledged"
        );
        assert_eq!(value, value_for(i));
        assert_eq!(
            headers,
            vec![("seq".to_string(), i.to_string().into_bytes())]
        );
        assert_eq!(ts, 1_700_000_000_000 + i as i64);
        assert!(
            off > last_offset[part as usize],
            "in order within partition"
        );
        last_offset[part as usize] = off;
    }
}

#[test]
fn kill9_during_acks_all_loses_no_acknowledged_record() {
    let dir = scratch("kill9");
    let mut broker = Broker::start(dir.path(), "");
    create_topic(&broker.bootstrap, "durable", 2, &[]);
    let p = producer(
        &broker.bootstrap,
        "all",
        &[("message.timeout.ms", "5000"), ("retries", "0")],
    );
    let ctx = p.context().clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("k{i}");
                let value = format!("v{i}");
                if p.send(BaseRecord::to("durable").key(&key).payload(&value))
                    .is_ok()
                {
                    i += 1;
                } else {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            let _ = p.flush(Duration::from_secs(10));
        })
    };
    wait_for("20k acknowledged records", Duration::from_secs(60), || {
        (ctx.0.lock().unwrap().len() >= 20_000).then_some(())
    });
    broker.kill9();
    let acked: Vec<(Vec<u8>, i32, i64)> = ctx.0.lock().unwrap().clone();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.join().unwrap();

    broker.restart_after_kill9();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "unused")
        .create()
        .unwrap();
    let (_, high0) = c
        .fetch_watermarks("durable", 0, Duration::from_secs(10))
        .unwrap();
    let (_, high1) = c
        .fetch_watermarks("durable", 1, Duration::from_secs(10))
        .unwrap();
    let total = (high0 + high1) as usize;
    assert!(
        total >= acked.len(),
        "{total} stored < {} acknowledged",
        acked.len()
    );
    let records = consume_all(&broker.bootstrap, "durable", 2, total);
    let stored: HashMap<(i32, i64), Vec<u8>> = records
        .into_iter()
        .map(|(p, o, k, _, _, _)| ((p, o), k))
        .collect();
    for (key, part, off) in &acked {
        assert_eq!(
            stored.get(&(*part, *off)),
            Some(key),
            "acknowledged record at {part}/{off} survived"
        );
    }
}

#[test]
fn restart_keeps_data_and_truncates_a_torn_tail() {
    let dir = scratch("restart");
    let mut broker = Broker::start(dir.path(), "");
    create_topic(&broker.bootstrap, "t", 1, &[]);
    let p = producer(&broker.bootstrap, "1", &[]);
    for i in 0..1000 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        p.send(BaseRecord::to("t").key(&k).payload(&v)).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
    drop(p);
    broker.stop();
    // Simulate a crash mid-write: half a batch of garbage at the tail.
    let seg = dir.path().join("data/topics/t/0/00000000000000000000.log");
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &[0, 0, 0, 0, 0, 0, 3, 232, 0, 0, 1, 0, 9, 9, 9]).unwrap();
    drop(f);
    broker.restart();
    assert!(broker.log().contains("recovery truncated the log tail"));
    let recs = consume_all(&broker.bootstrap, "t", 1, 1000);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.1, i as i64);
        assert_eq!(r.3, format!("v{i}").into_bytes());
    }
    // And the log keeps growing from the right offset.
    let p = producer(&broker.bootstrap, "all", &[]);
    p.send(BaseRecord::to("t").key("after").payload("restart"))
        .unwrap();
    p.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(p.context().0.lock().unwrap()[0].2, 1000);
}

#[test]
fn retention_deletes_old_segments() {
    let dir = scratch("retention");
    let broker = Broker::start(
        dir.path(),
        "log:\n  segment_bytes: 4096\n  retention_check_interval_ms: 200\n",
    );
    create_topic(&broker.bootstrap, "old", 1, &[("retention.ms", "60000")]);
    create_topic(&broker.bootstrap, "big", 1, &[("retention.bytes", "20000")]);
    create_topic(&broker.bootstrap, "keep", 1, &[("retention.ms", "-1")]);
    let p = producer(&broker.bootstrap, "1", &[("linger.ms", "0")]);
    let hour_ago = rdkafka::util::current_time_millis() - 3_600_000;
    for topic in ["old", "big", "keep"] {
        for i in 0..300 {
            let v = vec![b'x'; 200];
            let k = format!("{i}");
            p.send(
                BaseRecord::to(topic)
                    .key(&k)
                    .payload(&v)
                    .timestamp(hour_ago),
            )
            .unwrap();
            if i % 10 == 0 {
                p.flush(Duration::from_secs(10)).unwrap();
            }
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("group.id", "unused")
        .create()
        .unwrap();
    let seg_count = |t: &str| {
        std::fs::read_dir(dir.path().join(format!("data/topics/{t}/0")))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "log")
            })
            .count()
    };
    // Everything in `old` is an hour old: all segments go, the log start
    // moves to the end.
    wait_for("time retention", Duration::from_secs(30), || {
        let (low, high) = c.fetch_watermarks("old", 0, Duration::from_secs(5)).ok()?;
        (high == 300 && low == 300).then_some(())
    });
    assert_eq!(seg_count("old"), 1);
    wait_for("size retention", Duration::from_secs(30), || {
        let (low, _) = c.fetch_watermarks("big", 0, Duration::from_secs(5)).ok()?;
        (low > 0).then_some(())
    });
    let big_bytes: u64 = std::fs::read_dir(dir.path().join("data/topics/big/0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(big_bytes <= 20_000 + 4096, "{big_bytes} bytes kept");
    let (low, high) = c
        .fetch_watermarks("keep", 0, Duration::from_secs(5))
        .unwrap();
    assert_eq!((low, high), (0, 300));
    assert!(seg_count("keep") > 5);
    // Consumers of `big` resume from the new log start.
    let low = c
        .fetch_watermarks("big", 0, Duration::from_secs(5))
        .unwrap()
        .0;
    let recs = consume_all(&broker.bootstrap, "big", 1, (300 - low) as usize);
    assert_eq!(recs[0].1, low);
}

/// A topic's `compression.type` (Kafka's semantics): batches the producers
/// sent with every codec are stored in the topic's codec, and read back
/// identical (keys, values, headers, offsets) by librdkafka; `producer`
/// keeps each batch as sent.
#[test]
fn topic_compression_type_recompresses_every_codec() {
    let dir = scratch("compression-type");
    let broker = Broker::start(dir.path(), "");
    let b = &broker.bootstrap;
    let producer_codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let targets = [
        ("uncompressed", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
        ("producer", -1),
    ];
    let per_codec = 40;
    for (target, want) in targets {
        let topic = format!("codec-{target}");
        create_topic(b, &topic, 1, &[("compression.type", target)]);
        for (ci, codec) in producer_codecs.iter().enumerate() {
            let p = producer(b, "all", &[("compression.codec", codec)]);
            for i in 0..per_codec {
                let n = ci * per_codec + i;
                let key = format!("k{n}");
                let value = value_for(n);
                let headers = OwnedHeaders::new().insert(Header {
                    key: "codec",
                    value: Some(codec.as_bytes()),
                });
                p.send(
                    BaseRecord::to(&topic)
                        .key(&key)
                        .payload(&value)
                        .headers(headers),
                )
                .unwrap();
            }
            p.flush(Duration::from_secs(60)).unwrap();
            assert_eq!(
                p.context().1.lock().map(|e| *e).unwrap(),
                0,
                "{topic}: deliveries failed for producer codec {codec}"
            );
        }
        let total = producer_codecs.len() * per_codec;
        let got = consume_all(b, &topic, 1, total);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.1, i as i64, "{topic}: offsets in order");
            assert_eq!(r.2, format!("k{i}").into_bytes(), "{topic}: key at {i}");
            assert_eq!(r.3, value_for(i), "{topic}: value at {i}");
            let codec = producer_codecs[i / per_codec];
            assert_eq!(
                r.4,
                vec![("codec".to_string(), codec.as_bytes().to_vec())],
                "{topic}: headers at {i}"
            );
        }
        let stored = common::stored_codecs(&dir.path().join("data"), &topic);
        assert!(!stored.is_empty(), "{topic}: no stored batch found");
        if want >= 0 {
            assert!(
                stored.iter().all(|c| *c == want),
                "{topic}: stored codecs {stored:?}, want all {want}"
            );
        } else {
            let kinds: std::collections::BTreeSet<i16> = stored.iter().copied().collect();
            assert_eq!(
                kinds,
                (0..5).collect(),
                "{topic}: `producer` keeps each batch's own codec"
            );
        }
        eprintln!("{topic}: {total} records from 5 producer codecs, stored {stored:?}");
    }
    // An unknown value is refused by name.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let res = rt
        .block_on(
            admin(b).create_topics(
                &[NewTopic::new("codec-bad", 1, TopicReplication::Fixed(1))
                    .set("compression.type", "brotli")],
                &AdminOptions::new(),
            ),
        )
        .unwrap();
    match &res[0] {
        Err((_, code)) => assert_eq!(
            *code,
            rdkafka::types::RDKafkaErrorCode::InvalidConfig,
            "compression.type=brotli"
        ),
        Ok(t) => panic!("compression.type=brotli created {t}"),
    }
}

/// The legacy AlterConfigs (API 33) through librdkafka's `alter_configs`:
/// the topic's configs become exactly those sent (the others return to
/// their defaults), a bad value changes nothing.
#[test]
fn legacy_alter_configs_replaces_a_topics_configs() {
    use rdkafka::admin::{AlterConfig, ConfigSource, ResourceSpecifier};
    let dir = scratch("legacy-alter-configs");
    let broker = Broker::start(dir.path(), "");
    let b = &broker.bootstrap;
    create_topic(
        b,
        "legacy",
        1,
        &[("retention.ms", "5000"), ("segment.bytes", "65536")],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = admin(b);
    let describe = || -> HashMap<String, (Option<String>, ConfigSource)> {
        let res = rt
            .block_on(
                a.describe_configs(&[ResourceSpecifier::Topic("legacy")], &AdminOptions::new()),
            )
            .unwrap();
        let r = res.into_iter().next().unwrap().expect("describe_configs");
        r.entries
            .into_iter()
            .map(|e| (e.name, (e.value, e.source)))
            .collect()
    };
    let before = describe();
    assert_eq!(before["retention.ms"].0.as_deref(), Some("5000"));

    let alter = |k: &str, v: &str| {
        rt.block_on(a.alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic("legacy")).set(k, v)],
            &AdminOptions::new(),
        ))
        .unwrap()
        .into_iter()
        .next()
        .unwrap()
    };
    alter("retention.bytes", "123456").expect("legacy alter_configs");
    let after = describe();
    assert_eq!(after["retention.bytes"].0.as_deref(), Some("123456"));
    assert_eq!(after["retention.bytes"].1, ConfigSource::DynamicTopic);
    // Left out of the request: back to the defaults.
    assert_eq!(
        after["retention.ms"].1,
        ConfigSource::Default,
        "{:?}",
        after["retention.ms"]
    );
    assert_eq!(
        after["segment.bytes"].1,
        ConfigSource::Default,
        "{:?}",
        after["segment.bytes"]
    );

    // librdkafka reports the refusal, but the rdkafka crate drops
    // per-resource errors of AlterConfigs: the code is read from the raw
    // answer.
    let code = legacy_alter_raw(&broker, "legacy", "retention.bytes", "not-a-number");
    assert_eq!(code, 40, "INVALID_CONFIG for a bad value");
    assert_eq!(
        describe()["retention.bytes"].0.as_deref(),
        Some("123456"),
        "a refused request changes nothing"
    );
    assert_eq!(
        legacy_alter_raw(&broker, "no-such-topic", "retention.ms", "1"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

/// One legacy AlterConfigs (v1) of one topic config on a new connection;
/// the resource's error code.
fn legacy_alter_raw(broker: &Broker, topic: &str, key: &str, value: &str) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::{
        AlterConfigsRequest, AlterConfigsResponse, ApiKey, RequestHeader, ResponseHeader,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
    let s = |v: &str| StrBytes::from_string(v.to_string());
    let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s(topic))
        .with_configs(vec![AlterableConfig::default()
            .with_name(s(key))
            .with_value(Some(s(value)))])]);
    let version = 1;
    let mut buf = bytes::BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::AlterConfigs as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(
            &mut buf,
            ApiKey::AlterConfigs.request_header_version(version),
        )
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let mut conn = broker.connect();
    let body = common::raw_request(&mut conn, &buf).expect("an answer");
    let mut body = bytes::Bytes::from(body);
    ResponseHeader::decode(
        &mut body,
        ApiKey::AlterConfigs.response_header_version(version),
    )
    .unwrap();
    let resp = AlterConfigsResponse::decode(&mut body, version).unwrap();
    resp.responses[0].error_code
}
