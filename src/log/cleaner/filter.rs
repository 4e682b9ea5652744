//! What the cleaner does to one batch: which records stay, and the bytes
//! of the batch that holds them.
//!
//! As in Kafka (magic v2), a rewritten batch keeps its base offset, its last
//! offset delta, its producer id, epoch and base sequence, its max timestamp
//! and its codec; only the records that stay are in it, each with its
//! original offset delta, so offsets never change and a batch may hold
//! gaps. A batch the cleaner empties is dropped, unless it is its
//! producer's last one: then its header stays with no records, so the
//! producer's sequence and epoch survive a rebuild of producer state from
//! the log.
//!
//! Tombstones and transaction markers get Kafka's delete horizon (KIP-534)
//! the first time the cleaner keeps them: attribute bit 0x40 is set and the
//! batch's base timestamp becomes `now + delete.retention.ms`; the records'
//! timestamp deltas are rewritten against it so every record's timestamp
//! reads the same as before. Once the horizon has passed, a later pass
//! drops them.

use super::super::batch::{self, BatchHeader, HEADER_LEN};
use super::super::{recompress, records, LogError};
use super::offset_map::OffsetMap;

/// Kafka's `DELETE_HORIZON_FLAG_MASK`.
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// One record inside a decompressed batch body.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub offset_delta: i64,
    pub ts_delta: i64,
    attrs: u8,
    pub key: Option<&'a [u8]>,
    pub value_null: bool,
    /// Key, value and headers, as stored.
    tail: &'a [u8],
    /// The whole record with its length prefix.
    raw: &'a [u8],
}

fn corrupt(what: &str) -> LogError {
    LogError::CorruptBatch(format!("cleaner: {what}"))
}

fn varint(buf: &[u8], pos: &mut usize, what: &str) -> Result<i64, LogError> {
    batch::read_varint(buf, pos).ok_or_else(|| corrupt(what))
}

/// A nullable length-prefixed field at `*pos`; advances past it.
fn bytes_field<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    what: &str,
) -> Result<Option<&'a [u8]>, LogError> {
    let len = varint(buf, pos, what)?;
    if len < 0 {
        return Ok(None);
    }
    let end = pos
        .checked_add(len as usize)
        .filter(|e| *e <= buf.len())
        .ok_or_else(|| corrupt(what))?;
    let v = &buf[*pos..end];
    *pos = end;
    Ok(Some(v))
}

/// Every record of a decompressed body. Data on disk was validated when it
/// was appended; this still checks every length, so a damaged segment is
/// an error for that partition's pass, never a panic.
pub fn records(body: &[u8]) -> Result<Vec<Record<'_>>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let start = pos;
        let len = varint(body, &mut pos, "record length")?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| pos.checked_add(l))
            .filter(|e| *e <= body.len())
            .ok_or_else(|| corrupt("record length"))?;
        let rec = &body[..end];
        let attrs = *rec.get(pos).ok_or_else(|| corrupt("record attributes"))?;
        pos += 1;
        let ts_delta = varint(rec, &mut pos, "timestamp delta")?;
        let offset_delta = varint(rec, &mut pos, "offset delta")?;
        let tail_start = pos;
        let key = bytes_field(rec, &mut pos, "key")?;
        let value_null = bytes_field(rec, &mut pos, "value")?.is_none();
        out.push(Record {
            offset_delta,
            ts_delta,
            attrs,
            key,
            value_null,
            tail: &rec[tail_start..end],
            raw: &body[start..end],
        });
        pos = end;
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub fn delete_horizon(h: &BatchHeader) -> Option<i64> {
    (h.attributes & ATTR_DELETE_HORIZON != 0).then_some(h.base_timestamp)
}

