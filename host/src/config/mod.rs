//! `keyward.toml`: listen address, TLS, regions, HSM backend, data directory, limits.

use crate::error::{Error, Result};
use keyward_shared::Algorithm;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

mod console;
mod rotation;

pub use console::ConsoleConfig;
pub use rotation::{DatabaseConfig, DatabaseKind, RotationConfig};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve plain HTTP on a non-loopback address. Off by default: API secret keys are
    /// not sent, but request bodies (plaintexts, data keys) are.
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default = "default_regions")]
    pub regions: Vec<RegionConfig>,
    #[serde(default)]
    pub hsm: HsmConfig,
    /// Whether the file has an `[hsm]` table. Without one, a data directory set up by
    /// `keyward init --softhsm` is served on its own SoftHSM2 token (`crate::testbench`).
    #[serde(skip)]
    pub hsm_explicit: bool,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub alarms: AlarmConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub testing: TestingConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    #[serde(default)]
    pub ssm: SsmConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Database servers whose accounts product secrets create and rotate (docs/rotation.md).
    #[serde(default)]
    pub databases: Vec<DatabaseConfig>,
    #[serde(default)]
    pub rotation: RotationConfig,
}

/// Secrets Manager behaviour that clients disagree on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsmConfig {
    /// GetSecretValue leaves out the value field a version does not use (`SecretBinary` of a
    /// text value, `SecretString` of a binary one) instead of sending it as `""`, as Tencent
    /// Cloud does. Dapr's Tencent Cloud SSM secret store returns `SecretBinary` whenever it is
    /// present, so without this every text secret reaches a Dapr application empty
    /// (docs/dapr.md); clients that expect both fields may fail with it.
    #[serde(default)]
    pub omit_unused_value_field: bool,
}

/// The audit log (docs/audit.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every request. Turning it off is for measurements only.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Sign a checkpoint after this many new records...
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// ...or when this many seconds have passed with unsigned records.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// Records older than this many days move from the store into segment files in
    /// `archive_dir` (on the scheduler's tick). 0 keeps every record in the store.
    #[serde(default)]
    pub retain_days: u32,
    /// Where archived segments go (default `<data_dir>/audit-archive`).
    #[serde(default)]
    pub archive_dir: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
            retain_days: 0,
            archive_dir: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_checkpoint_every() -> u64 {
    10_000
}

fn default_checkpoint_secs() -> u64 {
    60
}

/// Requests per second allowed per SecretId and action family; 0 turns a family's limit off.
/// Bursts of up to one second's worth are let through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Encrypt, Decrypt, GenerateDataKey, Sign... and GetSecretValue.
    #[serde(default = "default_crypto_rate")]
    pub crypto_per_sec: u32,
    /// Describe*, List*, Get* that read metadata.
    #[serde(default = "default_read_rate")]
    pub read_per_sec: u32,
    /// Everything that changes state.
    #[serde(default = "default_write_rate")]
    pub write_per_sec: u32,
    /// Audit records of requests refused before authentication, per source address. Beyond
    /// it such refusals are counted (`/metrics`) but not recorded one by one, so a flood of
    /// bogus requests cannot fill the disk. 0 records every one.
    #[serde(default = "default_unauthenticated_rate")]
    pub unauthenticated_records_per_sec: u32,
    /// Failed authentications (bad signature, unknown SecretId, replay...) per source
    /// address, with bursts of one second's worth. A source beyond it is refused with
    /// `RequestLimitExceeded` before its signature is even checked, until its budget refills,
    /// so floods of forged requests cost little CPU. 0 turns it off.
    #[serde(default = "default_auth_failure_rate")]
    pub auth_failures_per_sec: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            crypto_per_sec: default_crypto_rate(),
            read_per_sec: default_read_rate(),
            write_per_sec: default_write_rate(),
            unauthenticated_records_per_sec: default_unauthenticated_rate(),
            auth_failures_per_sec: default_auth_failure_rate(),
        }
    }
}

fn default_crypto_rate() -> u32 {
    0
}

fn default_read_rate() -> u32 {
    0
}

fn default_write_rate() -> u32 {
    0
}

fn default_auth_failure_rate() -> u32 {
    50
}

