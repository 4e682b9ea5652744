//! The compiled policy set and its evaluation.
//!
//! A request is checked against the rules of its kind only (creation,
//! config change, partition count, produce, consume), found through an
//! index: literal principals and topics in hash maps, prefixes by the
//! lengths that occur (one hash lookup per distinct prefix length, not one
//! comparison per rule), regular-expression topic scopes last. Evaluation
//! allocates nothing unless a rule is violated, so traffic no rule applies
//! to pays a few hash lookups with 1,000 rules loaded.

use std::sync::Arc;

use regex::Regex;
use rustc_hash::FxHashMap;

use super::model::{Action, Codec, RuleModel};
use super::produce::{ProduceFacts, ProduceNeeds};

/// Audit-action violations kept per decision: the first ones in file
/// order; more are dropped (the request is still allowed either way).
pub const MAX_AUDITED: usize = 16;

/// A partition count the client left to a default the edge does not know
/// (gateway mode): refused where a rule bounds it, as Kafka checks its
/// policies after applying its defaults.
pub const UNKNOWN_PARTITIONS: i32 = i32::MIN;
/// The same for the replication factor.
pub const UNKNOWN_REPLICATION: i16 = i16::MIN;

/// One violated rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule's name.
    pub rule: String,
    /// For people: names the rule and what was violated
    /// ("policy topic-naming: topic name orders does not match ^...$").
    pub message: String,
    pub action: Action,
}

/// What the policies say about one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// The first `block` rule violated (in file order): refuse with it.
    pub blocked: Option<Violation>,
    /// `audit` rules violated (in file order, at most [`MAX_AUDITED`]):
    /// allow, and record them.
    pub audited: Vec<Violation>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.blocked.is_none()
    }

    /// No rule was violated at all.
    pub fn is_clean(&self) -> bool {
        self.blocked.is_none() && self.audited.is_empty()
    }
}

/// Who a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalScope {
    Everyone,
    Exact(Box<str>),
    /// `User:team-*`: principals starting with `User:team-`.
    Prefix(Box<str>),
}

/// Which topics a rule covers.
#[derive(Debug, Clone)]
pub enum TopicScope {
    Any,
    Name(Box<str>),
    Prefix(Box<str>),
    Pattern(Regex),
}

impl TopicScope {
    fn matches(&self, topic: &str) -> bool {
        match self {
            TopicScope::Any => true,
            TopicScope::Name(n) => &**n == topic,
            TopicScope::Prefix(p) => topic.starts_with(&**p),
            TopicScope::Pattern(r) => r.is_match(topic),
        }
    }
}

/// Inclusive bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl Range {
    fn contains(&self, v: i64) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    fn describe(&self) -> String {
        match (self.min, self.max) {
            (Some(a), Some(b)) => format!("between {a} and {b}"),
            (Some(a), None) => format!("at least {a}"),
            (None, Some(b)) => format!("at most {b}"),
            (None, None) => "anything".into(),
        }
    }
}

/// Bounds on one config's value.
#[derive(Debug, Clone)]
pub enum ValueBound {
    Numeric(Range),
    /// Every comma-separated item must be one of these.
    OneOf(Vec<Box<str>>),
}

#[derive(Debug, Clone, Default)]
pub struct ConfigCheck {
    /// When set, only these keys may be set.
    pub allowed: Option<Vec<Box<str>>>,
    pub bounds: Vec<(Box<str>, ValueBound)>,
}

#[derive(Debug, Clone, Default)]
pub struct CreateCheck {
    pub name_pattern: Option<Regex>,
    pub partitions: Option<Range>,
    pub replication_factor: Option<Range>,
}