/// Appends to `out` the batch `original` (header `h`) holding only `kept`
/// (records of its body), with `new_horizon` as its delete horizon if set.
pub fn rebuild(
    out: &mut Vec<u8>,
    original: &[u8],
    h: &BatchHeader,
    kept: &[Record<'_>],
    new_horizon: Option<i64>,
) -> Result<(), LogError> {
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&original[..HEADER_LEN]);
    let count = i32::try_from(kept.len()).map_err(|_| corrupt("record count"))?;
    header[57..61].copy_from_slice(&count.to_be_bytes());
    let mut raw = Vec::with_capacity(kept.iter().map(|r| r.raw.len() + 8).sum());
    match new_horizon {
        None => kept.iter().for_each(|r| raw.extend_from_slice(r.raw)),
        Some(horizon) => {
            let attrs = h.attributes | ATTR_DELETE_HORIZON;
            header[21..23].copy_from_slice(&attrs.to_be_bytes());
            header[27..35].copy_from_slice(&horizon.to_be_bytes());
            let mut body = Vec::new();
            for r in kept {
                // Same timestamp, measured from the new base.
                let ts = h.base_timestamp.saturating_add(r.ts_delta);
                body.clear();
                body.push(r.attrs);
                put_varint(&mut body, ts.saturating_sub(horizon));
                put_varint(&mut body, r.offset_delta);
                body.extend_from_slice(r.tail);
                put_varint(&mut raw, body.len() as i64);
                raw.extend_from_slice(&body);
            }
        }
    }
    // An emptied batch keeps only its header, uncompressed, as Kafka's.
    let codec = if kept.is_empty() { 0 } else { h.compression() };
    let payload = if codec == 0 {
        raw
    } else {
        recompress::compress(codec, &raw)
            .map_err(|e| LogError::CorruptBatch(format!("cleaner: recompressing: {e}")))?
    };
    batch::rebuild_into(out, &header, codec, &payload);
    Ok(())
}

/// What happened to one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Copied as it was.
    Kept,
    /// Written with fewer records or a new delete horizon.
    Rewritten,
    Dropped,
}

/// What the cleaner knows when it looks at a data batch.
pub struct Rules<'a> {
    pub map: &'a OffsetMap,
    pub now: i64,
    pub delete_retention_ms: i64,
}

/// Cleans one data batch into `out`. `aborted`: it belongs to an aborted
/// transaction (all its records go); `last_of_producer`: an emptied batch
/// keeps its header. Returns the outcome, the records kept and, when the
/// batch keeps tombstones, their delete horizon.
pub fn clean_data_batch(
    out: &mut Vec<u8>,
    original: &[u8],
    h: &BatchHeader,
    rules: &Rules<'_>,
    aborted: bool,
    last_of_producer: bool,
) -> Result<(Outcome, usize, Option<i64>), LogError> {
    let body = records::decompressed(original, h)?;
    let all = records(&body)?;
    let horizon = delete_horizon(h);
    let mut kept = Vec::with_capacity(all.len());
    let mut tombstones = false;
    if !aborted {
        for r in &all {
            let offset = h.base_offset + r.offset_delta;
            let latest = r.key.and_then(|k| rules.map.get(k));
            if latest.is_some_and(|l| offset < l) {
                continue;
            }
            if r.value_null {
                // A tombstone stays until its horizon has passed.
                if horizon.is_some_and(|hz| rules.now >= hz) {
                    continue;
                }
                tombstones = true;
            }
            kept.push(*r);
        }
    }
    let new_horizon = (tombstones && horizon.is_none())
        .then(|| rules.now.saturating_add(rules.delete_retention_ms));
    let pending = if tombstones {
        new_horizon.or(horizon)
    } else {
        None
    };
    if kept.len() == all.len() && new_horizon.is_none() {
        out.extend_from_slice(original);
        return Ok((Outcome::Kept, kept.len(), pending));
    }
    if kept.is_empty() && !last_of_producer {
        return Ok((Outcome::Dropped, 0, None));
    }
    rebuild(out, original, h, &kept, new_horizon)?;
    Ok((Outcome::Rewritten, kept.len(), pending))
}

