//! A topic's `compression.type`, as Kafka applies it on append: `producer`
//! keeps each batch as the producer compressed it (the default, and the
//! only zero-copy path); `uncompressed`, `gzip`, `snappy`, `lz4` and `zstd`
//! rewrite every batch in another codec into that one before it is stored.
//!
//! Recompression costs what Kafka's costs: the batch is inflated (bounded by
//! [`MAX_DECOMPRESSED_BYTES`](super::records::MAX_DECOMPRESSED_BYTES)),
//! compressed again and copied, on the produce path. Batches already in the
//! topic's codec are stored as sent. The records themselves (offset deltas,
//! timestamps, keys, values, headers) and the batch's producer id, epoch,
//! sequence and transactional flag are unchanged, so idempotence and
//! transactions see the same batch.

use std::io::Write;

use super::batch::{self, BatchHeader, BatchSpan, HEADER_LEN};
use super::records;
use super::LogError;

pub const CODEC_NONE: i16 = 0;
pub const CODEC_GZIP: i16 = 1;
pub const CODEC_SNAPPY: i16 = 2;
pub const CODEC_LZ4: i16 = 3;
pub const CODEC_ZSTD: i16 = 4;

/// The codec a `compression.type` value stores batches in: `Some(None)`
/// for `producer` (as sent), `None` for a value Kafka does not know.
pub fn target_codec(compression_type: &str) -> Option<Option<i16>> {
    Some(Some(match compression_type {
        "producer" => return Some(None),
        "uncompressed" => CODEC_NONE,
        "gzip" => CODEC_GZIP,
        "snappy" => CODEC_SNAPPY,
        "lz4" => CODEC_LZ4,
        "zstd" => CODEC_ZSTD,
        _ => return None,
    }))
}

/// Whether any of `spans` must be rewritten to be stored in `codec`.
pub fn needed(spans: &[BatchSpan], codec: i16) -> bool {
    spans.iter().any(|s| s.header.compression() != codec)
}

/// `records` (validated batches at `spans`) with every batch in `codec`,
/// and the spans of the result.
pub fn to_codec(
    records: &[u8],
    spans: &[BatchSpan],
    codec: i16,
) -> Result<(Vec<u8>, Vec<BatchSpan>), LogError> {
    let mut out = Vec::with_capacity(records.len());
    let mut new_spans = Vec::with_capacity(spans.len());
    for s in spans {
        let original = &records[s.start..s.end()];
        let start = out.len();
        if s.header.compression() == codec {
            out.extend_from_slice(original);
        } else {
            let raw = records::decompressed(original, &s.header)?;
            let body = compress(codec, &raw)
                .map_err(|e| LogError::CorruptBatch(format!("recompressing: {e}")))?;
            batch::rebuild_into(&mut out, &original[..HEADER_LEN], codec, &body);
        }
        let header = BatchHeader::parse(&out[start..])
            .ok_or_else(|| LogError::CorruptBatch("recompressed batch lost its header".into()))?;
        new_spans.push(BatchSpan { start, header });
    }
    Ok((out, new_spans))
}

/// `raw` record bytes in `codec`, as Kafka's Java broker writes them.
pub(super) fn compress(codec: i16, raw: &[u8]) -> std::io::Result<Vec<u8>> {
    match codec {
        CODEC_NONE => Ok(raw.to_vec()),
        CODEC_GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(raw)?;
            e.finish()
        }
        CODEC_SNAPPY => snappy_framed(raw),
        CODEC_LZ4 => {
            // Independent 64 KiB blocks, no content checksum: the frame
            // Kafka's KafkaLZ4BlockOutputStream writes and every client reads.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(raw)?;
            e.finish().map_err(std::io::Error::other)
        }
        CODEC_ZSTD => zstd::stream::encode_all(raw, 3),
        other => Err(std::io::Error::other(format!("unknown codec {other}"))),
    }
}

/// snappy-java's stream framing (what Kafka's Java clients and broker
/// write): an 8-byte magic, version and compatible-version words, then
/// blocks of at most 32 KiB of input, each a 4-byte length and one raw
/// snappy block.
fn snappy_framed(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    const MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
    const BLOCK: usize = 32 * 1024;
    let mut out = Vec::with_capacity(16 + raw.len() / 2);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in raw.chunks(BLOCK) {
        let block = enc.compress_vec(chunk).map_err(std::io::Error::other)?;
        let len = i32::try_from(block.len()).map_err(std::io::Error::other)?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&block);
    }
    Ok(out)
}
