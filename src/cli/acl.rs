//! `portcullis acl add|remove|list|check`: edits go through the same
//! validate-and-write-atomically path as Kafka's ACL APIs; `check` explains
//! which rule (or super user, or the default) decides a request.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use portcullis::acl::file::render_rule;
use portcullis::acl::filter::{AclFilter, PatternFilter};
use portcullis::acl::model::CLUSTER_NAME;
use portcullis::acl::{
    AclStore, HostMatch, Operation, PatternType, Permission, ResourceType, Rule,
};
use portcullis::config::{Config, Overrides};

#[derive(Args)]
pub struct AclArgs {
    /// Broker config naming the ACL file (acl.file) and the super users.
    #[arg(long, global = true, default_value = "config/portcullis.yaml")]
    config: PathBuf,
    /// Use this ACL file instead of the config's.
    #[arg(long, global = true)]
    file: Option<PathBuf>,
    #[command(flatten)]
    wait: super::applied::WaitArgs,
    #[command(subcommand)]
    command: AclCommand,
}

/// Exactly one resource (for add/check) or at most one (for filters).
#[derive(Args, Default, Clone)]
struct ResourceArgs {
    /// A topic, by its literal name (`*`: every topic).
    #[arg(long)]
    topic: Option<String>,
    /// Topics whose names start with this prefix.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// A consumer group, by its literal id (`*`: every group).
    #[arg(long)]
    group: Option<String>,
    /// Consumer groups whose ids start with this prefix.
    #[arg(long)]
    group_prefix: Option<String>,
    /// A transactional id, literally (`*`: every one).
    #[arg(long)]
    transactional_id: Option<String>,
    /// Transactional ids starting with this prefix.
    #[arg(long)]
    transactional_id_prefix: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long)]
    cluster: bool,
}

impl ResourceArgs {
    fn resolve(&self) -> anyhow::Result<Option<(ResourceType, PatternType, String)>> {
        let mut found = Vec::new();
        let items = [
            (&self.topic, ResourceType::Topic, PatternType::Literal),
            (
                &self.topic_prefix,
                ResourceType::Topic,
                PatternType::Prefixed,
            ),
            (&self.group, ResourceType::Group, PatternType::Literal),
            (
                &self.group_prefix,
                ResourceType::Group,
                PatternType::Prefixed,
            ),
            (
                &self.transactional_id,
                ResourceType::TransactionalId,
                PatternType::Literal,
            ),
            (
                &self.transactional_id_prefix,
                ResourceType::TransactionalId,
                PatternType::Prefixed,
            ),
        ];
        for (v, rt, pt) in items {
            if let Some(name) = v {
                found.push((rt, pt, name.clone()));
            }
        }
        if self.cluster {
            found.push((
                ResourceType::Cluster,
                PatternType::Literal,
                CLUSTER_NAME.to_string(),
            ));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => bail!("name one resource: --topic, --topic-prefix, --group, --group-prefix, --transactional-id, --transactional-id-prefix or --cluster"),
        }
    }
}

#[derive(Subcommand)]
enum AclCommand {
    /// Add rules (one per operation and host).
    Add {
        /// An allow rule (the default).
        #[arg(long, conflicts_with = "deny")]
        allow: bool,
        /// A deny rule: wins over any allow rule it matches.
        #[arg(long)]
        deny: bool,
        /// Whose requests: User:NAME, or User:* for everyone.
        #[arg(long)]
        principal: String,
        /// The operation allowed or denied (repeatable): read, write,
        /// create, delete, alter, describe, all, ...
        #[arg(long = "operation", required = true)]
        operations: Vec<Operation>,
        /// Client address the rule applies to (repeatable; default: any host).
        #[arg(long = "host")]
        hosts: Vec<HostMatch>,
        #[command(flatten)]
        resource: ResourceArgs,
    },
    /// Remove every rule matching the given selectors (at least one).
    Remove {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// List rules, optionally filtered.
    List {
        #[command(flatten)]
        select: SelectArgs,
        #[command(flatten)]
        out: super::connect::OutputArgs,
    },
    /// Decide a request and print the rule that decided it.
    Check {
        /// The principal asking: User:NAME.
        #[arg(long)]
        principal: String,
        /// The client's address.
        #[arg(long)]
        host: IpAddr,
        /// The operation asked for.
        #[arg(long)]
        operation: Operation,
        #[command(flatten)]
        resource: ResourceArgs,
    },
}

#[derive(Args, Default, Clone)]
struct SelectArgs {
    /// Only rules of this principal (User:NAME, User:*).
    #[arg(long)]
    principal: Option<String>,
    /// Only rules for this operation.
    #[arg(long)]
    operation: Option<Operation>,
    /// Only allow or only deny rules.
    #[arg(long)]
    permission: Option<Permission>,
    /// Only rules for this host (as written in the rule, `*` for any).
    #[arg(long)]
    host: Option<String>,
    #[command(flatten)]
    resource: ResourceArgs,
}

impl SelectArgs {
    fn filter(&self) -> anyhow::Result<AclFilter> {
        let res = self.resource.resolve()?;
        Ok(AclFilter {
            resource_type: res.as_ref().map(|r| r.0),
            pattern: res.as_ref().map(|r| PatternFilter::Exact(r.1)),
            name: res.map(|r| r.2),
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission: self.permission,
        })
    }

