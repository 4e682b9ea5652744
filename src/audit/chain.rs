//! The audit hash chain: every record carries `seq` (its place in the order
//! the single writer wrote it) and `prev_hash` (SHA-256 of the previous
//! record's whole line), so an edit, a deletion or a reordering of lines
//! shows. The chain continues across rotations (deleted files leave their
//! last seq and hash in the anchor file) and across restarts (the writer
//! reads the last record back before writing).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::AuditEvent;

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What a new chain's first record names as its predecessor.
    pub const ZERO: ChainHash = ChainHash([0; 32]);

    /// The hash of one serialized record, without its newline.
    pub fn of_line(line: &[u8]) -> ChainHash {
        ChainHash(Sha256::digest(line).into())
    }

    fn hex(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[(b >> 4) as usize];
            out[2 * i + 1] = DIGITS[(b & 0xf) as usize];
        }
        out
    }

    pub fn parse(s: &str) -> Option<ChainHash> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(ChainHash(out))
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hex digits are ASCII by construction.
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: the writer serializes one per record.
        let hex = self.hex();
        s.serialize_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ChainHash, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ChainHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ChainHash, E> {
                ChainHash::parse(v).ok_or_else(|| E::custom("not 64 lowercase hex digits"))
            }
        }
        d.deserialize_str(V)
    }
}

/// The chain fields of a record, read without the rest of its schema (so
/// records carrying fields this version does not know still verify).
#[derive(Debug, Deserialize)]
pub struct ChainFields {
    pub seq: Option<u64>,
    pub prev_hash: Option<ChainHash>,
    pub event: Option<String>,
    pub reason: Option<String>,
}

impl ChainFields {
    pub fn parse(line: &[u8]) -> Option<ChainFields> {
        serde_json::from_slice(line).ok()
    }

    pub fn is_chain_start(&self) -> bool {
        self.event.as_deref() == Some("audit_chain_start")
    }
}

/// The writer's position in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub next_seq: u64,
    pub prev: ChainHash,
}

impl Chain {
    pub fn new() -> Chain {
        Chain {
            next_seq: 0,
            prev: ChainHash::ZERO,
        }
    }

    /// Gives `ev` its place; [`Chain::advance`] commits it once the line
    /// is serialized, so a record that fails to serialize uses no seq.
    pub fn stamp(&self, ev: &mut AuditEvent) {
        ev.seq = Some(self.next_seq);
        ev.prev_hash = Some(self.prev);
    }

    pub fn advance(&mut self, line: &[u8]) {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.prev = ChainHash::of_line(line);
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

/// Where the writer picks up at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// After the last record on disk (or the anchor of a deleted tail).
    Continue(Chain),
    /// A new chain, and why the old one could not be continued.
    Start { reason: String },
}

/// `audit.log.anchor`: the last seq and hash of the newest file rotation
/// deleted, so the files that remain verify from their first record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: ChainHash,
    /// The file it was the last record of, when it was deleted.
    pub file: String,
    pub time: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an audit anchor: {source}")]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub fn anchor_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".anchor");
    PathBuf::from(s)
}

impl Anchor {
    /// `Ok(None)` when there is no anchor (nothing was ever deleted).
    pub fn read(log: &Path) -> Result<Option<Anchor>, AnchorError> {
        let path = anchor_path(log);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| AnchorError::Invalid { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AnchorError::Io { path, source }),
        }
    }

    /// Replaces the anchor atomically, mode 0600.
    pub fn write(&self, log: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        crate::util::atomic_file::write_atomic(&anchor_path(log), &json, 0o600)
    }

    /// The anchor for a file about to be deleted: its last record's seq and
    /// hash. `None` when that file holds no chained record.
    pub fn for_file(path: &Path) -> std::io::Result<Option<Anchor>> {
        let tail = last_line(&mut File::open(path)?)?;
        let Some(line) = tail.line else {
            return Ok(None);
        };
        let Some(seq) = ChainFields::parse(&line).and_then(|f| f.seq) else {
            return Ok(None);
        };
        Ok(Some(Anchor {
            seq,
            hash: ChainHash::of_line(&line),
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            time: crate::util::time::now_rfc3339(),
        }))
    }
}

/// The last whole line of a file, and whether a partial line follows it.
pub struct Tail {
    pub line: Option<Vec<u8>>,
    /// Bytes after the last newline: a record torn by a crash mid-write.
    pub torn_bytes: u64,
}

/// A record longer than this is not looked for (the file is then treated
/// as unreadable) so a corrupt file cannot make the start read gigabytes.
const MAX_TAIL: u64 = 16 * 1024 * 1024;

