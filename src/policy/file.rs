//! The policy file: read, parse and validate into a [`PolicySet`].
//!
//! Errors name the file, the line and what is wrong, never the file's
//! content (see [`crate::security::yaml_error`]): a path pointing at the
//! wrong file must not print that file into logs or the audit trail.

use std::path::Path;

use regex::{Regex, RegexBuilder};

use super::model::{ConfigsModel, FileModel, ProduceModel, RangeModel, RuleModel, TopicsModel};
use super::set::{
    acks_bit, ConfigCheck, ConsumeCheck, CreateCheck, PolicySet, PrincipalScope, ProduceCheck,
    Range, Rule, TopicScope, ValueBound,
};

/// The largest policy file read (a hostile or mistaken path must not make
/// the broker read gigabytes).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// The most rules one file may hold.
pub const MAX_RULES: usize = 100_000;
/// Compiled size bound of one regular expression.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Distinct regular expressions in one file (each may take up to
/// [`REGEX_SIZE_LIMIT`] compiled).
pub const MAX_PATTERNS: usize = 4096;
/// Distinct `required_headers` keys in one file (one bit each).
pub const MAX_HEADER_KEYS: usize = 64;
const MAX_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("policy file {path}: {error}")]
    Yaml {
        path: String,
        error: Box<crate::security::yaml_error::YamlError>,
    },
    #[error("policy file {path}, line {line}: not UTF-8 text")]
    NotUtf8 { path: String, line: usize },
    #[error("policy file {path} does not exist (a path given explicitly must exist; only the default path may be absent, meaning no policies)")]
    Missing { path: String },
    #[error("policy file {path} is empty (a write in progress?); write `rules: []` to remove every rule")]
    Empty { path: String },
    #[error("policy file {path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("policy file {path} has more than {limit} rules")]
    TooManyRules { path: String, limit: usize },
    #[error("policy file {path}, line {line}: {message}")]
    Rule {
        path: String,
        line: usize,
        message: String,
    },
}

