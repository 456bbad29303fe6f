//! Start-up: data directory, store, HSM, accounts, then the HTTP(S) listener.

use crate::alarms::Alarms;
use crate::api::ratelimit::Limiter;
use crate::api::{self, AppState};
use crate::audit::Audit;
use crate::cam::{Accounts, Cam, IssuedCredential, ROOT_UIN};
use crate::clock::AdjustableClock;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, HsmConfig, Limits, StoreConfig};
use crate::error::{Error, Result};
use crate::hsm;
use crate::integrity::SystemKey;
use crate::jobs::{JobReport, Jobs};
use crate::kms::Kms;
use crate::leader::Leadership;
use crate::metrics::Metrics;
use crate::ssm::Ssm;
use crate::store::{PgEndpoint, PgStore, SqliteStore, Store};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Instant;

pub const DB_FILE: &str = "keyward.db";

/// What start-up opened: the services, the root credential if this start created it, and the
/// store (which only this module holds whole: the control socket backs it up).
pub struct Started {
    pub state: Arc<AppState>,
    pub issued: Option<IssuedCredential>,
    pub store: Arc<dyn Store>,
}

/// Opens (creating on first use) everything the daemon needs.
// Long function: it wires every service in the one order start-up needs (each takes what
// the ones before it built); split up, that order would be harder to see.
pub fn bootstrap(cfg: Config) -> Result<Started> {
    cfg.validate()?;
    create_private_dir(&cfg.data_dir)?;
    let store = open_store(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    store.observe_timing(metrics.clone());
    let hsm = metrics.meter_hsm(hsm::open(
        &cfg,
        SystemKey::store_is_bound(store.as_ref())?,
        SystemKey::pinned_identity(store.as_ref())?,
    )?);
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
    let system = SystemKey::open(store.as_ref(), hsm.clone())?;
    Cam::seal_legacy_authorization(store.as_ref(), store.as_ref(), system.clone())?;
    let accounts = Accounts::open(store.clone(), store.as_ref(), system.clone(), clock.clone())?;
    let issued = accounts.ensure_root(store.as_ref(), &cfg.regions[0].name)?;
    let cfg = Arc::new(cfg);
    let alarms = Arc::new(Alarms::new(store.clone()));
    let kms = Arc::new(Kms::new(
        store.clone(),
        store.clone(),
        system.clone(),
        cfg.clone(),
        clock.clone(),
        alarms.clone(),
    ));
    kms.tag_legacy_versions(store.as_ref())?;
    let ssm = Arc::new(Ssm::new(
        kms.clone(),
        store.clone(),
        store.clone(),
        alarms.clone(),
        cfg.clone(),
        clock.clone(),
    ));
    // Take the jobs lease now if it is free, so a lone daemon runs its jobs from the start
    // (and signs the audit tail a crash left); with several daemons one of them has it.
    let leader = Arc::new(Leadership::new(
        store.clone(),
        Duration::from_secs(cfg.scheduler.lease_secs),
    ));
    leader.renew()?;
    let jobs = Jobs::new(
        kms.clone(),
        ssm.clone(),
        store.clone(),
        leader.clone(),
        adjustable,
    );
    let audit = Audit::start(store.clone(), store.as_ref(), hsm, &cfg.audit, leader)?;
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
    // Inline only when nothing in the action waits: a serial device's answer takes a round
    // trip over the line (and a lost one the link's timeout), which on a tokio worker would
    // stall every connection that worker serves and cap the requests on the line at the
    // number of workers, whatever the link's window.
    let inline_reads = store.reads_inline() && !matches!(cfg.hsm, HsmConfig::Serial(_));
    let cam = Arc::new(Cam::new(
        accounts,
        store.clone(),
        system,
        clock.clone(),
        api::actions::ACTIONS.iter().map(|a| a.cam_name()).collect(),
    ));
    ssm.set_key_issuer(cam.clone());
    // Other daemons sharing the store change what this one caches: follow their changes
    // from before the first request.
    store.watch_changes(crate::coherence::sink(kms.clone(), cam.clone()))?;
    Ok(Started {
        state: Arc::new(AppState {
            metrics,
            inline_reads,
            kms,
            ssm,
            cam,
            cfg,
            clock,
            jobs,
            alarms,
            limiter,
            audit,
        }),
        issued,
        store,
    })
}

/// The store `[store]` names: `<data_dir>/keyward.db` (SQLite, the default) or a PostgreSQL
/// database.
pub fn open_store(cfg: &Config) -> Result<Arc<dyn Store>> {
    Ok(match &cfg.store {
        StoreConfig::Sqlite => Arc::new(SqliteStore::open(&cfg.data_dir.join(DB_FILE))?),
        StoreConfig::Postgres(pg) => {
            let endpoint = pg_endpoint(pg)?;
            if let Some(var) = &pg.password_env {
                // As with the HSM PIN (hsm/pkcs11.rs, which says why this is sound during
                // start-up): out of the environment once read, so child processes and
                // environment dumps do not see it. The pool keeps it to open connections.
                std::env::remove_var(var);
            }
            let store = PgStore::open(endpoint, pg.pool_size)?;
            tracing::info!(
                pool_size = pg.pool_size,
                tls = pg.tls_ca.is_some(),
                "store: PostgreSQL"
            );
            Arc::new(store)
        }
    })
}

/// How to reach `[store]`'s PostgreSQL database: its URL, the password from its file or
/// variable, and TLS verified against `tls_ca` when set (docs/postgres.md).
pub fn pg_endpoint(pg: &crate::config::PostgresConfig) -> Result<PgEndpoint> {
    let password = pg.password()?;
    let tls = match &pg.tls_ca {
        Some(path) => {
            let roots = crate::ca::roots(path, "store.tls_ca")?;
            Some((path.clone(), crate::ca::client_config(roots)?))
        }
        None => None,
    };
    PgEndpoint::new(&pg.url, password.as_deref().map(|p| p.as_str()), tls)
}

pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)?;
    // An existing directory (or database) made by hand or by an older build may be readable
    // by others: tighten it, since it holds sealed keys, envelope-encrypted secrets and the
    // audit log.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        for name in [DB_FILE, "keyward.db-wal", "keyward.db-shm"] {
            let path = dir.join(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Serves until SIGINT/SIGTERM. Prints `keyward: listening on <url>` on stderr once bound.
pub async fn serve(state: Arc<AppState>, store: Arc<dyn Store>) -> Result<()> {
    let cfg = state.cfg.clone();
    spawn_background_jobs(&state)?;
    crate::control::listen(state.clone(), store, &cfg.data_dir);
    let app = api::router(state.clone());
    // The web console shares the listener (and TLS) and runs every action through
    // `api::run_as`, so through the same action table, access checks and audit log.
    let app = match cfg.console.enabled {
        true => app
            .nest("/console", crate::console::router(state.clone()))
            // `nest` does not route the prefix with a trailing slash.
            .route(
                "/console/",
                axum::routing::get(|| async { axum::response::Redirect::to("/console/keys") }),
            ),
        false => app,
    };
    let tls = match &cfg.tls {
        Some(tls) => {
            // The rustls build carries only the ring provider; make it the process default.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rustls_cfg =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .map_err(|e| Error::Config(format!("TLS certificate/key: {e}")))?;
            reload_certificate_on_sighup(rustls_cfg.clone(), tls.cert.clone(), tls.key.clone());
            Some(rustls_cfg)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("keyward: listening on {scheme}://{addr}");
    // systemd (Type=notify): started means serving, not merely forked.
    notify_service_manager(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {scheme}://{addr}")),
    ]);
    accept_connections(listener, tls, app, &cfg.limits).await;
    // Queued audit records become durable (and signed) before the process exits.
    let st = state.clone();
    let _ = tokio::task::spawn_blocking(move || {
        st.audit.flush();
        let flushed = st.cam.accounts.flush_last_used();
        // Another daemon takes the scheduled work over now rather than at the term's end.
        st.jobs.leader.release();
        flushed
    })
    .await;
    tracing::info!("keyward stopped");
    Ok(())
}

/// Tells systemd how the service is doing (`Type=notify` in the packaged unit). Without
/// `NOTIFY_SOCKET` in the environment (not started by systemd) it does nothing.
fn notify_service_manager(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// SIGHUP reloads the TLS certificate and key from their files, without a restart and
/// without dropping connections; a pair that does not load is reported and the one in use
/// stays.
fn reload_certificate_on_sighup(
    config: axum_server::tls_rustls::RustlsConfig,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: certificate reload is unavailable");
            return;
        };
        while hup.recv().await.is_some() {
            match config.reload_from_pem_file(&cert, &key).await {
                Ok(()) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS certificate reload failed; the previous one stays in use")
                }
            }
        }
    });
}

