//! Validation of the records inside a produced batch, as Kafka's
//! `LogValidator` and `DefaultRecordBatch` do before anything is appended:
//!
//! - the record count is positive and equals `last_offset_delta + 1`, so the
//!   offsets the broker assigns are the ones the batch holds (a header that
//!   claims 2^31 records while holding one would otherwise move the high
//!   watermark by 2^31);
//! - the batch holds exactly that many well-formed records, with offset
//!   deltas 0, 1, .., n-1 and nothing after the last, under every codec:
//!   uncompressed, gzip, snappy (snappy-java's framing as Kafka's Java
//!   clients write it, or one raw block as librdkafka writes it), lz4 (the
//!   LZ4 frame format with independent blocks, as Kafka reads it for magic
//!   v2) and zstd.
//!
//! A payload that does not decompress is CORRUPT_MESSAGE; a batch whose
//! records do not match its header, or that inflates past
//! [`MAX_DECOMPRESSED_BYTES`], is INVALID_RECORD. Every length comes from
//! the client, so all arithmetic on it is checked, and records are walked
//! without copying: decompressed bytes stream through a fixed buffer (snappy
//! through one block at a time, each bounded before it is allocated) and
//! stop at the bound on the decompressed size.

use std::io::{self, Read};

use super::batch::{BatchHeader, HEADER_LEN};
use super::LogError;

/// The most bytes a compressed batch may inflate to. Producers bound a
/// batch before compression (librdkafka's `batch.size`, 1 MB at most in
/// practice), so this leaves a wide margin while capping what one hostile
/// batch costs in CPU.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;

const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;

/// zstd's own default limit, the one Kafka's zstd-jni decoder applies: a
/// frame may declare a window of up to 128 MiB. Only what is decoded is
/// ever written into it, and decoding stops at [`MAX_DECOMPRESSED_BYTES`].
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

fn invalid(msg: impl Into<String>) -> LogError {
    LogError::InvalidRecord(msg.into())
}

/// Checks the records of one complete, CRC-checked batch against its header.
pub fn validate(batch: &[u8], h: &BatchHeader) -> Result<(), LogError> {
    validate_keyed(batch, h, false)
}

/// [`validate`], and with `keys_required` (a compacted topic) every record
/// must have a key, as Kafka's `LogValidator` demands: the cleaner keeps
/// the latest record per key, and a record without one has no latest.
pub fn validate_keyed(batch: &[u8], h: &BatchHeader, keys_required: bool) -> Result<(), LogError> {
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
    if body.is_empty() && (CODEC_GZIP..=CODEC_ZSTD).contains(&h.compression()) {
        return Err(LogError::CorruptBatch(
            "compressed batch without a payload".into(),
        ));
    }
    match h.compression() {
        CODEC_NONE => walk(
            &mut SliceSource { buf: body, pos: 0 },
            h.record_count,
            keys_required,
        ),
        CODEC_GZIP => {
            let dec = flate2::read::MultiGzDecoder::new(body);
            walk(
                &mut Inflate::new("gzip", dec),
                h.record_count,
                keys_required,
            )
        }
        CODEC_SNAPPY => {
            let dec = SnappyReader::new(body).map_err(|e| corrupt("snappy", &e))?;
            walk(
                &mut Inflate::new("snappy", dec),
                h.record_count,
                keys_required,
            )
        }
        CODEC_LZ4 => {
            check_lz4_frame(body)?;
            walk(
                &mut Inflate::new("lz4", Lz4Reader::new(body)),
                h.record_count,
                keys_required,
            )
        }
        CODEC_ZSTD => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(body).map_err(|e| corrupt("zstd", &e))?;
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", &e))?;
            walk(
                &mut Inflate::new("zstd", dec),
                h.record_count,
                keys_required,
            )
        }
        c => Err(invalid(format!("unknown compression codec {c}"))),
    }
}

