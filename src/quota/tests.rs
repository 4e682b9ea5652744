use super::*;

fn entry(yaml: &str) -> EntityQuotas {
    serde_yaml_ng::from_str(yaml).unwrap()
}

fn user(name: Option<&str>) -> Entity {
    Entity {
        user: Some(Name::from_wire(name)),
        ..Default::default()
    }
}

#[test]
fn kafka_precedence_per_key() {
    let q = Quotas::load(
        &[
            entry("principal: <default>\nproducer_byte_rate: 100\nconsumer_byte_rate: 7\n"),
            entry("principal: User:alice\nproducer_byte_rate: 200\n"),
            entry("principal: User:alice\nclient_id: etl\nproducer_byte_rate: 300\n"),
            entry("client_id: <default>\nrequest_percentage: 50\n"),
        ],
        None,
    )
    .unwrap();
    let set = q.set.load();
    let rate = |u: &str, c: &str, k| Quotas::resolve(&set, u, c, k).map(|(_, v, _)| v);
    assert_eq!(
        rate("alice", "etl", QuotaKey::ProducerByteRate),
        Some(300.0)
    );
    assert_eq!(
        rate("alice", "other", QuotaKey::ProducerByteRate),
        Some(200.0)
    );
    assert_eq!(rate("bob", "etl", QuotaKey::ProducerByteRate), Some(100.0));
    // Per key: alice's own entries say nothing about consuming.
    assert_eq!(rate("alice", "etl", QuotaKey::ConsumerByteRate), Some(7.0));
    assert_eq!(rate("bob", "x", QuotaKey::RequestPercentage), Some(50.0));
    assert_eq!(rate("bob", "x", QuotaKey::ControllerMutationRate), None);
    // A user-level quota is one bucket for all of the user's clients; a
    // default-user quota one per user.
    let (k1, _, _) = Quotas::resolve(&set, "alice", "a", QuotaKey::ProducerByteRate).unwrap();
    let (k2, _, _) = Quotas::resolve(&set, "alice", "b", QuotaKey::ProducerByteRate).unwrap();
    assert!(k1 == k2);
    let (k3, _, _) = Quotas::resolve(&set, "bob", "a", QuotaKey::ProducerByteRate).unwrap();
    assert!(k1 != k3);
}

#[test]
fn altered_quotas_persist_and_removals_hide_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = [entry("principal: User:alice\nproducer_byte_rate: 1000\n")];
    let q = Quotas::load(&file, Some(dir.path())).unwrap();
    let alice = user(Some("alice"));
    q.alter(&[
        (alice.clone(), vec![(QuotaKey::ProducerByteRate, None)]),
        (user(None), vec![(QuotaKey::ConsumerByteRate, Some(5000.0))]),
    ])
    .unwrap();
    let after = |q: &Quotas| q.entries();
    assert_eq!(
        after(&q),
        vec![(user(None), vec![(QuotaKey::ConsumerByteRate, 5000.0)])]
    );
    let again = Quotas::load(&file, Some(dir.path())).unwrap();
    assert_eq!(after(&again), after(&q));
    again
        .alter(&[(
            alice.clone(),
            vec![(QuotaKey::ProducerByteRate, Some(42.0))],
        )])
        .unwrap();
    assert!(after(&again).contains(&(alice, vec![(QuotaKey::ProducerByteRate, 42.0)])));
    // A broken file is an error, not an empty set.
    std::fs::write(dir.path().join(FILE_NAME), b"[{").unwrap();
    assert!(Quotas::load(&file, Some(dir.path())).is_err());
}

#[test]
fn config_file_errors_name_the_entry() {
    let bad = [
        entry("principal: User:a\nproducer_byte_rate: 1\n"),
        entry("principal: User:b\nconnection_creation_rate: 1\n"),
    ];
    let err = Quotas::load(&bad, None).err().unwrap().to_string();
    assert!(err.contains("entry 1"), "{err}");
}

