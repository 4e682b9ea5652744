//! The rule set as an index, and Kafka's StandardAuthorizer decision order:
//! super user -> any matching DENY -> any matching ALLOW -> default deny
//! (or allow when no rule names the resource and
//! `allow_everyone_if_no_acl_found` is on).
//!
//! Lookups never scan the whole set: literal names hash, the `*` wildcard is
//! one list, and prefixed rules are found by looking up the resource name's
//! prefixes at the handful of lengths that prefixed rules actually have.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasherDefault;
use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHasher;

use super::model::{HostMatch, Operation, PatternType, Permission, ResourceType, Rule, WILDCARD};

/// Resource and principal names are short and not attacker-chosen keys
/// of a long-lived table an attacker could flood: a fast hash is fine.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Principal id of `User:*`; other principals are numbered from 1.
const ANY_PRINCIPAL: u32 = 0;
/// Principal id of a principal that no rule names.
const UNNAMED_PRINCIPAL: u32 = u32::MAX;

/// A rule as the hot path needs it, stored in the index itself so a
/// decision reads contiguous memory and touches the full rule only for
/// host checks.
#[derive(Clone, Copy)]
struct Entry {
    principal: u32,
    rule: u32,
    /// Operations this rule decides (bit = wire code): what an ALLOW
    /// grants including implied ones, or what a DENY covers.
    ops: u16,
    deny: bool,
    any_host: bool,
}

fn op_bit(op: Operation) -> u16 {
    1 << op.code()
}

impl Entry {
    fn new(id: u32, principal: u32, r: &Rule) -> Entry {
        let deny = r.permission == Permission::Deny;
        let ops = Operation::ALL
            .iter()
            .filter(|w| {
                if deny {
                    r.operation.deny_covers(**w)
                } else {
                    r.operation.allow_grants(**w)
                }
            })
            .fold(0u16, |m, w| m | op_bit(*w));
        Entry {
            principal,
            rule: id,
            ops,
            deny,
            any_host: r.host == HostMatch::Any,
        }
    }
}

#[derive(Default)]
struct TypeIndex {
    literal: FastMap<Box<str>, Vec<Entry>>,
    wildcard: Vec<Entry>,
    prefixed: FastMap<Box<str>, Vec<Entry>>,
    /// Distinct lengths of prefixed names, ascending.
    prefix_lengths: Vec<usize>,
}

/// An immutable, indexed rule set. Swapped whole on reload.
pub struct AclSet {
    rules: Vec<Rule>,
    by_type: [TypeIndex; 4],
    principals: FastMap<Box<str>, u32>,
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

fn slot(rt: ResourceType) -> usize {
    match rt {
        ResourceType::Topic => 0,
        ResourceType::Group => 1,
        ResourceType::Cluster => 2,
        ResourceType::TransactionalId => 3,
    }
}

/// Why a decision went the way it did (for `acl check` and the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    SuperUser,
    DeniedBy(Rule),
    AllowedBy(Rule),
    /// No rule names the resource and `allow_everyone_if_no_acl_found` is on.
    NoAclFound,
    DefaultDeny,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SuperUser => f.write_str("super user"),
            Reason::DeniedBy(r) => write!(f, "rule: {r}"),
            Reason::AllowedBy(r) => write!(f, "rule: {r}"),
            Reason::NoAclFound => {
                f.write_str("no ACL for the resource (allow_everyone_if_no_acl_found)")
            }
            Reason::DefaultDeny => f.write_str("default deny (no matching allow rule)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: Reason,
}

impl AclSet {
    pub fn new(rules: Vec<Rule>, super_users: Vec<String>, allow_everyone: bool) -> AclSet {
        let mut by_type: [TypeIndex; 4] = Default::default();
        let mut principals: FastMap<Box<str>, u32> = FastMap::default();
        principals.insert("User:*".into(), ANY_PRINCIPAL);
        for (i, r) in rules.iter().enumerate() {
            let pid = match principals.get(r.principal.as_str()) {
                Some(id) => *id,
                None => {
                    let id = principals.len() as u32;
                    principals.insert(r.principal.as_str().into(), id);
                    id
                }
            };
            let e = Entry::new(i as u32, pid, r);
            let ix = &mut by_type[slot(r.resource_type)];
            match r.pattern {
                PatternType::Literal if r.name == WILDCARD => ix.wildcard.push(e),
                PatternType::Literal => ix
                    .literal
                    .entry(r.name.as_str().into())
                    .or_default()
                    .push(e),
                PatternType::Prefixed => ix
                    .prefixed
                    .entry(r.name.as_str().into())
                    .or_default()
                    .push(e),
            }
        }
        for ix in &mut by_type {
            let mut lens: Vec<usize> = ix.prefixed.keys().map(|k| k.len()).collect();
            lens.sort_unstable();
            lens.dedup();
            ix.prefix_lengths = lens;
        }
        AclSet {
            rules,
            by_type,
            principals,
            super_users,
            allow_everyone_if_no_acl_found: allow_everyone,
        }
    }

