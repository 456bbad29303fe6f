//! The `keyward` command line: serve, init, bench.

use crate::api::actions::Product;
use crate::bench::{self, BenchArgs};
use crate::client::TcClient;
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
        /// Test bench: create a SoftHSM2 token inside the data directory (its own
        /// softhsm2.conf, a generated PIN in a 0600 file, the SO PIN printed once on stderr);
        /// `keyward serve` then runs on it with no further setup.
        #[arg(long)]
        softhsm: bool,
        /// The SoftHSM2 PKCS#11 module `--softhsm` loads.
        #[arg(long, default_value = crate::testbench::DEFAULT_MODULE, requires = "softhsm")]
        softhsm_module: PathBuf,
    },
    /// Write a consistent copy of the store to a new file. SQLite: asked of the running
    /// daemon through its control socket, or made directly when no daemon runs. PostgreSQL:
    /// pg_dump's custom format, online. The embedded backend's device.key is not part of it:
    /// back it up once, separately.
    Backup {
        #[command(flatten)]
        common: Common,
        /// The backup file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a backup the store of a data directory that has none (the daemon stopped), or of
    /// an empty PostgreSQL database (pg_restore, in one transaction).
    Restore {
        #[command(flatten)]
        common: Common,
        /// A file written by `keyward backup`.
        #[arg(long)]
        from: PathBuf,
    },
    /// Load generator: signed requests over keep-alive connections.
    Bench {
        /// The daemon, or several daemons of one deployment separated by commas.
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
        /// Do not run: prepare the request (creating its key or secret), sign it once and
        /// write a Lua script for `wrk` that replays it and counts API errors.
        #[arg(long)]
        wrk_script: Option<PathBuf>,
    },
    /// Call an access-management action of the extension API (service `keyward`), e.g.
    /// `keyward admin --credentials root.json AddUser '{"Name":"alice","UseApi":1}'`.
    /// Prints the response as JSON; fails on an API error.
    Admin {
        #[command(flatten)]
        remote: Remote,
        /// The action: AddUser, ListUsers, CreateAccessKey, CreatePolicy, AttachUserPolicy...
        action: String,
        /// The request parameters as a JSON object.
        #[arg(default_value = "{}")]
        params: String,
    },
    /// What an operator checks first: version, HSM backend and token, store, readiness, key
    /// counts and the audit log's position, from a running daemon (root credentials). Exits
    /// non-zero when the daemon is not ready.
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// Audit log tools: verify the hash chain and signed checkpoints, export as JSON lines.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Serve a bare HTTP endpoint (fixed 100-byte JSON) to measure the HTTP ceiling.
    #[command(hide = true)]
    BareHttp {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
    },
}

#[derive(clap::Args)]
struct Remote {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    endpoint: String,
    /// JSON file with SecretId/SecretKey/Region, as printed by `keyward init`.
    #[arg(long)]
    credentials: PathBuf,
}

