//! Facts about a Produce request's records that produce rules check: the
//! batch headers (codec, producer id, transactional bit) and, only when a
//! rule needs them, each record's value size and header keys.
//!
//! The bytes come from the client and are read before any back end
//! validates them, so every length is checked, compressed batches inflate
//! through the log engine's bounded decompressor, and a record's headers
//! are read only within the record's own length.

use std::sync::Arc;

use crate::log::batch::{read_varint, BatchHeader, ATTR_TRANSACTIONAL, HEADER_LEN};

/// What a produce to one topic needs to be checked: nothing at all when no
/// rule applies, else the batch headers, and the records only when a rule
/// bounds record sizes or requires headers.
#[derive(Debug, Clone, Default)]
pub struct ProduceNeeds {
    /// Some produce rule covers this principal and topic.
    pub applies: bool,
    /// Batch-header facts (codec, producer id, transactional bit).
    pub batches: bool,
    /// Each record's value size.
    pub record_sizes: bool,
    /// Which of `header_keys` to look for in each record (bit i: key i).
    pub header_mask: u64,
    /// The set's required header keys, when `header_mask` is not zero.
    pub header_keys: Option<Arc<[Box<str>]>>,
}

impl ProduceNeeds {
    /// Whether the records themselves must be read.
    pub fn records(&self) -> bool {
        self.record_sizes || self.header_mask != 0
    }
}

/// Why the records could not be read. The edge answers as for a corrupt
/// batch (CORRUPT_MESSAGE / INVALID_RECORD): the back end would refuse
/// such records anyway.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FactsError {
    #[error("record batch truncated")]
    Truncated,
    #[error("record batch magic {0} is not supported (v2 only)")]
    Magic(i8),
    #[error("unknown compression codec {0}")]
    Codec(i16),
    #[error("cannot read the batch's records: {0}")]
    Records(String),
}

/// What the records of one produce (to one topic) show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProduceFacts {
    /// Batches read.
    pub batches: u32,
    /// Bit per codec id seen.
    pub codecs: u8,
    /// Some batch has no producer id (not idempotent).
    pub non_idempotent: bool,
    /// Some batch lacks the transactional bit.
    pub non_transactional: bool,
    /// Records read (only when the records were needed).
    pub records: u64,
    /// The largest record value seen, in bytes (null: 0).
    pub max_value_bytes: u64,
    /// Bit i: some record lacks required header key i.
    pub missing_headers: u64,
    /// Bytes inflated to read compressed records (bounded per request by
    /// the caller, see [`MAX_INFLATED_PER_REQUEST`]).
    pub inflated: u64,
}

/// The most a request's compressed records may inflate to while produce
/// rules read them: a few tiny zstd batches can claim gigabytes, and the
/// back end itself never inflates them.
pub const MAX_INFLATED_PER_REQUEST: u64 = 64 << 20;

impl ProduceFacts {
    /// Reads the batches of one partition's records (a Produce request's
    /// `records` field), as much as `needs` asks for.
    pub fn from_records(records: &[u8], needs: &ProduceNeeds) -> Result<ProduceFacts, FactsError> {
        let mut facts = ProduceFacts::default();
        facts.add_records(records, needs)?;
        Ok(facts)
    }

    /// Combines the facts of several partitions of the same topic.
    pub fn merge(&mut self, other: &ProduceFacts) {
        self.batches = self.batches.saturating_add(other.batches);
        self.codecs |= other.codecs;
        self.non_idempotent |= other.non_idempotent;
        self.non_transactional |= other.non_transactional;
        self.records = self.records.saturating_add(other.records);
        self.max_value_bytes = self.max_value_bytes.max(other.max_value_bytes);
        self.missing_headers |= other.missing_headers;
        self.inflated = self.inflated.saturating_add(other.inflated);
    }