/// The record bytes of a validated batch, decompressed, for recompression
/// (which needs them whole), bounded by [`MAX_DECOMPRESSED_BYTES`].
pub fn decompressed(batch: &[u8], h: &BatchHeader) -> Result<Vec<u8>, LogError> {
    fn read_all(codec: &'static str, r: impl Read) -> Result<Vec<u8>, LogError> {
        let mut out = Vec::new();
        r.take(MAX_DECOMPRESSED_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(codec, &e))?;
        if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
            return Err(too_large());
        }
        Ok(out)
    }
    let body = batch.get(HEADER_LEN..).unwrap_or(&[]);
    match h.compression() {
        CODEC_NONE => Ok(body.to_vec()),
        CODEC_GZIP => read_all("gzip", flate2::read::MultiGzDecoder::new(body)),
        CODEC_SNAPPY => read_all(
            "snappy",
            SnappyReader::new(body).map_err(|e| corrupt("snappy", &e))?,
        ),
        CODEC_LZ4 => {
            check_lz4_frame(body)?;
            read_all("lz4", Lz4Reader::new(body))
        }
        CODEC_ZSTD => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(body).map_err(|e| corrupt("zstd", &e))?;
            dec.window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", &e))?;
            read_all("zstd", dec)
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

/// A decompressor's refusal to produce more than [`MAX_DECOMPRESSED_BYTES`],
/// told apart from a payload that does not decode.
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inflates past {MAX_DECOMPRESSED_BYTES} bytes")
    }
}

impl std::error::Error for TooLarge {}

fn too_large() -> LogError {
    invalid(format!(
        "compressed batch inflates past {MAX_DECOMPRESSED_BYTES} bytes"
    ))
}

fn corrupt(codec: &str, e: &io::Error) -> LogError {
    if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) {
        return too_large();
    }
    LogError::CorruptBatch(format!("{codec} payload: {e}"))
}

/// Pulls decompressed records through a fixed buffer; never holds them.
struct Inflate<R> {
    codec: &'static str,
    dec: R,
    buf: Box<[u8; 8192]>,
    at: usize,
    filled: usize,
    consumed: u64,
    done: bool,
}

impl<R: Read> Inflate<R> {
    fn new(codec: &'static str, dec: R) -> Self {
        Inflate {
            codec,
            dec,
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
        let n = loop {
            match self.dec.read(&mut self.buf[..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(corrupt(self.codec, &e)),
            }
        };
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
            return Err(too_large());
        }
        Ok(())
    }
}

impl<R: Read> Source for Inflate<R> {
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

/// The LZ4 frame magic number, little-endian on the wire.
const LZ4_FRAME_MAGIC: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];
/// FLG bit: each block decodes on its own.
const LZ4_FLG_BLOCK_INDEPENDENCE: u8 = 0x20;

/// What Kafka's `Lz4BlockInputStream` refuses before decoding: anything but
/// an LZ4 frame (the legacy format included), and frames whose blocks
/// depend on each other. The rest of the header, its checksum (correct in
/// magic v2; only v0/v1 had the broken one) and every block are checked by
/// the decoder.
fn check_lz4_frame(body: &[u8]) -> Result<(), LogError> {
    if body.len() < 5 || body[..4] != LZ4_FRAME_MAGIC {
        return Err(LogError::CorruptBatch(
            "lz4 payload: not an LZ4 frame".into(),
        ));
    }
    if body[4] & LZ4_FLG_BLOCK_INDEPENDENCE == 0 {
        return Err(LogError::CorruptBatch(
            "lz4 payload: dependent blocks are not supported".into(),
        ));
    }
    Ok(())
}

/// The compressed bytes under the LZ4 decoder, noting whether it ever
/// asked for bytes past their end.
struct Lz4Input<'a> {
    data: &'a [u8],
    ran_out: bool,
}

impl Read for Lz4Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.is_empty() && !buf.is_empty() {
            self.ran_out = true;
        }
        self.data.read(buf)
    }
}

/// One LZ4 frame, as Kafka reads it: the decoder takes a payload cut short
/// at a block boundary for a clean end, so the end mark is required here.
struct Lz4Reader<'a> {
    dec: lz4_flex::frame::FrameDecoder<Lz4Input<'a>>,
}

impl<'a> Lz4Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Lz4Reader {
            dec: lz4_flex::frame::FrameDecoder::new(Lz4Input {
                data,
                ran_out: false,
            }),
        }
    }
}