fn default_unauthenticated_rate() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    /// `http://` URL that receives each alarm as a JSON POST.
    #[serde(default)]
    pub webhook: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// How often due rotations, deletion reminders and deletions are looked for.
    #[serde(default = "default_scheduler_interval")]
    pub interval_secs: u64,
    /// The term of the jobs lease: with several daemons on one PostgreSQL database, how long
    /// the others wait before one takes over the scheduled work from a daemon that stopped
    /// extending it (killed, paused, cut off). The holder extends it every third of it.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            interval_secs: default_scheduler_interval(),
            lease_secs: default_lease_secs(),
        }
    }
}

fn default_scheduler_interval() -> u64 {
    60
}

fn default_lease_secs() -> u64 {
    15
}

/// Switches for end-to-end tests. Never enable them in production.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    /// Lets the root account move the service clock forward (`AdvanceClock`), so tests can
    /// cover rotation periods and deletion windows without waiting days.
    #[serde(default)]
    pub adjustable_clock: bool,
    /// Accepts a PIN shorter than `MIN_SOFTWARE_TOKEN_PIN` on a software token (SoftHSM2),
    /// for throw-away test tokens.
    #[serde(default)]
    pub allow_weak_pin: bool,
}

/// The shortest PIN accepted for a software token outside test mode. SoftHSM2's token
/// directory alone allows offline guessing at about 1,200 PINs a second per core (a six-digit
/// PIN falls in minutes); twelve characters put a random PIN out of reach.
pub const MIN_SOFTWARE_TOKEN_PIN: usize = 12;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    /// `AES_256` (FIPS-style region, KeyMetadata Type 2) or `SM4` (GM region, Type 4).
    #[serde(default = "default_region_algorithm")]
    pub algorithm: String,
}

impl RegionConfig {
    pub fn symmetric_algorithm(&self) -> Result<Algorithm> {
        match self.algorithm.as_str() {
            "AES_256" => Ok(Algorithm::Aes256Gcm),
            "SM4" => Ok(Algorithm::Sm4Gcm),
            other => Err(Error::Config(format!(
                "region {}: algorithm must be AES_256 or SM4, not {other}",
                self.name
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum HsmConfig {
    /// The firmware core linked into the daemon; device key in `<data_dir>/device.key`.
    #[default]
    Embedded,
    Pkcs11(Pkcs11Config),
    /// A Keyward firmware device on a serial line (or the simulator's pseudo-terminal).
    Serial(SerialConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub path: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// How long to wait for one answer before retrying.
    #[serde(default = "default_serial_timeout_ms")]
    pub timeout_ms: u64,
    /// How many requests may be on the line at once (sent, not yet answered), 1 to 64. The
    /// device answers them in turn; more only lengthen the queue in its receive buffer.
    #[serde(default = "default_serial_max_in_flight")]
    pub max_in_flight: usize,
    /// Pin the device: base64 DER identity public key it must attest with. Without it the
    /// first device a data directory sees is pinned in the store.
    #[serde(default)]
    pub device_public_key: Option<String>,
    /// Where this host keeps the key it paired the device with (32 bytes, mode 0600),
    /// written at the first start on an unpaired device. Default
    /// `<data_dir>/serial-pairing.key`. Never in the database: a copy of the database alone
    /// must not be enough to use the device. Keep it out of backups that leave the host, or
    /// put it elsewhere (docs/security.md, "Serial pairing").
    #[serde(default)]
    pub pairing_key_file: Option<PathBuf>,
}

/// The default name of the serial pairing key file in the data directory.
pub const SERIAL_PAIRING_KEY_FILE: &str = "serial-pairing.key";

impl SerialConfig {
    /// The pairing key file: `pairing_key_file`, or `<data_dir>/serial-pairing.key`.
    pub fn pairing_key_path(&self, data_dir: &Path) -> PathBuf {
        self.pairing_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(SERIAL_PAIRING_KEY_FILE))
    }
}

fn default_baud() -> u32 {
    115_200
}
fn default_serial_timeout_ms() -> u64 {
    2_000
}
/// The largest `[hsm] max_in_flight`: more would only deepen the queue in the device's
/// receive buffer.
pub const SERIAL_MAX_IN_FLIGHT: usize = 64;

fn default_serial_max_in_flight() -> usize {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    pub module: PathBuf,
    /// The token is chosen by label, serial number or slot ID: at least one must be set, and
    /// every one set must match (docs/pkcs11-modules.md).
    #[serde(default)]
    pub token_label: String,
    #[serde(default)]
    pub token_serial: Option<String>,
    #[serde(default)]
    pub slot: Option<u64>,
    /// File holding the user PIN (trailing newline ignored).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// Number of PKCS#11 sessions; each serves one operation at a time.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl Pkcs11Config {
    /// Reads the PIN from its file or environment variable, never from the config itself.
    pub fn pin(&self) -> Result<Zeroizing<String>> {
        let raw = match (&self.pin_file, &self.pin_env) {
            (Some(path), None) => Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("cannot read PIN file {}: {e}", path.display()))
            })?),
            (None, Some(var)) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| Error::Config(format!("PIN variable {var} is not set")))?,
            ),
            _ => {
                return Err(Error::Config(
                    "hsm: set exactly one of pin_file or pin_env".into(),
                ))
            }
        };
        Ok(Zeroizing::new(
            raw.trim_end_matches(['\r', '\n']).to_string(),
        ))
    }
}

