//! `portcullis quota list|set|remove`: client quotas over Kafka's
//! DescribeClientQuotas and AlterClientQuotas, with Kafka's entities (user,
//! client-id, ip; a null name is the `<default>` entity) and keys.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use kafka_protocol::messages::alter_client_quotas_request::{
    EntityData as AlterEntity, EntryData as AlterEntry, OpData,
};
use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, ApiKey, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use super::connect::{check, print_json, usage, Cluster, ConnectArgs, OutputArgs, UsageError};

const DESCRIBE_CLIENT_QUOTAS: std::ops::RangeInclusive<i16> = 0..=1;
const ALTER_CLIENT_QUOTAS: std::ops::RangeInclusive<i16> = 0..=1;

/// DescribeClientQuotas match types.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;

#[derive(Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: QuotaCommand,
}

/// Which entity: a user and/or a client id, or an IP address alone. Each
/// may be a named one or the default (`<default>`) of its kind.
#[derive(Args, Default, Clone)]
struct EntityArgs {
    /// The user, as a principal: User:alice.
    #[arg(long, value_name = "User:NAME", conflicts_with = "default_principal")]
    principal: Option<String>,
    /// The default user entity (applies to users without their own quota).
    #[arg(long)]
    default_principal: bool,
    /// The client id.
    #[arg(long, value_name = "ID", conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// The default client-id entity.
    #[arg(long)]
    default_client_id: bool,
    /// An IP address (connection-creation-rate only; not combined with a
    /// user or client id).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["default_ip", "principal", "default_principal", "client_id", "default_client_id"])]
    ip: Option<String>,
    /// The default IP entity.
    #[arg(long, conflicts_with_all = ["principal", "default_principal", "client_id", "default_client_id"])]
    default_ip: bool,
}

impl EntityArgs {
    /// (entity type, name; `None` = the default entity).
    fn parts(&self) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
        let mut out = Vec::new();
        if let Some(p) = &self.principal {
            let name = p
                .strip_prefix("User:")
                .filter(|n| !n.is_empty())
                .ok_or_else(|| UsageError(format!("--principal `{p}`: expected User:NAME")))?;
            out.push(("user", Some(name.to_string())));
        } else if self.default_principal {
            out.push(("user", None));
        }
        if let Some(c) = &self.client_id {
            out.push(("client-id", Some(c.clone())));
        } else if self.default_client_id {
            out.push(("client-id", None));
        }
        if let Some(ip) = &self.ip {
            if ip.parse::<std::net::IpAddr>().is_err() {
                usage!("--ip `{ip}` is not an IP address");
            }
            out.push(("ip", Some(ip.clone())));
        } else if self.default_ip {
            out.push(("ip", None));
        }
        Ok(out)
    }

    fn required(&self) -> anyhow::Result<Vec<(&'static str, Option<String>)>> {
        let parts = self.parts()?;
        if parts.is_empty() {
            usage!("name the entity: --principal, --default-principal, --client-id, --default-client-id, --ip or --default-ip");
        }
        Ok(parts)
    }
}

/// Quota values to set.
#[derive(Args, Default)]
struct ValueArgs {
    /// producer_byte_rate: bytes per second a user/client may produce.
    #[arg(long, value_name = "N")]
    producer_byte_rate: Option<u64>,
    /// consumer_byte_rate: bytes per second a user/client may fetch.
    #[arg(long, value_name = "N")]
    consumer_byte_rate: Option<u64>,
    /// request_percentage: share of a request-handler thread, in percent.
    #[arg(long, value_name = "F")]
    request_percentage: Option<f64>,
    /// controller_mutation_rate: topic/partition creations and deletions
    /// per second.
    #[arg(long, value_name = "F")]
    controller_mutation_rate: Option<f64>,
    /// connection_creation_rate: new connections per second.
    #[arg(long, value_name = "F")]
    connection_creation_rate: Option<f64>,
}