/// Reads backwards from the end in chunks until a whole line is found.
pub fn last_line(f: &mut File) -> std::io::Result<Tail> {
    const CHUNK: u64 = 64 * 1024;
    let len = f.seek(SeekFrom::End(0))?;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        f.seek(SeekFrom::Start(from))?;
        f.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
        // The last newline ends the last whole line; the one before it
        // (or the file's start) begins it.
        if let Some(end) = buf.iter().rposition(|b| *b == b'\n') {
            let torn_bytes = (buf.len() - end - 1) as u64;
            let begin = buf[..end].iter().rposition(|b| *b == b'\n');
            if begin.is_some() || start == 0 {
                let begin = begin.map(|i| i + 1).unwrap_or(0);
                let line = buf[begin..end].to_vec();
                if line.iter().all(u8::is_ascii_whitespace) {
                    // A blank line: look further back by cutting it off.
                    let cut = begin;
                    return tail_before(f, start + cut as u64, torn_bytes);
                }
                return Ok(Tail {
                    line: Some(line),
                    torn_bytes,
                });
            }
        }
        if start == 0 {
            return Ok(Tail {
                line: None,
                torn_bytes: buf.len() as u64,
            });
        }
        if len - start > MAX_TAIL {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("no whole line in the last {MAX_TAIL} bytes"),
            ));
        }
    }
}

/// The last line of the file's first `end` bytes (blank lines skipped).
fn tail_before(f: &mut File, end: u64, torn_bytes: u64) -> std::io::Result<Tail> {
    let mut head = vec![0u8; end.min(MAX_TAIL) as usize];
    let from = end - head.len() as u64;
    f.seek(SeekFrom::Start(from))?;
    f.read_exact(&mut head)?;
    let line = head
        .split(|b| *b == b'\n')
        .rev()
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| l.to_vec());
    Ok(Tail { line, torn_bytes })
}

/// Where to continue: the last record of the newest file that holds one;
/// with no record at all, the anchor; otherwise a new chain, saying why.
pub fn resume(files_newest_first: &[PathBuf], log: &Path) -> Resume {
    for path in files_newest_first {
        let name = path.display();
        let tail = match File::open(path).and_then(|mut f| last_line(&mut f)) {
            Ok(t) => t,
            Err(e) => {
                return Resume::Start {
                    reason: format!("cannot read the last record of {name}: {e}"),
                }
            }
        };
        let Some(line) = tail.line else { continue };
        return match ChainFields::parse(&line) {
            Some(ChainFields { seq: Some(seq), .. }) => Resume::Continue(Chain {
                next_seq: seq.wrapping_add(1),
                prev: ChainHash::of_line(&line),
            }),
            Some(_) => Resume::Start {
                reason: format!(
                    "the last record of {name} has no seq (written before the chain existed)"
                ),
            },
            None => Resume::Start {
                reason: format!("the last line of {name} is not an audit record"),
            },
        };
    }
    match Anchor::read(log) {
        Ok(Some(a)) => Resume::Continue(Chain {
            next_seq: a.seq.wrapping_add(1),
            prev: a.hash,
        }),
        Ok(None) => Resume::Start {
            reason: "new audit log".into(),
        },
        Err(e) => Resume::Start {
            reason: format!("no audit record to continue from, and {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_hex_round_trip() {
        let h = ChainHash::of_line(b"abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ChainHash::parse(&h.to_string()), Some(h));
        assert_eq!(ChainHash::parse("zz"), None);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<ChainHash>(&json).unwrap(), h);
    }

    #[test]
    fn last_line_skips_torn_and_blank_tails() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        // (content, last whole line, torn bytes)
        type Case<'a> = (&'a [u8], Option<&'a [u8]>, u64);
        let cases: &[Case] = &[
            (b"", None, 0),
            (b"a\n", Some(b"a"), 0),
            (b"a\nbb\n", Some(b"bb"), 0),
            (b"a\nbb\nccc", Some(b"bb"), 3),
            (b"a\nbb\n\n", Some(b"bb"), 0),
            (b"partial", None, 7),
        ];
        for (content, want, torn) in cases {
            std::fs::write(&p, content).unwrap();
            let t = last_line(&mut File::open(&p).unwrap()).unwrap();
            assert_eq!(t.line.as_deref(), *want, "{content:?}");
            assert_eq!(t.torn_bytes, *torn, "{content:?}");
        }
        // A last line longer than one read chunk.
        let long = vec![b'x'; 200_000];
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.push(b'\n');
        std::fs::write(&p, &content).unwrap();
        let t = last_line(&mut File::open(&p).unwrap()).unwrap();
        assert_eq!(t.line.unwrap(), long);
    }
}