/// Reads the file, bounded by [`MAX_FILE_BYTES`]; `Ok(None)` if it does not
/// exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, PolicyFileError> {
    use std::io::Read;
    let name = || path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PolicyFileError::Read {
                path: name(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| PolicyFileError::Read {
            path: name(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(PolicyFileError::TooLarge {
            path: name(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(Some(bytes))
}

/// Parses the file's bytes; text that is not UTF-8 is refused with the
/// line it stops being text.
pub fn parse_bytes(bytes: &[u8], path: &str) -> Result<PolicySet, PolicyFileError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, path),
        Err(e) => Err(PolicyFileError::NotUtf8 {
            path: path.to_string(),
            line: bytes[..e.valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
        }),
    }
}

/// Loads the file; a missing file is no policies when `allow_missing`.
pub fn load(path: &Path, allow_missing: bool) -> Result<PolicySet, PolicyFileError> {
    let name = path.display().to_string();
    match read(path)? {
        Some(b) => parse_bytes(&b, &name),
        None if allow_missing => Ok(PolicySet::default()),
        None => Err(PolicyFileError::Missing { path: name }),
    }
}

/// Parses and validates the text of a policy file.
pub fn parse(text: &str, path: &str) -> Result<PolicySet, PolicyFileError> {
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(PolicyFileError::TooLarge {
            path: path.to_string(),
            limit: MAX_FILE_BYTES,
        });
    }
    let model: FileModel = if text.trim().is_empty() {
        FileModel::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| PolicyFileError::Yaml {
            path: path.to_string(),
            error: Box::new(crate::security::yaml_error::YamlError::from_serde(&e)),
        })?
    };
    if model.rules.len() > MAX_RULES {
        return Err(PolicyFileError::TooManyRules {
            path: path.to_string(),
            limit: MAX_RULES,
        });
    }
    let lines = crate::security::yaml_error::rules_entry_lines(text);
    let mut c = Compiler::default();
    let mut rules = Vec::with_capacity(model.rules.len());
    for (i, m) in model.rules.into_iter().enumerate() {
        let line = lines.get(i).copied().unwrap_or(0);
        let rule = c.rule(m, line).map_err(|message| PolicyFileError::Rule {
            path: path.to_string(),
            line,
            message,
        })?;
        rules.push(rule);
    }
    Ok(PolicySet::new(rules, c.header_keys))
}

/// State shared by the rules of one file: names seen, compiled regexes
/// (shared when repeated), header keys.
#[derive(Default)]
struct Compiler {
    names: rustc_hash::FxHashMap<String, usize>,
    patterns: rustc_hash::FxHashMap<String, Regex>,
    header_keys: Vec<Box<str>>,
}

type Res<T> = Result<T, String>;

impl Compiler {
    fn regex(&mut self, pattern: &str, what: &str) -> Res<Regex> {
        if let Some(r) = self.patterns.get(pattern) {
            return Ok(r.clone());
        }
        if self.patterns.len() >= MAX_PATTERNS {
            return Err(format!(
                "more than {MAX_PATTERNS} distinct regular expressions in the file"
            ));
        }
        if pattern.is_empty() {
            return Err(format!("`{what}` is empty"));
        }
        // The regex crate's message quotes the pattern: say where instead.
        let re = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => {
                    format!("`{what}` compiles past the size limit of {REGEX_SIZE_LIMIT} bytes")
                }
                _ => format!("`{what}` is not a valid regular expression"),
            })?;
        self.patterns.insert(pattern.to_string(), re.clone());
        Ok(re)
    }

    fn rule(&mut self, m: RuleModel, line: usize) -> Res<Rule> {
        if m.name.is_empty() || m.name.len() > MAX_NAME_LEN {
            return Err(format!("`name` must be 1 to {MAX_NAME_LEN} characters"));
        }
        if m.name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err("`name` must not contain spaces or control characters".into());
        }
        if let Some(first) = self.names.insert(m.name.clone(), line) {
            return Err(format!(
                "the rule name is already used by the rule at line {first}"
            ));
        }
        let principals = match &m.principals {
            None => vec![PrincipalScope::Everyone],
            Some(ps) if ps.is_empty() => {
                return Err("`principals` is empty (omit it for everyone)".into())
            }
            Some(ps) => ps.iter().map(|p| principal(p)).collect::<Res<Vec<_>>>()?,
        };
        let topics = match &m.topics {
            None => TopicScope::Any,
            Some(t) => self.topics(t)?,
        };
        let checks = [
            m.create_topic.is_some(),
            m.alter_configs.is_some(),
            m.create_partitions.is_some(),
            m.produce.is_some(),
            m.consume.is_some(),
        ];
        if !checks.contains(&true) {
            return Err("the rule checks nothing: give create_topic, alter_configs, create_partitions, produce or consume".into());
        }
        if m.consume.is_some() && m.topics.is_some() {
            return Err("`consume` checks groups and client ids, not topics: put it in a rule without `topics`".into());
        }
        let mut create = None;
        let mut configs = None;
        let mut create_partitions = None;
        if let Some(ct) = &m.create_topic {
            let name_pattern = match &ct.name_pattern {
                Some(p) => Some(self.regex(p, "create_topic.name_pattern")?),
                None => None,
            };
            let partitions = ct
                .partitions
                .map(|r| range(r, "create_topic.partitions", 1, i32::MAX.into()))
                .transpose()?;
            let replication_factor = ct
                .replication_factor
                .map(|r| range(r, "create_topic.replication_factor", 1, i16::MAX.into()))
                .transpose()?;
            create_partitions = partitions;
            create = Some(CreateCheck {
                name_pattern,
                partitions,
                replication_factor,
            });
            configs = ct
                .configs
                .as_ref()
                .map(|c| config_check(c, "create_topic.configs"))
                .transpose()?;
        }
        if let Some(r) = m.create_partitions {
            create_partitions = Some(range(r, "create_partitions", 1, i32::MAX.into())?);
        }
        let alter_configs = m
            .alter_configs
            .as_ref()
            .map(|c| config_check(c, "alter_configs"))
            .transpose()?;
        let produce = m.produce.as_ref().map(|p| self.produce(p)).transpose()?;
        let consume = match &m.consume {
            None => None,
            Some(k) => Some(ConsumeCheck {
                group_id_pattern: match &k.group_id_pattern {
                    Some(p) => Some(self.regex(p, "consume.group_id_pattern")?),
                    None => None,
                },
                client_id_required: k.client_id_required,
                client_id_pattern: match &k.client_id_pattern {
                    Some(p) => Some(self.regex(p, "consume.client_id_pattern")?),
                    None => None,
                },
            }),
        };
        Ok(Rule {
            name: m.name.clone(),
            action: m.action,
            line,
            principals,
            topics,
            create,
            configs,
            alter_configs,
            create_partitions,
            produce,
            consume,
            model: m,
        })
    }

    fn topics(&mut self, t: &TopicsModel) -> Res<TopicScope> {
        let scope = match (&t.name, &t.prefix, &t.pattern) {
            (Some(n), None, None) => TopicScope::Name(n.as_str().into()),
            (None, Some(p), None) => TopicScope::Prefix(p.as_str().into()),
            (None, None, Some(p)) => TopicScope::Pattern(self.regex(p, "topics.pattern")?),
            _ => return Err("`topics` names exactly one of name, prefix, pattern".into()),
        };
        match &scope {
            TopicScope::Name(s) | TopicScope::Prefix(s) if s.is_empty() => Err(
                "`topics` names an empty topic or prefix (omit `topics` for every topic)".into(),
            ),
            _ => Ok(scope),
        }
    }

    fn produce(&mut self, p: &ProduceModel) -> Res<ProduceCheck> {
        let acks = match &p.acks {
            None => None,
            Some(a) if a.is_empty() => return Err("`produce.acks` is empty".into()),
            Some(a) => Some(a.iter().fold(0u8, |m, a| m | acks_bit(a.0))),
        };
        let codecs = match &p.compression {
            None => None,
            Some(c) if c.is_empty() => return Err("`produce.compression` is empty".into()),
            Some(c) => Some(c.iter().fold(0u8, |m, c| m | (1 << c.id()))),
        };
        if p.max_record_bytes == Some(0) {
            return Err("`produce.max_record_bytes` must be at least 1".into());
        }
        let mut header_mask = 0u64;
        for key in p.required_headers.iter().flatten() {
            if key.is_empty() {
                return Err("`produce.required_headers` holds an empty key".into());
            }
            let bit = match self.header_keys.iter().position(|k| **k == **key) {
                Some(b) => b,
                None if self.header_keys.len() >= MAX_HEADER_KEYS => {
                    return Err(format!(
                        "more than {MAX_HEADER_KEYS} distinct required header keys in the file"
                    ))
                }
                None => {
                    self.header_keys.push(key.as_str().into());
                    self.header_keys.len() - 1
                }
            };
            header_mask |= 1 << bit;
        }
        Ok(ProduceCheck {
            acks,
            idempotence_required: p.idempotence_required,
            transactions_required: p.transactions_required,
            codecs,
            max_record_bytes: p.max_record_bytes,
            header_mask,
        })
    }
}

