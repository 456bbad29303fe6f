//! Test-bench mode: a SoftHSM2 token inside the data directory, so that Keyward runs on its
//! PKCS#11 backend with one command (`keyward init --softhsm`) and no further setup.
//!
//! Layout under `<data_dir>/softhsm/` (the directory 0700 like the data directory):
//! - `softhsm2.conf`: SoftHSM2's configuration, naming `tokens/` as its token directory;
//! - `tokens/`: the token (SoftHSM2 keeps its objects in files here);
//! - `pin`: the generated user PIN, 0600;
//! - `hsm.toml`: the `[hsm]` table the daemon uses when its configuration has none.
//!
//! The SO PIN is printed once by `init` and kept nowhere. SoftHSM2 is a software keystore:
//! anyone who can read this directory holds every key (docs/security.md), which is why this is
//! a test bench and a production deployment names its HSM in `[hsm]`.

use crate::config::{Config, HsmConfig};
use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const DIR: &str = "softhsm";
const CONF: &str = "softhsm2.conf";
const HSM_FILE: &str = "hsm.toml";
const PIN_FILE: &str = "pin";
const LABEL: &str = "keyward";
/// Where Debian's `softhsm2` package installs the module.
pub const DEFAULT_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The SO PIN of a token just created, for the operator to note once.
pub struct Provisioned {
    pub so_pin: Zeroizing<String>,
    pub dir: PathBuf,
}

/// Creates the data directory's token (refusing if it has one, or if the configuration names
/// an HSM of its own) and switches `cfg` to it.
pub fn provision(cfg: &mut Config, module: &Path) -> Result<Provisioned> {
    if cfg.hsm_explicit {
        return Err(Error::Config(
            "--softhsm sets up the data directory's own token: remove [hsm] from the \
             configuration"
                .into(),
        ));
    }
    if !module.exists() {
        return Err(Error::Config(format!(
            "no SoftHSM2 module at {} (Debian: apt-get install softhsm2; or --softhsm-module)",
            module.display()
        )));
    }
    crate::server::create_private_dir(&cfg.data_dir)?;
    let data_dir = std::fs::canonicalize(&cfg.data_dir)?;
    let dir = data_dir.join(DIR);
    if dir.exists() {
        return Err(Error::Config(format!(
            "{} already holds a test-bench token",
            dir.display()
        )));
    }
    match create_token(&dir, module) {
        Ok(so_pin) => {
            cfg.hsm = read_hsm(&dir)?;
            Ok(Provisioned { so_pin, dir })
        }
        Err(e) => {
            // Half a token (no PIN set, or no hsm.toml) would make every later attempt
            // refuse with "already holds a token": take it away again.
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

/// Writes the token directory's files and initialises the token; returns the SO PIN.
fn create_token(dir: &Path, module: &Path) -> Result<Zeroizing<String>> {
    crate::server::create_private_dir(&dir.join("tokens"))?;
    crate::server::create_private_dir(dir)?;
    write_new(
        &dir.join(CONF),
        format!(
            "# Written by `keyward init --softhsm`: this data directory's own token.\n\
             directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        )
        .as_bytes(),
    )?;
    let pin = random_pin();
    let so_pin = random_pin();
    write_new(&dir.join(PIN_FILE), pin.as_bytes())?;
    use_token_conf(dir);
    keyward_hsm_pkcs11::init_token(module, LABEL, &so_pin, &pin)?;
    let hsm = format!(
        "# Written by `keyward init --softhsm`; used when keyward.toml has no [hsm] table.\n\
         backend = \"pkcs11\"\nmodule = {}\ntoken_label = \"{LABEL}\"\npin_file = {}\n\
         pool_size = 4\n",
        toml_string(&module.display().to_string()),
        toml_string(&dir.join(PIN_FILE).display().to_string()),
    );
    write_new(&dir.join(HSM_FILE), hsm.as_bytes())?;
    Ok(so_pin)
}

/// Serves a data directory made by `provision` on its token, unless the configuration names
/// an HSM itself. Returns whether it did.
pub fn apply(cfg: &mut Config) -> Result<bool> {
    let dir = cfg.data_dir.join(DIR);
    if cfg.hsm_explicit || !dir.join(HSM_FILE).exists() {
        return Ok(false);
    }
    let dir = std::fs::canonicalize(&dir)?;
    cfg.hsm = read_hsm(&dir)?;
    use_token_conf(&dir);
    tracing::info!(
        token_dir = %dir.display(),
        "test bench: serving on the data directory's own SoftHSM2 token (a software keystore)"
    );
    Ok(true)
}

fn read_hsm(dir: &Path) -> Result<HsmConfig> {
    let path = dir.join(HSM_FILE);
    let text = std::fs::read_to_string(&path)?;
    toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}

/// SoftHSM2 finds its configuration only through `SOFTHSM2_CONF`, read when the module is
/// initialised, so it is set before the backend loads it. Sound for the same reason as the
/// PIN's removal from the environment (hsm/pkcs11.rs): this runs once, during start-up,
/// before the listener, the request workers and any thread that reads the environment.
fn use_token_conf(dir: &Path) {
    std::env::set_var("SOFTHSM2_CONF", dir.join(CONF));
}

/// 24 bytes from the OS, hex: 48 characters, far beyond the 12 a software token needs.
fn random_pin() -> Zeroizing<String> {
    let mut bytes = Zeroizing::new([0u8; 24]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, bytes.as_mut());
    Zeroizing::new(hex::encode(bytes.as_ref()))
}

/// A file that must not exist yet, 0600 from its creation (never briefly readable by others).
fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path)?;
    f.write_all(content)?;
    f.sync_all()?;
    Ok(())
}

/// A TOML basic string (paths with quotes or backslashes stay intact).
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_long_and_fresh() {
        let (a, b) = (random_pin(), random_pin());
        assert_eq!(a.len(), 48);
        assert_ne!(*a, *b);
    }

    /// A module that does not load leaves no half-made token behind, so the next attempt
    /// (with the right module) is not refused.
    #[test]
    fn a_failed_provisioning_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_module = dir.path().join("not-a-module.so");
        std::fs::write(&not_a_module, b"not a shared library").unwrap();
        let mut cfg = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert!(provision(&mut cfg, &not_a_module).is_err());
        assert!(!dir.path().join("data").join(DIR).exists());
        assert!(matches!(cfg.hsm, HsmConfig::Embedded));
    }

    #[test]
    fn a_configuration_with_its_own_hsm_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = {}\n[hsm]\nbackend = \"embedded\"\n",
                toml_string(&dir.path().join("data").display().to_string())
            ),
        )
        .unwrap();
        let mut cfg = Config::load(&path).unwrap();
        assert!(cfg.hsm_explicit);
        let refused = provision(&mut cfg, Path::new(DEFAULT_MODULE))
            .err()
            .unwrap();
        assert!(refused.to_string().contains("remove [hsm]"), "{refused}");
        // Even with a bench token present, an explicit [hsm] wins.
        std::fs::create_dir_all(dir.path().join("data").join(DIR)).unwrap();
        std::fs::write(dir.path().join("data").join(DIR).join(HSM_FILE), "").unwrap();
        assert!(!apply(&mut cfg).unwrap());
        assert!(matches!(cfg.hsm, HsmConfig::Embedded));
    }
}