impl Read for Lz4Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.dec.read(buf)?;
        if n == 0 && !buf.is_empty() && self.dec.get_ref().ran_out {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "frame ends without its end mark",
            ));
        }
        Ok(n)
    }
}

/// snappy-java's stream header: magic, then version and compatible version
/// (big-endian i32 each).
const SNAPPY_JAVA_MAGIC: [u8; 8] = *b"\x82SNAPPY\x00";
const SNAPPY_JAVA_HEADER_LEN: usize = 16;
/// A raw snappy element never expands by more than 64 bytes out of 3 in
/// (a two-byte-offset copy), so a block claiming more than this many times
/// its compressed size cannot decode and is refused before allocating.
const SNAPPY_MAX_EXPANSION: usize = 22;

fn snappy_error(msg: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Kafka's snappy stream, as snappy-java's `SnappyInputStream` reads it:
/// either the framed format (the 16-byte header, then chunks of a
/// big-endian i32 length and one raw snappy block, possibly with further
/// headers between concatenated streams), or, without the header, the
/// whole payload as one raw snappy block. Decodes one block at a time,
/// each bounded before it is allocated.
struct SnappyReader<'a> {
    /// Compressed bytes not yet decoded.
    input: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    at: usize,
    produced: u64,
    dec: snap::raw::Decoder,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8]) -> io::Result<Self> {
        if input.is_empty() {
            return Err(snappy_error("empty payload"));
        }
        let framed = input.len() >= SNAPPY_JAVA_HEADER_LEN && input[..8] == SNAPPY_JAVA_MAGIC;
        let mut r = SnappyReader {
            input,
            framed,
            block: Vec::new(),
            at: 0,
            produced: 0,
            dec: snap::raw::Decoder::new(),
        };
        if framed {
            r.header()?;
        }
        Ok(r)
    }

    /// Consumes one snappy-java header at the front of the input.
    fn header(&mut self) -> io::Result<()> {
        let h = self
            .input
            .get(..SNAPPY_JAVA_HEADER_LEN)
            .ok_or_else(|| snappy_error("truncated snappy-java header"))?;
        if h[..8] != SNAPPY_JAVA_MAGIC {
            return Err(snappy_error("bad snappy-java header"));
        }
        let version = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        if version < 1 {
            return Err(snappy_error(format!(
                "unsupported snappy-java version {version}"
            )));
        }
        self.input = &self.input[SNAPPY_JAVA_HEADER_LEN..];
        Ok(())
    }

    /// Decodes the next block into `self.block`; false at the end.
    fn next_block(&mut self) -> io::Result<bool> {
        let chunk = if self.framed {
            loop {
                if self.input.is_empty() {
                    return Ok(false);
                }
                let len = self
                    .input
                    .get(..4)
                    .ok_or_else(|| snappy_error("truncated chunk length"))?;
                if len == &SNAPPY_JAVA_MAGIC[..4] {
                    // A concatenated stream starts here.
                    self.header()?;
                    continue;
                }
                let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
                let len = usize::try_from(len)
                    .map_err(|_| snappy_error(format!("invalid chunk length {len}")))?;
                let chunk = self
                    .input
                    .get(4..)
                    .and_then(|rest| rest.get(..len))
                    .ok_or_else(|| snappy_error("chunk runs past the payload"))?;
                self.input = &self.input[4 + len..];
                break chunk;
            }
        } else {
            if self.input.is_empty() {
                return Ok(false);
            }
            std::mem::take(&mut self.input)
        };
        let len = snap::raw::decompress_len(chunk).map_err(snappy_error)?;
        if len > chunk.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
            return Err(snappy_error(format!(
                "a {}-byte block cannot hold {len} bytes",
                chunk.len()
            )));
        }
        if self.produced.saturating_add(len as u64) > MAX_DECOMPRESSED_BYTES {
            return Err(io::Error::other(TooLarge));
        }
        self.block.clear();
        self.block.resize(len, 0);
        let n = self
            .dec
            .decompress(chunk, &mut self.block)
            .map_err(snappy_error)?;
        self.block.truncate(n);
        self.at = 0;
        self.produced += n as u64;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
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
/// fit in what is left of its record. Returns false for a null.
fn field(
    src: &mut impl Source,
    nullable: bool,
    record_end: u64,
    what: &str,
) -> Result<bool, LogError> {
    let len = varint(src, 5, what)?;
    if len == -1 && nullable {
        return Ok(false);
    }
    let len = u64::try_from(len).map_err(|_| invalid(format!("invalid {what} length {len}")))?;
    if src.pos().saturating_add(len) > record_end || !src.skip(len)? {
        return Err(invalid(format!("{what} runs past its record")));
    }
    Ok(true)
}

