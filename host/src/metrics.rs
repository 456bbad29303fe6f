//! The Prometheus metrics of `/metrics` (OpenMetrics text, `prometheus-client`): requests by
//! action and outcome, request, HSM and store latency, HSM errors, PKCS#11 session use and
//! the audit queue, beside the alarm, audit and rotation counters the services keep.
//!
//! Cost on the request path: label sets are `&'static str`s (the action table's names and
//! the result codes, never caller-supplied text, so the number of series stays bounded), a
//! family lookup is a read lock and a hash, and a histogram observation is a few atomic
//! operations (`docs/benchmarks.md` measures the difference).

use crate::error::{Error, Result};
use crate::hsm::{asym, Hsm, ProtectionLevel};
use crate::store::{StoreCall, StoreObserver};
use keyward_shared::Algorithm;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The content type of what `render` returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    service: &'static str,
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    service: &'static str,
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 50 µs to ~6.5 s in factors of 2.5: an AES-GCM call on the embedded backend takes tens of
/// microseconds, an RSA key pair on a token or a PostgreSQL round trip under load seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.5, 14))
}

/// A value the services keep themselves, read when scraped.
pub struct Sampled {
    pub name: &'static str,
    pub help: &'static str,
    pub value: u64,
    pub gauge: bool,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<ActionLabels>,
    hsm_seconds: Histograms<OpLabels>,
    hsm_errors: Family<OpLabels, Counter>,
    store_seconds: Histograms<OpLabels>,
    /// The PKCS#11 session pool, read when scraped (weak: the HSM owns the metrics' users,
    /// not the other way round).
    hsm: OnceLock<Weak<dyn Hsm>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "keyward_requests",
            "API requests answered, by service, action and result code (Success or the error code)",
            requests.clone(),
        );
        let request_seconds: Histograms<ActionLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "keyward_request_duration_seconds",
            "Time from a request's arrival to its answer, by service and action",
            request_seconds.clone(),
        );
        let hsm_seconds: Histograms<OpLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "keyward_hsm_operation_duration_seconds",
            "Time of each HSM backend operation, by operation",
            hsm_seconds.clone(),
        );
        let hsm_errors = Family::<OpLabels, Counter>::default();
        registry.register(
            "keyward_hsm_operation_errors",
            "HSM backend operations that failed in the backend (not refusals of a caller's bad input)",
            hsm_errors.clone(),
        );
        let store_seconds: Histograms<OpLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "keyward_store_duration_seconds",
            "Time of store work: op=call for each call including the wait for the connection, \
             op=commit for the durable commit of a write transaction with its audit record",
            store_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            hsm_seconds,
            hsm_errors,
            store_seconds,
            hsm: OnceLock::new(),
        }
    }

    /// One answered API request. `action` is `unknown` for names outside the action table.
    pub fn request(
        &self,
        service: &'static str,
        action: &'static str,
        outcome: &'static str,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                service,
                action,
                outcome,
            })
            .inc();
        self.request_seconds
            .get_or_create(&ActionLabels { service, action })
            .observe(took.as_secs_f64());
    }

    /// Wraps `hsm` so that each operation's time and backend failures are counted, and its
    /// session pool is reported when scraped.
    pub fn meter_hsm(self: &Arc<Self>, hsm: Arc<dyn Hsm>) -> Arc<dyn Hsm> {
        let _ = self.hsm.set(Arc::downgrade(&hsm));
        Arc::new(MeteredHsm {
            inner: hsm,
            metrics: self.clone(),
        })
    }

    fn hsm_call<T>(&self, op: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let started = Instant::now();
        let out = f();
        let labels = OpLabels { op };
        self.hsm_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        // Only the backend's own failures: a tampered ciphertext or an unsupported algorithm
        // is the caller's, and would make HSM alerts fire on client bugs.
        if let Err(Error::Hsm(_)) = &out {
            self.hsm_errors.get_or_create(&labels).inc();
        }
        out
    }

    /// The OpenMetrics text: the registry's families, then the values the services keep
    /// (`sampled`) and the session pool, then `# EOF`.
    pub fn render(&self, sampled: &[Sampled]) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut now = Registry::default();
        for s in sampled {
            match s.gauge {
                true => now.register(s.name, s.help, ConstGauge::new(s.value as i64)),
                false => now.register(s.name, s.help, ConstCounter::new(s.value)),
            }
        }
        if let Some((in_use, size)) = self
            .hsm
            .get()
            .and_then(Weak::upgrade)
            .and_then(|h| h.session_use())
        {
            now.register(
                "keyward_hsm_sessions_in_use",
                "PKCS#11 sessions checked out of the pool now",
                ConstGauge::new(in_use as i64),
            );
            now.register(
                "keyward_hsm_sessions",
                "PKCS#11 sessions the pool holds ([hsm] pool_size)",
                ConstGauge::new(size as i64),
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &now);
        let _ = encode_eof(&mut out);
        out
    }
}