impl ValueArgs {
    fn pairs(&self) -> Vec<(&'static str, f64)> {
        [
            (
                "producer_byte_rate",
                self.producer_byte_rate.map(|v| v as f64),
            ),
            (
                "consumer_byte_rate",
                self.consumer_byte_rate.map(|v| v as f64),
            ),
            ("request_percentage", self.request_percentage),
            ("controller_mutation_rate", self.controller_mutation_rate),
            ("connection_creation_rate", self.connection_creation_rate),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// Quota keys to remove.
#[derive(Args, Default)]
struct KeyArgs {
    /// Remove producer_byte_rate.
    #[arg(long)]
    producer_byte_rate: bool,
    /// Remove consumer_byte_rate.
    #[arg(long)]
    consumer_byte_rate: bool,
    /// Remove request_percentage.
    #[arg(long)]
    request_percentage: bool,
    /// Remove controller_mutation_rate.
    #[arg(long)]
    controller_mutation_rate: bool,
    /// Remove connection_creation_rate.
    #[arg(long)]
    connection_creation_rate: bool,
    /// Remove every quota of the entity.
    #[arg(long)]
    all: bool,
}

impl KeyArgs {
    fn keys(&self) -> Vec<&'static str> {
        [
            ("producer_byte_rate", self.producer_byte_rate),
            ("consumer_byte_rate", self.consumer_byte_rate),
            ("request_percentage", self.request_percentage),
            ("controller_mutation_rate", self.controller_mutation_rate),
            ("connection_creation_rate", self.connection_creation_rate),
        ]
        .into_iter()
        .filter_map(|(k, on)| on.then_some(k))
        .collect()
    }
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// List entities and their quotas (all, or those matching the entity
    /// flags given).
    List {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Set quotas of one entity.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        values: ValueArgs,
    },
    /// Remove quotas of one entity (the keys named, or --all).
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    // Arguments first: a usage mistake needs no password or connection.
    match &args.command {
        QuotaCommand::List { entity, .. } => {
            entity.parts()?;
        }
        QuotaCommand::Set { entity, values } => {
            entity.required()?;
            if values.pairs().is_empty() {
                usage!("nothing to set: give --producer-byte-rate, --consumer-byte-rate, --request-percentage, --controller-mutation-rate or --connection-creation-rate");
            }
        }
        QuotaCommand::Remove { entity, keys } => {
            entity.required()?;
            if keys.keys().is_empty() && !keys.all {
                usage!("nothing to remove: name the keys (--producer-byte-rate, ...) or --all");
            }
        }
    }
    let mut cl = Cluster::new(&args.conn, "portcullis-quota")?;
    match args.command {
        QuotaCommand::List { entity, out } => {
            let entries = describe(&mut cl, &entity.parts()?, false).await?;
            print_entries(&entries, out.json())
        }
        QuotaCommand::Set { entity, values } => {
            let e = entity.required()?;
            let ops: Vec<(String, f64, bool)> = values
                .pairs()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v, false))
                .collect();
            alter(&mut cl, &e, &ops).await?;
            for (k, v, _) in &ops {
                println!("{}: {k}={v}", entity_text(&e));
            }
            Ok(())
        }
        QuotaCommand::Remove { entity, keys } => {
            let e = entity.required()?;
            let names: Vec<String> = if keys.all {
                // Exactly this entity's keys: a strict match.
                describe(&mut cl, &e, true)
                    .await?
                    .into_iter()
                    .filter(|(ent, _)| same_entity(ent, &e))
                    .flat_map(|(_, vals)| vals.into_keys())
                    .collect()
            } else {
                keys.keys().into_iter().map(String::from).collect()
            };
            if names.is_empty() {
                println!("{}: no quotas to remove", entity_text(&e));
                return Ok(());
            }
            let ops: Vec<(String, f64, bool)> =
                names.iter().map(|k| (k.clone(), 0.0, true)).collect();
            alter(&mut cl, &e, &ops).await?;
            for k in &names {
                println!("{}: {k} removed", entity_text(&e));
            }
            Ok(())
        }
    }
}