#[derive(Debug, Clone, Default)]
pub struct ProduceCheck {
    /// Bits: 0 for acks=0, 1 for acks=1, 2 for acks=all; `None`: any.
    pub acks: Option<u8>,
    pub idempotence_required: bool,
    pub transactions_required: bool,
    /// Bit per codec id; `None`: any.
    pub codecs: Option<u8>,
    pub max_record_bytes: Option<u64>,
    /// Bits into the set's header keys ([`PolicySet::header_keys`]).
    pub header_mask: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ConsumeCheck {
    pub group_id_pattern: Option<Regex>,
    pub client_id_required: bool,
    pub client_id_pattern: Option<Regex>,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub action: Action,
    /// Where it starts in the file.
    pub line: usize,
    /// As written (for listing).
    pub model: RuleModel,
    pub principals: Vec<PrincipalScope>,
    pub topics: TopicScope,
    pub create: Option<CreateCheck>,
    /// `create_topic.configs`: bounds on creation and on changes.
    pub configs: Option<ConfigCheck>,
    /// `alter_configs`: bounds on changes only.
    pub alter_configs: Option<ConfigCheck>,
    /// `create_partitions`, else `create_topic.partitions`.
    pub create_partitions: Option<Range>,
    pub produce: Option<ProduceCheck>,
    pub consume: Option<ConsumeCheck>,
}

pub(crate) fn acks_bit(acks: i16) -> u8 {
    match acks {
        0 => 1,
        1 => 2,
        -1 => 4,
        _ => 0,
    }
}

/// Rules by topic scope.
#[derive(Debug, Default)]
struct TopicIndex {
    any: Vec<u32>,
    names: FxHashMap<Box<str>, Vec<u32>>,
    prefixes: FxHashMap<Box<str>, Vec<u32>>,
    /// The distinct prefix lengths, ascending.
    prefix_lens: Vec<usize>,
    patterns: Vec<u32>,
}

impl TopicIndex {
    fn add(&mut self, scope: &TopicScope, i: u32) {
        match scope {
            TopicScope::Any => self.any.push(i),
            TopicScope::Name(n) => self.names.entry(n.clone()).or_default().push(i),
            TopicScope::Prefix(p) => {
                self.prefixes.entry(p.clone()).or_default().push(i);
                if let Err(at) = self.prefix_lens.binary_search(&p.len()) {
                    self.prefix_lens.insert(at, p.len());
                }
            }
            TopicScope::Pattern(_) => self.patterns.push(i),
        }
    }

    /// Calls `f` with every rule whose topic scope covers `topic` (`None`:
    /// requests without a topic, which only unscoped rules cover).
    fn visit(&self, rules: &[Rule], topic: Option<&str>, f: &mut impl FnMut(u32)) {
        self.any.iter().for_each(|&i| f(i));
        let Some(topic) = topic else { return };
        if let Some(v) = self.names.get(topic) {
            v.iter().for_each(|&i| f(i));
        }
        for &len in &self.prefix_lens {
            if len > topic.len() {
                break;
            }
            if let Some(v) = topic.get(..len).and_then(|p| self.prefixes.get(p)) {
                v.iter().for_each(|&i| f(i));
            }
        }
        for &i in &self.patterns {
            if rules[i as usize].topics.matches(topic) {
                f(i);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.any.is_empty()
            && self.names.is_empty()
            && self.prefixes.is_empty()
            && self.patterns.is_empty()
    }
}

/// Rules of one kind, by principal scope, then topic scope.
#[derive(Debug, Default)]
struct KindIndex {
    everyone: TopicIndex,
    exact: FxHashMap<Box<str>, TopicIndex>,
    prefixes: FxHashMap<Box<str>, TopicIndex>,
    prefix_lens: Vec<usize>,
    count: usize,
}

impl KindIndex {
    fn add(&mut self, rule: &Rule, i: u32) {
        self.count += 1;
        // A rule for everyone is filed once, whatever else it names.
        if rule.principals.contains(&PrincipalScope::Everyone) {
            self.everyone.add(&rule.topics, i);
            return;
        }
        for p in &rule.principals {
            match p {
                PrincipalScope::Everyone => {}
                PrincipalScope::Exact(n) => self
                    .exact
                    .entry(n.clone())
                    .or_default()
                    .add(&rule.topics, i),
                PrincipalScope::Prefix(n) => {
                    self.prefixes
                        .entry(n.clone())
                        .or_default()
                        .add(&rule.topics, i);
                    if let Err(at) = self.prefix_lens.binary_search(&n.len()) {
                        self.prefix_lens.insert(at, n.len());
                    }
                }
            }
        }
    }

    /// Calls `f` with every rule covering the principal and topic; a rule
    /// naming several matching principals may come more than once.
    fn visit(&self, rules: &[Rule], principal: &str, topic: Option<&str>, mut f: impl FnMut(u32)) {
        if self.count == 0 {
            return;
        }
        if !self.everyone.is_empty() {
            self.everyone.visit(rules, topic, &mut f);
        }
        if let Some(t) = self.exact.get(principal) {
            t.visit(rules, topic, &mut f);
        }
        for &len in &self.prefix_lens {
            if len > principal.len() {
                break;
            }
            if let Some(t) = principal.get(..len).and_then(|p| self.prefixes.get(p)) {
                t.visit(rules, topic, &mut f);
            }
        }
    }
}

/// Gathers violations while rules are visited in index order, keeping file
/// order in the result: the block with the lowest rule index wins.
struct Collector<'a> {
    rules: &'a [Rule],
    block: Option<(u32, String)>,
    audits: Vec<(u32, String)>,
}

impl<'a> Collector<'a> {
    fn new(rules: &'a [Rule]) -> Self {
        Collector {
            rules,
            block: None,
            audits: Vec::new(),
        }
    }

