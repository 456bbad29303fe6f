//! The `keyward` command line: serve, init, bench.

use crate::bench::{self, BenchArgs};
use crate::config::Config;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "keyward",
    version,
    about = "On-premises KMS speaking the Tencent Cloud KMS API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Common {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (overrides the configuration file).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Listen address (overrides the configuration file).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create the data directory and root account; print its API key as JSON on stdout.
    Init {
        #[command(flatten)]
        common: Common,
    },
    /// Load generator: signed requests over keep-alive connections.
    Bench {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        endpoint: String,
        /// JSON file with SecretId/SecretKey/Region, as printed by `keyward init`.
        #[arg(long)]
        credentials: PathBuf,
        #[arg(long, default_value = "Encrypt")]
        action: String,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds to run.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Use this CMK instead of creating one.
        #[arg(long)]
        key_id: Option<String>,
    },
    /// Serve a bare HTTP endpoint (fixed 100-byte JSON) to measure the HTTP ceiling.
    #[command(hide = true)]
    BareHttp {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
}

fn load_config(common: &Common) -> crate::Result<Config> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keyward: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> crate::Result<()> {
    match cli.command {
        Command::Serve { common, listen } => {
            let mut cfg = load_config(&common)?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            let (state, issued) =
                tokio::task::spawn_blocking(move || crate::server::bootstrap(cfg))
                    .await
                    .map_err(|e| crate::Error::Internal(e.to_string()))??;
            if let Some(cred) = issued {
                // Printed once, on first start, so a fresh `serve` is usable without `init`.
                eprintln!(
                    "keyward: created the root account; its API key (shown only now):\n{}",
                    serde_json::to_string(&cred).unwrap_or_default()
                );
            }
            crate::server::serve(state).await
        }
        Command::Init { common } => {
            let cfg = load_config(&common)?;
            let dir = cfg.data_dir.clone();
            let (_, issued) = tokio::task::spawn_blocking(move || crate::server::bootstrap(cfg))
                .await
                .map_err(|e| crate::Error::Internal(e.to_string()))??;
            match issued {
                Some(cred) => {
                    println!("{}", serde_json::to_string(&cred).unwrap_or_default());
                    Ok(())
                }
                None => Err(crate::Error::Config(format!(
                    "{} is already initialised; its root API key was shown when it was created",
                    dir.display()
                ))),
            }
        }
        Command::Bench {
            endpoint,
            credentials,
            action,
            concurrency,
            duration,
            key_id,
        } => {
            let text = std::fs::read_to_string(&credentials)?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| crate::Error::Config(format!("{}: {e}", credentials.display())))?;
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let report = bench::run(BenchArgs {
                endpoint,
                secret_id: field("SecretId"),
                secret_key: field("SecretKey"),
                region: field("Region"),
                action,
                concurrency,
                duration: Duration::from_secs(duration),
                key_id,
            })
            .await?;
            println!("{report}");
            Ok(())
        }
        Command::BareHttp { listen } => bench::serve_bare(listen).await,
    }
}