    pub fn empty() -> AclSet {
        AclSet::new(Vec::new(), Vec::new(), false)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Calls `f` with every index entry whose resource pattern matches;
    /// stops early when `f` returns true.
    fn for_each_candidate(&self, rt: ResourceType, name: &str, mut f: impl FnMut(&Entry) -> bool) {
        let ix = &self.by_type[slot(rt)];
        let lists = [ix.literal.get(name), Some(&ix.wildcard)];
        for list in lists.into_iter().flatten() {
            for e in list {
                if f(e) {
                    return;
                }
            }
        }
        for &len in &ix.prefix_lengths {
            if len > name.len() {
                break;
            }
            let Some(prefix) = name.get(..len) else {
                continue;
            };
            if let Some(list) = ix.prefixed.get(prefix) {
                for e in list {
                    if f(e) {
                        return;
                    }
                }
            }
        }
    }

    fn principal_id(&self, principal: &str) -> u32 {
        self.principals
            .get(principal)
            .copied()
            .unwrap_or(UNNAMED_PRINCIPAL)
    }

    /// Does the entry's rule apply to this principal and host?
    fn applies(&self, e: &Entry, pid: u32, host: IpAddr) -> bool {
        (e.principal == pid || e.principal == ANY_PRINCIPAL)
            && (e.any_host || self.rules[e.rule as usize].host.matches(host))
    }

    /// Does any allow rule grant `op` on some resource of type `rt` (and no
    /// deny of `op` on every such resource)? Kafka's authorizeByResourceType,
    /// used by InitProducerId. Scans the rules of one type: not a hot path.
    pub fn any_allow(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let who = |r: &Rule| {
            (r.principal == principal || r.principal == "User:*") && r.host.matches(host)
        };
        let denied_everywhere = self.rules.iter().any(|r| {
            r.resource_type == rt
                && r.permission == Permission::Deny
                && r.pattern == PatternType::Literal
                && r.name == WILDCARD
                && r.operation.deny_covers(op)
                && who(r)
        });
        !denied_everywhere
            && self.rules.iter().any(|r| {
                r.resource_type == rt
                    && r.permission == Permission::Allow
                    && r.operation.allow_grants(op)
                    && who(r)
            })
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|s| s == principal)
    }

    pub fn authorize(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> Decision {
        if self.is_super_user(principal) {
            return Decision {
                allowed: true,
                reason: Reason::SuperUser,
            };
        }
        let pid = self.principal_id(principal);
        let bit = op_bit(op);
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        let mut any_rule = false;
        self.for_each_candidate(rt, name, |e| {
            any_rule = true;
            if e.ops & bit == 0 || !self.applies(e, pid, host) {
                return false;
            }
            let r = &self.rules[e.rule as usize];
            if e.deny {
                deny = Some(r);
                return true;
            }
            if allow.is_none() {
                allow = Some(r);
            }
            false
        });
        if let Some(r) = deny {
            return Decision {
                allowed: false,
                reason: Reason::DeniedBy(r.clone()),
            };
        }
        if let Some(r) = allow {
            return Decision {
                allowed: true,
                reason: Reason::AllowedBy(r.clone()),
            };
        }
        if !any_rule && self.allow_everyone_if_no_acl_found {
            return Decision {
                allowed: true,
                reason: Reason::NoAclFound,
            };
        }
        Decision {
            allowed: false,
            reason: Reason::DefaultDeny,
        }
    }

    /// Fast boolean form for the request path: no rule is cloned.
    pub fn allowed(
        &self,
        principal: &str,
        host: IpAddr,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let pid = self.principal_id(principal);
        let bit = op_bit(op);
        let (mut denied, mut allowed, mut any) = (false, false, false);
        self.for_each_candidate(rt, name, |e| {
            any = true;
            if e.ops & bit != 0 && self.applies(e, pid, host) {
                if e.deny {
                    denied = true;
                } else {
                    allowed = true;
                }
            }
            denied
        });
        !denied && (allowed || (!any && self.allow_everyone_if_no_acl_found))
    }
}

/// Shared handle: readers load the current set without locking.
pub type SharedAcls = Arc<arc_swap::ArcSwap<AclSet>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::model::HostMatch;

