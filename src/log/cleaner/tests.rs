//! The cleaner against real partitions on disk: what a pass keeps, what a
//! crash at each step of a swap leaves, several passes when the offset map
//! is small, transactions and idempotent producers.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::filter::tests::{decode, encode, encode_txn};
use super::*;
use crate::log::files::FileCache;
use crate::log::recompress::CODEC_NONE;
use crate::log::topic_config;
use crate::log::txn_index::Marker;

fn cfg(extra: &[(&str, &str)]) -> EffectiveConfig {
    let mut o = BTreeMap::new();
    o.insert("cleanup.policy".to_string(), "compact".to_string());
    o.insert("segment.bytes".to_string(), "1024".to_string());
    o.insert("min.cleanable.dirty.ratio".to_string(), "0.01".to_string());
    for (k, v) in extra {
        o.insert(k.to_string(), v.to_string());
    }
    topic_config::effective(&LogConfig::default(), &o)
}

fn open(dir: &Path) -> Arc<Partition> {
    Partition::open("t".into(), 0, dir.to_path_buf(), 256, &FileCache::new(64)).unwrap()
}

fn append(p: &Partition, cfg: &EffectiveConfig, b: &[u8]) -> i64 {
    let spans = batch::validate_produce_records(b, usize::MAX).unwrap();
    p.append(b, &spans, cfg).unwrap().base_offset
}

/// Appends (key, value) records as one plain batch; returns its base.
fn put(p: &Partition, cfg: &EffectiveConfig, entries: &[(String, Option<String>)]) -> i64 {
    let now = now_ms();
    let e: Vec<(&str, Option<&str>, i64)> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref(), now))
        .collect();
    append(p, cfg, &encode(0, &e, CODEC_NONE, (-1, -1, -1)))
}

/// Every data record from the log start: (offset, key, value).
fn read_all(p: &Partition) -> Vec<(i64, String, Option<String>)> {
    let mut out = Vec::new();
    let mut off = p.log_start_offset();
    while off < p.end_offset() {
        let r = p.read(off, 1 << 20).unwrap();
        let Some(bytes) = r.records else { break };
        let (batches, _) = batch::whole_batches(&bytes);
        for (pos, h) in &batches {
            if !h.is_control() {
                let b = &bytes[*pos..*pos + h.total_size()];
                out.extend(decode(b).into_iter().map(|(o, k, v, _)| (o, k, v)));
            }
        }
        off = batches.last().unwrap().1.last_offset() + 1;
    }
    out
}

fn settings(map_bytes: u64) -> LogConfig {
    LogConfig {
        cleaner_dedupe_buffer_bytes: map_bytes,
        ..LogConfig::default()
    }
}

fn pass(
    p: &Partition,
    cfg: &EffectiveConfig,
    s: &LogConfig,
) -> Result<Option<PassStats>, LogError> {
    let view = p.clean_view();
    let plan = plan(&view, &p.cleaner_checkpoint(), cfg, now_ms());
    if !plan.due(cfg) {
        return Ok(None);
    }
    clean(p, cfg, &view, &plan, s, &Throttle::new(0)).map(Some)
}

/// Writes `versions` versions of `keys` keys (4 records a batch), then
/// tombstones for the first `dead` keys, then filler that rolls the
/// segment. Returns the latest (offset, value) per key.
fn fill(
    p: &Partition,
    cfg: &EffectiveConfig,
    keys: usize,
    versions: usize,
    dead: usize,
) -> HashMap<String, (i64, Option<String>)> {
    let mut latest = HashMap::new();
    let mut pending: Vec<(String, Option<String>)> = Vec::new();
    let flush = |pending: &mut Vec<(String, Option<String>)>, latest: &mut HashMap<_, _>| {
        if pending.is_empty() {
            return;
        }
        let base = put(p, cfg, pending);
        for (i, (k, v)) in pending.drain(..).enumerate() {
            latest.insert(k, (base + i as i64, v));
        }
    };
    for v in 0..versions {
        for k in 0..keys {
            pending.push((format!("k{k}"), Some(format!("k{k}-v{v}"))));
            if pending.len() == 4 {
                flush(&mut pending, &mut latest);
            }
        }
    }
    flush(&mut pending, &mut latest);
    for k in 0..dead {
        pending.push((format!("k{k}"), None));
    }
    flush(&mut pending, &mut latest);
    // Filler: the data above is then in sealed segments.
    for f in 0..40 {
        pending.push((format!("filler{}", f % 4), Some("x".repeat(40))));
        if pending.len() == 4 {
            flush(&mut pending, &mut latest);
        }
    }
    flush(&mut pending, &mut latest);
    latest
}

