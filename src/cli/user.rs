//! `portcullis user add|passwd|remove|list`: edits the credential store
//! file atomically; a running broker picks the change up by itself. A user
//! has one credential per SCRAM mechanism: `add` makes one for each
//! mechanism the config enables (both by default), `--mechanism` picks.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use portcullis::config::{Config, Overrides};
use portcullis::security::credentials::CredentialStore;
use portcullis::security::scram::{Mechanism, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};

#[derive(Args)]
pub struct UserArgs {
    /// Broker config naming the credential store (sasl.credentials).
    #[arg(long, global = true, default_value = "config/portcullis.yaml")]
    config: PathBuf,
    /// Use this credential store file instead of the config's.
    #[arg(long, global = true)]
    credentials: Option<PathBuf>,
    #[command(flatten)]
    wait: super::applied::WaitArgs,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Args)]
struct PasswordArgs {
    /// Read the password from the first line of standard input instead of a prompt.
    #[arg(long)]
    password_stdin: bool,
    /// PBKDF2 iterations (4096..=16384).
    #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(MIN_ITERATIONS as i64..=MAX_ITERATIONS as i64))]
    iterations: u32,
    #[command(flatten)]
    mechanisms: MechanismArgs,
}

#[derive(Args)]
struct MechanismArgs {
    /// SCRAM-SHA-256 or SCRAM-SHA-512; repeatable. `add`: default, the
    /// mechanisms `sasl.mechanisms` enables (both unless configured
    /// otherwise); `passwd`: default, each one the user has; `remove`:
    /// default, the whole user.
    #[arg(long = "mechanism", value_parser = parse_mechanism)]
    list: Vec<Mechanism>,
}

fn parse_mechanism(s: &str) -> Result<Mechanism, String> {
    Mechanism::from_name(s).ok_or_else(|| format!("`{s}` is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// The user name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set a new password for an existing user.
    Passwd {
        /// The user name.
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Delete a user (or one mechanism's credential); their open sessions
    /// (of that mechanism) end.
    Remove {
        /// The user name.
        name: String,
        #[command(flatten)]
        mechanisms: MechanismArgs,
    },
    /// List users: one line per (name, mechanism), with iterations; never keys.
    List {
        #[command(flatten)]
        out: super::connect::OutputArgs,
    },
}

/// The store's path, and the mechanisms the config enables (both when the
/// store is named with `--credentials`, and the config is not read).
fn store_path(args: &UserArgs) -> anyhow::Result<(PathBuf, Vec<Mechanism>)> {
    if let Some(p) = &args.credentials {
        return Ok((p.clone(), Mechanism::ALL.to_vec()));
    }
    let cfg = Config::load(&args.config, &Overrides::default())?;
    let enabled = cfg.sasl.enabled();
    Ok((cfg.sasl.credentials, enabled))
}

fn names(ms: &[Mechanism]) -> String {
    ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
}

fn read_password(p: &PasswordArgs, name: &str) -> anyhow::Result<String> {
    let pw = if p.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else {
        let a = rpassword::prompt_password(format!("Password for {name}: "))
            .context("cannot read the password (no terminal? use --password-stdin)")?;
        let b = rpassword::prompt_password("Repeat password: ")?;
        if a != b {
            bail!("the passwords do not match");
        }
        a
    };
    if pw.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(pw)
}

pub fn run(args: UserArgs) -> anyhow::Result<()> {
    let (path, enabled) = store_path(&args)?;
    let store = CredentialStore::open_or_init(&path)
        .with_context(|| format!("credential store {}", path.display()))?;
    match &args.command {
        UserCommand::Add { name, password } => {
            let mechanisms = match &password.mechanisms.list {
                l if l.is_empty() => enabled.clone(),
                l => l.clone(),
            };
            if mechanisms.is_empty() {
                bail!("no SCRAM mechanism is enabled (sasl.mechanisms); pick one with --mechanism");
            }
            let pw = read_password(password, name)?;
            store.modify(|f| f.add_user_for(name, &pw, password.iterations, &mechanisms))?;
            println!(
                "user `{name}` added to {} ({})",
                path.display(),
                names(&mechanisms)
            );
            let disabled: Vec<Mechanism> = mechanisms
                .iter()
                .copied()
                .filter(|m| !enabled.contains(m))
                .collect();
            if !disabled.is_empty() {
                eprintln!(
                    "note: {} not enabled in sasl.mechanisms: no login with it until it is",
                    names(&disabled)
                );
            }
        }
        UserCommand::Passwd { name, password } => {
            let pw = read_password(password, name)?;
            let mechanisms = &password.mechanisms.list;
            store.modify(|f| f.set_password_for(name, &pw, password.iterations, mechanisms))?;
            println!("password of `{name}` changed; its open sessions end");
        }
        UserCommand::Remove { name, mechanisms } if mechanisms.list.is_empty() => {
            store.modify(|f| f.remove_user(name))?;
            println!("user `{name}` removed; its open sessions end");
        }
        UserCommand::Remove { name, mechanisms } => {
            store.modify(|f| {
                mechanisms
                    .list
                    .iter()
                    .try_for_each(|m| f.remove_credential(name, *m))
            })?;
            println!(
                "{} credential(s) of `{name}` removed; its open sessions with them end",
                names(&mechanisms.list)
            );
        }
        UserCommand::List { out } => {
            if out.json() {
                let users: Vec<serde_json::Value> = store
                    .snapshot()
                    .users()
                    .into_iter()
                    .map(|(name, mechanism, iterations)| {
                        serde_json::json!({
                            "name": name, "mechanism": mechanism, "iterations": iterations,
                        })
                    })
                    .collect();
                return super::connect::print_json(&serde_json::json!({ "users": users }));
            }
            list(&store, &path);
            return Ok(());
        }
    }
    // Printed before the wait, so the change is reported even if the
    // broker never acknowledges it.
    std::io::Write::flush(&mut std::io::stdout())?;
    super::applied::report(&path, &store.version().sha256, args.wait);
    Ok(())
}

fn list(store: &CredentialStore, path: &std::path::Path) {
    let users = store.snapshot().users();
    if users.is_empty() {
        println!("no users in {}", path.display());
    }
    for (name, mechanism, iterations) in users {
        println!("{name}\t{mechanism}\titerations={iterations}");
    }
}