/// Walks exactly `count` records and requires nothing after them.
fn walk(src: &mut impl Source, count: i32, keys_required: bool) -> Result<(), LogError> {
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
        if !field(src, true, end, "key")? && keys_required {
            return Err(invalid(
                "compacted topic cannot accept a record without a key",
            ));
        }
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
        assert!(check(&batch_with(b"opaque", 0, 1, 6)).is_err());
    }

    fn snappy_raw(raw: &[u8]) -> Vec<u8> {
        snap::raw::Encoder::new().compress_vec(raw).unwrap()
    }

    /// snappy-java's framing, in chunks of at most `chunk` raw bytes.
    fn snappy_java(raw: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = SNAPPY_JAVA_MAGIC.to_vec();
        out.extend_from_slice(&1i32.to_be_bytes());
        out.extend_from_slice(&1i32.to_be_bytes());
        for c in raw.chunks(chunk) {
            let z = snappy_raw(c);
            out.extend_from_slice(&(z.len() as i32).to_be_bytes());
            out.extend_from_slice(&z);
        }
        out
    }

    fn lz4(raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    fn zstd(raw: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(raw, 3).unwrap()
    }

    type Compress = fn(&[u8]) -> Vec<u8>;

    /// Every codec with its compressor (snappy twice: framed and raw).
    fn codecs() -> Vec<(&'static str, i16, Compress)> {
        vec![
            ("snappy-java", CODEC_SNAPPY, |r| snappy_java(r, 32 << 10)),
            ("snappy raw", CODEC_SNAPPY, snappy_raw),
            ("lz4", CODEC_LZ4, lz4),
            ("zstd", CODEC_ZSTD, zstd),
        ]
    }

    #[test]
    fn snappy_lz4_and_zstd_batches_are_decompressed_and_checked() {
        for (name, codec, z) in codecs() {
            let ok = batch_with(&z(&records(&[0, 1, 2])), 2, 3, codec);
            assert!(check(&ok).is_ok(), "{name}: {:?}", check(&ok));
            // Header lies: count wraps, more or fewer records than held.
            let wrap = batch_with(&z(&records(&[0])), i32::MAX, i32::MIN, codec);
            assert!(
                matches!(check(&wrap), Err(LogError::InvalidRecord(_))),
                "{name}"
            );
            for (held, delta, count) in [(&[0][..], 2, 3), (&[0, 1, 2][..], 1, 2)] {
                let b = batch_with(&z(&records(held)), delta, count, codec);
                assert!(
                    matches!(check(&b), Err(LogError::InvalidRecord(_))),
                    "{name}: {} held, {count} declared: {:?}",
                    held.len(),
                    check(&b)
                );
            }
            let b = batch_with(&z(&records(&[1, 0])), 1, 2, codec);
            assert!(
                matches!(check(&b), Err(LogError::InvalidRecord(_))),
                "{name}"
            );
            // Undecodable payloads are corrupt, not invalid.
            for junk in [&b""[..], b"opaque", b"\xff\xff\xff\xff\xff\xff\xff\xff"] {
                let b = batch_with(junk, 0, 1, codec);
                assert!(
                    matches!(check(&b), Err(LogError::CorruptBatch(_))),
                    "{name} {junk:?}: {:?}",
                    check(&b)
                );
            }
            // A truncated payload.
            let mut t = z(&records(&[0, 1, 2]));
            t.truncate(t.len() - 3);
            assert!(check(&batch_with(&t, 2, 3, codec)).is_err(), "{name}");
        }
        // snappy-java: many small chunks, and concatenated streams.
        let r = records(&(0..50).collect::<Vec<_>>());
        assert!(check(&batch_with(&snappy_java(&r, 7), 49, 50, CODEC_SNAPPY)).is_ok());
        let (a, b) = r.split_at(100);
        let mut cat = snappy_java(a, 64);
        cat.extend_from_slice(&snappy_java(b, 64));
        assert!(check(&batch_with(&cat, 49, 50, CODEC_SNAPPY)).is_ok());
        // A chunk length past the payload, and a negative one.
        let mut bad = snappy_java(&r, 1 << 20);
        bad[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            check(&batch_with(&bad, 49, 50, CODEC_SNAPPY)),
            Err(LogError::CorruptBatch(_))
        ));
        bad[16..20].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            check(&batch_with(&bad, 49, 50, CODEC_SNAPPY)),
            Err(LogError::CorruptBatch(_))
        ));
        // lz4: the legacy format and dependent blocks are refused, as Kafka does.
        let mut legacy = lz4(&records(&[0]));
        legacy[..4].copy_from_slice(&[0x02, 0x21, 0x4c, 0x18]);
        assert!(matches!(
            check(&batch_with(&legacy, 0, 1, CODEC_LZ4)),
            Err(LogError::CorruptBatch(_))
        ));
        let mut linked = lz4(&records(&[0]));
        linked[4] &= !LZ4_FLG_BLOCK_INDEPENDENCE;
        assert!(matches!(
            check(&batch_with(&linked, 0, 1, CODEC_LZ4)),
            Err(LogError::CorruptBatch(_))
        ));
    }

    /// One record whose value alone is past the bound, compressed.
    fn bomb() -> Vec<u8> {
        let mut r = Vec::new();
        put_record(
            &mut r,
            0,
            &vec![0u8; (MAX_DECOMPRESSED_BYTES + 10) as usize],
        );
        r
    }

    #[test]
    fn decompression_bombs_stop_at_the_bound() {
        let raw = bomb();
        for (name, codec, z) in codecs() {
            let b = batch_with(&z(&raw), 0, 1, codec);
            // Straight to the validator: the batch size limit is not what
            // is under test here (a snappy bomb needs ~3 MiB).
            let h = BatchHeader::parse(&b).unwrap();
            assert!(
                matches!(validate(&b, &h), Err(LogError::InvalidRecord(_))),
                "{name} ({} compressed bytes): {:?}",
                b.len(),
                validate(&b, &h).map_err(|e| e.to_string())
            );
        }
        // A raw snappy block claiming 64 MiB out of a few bytes is refused
        // before anything is allocated.
        let mut lie = Vec::new();
        let mut n = MAX_DECOMPRESSED_BYTES;
        while n >= 0x80 {
            lie.push((n as u8) | 0x80);
            n >>= 7;
        }
        lie.push(n as u8);
        lie.extend_from_slice(&[0u8; 8]);
        let b = batch_with(&lie, 0, 1, CODEC_SNAPPY);
        assert!(matches!(check(&b), Err(LogError::CorruptBatch(_))));
        // Blocks that could each expand that far are counted against the
        // bound before each is decoded.
        let b = batch_with(&snappy_java(&raw, 8 << 20), 0, 1, CODEC_SNAPPY);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(matches!(validate(&b, &h), Err(LogError::InvalidRecord(_))));
    }

    #[test]
    fn random_compressed_payloads_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut rand_bytes = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 33) as u8
                })
                .collect()
        };
        let valid = records(&[0, 1, 2, 3]);
        for (_, codec, z) in codecs() {
            let good = z(&valid);
            for len in 0..400 {
                // Pure noise, noise behind the codec's own header, and a
                // valid payload with bytes flipped.
                let noise = rand_bytes(len);
                let _ = check(&batch_with(&noise, 0, 1, codec));
                let mut headed = good[..good.len().min(20)].to_vec();
                headed.extend_from_slice(&noise);
                let _ = check(&batch_with(&headed, 3, 4, codec));
                let mut flipped = good.clone();
                let flips = rand_bytes(3);
                let at = (usize::from(flips[0]) << 8 | usize::from(flips[1])) % flipped.len();
                flipped[at] ^= flips[2] | 1;
                let _ = check(&batch_with(&flipped, 3, 4, codec));
            }
        }
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
