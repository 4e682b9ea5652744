//! `portcullis cluster info`: the cluster as a client sees it through the
//! listener it connects to (DescribeCluster, ApiVersions), and who the
//! command is logged in as.

use clap::{Args, Subcommand};
use kafka_protocol::messages::{ApiKey, DescribeClusterRequest, DescribeClusterResponse};
use serde_json::json;

use super::connect::{check, print_json, Cluster, ConnectArgs, OutputArgs};

const DESCRIBE_CLUSTER: std::ops::RangeInclusive<i16> = 0..=2;

/// DescribeCluster's "not asked" value for authorized operations.
const OPERATIONS_OMITTED: i32 = i32::MIN;

/// Kafka's AclOperation codes, by bit in an authorized-operations field.
const OPERATIONS: &[(u32, &str)] = &[
    (3, "READ"),
    (4, "WRITE"),
    (5, "CREATE"),
    (6, "DELETE"),
    (7, "ALTER"),
    (8, "DESCRIBE"),
    (9, "CLUSTER_ACTION"),
    (10, "DESCRIBE_CONFIGS"),
    (11, "ALTER_CONFIGS"),
    (12, "IDEMPOTENT_WRITE"),
    (13, "CREATE_TOKENS"),
    (14, "DESCRIBE_TOKENS"),
];

#[derive(Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Cluster id, controller, brokers (as advertised to this client), the
    /// API versions the broker offers and the principal logged in.
    Info {
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn run(args: ClusterArgs) -> anyhow::Result<()> {
    let mut cl = Cluster::new(&args.conn, "portcullis-cluster")?;
    match args.command {
        ClusterCommand::Info { out } => info(&mut cl, out.json()).await,
    }
}

async fn info(cl: &mut Cluster, json: bool) -> anyhow::Result<()> {
    let principal = cl.user().map(|u| format!("User:{u}"));
    let bootstrap = cl.bootstrap.clone();
    let c = cl.any().await?;
    let versions = c.api_versions().await?;
    let v = c.version(ApiKey::DescribeCluster, DESCRIBE_CLUSTER)?;
    let r: DescribeClusterResponse = c
        .call(
            ApiKey::DescribeCluster,
            v,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        )
        .await?;
    check("describe cluster", r.error_code, r.error_message.as_ref())?;
    let ops: Option<Vec<&str>> =
        (r.cluster_authorized_operations != OPERATIONS_OMITTED).then(|| {
            OPERATIONS
                .iter()
                .filter(|(bit, _)| r.cluster_authorized_operations & (1 << bit) != 0)
                .map(|(_, n)| *n)
                .collect()
        });
    let mut apis: Vec<(String, i16, i16)> = versions
        .iter()
        .map(|a| {
            let name = ApiKey::try_from(a.api_key)
                .map(|k| format!("{k:?}"))
                .unwrap_or_else(|_| format!("api {}", a.api_key));
            (name, a.min_version, a.max_version)
        })
        .collect();
    apis.sort();
    let mut brokers: Vec<_> = r.brokers.iter().collect();
    brokers.sort_by_key(|b| b.broker_id);
    if json {
        return print_json(&json!({
            "bootstrap": bootstrap,
            "cluster_id": r.cluster_id.as_str(),
            "controller": r.controller_id.0,
            "brokers": brokers.iter().map(|b| json!({
                "id": b.broker_id.0, "host": b.host.as_str(), "port": b.port,
                "rack": b.rack.as_ref().map(|r| r.as_str()),
            })).collect::<Vec<_>>(),
            "principal": principal,
            "cluster_operations": ops,
            "api_versions": apis.iter().map(|(n, lo, hi)| json!({
                "api": n, "min": lo, "max": hi,
            })).collect::<Vec<_>>(),
        }));
    }
    println!("cluster id   {}", r.cluster_id);
    println!("controller   {}", r.controller_id.0);
    println!("bootstrap    {bootstrap}");
    println!(
        "principal    {}",
        principal
            .as_deref()
            .unwrap_or("(no SASL login on this listener)")
    );
    if let Some(ops) = &ops {
        println!(
            "may on the cluster: {}",
            if ops.is_empty() {
                "nothing".to_string()
            } else {
                ops.join(", ")
            }
        );
    }
    println!("brokers:");
    for b in &brokers {
        let rack = b
            .rack
            .as_ref()
            .map(|r| format!(" rack {r}"))
            .unwrap_or_default();
        println!("  {:>4}  {}:{}{rack}", b.broker_id.0, b.host, b.port);
    }
    println!("{} APIs:", apis.len());
    for (n, lo, hi) in &apis {
        println!("  {n:<32} v{lo}..v{hi}");
    }
    Ok(())
}