    fn rule(
        p: &str,
        perm: Permission,
        op: Operation,
        rt: ResourceType,
        pat: PatternType,
        name: &str,
        host: &str,
    ) -> Rule {
        Rule {
            principal: p.into(),
            host: host.parse::<HostMatch>().unwrap(),
            resource_type: rt,
            pattern: pat,
            name: name.into(),
            operation: op,
            permission: perm,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn kafka_decision_order() {
        use Operation::*;
        use PatternType::*;
        use Permission::*;
        use ResourceType::*;
        let set = AclSet::new(
            vec![
                rule("User:alice", Allow, Write, Topic, Literal, "orders", "*"),
                rule("User:bob", Allow, Read, Topic, Prefixed, "orders", "*"),
                rule("User:bob", Deny, Read, Topic, Literal, "orders-secret", "*"),
                rule("User:*", Allow, Describe, Topic, Literal, "*", "10.0.0.0/8"),
                rule(
                    "User:carol",
                    Allow,
                    All,
                    Group,
                    Literal,
                    "billing",
                    "127.0.0.1",
                ),
            ],
            vec!["User:admin".into()],
            false,
        );
        let any = ip("192.168.1.1");
        assert!(set.allowed("User:alice", any, Write, Topic, "orders"));
        assert!(
            set.allowed("User:alice", any, Describe, Topic, "orders"),
            "write implies describe"
        );
        assert!(!set.allowed("User:alice", any, Read, Topic, "orders"));
        assert!(set.allowed("User:bob", any, Read, Topic, "orders-eu"));
        let d = set.authorize("User:bob", any, Read, Topic, "orders-secret");
        assert!(
            !d.allowed && matches!(d.reason, Reason::DeniedBy(_)),
            "deny beats allow"
        );
        assert!(set.allowed("User:dave", ip("10.2.3.4"), Describe, Topic, "anything"));
        assert!(!set.allowed("User:dave", any, Describe, Topic, "anything"));
        assert!(set.allowed("User:carol", ip("127.0.0.1"), Read, Group, "billing"));
        assert!(!set.allowed("User:carol", ip("127.0.0.2"), Read, Group, "billing"));
        assert_eq!(
            set.authorize("User:admin", any, Alter, Cluster, "kafka-cluster")
                .reason,
            Reason::SuperUser
        );
        assert_eq!(
            set.authorize("User:eve", any, Read, Topic, "x").reason,
            Reason::DefaultDeny
        );
        // allow_everyone_if_no_acl_found only where no rule names the resource.
        let named: Vec<Rule> = set
            .rules()
            .iter()
            .filter(|r| r.name != "*")
            .cloned()
            .collect();
        let open = AclSet::new(named, vec![], true);
        assert!(open.allowed("User:eve", any, Read, Topic, "unruled"));
        assert!(!open.allowed("User:eve", any, Read, Topic, "orders"));
        // Deny never implies: a DENY READ does not deny DESCRIBE.
        let d = AclSet::new(
            vec![
                rule("User:x", Deny, Read, Topic, Literal, "t", "*"),
                rule("User:x", Allow, Describe, Topic, Literal, "t", "*"),
            ],
            vec![],
            false,
        );
        assert!(d.allowed("User:x", any, Describe, Topic, "t"));
    }
}
