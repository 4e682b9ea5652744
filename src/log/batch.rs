//! Record batch (magic v2) headers: parsing, validation on append, and the
//! in-place rewrites the broker is allowed to make (base offset, leader
//! epoch, log-append time). Records themselves are never decoded here.

use super::LogError;

/// baseOffset(8) + batchLength(4): the part before `batchLength` counts from.
pub const LOG_OVERHEAD: usize = 12;
/// Full v2 header size up to and including recordCount.
pub const HEADER_LEN: usize = 61;
const MAGIC_OFFSET: usize = 16;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const LEADER_EPOCH_OFFSET: usize = 12;
const MAX_TIMESTAMP_OFFSET: usize = 35;

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the fixed header; `None` if fewer than [`HEADER_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, 0),
            batch_length: be_i32(b, 8),
            magic: b[MAGIC_OFFSET] as i8,
            crc: be_i32(b, CRC_OFFSET) as u32,
            attributes: be_i16(b, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        })
    }

    /// Bytes the whole batch occupies in the log.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(self.last_offset_delta as i64)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Reads the batch size from the first 12 bytes; `None` if too short.
pub fn peek_total_size(b: &[u8]) -> Option<usize> {
    if b.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(b, 8);
    if len < 0 {
        return Some(usize::MAX);
    }
    Some(LOG_OVERHEAD + len as usize)
}

/// One validated batch inside a produce request's record bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpan {
    pub start: usize,
    pub header: BatchHeader,
}

impl BatchSpan {
    pub fn end(&self) -> usize {
        self.start + self.header.total_size()
    }
}

/// Appends to `out` a batch with the fields of `header` (the first
/// [`HEADER_LEN`] bytes of a valid batch), its codec set to `codec` and
/// `body` as its records; the length and the CRC are computed anew.
pub fn rebuild_into(out: &mut Vec<u8>, header: &[u8], codec: i16, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&header[..HEADER_LEN]);
    out.extend_from_slice(body);
    let b = &mut out[start..];
    // Bodies are bounded by the decompression bound, far below 2 GiB.
    let len = i32::try_from(b.len() - LOG_OVERHEAD).unwrap_or(i32::MAX);
    b[8..12].copy_from_slice(&len.to_be_bytes());
    let attrs = (be_i16(b, ATTRIBUTES_OFFSET) & !ATTR_COMPRESSION_MASK) | codec;
    b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(b);
    b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// CRC-32C over everything from `attributes` to the end of the batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..])
}

/// Checks one complete batch (header sanity and CRC) as stored or as sent.
pub fn check_batch(batch: &[u8]) -> Result<BatchHeader, LogError> {
    let h = BatchHeader::parse(batch)
        .ok_or_else(|| LogError::CorruptBatch("batch shorter than its header".into()))?;
    if h.magic != 2 {
        return Err(LogError::UnsupportedMagic(h.magic));
    }
    if (h.batch_length as usize) < HEADER_LEN - LOG_OVERHEAD || h.total_size() != batch.len() {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} does not match its {} bytes",
            h.batch_length,
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != h.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC-32C mismatch (stored {:#010x}, computed {crc:#010x})",
            h.crc
        )));
    }
    if h.last_offset_delta < 0 {
        return Err(LogError::InvalidRecord("negative last offset delta".into()));
    }
    Ok(h)
}

/// Splits a produce request's record bytes into batches and validates each.
/// Leftover bytes that do not form a whole batch are an error, not ignored.
pub fn validate_produce_records(
    records: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchSpan>, LogError> {
    validate_produce_records_keyed(records, max_batch_bytes, false)
}

/// [`validate_produce_records`] for a topic that may require every record
/// to have a key (a compacted one).
pub fn validate_produce_records_keyed(
    records: &[u8],
    max_batch_bytes: usize,
    keys_required: bool,
) -> Result<Vec<BatchSpan>, LogError> {
    let mut spans = Vec::with_capacity(1);
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        let size = peek_total_size(rest)
            .ok_or_else(|| LogError::CorruptBatch("truncated batch header".into()))?;
        if size > max_batch_bytes {
            return Err(LogError::BatchTooLarge {
                size,
                limit: max_batch_bytes,
            });
        }
        if size > rest.len() {
            return Err(LogError::CorruptBatch(format!(
                "batch claims {size} bytes but only {} remain",
                rest.len()
            )));
        }
        let header = check_batch(&rest[..size])?;
        super::records::validate_keyed(&rest[..size], &header, keys_required)?;
        spans.push(BatchSpan { start: pos, header });
        pos += size;
    }
    if spans.is_empty() {
        return Err(LogError::InvalidRecord("no record batch in request".into()));
    }
    Ok(spans)
}

/// Rewrites the broker-owned header fields of a batch copied into `out`.
/// The base offset and leader epoch lie outside the CRC; switching to
/// log-append time changes covered bytes, so the CRC is recomputed then.
pub fn stamp_batch(out: &mut [u8], base_offset: i64, log_append_time: Option<i64>) {
    out[0..8].copy_from_slice(&base_offset.to_be_bytes());
    out[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&0i32.to_be_bytes());
    if let Some(ts) = log_append_time {
        let attrs = be_i16(out, ATTRIBUTES_OFFSET) | ATTR_TIMESTAMP_TYPE;
        out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        out[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = compute_crc(out);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Reads a zig-zag varint (Kafka's record fields) at `*pos`, advancing it.
pub fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut result: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        result |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((result >> 1) as i64) ^ -((result & 1) as i64))
}

/// The first record of an uncompressed batch whose timestamp is at least
/// `ts` and whose offset is at least `min_offset` (the log start offset:
/// records deleted by DeleteRecords do not answer): (offset, timestamp).
/// Records are walked, never copied; `None` for compressed batches (the
/// caller answers at batch granularity) or when no record qualifies.
pub fn first_record_at_or_after(batch: &[u8], ts: i64, min_offset: i64) -> Option<(i64, i64)> {
    let h = BatchHeader::parse(batch)?;
    if h.compression() != 0 {
        return None;
    }
    let mut pos = HEADER_LEN;
    let varint = |pos: &mut usize| read_varint(batch, pos);
    for _ in 0..h.record_count.max(0) {
        let len = varint(&mut pos)?;
        let start = pos;
        pos += 1; // attributes
        let ts_delta = varint(&mut pos)?;
        let off_delta = varint(&mut pos)?;
        // Client-chosen fields: no arithmetic on them may overflow.
        let rts = h.base_timestamp.saturating_add(ts_delta);
        let offset = h.base_offset.saturating_add(off_delta);
        if rts >= ts && offset >= min_offset {
            return Some((offset, rts));
        }
        pos = start.checked_add(usize::try_from(len).ok()?)?;
    }
    None
}

/// The length of the whole batches at the start of `buf` that begin below
/// offset `upper`, and the offset after the last of them (0 if none), in
/// one walk that allocates nothing.
pub fn whole_batches_below(buf: &[u8], upper: i64) -> (usize, i64) {
    let (mut pos, mut next) = (0, 0);
    while let Some(h) = BatchHeader::parse(&buf[pos..]) {
        let size = h.total_size();
        if size < HEADER_LEN || pos + size > buf.len() || h.base_offset >= upper {
            break;
        }
        next = h.last_offset().saturating_add(1);
        pos += size;
    }
    (pos, next)
}

/// Walks complete batches in `buf`, returning `(position, header)` pairs and
/// the number of bytes covered by whole batches.
pub fn whole_batches(buf: &[u8]) -> (Vec<(usize, BatchHeader)>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(h) = BatchHeader::parse(&buf[pos..]) {
        let size = h.total_size();
        if size < HEADER_LEN || pos + size > buf.len() {
            break;
        }
        out.push((pos, h));
        pos += size;
    }
    (out, pos)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Appends Kafka's zig-zag varint encoding of `v`.
    pub fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// One uncompressed record with a null key and `value`.
    pub fn put_record(out: &mut Vec<u8>, offset_delta: i64, value: &[u8]) {
        let mut body = vec![0u8]; // attributes
        put_varint(&mut body, 0); // timestamp delta
        put_varint(&mut body, offset_delta);
        put_varint(&mut body, -1); // null key
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // no headers
        put_varint(out, body.len() as i64);
        out.extend_from_slice(&body);
    }

    /// Builds a valid v2 batch of `n` records, each holding `payload`.
    pub fn make_batch(n: i32, ts: i64, payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        for i in 0..n {
            put_record(&mut b, i as i64, payload);
        }
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[MAGIC_OFFSET] = 2;
        b[23..27].copy_from_slice(&(n - 1).to_be_bytes());
        b[27..35].copy_from_slice(&ts.to_be_bytes());
        b[35..43].copy_from_slice(&ts.to_be_bytes());
        b[43..51].copy_from_slice(&(-1i64).to_be_bytes());
        b[51..53].copy_from_slice(&(-1i16).to_be_bytes());
        b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        b[57..61].copy_from_slice(&n.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// `make_batch` from an idempotent producer.
    pub fn make_idempotent_batch(
        producer_id: i64,
        epoch: i16,
        seq: i32,
        n: i32,
        ts: i64,
    ) -> Vec<u8> {
        let mut b = make_batch(n, ts, b"idempotent");
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&epoch.to_be_bytes());
        b[53..57].copy_from_slice(&seq.to_be_bytes());
        let crc = compute_crc(&b);
        b[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn timestamp_lookup_skips_records_below_min_offset() {
        // Offsets 10, 11, 12 at base + 0, 1000, 2000 ms.
        let base = 1_700_000_000_000i64;
        let mut b = vec![0u8; HEADER_LEN];
        for i in 0..3i64 {
            let mut body = vec![0u8];
            put_varint(&mut body, i * 1000);
            put_varint(&mut body, i);
            put_varint(&mut body, -1);
            put_varint(&mut body, 1);
            body.push(b'x');
            put_varint(&mut body, 0);
            put_varint(&mut b, body.len() as i64);
            b.extend_from_slice(&body);
        }
        b[0..8].copy_from_slice(&10i64.to_be_bytes());
        b[MAGIC_OFFSET] = 2;
        b[23..27].copy_from_slice(&2i32.to_be_bytes());
        b[27..35].copy_from_slice(&base.to_be_bytes());
        b[35..43].copy_from_slice(&(base + 2000).to_be_bytes());
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(first_record_at_or_after(&b, base, 0), Some((10, base)));
        assert_eq!(
            first_record_at_or_after(&b, base + 500, 0),
            Some((11, base + 1000))
        );
        // DeleteRecords moved the log start to 11: record 10 does not answer.
        assert_eq!(
            first_record_at_or_after(&b, base, 11),
            Some((11, base + 1000))
        );
        assert_eq!(first_record_at_or_after(&b, base, 13), None);
        assert_eq!(first_record_at_or_after(&b, base + 2001, 0), None);
    }

    #[test]
    fn valid_batches_pass_and_corruption_is_caught() {
        let mut two = make_batch(3, 1000, b"abc");
        two.extend(make_batch(1, 2000, b"de"));
        let spans = validate_produce_records(&two, 1 << 20).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[1].header.max_timestamp, 2000);

        let mut bad = two.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            validate_produce_records(&bad, 1 << 20),
            Err(LogError::CorruptBatch(_))
        ));
        assert!(validate_produce_records(&two[..two.len() - 1], 1 << 20).is_err());
        assert!(matches!(
            validate_produce_records(&two, 10),
            Err(LogError::BatchTooLarge { .. })
        ));
        let mut magic = make_batch(1, 0, b"");
        magic[MAGIC_OFFSET] = 1;
        assert!(matches!(
            validate_produce_records(&magic, 1 << 20),
            Err(LogError::UnsupportedMagic(1))
        ));
    }

    #[test]
    fn stamping_keeps_crc_valid() {
        let mut b = make_batch(2, 5, b"xy");
        stamp_batch(&mut b, 42, None);
        assert_eq!(check_batch(&b).unwrap().base_offset, 42);
        stamp_batch(&mut b, 43, Some(999));
        let h = check_batch(&b).unwrap();
        assert_eq!((h.base_offset, h.max_timestamp), (43, 999));
        assert!(h.attributes & ATTR_TIMESTAMP_TYPE != 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..400 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = validate_produce_records(&buf, 1 << 20);
            let _ = whole_batches(&buf);
        }
    }
}
