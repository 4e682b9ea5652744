//! Kafka's AclBindingFilter: what DescribeAcls and DeleteAcls (and the CLI's
//! `acl list` / `acl remove`) select rules by.

use super::model::{Operation, PatternType, Permission, ResourceType, Rule, WILDCARD};

/// Wire codes shared by the ACL APIs.
pub const ANY: i8 = 1;
pub const MATCH: i8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    Any,
    /// Rules that would apply to the named resource: literal equal, the
    /// `*` wildcard, or a prefix of the name.
    Match,
    Exact(PatternType),
}

#[derive(Debug, Clone, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: Option<PatternFilter>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

fn code_or_any<T>(code: i8, what: &str, parse: fn(i8) -> Option<T>) -> Result<Option<T>, String> {
    if code == ANY {
        return Ok(None);
    }
    parse(code)
        .map(Some)
        .ok_or_else(|| format!("unknown {what} code {code}"))
}

impl AclFilter {
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        name: Option<&str>,
        pattern: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        let pattern = match pattern {
            ANY => PatternFilter::Any,
            MATCH => PatternFilter::Match,
            other => PatternFilter::Exact(
                PatternType::from_code(other)
                    .ok_or_else(|| format!("unknown pattern type code {other}"))?,
            ),
        };
        Ok(AclFilter {
            resource_type: code_or_any(resource_type, "resource type", ResourceType::from_code)?,
            name: name.map(str::to_string),
            pattern: Some(pattern),
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: code_or_any(operation, "operation", Operation::from_code)?,
            permission: code_or_any(permission, "permission", Permission::from_code)?,
        })
    }

    pub fn matches(&self, r: &Rule) -> bool {
        if self.resource_type.is_some_and(|t| t != r.resource_type)
            || self.principal.as_ref().is_some_and(|p| *p != r.principal)
            || self.host.as_ref().is_some_and(|h| *h != r.host.to_string())
            || self.operation.is_some_and(|o| o != r.operation)
            || self.permission.is_some_and(|p| p != r.permission)
        {
            return false;
        }
        match (self.pattern.unwrap_or(PatternFilter::Any), &self.name) {
            (PatternFilter::Any, None) => true,
            (PatternFilter::Any, Some(n)) => *n == r.name,
            (PatternFilter::Exact(p), None) => p == r.pattern,
            (PatternFilter::Exact(p), Some(n)) => p == r.pattern && *n == r.name,
            (PatternFilter::Match, None) => true,
            (PatternFilter::Match, Some(n)) => match r.pattern {
                PatternType::Literal => r.name == *n || r.name == WILDCARD,
                PatternType::Prefixed => n.starts_with(&r.name),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::model::HostMatch;

    #[test]
    fn filters_select_like_kafka() {
        let r = |name: &str, pattern| Rule {
            principal: "User:a".into(),
            host: HostMatch::Any,
            resource_type: ResourceType::Topic,
            pattern,
            name: name.into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        let lit = r("orders", PatternType::Literal);
        let pre = r("ord", PatternType::Prefixed);
        let star = r("*", PatternType::Literal);
        let m = AclFilter::from_wire(2, Some("orders"), MATCH, None, None, ANY, ANY).unwrap();
        assert!(m.matches(&lit) && m.matches(&pre) && m.matches(&star));
        let exact = AclFilter::from_wire(2, Some("orders"), 3, None, None, ANY, ANY).unwrap();
        assert!(exact.matches(&lit) && !exact.matches(&pre) && !exact.matches(&star));
        let all = AclFilter::from_wire(ANY, None, ANY, Some("User:a"), Some("*"), 3, 3).unwrap();
        assert!(all.matches(&lit) && all.matches(&pre));
        let other = AclFilter::from_wire(ANY, None, ANY, Some("User:b"), None, ANY, ANY).unwrap();
        assert!(!other.matches(&lit));
        assert!(AclFilter::from_wire(99, None, ANY, None, None, ANY, ANY).is_err());
    }
}
