//! Request rate limits per SecretId and action family (`[rate_limit]`), with `governor`'s
//! GCRA limiter: a steady rate with bursts of up to one second's worth.

use crate::config::RateLimitConfig;
use crate::error::{Error, Result};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// How an action is counted (and whether it is read-only, for the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Uses key material: Encrypt, Decrypt, Sign, GetSecretValue...
    Crypto,
    /// Reads metadata: Describe*, List*, Get*, LookUpEvents.
    Read,
    /// Changes state.
    Write,
}

impl Family {
    pub fn of(action: &str) -> Family {
        const CRYPTO: &[&str] = &[
            "Encrypt",
            "Decrypt",
            "ReEncrypt",
            "GenerateDataKey",
            "GenerateRandom",
            "SignByAsymmetricKey",
            "VerifyByAsymmetricKey",
            "AsymmetricRsaDecrypt",
            "AsymmetricSm2Decrypt",
            "GetSecretValue",
            "GetSSHKeyPairValue",
            "GetDataKeyPlaintext",
            "GetDataKeyCiphertextBlob",
            "GetPublicKey",
        ];
        if CRYPTO.contains(&action) {
            Family::Crypto
        } else if ["Describe", "List", "Get", "LookUp", "Verify", "Export"]
            .iter()
            .any(|p| action.starts_with(p))
        {
            Family::Read
        } else {
            Family::Write
        }
    }

    pub fn read_only(self) -> bool {
        self != Family::Write
    }

    fn name(self) -> &'static str {
        match self {
            Family::Crypto => "cryptographic",
            Family::Read => "read",
            Family::Write => "write",
        }
    }
}

pub struct Limiter {
    crypto: Option<DefaultKeyedRateLimiter<String>>,
    read: Option<DefaultKeyedRateLimiter<String>>,
    write: Option<DefaultKeyedRateLimiter<String>>,
}

fn keyed(per_sec: u32) -> Option<DefaultKeyedRateLimiter<String>> {
    NonZeroU32::new(per_sec).map(|n| RateLimiter::keyed(Quota::per_second(n)))
}

impl Limiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        Limiter {
            crypto: keyed(cfg.crypto_per_sec),
            read: keyed(cfg.read_per_sec),
            write: keyed(cfg.write_per_sec),
        }
    }

    pub fn check(&self, secret_id: &str, family: Family) -> Result<()> {
        let limiter = match family {
            Family::Crypto => &self.crypto,
            Family::Read => &self.read,
            Family::Write => &self.write,
        };
        let Some(l) = limiter else {
            return Ok(());
        };
        l.check_key(&secret_id.to_string()).map_err(|_| {
            Error::RequestLimitExceeded(format!(
                "too many {} requests for SecretId {secret_id}; retry later",
                family.name()
            ))
        })
    }

    /// Drops idle keys so the maps do not grow with every SecretId ever seen.
    pub fn housekeeping(&self) {
        for l in [&self.crypto, &self.read, &self.write]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_limits() {
        assert_eq!(Family::of("Encrypt"), Family::Crypto);
        assert_eq!(Family::of("ListKeys"), Family::Read);
        assert_eq!(Family::of("CreateKey"), Family::Write);
        assert!(!Family::Write.read_only());
        let l = Limiter::new(&RateLimitConfig {
            crypto_per_sec: 3,
            read_per_sec: 0,
            write_per_sec: 1,
        });
        let ok = (0..10)
            .filter(|_| l.check("AKIDa", Family::Crypto).is_ok())
            .count();
        // A burst of one second's worth, then refusals (a slow machine may refill one).
        assert!((3..10).contains(&ok), "{ok}");
        assert!(l.check("AKIDb", Family::Crypto).is_ok(), "per SecretId");
        assert!((0..100).all(|_| l.check("AKIDa", Family::Read).is_ok()));
        let refused = (0..10)
            .filter(|_| {
                matches!(
                    l.check("AKIDa", Family::Write),
                    Err(Error::RequestLimitExceeded(_))
                )
            })
            .count();
        assert!(refused > 0);
    }
}
