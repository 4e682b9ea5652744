//! Validation of the records inside a produced batch, as Kafka's
//! `LogValidator` and `DefaultRecordBatch` do before anything is appended:
//!
//! - the record count is positive and equals `last_offset_delta + 1`, so the
//!   offsets the broker assigns are the ones the batch holds (a header that
//!   claims 2^31 records while holding one would otherwise move the high
//!   watermark by 2^31);
//! - uncompressed and gzip batches hold exactly that many well-formed
//!   records, with offset deltas 0, 1, .., n-1 and nothing after the last;
//! - snappy, lz4 and zstd batches (no decompressor in the tree) are checked
//!   as far as the header allows.
//!
//! Every length comes from the client, so all arithmetic on it is checked,
//! and records are walked without copying (gzip through a fixed buffer with
//! a bound on the decompressed size).

use std::io::Read;

use super::batch::{BatchHeader, HEADER_LEN};
use super::LogError;

/// The most bytes a compressed batch may inflate to. Producers bound a
/// batch before compression (librdkafka's `batch.size`, 1 MB at most in
/// practice), so this leaves a wide margin while capping what one hostile
/// batch costs in CPU.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;

const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_ZSTD: i16 = 4;

fn invalid(msg: impl Into<String>) -> LogError {
    LogError::InvalidRecord(msg.into())
}