#[test]
fn a_bucket_throttles_by_its_debt() {
    let b = Bucket::new(1000.0);
    let t0 = Instant::now();
    // One second's burst is free, the rest is debt at 1000/s.
    assert_eq!(b.record(1000.0, t0), Duration::ZERO);
    let t = b.record(500.0, t0);
    assert!((t.as_secs_f64() - 0.5).abs() < 0.01, "{t:?}");
    // Paid off by waiting.
    assert_eq!(b.debt(t0 + Duration::from_millis(600)), Duration::ZERO);
    // The whole debt is owed (Kafka does not cap byte-rate throttles), up
    // to what throttle_time_ms can say.
    let big = b.record(1e6, t0 + Duration::from_secs(1));
    assert!((big.as_secs_f64() - 1000.0).abs() < 1.0, "{big:?}");
    assert_eq!(
        b.record(1e15, t0 + Duration::from_secs(1)),
        bucket::MAX_THROTTLE
    );
}

#[test]
fn mutations_strict_and_lenient() {
    let q = Quotas::load(
        &[entry(
            "principal: <default>\ncontroller_mutation_rate: 10\n",
        )],
        None,
    )
    .unwrap();
    let mut conn = ConnectionQuota::default();
    let r = conn.for_request(&q, "User:alice", "admin");
    // The burst may be overdrawn once, then strict requests are refused.
    assert!(r.mutate(25, true).is_ok());
    assert!(r.throttle_ms() > 1000);
    assert!(r.mutate(1, true).is_err());
    // Older API versions are accepted and throttled.
    assert!(r.mutate(1, false).is_ok());
    // Another user has a bucket of its own.
    let mut other = ConnectionQuota::default();
    assert!(other
        .for_request(&q, "User:bob", "x")
        .mutate(5, true)
        .is_ok());
}

#[test]
fn connection_creation_rate_per_ip() {
    let q = Quotas::load(
        &[
            entry("ip: <default>\nconnection_creation_rate: 2\n"),
            entry("ip: 10.0.0.9\nconnection_creation_rate: 100\n"),
        ],
        None,
    )
    .unwrap();
    let now = Instant::now();
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let vip: IpAddr = "10.0.0.9".parse().unwrap();
    assert!(q.connection_created(a, now).is_none());
    assert!(q.connection_created(a, now).is_none());
    assert!(q.connection_created(a, now).is_some());
    for _ in 0..50 {
        assert!(q.connection_created(vip, now).is_none());
    }
    assert!(Quotas::none().connection_created(a, now).is_none());
}

#[test]
fn no_quotas_means_no_buckets() {
    let q = Quotas::none();
    let mut conn = ConnectionQuota::default();
    let r = conn.for_request(&q, "User:alice", "c");
    assert!(r.is_empty());
    r.spend(QuotaKey::ProducerByteRate, 1e12);
    assert_eq!(r.throttle_ms(), 0);
}

#[test]
fn minted_client_ids_cannot_grow_the_bucket_table_without_bound() {
    let q = Quotas::load(
        &[
            // 1 B/s: a bucket in debt stays in debt however slow the loop.
            entry("client_id: <default>\nproducer_byte_rate: 1\n"),
            entry("client_id: etl\nproducer_byte_rate: 1000000\n"),
        ],
        None,
    )
    .unwrap();
    let mut conn = ConnectionQuota::default();
    for i in 0..(MAX_BUCKETS + 5000) {
        // Each id spends into debt, so none of them is full (sweepable).
        conn.for_request(&q, "User:mallory", &format!("id-{i}"))
            .spend(QuotaKey::ProducerByteRate, 1e6);
    }
    let held = q.buckets.lock().unwrap().len();
    assert!(held <= MAX_BUCKETS + 1, "{held} buckets");
    // Past the bound newcomers share one bucket, already in debt.
    let r = conn.for_request(&q, "User:mallory", "one-more");
    assert!(r.in_debt(QuotaKey::ProducerByteRate));
    // A configured entity keeps a bucket of its own.
    let etl = conn.for_request(&q, "User:alice", "etl");
    assert!(!etl.in_debt(QuotaKey::ProducerByteRate));
}
