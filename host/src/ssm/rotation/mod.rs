//! Product secrets: database credentials (SecretType 1: MySQL/MariaDB and PostgreSQL;
//! SecretType 4: Redis ACL users) that Keyward creates on a server the operator declared in
//! `[[databases]]`, and rotates without downtime (docs/rotation.md).
//!
//! Two accounts alternate per secret, `<prefix>_a` and `<prefix>_b`. A rotation gives the
//! account that is *not* published a fresh password, logs in with it, and only then
//! publishes it (a new `SSM_Rotate_<time>` version, and `SSM_Current`). The account
//! published before keeps its password for `[rotation] overlap_secs`, then is locked.
//! Whatever fails before publication (server down, admin login refused, grant refused)
//! leaves `SSM_Current` as it was, a credential the server still knows; the failure is
//! counted, retried with exponential backoff by the scheduler, raised as an alarm and
//! recorded in the audit log.
//!
//! Every change of a product secret's credentials holds its claim (`claim_product_secret`),
//! so two rotations (a manual one, a scheduled one, on any daemon) never interleave.

pub mod api_keys;
mod create;
pub mod mysql;
pub mod postgresql;
pub mod redis;
mod rotate;
pub mod target;

pub use create::NewProductSecret;

use super::{check, SecretOp, SecretValue, Ssm, DEFAULT_VERSION_ID};
use crate::cam::{policy, Caller};
use crate::config::{DatabaseConfig, DatabaseKind};
use crate::error::{Error, Result};
use crate::store::{FlowRecord, ProductSecretRecord, SecretRecord, VersionWrite};
use target::{Grant, Login, LoginValue};

pub const SECRET_TYPE_DATABASE: u64 = 1;
pub const SECRET_TYPE_REDIS: u64 = 4;
/// Versions published by creation and rotation are named `SSM_Rotate_<YYYYMMDDHHMMSS>`.
pub const ROTATED_VERSION_PREFIX: &str = "SSM_Rotate_";
const DAY: i64 = 86_400;
/// How long one rotation may hold its claim: longer than any connect and statement
/// timeout, so only a crashed holder's claim lapses.
const CLAIM_SECS: i64 = 300;
/// Rotation times on the API are `YYYY-MM-DD HH:MM:SS` in Beijing time, as Tencent's.
const API_OFFSET: time::UtcOffset = match time::UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => time::UtcOffset::UTC,
};

/// Rotations of product secrets since start (manual and scheduled), for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub succeeded: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

/// The product name of a kind of database.
pub fn product_name(kind: DatabaseKind) -> &'static str {
    match kind {
        DatabaseKind::Mysql => "Mysql",
        DatabaseKind::Postgresql => "PostgreSQL",
        DatabaseKind::Redis => "Redis",
    }
}

fn secret_type_of(kind: DatabaseKind) -> u64 {
    match kind {
        DatabaseKind::Redis => SECRET_TYPE_REDIS,
        _ => SECRET_TYPE_DATABASE,
    }
}

pub fn is_product_secret(s: &SecretRecord) -> bool {
    matches!(
        s.secret_type,
        SECRET_TYPE_DATABASE | SECRET_TYPE_REDIS | api_keys::SECRET_TYPE_API_KEY
    )
}

/// A credential as its secret stores it: `{"UserName", "Password"}` for databases,
/// `{"SecretId", "SecretKey"}` for API keys.
fn encode(secret: &SecretRecord, login: &Login) -> zeroize::Zeroizing<Vec<u8>> {
    match secret.secret_type {
        api_keys::SECRET_TYPE_API_KEY => api_keys::ApiKeyValue::to_bytes(login),
        _ => LoginValue::to_bytes(login),
    }
}

fn decode(secret: &SecretRecord, bytes: &[u8], what: &str) -> Result<Login> {
    match secret.secret_type {
        api_keys::SECRET_TYPE_API_KEY => api_keys::ApiKeyValue::parse(bytes, what),
        _ => LoginValue::parse(bytes, what),
    }
}

/// The two alternating accounts of a prefix.
fn accounts(prefix: &str) -> [String; 2] {
    [format!("{prefix}_a"), format!("{prefix}_b")]
}

pub fn format_time(t: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|d| d.to_offset(API_OFFSET))
        .ok()
        .and_then(|d| d.format(fmt).ok())
        .unwrap_or_default()
}

pub fn parse_time(what: &str, s: &str) -> Result<i64> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s.trim(), fmt)
        .map(|d| d.assume_offset(API_OFFSET).unix_timestamp())
        .map_err(|_| {
            Error::InvalidValue(format!("{what} must be `YYYY-MM-DD HH:MM:SS`, not `{s}`"))
        })
}

