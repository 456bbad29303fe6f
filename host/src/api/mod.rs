//! The HTTP front: one POST endpoint speaking Tencent Cloud API 3.0. It reads the raw body
//! (bounded), then authenticates, routes and runs the action on tokio's blocking pool, because
//! store and HSM calls block.

mod admin_actions;
mod data_key_actions;
pub mod envelope;
mod kms_actions;
pub mod params;
mod ssm_actions;

use crate::accounts::{Accounts, ApiCredential};
use crate::alarms::Alarms;
use crate::clock::{AdjustableClock, Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::kms::{Caller, Kms};
use crate::ssm::Ssm;
use crate::tc3;
use axum::body::Body;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Instant;

/// Maximum clock skew between a request's X-TC-Timestamp and the server.
pub const MAX_SKEW_SECS: i64 = 300;

pub struct AppState {
    pub kms: Arc<Kms>,
    pub ssm: Ssm,
    pub accounts: Accounts,
    pub cfg: Arc<Config>,
    /// The service clock (rotation, deletion). Request signatures are always checked against
    /// the system clock, so an adjusted service clock never breaks authentication.
    pub clock: Arc<dyn Clock>,
    /// Present only with `[testing] adjustable_clock`.
    pub adjustable_clock: Option<Arc<AdjustableClock>>,
    pub alarms: Arc<Alarms>,
}

/// Everything an action handler may use.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub caller: Caller,
}

pub type Fields = Map<String, Value>;
type Handler = fn(&Ctx<'_>, &[u8]) -> Result<Fields>;

/// A product served on this endpoint: its API version and credential-scope service name.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Product {
    Kms,
    Ssm,
    /// Keyward's own operator actions (service `keyward`, version `2026-11-01`).
    Admin,
}

impl Product {
    fn from_version(v: &str) -> Option<Self> {
        match v {
            "2019-01-18" => Some(Product::Kms),
            "2019-09-23" => Some(Product::Ssm),
            admin_actions::VERSION => Some(Product::Admin),
            _ => None,
        }
    }

    fn service(self) -> &'static str {
        match self {
            Product::Kms => "kms",
            Product::Ssm => "ssm",
            Product::Admin => admin_actions::SERVICE,
        }
    }

    fn handler(self, action: &str) -> Option<Handler> {
        match self {
            Product::Kms => {
                kms_actions::handler(action).or_else(|| data_key_actions::handler(action))
            }
            Product::Ssm => ssm_actions::handler(action),
            Product::Admin => admin_actions::handler(action),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .fallback(handle)
        .with_state(state)
}

/// Prometheus text exposition of the counters operators alert on.
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &st.alarms.counters;
    let body = format!(
        "# TYPE keyward_alarms_raised_total counter\nkeyward_alarms_raised_total {}\n\
         # TYPE keyward_alarms_delivered_total counter\nkeyward_alarms_delivered_total {}\n\
         # TYPE keyward_alarm_delivery_failures_total counter\nkeyward_alarm_delivery_failures_total {}\n",
        c.raised.load(Relaxed),
        c.delivered.load(Relaxed),
        c.delivery_failures.load(Relaxed),
    );
    axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    ))
}