type Entity = Vec<(String, Option<String>)>;

fn same_entity(a: &Entity, b: &[(&'static str, Option<String>)]) -> bool {
    a.len() == b.len()
        && b.iter()
            .all(|(t, n)| a.iter().any(|(at, an)| at == t && an == n))
}

/// `user=alice, client-id=<default>`: Kafka's rendering.
fn entity_text<T: AsRef<str>>(e: &[(T, Option<String>)]) -> String {
    e.iter()
        .map(|(t, n)| format!("{}={}", t.as_ref(), n.as_deref().unwrap_or("<default>")))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn describe(
    cl: &mut Cluster,
    filter: &[(&'static str, Option<String>)],
    strict: bool,
) -> anyhow::Result<Vec<(Entity, BTreeMap<String, f64>)>> {
    let c = cl.any().await?;
    let v = c.version(ApiKey::DescribeClientQuotas, DESCRIBE_CLIENT_QUOTAS)?;
    let req = DescribeClientQuotasRequest::default()
        .with_components(
            filter
                .iter()
                .map(|(t, n)| {
                    let c = ComponentData::default().with_entity_type(StrBytes::from_static_str(t));
                    match n {
                        Some(n) => c
                            .with_match_type(MATCH_EXACT)
                            .with_match(Some(StrBytes::from_string(n.clone()))),
                        None => c.with_match_type(MATCH_DEFAULT).with_match(None),
                    }
                })
                .collect(),
        )
        .with_strict(strict);
    let r: DescribeClientQuotasResponse = c.call(ApiKey::DescribeClientQuotas, v, &req).await?;
    check(
        "describe client quotas",
        r.error_code,
        r.error_message.as_ref(),
    )?;
    let mut out: Vec<(Entity, BTreeMap<String, f64>)> = r
        .entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let mut ent: Entity = e
                .entity
                .iter()
                .map(|d| {
                    (
                        d.entity_type.to_string(),
                        d.entity_name.as_ref().map(|n| n.to_string()),
                    )
                })
                .collect();
            ent.sort();
            let vals = e
                .values
                .iter()
                .map(|v| (v.key.to_string(), v.value))
                .collect();
            (ent, vals)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

async fn alter(
    cl: &mut Cluster,
    entity: &[(&'static str, Option<String>)],
    ops: &[(String, f64, bool)],
) -> anyhow::Result<()> {
    let c = cl.any().await?;
    let v = c.version(ApiKey::AlterClientQuotas, ALTER_CLIENT_QUOTAS)?;
    let req = AlterClientQuotasRequest::default().with_entries(vec![AlterEntry::default()
        .with_entity(
            entity
                .iter()
                .map(|(t, n)| {
                    AlterEntity::default()
                        .with_entity_type(StrBytes::from_static_str(t))
                        .with_entity_name(n.clone().map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_ops(
            ops.iter()
                .map(|(k, val, remove)| {
                    OpData::default()
                        .with_key(StrBytes::from_string(k.clone()))
                        .with_value(*val)
                        .with_remove(*remove)
                })
                .collect(),
        )]);
    let r: AlterClientQuotasResponse = c.call(ApiKey::AlterClientQuotas, v, &req).await?;
    for e in &r.entries {
        check(
            format!("quotas of {}", entity_text(entity)),
            e.error_code,
            e.error_message.as_ref(),
        )?;
    }
    Ok(())
}

fn print_entries(entries: &[(Entity, BTreeMap<String, f64>)], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&json!({
            "entries": entries.iter().map(|(e, vals)| json!({
                "entity": e.iter().map(|(t, n)| json!({"type": t, "name": n})).collect::<Vec<_>>(),
                "quotas": vals,
            })).collect::<Vec<_>>()
        }));
    }
    if entries.is_empty() {
        println!("no quotas");
        return Ok(());
    }
    for (e, vals) in entries {
        let vals = vals
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("{}: {vals}", entity_text(e));
    }
    Ok(())
}
