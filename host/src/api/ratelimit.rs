//! Request admission: rate limits per SecretId and action family (`[rate_limit]`), with
//! `governor`'s GCRA limiter (a steady rate with bursts of up to one second's worth), and the
//! memory of accepted signatures that binds each to its routing headers.

use super::actions::Family;
use super::tc3::SeenSignatures;
use super::MAX_SKEW_SECS;
use crate::config::RateLimitConfig;
use crate::error::{Error, Result};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Instant;

pub struct Limiter {
    crypto: Option<DefaultKeyedRateLimiter<String>>,
    read: Option<DefaultKeyedRateLimiter<String>>,
    write: Option<DefaultKeyedRateLimiter<String>>,
    /// Audit records of unauthenticated refusals, per source address.
    unauthenticated: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    /// Failed authentications per source address.
    auth_failures: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    /// Sources over their failure budget, and when it has refilled enough to try again.
    /// Checked before any authentication work; empty (one read lock) in normal operation.
    throttled: RwLock<HashMap<Option<IpAddr>, Instant>>,
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
            auth_failures: NonZeroU32::new(cfg.auth_failures_per_sec)
                .map(|n| RateLimiter::keyed(Quota::per_second(n))),
            throttled: RwLock::new(HashMap::new()),
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

    /// Admits a request from `source` to authentication, unless the source has used up its
    /// budget of failed authentications.
    pub fn admit_source(&self, source: Option<IpAddr>) -> Result<()> {
        let until = match self.throttled.read() {
            Ok(t) if t.is_empty() => return Ok(()),
            Ok(t) => t.get(&source).copied(),
            Err(_) => None,
        };
        match until {
            Some(until) if Instant::now() < until => Err(Error::RequestLimitExceeded(format!(
                "too many failed authentications from {}; retry later",
                source.map_or_else(|| "this source".into(), |s| s.to_string())
            ))),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `source`; beyond the budget the source is
    /// refused by `admit_source` until the budget allows one more.
    pub fn authentication_failed(&self, source: Option<IpAddr>) {
        let Some(l) = &self.auth_failures else {
            return;
        };
        if let Err(not_until) = l.check_key(&source) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if let Ok(mut t) = self.throttled.write() {
                t.insert(source, Instant::now() + wait);
            }
        }
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
        for l in [&self.unauthenticated, &self.auth_failures]
            .into_iter()
            .flatten()
        {
            l.retain_recent();
        }
        if let Ok(mut t) = self.throttled.write() {
            let now = Instant::now();
            t.retain(|_, until| *until > now);
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
            auth_failures_per_sec: 0,
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

    #[test]
    fn a_source_over_its_failure_budget_is_refused_before_authentication() {
        let l = Limiter::new(&RateLimitConfig {
            auth_failures_per_sec: 5,
            ..Default::default()
        });
        let bad: Option<IpAddr> = Some("192.0.2.1".parse().unwrap());
        let good: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
        for _ in 0..5 {
            assert!(l.admit_source(bad).is_ok());
            l.authentication_failed(bad);
        }
        // Within the burst nothing is refused; the failures beyond it are.
        for _ in 0..20 {
            l.authentication_failed(bad);
        }
        assert!(matches!(
            l.admit_source(bad),
            Err(Error::RequestLimitExceeded(m)) if m.contains("192.0.2.1")
        ));
        assert!(l.admit_source(good).is_ok(), "per source");
        let off = Limiter::new(&RateLimitConfig {
            auth_failures_per_sec: 0,
            ..Default::default()
        });
        for _ in 0..100 {
            off.authentication_failed(bad);
        }
        assert!(off.admit_source(bad).is_ok());
    }
}