async fn handle(State(st): State<Arc<AppState>>, req: Request<Body>) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let action = header(&parts, "x-tc-action").unwrap_or("").to_string();
    let limit = st.cfg.limits.max_body_bytes;
    let result = async {
        if parts.method != axum::http::Method::POST {
            return Err(Error::UnsupportedProtocol(
                "only POST requests with a JSON body are supported".into(),
            ));
        }
        let body = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| Error::RequestTooLarge(limit))?;
        if kms_actions::runs_inline(&action) || ssm_actions::runs_inline(&action) {
            // Reads and crypto calls take microseconds: run them on the worker thread rather
            // than paying a hand-off to the blocking pool (measured in docs/benchmarks.md).
            // The PKCS#11 session pool is at least as large as the worker pool, so a worker
            // never waits for a session here.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                dispatch(&st, &parts, &body)
            }))
            .map_err(|_| Error::Internal("action handler panicked".into()))?
        } else {
            let st = st.clone();
            tokio::task::spawn_blocking(move || dispatch(&st, &parts, &body))
                .await
                .map_err(|e| Error::Internal(format!("action handler failed: {e}")))?
        }
    }
    .await;
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
        Ok(fields) => {
            tracing::debug!(%request_id, %action, elapsed_us, "ok");
            envelope::success(fields, &request_id)
        }
        Err(e) => {
            let code = envelope::error_code(&e);
            if code == "InternalError" {
                tracing::error!(%request_id, %action, error = %e, "internal error");
            } else {
                tracing::info!(%request_id, %action, code, elapsed_us, "refused");
            }
            envelope::failure(&e, &request_id)
        }
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn dispatch(st: &AppState, parts: &Parts, body: &[u8]) -> Result<Fields> {
    let action = header(parts, "x-tc-action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Action header is required".into()))?;
    let version = header(parts, "x-tc-version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Version header is required".into()))?;
    let product =
        Product::from_version(version).ok_or_else(|| Error::NoSuchVersion(version.into()))?;
    let handler = product
        .handler(action)
        .ok_or_else(|| Error::InvalidAction(action.into()))?;
    let cred = authenticate(st, parts, body, product.service())?;
    let region = match header(parts, "x-tc-region").filter(|r| !r.is_empty()) {
        Some(r) if st.cfg.region(r).is_some() => r.to_string(),
        Some(r) => return Err(Error::UnsupportedRegion(r.into())),
        None => st.cfg.regions[0].name.clone(),
    };
    let ctx = Ctx {
        state: st,
        caller: Caller {
            owner_uin: cred.owner_uin,
            uin: cred.uin,
            region,
        },
    };
    handler(&ctx, body)
}

/// TC3-HMAC-SHA256 verification in the order the reference gives, each failure with its code.
fn authenticate(
    st: &AppState,
    parts: &Parts,
    body: &[u8],
    service: &str,
) -> Result<Arc<ApiCredential>> {
    let auth = header(parts, "authorization")
        .ok_or_else(|| Error::InvalidAuthorization("the Authorization header is missing".into()))?;
    let auth =
        tc3::parse_authorization(auth).map_err(|m| Error::InvalidAuthorization(m.0.into()))?;
    let cred = st
        .accounts
        .credential(&auth.secret_id)?
        .ok_or(Error::SecretIdNotFound)?;
    let timestamp: i64 = header(parts, "x-tc-timestamp")
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| Error::InvalidAuthorization("X-TC-Timestamp must be Unix seconds".into()))?;
    if (SystemClock.now() - timestamp).abs() > MAX_SKEW_SECS {
        return Err(Error::SignatureExpire);
    }
    if auth.service != service {
        return Err(Error::SignatureFailure(format!(
            "credential scope names service `{}`, this action belongs to `{service}`",
            auth.service
        )));
    }
    if tc3::utc_date(timestamp).as_deref() != Some(auth.date.as_str()) {
        return Err(Error::SignatureFailure(
            "credential scope date is not the UTC date of X-TC-Timestamp".into(),
        ));
    }
    if header(parts, "x-tc-content-sha256").is_some_and(|v| v == "UNSIGNED-PAYLOAD") {
        return Err(Error::InvalidAuthorization(
            "unsigned payloads are not accepted: sign the request body".into(),
        ));
    }
    let (canonical, _) = tc3::canonical_request(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &auth.signed_headers,
        |name| header(parts, name).map(str::to_string),
        &tc3::sha256_hex(body),
    )
    .ok_or_else(|| Error::SignatureFailure("a signed header is missing".into()))?;
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let expected = tc3::signature(
        &tc3::signing_key(&cred.secret_key, &auth.date, &auth.service),
        &tc3::string_to_sign(timestamp, &scope, &canonical),
    );
    if !tc3::signatures_equal(&expected, &auth.signature) {
        return Err(Error::SignatureFailure(
            "the request signature does not match".into(),
        ));
    }
    Ok(cred)
}