fn version_stamp(t: i64) -> String {
    format_time(t).replace(['-', ' ', ':'], "")
}

/// One line of DescribeRotationHistory.
pub struct RotatedVersion {
    pub version_id: String,
    pub account: String,
    /// Where the account may log in from (`Domains`).
    pub hosts: Vec<String>,
    pub time: i64,
}

impl Ssm {
    /// DescribeSupportedProducts: the products of the configured databases.
    pub fn supported_products(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for d in &self.cfg.databases {
            let p = product_name(d.kind);
            if !out.contains(&p) {
                out.push(p);
            }
        }
        // API-key secrets need no database: CAM is always here.
        out.push(api_keys::PRODUCT_CAM);
        out
    }

    fn database(&self, product: &str, instance_id: &str) -> Result<&DatabaseConfig> {
        let db = self.cfg.database(instance_id).ok_or_else(|| {
            Error::InvalidValue(format!(
                "InstanceID `{instance_id}` is not a database configured on this Keyward \
                 ([[databases]] in keyward.toml)"
            ))
        })?;
        if !product_name(db.kind).eq_ignore_ascii_case(product) {
            return Err(Error::InvalidValue(format!(
                "InstanceID `{instance_id}` is a {} database, not {product}",
                product_name(db.kind)
            )));
        }
        Ok(db)
    }

    /// The administrative login of `db`, read through KMS like any secret value, in the
    /// region and account of the product secret.
    fn admin_login(&self, caller: &Caller, db: &DatabaseConfig) -> Result<Login> {
        let v = self
            .get_value(&caller.internal(), &db.admin_secret, DEFAULT_VERSION_ID)
            .map_err(|e| match e {
                e if e.is_internal() => e,
                e => Error::TargetFailed(format!(
                    "database `{}`: its admin secret `{}` cannot be read: {e}",
                    db.id, db.admin_secret
                )),
            })?;
        LoginValue::parse(&v.bytes, &format!("admin secret `{}`", db.admin_secret))
    }

    fn current_login(&self, caller: &Caller, secret: &SecretRecord) -> Result<Login> {
        let v = self
            .store
            .get_secret_version(
                &secret.region,
                secret.owner_uin,
                &secret.name,
                DEFAULT_VERSION_ID,
            )?
            .ok_or_else(|| Error::SecretVersionNotFound(DEFAULT_VERSION_ID.into()))?;
        let value = self.open(&caller.internal(), secret, &v)?;
        decode(secret, &value.bytes, "the current credential")
    }

    fn grants_of(p: &ProductSecretRecord) -> Result<Vec<Grant>> {
        serde_json::from_str(&p.privileges)
            .map_err(|_| Error::Store(format!("bad privileges of product secret {}", p.name)))
    }

    /// The grants are well-formed for the kind, and within what the operator allows on
    /// this database: a caller of CreateProductSecret acts with the admin login's rights.
    fn check_grants(db: &DatabaseConfig, grants: &[Grant]) -> Result<()> {
        match db.kind {
            DatabaseKind::Mysql => mysql::check_grants(grants)?,
            DatabaseKind::Postgresql => postgresql::check_grants(grants)?,
            DatabaseKind::Redis => return redis::check_grants(grants),
        }
        for g in grants {
            let name = g.database.as_deref().unwrap_or_default();
            let allowed = match &db.grant_databases {
                Some(list) => {
                    g.privilege_name != "GlobalPrivileges" && list.iter().any(|d| d == name)
                }
                // MySQL's own schemas hold every account's password hash and the server's
                // state: never an application's to read.
                None => {
                    !(db.kind == DatabaseKind::Mysql
                        && ["mysql", "information_schema", "performance_schema", "sys"]
                            .contains(&name.to_ascii_lowercase().as_str()))
                }
            };
            if !allowed {
                return Err(Error::InvalidValue(format!(
                    "{} on `{name}` is not allowed on {} (grant_databases in keyward.toml)",
                    g.privilege_name, db.id
                )));
            }
        }
        Ok(())
    }

    /// Makes a just-created secret a product secret: its record, then `login` as its first
    /// rotated version. On failure the secret goes again, so no half-made product secret
    /// stays behind.
    fn register_product_secret(
        &self,
        caller: &Caller,
        secret: SecretRecord,
        record: &ProductSecretRecord,
        login: &Login,
        now: i64,
    ) -> Result<SecretRecord> {
        let r = self
            .rotation
            .insert_product_secret(&caller.trail, record)
            .and_then(|_| self.add_rotated_version(caller, &secret, login, now));
        if let Err(e) = r {
            let _ = self.store.delete_secret(
                &caller.trail,
                &secret.region,
                secret.owner_uin,
                &secret.name,
            );
            return Err(e);
        }
        Ok(secret)
    }

