//! Start-up: data directory, store, HSM, accounts, then the HTTP(S) listener.

use crate::accounts::{Accounts, IssuedCredential};
use crate::api::{self, AppState};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hsm;
use crate::kms::Kms;
use crate::store::{SqliteStore, Store};
use std::path::Path;
use std::sync::Arc;

pub const DB_FILE: &str = "keyward.db";

/// Opens (creating on first use) everything the daemon needs. Returns the root credential if
/// this call created it.
pub fn bootstrap(cfg: Config) -> Result<(Arc<AppState>, Option<IssuedCredential>)> {
    cfg.validate()?;
    create_private_dir(&cfg.data_dir)?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&cfg.data_dir.join(DB_FILE))?);
    let hsm = hsm::open(&cfg)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let accounts = Accounts::open(store.clone(), hsm.clone(), clock.clone())?;
    let issued = accounts.ensure_root(&cfg.regions[0].name)?;
    let cfg = Arc::new(cfg);
    let kms = Kms::new(store, hsm, cfg.clone(), clock.clone());
    Ok((
        Arc::new(AppState {
            kms,
            accounts,
            cfg,
            clock,
        }),
        issued,
    ))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    Ok(())
}

/// Serves until SIGINT/SIGTERM. Prints `keyward: listening on <url>` on stderr once bound.
pub async fn serve(state: Arc<AppState>) -> Result<()> {
    let cfg = state.cfg.clone();
    let app = api::router(state);
    match &cfg.tls {
        Some(tls) => {
            // The rustls build carries only the ring provider; make it the process default.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_cfg =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .map_err(|e| Error::Config(format!("TLS certificate/key: {e}")))?;
            let listener = std::net::TcpListener::bind(cfg.listen)?;
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            eprintln!("keyward: listening on https://{addr}");
            let handle = axum_server::Handle::new();
            let h2 = handle.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                h2.graceful_shutdown(Some(std::time::Duration::from_secs(5)));
            });
            axum_server::from_tcp_rustls(listener, rustls_cfg)?
                .handle(handle)
                .serve(app.into_make_service())
                .await?;
        }
        None => {
            let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
            let addr = listener.local_addr()?;
            eprintln!("keyward: listening on http://{addr}");
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown_signal())
                .await?;
        }
    }
    tracing::info!("keyward stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
