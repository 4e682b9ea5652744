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
use std::net::IpAddr;
use std::sync::Arc;

use super::model::{Operation, PatternType, Permission, ResourceType, Rule, WILDCARD};

#[derive(Default)]
struct TypeIndex {
    literal: HashMap<String, Vec<u32>>,
    wildcard: Vec<u32>,
    prefixed: HashMap<String, Vec<u32>>,
    /// Distinct lengths of prefixed names, ascending.
    prefix_lengths: Vec<usize>,
}

/// An immutable, indexed rule set. Swapped whole on reload.
pub struct AclSet {
    rules: Vec<Rule>,
    by_type: [TypeIndex; 4],
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
        for (i, r) in rules.iter().enumerate() {
            let ix = &mut by_type[slot(r.resource_type)];
            let id = i as u32;
            match r.pattern {
                PatternType::Literal if r.name == WILDCARD => ix.wildcard.push(id),
                PatternType::Literal => ix.literal.entry(r.name.clone()).or_default().push(id),
                PatternType::Prefixed => ix.prefixed.entry(r.name.clone()).or_default().push(id),
            }
        }
        for ix in &mut by_type {
            let mut lens: Vec<usize> = ix.prefixed.keys().map(String::len).collect();
            lens.sort_unstable();
            lens.dedup();
            ix.prefix_lengths = lens;
        }
        AclSet {
            rules,
            by_type,
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

    /// Calls `f` with every rule whose resource pattern matches; stops
    /// early when `f` returns true.
    fn for_each_candidate<'a>(
        &'a self,
        rt: ResourceType,
        name: &str,
        mut f: impl FnMut(&'a Rule) -> bool,
    ) {
        let ix = &self.by_type[slot(rt)];
        let lists = [ix.literal.get(name), Some(&ix.wildcard)];
        for list in lists.into_iter().flatten() {
            for &id in list {
                if f(&self.rules[id as usize]) {
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
                for &id in list {
                    if f(&self.rules[id as usize]) {
                        return;
                    }
                }
            }
        }
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
        let who = |r: &Rule| {
            (r.principal == principal || r.principal == "User:*") && r.host.matches(host)
        };
        let mut deny: Option<&Rule> = None;
        let mut allow: Option<&Rule> = None;
        let mut any_rule = false;
        self.for_each_candidate(rt, name, |r| {
            any_rule = true;
            if !who(r) {
                return false;
            }
            match r.permission {
                Permission::Deny if r.operation.deny_covers(op) => {
                    deny = Some(r);
                    true
                }
                Permission::Allow if allow.is_none() && r.operation.allow_grants(op) => {
                    allow = Some(r);
                    false
                }
                _ => false,
            }
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
        let (mut denied, mut allowed, mut any) = (false, false, false);
        self.for_each_candidate(rt, name, |r| {
            any = true;
            if (r.principal == principal || r.principal == "User:*") && r.host.matches(host) {
                match r.permission {
                    Permission::Deny if r.operation.deny_covers(op) => denied = true,
                    Permission::Allow if r.operation.allow_grants(op) => allowed = true,
                    _ => {}
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