    /// Adds `login` as a new `SSM_Rotate_<time>` version, making room by deleting the
    /// oldest rotated version when the secret holds the maximum.
    fn add_rotated_version(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        login: &Login,
        now: i64,
    ) -> Result<String> {
        let versions =
            self.store
                .list_secret_versions(&secret.region, secret.owner_uin, &secret.name)?;
        let stamp = format!("{ROTATED_VERSION_PREFIX}{}", version_stamp(now));
        // Two rotations within a second (a test clock, a retry) get distinct ids.
        let version_id = (0..)
            .map(|i| match i {
                0 => stamp.clone(),
                i => format!("{stamp}_{i}"),
            })
            .find(|v| !versions.iter().any(|(id, _)| id == v))
            .unwrap_or(stamp);
        if versions.len() as u64 >= super::MAX_VERSIONS {
            if let Some((oldest, _)) = versions
                .iter()
                .find(|(id, _)| id.starts_with(ROTATED_VERSION_PREFIX))
            {
                self.store.delete_secret_version(
                    &caller.trail,
                    &secret.region,
                    secret.owner_uin,
                    &secret.name,
                    oldest,
                )?;
            }
        }
        let value = SecretValue {
            bytes: encode(secret, login),
            is_binary: false,
        };
        let sealed = self.seal(caller, secret, &version_id, &value)?;
        self.store.put_secret_version(
            &caller.trail,
            &secret.region,
            secret.owner_uin,
            &secret.name,
            &sealed,
            VersionWrite::Add {
                max_versions: super::MAX_VERSIONS,
            },
            &mut |s| check(SecretOp::Write, s),
        )?;
        Ok(version_id)
    }

    /// Publishes `login`: its own rotated version first, then `SSM_Current`. A failure
    /// between the two leaves `SSM_Current` on the previous credential, which still works.
    fn publish(
        &self,
        caller: &Caller,
        secret: &SecretRecord,
        login: &Login,
        now: i64,
    ) -> Result<()> {
        self.add_rotated_version(caller, secret, login, now)?;
        let value = SecretValue {
            bytes: encode(secret, login),
            is_binary: false,
        };
        let sealed = self.seal(caller, secret, DEFAULT_VERSION_ID, &value)?;
        self.store.put_secret_version(
            &caller.trail,
            &secret.region,
            secret.owner_uin,
            &secret.name,
            &sealed,
            VersionWrite::Replace,
            &mut |s| check(SecretOp::Write, s),
        )
    }

