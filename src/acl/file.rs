//! The ACL file: YAML made for people. One rule per entry, written one per
//! line when the broker or the CLI rewrites it, so a rule is easy to find
//! with grep and a change is a one-line diff:
//!
//! ```yaml
//! allow_everyone_if_no_acl_found: false
//! rules:
//!   - {allow: "User:alice", operations: [write], topic: orders}
//!   - {deny: "User:*", operations: [all], topic_prefix: secret., hosts: ["10.0.0.0/8"]}
//!   - {allow: "User:bob", operations: [read], group: billing}
//! ```
//!
//! An entry names exactly one of `allow`/`deny` (the principal), a list of
//! operations, exactly one resource key (`topic`, `topic_prefix`, `group`,
//! `group_prefix`, `transactional_id`, `transactional_id_prefix`,
//! `cluster`), and optional `hosts` (IP, CIDR or `*`; default `*`). Errors
//! name the entry's line.

use std::borrow::Cow;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::model::{
    validate_principal, HostMatch, Operation, PatternType, Permission, ResourceType, Rule,
    CLUSTER_NAME,
};

#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write ACL file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    /// Position and kind only: the file's bytes never appear (the path may
    /// name the wrong file, e.g. a symlink to a private key).
    #[error("ACL file {path}: {error}")]
    Yaml {
        path: String,
        error: Box<crate::security::yaml_error::YamlError>,
    },
    #[error("ACL file {path}, line {line}: not UTF-8 text")]
    NotUtf8 { path: String, line: usize },
    #[error("ACL file {path} does not exist (set acl.allow_missing: true to run with no rules)")]
    Missing { path: String },
    #[error(
        "ACL file {path} is empty (a write in progress?); write `rules: []` to remove every rule"
    )]
    Empty { path: String },
    #[error("ACL file {path}, line {line}: {message}")]
    Rule {
        path: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    #[serde(default)]
    allow_everyone_if_no_acl_found: bool,
    #[serde(default)]
    rules: Option<Vec<Entry<'static>>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deny: Option<Cow<'a, str>>,
    operations: Vec<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_prefix: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group_prefix: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transactional_id: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transactional_id_prefix: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hosts: Option<Vec<Cow<'a, str>>>,
}

/// The parsed file: the rules and the one global switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFile {
    pub allow_everyone_if_no_acl_found: bool,
    pub rules: Vec<Rule>,
    /// Leading comment lines, kept when the file is rewritten.
    pub header: String,
}