/// Where the store lives (docs/postgres.md). The data directory is used either way: it holds
/// the embedded backend's device key and the audit archive.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// `<data_dir>/keyward.db`, opened exclusively by one daemon.
    #[default]
    Sqlite,
    Postgres(PostgresConfig),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// A libpq connection string (`host=/run/postgresql dbname=keyward user=keyward`) or URL
    /// (`postgresql://keyward@db.example/keyward`), without a password.
    pub url: String,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored); must not be readable by group
    /// or others.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections kept open; each serves one store call at a time.
    #[serde(default = "default_pg_pool_size")]
    pub pool_size: u32,
    /// TLS to the server, required and its certificate verified against this CA bundle
    /// (PEM) for the host the URL names. Unset: a plain connection (`sslmode=disable`);
    /// keep it to a unix socket, loopback or a network you trust.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
}

impl PostgresConfig {
    /// Reads the password from its file or environment variable, never from the
    /// configuration itself or the command line. Neither set: no password (peer or trust
    /// authentication on a local socket).
    pub fn password(&self) -> Result<Option<Zeroizing<String>>> {
        let raw = match (&self.password_file, &self.password_env) {
            (None, None) => return Ok(None),
            (Some(path), None) => {
                check_private_file(path)?;
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    Error::Config(format!("cannot read password file {}: {e}", path.display()))
                })?)
            }
            (None, Some(var)) => Zeroizing::new(
                std::env::var(var)
                    .map_err(|_| Error::Config(format!("password variable {var} is not set")))?,
            ),
            _ => {
                return Err(Error::Config(
                    "store: set at most one of password_file or password_env".into(),
                ))
            }
        };
        Ok(Some(Zeroizing::new(
            raw.trim_end_matches(['\r', '\n']).to_string(),
        )))
    }
}

