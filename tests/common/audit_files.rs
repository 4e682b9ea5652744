//! Reading audit logs the way an operator would: rotated files oldest
//! first, whole lines only, and the JSON fields of a record.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `audit.log.N` (oldest) .. `audit.log.1`, then `audit.log`. Asserts the
/// rotated numbers are contiguous from 1: a hole would be a lost file.
/// Rotation renames `N -> N+1` from the oldest down, so a live broker's
/// directory shows a hole for the instant between two renames; only a hole
/// that outlasts `ROTATION_SETTLE` is a lost file.
pub fn log_files(log: &Path) -> Vec<PathBuf> {
    const ROTATION_SETTLE: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let numbers = loop {
        let numbers = rotated_numbers(log);
        let contiguous = numbers.iter().copied().eq(1..=numbers.len());
        if contiguous || started.elapsed() > ROTATION_SETTLE {
            break numbers;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    assert_eq!(
        numbers,
        (1..=numbers.len()).collect::<Vec<_>>(),
        "rotated files are not numbered 1..N without holes"
    );
    let mut files: Vec<PathBuf> = numbers
        .iter()
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", log.display())))
        .collect();
    if log.exists() {
        files.push(log.to_path_buf());
    }
    files
}

/// The `N` of every `audit.log.N` in the directory, ascending.
pub fn rotated_numbers(log: &Path) -> Vec<usize> {
    let name = log.file_name().unwrap().to_string_lossy().into_owned();
    let mut numbers = Vec::new();
    for e in std::fs::read_dir(log.parent().unwrap()).unwrap().flatten() {
        let f = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = f
            .strip_prefix(&format!("{name}."))
            .and_then(|s| s.parse::<usize>().ok())
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    numbers
}

/// Whole lines of every file, oldest first. A live file may end in a
/// partial line; that one is left for the next read.
pub fn raw_lines(log: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in log_files(log) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let complete = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
        out.extend(
            text[..complete]
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    out
}

pub fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

pub fn n(v: &Value, k: &str) -> Option<i64> {
    v.get(k).and_then(Value::as_i64)
}

pub fn is(v: &Value, k: &str, want: &str) -> bool {
    s(v, k) == Some(want)
}

pub fn show(recs: &[&Value]) -> String {
    recs.iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}
