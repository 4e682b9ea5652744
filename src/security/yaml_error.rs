//! YAML errors that never carry the file's bytes.
//!
//! serde_yaml_ng's messages quote what they refused ("invalid type: string
//! \"-----BEGIN PRIVATE KEY-----...\""), so a config, ACL or credential path
//! pointing at the wrong file (a symlink to a private key) would print that
//! file into the log, the audit trail and the CLI's output. The files the
//! broker reads report a [`YamlError`] instead: the line, the column and the
//! kind of problem, plus what was expected when that list comes from our own
//! types (field and variant names). The one thing taken from the file is the
//! key path ("log.retention_ms", an unknown key's name), and only when it is
//! made of lowercase letters, underscores and list indexes: a name, as every
//! key of these formats is, never key material, which carries digits,
//! capitals or base64 symbols. Values are never shown.

use std::fmt;

/// What was wrong, without saying what the file contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// Not well-formed YAML (unclosed bracket, bad indentation...).
    Syntax,
    /// A key the format does not have.
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// The same key twice.
    DuplicateKey,
    /// A name outside the accepted set (e.g. a security protocol).
    UnknownValue,
    /// A value of the wrong type (a string where a list was expected...).
    WrongType,
    /// A value of the right type but out of range or badly formed.
    InvalidValue,
    /// Anything else the parser refused.
    Other,
}

impl YamlErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            YamlErrorKind::Syntax => "YAML syntax error",
            YamlErrorKind::UnknownKey => "unknown key",
            YamlErrorKind::MissingKey => "missing key",
            YamlErrorKind::DuplicateKey => "duplicate key",
            YamlErrorKind::UnknownValue => "unknown value",
            YamlErrorKind::WrongType => "value of the wrong type",
            YamlErrorKind::InvalidValue => "invalid value",
            YamlErrorKind::Other => "not a valid document",
        }
    }
}

/// A refused YAML document: position and kind only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// 1-based, when the parser knew it.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub kind: YamlErrorKind,
    /// What the format accepts there (our own key or value names), or the
    /// missing key's name.
    pub expected: Option<String>,
    /// Where: the key path, or the unknown key, when it passes [`is_key_path`].
    pub key: Option<String>,
    /// Syntax errors: where the construct that broke began (an unclosed
    /// quote is found at the end of the file but starts earlier).
    pub context: Option<(usize, usize)>,
}

impl YamlError {
    pub fn from_serde(e: &serde_yaml_ng::Error) -> YamlError {
        let loc = e.location();
        // Classify from the parser's own wording (after the key path it
        // puts first, "listeners[0].security_protocol: ..."); the message
        // itself is dropped. A key in the path that mimics the wording can
        // at worst pick the wrong kind: nothing of it is shown.
        let msg = e.to_string();
        let has = |phrase: &str| msg.starts_with(phrase) || msg.contains(&format!(": {phrase}"));
        let kind = if has("unknown field `") {
            YamlErrorKind::UnknownKey
        } else if has("missing field `") {
            YamlErrorKind::MissingKey
        } else if has("duplicate") {
            YamlErrorKind::DuplicateKey
        } else if has("unknown variant `") {
            YamlErrorKind::UnknownValue
        } else if has("invalid type: ") {
            YamlErrorKind::WrongType
        } else if has("invalid value: ") || has("invalid length ") {
            YamlErrorKind::InvalidValue
        } else if loc.is_some() && !msg.contains('`') && !msg.contains('"') {
            // libyaml's scanner and parser problems ("did not find expected
            // node content", "mapping values are not allowed here").
            YamlErrorKind::Syntax
        } else {
            YamlErrorKind::Other
        };
        let expected = match kind {
            YamlErrorKind::UnknownKey | YamlErrorKind::UnknownValue => expected_of(&msg),
            YamlErrorKind::MissingKey => missing_of(&msg),
            _ => None,
        };
        let key = match kind {
            YamlErrorKind::Syntax | YamlErrorKind::Other => None,
            YamlErrorKind::UnknownKey => unknown_key_of(&msg),
            _ => path_of(&msg).map(str::to_string),
        };
        let line = loc.as_ref().map(|l| l.line());
        let column = loc.as_ref().map(|l| l.column());
        // libyaml's text is its own ("while scanning a quoted scalar at line
        // 4 column 14"): the last position in it is the context's.
        let context = match kind {
            YamlErrorKind::Syntax => last_position(&msg).filter(|p| Some(*p) != line.zip(column)),
            _ => None,
        };
        YamlError {
            line,
            column,
            kind,
            expected,
            key,
            context,
        }
    }
}