/// Where an audit command reads the log: the data directory directly (the daemon must be
/// stopped: it holds the database exclusively), or a running daemon through its API.
#[derive(clap::Args)]
struct AuditSource {
    #[command(flatten)]
    common: Common,
    /// Ask a running daemon instead of reading the data directory.
    #[arg(long, requires = "credentials")]
    endpoint: Option<String>,
    #[arg(long)]
    credentials: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the chain and check every checkpoint signature. Prints a JSON report; exits
    /// non-zero at the first broken record.
    Verify {
        #[command(flatten)]
        source: AuditSource,
        /// Expected SHA-256 fingerprint (hex) of the audit public key; without it the key
        /// stored beside the log is trusted (compare its printed fingerprint out of band).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Check archived segment files offline: each record's hash and link, each seal's
    /// signed checkpoint, and that consecutive segments link up. Prints one JSON line per
    /// segment; exits non-zero at the first fault.
    VerifyArchive {
        /// Segment files (`audit-<first>-<last>.jsonl`), in any order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Expected SHA-256 fingerprint (hex) of the audit public key.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Print every record as one JSON object per line.
    Export {
        #[command(flatten)]
        source: AuditSource,
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

fn client(remote_endpoint: &str, credentials: &std::path::Path) -> crate::Result<TcClient> {
    let text = std::fs::read_to_string(credentials)?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| crate::Error::Config(format!("{}: {e}", credentials.display())))?;
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    TcClient::new(
        remote_endpoint,
        &field("SecretId"),
        &field("SecretKey"),
        &field("Region"),
    )
}

/// A response's `Error`, as a CLI failure.
fn api_result(resp: serde_json::Value) -> crate::Result<serde_json::Value> {
    match resp.get("Error") {
        Some(e) => Err(crate::Error::Cli(format!(
            "{}: {}",
            e["Code"].as_str().unwrap_or(""),
            e["Message"].as_str().unwrap_or("")
        ))),
        None => Ok(resp),
    }
}

/// Opens the store for reading the audit log: a stopped daemon's SQLite file, or the
/// PostgreSQL database (which daemons do not hold exclusively, so they may keep running).
fn offline_store(common: &Common) -> crate::Result<std::sync::Arc<dyn crate::store::Store>> {
    let cfg = load_config(common)?;
    let path = cfg.data_dir.join(crate::server::DB_FILE);
    if matches!(cfg.store, crate::config::StoreConfig::Sqlite) && !path.exists() {
        return Err(crate::Error::Config(format!(
            "{} does not exist",
            path.display()
        )));
    }
    crate::server::open_store(&cfg).map_err(|e| match e {
        crate::Error::StoreBusy(_) => crate::Error::Cli(format!(
            "{} is in use by a running daemon: stop it, or ask the daemon with \
                 --endpoint and --credentials",
            path.display()
        )),
        other => other,
    })
}

async fn audit(command: AuditCommand) -> crate::Result<()> {
    match command {
        AuditCommand::Verify {
            source,
            fingerprint,
        } => {
            let mut report = match (&source.endpoint, &source.credentials) {
                (Some(e), Some(c)) => api_result(
                    client(e, c)?
                        .call(
                            ADMIN_VERSION,
                            ADMIN_SERVICE,
                            "VerifyAuditLog",
                            serde_json::json!({}),
                        )
                        .await?,
                )?,
                _ => {
                    let store = offline_store(&source.common)?;
                    let key = store.get_meta("audit_public_key")?.ok_or_else(|| {
                        crate::Error::Config("this data directory has no audit key".into())
                    })?;
                    let r = crate::audit::verify::verify(store.as_ref(), &key)?;
                    let mut v = serde_json::to_value(&r)
                        .map_err(|e| crate::Error::Internal(e.to_string()))?;
                    v["Ok"] = serde_json::json!(r.ok());
                    v
                }
            };
            if let Some(fp) = fingerprint {
                if report["KeyFingerprint"].as_str() != Some(fp.to_ascii_lowercase().as_str()) {
                    report["Ok"] = serde_json::json!(false);
                    report["Reason"] = serde_json::json!(
                        "the audit public key does not have the expected fingerprint"
                    );
                }
            }
            println!("{report}");
            if report["Ok"] == serde_json::json!(true) {
                Ok(())
            } else {
                Err(crate::Error::Cli(format!(
                    "the audit log is broken at record {}: {}",
                    report["FirstBroken"],
                    report["Reason"].as_str().unwrap_or("")
                )))
            }
        }
        AuditCommand::VerifyArchive { files, fingerprint } => {
            verify_archive(&files, fingerprint.as_deref())
        }
        AuditCommand::Export { source, after } => {
            let mut after = after;
            match (&source.endpoint, &source.credentials) {
                (Some(e), Some(c)) => {
                    let client = client(e, c)?;
                    loop {
                        let resp = api_result(
                            client
                                .call(
                                    ADMIN_VERSION,
                                    ADMIN_SERVICE,
                                    "ExportAuditLog",
                                    serde_json::json!({ "AfterSeq": after }),
                                )
                                .await?,
                        )?;
                        let records = resp["Records"].as_array().cloned().unwrap_or_default();
                        if records.is_empty() {
                            return Ok(());
                        }
                        for r in &records {
                            line(&r.to_string())?;
                        }
                        after = resp["NextSeq"].as_u64().unwrap_or(u64::MAX);
                    }
                }
                _ => {
                    let store = offline_store(&source.common)?;
                    loop {
                        let rows = store.audit_after(after, 1000)?;
                        let Some(last) = rows.last() else {
                            return Ok(());
                        };
                        after = last.seq;
                        for r in &rows {
                            line(&crate::audit::export_json(r).to_string())?;
                        }
                    }
                }
            }
        }
    }
}

/// `keyward backup`: through the running daemon, else directly from the stopped store.
fn backup(common: &Common, out: &std::path::Path) -> crate::Result<()> {
    let cfg = load_config(common)?;
    let out = std::env::current_dir()?.join(out);
    if out.exists() {
        return Err(crate::Error::Cli(format!(
            "{} already exists",
            out.display()
        )));
    }
    if let crate::config::StoreConfig::Postgres(pg) = &cfg.store {
        let endpoint = crate::server::pg_endpoint(pg)?;
        crate::store::pg_dump::backup(&endpoint, &out)?;
        eprintln!(
            "keyward: backed up the store to {} (pg_dump, online)",
            out.display()
        );
        return Ok(());
    }
    let online = crate::control::request_backup(&cfg.data_dir, &out)?;
    if !online {
        offline_store(common)?.backup_to(&out)?;
    }
    eprintln!(
        "keyward: backed up the store to {} ({})",
        out.display(),
        if online {
            "from the running daemon"
        } else {
            "daemon not running"
        }
    );
    Ok(())
}

/// `keyward restore`: a backup becomes the store of a data directory that has none.
fn restore(common: &Common, from: &std::path::Path) -> crate::Result<()> {
    let cfg = load_config(common)?;
    if let crate::config::StoreConfig::Postgres(pg) = &cfg.store {
        let endpoint = crate::server::pg_endpoint(pg)?;
        crate::store::pg_dump::restore(&endpoint, from)?;
        eprintln!("keyward: restored {} into the database", from.display());
        return Ok(());
    }
    crate::server::create_private_dir(&cfg.data_dir)?;
    let dest = cfg.data_dir.join(crate::server::DB_FILE);
    crate::store::SqliteStore::restore(from, &dest)?;
    eprintln!("keyward: restored {} as {}", from.display(), dest.display());
    Ok(())
}

fn verify_archive(files: &[PathBuf], fingerprint: Option<&str>) -> crate::Result<()> {
    let mut segments = Vec::new();
    for f in files {
        segments.push(crate::audit::archive::verify_segment(f)?);
    }
    segments.sort_by_key(|s| s.first_seq);
    for (i, s) in segments.iter().enumerate() {
        if let Some(fp) = fingerprint {
            if s.key_fingerprint != fp.to_ascii_lowercase() {
                return Err(crate::Error::Cli(format!(
                    "{}: signed by key {}, not the expected {fp}",
                    s.file.display(),
                    s.key_fingerprint
                )));
            }
        }
        if let Some(before) = i.checked_sub(1).map(|j| &segments[j]) {
            if before.last_seq + 1 != s.first_seq || before.last_hash != s.first_prev_hash {
                return Err(crate::Error::Cli(format!(
                    "{} does not continue {} (records {}..{} missing or altered)",
                    s.file.display(),
                    before.file.display(),
                    before.last_seq + 1,
                    s.first_seq
                )));
            }
        }
        line(
            &serde_json::to_value(s)
                .map_err(|e| crate::Error::Internal(e.to_string()))?
                .to_string(),
        )?;
    }
    Ok(())
}

/// One output line; a closed pipe (`| head`) ends the export quietly.
fn line(text: &str) -> crate::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// Keyward's extension API, which `keyward admin` and `keyward audit` call.
const ADMIN_VERSION: &str = Product::Admin.version();
const ADMIN_SERVICE: &str = Product::Admin.service();

fn load_config(common: &Common) -> crate::Result<Config> {
    let mut cfg = match &common.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &common.data_dir {
        cfg.data_dir = d.clone();
    }
    crate::testbench::apply(&mut cfg)?;
    Ok(cfg)
}

/// The `cryptoki` crate logs an ERROR for every mechanism a token lists that the crate has no
/// name for (about 30 on SoftHSM2 at each start, which trips log alerting). They are expected
/// and say nothing about Keyward's health: the backend logs one summary line of what the
/// token offers instead. Shown at debug level when asked for (`cryptoki::mechanism=debug`).
const QUIET_PROBE: &str = "cryptoki::mechanism=off";

fn log_filter(requested: Option<&str>) -> tracing_subscriber::EnvFilter {
    let text = match requested.filter(|r| !r.trim().is_empty()) {
        Some(r) if r.contains("cryptoki::mechanism") => r.to_string(),
        Some(r) => format!("{r},{QUIET_PROBE}"),
        None => format!("info,{QUIET_PROBE}"),
    };
    tracing_subscriber::EnvFilter::try_new(&text)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("info,{QUIET_PROBE}")))
}

/// `KEYWARD_LOG_FORMAT=json`: one JSON object per line (timestamp, level, target, message and
/// the event's fields) for log shippers; anything else, or unset, is the human-readable text.
/// An environment variable rather than a configuration key because logging starts before the
/// configuration is read, and its own errors must be logged in the chosen format too.
fn json_logs(requested: Option<&str>) -> bool {
    requested.is_some_and(|f| f.trim().eq_ignore_ascii_case("json"))
}

fn init_tracing() {
    let filter = log_filter(std::env::var("KEYWARD_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match json_logs(std::env::var("KEYWARD_LOG_FORMAT").ok().as_deref()) {
        true => builder.json().flatten_event(true).try_init(),
        false => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
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
            let started = tokio::task::spawn_blocking(move || crate::server::bootstrap(cfg))
                .await
                .map_err(|e| crate::Error::Internal(e.to_string()))??;
            if let Some(cred) = &started.issued {
                // Printed once, on first start, so a fresh `serve` is usable without `init`.
                eprintln!(
                    "keyward: created the root account; its API key (shown only now):\n{}",
                    serde_json::to_string(cred).unwrap_or_default()
                );
            }
            crate::server::serve(started.state, started.store).await
        }
        Command::Status { remote } => {
            let status = api_result(
                client(&remote.endpoint, &remote.credentials)?
                    .call(
                        ADMIN_VERSION,
                        ADMIN_SERVICE,
                        "DescribeDeployment",
                        serde_json::json!({}),
                    )
                    .await?,
            )?;
            println!("{status}");
            let unready: Vec<String> = status["Ready"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, ok)| **ok != serde_json::json!(true))
                        .map(|(name, _)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            match unready.is_empty() {
                true => Ok(()),
                false => Err(crate::Error::Cli(format!(
                    "not ready: {}",
                    unready.join(", ")
                ))),
            }
        }
        Command::Init {
            common,
            softhsm,
            softhsm_module,
        } => {
            let mut cfg = load_config(&common)?;
            let dir = cfg.data_dir.clone();
            let bench = match softhsm {
                true => {
                    if dir.join(crate::server::DB_FILE).exists() {
                        return Err(crate::Error::Config(format!(
                            "{} is already initialised on another HSM",
                            dir.display()
                        )));
                    }
                    Some(crate::testbench::provision(&mut cfg, &softhsm_module)?)
                }
                false => None,
            };
            let started = tokio::task::spawn_blocking(move || {
                let started = crate::server::bootstrap(cfg)?;
                // Start-up took the jobs lease; the daemon started next must not wait for
                // its term to end.
                started.state.jobs.leader.release();
                Ok::<_, crate::Error>(started)
            })
            .await
            .map_err(|e| crate::Error::Internal(e.to_string()))??;
            if let Some(b) = bench {
                // stdout carries the root API key as JSON; the SO PIN goes to the operator.
                eprintln!(
                    "keyward: created a SoftHSM2 token in {} (user PIN in its 0600 file `pin`); \
                     its SO PIN, shown only now and kept nowhere: {}",
                    b.dir.display(),
                    b.so_pin.as_str()
                );
            }
            match started.issued {
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
            wrk_script,
        } => {
            let text = std::fs::read_to_string(&credentials)?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| crate::Error::Config(format!("{}: {e}", credentials.display())))?;
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let args = BenchArgs {
                endpoint,
                secret_id: field("SecretId"),
                secret_key: field("SecretKey"),
                region: field("Region"),
                action,
                concurrency,
                duration: Duration::from_secs(duration),
                key_id,
            };
            if let Some(path) = wrk_script {
                std::fs::write(&path, bench::wrk_script(&args).await?)?;
                return Ok(());
            }
            println!("{}", bench::run(args).await?);
            Ok(())
        }
        Command::Admin {
            remote,
            action,
            params,
        } => {
            let body: serde_json::Value = serde_json::from_str(&params)
                .map_err(|e| crate::Error::Config(format!("parameters are not JSON: {e}")))?;
            let resp = api_result(
                client(&remote.endpoint, &remote.credentials)?
                    .call(ADMIN_VERSION, ADMIN_SERVICE, &action, body)
                    .await?,
            )?;
            println!(
                "{}",
                serde_json::to_string_pretty(&resp).unwrap_or_default()
            );
            Ok(())
        }
        Command::Audit { command } => audit(command).await,
        Command::Backup { common, out } => {
            tokio::task::spawn_blocking(move || backup(&common, &out))
                .await
                .map_err(|e| crate::Error::Internal(e.to_string()))?
        }
        Command::Restore { common, from } => restore(&common, &from),
        Command::BareHttp { listen } => bench::serve_bare(listen).await,
    }
}

#[cfg(test)]
mod tests {
    use super::{json_logs, log_filter};

    #[test]
    fn json_logs_only_when_asked_for() {
        assert!(json_logs(Some("json")));
        assert!(json_logs(Some(" JSON ")));
        for other in [None, Some(""), Some("text"), Some("jsonl")] {
            assert!(!json_logs(other), "{other:?}");
        }
    }

    #[test]
    fn the_probe_stays_quiet_unless_asked_for() {
        for (asked, want) in [
            (None, "info,cryptoki::mechanism=off"),
            (Some("debug"), "debug,cryptoki::mechanism=off"),
            (
                Some("info,cryptoki::mechanism=debug"),
                "info,cryptoki::mechanism=debug",
            ),
        ] {
            // EnvFilter prints its directives in an order of its own.
            let mut got: Vec<String> = log_filter(asked)
                .to_string()
                .split(',')
                .map(String::from)
                .collect();
            got.sort();
            let mut want: Vec<&str> = want.split(',').collect();
            want.sort();
            assert_eq!(got, want);
        }
    }
}