    /// [`ProduceFacts::from_records`] into these facts.
    pub fn add_records(&mut self, records: &[u8], needs: &ProduceNeeds) -> Result<(), FactsError> {
        if !needs.applies || !(needs.batches || needs.records()) {
            return Ok(());
        }
        let mut pos = 0;
        while pos < records.len() {
            let rest = &records[pos..];
            let h = BatchHeader::parse(rest).ok_or(FactsError::Truncated)?;
            if h.magic != 2 {
                return Err(FactsError::Magic(h.magic));
            }
            let size = h.total_size();
            if size < HEADER_LEN || size > rest.len() {
                return Err(FactsError::Truncated);
            }
            let batch = &rest[..size];
            let codec = h.compression();
            if codec > 4 {
                return Err(FactsError::Codec(codec));
            }
            self.batches = self.batches.saturating_add(1);
            self.codecs |= 1 << codec;
            self.non_idempotent |= h.producer_id < 0;
            self.non_transactional |= h.attributes & ATTR_TRANSACTIONAL == 0;
            if needs.records() {
                self.read_records(batch, &h, needs)?;
            }
            pos += size;
        }
        Ok(())
    }

    fn read_records(
        &mut self,
        batch: &[u8],
        h: &BatchHeader,
        needs: &ProduceNeeds,
    ) -> Result<(), FactsError> {
        let inflated;
        let body: &[u8] = if h.compression() == 0 {
            &batch[HEADER_LEN..]
        } else {
            // Bounded by the log engine's limit on inflated bytes.
            inflated = crate::log::records::decompressed(batch, h)
                .map_err(|e| FactsError::Records(e.to_string()))?;
            self.inflated = self.inflated.saturating_add(inflated.len() as u64);
            if self.inflated > MAX_INFLATED_PER_REQUEST {
                return Err(FactsError::Records(format!(
                    "more than {} MiB of compressed records to read in one request",
                    MAX_INFLATED_PER_REQUEST >> 20
                )));
            }
            &inflated
        };
        let keys: &[Box<str>] = needs.header_keys.as_deref().unwrap_or(&[]);
        let mask = needs.header_mask;
        let bad = || FactsError::Records("malformed record".into());
        let mut pos = 0usize;
        // The header's count is the client's word; the bytes bound the walk.
        while pos < body.len() {
            let len = read_varint(body, &mut pos).ok_or_else(bad)?;
            let len = usize::try_from(len).map_err(|_| bad())?;
            let end = pos
                .checked_add(len)
                .filter(|e| *e <= body.len())
                .ok_or_else(bad)?;
            let rec = &body[pos..end];
            pos = end;
            let mut p = 1usize; // attributes
            read_varint(rec, &mut p).ok_or_else(bad)?; // timestamp delta
            read_varint(rec, &mut p).ok_or_else(bad)?; // offset delta
            skip_bytes(rec, &mut p).ok_or_else(bad)?; // key
            let value = skip_bytes(rec, &mut p).ok_or_else(bad)?;
            self.records = self.records.saturating_add(1);
            self.max_value_bytes = self.max_value_bytes.max(value as u64);
            if mask == 0 {
                continue;
            }
            let count = read_varint(rec, &mut p).ok_or_else(bad)?;
            let mut present = 0u64;
            for _ in 0..count.max(0) {
                let klen = read_varint(rec, &mut p).ok_or_else(bad)?;
                let klen = usize::try_from(klen).map_err(|_| bad())?;
                let kend = p
                    .checked_add(klen)
                    .filter(|e| *e <= rec.len())
                    .ok_or_else(bad)?;
                let key = &rec[p..kend];
                p = kend;
                skip_bytes(rec, &mut p).ok_or_else(bad)?; // header value
                let mut bits = mask & !present;
                while bits != 0 {
                    let b = bits.trailing_zeros();
                    bits &= bits - 1;
                    if keys.get(b as usize).is_some_and(|k| k.as_bytes() == key) {
                        present |= 1 << b;
                    }
                }
            }
            self.missing_headers |= mask & !present;
        }
        Ok(())
    }
}

/// Skips a varint-length-prefixed field (-1: null); returns its length.
fn skip_bytes(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let len = read_varint(buf, pos)?;
    if len < 0 {
        return Some(0);
    }
    let len = usize::try_from(len).ok()?;
    let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
    *pos = end;
    Some(len)
}