/// How long requests in flight may take to finish once shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The accept loop of both the plain and the TLS listener, with the `[limits]` connection
/// bounds: at most `max_connections` open at once, a request head within
/// `header_read_timeout_secs`, no connection silent for longer than `idle_timeout_secs` (the
/// body timeout is applied by `api::handle`). Without them, clients that connect and send
/// nothing hold a descriptor each until the process runs out and legitimate requests time out.
async fn accept_connections(
    listener: tokio::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    app: axum::Router,
    limits: &Limits,
) {
    use tower_service::Service;
    let header_timeout = Duration::from_secs(limits.header_read_timeout_secs);
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    // HTTP/1 for plain connections; over TLS whatever ALPN settled on.
    let mut h1 = auto::Builder::new(TokioExecutor::new()).http1_only();
    h1.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut h2 = auto::Builder::new(TokioExecutor::new()).http2_only();
    h2.http2().timer(TokioTimer::new());
    let (h1, h2) = (Arc::new(h1), Arc::new(h2));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        // A slot is taken before accepting: over the limit, new connections wait in the
        // kernel's listen backlog rather than each holding a descriptor here.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off
                    // briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let Ok(service) = make_service.call(peer).await;
        let service = TowerToHyperService::new(service);
        // The configuration as of this connection: a reloaded certificate serves every
        // connection accepted after the reload.
        let tls = tls
            .as_ref()
            .map(|c| tokio_rustls::TlsAcceptor::from(c.get_inner()));
        let (watcher, h1, h2) = (graceful.watcher(), h1.clone(), h2.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let io = IdleTimeout::new(tcp, idle);
            let served = match tls {
                None => {
                    watcher
                        .watch(h1.serve_connection(TokioIo::new(io), service))
                        .await
                }
                Some(acceptor) => {
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(io)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let builder = match stream.get_ref().1.alpn_protocol() {
                        Some(b"h2") => &h2,
                        _ => &h1,
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    notify_service_manager(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining requests and flushing the audit log"),
    ]);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period");
    }
}

/// A connection that closes itself (with `TimedOut`) once nothing has been read or written
/// for `idle`, whatever the layers above are waiting for. The deadline moves on only when the
/// timer fires, not on every read or write, so busy connections pay no timer updates.
struct IdleTimeout<T> {
    inner: T,
    idle: Duration,
    last_progress: Instant,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<T> IdleTimeout<T> {
    fn new(inner: T, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            last_progress: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Called when the inner stream is not ready: an error once the connection has been
    /// silent for `idle`, else pending (with the timer registered to wake this task).
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_progress + self.idle;
            if Instant::now() >= due {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            self.deadline.as_mut().reset(due);
        }
    }

    fn progressed<R>(&mut self, r: Poll<io::Result<R>>, moved: bool) -> Poll<io::Result<R>> {
        if moved {
            self.last_progress = Instant::now();
        }
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => this.poll_silence(cx).map(Err),
            r => {
                let moved = buf.filled().len() > before;
                this.progressed(r, moved)
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.poll_silence(cx).map(Err),
            r => {
                let moved = matches!(r, Poll::Ready(Ok(n)) if n > 0);
                this.progressed(r, moved)
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_silence(cx).map(Err),
            r => {
                let moved = matches!(r, Poll::Ready(Ok(n)) if n > 0);
                this.progressed(r, moved)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_silence(cx).map(Err),
            r => r,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Pending => this.poll_silence(cx).map(Err),
            r => r,
        }
    }
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
                let report = st.jobs.run_due()?;
                if report.leader {
                    st.audit.apply_retention(st.clock.now(), &st.cfg)?;
                }
                Ok(report)
            };
            match tokio::task::spawn_blocking(jobs).await {
                Ok(Ok(r)) if !r.is_empty() => {
                    tracing::info!(
                        rotated = r.rotated,
                        reminded = r.reminded,
                        deleted = r.deleted,
                        secrets = r.secrets_deleted,
                        secrets_rotated = r.secrets_rotated,
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
        tokio::spawn(
            state
                .alarms
                .clone()
                .deliver_forever(uri, state.jobs.leader.clone()),
        );
    }
    // The jobs lease: extended every third of its term, so it is never near its end while
    // this daemon runs; taken when another holder stopped extending it.
    let leader = state.jobs.leader.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(leader.term() / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let l = leader.clone();
            match tokio::task::spawn_blocking(move || l.renew()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot renew the jobs lease"),
                Err(e) => tracing::error!(error = %e, "renewing the jobs lease panicked"),
            }
        }
    });
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