fn entry_to_rules(e: Entry<'_>) -> Result<Vec<Rule>, String> {
    let (permission, principal) = match (e.allow, e.deny) {
        (Some(p), None) => (Permission::Allow, p),
        (None, Some(p)) => (Permission::Deny, p),
        (Some(_), Some(_)) => return Err("an entry is either `allow` or `deny`, not both".into()),
        (None, None) => return Err("an entry needs `allow: User:...` or `deny: User:...`".into()),
    };
    validate_principal(&principal).map_err(|e| e.0)?;
    let resources = [
        (e.topic, ResourceType::Topic, PatternType::Literal),
        (e.topic_prefix, ResourceType::Topic, PatternType::Prefixed),
        (e.group, ResourceType::Group, PatternType::Literal),
        (e.group_prefix, ResourceType::Group, PatternType::Prefixed),
        (
            e.transactional_id,
            ResourceType::TransactionalId,
            PatternType::Literal,
        ),
        (
            e.transactional_id_prefix,
            ResourceType::TransactionalId,
            PatternType::Prefixed,
        ),
        (e.cluster, ResourceType::Cluster, PatternType::Literal),
    ];
    let mut named: Vec<(Cow<'_, str>, ResourceType, PatternType)> = resources
        .into_iter()
        .filter_map(|(n, rt, pt)| n.map(|n| (n, rt, pt)))
        .collect();
    if named.len() != 1 {
        return Err("an entry names exactly one of topic, topic_prefix, group, group_prefix, transactional_id, transactional_id_prefix, cluster".into());
    }
    let (name, resource_type, pattern) = named.remove(0);
    if name.is_empty() {
        return Err("the resource name is empty".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err(format!("the cluster resource is called `{CLUSTER_NAME}`"));
    }
    if pattern == PatternType::Prefixed && name == "*" {
        return Err("a prefix of `*` is not allowed; use the literal name `*` for all".into());
    }
    if e.operations.is_empty() {
        return Err("`operations` must list at least one operation".into());
    }
    let ops = e
        .operations
        .iter()
        .map(|o| o.parse::<Operation>().map_err(|e| e.0))
        .collect::<Result<Vec<_>, _>>()?;
    let hosts = match e.hosts {
        None => vec![HostMatch::Any],
        Some(hs) => hs
            .iter()
            .map(|h| h.parse::<HostMatch>().map_err(|e| e.0))
            .collect::<Result<Vec<_>, _>>()?,
    };
    if hosts.is_empty() {
        return Err("`hosts` must not be empty (omit it for all hosts)".into());
    }
    let (mut principal, mut name) = (principal.into_owned(), name.into_owned());
    let total = ops.len() * hosts.len();
    let mut out = Vec::with_capacity(total);
    for &host in &hosts {
        for &operation in &ops {
            // The last rule takes the strings; the others copy them.
            let last = out.len() + 1 == total;
            out.push(Rule {
                principal: if last {
                    std::mem::take(&mut principal)
                } else {
                    principal.clone()
                },
                host,
                resource_type,
                pattern,
                name: if last {
                    std::mem::take(&mut name)
                } else {
                    name.clone()
                },
                operation,
                permission,
            });
        }
    }
    Ok(out)
}

/// Rule lines from this many on are converted on two threads.
const PARALLEL_FROM: usize = 20_000;

/// The rules of the one-rule-per-line form. `None` when a line is outside
/// that form (the YAML parser then decides for the whole file).
fn rules_of_lines(lines: &[(usize, &str)], path: &str) -> Option<Result<Vec<Rule>, AclFileError>> {
    let mut rules = Vec::with_capacity(lines.len());
    for (line, text) in lines {
        let kv = super::fast_parse::flow_entry(text)?;
        let mut e = Entry::default();
        for (k, mut v) in kv {
            let slot = match &*k {
                "operations" => {
                    e.operations = v;
                    continue;
                }
                "hosts" => {
                    e.hosts = Some(v);
                    continue;
                }
                "allow" => &mut e.allow,
                "deny" => &mut e.deny,
                "topic" => &mut e.topic,
                "topic_prefix" => &mut e.topic_prefix,
                "group" => &mut e.group,
                "group_prefix" => &mut e.group_prefix,
                "transactional_id" => &mut e.transactional_id,
                "transactional_id_prefix" => &mut e.transactional_id_prefix,
                "cluster" => &mut e.cluster,
                _ => return None,
            };
            if slot.is_some() || v.len() != 1 {
                return None;
            }
            *slot = v.pop();
        }
        match entry_to_rules(e) {
            Ok(r) => rules.extend(r),
            Err(message) => {
                return Some(Err(AclFileError::Rule {
                    path: path.to_string(),
                    line: *line,
                    message,
                }))
            }
        }
    }
    Some(Ok(rules))
}

impl AclFile {
    pub fn parse(text: &str, path: &str) -> Result<AclFile, AclFileError> {
        if let Some(f) = Self::parse_fast(text, path) {
            return f;
        }
        let model: FileModel = if text.trim().is_empty() {
            FileModel::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| AclFileError::Yaml {
                path: path.to_string(),
                error: Box::new(crate::security::yaml_error::YamlError::from_serde(&e)),
            })?
        };
        let lines = crate::security::yaml_error::rules_entry_lines(text);
        let mut rules = Vec::new();
        for (i, entry) in model.rules.unwrap_or_default().into_iter().enumerate() {
            let expanded = entry_to_rules(entry).map_err(|message| AclFileError::Rule {
                path: path.to_string(),
                line: lines.get(i).copied().unwrap_or(0),
                message,
            })?;
            rules.extend(expanded);
        }
        Ok(Self::assemble(
            text,
            rules,
            model.allow_everyone_if_no_acl_found,
        ))
    }

    /// The parsed file from its rules: duplicates dropped (they add
    /// nothing; the first is kept) and the leading comments kept for rewrites.
    fn assemble(text: &str, mut rules: Vec<Rule>, allow_everyone: bool) -> AclFile {
        let keep: Vec<bool> = {
            let mut seen: std::collections::HashSet<
                &Rule,
                std::hash::BuildHasherDefault<rustc_hash::FxHasher>,
            > = std::collections::HashSet::with_capacity_and_hasher(
                rules.len(),
                Default::default(),
            );
            rules.iter().map(|r| seen.insert(r)).collect()
        };
        let mut keep = keep.into_iter();
        rules.retain(|_| keep.next().unwrap_or(true));
        let header: String = text
            .lines()
            .take_while(|l| l.trim_start().starts_with('#') || l.trim().is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        AclFile {
            allow_everyone_if_no_acl_found: allow_everyone,
            rules,
            header,
        }
    }

    /// The line-per-rule form, without the YAML parser. `None` when the
    /// text is in any other form (the YAML parser then decides).
    fn parse_fast(text: &str, path: &str) -> Option<Result<AclFile, AclFileError>> {
        let fast = super::fast_parse::parse(text)?;
        let lines = &fast.lines;
        // Large files are converted in two halves on two threads: the
        // reload of a 100k-rule file is mostly this loop.
        let halves: Vec<Option<Result<Vec<Rule>, AclFileError>>> = if lines.len() >= PARALLEL_FROM {
            let (a, b) = lines.split_at(lines.len() / 2);
            std::thread::scope(|scope| {
                let second = scope.spawn(|| rules_of_lines(b, path));
                let first = rules_of_lines(a, path);
                let second = second
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p));
                vec![first, second]
            })
        } else {
            vec![rules_of_lines(lines, path)]
        };
        let mut rules = Vec::with_capacity(lines.len());
        for half in halves {
            match half? {
                Ok(r) => rules.extend(r),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(Self::assemble(text, rules, fast.allow_everyone)))
    }

    /// Parses the file's bytes; text that is not UTF-8 is refused with the
    /// line it stops being text, never shown.
    pub fn parse_bytes(bytes: &[u8], path: &str) -> Result<AclFile, AclFileError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => AclFile::parse(text, path),
            Err(e) => Err(AclFileError::NotUtf8 {
                path: path.to_string(),
                line: bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1,
            }),
        }
    }

    /// Reads the file; `Ok(None)` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<Vec<u8>>, AclFileError> {
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(AclFileError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Loads the file; a missing file is an error.
    pub fn load(path: &Path) -> Result<AclFile, AclFileError> {
        let name = path.display().to_string();
        match Self::read(path)? {
            Some(b) => AclFile::parse_bytes(&b, &name),
            None => Err(AclFileError::Missing { path: name }),
        }
    }

    /// Loads the file; a missing file is an empty rule set (the CLI's
    /// first `acl add` creates it).
    pub fn load_or_default(path: &Path) -> Result<AclFile, AclFileError> {
        match Self::load(path) {
            Err(AclFileError::Missing { .. }) => Ok(AclFile::default()),
            other => other,
        }
    }

    /// One line per rule, in flow style.
    pub fn render(&self) -> String {
        let mut out = if self.header.trim().is_empty() {
            "# Portcullis ACLs (see README: ACLs). One rule per line.\n".to_string()
        } else {
            self.header.clone()
        };
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!(
            "allow_everyone_if_no_acl_found: {}\nrules:\n",
            self.allow_everyone_if_no_acl_found
        ));
        for r in &self.rules {
            out.push_str(&format!("  - {}\n", render_rule(r)));
        }
        if self.rules.is_empty() {
            out.push_str("  []\n");
            out = out.replace("rules:\n  []\n", "rules: []\n");
        }
        out
    }

    pub fn save(&self, path: &Path) -> Result<(), AclFileError> {
        crate::util::atomic_file::write_atomic(path, self.render().as_bytes(), 0o644).map_err(
            |source| AclFileError::Write {
                path: path.display().to_string(),
                source,
            },
        )
    }
}

