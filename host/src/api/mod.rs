//! The HTTP front: one POST endpoint speaking Tencent Cloud API 3.0. It reads the raw body
//! (bounded), then authenticates, routes and runs the action on tokio's blocking pool, because
//! store and HSM calls block.

pub mod actions;
mod admin_actions;
mod audit_actions;
mod crypto_actions;
mod data_key_actions;
pub mod envelope;
mod iam_actions;
mod kms_actions;
pub mod params;
pub mod ratelimit;
mod ssm_actions;
pub mod tc3;

use crate::alarms::Alarms;
use crate::audit::{record::AuditRecord, Audit};
use crate::cam::Access;
use crate::cam::Caller;
use crate::cam::{ApiCredential, Cam};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::jobs::Jobs;
use crate::kms::Kms;
use crate::ssm::Ssm;
use crate::store::Trail;
use actions::{Action, Exec, Product, Run, Scope};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::Request;
use axum::response::Response;
use axum::Router;
use ratelimit::Limiter;
use serde_json::{Map, Value};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

/// Maximum clock skew between a request's X-TC-Timestamp and the server.
pub const MAX_SKEW_SECS: i64 = 300;

pub struct AppState {
    pub kms: Arc<Kms>,
    pub ssm: Arc<Ssm>,
    pub cam: Cam,
    pub cfg: Arc<Config>,
    /// The service clock (rotation, deletion). Request signatures are always checked against
    /// the system clock, so an adjusted service clock never breaks authentication.
    pub clock: Arc<dyn Clock>,
    pub jobs: Jobs,
    pub alarms: Arc<Alarms>,
    pub audit: Audit,
    pub limiter: Limiter,
}

/// Everything an action handler may use.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub caller: Caller,
}

pub type Fields = Map<String, Value>;
pub type Handler = fn(&Ctx<'_>, &[u8]) -> Result<Fields>;

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
    let a = &st.audit.counters;
    let body = format!(
        "# TYPE keyward_alarms_raised_total counter\nkeyward_alarms_raised_total {}\n\
         # TYPE keyward_alarms_delivered_total counter\nkeyward_alarms_delivered_total {}\n\
         # TYPE keyward_alarm_delivery_failures_total counter\nkeyward_alarm_delivery_failures_total {}\n\
         # TYPE keyward_audit_records_written_total counter\nkeyward_audit_records_written_total {}\n\
         # TYPE keyward_audit_write_failures_total counter\nkeyward_audit_write_failures_total {}\n\
         # TYPE keyward_audit_checkpoints_total counter\nkeyward_audit_checkpoints_total {}\n",
        c.raised.load(Relaxed),
        c.delivered.load(Relaxed),
        c.delivery_failures.load(Relaxed),
        a.written.load(Relaxed)
            + st.audit.written_with_changes(),
        a.failures.load(Relaxed),
        a.checkpoints.load(Relaxed),
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
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let action = header(&parts, "x-tc-action").unwrap_or("").to_string();
    let product = header(&parts, "x-tc-version").and_then(Product::from_version);
    let row = product.and_then(|p| actions::find(p, &action));
    // The request's unit of work: its audit record travels with the caller into the handler
    // and every store write, and comes back here, built once and never copied.
    let trail =
        Arc::new(Trail::new(st.audit.enabled().then(|| {
            base_record(&st, &parts, product, row, &request_id, peer)
        })));
    let limit = st.cfg.limits.max_body_bytes;
    let result = 'run: {
        if parts.method != axum::http::Method::POST {
            break 'run Err(Error::UnsupportedProtocol(
                "only POST requests with a JSON body are supported".into(),
            ));
        }
        let body = match axum::body::to_bytes(body, limit).await {
            Ok(b) => b,
            Err(_) => break 'run Err(Error::RequestTooLarge(limit)),
        };
        let run = {
            let (st, trail) = (st.clone(), trail.clone());
            move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    dispatch(&st, &parts, row, trail, &body, peer)
                }))
                .unwrap_or_else(|_| Err(Error::Internal("action handler panicked".into())));
                wipe_body(body);
                result
            }
        };
        if row.is_some_and(|a| a.exec == Exec::Inline) {
            run()
        } else {
            tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("action handler failed: {e}"))))
        }
    };
    let elapsed_us = started.elapsed().as_micros() as u64;
    let code = match &result {
        Ok(_) => "Success",
        Err(e) => envelope::error_code(e),
    };
    // One record per request: the one a write transaction already committed, or this one.
    match trail.take() {
        Some((_, true)) | None => {}
        Some((mut r, false)) => {
            r.result_code = code.to_string();
            st.audit.submit(r);
        }
    }
    match result {
        Ok(fields) => {
            tracing::debug!(%request_id, %action, elapsed_us, "ok");
            envelope::success(fields, &request_id)
        }
        Err(e) => {
            if code == "InternalError" {
                tracing::error!(%request_id, %action, error = %e, "internal error");
            } else {
                tracing::info!(%request_id, %action, code, elapsed_us, "refused");
            }
            envelope::failure(&e, &request_id)
        }
    }
}

