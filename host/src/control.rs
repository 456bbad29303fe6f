//! The operator's control socket: what `keyward backup` asks a running daemon for. The
//! daemon holds its SQLite file exclusively, so an online backup can only be made by the
//! daemon itself, through its own connection.
//!
//! The socket is in Linux's abstract namespace, named after the data directory's canonical
//! path, so it leaves no file in the data directory (which operators copy and tests scan).
//! Abstract sockets have no file permissions, so each connection's peer is checked
//! (`SO_PEERCRED`): only the daemon's own user and root are answered — who can read the store
//! file anyway — so the socket needs no API credentials and may name any destination path.
//! Protocol: one request line `backup <absolute path>`, one answer line `ok` or
//! `error <message>`.

use crate::api::AppState;
use crate::audit::record::AuditRecord;
use crate::error::{Error, Result};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// The abstract socket name of the daemon serving `data_dir`.
fn socket_name(data_dir: &Path) -> Result<Vec<u8>> {
    let canonical = std::fs::canonicalize(data_dir)?;
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    Ok(format!("keyward-control-{}", hex::encode(&digest[..16])).into_bytes())
}

#[cfg(target_os = "linux")]
fn address(data_dir: &Path) -> Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    Ok(std::os::unix::net::SocketAddr::from_abstract_name(
        socket_name(data_dir)?,
    )?)
}

/// Listens on the data directory's control socket until the process exits. Failing to
/// listen (another daemon on the same directory, another OS) is logged, not fatal: only
/// `keyward backup` needs it.
pub fn listen(state: Arc<AppState>, store: Arc<dyn Store>, data_dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        let bound = address(data_dir).and_then(|a| {
            let l = std::os::unix::net::UnixListener::bind_addr(&a)?;
            l.set_nonblocking(true)?;
            Ok(tokio::net::UnixListener::from_std(l)?)
        });
        let listener = match bound {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "no control socket: `keyward backup` will not reach this daemon");
                return;
            }
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                if !peer_allowed(&stream) {
                    tracing::warn!("control socket: refused a connection from another user");
                    continue;
                }
                let (state, store) = (state.clone(), store.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_one(stream, &state, store).await {
                        tracing::warn!(error = %e, "control socket request failed");
                    }
                });
            }
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (state, store, data_dir);
}

/// Only this process's user and root may ask.
fn peer_allowed(stream: &tokio::net::UnixStream) -> bool {
    // SAFETY: geteuid only reads the process's credentials.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == me || c.uid() == 0)
}

async fn serve_one(
    stream: tokio::net::UnixStream,
    state: &AppState,
    store: Arc<dyn Store>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(4096);
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .map_err(|_| Error::Cli("no request within 10 seconds".into()))??;
    let answer = match line.trim_end().split_once(' ') {
        Some(("backup", dest)) if Path::new(dest).is_absolute() => {
            let dest = PathBuf::from(dest);
            let shown = dest.display().to_string();
            let done = tokio::task::spawn_blocking(move || store.backup_to(&dest))
                .await
                .map_err(|e| Error::Internal(e.to_string()))
                .and_then(|r| r);
            let mut record =
                AuditRecord::system("keyward", "BackupStore", &state.cfg.regions[0].name, 0);
            record.resources = vec![shown.clone()];
            match done {
                Ok(()) => {
                    tracing::info!(dest = %shown, "store backed up");
                    state.audit.submit(record);
                    "ok".to_string()
                }
                Err(e) => {
                    tracing::error!(dest = %shown, error = %e, "backup failed");
                    record.result_code = "InternalError".into();
                    state.audit.submit(record);
                    format!("error {e}")
                }
            }
        }
        _ => "error expected `backup <absolute path>`".to_string(),
    };
    write.write_all(format!("{answer}\n").as_bytes()).await?;
    Ok(())
}

/// Asks the daemon serving `data_dir` for a backup into `dest`. `Ok(false)`: no daemon
/// listens there (make the backup offline instead).
pub fn request_backup(data_dir: &Path, dest: &Path) -> Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::io::{BufRead, Write};
        if !data_dir.exists() {
            return Ok(false);
        }
        let mut stream = match std::os::unix::net::UnixStream::connect_addr(&address(data_dir)?) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let dest = dest
            .to_str()
            .filter(|d| !d.contains('\n'))
            .ok_or_else(|| Error::Cli("the backup path must be UTF-8 without newlines".into()))?;
        stream.write_all(format!("backup {dest}\n").as_bytes())?;
        let mut answer = String::new();
        std::io::BufReader::new(stream).read_line(&mut answer)?;
        match answer.trim_end() {
            "ok" => Ok(true),
            other => Err(Error::Cli(format!(
                "the daemon could not make the backup: {}",
                other.strip_prefix("error ").unwrap_or(other)
            ))),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (data_dir, dest);
        Ok(false)
    }
}