    fn is_empty(&self) -> bool {
        self.principal.is_none()
            && self.operation.is_none()
            && self.permission.is_none()
            && self.host.is_none()
            && self.resource.resolve().ok().flatten().is_none()
    }
}

fn open(args: &AclArgs) -> anyhow::Result<std::sync::Arc<AclStore>> {
    let (path, supers) = match &args.file {
        Some(p) => (p.clone(), Vec::new()),
        None => {
            let cfg = Config::load(&args.config, &Overrides::default())?;
            (cfg.acl.file, cfg.super_users)
        }
    };
    // A missing file is an empty rule set here: the first `acl add` creates it.
    AclStore::open(&path, supers, true).with_context(|| format!("ACL file {}", path.display()))
}

pub fn run(args: AclArgs) -> anyhow::Result<()> {
    let store = open(&args)?;
    let before = store.version();
    match &args.command {
        AclCommand::Add {
            allow,
            deny,
            principal,
            operations,
            hosts,
            resource,
        } => {
            if allow == deny {
                bail!("say --allow or --deny");
            }
            portcullis::acl::model::validate_principal(principal)
                .map_err(|e| anyhow::anyhow!(e.0))?;
            let Some((resource_type, pattern, name)) = resource.resolve()? else {
                bail!("name the resource: --topic, --group, --cluster, ...");
            };
            let hosts = if hosts.is_empty() {
                vec![HostMatch::Any]
            } else {
                hosts.clone()
            };
            let permission = if *allow {
                Permission::Allow
            } else {
                Permission::Deny
            };
            let mut new = Vec::new();
            for host in &hosts {
                for op in operations {
                    new.push(Rule {
                        principal: principal.clone(),
                        host: *host,
                        resource_type,
                        pattern,
                        name: name.clone(),
                        operation: *op,
                        permission,
                    });
                }
            }
            let added = store.modify(|f| {
                let mut added = Vec::new();
                for r in new {
                    if !f.rules.contains(&r) {
                        f.rules.push(r.clone());
                        added.push(r);
                    }
                }
                added
            })?;
            for r in &added {
                println!("added   {}", render_rule(r));
            }
            if added.is_empty() {
                println!("nothing added: the rules exist already");
            }
        }
        AclCommand::Remove { select } => {
            if select.is_empty() {
                bail!("give at least one selector (--principal, --topic, --operation, ...); refusing to remove every rule");
            }
            let filter = select.filter()?;
            let removed = store.modify(|f| {
                let gone: Vec<Rule> = f
                    .rules
                    .iter()
                    .filter(|r| filter.matches(r))
                    .cloned()
                    .collect();
                f.rules.retain(|r| !filter.matches(r));
                gone
            })?;
            for r in &removed {
                println!("removed {}", render_rule(r));
            }
            if removed.is_empty() {
                bail!("no rule matched");
            }
        }
        AclCommand::List { select, out } => {
            let filter = select.filter()?;
            let set = store.snapshot();
            if out.json() {
                let rules: Vec<serde_json::Value> = set
                    .rules()
                    .iter()
                    .filter(|r| filter.matches(r))
                    .map(|r| {
                        serde_json::json!({
                            "principal": r.principal,
                            "host": r.host.to_string(),
                            "resource_type": r.resource_type.to_string(),
                            "pattern": r.pattern.to_string(),
                            "name": r.name,
                            "operation": r.operation.to_string(),
                            "permission": r.permission.to_string(),
                            "rule": render_rule(r),
                        })
                    })
                    .collect();
                return super::connect::print_json(&serde_json::json!({
                    "rules": rules,
                    "allow_everyone_if_no_acl_found": set.allow_everyone_if_no_acl_found,
                }));
            }
            let mut n = 0;
            for r in set.rules().iter().filter(|r| filter.matches(r)) {
                println!("{}", render_rule(r));
                n += 1;
            }
            eprintln!(
                "{n} rule(s); allow_everyone_if_no_acl_found: {}",
                set.allow_everyone_if_no_acl_found
            );
        }
        AclCommand::Check {
            principal,
            host,
            operation,
            resource,
        } => {
            let Some((rt, _, name)) = resource.resolve()? else {
                bail!("name the resource: --topic, --group, --cluster, ...");
            };
            let d = store
                .snapshot()
                .authorize(principal, *host, *operation, rt, &name);
            println!(
                "{}: {principal} from {host} {operation} {rt} {name}: {}",
                if d.allowed { "ALLOW" } else { "DENY" },
                d.reason
            );
        }
    }
    let after = store.version();
    if after != before {
        // Printed before the wait, so the change is reported even if the
        // broker never acknowledges it.
        std::io::Write::flush(&mut std::io::stdout())?;
        super::applied::report(store.path(), &after.sha256, args.wait);
    }
    Ok(())
}