    /// Whether rule `i` could still change the decision.
    fn wants(&self, i: u32) -> bool {
        match self.rules[i as usize].action {
            Action::Block => self.block.as_ref().is_none_or(|(b, _)| i < *b),
            Action::Audit => {
                !self.audits.iter().any(|(a, _)| *a == i)
                    && (self.audits.len() < MAX_AUDITED || self.audits.iter().any(|(a, _)| *a > i))
            }
        }
    }

    /// Checks rule `i` with `check`, which says what it violates, if anything.
    fn check(&mut self, i: u32, check: impl FnOnce(&'a Rule) -> Option<String>) {
        if !self.wants(i) {
            return;
        }
        let rule = &self.rules[i as usize];
        if let Some(what) = check(rule) {
            let message = format!("policy {}: {what}", rule.name);
            match rule.action {
                Action::Block => self.block = Some((i, message)),
                Action::Audit => {
                    // Full: the rule latest in the file makes room, so
                    // the ones kept are the first violated in file order.
                    if self.audits.len() >= MAX_AUDITED {
                        if let Some(last) = (0..self.audits.len()).max_by_key(|&k| self.audits[k].0)
                        {
                            self.audits.swap_remove(last);
                        }
                    }
                    self.audits.push((i, message))
                }
            }
        }
    }

    fn finish(mut self) -> Decision {
        let rules = self.rules;
        let violation = |(i, message): (u32, String)| {
            let r = &rules[i as usize];
            Violation {
                rule: r.name.clone(),
                message,
                action: r.action,
            }
        };
        self.audits.sort_by_key(|(i, _)| *i);
        Decision {
            blocked: self.block.map(violation),
            audited: self.audits.into_iter().map(violation).collect(),
        }
    }
}

/// Client-supplied text in messages, cut short (a topic name is at most
/// 249 bytes; a config value has no bound).
fn shown(s: &str) -> &str {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s;
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_configs(check: &ConfigCheck, configs: &[(&str, Option<&str>)]) -> Option<String> {
    for &(key, value) in configs {
        // A deletion reverts to the default, which this layer cannot see
        // (and removing a key set before the policy must stay possible).
        let Some(value) = value else { continue };
        if let Some(allowed) = &check.allowed {
            if !allowed.iter().any(|a| &**a == key) {
                return Some(format!(
                    "config {} is not allowed (allowed: {})",
                    shown(key),
                    allowed.join(", ")
                ));
            }
        }
        let Some((_, bound)) = check.bounds.iter().find(|(k, _)| &**k == key) else {
            continue;
        };
        match bound {
            ValueBound::Numeric(range) => match value.trim().parse::<i64>() {
                Ok(v) if range.contains(v) => {}
                Ok(v) => {
                    return Some(format!(
                        "config {key}={v} is outside the bounds: must be {}",
                        range.describe()
                    ))
                }
                Err(_) => {
                    return Some(format!(
                        "config {key}={} is not a whole number",
                        shown(value)
                    ))
                }
            },
            ValueBound::OneOf(values) => {
                for item in value.split(',').map(str::trim) {
                    if !values.iter().any(|v| &**v == item) {
                        return Some(format!(
                            "config {key}={} is not allowed: each value must be one of {}",
                            shown(value),
                            values.join(", ")
                        ));
                    }
                }
            }
        }
    }
    None
}

/// The compiled rules of one version of the file.
#[derive(Debug, Default)]
pub struct PolicySet {
    rules: Vec<Rule>,
    create: KindIndex,
    alter: KindIndex,
    partitions: KindIndex,
    produce: KindIndex,
    consume: KindIndex,
    /// Every header key some rule requires (at most 64: a bit each).
    header_keys: Arc<[Box<str>]>,
}

impl PolicySet {
    /// Indexes `rules` (validated by [`super::file`]); `header_keys` are
    /// the keys their `header_mask` bits stand for.
    pub fn new(rules: Vec<Rule>, header_keys: Vec<Box<str>>) -> PolicySet {
        let mut set = PolicySet {
            header_keys: header_keys.into(),
            ..PolicySet::default()
        };
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            if r.create.is_some() || r.configs.is_some() {
                set.create.add(r, i);
            }
            if r.configs.is_some() || r.alter_configs.is_some() {
                set.alter.add(r, i);
            }
            if r.create_partitions.is_some() {
                set.partitions.add(r, i);
            }
            if r.produce.is_some() {
                set.produce.add(r, i);
            }
            if r.consume.is_some() {
                set.consume.add(r, i);
            }
        }
        set.rules = rules;
        set
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The header keys rules require, in the order of their mask bits.
    pub fn header_keys(&self) -> &[Box<str>] {
        &self.header_keys
    }

    /// CreateTopics, one topic. `partitions` and `replication_factor` of
    /// -1 (the broker's default) are not checked: pass the broker's default
    /// instead when it is known.
    pub fn create_topic(
        &self,
        principal: &str,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, Option<&str>)],
    ) -> Decision {
        let mut c = Collector::new(&self.rules);
        self.create.visit(&self.rules, principal, Some(name), |i| {
            c.check(i, |r| {
                if let Some(cc) = &r.create {
                    if let Some(re) = &cc.name_pattern {
                        if !re.is_match(name) {
                            return Some(format!(
                                "topic name {} does not match {}",
                                shown(name),
                                re.as_str()
                            ));
                        }
                    }
                    if let Some(range) = &cc.partitions {
                        if partitions == UNKNOWN_PARTITIONS {
                            return Some(format!(
                                "the partition count is not given and the default is not known here: give it ({})",
                                range.describe()
                            ));
                        }
                        if partitions >= 0 && !range.contains(partitions.into()) {
                            return Some(format!(
                                "{partitions} partitions: must be {}",
                                range.describe()
                            ));
                        }
                    }
                    if let Some(range) = &cc.replication_factor {
                        if replication_factor == UNKNOWN_REPLICATION {
                            return Some(format!(
                                "the replication factor is not given and the default is not known here: give it ({})",
                                range.describe()
                            ));
                        }
                        if replication_factor >= 0 && !range.contains(replication_factor.into()) {
                            return Some(format!(
                                "replication factor {replication_factor}: must be {}",
                                range.describe()
                            ));
                        }
                    }
                }
                r.configs.as_ref().and_then(|cc| check_configs(cc, configs))
            })
        });
        c.finish()
    }