fn quote(s: &str) -> String {
    // JSON strings are valid YAML flow scalars and survive any character.
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

pub fn render_rule(r: &Rule) -> String {
    let key = match (r.resource_type, r.pattern) {
        (ResourceType::Topic, PatternType::Literal) => "topic",
        (ResourceType::Topic, PatternType::Prefixed) => "topic_prefix",
        (ResourceType::Group, PatternType::Literal) => "group",
        (ResourceType::Group, PatternType::Prefixed) => "group_prefix",
        (ResourceType::TransactionalId, PatternType::Literal) => "transactional_id",
        (ResourceType::TransactionalId, PatternType::Prefixed) => "transactional_id_prefix",
        (ResourceType::Cluster, _) => "cluster",
    };
    let mut s = format!(
        "{{{}: {}, operations: [{}], {key}: {}",
        r.permission,
        quote(&r.principal),
        r.operation,
        quote(&r.name)
    );
    if r.host != HostMatch::Any {
        s.push_str(&format!(", hosts: [{}]", quote(&r.host.to_string())));
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_files_parse_the_same_on_two_threads() {
        let n = PARALLEL_FROM + 5_000;
        let mut text = String::from("rules:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - {{allow: \"User:u{}\", operations: [read], topic: \"t-{i}\"}}\n",
                i % 100
            ));
        }
        let f = AclFile::parse(&text, "big").unwrap();
        assert_eq!(f.rules.len(), n);
        assert_eq!(f.rules[n - 1].name, format!("t-{}", n - 1), "order kept");
        // A bad rule in the second half is reported with its own line.
        let bad_line = n - 10 + 2; // header line plus 1-based numbering
        let broken = text.replacen(
            &format!("topic: \"t-{}\"", n - 10),
            &format!("topic: \"t-{}\", cluster: kafka-cluster", n - 10),
            1,
        );
        match AclFile::parse(&broken, "big") {
            Err(AclFileError::Rule { line, .. }) => assert_eq!(line, bad_line),
            other => panic!("expected a rule error, got {other:?}"),
        }
        // A second-half line outside the one-line form sends the whole file
        // to the YAML parser, which reads the same rules.
        let mixed = text.replacen(
            &format!(
                "  - {{allow: \"User:u{}\", operations: [read], topic: \"t-{}\"}}\n",
                (n - 3) % 100,
                n - 3
            ),
            &format!(
                "  - allow: \"User:u{}\"\n    operations: [read]\n    topic: \"t-{}\"\n",
                (n - 3) % 100,
                n - 3
            ),
            1,
        );
        assert!(crate::acl::fast_parse::parse(&mixed).is_some_and(|f| {
            f.lines
                .iter()
                .any(|(_, l)| crate::acl::fast_parse::flow_entry(l).is_none())
        }));
        assert_eq!(AclFile::parse(&mixed, "big").unwrap().rules, f.rules);
    }

    #[test]
    fn parse_render_round_trip() {
        let text = "# my acls\n# second line\nallow_everyone_if_no_acl_found: false\nrules:\n  - allow: User:alice\n    operations: [write, describe]\n    topic: orders\n  - {deny: \"User:*\", operations: [all], topic_prefix: secret., hosts: [\"10.0.0.0/8\", 127.0.0.1]}\n  - {allow: User:bob, operations: [read], group: billing}\n  - {allow: User:ops, operations: [alter_configs], cluster: kafka-cluster}\n";
        let f = AclFile::parse(text, "t").unwrap();
        assert_eq!(f.rules.len(), 6);
        assert!(f.header.contains("second line"));
        let again = AclFile::parse(&f.render(), "t").unwrap();
        assert_eq!(again.rules, f.rules);
        assert_eq!(again.render(), f.render());
        assert_eq!(
            f.render()
                .lines()
                .filter(|l| l.starts_with("  - {"))
                .count(),
            6
        );
    }

    #[test]
    fn fast_path_agrees_with_yaml() {
        let text = "# h\nallow_everyone_if_no_acl_found: true\nrules:\n  - {allow: \"User:a\", operations: [read, write], topic: \"t,1\"}\n  - {deny: User:b, operations: [all], group_prefix: g., hosts: [\"10.0.0.0/8\", 127.0.0.1]}\n";
        let fast = AclFile::parse(text, "x").unwrap();
        let model: FileModel = serde_yaml_ng::from_str(text).unwrap();
        let slow: Vec<Rule> = model
            .rules
            .unwrap()
            .into_iter()
            .flat_map(|e| entry_to_rules(e).unwrap())
            .collect();
        assert_eq!(fast.rules, slow);
        assert!(fast.allow_everyone_if_no_acl_found);
        assert!(
            super::super::fast_parse::parse(text).is_some(),
            "took the fast path"
        );
        let e = AclFile::parse("rules:\n  - {allow: User:a, operations: [read], topic: t}\n  - {allow: User:a, operations: [raed], topic: t}\n", "x").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("raed"), "{e}");
        // Unknown keys fall back to the YAML parser: the line and the keys
        // the format has, never the file's own text.
        let e = AclFile::parse(
            "rules:\n  - {allow: User:a, operations: [read], topik: t}\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 2") && e.contains("unknown key"), "{e}");
        assert!(
            e.contains("`topic_prefix`") && e.contains("`rules[0].topik`"),
            "{e}"
        );
    }

    #[test]
    fn a_refused_file_is_never_echoed() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQSECRETMARKERgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
        let e = AclFile::parse(key, "acls.yaml").unwrap_err().to_string();
        assert!(!e.contains("SECRETMARKER") && !e.contains("BEGIN"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let e = AclFile::parse_bytes(b"rules: []\n\xff\xfeSECRETMARKER\n", "acls.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && !e.contains("SECRETMARKER"), "{e}");
    }

    #[test]
    fn errors_name_the_line() {
        let text = "rules:\n  - {allow: User:a, operations: [read], topic: t}\n  - {allow: User:a, operations: [reed], topic: t}\n";
        let e = AclFile::parse(text, "acls.yaml").unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("reed"), "{e}");
        let text =
            "rules:\n  - allow: User:a\n    operations: [read]\n    topic: t\n    group: g\n";
        let e = AclFile::parse(text, "acls.yaml").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("exactly one"), "{e}");
        let e = AclFile::parse(
            "rules:\n  - {allow: alice, operations: [read], topic: t}\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("User:alice"), "{e}");
        let e = AclFile::parse("rules: [\n", "x").unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
        let e = AclFile::parse("rulez: []\n", "x").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("unknown key"), "{e}");
        assert!(e.contains("`rulez`"), "{e}");
        let e = AclFile::parse(
            "rules:\n  - {allow: User:a, operations: [read], cluster: c}\n",
            "x",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kafka-cluster"), "{e}");
    }
}
