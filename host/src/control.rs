//! The operator's control socket, `<data_dir>/control.sock`: what `keyward backup` asks a
//! running daemon for. The daemon holds its SQLite file exclusively, so an online backup can
//! only be made by the daemon itself, through its own connection.
//!
//! Who may connect is who may enter the data directory (mode 0700, the socket 0600): the
//! daemon's user or root, who can read the store file anyway; so the socket needs no API
//! credentials and may name any destination path. Protocol: one request line
//! `backup <absolute path>`, one answer line `ok` or `error <message>`.

use crate::api::AppState;
use crate::audit::record::AuditRecord;
use crate::error::{Error, Result};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub const SOCKET: &str = "control.sock";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Listens on the data directory's control socket until the process exits. A socket left
/// by a crashed daemon is replaced (the store's lock already makes this the only daemon of
/// the directory). Failing to listen is logged, not fatal: only `keyward backup` needs it.
pub fn listen(state: Arc<AppState>, store: Arc<dyn Store>, data_dir: &Path) {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "no control socket: `keyward backup` will not reach this daemon");
            return;
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (state, store) = (state.clone(), store.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_one(stream, &state, store).await {
                    tracing::warn!(error = %e, "control socket request failed");
                }
            });
        }
    });
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
    use std::io::{BufRead, Write};
    let mut stream = match std::os::unix::net::UnixStream::connect(socket_path(data_dir)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false)
        }
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
