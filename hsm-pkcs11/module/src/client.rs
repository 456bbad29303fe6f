//! A small blocking Tencent Cloud API 3.0 client: TC3-HMAC-SHA256 signing as the official
//! SDKs do it, over ureq (rustls for https). The module runs on the application's threads, so
//! no async runtime is involved; the agent is shared and thread-safe.
//!
//! The signer is the client half of host/src/api/tc3.rs, written again rather than shared:
//! the `keyward` library would link the daemon (tokio, axum, SQLite, PostgreSQL) into every
//! application that loads the module. The API reference's test vector keeps the two in step.

use crate::config::Config;
use crate::error::{Error, Result};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

const KMS_VERSION: &str = "2019-01-18";
const SERVICE: &str = "kms";
const CONTENT_TYPE: &str = "application/json";

pub struct Client {
    agent: ureq::Agent,
    url: String,
    /// What is sent (and signed) as `Host`.
    host: String,
    secret_id: String,
    secret_key: Zeroizing<String>,
    region: String,
}

impl Client {
    pub fn new(cfg: &Config) -> Result<Client> {
        let (scheme, rest) = cfg
            .endpoint
            .split_once("://")
            .ok_or_else(|| Error::Config("endpoint must be http(s)://host[:port]".into()))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(Error::Config("endpoint lacks a host".into()));
        }
        let mut builder = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            // The daemon is the only peer; an HTTP proxy from the environment must not apply.
            .try_proxy_from_env(false);
        let default_port = match scheme {
            "https" => {
                builder = builder.tls_config(Arc::new(tls_config(cfg)?));
                ":443"
            }
            "http" => {
                // Credentials-bearing requests in clear text only where nobody can listen.
                if !is_loopback(authority) {
                    return Err(Error::Config(
                        "plain http:// is allowed only to a loopback address; use https://".into(),
                    ));
                }
                ":80"
            }
            other => return Err(Error::Config(format!("unknown scheme `{other}`"))),
        };
        // ureq would leave the default port out of `Host`; the signature must cover exactly
        // what is sent, so we send our own.
        let host = authority
            .strip_suffix(default_port)
            .unwrap_or(authority)
            .to_string();
        Ok(Client {
            agent: builder.build(),
            url: format!("{scheme}://{authority}/"),
            host,
            secret_id: cfg.secret_id.clone(),
            secret_key: cfg.secret_key.clone(),
            region: cfg.region.clone(),
        })
    }

    /// Calls a KMS action; returns the `Response` object, or the API error it carries.
    pub fn kms(&self, action: &str, body: &Value) -> Result<Value> {
        let body = serde_json::to_vec(body).map_err(|e| Error::Transport(e.to_string()))?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let auth = authorization(
            &self.secret_id,
            &self.secret_key,
            &self.host,
            timestamp,
            &body,
        );
        let resp = self
            .agent
            .post(&self.url)
            .set("Host", &self.host)
            .set("Content-Type", CONTENT_TYPE)
            .set("Authorization", &auth)
            .set("X-TC-Action", action)
            .set("X-TC-Version", KMS_VERSION)
            .set("X-TC-Timestamp", &timestamp.to_string())
            .set("X-TC-Region", &self.region)
            .send_bytes(&body);
        let resp = match resp {
            Ok(r) => r,
            // The envelope of an error status still says what went wrong.
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(Error::Transport(format!("{action}: {e}"))),
        };
        let status = resp.status();
        let text = resp
            .into_string()
            .map_err(|e| Error::Transport(format!("{action}: reading the response: {e}")))?;
        let v: Value = serde_json::from_str(&text).map_err(|_| {
            Error::Transport(format!("{action}: HTTP {status}, not an API response"))
        })?;
        let r = v
            .get("Response")
            .cloned()
            .ok_or_else(|| Error::Transport(format!("{action}: response lacks `Response`")))?;
        if let Some(err) = r.get("Error") {
            let field = |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            return Err(Error::Api {
                action: action.into(),
                code: field("Code"),
                message: field("Message"),
            });
        }
        Ok(r)
    }
}

fn is_loopback(authority: &str) -> bool {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn tls_config(cfg: &Config) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Config(format!("ca_file {}: {e}", path.display())))?;
            for c in certs {
                let c = c.map_err(|e| Error::Config(format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(c)
                    .map_err(|e| Error::Config(format!("ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// The `Authorization` header of a POST to `/` signing `content-type` and `host`
/// (the canonical form of the API 3.0 signature, version TC3-HMAC-SHA256).
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let date = utc_date(timestamp);
    let canonical = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        CONTENT_TYPE,
        host.to_ascii_lowercase(),
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{date}/{SERVICE}/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut k = Zeroizing::new(Vec::with_capacity(3 + secret_key.len()));
    k.extend_from_slice(b"TC3");
    k.extend_from_slice(secret_key.as_bytes());
    let k_date = Zeroizing::new(hmac(&k, date.as_bytes()));
    let k_service = Zeroizing::new(hmac(k_date.as_ref(), SERVICE.as_bytes()));
    let k_signing = Zeroizing::new(hmac(k_service.as_ref(), b"tc3_request"));
    let signature = hex::encode(hmac(k_signing.as_ref(), to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, \
         Signature={signature}"
    )
}

/// `YYYY-MM-DD` (UTC) of a Unix timestamp: days to civil date (H. Hinnant's algorithm).
fn utc_date(timestamp: i64) -> String {
    let z = timestamp.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_798_761_599), "2026-12-31");
    }

    /// Vector 1 of the API reference (a KMS Encrypt the Python SDK signed): the same inputs
    /// must give the SDK's signature.
    #[test]
    fn signs_like_the_python_sdk() {
        let body = br#"{"KeyId": "11111111-2222-3333-4444-555555555555", "Plaintext": "aGVsbG8=", "EncryptionContext": "{\"app\": \"demo\"}"}"#;
        assert_eq!(body.len(), 118);
        let auth = authorization(
            "AKIDKEYWARDTEST0000000000000000000",
            "KeywardTestSecretKey0000000000000",
            "127.0.0.1:8080",
            1_795_359_828,
            body,
        );
        assert_eq!(
            auth,
            "TC3-HMAC-SHA256 Credential=AKIDKEYWARDTEST0000000000000000000/2026-11-22/kms/\
             tc3_request, SignedHeaders=content-type;host, \
             Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d"
        );
    }

    #[test]
    fn loopback_only_for_http() {
        assert!(is_loopback("127.0.0.1:8080"));
        assert!(is_loopback("localhost:1"));
        assert!(is_loopback("[::1]:8443"));
        assert!(!is_loopback("10.0.0.1:8080"));
        assert!(!is_loopback("kms.example:80"));
    }
}