    /// IncrementalAlterConfigs / AlterConfigs on one topic. A change of
    /// `None` deletes the key (back to the broker's default) and is allowed.
    pub fn alter_topic_configs(
        &self,
        principal: &str,
        topic: &str,
        changes: &[(&str, Option<&str>)],
    ) -> Decision {
        let mut c = Collector::new(&self.rules);
        self.alter.visit(&self.rules, principal, Some(topic), |i| {
            c.check(i, |r| {
                r.configs
                    .as_ref()
                    .and_then(|cc| check_configs(cc, changes))
                    .or_else(|| {
                        r.alter_configs
                            .as_ref()
                            .and_then(|cc| check_configs(cc, changes))
                    })
            })
        });
        c.finish()
    }

    /// CreatePartitions: `new_total` is the partition count asked for.
    pub fn create_partitions(&self, principal: &str, topic: &str, new_total: i32) -> Decision {
        let mut c = Collector::new(&self.rules);
        self.partitions
            .visit(&self.rules, principal, Some(topic), |i| {
                c.check(i, |r| {
                    let range = r.create_partitions.as_ref()?;
                    (!range.contains(new_total.into())).then(|| {
                        format!(
                            "{new_total} partitions in total: must be {}",
                            range.describe()
                        )
                    })
                })
            });
        c.finish()
    }

