//! `portcullis certs init`: a development CA, server certificate and
//! optional client certificates for mTLS. Keys are 0600 and git-ignored.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create ca.crt, server.crt/.key (SANs localhost, 127.0.0.1 and --host)
    /// and client-NAME.crt/.key for each --client.
    Init {
        /// Directory to write the certificates and keys into.
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Extra DNS name or IP for the server certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Also issue a client certificate with CN=NAME (repeatable).
        #[arg(long = "client")]
        clients: Vec<String>,
        /// Replace existing files (including the CA).
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Init {
            dir,
            hosts,
            clients,
            force,
        } => {
            let report = portcullis::tls::init_certs(&dir, &hosts, &clients, force)?;
            for p in &report.written {
                println!("wrote {}", p.display());
            }
            for p in &report.kept {
                println!("kept  {} (exists; --force replaces it)", p.display());
            }
        }
    }
    Ok(())
}