impl StoreObserver for Metrics {
    fn observed(&self, call: StoreCall, took: Duration) {
        let op = match call {
            StoreCall::Call => "call",
            StoreCall::Commit => "commit",
        };
        self.store_seconds
            .get_or_create(&OpLabels { op })
            .observe(took.as_secs_f64());
    }
}

/// An HSM backend with each operation timed (`Metrics::meter_hsm`).
struct MeteredHsm {
    inner: Arc<dyn Hsm>,
    metrics: Arc<Metrics>,
}

impl Hsm for MeteredHsm {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn protection_level(&self, alg: Algorithm) -> ProtectionLevel {
        self.inner.protection_level(alg)
    }

    fn generate(&self, alg: Algorithm) -> Result<Vec<u8>> {
        self.metrics
            .hsm_call("generate", || self.inner.generate(alg))
    }

    fn encrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.metrics.hsm_call("encrypt", || {
            self.inner.encrypt(alg, sealed, aad, plaintext)
        })
    }

    fn decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        nonce: &[u8],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.metrics.hsm_call("decrypt", || {
            self.inner.decrypt(alg, sealed, nonce, aad, ciphertext)
        })
    }

    fn random(&self, len: usize) -> Result<Zeroizing<Vec<u8>>> {
        self.metrics.hsm_call("random", || self.inner.random(len))
    }

    fn device_identity(&self) -> Option<Vec<u8>> {
        self.inner.device_identity()
    }

    fn supports(&self, alg: Algorithm) -> bool {
        self.inner.supports(alg)
    }

    fn generate_key_pair(&self, alg: Algorithm) -> Result<(Vec<u8>, Vec<u8>)> {
        self.metrics
            .hsm_call("generate_key_pair", || self.inner.generate_key_pair(alg))
    }

    fn sign(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: asym::SignScheme,
        message: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>> {
        self.metrics.hsm_call("sign", || {
            self.inner.sign(alg, sealed, scheme, message, is_digest)
        })
    }

    fn asym_decrypt(
        &self,
        alg: Algorithm,
        sealed: &[u8],
        scheme: asym::DecryptScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.metrics.hsm_call("asym_decrypt", || {
            self.inner.asym_decrypt(alg, sealed, scheme, ciphertext)
        })
    }

    fn import_wrapped(
        &self,
        alg: Algorithm,
        sealed_wrapping: &[u8],
        scheme: asym::DecryptScheme,
        encrypted: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        self.metrics.hsm_call("import_wrapped", || {
            self.inner
                .import_wrapped(alg, sealed_wrapping, scheme, encrypted)
        })
    }

    fn session_use(&self) -> Option<(usize, usize)> {
        self.inner.session_use()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_histograms_and_sampled_values() {
        let m = Metrics::new();
        m.request("kms", "Encrypt", "Success", Duration::from_micros(120));
        m.request("kms", "Encrypt", "Success", Duration::from_millis(3));
        m.observed(StoreCall::Commit, Duration::from_millis(2));
        let text = m.render(&[Sampled {
            name: "keyward_audit_queue_depth",
            help: "records waiting",
            value: 7,
            gauge: true,
        }]);
        assert!(
            text.contains(
                r#"keyward_requests_total{service="kms",action="Encrypt",outcome="Success"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"keyward_request_duration_seconds_count{service="kms",action="Encrypt"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"keyward_store_duration_seconds_count{op="commit"} 1"#),
            "{text}"
        );
        assert!(text.contains("keyward_audit_queue_depth 7"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