/// Line numbers of the entries of the top-level `rules:` list, in order
/// (the ACL file and the policy file name a refused rule by its line).
pub fn rules_entry_lines(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut in_rules = false;
    let mut indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = line.len() - trimmed.len();
        if ind == 0 && !trimmed.starts_with('-') {
            in_rules = trimmed.starts_with("rules:");
            indent = None;
            continue;
        }
        if in_rules && trimmed.starts_with('-') && indent.is_none_or(|d| d == ind) {
            indent = Some(ind);
            out.push(i + 1);
        }
    }
    out
}

/// The last "line N column M" of a message.
fn last_position(msg: &str) -> Option<(usize, usize)> {
    let i = msg.rfind(" at line ")?;
    let mut words = msg[i + " at line ".len()..].split_whitespace();
    let line = words.next()?.trim_end_matches(',').parse().ok()?;
    (words.next()? == "column").then_some(())?;
    let column = words.next()?.trim_end_matches(',').parse().ok()?;
    Some((line, column))
}

/// A key path of lowercase names and list indexes: `listeners[0].address`.
pub fn is_key_path(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.split('.').all(|seg| {
            let name_end = seg.find('[').unwrap_or(seg.len());
            let (name, idx) = seg.split_at(name_end);
            let name_ok = name.len() <= 64
                && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && (!name.is_empty() || !idx.is_empty());
            let idx_ok = idx.split_inclusive(']').all(|i| {
                i.strip_prefix('[')
                    .and_then(|i| i.strip_suffix(']'))
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
            });
            name_ok && idx_ok
        })
}

/// serde_yaml_ng writes "path: message"; the path, if it is a key path.
fn path_of(msg: &str) -> Option<&str> {
    let (path, _) = msg.split_once(": ")?;
    is_key_path(path).then_some(path)
}

/// "path: unknown field `name`, expected ...": path.name, if a key path.
fn unknown_key_of(msg: &str) -> Option<String> {
    let msg = without_position(msg);
    let start = msg.find("unknown field `")? + "unknown field `".len();
    let end = msg.rfind("`, expected ").filter(|e| *e >= start)?;
    let name = &msg[start..end];
    let full = match path_of(msg) {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    is_key_path(&full).then_some(full)
}

/// Only names made of these characters are ours to repeat: field and
/// variant names, backquoted and comma-separated by serde.
fn is_name_list(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 1024
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '`' | ',' | ' '))
}

/// Strips serde_yaml_ng's " at line N column M" suffix.
fn without_position(s: &str) -> &str {
    match s.rfind(" at line ") {
        Some(i) => &s[..i],
        None => s,
    }
}

/// "unknown field `X`, expected one of `a`, `b`": the part after the last
/// "`, expected " is serde's list of our names; `X` is the file's and is
/// never kept (it may itself contain that separator, hence the last one).
fn expected_of(msg: &str) -> Option<String> {
    let msg = without_position(msg);
    let i = msg.rfind("`, expected ")?;
    let list = &msg[i + "`, expected ".len()..];
    is_name_list(list).then(|| list.to_string())
}

