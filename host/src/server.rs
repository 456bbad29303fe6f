//! Start-up: data directory, store, HSM, accounts, then the HTTP(S) listener.

use crate::alarms::Alarms;
use crate::api::ratelimit::Limiter;
use crate::api::{self, AppState};
use crate::audit::Audit;
use crate::cam::{Accounts, Cam, IssuedCredential, ROOT_UIN};
use crate::clock::AdjustableClock;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::hsm;
use crate::jobs::{JobReport, Jobs};
use crate::kms::Kms;
use crate::ssm::Ssm;
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
    let hsm = hsm::open(&cfg, Accounts::store_is_bound(store.as_ref())?)?;
    let adjustable = match cfg.testing.adjustable_clock {
        true => {
            tracing::warn!(
                "[testing] adjustable_clock is on: the root account can move time forward"
            );
            let offset = Jobs::stored_clock_offset(store.as_ref())?;
            Some(Arc::new(AdjustableClock::with_offset(offset)))
        }
        false => None,
    };
    let clock: Arc<dyn Clock> = match &adjustable {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let accounts = Accounts::open(store.clone(), store.as_ref(), hsm.clone(), clock.clone())?;
    let issued = accounts.ensure_root(store.as_ref(), &cfg.regions[0].name)?;
    let cfg = Arc::new(cfg);
    let alarms = Arc::new(Alarms::new(store.clone()));
    let hsm_for_audit = hsm.clone();
    let kms = Arc::new(Kms::new(
        store.clone(),
        store.clone(),
        hsm,
        cfg.clone(),
        clock.clone(),
        alarms.clone(),
    ));
    let ssm = Arc::new(Ssm::new(
        kms.clone(),
        store.clone(),
        cfg.clone(),
        clock.clone(),
    ));
    let jobs = Jobs::new(kms.clone(), ssm.clone(), store.clone(), adjustable);
    let audit = Audit::start(store.clone(), store.as_ref(), hsm_for_audit, &cfg.audit)?;
    tracing::info!(
        key_fingerprint = %audit.signer.fingerprint(),
        enabled = audit.enabled(),
        "audit log ready"
    );
    // Each served region has its service-managed key from the start, so Secrets Manager
    // and operators always find it (ListKeys Role=1).
    for region in &cfg.regions {
        kms.managed_key(&region.name, ROOT_UIN)?;
    }
    let limiter = Limiter::new(&cfg.rate_limit);
    Ok((
        Arc::new(AppState {
            kms,
            ssm,
            cam: Cam::new(accounts, store.clone(), clock.clone()),
            cfg,
            clock,
            jobs,
            alarms,
            limiter,
            audit,
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
    spawn_background_jobs(&state)?;
    let app = api::router(state.clone());
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
                .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
                .await?;
        }
        None => {
            let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
            let addr = listener.local_addr()?;
            eprintln!("keyward: listening on http://{addr}");
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(shutdown_signal())
            .await?;
        }
    }
    // Queued audit records become durable (and signed) before the process exits.
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        st.audit.flush();
        st.cam.accounts.flush_last_used()
    })
    .await;
    tracing::info!("keyward stopped");
    Ok(())
}

/// The scheduler (rotation, deletion reminders, deletion) and the alarm webhook deliverer.
fn spawn_background_jobs(state: &Arc<AppState>) -> Result<()> {
    let st = state.clone();
    let every = std::time::Duration::from_secs(state.cfg.scheduler.interval_secs.max(1));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let st = st.clone();
            let jobs = move || -> Result<JobReport> {
                st.cam.accounts.flush_last_used()?;
                st.limiter.housekeeping();
                st.jobs.run_due()
            };
            match tokio::task::spawn_blocking(jobs).await {
                Ok(Ok(r)) if !r.is_empty() => {
                    tracing::info!(
                        rotated = r.rotated,
                        reminded = r.reminded,
                        deleted = r.deleted,
                        secrets = r.secrets_deleted,
                        "scheduled jobs ran"
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "scheduled jobs failed"),
                Err(e) => tracing::error!(error = %e, "scheduled jobs panicked"),
            }
        }
    });
    if let Some(url) = &state.cfg.alarms.webhook {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| Error::Config(format!("alarms.webhook: {e}")))?;
        tokio::spawn(state.alarms.clone().deliver_forever(uri));
    }
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