/// Each key once at its latest offset with its latest value, and nothing
/// but latest values for keys in `latest` (filler aside).
fn assert_latest(
    got: &[(i64, String, Option<String>)],
    latest: &HashMap<String, (i64, Option<String>)>,
    tombstones_expected: bool,
) {
    assert!(
        got.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets must increase"
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (off, k, v) in got {
        if k.starts_with("filler") {
            continue;
        }
        let (want_off, want_v) = &latest[k];
        assert_eq!((off, v), (want_off, want_v), "key {k}");
        *seen.entry(k).or_default() += 1;
    }
    for (k, (_, v)) in latest.iter().filter(|(k, _)| !k.starts_with("filler")) {
        let n = seen.get(k.as_str()).copied().unwrap_or(0);
        match (v, tombstones_expected) {
            (None, false) => assert_eq!(n, 0, "tombstone of {k} should be gone"),
            _ => assert_eq!(n, 1, "key {k}"),
        }
    }
}

#[tokio::test]
async fn a_pass_keeps_the_latest_value_per_key_at_its_offset_and_tombstones_expire() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(&[("delete.retention.ms", "0")]);
    let p = open(dir.path());
    let latest = fill(&p, &cfg, 40, 10, 5);
    let before = p.size_bytes();
    let segments = p.segment_count();

    let s = pass(&p, &cfg, &settings(1 << 20)).unwrap().expect("due");
    assert!(s.completed, "{s:?}");
    // First pass: tombstones stay (their horizon starts now).
    assert_latest(&read_all(&p), &latest, true);
    let after = p.size_bytes();
    assert!(after * 4 < before, "{before} -> {after} bytes");
    let cp = p.cleaner_checkpoint();
    assert_eq!(cp.passes, 1);
    assert!(cp.next_horizon_ms.is_some() && cp.last_clean_ms > 0);

    // Their horizon has passed (delete.retention.ms=0): the next pass is
    // due for them alone and removes them.
    let s = pass(&p, &cfg, &settings(1 << 20))
        .unwrap()
        .expect("horizon due");
    assert!(s.completed);
    assert_latest(&read_all(&p), &latest, false);
    assert_eq!(p.cleaner_checkpoint().next_horizon_ms, None);
    // Groups are made by size: the segments the first pass shrank were
    // merged by the second.
    assert!(
        p.segment_count() < segments / 2,
        "{segments} -> {}",
        p.segment_count()
    );

    // Nothing new: no pass is due, and a restart reads the same.
    let view = p.clean_view();
    let plan = plan(&view, &p.cleaner_checkpoint(), &cfg, now_ms());
    assert!(!plan.due(&cfg), "{plan:?} {:?}", p.cleaner_checkpoint());
    drop(p);
    let p = open(dir.path());
    assert_latest(&read_all(&p), &latest, false);
}

#[tokio::test]
async fn a_crash_at_any_step_leaves_the_old_or_the_new_segments() {
    for step in swap::STEPS {
        let dir = tempfile::tempdir().unwrap();
        let cfg = cfg(&[("delete.retention.ms", "3600000")]);
        let p = open(dir.path());
        let latest = fill(&p, &cfg, 30, 8, 3);
        let original: HashMap<i64, (String, Option<String>)> = read_all(&p)
            .into_iter()
            .map(|(o, k, v)| (o, (k, v)))
            .collect();
        swap::set_test_fault(Some(step));
        assert!(pass(&p, &cfg, &settings(1 << 20)).is_err(), "{step}");
        swap::set_test_fault(None);
        drop(p);

        // Recovery: every record is one of the originals at its offset,
        // none twice, and every key's latest value is there.
        let p = open(dir.path());
        let got = read_all(&p);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "{step}");
        for (o, k, v) in &got {
            assert_eq!(original.get(o), Some(&(k.clone(), v.clone())), "{step}");
        }
        for (k, (off, _)) in &latest {
            assert!(
                got.iter().any(|(o, kk, _)| o == off && kk == k),
                "{step}: {k}"
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".swap") || n.ends_with(".cleaned"))
            .collect();
        assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
        // And cleaning resumes to the same end state.
        while pass(&p, &cfg, &settings(1 << 20)).unwrap().is_some() {}
        assert_latest(&read_all(&p), &latest, true);
    }
}