/// "missing field `version`": the name is one of our fields (the message
/// ends with it; a path before it may hold the file's keys).
fn missing_of(msg: &str) -> Option<String> {
    let msg = without_position(msg);
    let i = msg.rfind("missing field `")?;
    let name = msg[i + "missing field `".len()..].strip_suffix('`')?;
    (is_name_list(name) && !name.contains(['`', ',', ' '])).then(|| format!("`{name}`"))
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: ")?,
            (Some(l), None) => write!(f, "line {l}: ")?,
            _ => {}
        }
        f.write_str(self.kind.as_str())?;
        match (&self.key, self.kind) {
            (Some(k), YamlErrorKind::UnknownKey) => write!(f, " `{k}`")?,
            (Some(k), _) => write!(f, " at `{k}`")?,
            (None, _) => {}
        }
        match (&self.expected, self.kind) {
            (Some(name), YamlErrorKind::MissingKey) => write!(f, " {name}")?,
            (Some(list), _) => write!(f, " (expected {list})")?,
            (None, _) => {}
        }
        match self.context {
            Some((l, c)) => write!(f, " (in what starts at line {l}, column {c})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for YamlError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        version: u32,
        #[serde(default)]
        mode: Option<Mode>,
        #[serde(default)]
        names: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Safe,
    }

    fn err(text: &str) -> YamlError {
        YamlError::from_serde(&serde_yaml_ng::from_str::<Doc>(text).unwrap_err())
    }

    #[test]
    fn the_file_bytes_never_appear() {
        let secret = "-----BEGIN PRIVATE KEY----- SECRETMARKER\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ\n-----END PRIVATE KEY-----\n";
        let e = err(secret);
        assert_eq!(e.kind, YamlErrorKind::WrongType);
        assert!(!e.to_string().contains("SECRETMARKER"), "{e}");
        assert!(!e.to_string().contains("MIIE"), "{e}");
        for text in [
            "version: 1\nSECRETMARKER: 1\n",
            "version: 1\nmode: SECRETMARKER\n",
            "version: SECRETMARKER\n",
            "version: 1\nnames: [SECRETMARKER\n",
            "version: 1\n\"SECRETMARKER`, expected `x\": 1\n",
            "version: 1\nmode: \"SECRETMARKER`, expected `fast\"\n",
            "version: 1\nversion: 2\nSECRETMARKER\n",
        ] {
            let e = err(text);
            assert!(!e.to_string().contains("SECRETMARKER"), "{text:?}: {e}");
            assert!(e.line.is_some(), "{text:?}: {e}");
        }
    }

    #[test]
    fn kinds_lines_and_our_own_names() {
        let e = err("version: 1\ncolour: blue\n");
        assert_eq!((e.kind, e.line), (YamlErrorKind::UnknownKey, Some(2)));
        assert!(e.to_string().contains("`mode`"), "{e}");
        assert!(e.to_string().contains("unknown key `colour`"), "{e}");
        let e = err("version: 1\nColour1: blue\n");
        assert!(!e.to_string().contains("Colour1"), "{e}");
        let e = err("version: 1\nnames: [a, [b]]\n");
        assert_eq!(e.key.as_deref(), Some("names[1]"), "{e}");
        let e = err("version: 1\nmode: slow\n");
        assert_eq!(e.kind, YamlErrorKind::UnknownValue);
        assert!(!e.to_string().contains("slow"), "{e}");
        assert!(e.to_string().contains("`fast`"), "{e}");
        let e = err("mode: fast\n");
        assert_eq!(e.kind, YamlErrorKind::MissingKey);
        assert!(e.to_string().contains("`version`"), "{e}");
        let e = err("version: 1\nnames: \"a\n");
        assert_eq!(e.kind, YamlErrorKind::Syntax, "{e}");
        assert!(e.to_string().contains("starts at line 2"), "{e}");
        let e = err("version: 1\nnames: [a\n");
        assert_eq!(e.kind, YamlErrorKind::Syntax);
        assert!(e.to_string().starts_with("line "), "{e}");
        let e = err("version: -1\n");
        assert!(
            matches!(
                e.kind,
                YamlErrorKind::InvalidValue | YamlErrorKind::WrongType
            ),
            "{e}"
        );
    }
}