/// Refuses a secret file that group or others may read or write (mode 0600 or stricter).
fn check_private_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(Error::Config(format!(
                "{} is accessible to group or others: chmod 600 it",
                path.display()
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body. Tencent allows 10 MB; nothing in KMS/SSM needs more than
    /// a 32 KiB secret in base64.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    #[serde(default = "default_cmk_limit")]
    pub cmk_limit: u64,
    /// Secrets per region and account (Tencent's cloud quota is 1000; an appliance can hold more).
    #[serde(default = "default_secret_limit")]
    pub secret_limit: u64,
    /// Accepted request signatures remembered for the 5-minute timestamp window (each with the
    /// action, version, region and source address of its first use), so that a captured
    /// request cannot be re-sent with other routing headers or, for a write, replayed. About
    /// 64 bytes each; the default holds about 3,300 distinct requests a second.
    /// When full, requests with new signatures are refused (`RequestLimitExceeded`) until
    /// old entries expire: forgetting one early would reopen the replay for it.
    #[serde(default = "default_signature_memory")]
    pub signature_memory: usize,
    /// Open client connections; further ones wait in the listen backlog until one closes.
    /// Keep it below the process's open-file limit (`ulimit -n`) with room for the store,
    /// the HSM and the log (about 64 descriptors).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A request head (request line and headers) must arrive within this many seconds of the
    /// server starting to wait for it: on a new connection and between keep-alive requests
    /// alike, so this is also how long an idle keep-alive connection stays open.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// The whole request body must arrive within this many seconds after the head.
    #[serde(default = "default_body_read_timeout")]
    pub body_read_timeout_secs: u64,
    /// A connection on which no byte is read or written for this many seconds is closed,
    /// whatever it is doing: a TLS handshake, a stalled body, a response the client does not
    /// read. (A TLS handshake must also finish within `header_read_timeout_secs`.)
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body(),
            cmk_limit: default_cmk_limit(),
            secret_limit: default_secret_limit(),
            signature_memory: default_signature_memory(),
            max_connections: default_max_connections(),
            header_read_timeout_secs: default_header_read_timeout(),
            body_read_timeout_secs: default_body_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("keyward-data")
}
fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("literal address")
}
fn default_regions() -> Vec<RegionConfig> {
    vec![RegionConfig {
        name: "ap-guangzhou".into(),
        algorithm: default_region_algorithm(),
    }]
}
fn default_region_algorithm() -> String {
    "AES_256".into()
}
fn default_pool_size() -> usize {
    4
}
fn default_pg_pool_size() -> u32 {
    16
}
fn default_max_body() -> usize {
    1024 * 1024
}
fn default_secret_limit() -> u64 {
    100_000
}
fn default_cmk_limit() -> u64 {
    10_000
}
fn default_signature_memory() -> usize {
    1_000_000
}
fn default_max_connections() -> usize {
    512
}
fn default_header_read_timeout() -> u64 {
    30
}
fn default_body_read_timeout() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    60
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("all fields have defaults")
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg: Config =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        // The text parsed as a `Config` just above, so it is a valid TOML table.
        cfg.hsm_explicit = text
            .parse::<toml::Table>()
            .is_ok_and(|t| t.contains_key("hsm"));
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.regions.is_empty() {
            return Err(Error::Config("at least one region is required".into()));
        }
        for r in &self.regions {
            r.symmetric_algorithm()?;
        }
        if let Some(w) = &self.alarms.webhook {
            let uri: hyper::Uri = w
                .parse()
                .map_err(|e| Error::Config(format!("alarms.webhook {w}: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(Error::Config(format!(
                    "alarms.webhook must be an http:// URL, not {w}"
                )));
            }
        }
        if self.scheduler.lease_secs < 2 {
            return Err(Error::Config(
                "scheduler.lease_secs must be at least 2 (the holder extends it every third)"
                    .into(),
            ));
        }
        let l = &self.limits;
        if l.max_connections == 0
            || l.signature_memory == 0
            || l.header_read_timeout_secs == 0
            || l.body_read_timeout_secs == 0
            || l.idle_timeout_secs == 0
        {
            return Err(Error::Config(
                "limits: max_connections, signature_memory and the timeouts must be at least 1"
                    .into(),
            ));
        }
        if let HsmConfig::Serial(serial) = &self.hsm {
            if !(1..=SERIAL_MAX_IN_FLIGHT).contains(&serial.max_in_flight) {
                return Err(Error::Config(format!(
                    "hsm.max_in_flight must be between 1 and {}",
                    SERIAL_MAX_IN_FLIGHT
                )));
            }
        }
        if let StoreConfig::Postgres(pg) = &self.store {
            if pg.url.trim().is_empty() || pg.pool_size == 0 {
                return Err(Error::Config(
                    "store: kind = \"postgres\" needs a url and a pool_size of at least 1".into(),
                ));
            }
        }
        for (i, d) in self.databases.iter().enumerate() {
            if d.id.is_empty() || self.databases[..i].iter().any(|o| o.id == d.id) {
                return Err(Error::Config(format!(
                    "databases: every entry needs an id of its own (`{}`)",
                    d.id
                )));
            }
            if d.address.is_some() == d.socket.is_some() {
                return Err(Error::Config(format!(
                    "databases `{}`: give exactly one of address and socket",
                    d.id
                )));
            }
            if d.tls_ca.is_some() && d.address.is_none() {
                return Err(Error::Config(format!(
                    "databases `{}`: tls_ca needs an address (TLS is not spoken on a unix socket)",
                    d.id
                )));
            }
            if d.admin_secret.is_empty() {
                return Err(Error::Config(format!(
                    "databases `{}`: admin_secret names the secret holding the admin login",
                    d.id
                )));
            }
        }
        if self.rotation.retry_initial_secs == 0
            || self.rotation.retry_max_secs < self.rotation.retry_initial_secs
        {
            return Err(Error::Config(
                "rotation: retry_initial_secs must be at least 1 and at most retry_max_secs".into(),
            ));
        }
        if self.tls.is_none() && !self.listen.ip().is_loopback() && !self.allow_insecure_http {
            return Err(Error::Config(format!(
                "refusing plain HTTP on non-loopback address {}: configure [tls] or set allow_insecure_http = true",
                self.listen
            )));
        }
        Ok(())
    }

    pub fn database(&self, id: &str) -> Option<&DatabaseConfig> {
        self.databases.iter().find(|d| d.id == id)
    }

    pub fn region(&self, name: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_need_a_unique_id_one_endpoint_and_tls_over_tcp() {
        let parse = |t: &str| toml::from_str::<Config>(t).unwrap().validate();
        let entry = |id: &str, endpoint: &str| {
            format!("[[databases]]\nid = \"{id}\"\nkind = \"mysql\"\n{endpoint}\nadmin_secret = \"a\"\n")
        };
        let tcp = "address = \"127.0.0.1:3306\"";
        parse(&entry("m1", tcp)).unwrap();
        parse(&(entry("m1", tcp) + &entry("m2", "socket = \"/run/m.sock\""))).unwrap();
        assert!(
            parse(&(entry("m1", tcp) + &entry("m1", tcp))).is_err(),
            "duplicate id"
        );
        assert!(parse(&entry("m1", "")).is_err(), "no endpoint");
        assert!(
            parse(&entry("m1", &format!("{tcp}\nsocket = \"/s\""))).is_err(),
            "two endpoints"
        );
        assert!(parse(&entry("m1", "socket = \"/s\"\ntls_ca = \"/ca.pem\"")).is_err());
        parse(&entry("m1", &format!("{tcp}\ntls_ca = \"/ca.pem\""))).unwrap();
        let c: Config = toml::from_str(&entry("m1", tcp)).unwrap();
        assert_eq!(c.database("m1").unwrap().kind, DatabaseKind::Mysql);
        assert_eq!(c.rotation.overlap_secs, 3600);
        assert!(parse("[rotation]\nretry_initial_secs = 0\n").is_err());
    }

    #[test]
    fn defaults_are_loopback_embedded() {
        let c = Config::default();
        assert!(c.listen.ip().is_loopback());
        assert!(matches!(c.hsm, HsmConfig::Embedded));
        c.validate().unwrap();
    }

    #[test]
    fn plain_http_on_public_address_is_refused() {
        let c: Config = toml::from_str("listen = \"0.0.0.0:8080\"").unwrap();
        assert!(c.validate().is_err());
        let c: Config =
            toml::from_str("listen = \"0.0.0.0:8080\"\nallow_insecure_http = true").unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn store_section_parses_and_reads_the_password_safely() {
        assert!(matches!(Config::default().store, StoreConfig::Sqlite));
        let c: Config = toml::from_str(
            "[store]\nkind = \"postgres\"\nurl = \"host=/tmp dbname=kw\"\npassword_env = \"KW_TEST_PG_PW\"\n",
        )
        .unwrap();
        let StoreConfig::Postgres(pg) = &c.store else {
            panic!("not postgres")
        };
        assert_eq!(pg.pool_size, 16);
        std::env::set_var("KW_TEST_PG_PW", "s3cret\n");
        assert_eq!(pg.password().unwrap().unwrap().as_str(), "s3cret");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let mut pg = pg.clone();
        pg.password_env = None;
        pg.password_file = Some(file.clone());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(
                pg.password().is_err(),
                "a world-readable password file is refused"
            );
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(pg.password().unwrap().unwrap().as_str(), "from-file");
        pg.password_env = Some("KW_TEST_PG_PW".into());
        assert!(pg.password().is_err(), "both sources at once are refused");
        assert!(toml::from_str::<Config>("[store]\nkind = \"mysql\"\n").is_err());
    }

    #[test]
    fn pkcs11_section_parses() {
        let c: Config = toml::from_str(
            "[hsm]\nbackend = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\ntoken_label = \"kw\"\npin_env = \"PIN\"\n",
        )
        .unwrap();
        assert!(matches!(c.hsm, HsmConfig::Pkcs11(_)));
    }
}
