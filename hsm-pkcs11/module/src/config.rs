//! The module's own configuration file, named by `KEYWARD_PKCS11_CONFIG` (applications load
//! the module by path and cannot pass it arguments).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const CONFIG_ENV: &str = "KEYWARD_PKCS11_CONFIG";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    endpoint: String,
    region: String,
    secret_id: String,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    pin: Option<String>,
    token_label: Option<String>,
    timeout_secs: Option<u64>,
}

pub struct Config {
    pub endpoint: String,
    pub region: String,
    pub secret_id: String,
    pub secret_key: Zeroizing<String>,
    pub ca_file: Option<PathBuf>,
    /// When set, the token requires C_Login with this PIN before private keys are visible.
    pub pin: Option<Zeroizing<String>>,
    pub token_label: String,
    pub timeout_secs: u64,
}

impl Config {
    pub fn from_env() -> Result<Config> {
        let path = std::env::var_os(CONFIG_ENV).ok_or_else(|| {
            Error::Config(format!(
                "{CONFIG_ENV} is not set (it names the config file)"
            ))
        })?;
        Config::load(Path::new(&path))
    }

    pub fn load(path: &Path) -> Result<Config> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        );
        Config::parse(&text).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Config> {
        let f: File = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        let secret_key = match (f.secret_key, f.secret_key_file) {
            (Some(k), None) => Zeroizing::new(k),
            (None, Some(p)) => Zeroizing::new(
                std::fs::read_to_string(&p)
                    .map_err(|e| Error::Config(format!("secret_key_file {}: {e}", p.display())))?
                    .trim()
                    .to_string(),
            ),
            _ => {
                return Err(Error::Config(
                    "exactly one of secret_key and secret_key_file is required".into(),
                ))
            }
        };
        let label = f.token_label.unwrap_or_else(|| "Keyward".into());
        if label.len() > 32 {
            return Err(Error::Config("token_label is at most 32 bytes".into()));
        }
        Ok(Config {
            endpoint: f.endpoint,
            region: f.region,
            secret_id: f.secret_id,
            secret_key,
            ca_file: f.ca_file,
            pin: f.pin.map(Zeroizing::new),
            token_label: label,
            timeout_secs: f.timeout_secs.unwrap_or(30),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = Config::parse(
            "endpoint = \"http://127.0.0.1:8080\"\nregion = \"ap-guangzhou\"\n\
             secret_id = \"AKID\"\nsecret_key = \"k\"\npin = \"1234\"\n",
        )
        .unwrap();
        assert_eq!(c.token_label, "Keyward");
        assert_eq!(c.pin.as_deref().map(String::as_str), Some("1234"));
        // Both key sources, or an unknown field, are configuration errors.
        assert!(Config::parse(
            "endpoint = \"x\"\nregion = \"r\"\nsecret_id = \"a\"\nsecret_key = \"k\"\n\
             secret_key_file = \"/f\"\n"
        )
        .is_err());
        assert!(Config::parse(
            "endpoint = \"x\"\nregion = \"r\"\nsecret_id = \"a\"\nsecret_key = \"k\"\nbogus = 1\n"
        )
        .is_err());
    }
}