/// `User:alice`, `User:*`, `User:team-*`.
fn principal(p: &str) -> Res<PrincipalScope> {
    let Some((kind, name)) = p.split_once(':') else {
        return Err("a principal is TYPE:NAME, e.g. User:alice, User:* or User:team-*".into());
    };
    if kind.is_empty() || kind.contains('*') || name.is_empty() {
        return Err("a principal is TYPE:NAME, e.g. User:alice, User:* or User:team-*".into());
    }
    if name == "*" {
        return Ok(PrincipalScope::Everyone);
    }
    match name.find('*') {
        None => Ok(PrincipalScope::Exact(p.into())),
        Some(i) if i == name.len() - 1 => Ok(PrincipalScope::Prefix(p[..p.len() - 1].into())),
        Some(_) => Err("`*` may only end a principal (User:team-*)".into()),
    }
}

fn range(r: RangeModel, what: &str, lowest: i64, highest: i64) -> Res<Range> {
    if r.min.is_none() && r.max.is_none() {
        return Err(format!("`{what}` needs min, max or both"));
    }
    for v in [r.min, r.max].into_iter().flatten() {
        if v < lowest || v > highest {
            return Err(format!(
                "`{what}` bounds must be between {lowest} and {highest}"
            ));
        }
    }
    if let (Some(a), Some(b)) = (r.min, r.max) {
        if a > b {
            return Err(format!("`{what}`: min is greater than max"));
        }
    }
    Ok(Range {
        min: r.min,
        max: r.max,
    })
}

/// A config key as Kafka names them: lowercase words joined by dots.
fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 249
        && k.starts_with(|c: char| c.is_ascii_lowercase())
        && k.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

fn config_check(c: &ConfigsModel, what: &str) -> Res<ConfigCheck> {
    let allowed = match &c.allowed {
        None => None,
        Some(a) => {
            if let Some(bad) = a.iter().position(|k| !is_config_key(k)) {
                return Err(format!(
                    "`{what}.allowed` entry {} is not a config name (lowercase words joined by dots)",
                    bad + 1
                ));
            }
            Some(
                a.iter()
                    .map(|k| k.as_str().into())
                    .collect::<Vec<Box<str>>>(),
            )
        }
    };
    let mut bounds = Vec::with_capacity(c.bounds.len());
    for (i, (key, b)) in c.bounds.iter().enumerate() {
        // The key came from the file: named only once known to be a name.
        if !is_config_key(key) {
            return Err(format!(
                "`{what}` key {} is not a config name (lowercase words joined by dots)",
                i + 1
            ));
        }
        let here = format!("{what}.{key}");
        if let Some(a) = &allowed {
            if !a.iter().any(|k| &**k == key) {
                return Err(format!("`{here}` has bounds but is not in `allowed`"));
            }
        }
        let bound = match (&b.values, b.min.is_some() || b.max.is_some()) {
            (Some(_), true) => {
                return Err(format!("`{here}` gives either min/max or values, not both"))
            }
            (Some(v), false) if v.is_empty() => return Err(format!("`{here}.values` is empty")),
            (Some(v), false) => ValueBound::OneOf(v.iter().map(|s| s.as_str().into()).collect()),
            (None, true) => ValueBound::Numeric(range(
                RangeModel {
                    min: b.min,
                    max: b.max,
                },
                &here,
                i64::MIN,
                i64::MAX,
            )?),
            (None, false) => return Err(format!("`{here}` needs min, max or values")),
        };
        bounds.push((key.as_str().into(), bound));
    }
    Ok(ConfigCheck { allowed, bounds })
}