    fn product_secret(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<(SecretRecord, ProductSecretRecord)> {
        let s = self.secret(caller, name)?;
        let p = self
            .rotation
            .get_product_secret(&s.region, s.owner_uin, &s.name)?
            .ok_or_else(|| {
                Error::OperationDenied(format!("secret {name} is not a product secret"))
            })?;
        Ok((s, p))
    }

    /// UpdateRotationStatus.
    pub fn update_rotation_status(
        &self,
        caller: &Caller,
        name: &str,
        enable: bool,
        frequency_days: Option<i64>,
        begin_time: Option<&str>,
    ) -> Result<()> {
        let (s, _) = self.product_secret(caller, name)?;
        check(SecretOp::Write, &s)?;
        if let Some(f) = frequency_days {
            if !(1..=365).contains(&f) {
                return Err(Error::InvalidValue(
                    "Frequency must be 1 to 365 days".into(),
                ));
            }
        }
        let now = self.clock.now();
        let begin = begin_time
            .filter(|t| !t.is_empty())
            .map(|t| parse_time("RotationBeginTime", t))
            .transpose()?;
        self.rotation.update_product_secret(
            &caller.trail,
            &s.region,
            s.owner_uin,
            &s.name,
            &mut |r| {
                if let Some(f) = frequency_days {
                    r.frequency_days = f;
                }
                if enable {
                    r.next_rotation = match begin {
                        Some(b) => b,
                        // Enabling without a time: the next period from now.
                        None if !r.rotation_enabled => now + r.frequency_days * DAY,
                        None => r.next_rotation,
                    };
                }
                r.rotation_enabled = enable;
                Ok(())
            },
        )?;
        Ok(())
    }

    /// The product record of a secret the caller was already authorized on (None for
    /// user-defined and SSH key pair secrets).
    pub fn product_record(&self, s: &SecretRecord) -> Result<Option<ProductSecretRecord>> {
        if !is_product_secret(s) {
            return Ok(None);
        }
        self.rotation
            .get_product_secret(&s.region, s.owner_uin, &s.name)
    }

    /// DescribeRotationDetail.
    pub fn rotation_detail(&self, caller: &Caller, name: &str) -> Result<ProductSecretRecord> {
        Ok(self.product_secret(caller, name)?.1)
    }

    /// DescribeRotationHistory: every published version, oldest first, with its account.
    pub fn rotation_history(&self, caller: &Caller, name: &str) -> Result<Vec<RotatedVersion>> {
        let (s, p) = self.product_secret(caller, name)?;
        let mut out = Vec::new();
        for (id, time) in self
            .store
            .list_secret_versions(&s.region, s.owner_uin, &s.name)?
        {
            if !id.starts_with(ROTATED_VERSION_PREFIX) {
                continue;
            }
            let Some(v) = self
                .store
                .get_secret_version(&s.region, s.owner_uin, &s.name, &id)?
            else {
                continue;
            };
            let value = self.open(&caller.internal(), &s, &v)?;
            let login = decode(&s, &value.bytes, "a rotated credential")?;
            out.push(RotatedVersion {
                version_id: id,
                account: login.user,
                hosts: p.domains.clone(),
                time,
            });
        }
        Ok(out)
    }

    /// DescribeAsyncRequestInfo: a request of the caller's account, on a secret it may see.
    pub fn flow(&self, caller: &Caller, flow_id: i64) -> Result<FlowRecord> {
        let f = self
            .rotation
            .get_flow(&caller.region, caller.owner_uin, flow_id)?
            .ok_or(Error::FlowNotFound(flow_id))?;
        match self
            .store
            .get_secret(&f.region, f.owner_uin, &f.secret_name)?
        {
            Some(s) => super::authorize(caller, &s)?,
            // The secret is gone: only an unrestricted caller still sees its requests.
            None => caller.check(
                "ssm_secret",
                &policy::ssm_secret_resource(&f.region, f.owner_uin, caller.uin, &f.secret_name),
                &[],
            )?,
        }
        // A rotation holds its claim at most CLAIM_SECS: one still running after that
        // was cut short (its daemon stopped), and the published credential is unchanged.
        if f.status == crate::store::FLOW_RUNNING && self.clock.now() - f.create_time > CLAIM_SECS {
            return Ok(FlowRecord {
                status: crate::store::FLOW_FAILED,
                description: "interrupted: the daemon stopped during the rotation; the \
                              current credential is unchanged"
                    .into(),
                ..f
            });
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(extra: &str) -> DatabaseConfig {
        toml::from_str(&format!(
            "id = \"m\"\nkind = \"mysql\"\naddress = \"127.0.0.1:1\"\nadmin_secret = \"a\"\n{extra}"
        ))
        .unwrap()
    }

    fn grant(name: &str, database: Option<&str>) -> Grant {
        Grant {
            privilege_name: name.into(),
            privileges: vec!["SELECT".into()],
            database: database.map(Into::into),
            table_name: None,
            schema_name: None,
        }
    }

    #[test]
    fn grants_stay_within_what_the_operator_allows() {
        let open = db("");
        Ssm::check_grants(&open, &[grant("DatabasePrivileges", Some("app"))]).unwrap();
        Ssm::check_grants(&open, &[grant("GlobalPrivileges", None)]).unwrap();
        for system in [
            "mysql",
            "MySQL",
            "performance_schema",
            "sys",
            "information_schema",
        ] {
            assert!(
                Ssm::check_grants(&open, &[grant("DatabasePrivileges", Some(system))]).is_err(),
                "{system}"
            );
        }
        let listed = db("grant_databases = [\"app\"]");
        Ssm::check_grants(&listed, &[grant("DatabasePrivileges", Some("app"))]).unwrap();
        assert!(Ssm::check_grants(&listed, &[grant("DatabasePrivileges", Some("other"))]).is_err());
        assert!(Ssm::check_grants(&listed, &[grant("GlobalPrivileges", None)]).is_err());
    }

    #[test]
    fn api_times_are_beijing_time_and_round_trip() {
        assert_eq!(format_time(0), "1970-01-01 08:00:00");
        assert_eq!(parse_time("t", "1970-01-01 08:00:00").unwrap(), 0);
        let t = 1_796_385_607;
        assert_eq!(parse_time("t", &format_time(t)).unwrap(), t);
        assert_eq!(version_stamp(0), "19700101080000");
        assert!(parse_time("t", "2026-13-01 00:00:00").is_err());
    }
}