/// A transaction marker the cleaner keeps: as it is when it already has a
/// delete horizon, else with one from now. Returns the horizon.
pub fn keep_marker(
    out: &mut Vec<u8>,
    original: &[u8],
    h: &BatchHeader,
    now: i64,
    delete_retention_ms: i64,
) -> Result<(Outcome, i64), LogError> {
    if let Some(hz) = delete_horizon(h) {
        out.extend_from_slice(original);
        return Ok((Outcome::Kept, hz));
    }
    let horizon = now.saturating_add(delete_retention_ms);
    let body = &original[HEADER_LEN..];
    let all = records(body)?;
    rebuild(out, original, h, &all, Some(horizon))?;
    Ok((Outcome::Rewritten, horizon))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::super::recompress::{CODEC_GZIP, CODEC_LZ4, CODEC_NONE, CODEC_ZSTD};
    use super::*;
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };

    /// `b` with its batches in `codec` (the protocol crate here encodes
    /// and decodes uncompressed batches only).
    fn in_codec(b: &[u8], codec: i16) -> Vec<u8> {
        let spans = batch::validate_produce_records(b, usize::MAX).unwrap();
        recompress::to_codec(b, &spans, codec).unwrap().0
    }

    /// One v2 batch at `base` holding (key, value, timestamp) records.
    pub fn encode(
        base: i64,
        entries: &[(&str, Option<&str>, i64)],
        codec: i16,
        producer: (i64, i16, i32),
    ) -> Vec<u8> {
        encode_txn(base, entries, codec, producer, false)
    }

    /// [`encode`], transactional when `transactional`.
    pub fn encode_txn(
        base: i64,
        entries: &[(&str, Option<&str>, i64)],
        codec: i16,
        producer: (i64, i16, i32),
        transactional: bool,
    ) -> Vec<u8> {
        let recs: Vec<KRecord> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v, ts))| KRecord {
                transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: producer.0,
                producer_epoch: producer.1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: producer.2 + i as i32,
                timestamp: *ts,
                key: Some(bytes::Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| bytes::Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        in_codec(&buf, codec)
    }

    pub fn decode(b: &[u8]) -> Vec<(i64, String, Option<String>, i64)> {
        let (batches, _) = batch::whole_batches(b);
        if batches.iter().all(|(_, h)| h.record_count == 0) {
            return Vec::new();
        }
        // Cleaned batches have gaps, which produce validation refuses:
        // inflate them directly.
        let mut plain = Vec::new();
        for (pos, h) in &batches {
            let one = &b[*pos..*pos + h.total_size()];
            let raw = records::decompressed(one, h).unwrap();
            batch::rebuild_into(&mut plain, one, CODEC_NONE, &raw);
        }
        let mut buf = bytes::Bytes::copy_from_slice(&plain);
        RecordBatchDecoder::decode_all(&mut buf)
            .unwrap()
            .into_iter()
            .flat_map(|s| s.records)
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
                    r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                    r.timestamp,
                )
            })
            .collect()
    }

    #[test]
    fn superseded_records_go_offsets_and_timestamps_stay() {
        for codec in [CODEC_NONE, CODEC_GZIP, CODEC_ZSTD] {
            let b = encode(
                100,
                &[
                    ("a", Some("1"), 1000),
                    ("b", Some("2"), 1001),
                    ("a", Some("3"), 1002),
                ],
                codec,
                (7, 1, 10),
            );
            let h = batch::check_batch(&b).unwrap();
            let mut map = OffsetMap::new(1 << 16);
            map.put(b"a", 102);
            map.put(b"b", 101);
            let rules = Rules {
                map: &map,
                now: 5000,
                delete_retention_ms: 100,
            };
            let mut out = Vec::new();
            let (o, n, hz) = clean_data_batch(&mut out, &b, &h, &rules, false, false).unwrap();
            assert_eq!((o, n, hz), (Outcome::Rewritten, 2, None));
            let nh = batch::check_batch(&out).unwrap();
            assert_eq!(nh.base_offset, 100);
            assert_eq!(nh.last_offset_delta, 2);
            assert_eq!(
                (nh.producer_id, nh.producer_epoch, nh.base_sequence),
                (7, 1, 10)
            );
            assert_eq!(nh.record_count, 2);
            assert_eq!(nh.compression(), h.compression());
            let got = decode(&out);
            assert_eq!(
                got,
                vec![
                    (101, "b".into(), Some("2".into()), 1001),
                    (102, "a".into(), Some("3".into()), 1002)
                ]
            );
            // Nothing superseded: the very same bytes.
            let mut again = Vec::new();
            let (o, ..) = clean_data_batch(&mut again, &out, &nh, &rules, false, false).unwrap();
            assert_eq!(o, Outcome::Kept);
            assert_eq!(again, out);
        }
    }

    #[test]
    fn tombstones_get_a_horizon_then_go() {
        let b = encode(
            0,
            &[("a", None, 1000), ("b", Some("x"), 1001)],
            CODEC_NONE,
            (-1, -1, -1),
        );
        let h = batch::check_batch(&b).unwrap();
        let map = OffsetMap::new(1 << 16);
        let rules = Rules {
            map: &map,
            now: 10_000,
            delete_retention_ms: 500,
        };
        let mut out = Vec::new();
        let (o, n, hz) = clean_data_batch(&mut out, &b, &h, &rules, false, false).unwrap();
        assert_eq!((o, n, hz), (Outcome::Rewritten, 2, Some(10_500)));
        let nh = batch::check_batch(&out).unwrap();
        assert_eq!(delete_horizon(&nh), Some(10_500));
        // Record timestamps read the same from the new base.
        assert_eq!(
            decode(&out),
            vec![
                (0, "a".into(), None, 1000),
                (1, "b".into(), Some("x".into()), 1001)
            ]
        );
        // Before the horizon: kept as is.
        let mut again = Vec::new();
        let (o, _, hz) = clean_data_batch(&mut again, &out, &nh, &rules, false, false).unwrap();
        assert_eq!((o, hz), (Outcome::Kept, Some(10_500)));
        // After it: the tombstone goes, the live record stays.
        let later = Rules {
            now: 10_500,
            ..rules
        };
        let mut last = Vec::new();
        let (o, n, hz) = clean_data_batch(&mut last, &out, &nh, &later, false, false).unwrap();
        assert_eq!((o, n, hz), (Outcome::Rewritten, 1, None));
        assert_eq!(decode(&last), vec![(1, "b".into(), Some("x".into()), 1001)]);
    }

    #[test]
    fn an_emptied_batch_is_dropped_unless_it_is_the_producers_last() {
        let b = encode(
            40,
            &[("a", Some("1"), 1), ("a", Some("2"), 2)],
            CODEC_LZ4,
            (9, 3, 20),
        );
        let h = batch::check_batch(&b).unwrap();
        let mut map = OffsetMap::new(1 << 16);
        map.put(b"a", 99);
        let rules = Rules {
            map: &map,
            now: 0,
            delete_retention_ms: 0,
        };
        let mut out = Vec::new();
        assert_eq!(
            clean_data_batch(&mut out, &b, &h, &rules, false, false)
                .unwrap()
                .0,
            Outcome::Dropped
        );
        assert!(out.is_empty());
        let (o, n, _) = clean_data_batch(&mut out, &b, &h, &rules, false, true).unwrap();
        assert_eq!((o, n), (Outcome::Rewritten, 0));
        let nh = batch::check_batch(&out).unwrap();
        assert_eq!(
            (nh.base_offset, nh.last_offset(), nh.record_count),
            (40, 41, 0)
        );
        assert_eq!(
            (nh.producer_id, nh.producer_epoch, nh.base_sequence),
            (9, 3, 20)
        );
        assert_eq!(nh.compression(), 0);
        // Aborted: every record goes whatever the map says.
        let empty = OffsetMap::new(1 << 16);
        let rules = Rules {
            map: &empty,
            ..rules
        };
        let mut out = Vec::new();
        assert_eq!(
            clean_data_batch(&mut out, &b, &h, &rules, true, false)
                .unwrap()
                .0,
            Outcome::Dropped
        );
    }

    #[test]
    fn damaged_records_are_an_error_not_a_panic() {
        let b = encode(0, &[("a", Some("1"), 1)], CODEC_NONE, (-1, -1, -1));
        for cut in HEADER_LEN..b.len() {
            let _ = records(&b[HEADER_LEN..cut]);
        }
        let mut bad = b[HEADER_LEN..].to_vec();
        bad[0] = 0x7f; // a record length far past the end
        assert!(records(&bad).is_err());
    }
}
