//! Request admission: rate limits per SecretId and action family (`[rate_limit]`), with
//! `governor`'s GCRA limiter (a steady rate with bursts of up to one second's worth), and the
//! memory of accepted signatures that binds each to its routing headers.

use super::actions::Family;
use super::tc3::SeenSignatures;
use super::MAX_SKEW_SECS;
use crate::config::RateLimitConfig;
use crate::error::{Error, Result};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

pub struct Limiter {
    crypto: Option<DefaultKeyedRateLimiter<String>>,
    read: Option<DefaultKeyedRateLimiter<String>>,
    write: Option<DefaultKeyedRateLimiter<String>>,
    /// Audit records of unauthenticated refusals, per source address.
    unauthenticated: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    /// Verified signatures of the timestamp window with their routing (see `api::dispatch`).
    pub signatures: SeenSignatures<super::FirstUse>,
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
            unauthenticated: NonZeroU32::new(cfg.unauthenticated_records_per_sec)
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            signatures: SeenSignatures::new(MAX_SKEW_SECS),
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

    /// Whether a request from `source` refused before authentication still gets its own
    /// audit record (beyond the budget it is only counted).
    pub fn record_unauthenticated(&self, source: Option<IpAddr>) -> bool {
        self.unauthenticated
            .as_ref()
            .is_none_or(|l| l.check_key(&source).is_ok())
    }

    /// Drops idle keys so the maps do not grow with every SecretId ever seen.
    pub fn housekeeping(&self) {
        if let Some(l) = &self.unauthenticated {
            l.retain_recent();
        }
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
        assert!(!Family::Write.read_only());
        let l = Limiter::new(&RateLimitConfig {
            crypto_per_sec: 3,
            read_per_sec: 0,
            write_per_sec: 1,
            unauthenticated_records_per_sec: 0,
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
