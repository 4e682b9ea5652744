//! The `portcullis` command line. Library errors are typed; this is the one
//! place they become `anyhow` reports for a person to read.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

use portcullis::config::{Config, Overrides};

mod cli;

/// Exit codes, shown by `portcullis --help`; `main` keeps them.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  error (cannot connect, bad files, a broker error other than below)
  2  usage error: unknown command or flag, a bad, missing or conflicting
     value (nothing is sent to the broker)
  3  refused by the broker: not authorized (*_AUTHORIZATION_FAILED) or
     the SASL login failed

`policy check` exits 1 when the request would be blocked by a policy
(violations of audit-only rules are printed and exit 0).

Commands that talk to the broker (group, topic, cluster, quota) log in
with --user (or $PORTCULLIS_USER, default admin) and the password from
--password-stdin or $PORTCULLIS_PASSWORD. Read commands take
--output json (or --json) for one JSON document on standard output.";

/// Exit code of a usage error (clap's).
const EXIT_USAGE: u8 = 2;
/// Exit code of a refusal by the broker.
const EXIT_REFUSED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "A Kafka-compatible broker with a security edge",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve {
        /// YAML config file.
        #[arg(long, default_value = "config/portcullis.yaml")]
        config: PathBuf,
        /// Override `data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override `listeners`, Kafka syntax: PLAINTEXT://127.0.0.1:9092,...
        #[arg(long)]
        listeners: Option<String>,
    },
    /// Manage SCRAM-SHA-512 users in the credential store.
    User(cli::user::UserArgs),
    /// Manage and query ACLs in the ACL file.
    Acl(cli::acl::AclArgs),
    /// List the policy file's rules and check requests against them.
    Policy(cli::policy::PolicyArgs),
    /// Inspect consumer groups and reset their offsets.
    Group(cli::group::GroupArgs),
    /// Read the audit log.
    Audit(cli::audit::AuditArgs),
    /// Create, list, describe, alter and delete topics; inspect one on disk.
    Topic(cli::topic::TopicArgs),
    /// Describe the cluster: id, controller, brokers, API versions.
    Cluster(cli::cluster::ClusterArgs),
    /// List, set and remove client quotas.
    Quota(cli::quota::QuotaArgs),
    /// Create development certificates (CA, server, clients).
    Certs(cli::certs::CertsArgs),
    /// Print a shell completion script for this command line.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> std::process::ExitCode {
    // clap exits with 2 on a usage error (and 0 for --help, --version).
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line (with causes), not a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// The documented exit code of an error (see EXIT_CODES).
fn exit_code(e: &anyhow::Error) -> u8 {
    let refused = e.chain().any(|c| {
        c.downcast_ref::<cli::connect::BrokerError>()
            .is_some_and(|b| b.is_refusal())
            || matches!(
                c.downcast_ref::<portcullis::client::ClientError>(),
                Some(portcullis::client::ClientError::Login { .. })
            )
    });
    if refused {
        EXIT_REFUSED
    } else if e
        .chain()
        .any(|c| c.downcast_ref::<cli::connect::UsageError>().is_some())
    {
        EXIT_USAGE
    } else {
        1
    }
}

/// Fetch responses, and the records read for them, are megabytes each.
/// glibc serves such blocks with fresh mappings and returns them to the
/// kernel when freed, so every Fetch paid page faults to map and zero them
/// again: a third of the broker's CPU while a consumer read at full speed.
/// Blocks up to 32 MiB (glibc's largest threshold) now come from the heap,
/// and freed heap memory is kept for reuse up to 256 MiB.
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if !matches!(cli.command, Command::Serve { .. }) {
        // Admin commands piped into `head` or `grep -q` should end quietly,
        // like any Unix filter. The broker keeps ignoring SIGPIPE.
        // SAFETY: restores one signal's default disposition before any
        // other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if matches!(cli.command, Command::Serve { .. }) {
        keep_freed_memory();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listeners,
        } => rt.block_on(serve(
            config,
            Overrides {
                data_dir,
                listeners,
            },
        )),
        Command::User(args) => cli::user::run(args),
        Command::Certs(args) => cli::certs::run(args),
        Command::Acl(args) => cli::acl::run(args),
        Command::Audit(args) => cli::audit::run(args),
        Command::Policy(args) => cli::policy::run(args),
        Command::Topic(args) => rt.block_on(cli::topic::run(args)),
        Command::Group(args) => rt.block_on(cli::group::run(args)),
        Command::Cluster(args) => rt.block_on(cli::cluster::run(args)),
        Command::Quota(args) => rt.block_on(cli::quota::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "portcullis",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

async fn serve(path: PathBuf, overrides: Overrides) -> anyhow::Result<()> {
    let config = Config::load(&path, &overrides)?;
    let running = portcullis::start::start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        if let Some(report) = &running.notes.generated_certs {
            writeln!(
                out,
                "portcullis: no certificates found; generated a dev CA and server certificate: {}",
                report
                    .written
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        if let Some(path) = &running.notes.created_acl_file {
            writeln!(
                out,
                "portcullis: no ACL file; created {} with no rules (everyone but the super users is denied)",
                path.display()
            )?;
        }
        if let Some(pw) = &running.notes.admin_password {
            writeln!(
                out,
                "portcullis: created SCRAM-SHA-512 super user `admin` with password: {pw}\n\
                 portcullis: (shown once; only its SCRAM keys are stored. Change it with `portcullis user passwd admin`)"
            )?;
        }
        // Before the listener lines: scripts that stop reading at the first
        // `listening` line close the pipe, and a later line would fail.
        if let Some(url) = &running.ops_url {
            writeln!(
                out,
                "portcullis: ops listening {url} (metrics /metrics, health /healthz /readyz)"
            )?;
        }
        for l in &running.listeners {
            writeln!(
                out,
                "portcullis: listening {}://{} (listener {}, advertised {}:{})",
                l.protocol, l.bound, l.name, l.advertised_host, l.advertised_port
            )?;
        }
        out.flush()?;
    }
    tracing::info!("broker started");
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