/// Checks the records of one complete, CRC-checked batch against its header.
pub fn validate(batch: &[u8], h: &BatchHeader) -> Result<(), LogError> {
    if h.record_count <= 0 {
        return Err(invalid(format!(
            "invalid record count {} (must be positive)",
            h.record_count
        )));
    }
    // In i64: `last_offset_delta + 1` overflows i32 for i32::MAX.
    if i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1 {
        return Err(invalid(format!(
            "record count {} does not match last offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    let body = batch.get(HEADER_LEN..).unwrap_or(&[]);
    match h.compression() {
        CODEC_NONE => walk(&mut SliceSource { buf: body, pos: 0 }, h.record_count),
        CODEC_GZIP => {
            let mut src = GzipSource::new(body);
            walk(&mut src, h.record_count)
        }
        c if c <= CODEC_ZSTD => {
            // Without a decompressor only the header can be held to account;
            // an empty compressed payload cannot hold any record.
            if body.is_empty() {
                return Err(invalid("compressed batch without a payload"));
            }
            Ok(())
        }
        c => Err(invalid(format!("unknown compression codec {c}"))),
    }
}

/// Where record bytes come from: the batch itself or a decompressor.
trait Source {
    /// The next byte, `None` at the end of the records.
    fn byte(&mut self) -> Result<Option<u8>, LogError>;
    /// Skips `n` bytes; false if fewer remain.
    fn skip(&mut self, n: u64) -> Result<bool, LogError>;
    /// Bytes consumed so far.
    fn pos(&self) -> u64;
}

struct SliceSource<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Source for SliceSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, LogError> {
        let b = self.buf.get(self.pos).copied();
        if b.is_some() {
            self.pos += 1;
        }
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<bool, LogError> {
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Ok(false);
        }
        self.pos += n as usize;
        Ok(true)
    }

    fn pos(&self) -> u64 {
        self.pos as u64
    }
}

/// Inflates through a fixed buffer; never holds the decompressed records.
struct GzipSource<'a> {
    dec: flate2::read::MultiGzDecoder<&'a [u8]>,
    buf: Box<[u8; 8192]>,
    at: usize,
    filled: usize,
    consumed: u64,
    done: bool,
}

impl<'a> GzipSource<'a> {
    fn new(data: &'a [u8]) -> Self {
        GzipSource {
            dec: flate2::read::MultiGzDecoder::new(data),
            buf: Box::new([0u8; 8192]),
            at: 0,
            filled: 0,
            consumed: 0,
            done: false,
        }
    }

    /// Makes sure at least one buffered byte is available, unless at the end.
    fn fill(&mut self) -> Result<bool, LogError> {
        if self.at < self.filled {
            return Ok(true);
        }
        if self.done {
            return Ok(false);
        }
        let n = self
            .dec
            .read(&mut self.buf[..])
            .map_err(|e| LogError::CorruptBatch(format!("gzip payload: {e}")))?;
        if n == 0 {
            self.done = true;
            return Ok(false);
        }
        self.at = 0;
        self.filled = n;
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Result<(), LogError> {
        self.at += n;
        self.consumed = self.consumed.saturating_add(n as u64);
        if self.consumed > MAX_DECOMPRESSED_BYTES {
            return Err(invalid(format!(
                "compressed batch inflates past {MAX_DECOMPRESSED_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

impl Source for GzipSource<'_> {
    fn byte(&mut self) -> Result<Option<u8>, LogError> {
        if !self.fill()? {
            return Ok(None);
        }
        let b = self.buf[self.at];
        self.take(1)?;
        Ok(Some(b))
    }

    fn skip(&mut self, mut n: u64) -> Result<bool, LogError> {
        while n > 0 {
            if !self.fill()? {
                return Ok(false);
            }
            let step = ((self.filled - self.at) as u64).min(n) as usize;
            self.take(step)?;
            n -= step as u64;
        }
        Ok(true)
    }

    fn pos(&self) -> u64 {
        self.consumed
    }
}

/// Kafka's zig-zag varint (at most 5 bytes) or varlong (at most 10).
fn varint(src: &mut impl Source, max_bytes: u32, what: &str) -> Result<i64, LogError> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = src
            .byte()?
            .ok_or_else(|| invalid(format!("records end inside a {what}")))?;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            if max_bytes == 5 && i32::try_from(v).is_err() {
                break;
            }
            return Ok(v);
        }
    }
    Err(invalid(format!("malformed varint in a {what}")))
}

/// Skips a length-prefixed field (`-1` = null where `nullable`) that must
/// fit in what is left of its record.
fn field(
    src: &mut impl Source,
    nullable: bool,
    record_end: u64,
    what: &str,
) -> Result<(), LogError> {
    let len = varint(src, 5, what)?;
    if len == -1 && nullable {
        return Ok(());
    }
    let len = u64::try_from(len).map_err(|_| invalid(format!("invalid {what} length {len}")))?;
    if src.pos().saturating_add(len) > record_end || !src.skip(len)? {
        return Err(invalid(format!("{what} runs past its record")));
    }
    Ok(())
}

/// Walks exactly `count` records and requires nothing after them.
fn walk(src: &mut impl Source, count: i32) -> Result<(), LogError> {
    for expected in 0..i64::from(count) {
        let len = varint(src, 5, "record length")?;
        let len = u64::try_from(len).map_err(|_| invalid(format!("record length {len}")))?;
        let start = src.pos();
        let end = start.saturating_add(len);
        src.byte()?
            .ok_or_else(|| invalid("records end inside a record"))?; // attributes
        varint(src, 10, "timestamp delta")?;
        let delta = varint(src, 5, "offset delta")?;
        if delta != expected {
            return Err(invalid(format!(
                "record offset delta {delta} where {expected} was expected"
            )));
        }
        field(src, true, end, "key")?;
        field(src, true, end, "value")?;
        let headers = varint(src, 5, "header count")?;
        if headers < 0 {
            return Err(invalid(format!("invalid header count {headers}")));
        }
        // Each header takes at least two bytes, so the loop is bounded by
        // the record's own length, not by the claimed count.
        for _ in 0..headers {
            if src.pos() >= end {
                return Err(invalid("headers run past their record"));
            }
            field(src, false, end, "header key")?;
            field(src, true, end, "header value")?;
        }
        if src.pos() != end {
            return Err(invalid(format!(
                "record declares {len} bytes but holds {}",
                src.pos().saturating_sub(start)
            )));
        }
    }
    if src.byte()?.is_some() {
        return Err(invalid(format!(
            "bytes remain after the last of {count} records"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::batch::tests::{make_batch, put_record};
    use super::super::batch::{compute_crc, validate_produce_records, LOG_OVERHEAD};
    use super::*;

    /// A batch around `records` with the given header counts, CRC fixed.
    fn batch_with(records: &[u8], last_delta: i32, count: i32, codec: i16) -> Vec<u8> {
        let mut b = make_batch(1, 0, b"");
        b.truncate(HEADER_LEN);
        b.extend_from_slice(records);
        let len = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[21..23].copy_from_slice(&codec.to_be_bytes());
        b[23..27].copy_from_slice(&last_delta.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    fn records(deltas: &[i64]) -> Vec<u8> {
        let mut r = Vec::new();
        for d in deltas {
            put_record(&mut r, *d, b"v");
        }
        r
    }

    fn check(b: &[u8]) -> Result<(), LogError> {
        validate_produce_records(b, 1 << 20).map(|_| ())
    }

    #[test]
    fn header_counts_must_match_the_records() {
        assert!(check(&batch_with(&records(&[0, 1]), 1, 2, 0)).is_ok());
        // The reported attack: delta i32::MAX, count wrapped, one record.
        let wrap = batch_with(&records(&[0]), i32::MAX, i32::MIN, 0);
        assert!(matches!(check(&wrap), Err(LogError::InvalidRecord(_))));
        let big = batch_with(&records(&[0]), i32::MAX, i32::MAX, 0);
        assert!(matches!(check(&big), Err(LogError::InvalidRecord(_))));
        for (delta, count) in [(0, 0), (-1, 0), (0, -1), (1, 1)] {
            let b = batch_with(&records(&[0]), delta, count, 0);
            assert!(check(&b).is_err(), "delta {delta} count {count}");
        }
        // Fewer or more records than declared, or deltas out of order.
        assert!(check(&batch_with(&records(&[0]), 1, 2, 0)).is_err());
        assert!(check(&batch_with(&records(&[0, 1, 2]), 1, 2, 0)).is_err());
        assert!(check(&batch_with(&records(&[1, 0]), 1, 2, 0)).is_err());
        assert!(check(&batch_with(&records(&[0, 0]), 1, 2, 0)).is_err());
        // A record whose length prefix lies.
        let mut r = records(&[0]);
        r[0] += 2;
        r.extend_from_slice(&[0, 0]);
        assert!(check(&batch_with(&r, 0, 1, 0)).is_err());
    }

    #[test]
    fn gzip_batches_are_inflated_and_checked() {
        use std::io::Write;
        let gz = |raw: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw).unwrap();
            e.finish().unwrap()
        };
        assert!(check(&batch_with(&gz(&records(&[0, 1, 2])), 2, 3, 1)).is_ok());
        let wrap = batch_with(&gz(&records(&[0])), i32::MAX, i32::MIN, 1);
        assert!(check(&wrap).is_err());
        assert!(check(&batch_with(&gz(&records(&[0])), 2, 3, 1)).is_err());
        assert!(matches!(
            check(&batch_with(b"not gzip at all", 0, 1, 1)),
            Err(LogError::CorruptBatch(_))
        ));
        // A bomb: one record claiming a value far past the bound.
        let mut r = Vec::new();
        put_record(
            &mut r,
            0,
            &vec![0u8; (MAX_DECOMPRESSED_BYTES + 10) as usize],
        );
        assert!(check(&batch_with(&gz(&r), 0, 1, 1)).is_err());
        // Other codecs: header checks only.
        assert!(check(&batch_with(b"opaque", 0, 1, 4)).is_ok());
        assert!(check(&batch_with(b"", 0, 1, 4)).is_err());
        assert!(check(&batch_with(b"opaque", 0, 1, 6)).is_err());
    }

    #[test]
    fn hostile_varints_never_panic() {
        let mut seed = 0x9e37_79b9_u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(7);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = check(&batch_with(&buf, 0, 1, 0));
            let _ = check(&batch_with(&buf, 3, 4, 0));
        }
        let ff = [0xffu8; 20];
        assert!(check(&batch_with(&ff, 0, 1, 0)).is_err());
    }
}