#[tokio::test]
async fn a_small_offset_map_cleans_in_several_passes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(&[]);
    let p = open(dir.path());
    let latest = fill(&p, &cfg, 120, 5, 0);
    // 1 KiB: room for a few dozen keys per pass.
    let s = settings(1024);
    let mut passes = 0;
    while let Some(stats) = pass(&p, &cfg, &s).unwrap() {
        assert!(stats.completed && stats.map_keys <= 64, "{stats:?}");
        passes += 1;
        assert!(passes < 100, "no progress");
    }
    assert!(passes >= 3, "{passes} passes");
    assert_latest(&read_all(&p), &latest, true);
}

#[tokio::test]
async fn aborted_data_goes_producer_state_survives_a_rebuild_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cfg(&[("delete.retention.ms", "0")]);
    let p = open(dir.path());
    let now = now_ms();
    // An idempotent producer (id 7) writes keys a0..a3 in four batches.
    for seq in 0..4 {
        let k = format!("a{seq}");
        append(
            &p,
            &cfg,
            &encode(0, &[(&k, Some("idem"), now)], CODEC_NONE, (7, 0, seq)),
        );
    }
    // Two aborted transactions of producer 9, one committed of 10.
    for round in 0..2 {
        let b = encode_txn(
            0,
            &[("x", Some("aborted"), now)],
            CODEC_NONE,
            (9, 0, round),
            true,
        );
        append(&p, &cfg, &b);
        p.append_marker(9, 0, Marker::Abort, &cfg).unwrap();
    }
    let b = encode_txn(
        0,
        &[("y", Some("committed"), now)],
        CODEC_NONE,
        (10, 0, 0),
        true,
    );
    append(&p, &cfg, &b);
    p.append_marker(10, 0, Marker::Commit, &cfg).unwrap();
    // Plain writes supersede a0..a3; filler rolls the segment.
    let mut latest = fill(&p, &cfg, 0, 0, 0);
    for seq in 0..4 {
        let k = format!("a{seq}");
        let base = put(&p, &cfg, &[(k.clone(), Some("plain".into()))]);
        latest.insert(k, (base, Some("plain".into())));
    }
    latest.extend(fill(&p, &cfg, 0, 0, 0));

    while pass(&p, &cfg, &settings(1 << 20)).unwrap().is_some() {}
    let got = read_all(&p);
    assert!(
        got.iter().all(|(_, k, _)| k != "x"),
        "aborted data must go: {got:?}"
    );
    assert!(got
        .iter()
        .any(|(_, k, v)| k == "y" && v.as_deref() == Some("committed")));
    for (k, (off, v)) in latest.iter().filter(|(k, _)| k.starts_with('a')) {
        let found: Vec<_> = got.iter().filter(|(_, kk, _)| kk == k).collect();
        assert_eq!(found, vec![&(*off, k.clone(), v.clone())]);
    }
    assert_eq!(
        p.last_stable_offset(),
        p.end_offset(),
        "no transaction left open"
    );

    // Rebuild producer and transaction state from the cleaned log alone.
    drop(p);
    for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let p = open(dir.path());
    assert_eq!(
        p.last_stable_offset(),
        p.end_offset(),
        "markers kept what recovery needs"
    );
    // Producer 7's last batch (emptied) kept its sequence: a retry is a
    // duplicate, the next sequence is accepted.
    let retry = encode(0, &[("a3", Some("idem"), now)], CODEC_NONE, (7, 0, 3));
    let spans = batch::validate_produce_records(&retry, usize::MAX).unwrap();
    assert!(p.append(&retry, &spans, &cfg).unwrap().duplicate);
    let next = encode(0, &[("a4", Some("idem"), now)], CODEC_NONE, (7, 0, 4));
    let spans = batch::validate_produce_records(&next, usize::MAX).unwrap();
    assert!(!p.append(&next, &spans, &cfg).unwrap().duplicate);
}
