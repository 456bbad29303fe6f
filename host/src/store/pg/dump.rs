//! `keyward backup` and `keyward restore` on a PostgreSQL store, through PostgreSQL's own
//! `pg_dump` and `pg_restore` (on the PATH; Debian's `postgresql-client`). They already make a
//! consistent online snapshot (one repeatable-read transaction) in a format that survives
//! server upgrades; a dumper of our own would only copy them less well. What Keyward adds:
//! the connection and password come from `keyward.toml` as for the daemon (the password
//! reaches the child in its environment, never its command line), the backup file is created
//! 0600 and never overwritten, a restore goes only into an empty database, only from a dump of
//! a Keyward store, and in one transaction (a failed restore leaves the database empty).

use super::{blocking, Endpoint};
use crate::error::{Error, Result};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;

/// `pg_restore --list` names every object a dump holds, one per line
/// (`215; 1259 16385 TABLE public keyward_schema owner`): a Keyward store has this table.
fn lists_schema_table(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words
        .windows(3)
        .any(|w| w[0] == "TABLE" && w[2] == "keyward_schema")
}

/// Writes a custom-format dump of the database to `out`, which must not exist.
pub fn backup(endpoint: &Endpoint, out: &Path) -> Result<()> {
    // Created here, 0600, so the dump is never readable by others, even while written.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| Error::Cli(format!("cannot create {}: {e}", out.display())))?;
    let result = run(endpoint
        .tool("pg_dump")
        .args(["--format=custom", "--no-owner", "--no-privileges", "--file"])
        .arg(out)
        .arg(format!("--dbname={}", endpoint.url)));
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

/// Restores a dump made by [`backup`] into the (empty) database `url` names.
pub fn restore(endpoint: &Endpoint, from: &Path) -> Result<()> {
    let listing = output(endpoint.tool("pg_restore").arg("--list").arg(from))?;
    if !listing.lines().any(lists_schema_table) {
        return Err(Error::Cli(format!(
            "{} is not a dump of a Keyward store (no keyward_schema table)",
            from.display()
        )));
    }
    let tables: i64 = blocking(|| -> Result<i64> {
        let mut client = endpoint.connect()?;
        let row = client.query_one(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
            &[],
        )?;
        Ok(row.get(0))
    })?;
    if tables != 0 {
        return Err(Error::Cli(format!(
            "the database already holds {tables} table(s): restore into an empty database"
        )));
    }
    run(endpoint
        .tool("pg_restore")
        .args([
            "--single-transaction",
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
        ])
        .arg(format!("--dbname={}", endpoint.url))
        .arg(from))
}

fn output(c: &mut Command) -> Result<String> {
    let name = c.get_program().to_string_lossy().into_owned();
    let out = c.output().map_err(|e| {
        Error::Cli(format!(
            "cannot run {name} (install postgresql-client): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Cli(format!(
            "{name} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(c: &mut Command) -> Result<()> {
    output(c).map(drop)
}