/// Overwrites a request body (it may hold plaintexts or secret values) once it is handled.
/// Best effort: it works when this is the only reference to the bytes, which is the case when
/// the body arrived in more than one piece and was gathered into a buffer of its own; bytes
/// still shared with hyper's read buffer are left to hyper.
fn wipe_body(body: axum::body::Bytes) {
    use zeroize::Zeroize;
    if let Ok(mut b) = body.try_into_mut() {
        b.as_mut().zeroize();
    }
}

/// What is known of a request before it is authenticated.
fn base_record(
    st: &AppState,
    parts: &Parts,
    product: Option<Product>,
    row: Option<&Action>,
    request_id: &str,
    peer: Option<IpAddr>,
) -> AuditRecord {
    let action = header(parts, "x-tc-action").unwrap_or("");
    AuditRecord {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_time: SystemClock.now(),
        region: clip(
            header(parts, "x-tc-region")
                .filter(|r| !r.is_empty())
                .unwrap_or(&st.cfg.regions[0].name),
            64,
        ),
        service: product.map(|p| p.service()).unwrap_or("").to_string(),
        action: clip(action, 128),
        // An action Keyward does not know changed nothing.
        read_only: row.is_none_or(|a| a.family.read_only()),
        // Claimed until the signature is verified; the account fields stay 0 until then.
        secret_id: header(parts, "authorization")
            .map(claimed_secret_id)
            .unwrap_or_default(),
        source_ip: peer.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: clip(header(parts, "user-agent").unwrap_or(""), 256),
        request_id: request_id.to_string(),
        ..Default::default()
    }
}

/// At most `max` bytes of `s`, cut at a character boundary: client-supplied text in a
/// record is bounded.
fn clip(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The SecretId an Authorization header claims (`Credential=<SecretId>/...`), found without
/// a full parse: the audit record needs it even when the header is otherwise malformed, and
/// `authenticate` parses the header properly anyway.
fn claimed_secret_id(authorization: &str) -> String {
    authorization
        .split_once("Credential=")
        .map(|(_, rest)| rest.split(['/', ',', ' ']).next().unwrap_or(""))
        .map(|id| clip(id, 128))
        .unwrap_or_default()
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn dispatch(
    st: &AppState,
    parts: &Parts,
    row: Option<&Action>,
    trail: Arc<Trail>,
    body: &[u8],
    peer: Option<IpAddr>,
) -> Result<Fields> {
    let action = header(parts, "x-tc-action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Action header is required".into()))?;
    let version = header(parts, "x-tc-version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Version header is required".into()))?;
    let product =
        Product::from_version(version).ok_or_else(|| Error::NoSuchVersion(version.into()))?;
    let row = row.ok_or_else(|| Error::InvalidAction(action.into()))?;
    let cred = authenticate(st, parts, body, product.service())?;
    let now = SystemClock.now();
    st.cam.accounts.mark_used(&cred.secret_id, now);
    trail.update(|r| {
        r.owner_uin = cred.owner_uin;
        r.uin = cred.uin;
        r.username = cred.username.clone();
    });
    let region = match header(parts, "x-tc-region").filter(|r| !r.is_empty()) {
        Some(r) if st.cfg.region(r).is_some() => r.to_string(),
        Some(r) => return Err(Error::UnsupportedRegion(r.into())),
        None => st.cfg.regions[0].name.clone(),
    };
    st.limiter.check(&cred.secret_id, row.family)?;
    // Policies are asked with the action's CAM name (`kms:Encrypt`).
    let cam_action = row.cam_name();
    let access = if cred.is_root() {
        Access::root(cam_action, peer, now)
    } else {
        Access::user(cam_action, st.cam.policies_for(cred.uin)?, peer, now)
    };
    access.may_run()?;
    if row.scope == Scope::Global {
        access.check_global()?;
    }
    let access = Arc::new(access);
    let ctx = Ctx {
        state: st,
        caller: Caller {
            owner_uin: cred.owner_uin,
            uin: cred.uin,
            region,
            access: Some(access.clone()),
            trail,
        },
    };
    let fields = match row.run {
        Run::Handler(handler) => handler(&ctx, body)?,
        Run::Refused(reason) => return Err(Error::Unsupported(reason.into())),
    };
    if access.is_restricted() && !access.was_checked() && row.scope != Scope::List {
        // Every action decides on the resources it touches; one that did not is a gap in
        // this code, and a sub-account must not benefit from it.
        tracing::error!(
            action,
            "a restricted request ran without a resource decision"
        );
        return Err(Error::Unauthorized(format!(
            "you are not authorized to perform operation ({})",
            access.action
        )));
    }
    Ok(fields)
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
        .cam
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
