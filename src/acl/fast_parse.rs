//! A fast path for the ACL file in the one-rule-per-line form that the
//! broker and the CLI write. A 100k-rule file is parsed line by line in a
//! fraction of what a general YAML parser needs; anything outside that form
//! (block-style entries, anchors, odd quoting) returns `None` and the
//! caller falls back to the YAML parser, so both accept the same files.

use std::borrow::Cow;

/// One flow mapping: `{key: value, key: [a, b]}` as (key, values),
/// borrowed from the file text wherever no unescaping was needed (a 100k
/// rule file would otherwise spend its parse time in the allocator).
pub type FlowEntry<'a> = Vec<(Cow<'a, str>, Vec<Cow<'a, str>>)>;

pub struct FastFile<'a> {
    pub allow_everyone: bool,
    /// (line number, text) of every rule line; `flow_entry` parses one.
    pub lines: Vec<(usize, &'a str)>,
}

fn scalar(s: &str) -> Option<Cow<'_, str>> {
    let s = s.trim();
    if s.starts_with('"') {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        if !inner.contains(['\\', '"']) {
            return Some(Cow::Borrowed(inner));
        }
        return serde_json::from_str::<String>(s).ok().map(Cow::Owned);
    }
    // Plain scalars as YAML reads them in flow context: no indicators at
    // the start, no `: ` or ` #`, no flow punctuation. One pass over the
    // bytes: this runs for every value of every rule.
    let b = s.as_bytes();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return None;
    };
    if matches!(
        first,
        b'\''
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'{'
            | b'['
            | b'%'
            | b'@'
            | b'`'
            | b'-'
            | b'?'
            | b':'
    ) || last == b':'
    {
        return None;
    }
    let mut prev = 0u8;
    for &c in b {
        if matches!(c, b'"' | b'\'' | b'{' | b'}' | b'[' | b']' | b',')
            || (prev == b':' && c == b' ')
            || (prev == b' ' && c == b'#')
        {
            return None;
        }
        prev = c;
    }
    Some(Cow::Borrowed(s))
}

/// Splits on commas outside quotes and brackets.
fn split_top(s: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let (mut depth, mut in_q, mut esc, mut start) = (0i32, false, false, 0);
    for (i, c) in s.char_indices() {
        if in_q {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_q = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_q = true,
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    if in_q || depth != 0 {
        return None;
    }
    out.push(&s[start..]);
    Some(out)
}

pub fn flow_entry(line: &str) -> Option<FlowEntry<'_>> {
    let body = line.trim().strip_prefix("- ")?.trim();
    let body = body.strip_prefix('{')?.strip_suffix('}')?;
    let mut entry = Vec::new();
    for part in split_top(body)? {
        let (k, v) = part.split_once(':')?;
        let key = scalar(k)?;
        let v = v.trim();
        let values = if let Some(list) = v.strip_prefix('[') {
            let list = list.strip_suffix(']')?;
            if list.trim().is_empty() {
                Vec::new()
            } else {
                split_top(list)?
                    .into_iter()
                    .map(scalar)
                    .collect::<Option<Vec<_>>>()?
            }
        } else {
            vec![scalar(v)?]
        };
        entry.push((key, values));
    }
    Some(entry)
}

pub fn parse(text: &str) -> Option<FastFile<'_>> {
    let mut f = FastFile {
        allow_everyone: false,
        lines: Vec::new(),
    };
    let mut in_rules = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            in_rules = false;
            match t.split_once(':')? {
                ("allow_everyone_if_no_acl_found", v) => {
                    f.allow_everyone = match v.trim() {
                        "true" => true,
                        "false" => false,
                        _ => return None,
                    };
                }
                ("rules", v) if v.trim().is_empty() => in_rules = true,
                ("rules", v) if v.trim() == "[]" => {}
                _ => return None,
            }
            continue;
        }
        if !in_rules {
            return None;
        }
        f.lines.push((i + 1, t));
    }
    Some(f)
}