    /// Whether any produce rule covers `principal` writing to `topic`, and
    /// which facts it needs ([`ProduceFacts::from_records`]). Allocates
    /// nothing.
    pub fn produce_needs(&self, principal: &str, topic: &str) -> ProduceNeeds {
        let mut needs = ProduceNeeds::default();
        self.produce
            .visit(&self.rules, principal, Some(topic), |i| {
                let Some(p) = &self.rules[i as usize].produce else {
                    return;
                };
                needs.applies = true;
                needs.batches |=
                    p.idempotence_required || p.transactions_required || p.codecs.is_some();
                needs.record_sizes |= p.max_record_bytes.is_some();
                needs.header_mask |= p.header_mask;
            });
        if needs.header_mask != 0 {
            needs.header_keys = Some(self.header_keys.clone());
        }
        needs
    }

    /// Produce to one topic: `acks` of the request, its transactional id,
    /// and the facts read from its records for this topic's partitions
    /// (merged with [`ProduceFacts::merge`]).
    pub fn produce(
        &self,
        principal: &str,
        topic: &str,
        acks: i16,
        transactional_id: Option<&str>,
        facts: &ProduceFacts,
    ) -> Decision {
        let mut c = Collector::new(&self.rules);
        let header_keys = &self.header_keys;
        self.produce.visit(&self.rules, principal, Some(topic), |i| {
            c.check(i, |r| {
                let p = r.produce.as_ref()?;
                if let Some(allowed) = p.acks {
                    if allowed & acks_bit(acks) == 0 {
                        return Some(format!(
                            "acks={} is not allowed (allowed: {})",
                            super::model::Acks(acks).name(),
                            acks_names(allowed)
                        ));
                    }
                }
                let transactional = transactional_id.is_some() && !facts.non_transactional;
                if p.transactions_required && !transactional {
                    return Some("the producer is not transactional (transactions required)".into());
                }
                if p.idempotence_required && facts.non_idempotent {
                    return Some(
                        "the producer is not idempotent (idempotence required: enable.idempotence=true)"
                            .into(),
                    );
                }
                if let Some(allowed) = p.codecs {
                    let bad = facts.codecs & !allowed;
                    if bad != 0 {
                        let codec = (0..8)
                            .find(|b| bad & (1 << b) != 0)
                            .and_then(|b| Codec::from_id(b as i16))
                            .map_or("unknown", Codec::name);
                        return Some(format!(
                            "compression {codec} is not allowed (allowed: {})",
                            codec_names(allowed)
                        ));
                    }
                }
                if let Some(max) = p.max_record_bytes {
                    if facts.max_value_bytes > max {
                        return Some(format!(
                            "a record value of {} bytes exceeds the maximum of {max}",
                            facts.max_value_bytes
                        ));
                    }
                }
                let missing = p.header_mask & facts.missing_headers;
                if missing != 0 {
                    let key = header_keys
                        .get(missing.trailing_zeros() as usize)
                        .map_or("?", |k| &**k);
                    return Some(format!("a record lacks the required header {key}"));
                }
                None
            })
        });
        c.finish()
    }

    /// A consumer naming a group (JoinGroup, OffsetCommit, ...) and/or
    /// itself (its client id).
    pub fn consume(
        &self,
        principal: &str,
        group_id: Option<&str>,
        client_id: Option<&str>,
    ) -> Decision {
        let mut c = Collector::new(&self.rules);
        let client_id = client_id.filter(|c| !c.is_empty());
        self.consume.visit(&self.rules, principal, None, |i| {
            c.check(i, |r| {
                let k = r.consume.as_ref()?;
                if let (Some(re), Some(g)) = (&k.group_id_pattern, group_id) {
                    if !re.is_match(g) {
                        return Some(format!(
                            "group id {} does not match {}",
                            shown(g),
                            re.as_str()
                        ));
                    }
                }
                if k.client_id_required && client_id.is_none() {
                    return Some("a client id is required (set client.id)".into());
                }
                if let (Some(re), Some(id)) = (&k.client_id_pattern, client_id) {
                    if !re.is_match(id) {
                        return Some(format!(
                            "client id {} does not match {}",
                            shown(id),
                            re.as_str()
                        ));
                    }
                }
                None
            })
        });
        c.finish()
    }
}

fn acks_names(mask: u8) -> String {
    [(4, "all"), (2, "1"), (1, "0")]
        .iter()
        .filter(|(b, _)| mask & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn codec_names(mask: u8) -> String {
    (0..5i16)
        .filter(|b| mask & (1 << b) != 0)
        .filter_map(Codec::from_id)
        .map(Codec::name)
        .collect::<Vec<_>>()
        .join(", ")
}
