//! Kafka's ACL vocabulary: resource types, pattern types, operations,
//! permissions and host matches, with Kafka's wire codes.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ParseError(pub String);

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $code:expr, $text:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn code(self) -> i8 {
                match self { $($name::$variant => $code),* }
            }
            pub fn from_code(code: i8) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let norm = s.trim().to_ascii_lowercase().replace('-', "_");
                $(if norm == $text { return Ok($name::$variant); })*
                Err(ParseError(format!(
                    "unknown {} `{s}` (expected one of: {})",
                    stringify!($name),
                    [$($text),*].join(", ")
                )))
            }
        }
    };
}

wire_enum!(
    /// What a rule protects.
    ResourceType {
        Topic = 2, "topic";
        Group = 3, "group";
        Cluster = 4, "cluster";
        TransactionalId = 5, "transactional_id";
    }
);

wire_enum!(
    PatternType {
        Literal = 3, "literal";
        Prefixed = 4, "prefixed";
    }
);

wire_enum!(
    Operation {
        All = 2, "all";
        Read = 3, "read";
        Write = 4, "write";
        Create = 5, "create";
        Delete = 6, "delete";
        Alter = 7, "alter";
        Describe = 8, "describe";
        ClusterAction = 9, "cluster_action";
        DescribeConfigs = 10, "describe_configs";
        AlterConfigs = 11, "alter_configs";
        IdempotentWrite = 12, "idempotent_write";
    }
);

wire_enum!(
    Permission {
        Deny = 2, "deny";
        Allow = 3, "allow";
    }
);

impl Operation {
    /// Kafka's implied operations, which apply to ALLOW rules only:
    /// READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
    /// DESCRIBE_CONFIGS.
    pub fn allow_grants(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (wanted == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }

    pub fn deny_covers(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

/// The name Kafka uses for the single cluster resource.
pub const CLUSTER_NAME: &str = "kafka-cluster";
pub const WILDCARD: &str = "*";

/// Where a rule applies: any host, one address, or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostMatch {
    Any,
    Addr(IpAddr),
    Cidr(IpAddr, u8),
}

impl HostMatch {
    pub fn matches(&self, ip: IpAddr) -> bool {
        match *self {
            HostMatch::Any => true,
            HostMatch::Addr(a) => a == canonical(ip),
            HostMatch::Cidr(net, bits) => in_cidr(net, bits, canonical(ip)),
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn in_cidr(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostMatch::Any => f.write_str("*"),
            HostMatch::Addr(a) => write!(f, "{a}"),
            HostMatch::Cidr(n, b) => write!(f, "{n}/{b}"),
        }
    }
}

impl FromStr for HostMatch {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s == "*" {
            return Ok(HostMatch::Any);
        }
        if let Some((net, bits)) = s.split_once('/') {
            let net: IpAddr = net
                .parse()
                .map_err(|_| ParseError(format!("`{s}`: `{net}` is not an IP address")))?;
            let max = if net.is_ipv4() { 32 } else { 128 };
            let bits: u8 = bits
                .parse()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| ParseError(format!("`{s}`: prefix length must be 0..={max}")))?;
            return Ok(HostMatch::Cidr(canonical(net), bits));
        }
        s.parse::<IpAddr>()
            .map(|a| HostMatch::Addr(canonical(a)))
            .map_err(|_| {
                ParseError(format!(
                    "host `{s}` is not `*`, an IP address or a CIDR block"
                ))
            })
    }
}

/// Checks `User:name` (or `User:*`).
pub fn validate_principal(p: &str) -> Result<(), ParseError> {
    match p.split_once(':') {
        Some(("User", name)) if !name.is_empty() && !name.chars().any(char::is_control) => Ok(()),
        _ => Err(ParseError(format!(
            "principal `{p}` must look like User:alice or User:*"
        ))),
    }
}

/// One ACL binding, Kafka's unit: who, from where, what, on which
/// resource pattern, allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    pub principal: String,
    pub host: HostMatch,
    pub resource_type: ResourceType,
    pub pattern: PatternType,
    pub name: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl Rule {
    pub fn matches_resource(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern {
                PatternType::Literal => self.name == WILDCARD || self.name == name,
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} ({}) from {}",
            self.permission,
            self.principal,
            self.operation,
            self.resource_type,
            self.name,
            self.pattern,
            self.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match_hosts() {
        let h: HostMatch = "10.0.0.0/8".parse().unwrap();
        assert!(h.matches("10.1.2.3".parse().unwrap()));
        assert!(!h.matches("11.1.2.3".parse().unwrap()));
        assert!(h.matches("::ffff:10.9.9.9".parse().unwrap()));
        let h: HostMatch = "127.0.0.1".parse().unwrap();
        assert!(h.matches("127.0.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<HostMatch>().is_err());
        assert!("example.com".parse::<HostMatch>().is_err());
        assert!("0.0.0.0/0"
            .parse::<HostMatch>()
            .unwrap()
            .matches("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn implied_operations_only_for_allow() {
        assert!(Operation::Read.allow_grants(Operation::Describe));
        assert!(Operation::AlterConfigs.allow_grants(Operation::DescribeConfigs));
        assert!(!Operation::Describe.allow_grants(Operation::Read));
        assert!(!Operation::Read.deny_covers(Operation::Describe));
        assert!(Operation::All.deny_covers(Operation::Write));
        assert_eq!(
            "Describe-Configs".parse::<Operation>().unwrap(),
            Operation::DescribeConfigs
        );
        assert_eq!(Operation::from_code(12), Some(Operation::IdempotentWrite));
    }
}
