//! What every rotation target does (create an account, set its password, lock it, drop it,
//! check a login) and what they share: logins, generated passwords, validated grants.
//!
//! Passwords reach the targets only as one-way verifiers wherever the server accepts one
//! (MySQL's `mysql_native_password` hash, PostgreSQL's SCRAM-SHA-256 verifier, Redis's
//! SHA-256 `#` form), so the cleartext appears in no statement a server could log.

use crate::config::{DatabaseConfig, DatabaseKind};
use crate::error::{Error, Result};
use rand_core::{OsRng, RngCore};
use serde::Deserialize;
use std::time::Duration;
use zeroize::Zeroizing;

/// A user name and its password. Its `Debug` never shows the password.
#[derive(Clone)]
pub struct Login {
    pub user: String,
    pub password: Zeroizing<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, <redacted>)", self.user)
    }
}

/// The stored value of a database credential secret (the shape Tencent's GetSecretValue
/// returns for product secrets), and of the admin secret a `[[databases]]` entry names.
#[derive(serde::Serialize, Deserialize)]
pub struct LoginValue {
    #[serde(rename = "UserName")]
    pub user: String,
    #[serde(rename = "Password")]
    pub password: Zeroizing<String>,
}

impl LoginValue {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Login> {
        let v: LoginValue = serde_json::from_slice(bytes).map_err(|_| {
            Error::TargetFailed(format!(
                "{what} is not a JSON login {{\"UserName\": …, \"Password\": …}}"
            ))
        })?;
        Ok(Login {
            user: v.user,
            password: v.password,
        })
    }

    pub fn to_bytes(login: &Login) -> Zeroizing<Vec<u8>> {
        let v = LoginValue {
            user: login.user.clone(),
            password: login.password.clone(),
        };
        Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default())
    }
}

/// 32 letters and digits from the OS generator (about 190 bits): no character any SQL
/// dialect or client quoting treats specially.
pub fn new_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Zeroizing::new(String::with_capacity(32));
    while out.len() < 32 {
        let mut b = [0u8; 1];
        OsRng.fill_bytes(&mut b);
        // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
        if b[0] < 248 {
            out.push(ALPHABET[(b[0] % 62) as usize] as char);
        }
    }
    out
}

/// One grant of `PrivilegesList` (ProductPrivilegeUnit), validated for the target's kind.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    pub privilege_name: String,
    #[serde(default)]
    pub privileges: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_name: Option<String>,
}

/// What an account is: its name, where it may log in from, what it may do.
pub struct AccountSpec<'a> {
    pub name: &'a str,
    pub domains: &'a [String],
    pub grants: &'a [Grant],
}

/// A database server, logged in as its administrator.
pub trait Target {
    /// Whether an account of this name exists: Keyward never takes over an account it did
    /// not create.
    fn exists(&mut self, name: &str) -> Result<bool>;
    /// Creates the account with `password` and its grants.
    fn create_account(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()>;
    /// Gives the account a new password and lets it log in again.
    fn set_password(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()>;
    /// Stops the account from logging in (its password is no longer any published one).
    fn lock(&mut self, spec: &AccountSpec<'_>) -> Result<()>;
    /// Ends the account's open sessions, so a locked credential stops working at once and
    /// not at the next reconnection. Returns how many were ended.
    fn end_sessions(&mut self, name: &str) -> Result<u64>;
    fn drop_account(&mut self, spec: &AccountSpec<'_>) -> Result<()>;
}

pub fn timeout(db: &DatabaseConfig) -> Duration {
    Duration::from_secs(db.timeout_secs.max(1))
}

/// The administrator's session on `db`.
pub fn connect_admin(db: &DatabaseConfig, admin: &Login) -> Result<Box<dyn Target>> {
    match db.kind {
        DatabaseKind::Mysql => Ok(Box::new(super::mysql::Mysql::connect(db, admin)?)),
        DatabaseKind::Postgresql => Ok(Box::new(super::postgresql::Postgres::connect(db, admin)?)),
        DatabaseKind::Redis => Ok(Box::new(super::redis::Redis::connect(db, admin)?)),
    }
}

/// Logs in as `login` and runs a trivial query: proof that the server knows the password.
pub fn check_login(db: &DatabaseConfig, login: &Login) -> Result<()> {
    match db.kind {
        DatabaseKind::Mysql => super::mysql::check_login(db, login),
        DatabaseKind::Postgresql => super::postgresql::check_login(db, login),
        DatabaseKind::Redis => super::redis::check_login(db, login),
    }
}

/// The CA certificates of `tls_ca`, when the database is reached over TLS.
pub fn tls_roots(db: &DatabaseConfig) -> Result<Option<rustls::RootCertStore>> {
    db.tls_ca
        .as_deref()
        .map(|path| crate::ca::roots(path, &format!("databases `{}`: tls_ca", db.id)))
        .transpose()
}

/// `host:port` of an `address`.
pub fn host_port(db: &DatabaseConfig, default_port: u16) -> Result<(String, u16)> {
    let a = db.address.as_deref().unwrap_or_default();
    match a.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.trim_matches(|c| c == '[' || c == ']').to_string(),
            p.parse()
                .map_err(|_| Error::Config(format!("databases `{}`: bad port in `{a}`", db.id)))?,
        )),
        None => Ok((a.to_string(), default_port)),
    }
}

/// A target's failure, with the server's words but never a password.
pub fn failed(db: &DatabaseConfig, doing: &str, e: impl std::fmt::Display) -> Error {
    Error::TargetFailed(format!("database `{}`: {doing}: {e}", db.id))
}

/// Names the accounts may have: `[A-Za-z][A-Za-z0-9_]*`, so they need no quoting anywhere.
pub fn check_identifier(what: &str, s: &str, max: usize) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid {what} `{s}`: at most {max} letters, digits or `_`, starting with a letter"
        )));
    }
    Ok(())
}

/// Database, schema and table names in grants: letters, digits, `_` and `$`.
pub fn check_object(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid {what} `{s}`: at most 64 letters, digits, `_` or `$`"
        )));
    }
    Ok(())
}

/// MySQL host patterns: an address or name with `%`/`_` wildcards.
pub fn check_domain(d: &str) -> Result<()> {
    let ok = !d.is_empty()
        && d.len() <= 255
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"%_.:-/".contains(&b));
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid Domains entry `{d}`: a host name or address, `%` and `_` as wildcards"
        )));
    }
    Ok(())
}
