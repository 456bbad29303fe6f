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
mod pq_actions;
mod product_actions;
pub mod ratelimit;
pub mod run_as;
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
use actions::{Action, Exec, Family, Product, Run, Scope};
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
use tc3::{Admission, MemoryFull};

/// Maximum clock skew between a request's X-TC-Timestamp and the server.
pub const MAX_SKEW_SECS: i64 = 300;

pub struct AppState {
    pub metrics: Arc<crate::metrics::Metrics>,
    pub kms: Arc<Kms>,
    pub ssm: Arc<Ssm>,
    pub cam: Arc<Cam>,
    pub cfg: Arc<Config>,
    /// The service clock (rotation, deletion). Request signatures are always checked against
    /// the system clock, so an adjusted service clock never breaks authentication.
    pub clock: Arc<dyn Clock>,
    pub jobs: Jobs,
    pub alarms: Arc<Alarms>,
    pub audit: Audit,
    pub limiter: Limiter,
    /// Whether `Exec::Inline` rows may run on the tokio worker: only when the store's reads
    /// never wait on the network (SQLite) and the HSM does not wait on a line (not `serial`).
    /// Otherwise every action runs on the blocking pool (`Store::reads_inline`, server.rs).
    pub inline_reads: bool,
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
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .fallback(handle)
        .with_state(state)
}

/// Liveness: the daemon accepts connections and answers (no HSM or store work).
async fn healthz() -> Response {
    axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        r#"{"Alive":true}"#,
    ))
}

/// Readiness: the HSM answers, the store takes a write and the audit writer is healthy.
/// 200 when all hold, 503 naming what failed (details stay in the log).
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let probe = st.clone();
    let mut checks = tokio::task::spawn_blocking(move || probe.jobs.readiness(probe.clock.now()))
        .await
        .unwrap_or_else(|_| vec![("probe", Err("the readiness probe panicked".into()))]);
    checks.push((
        "audit",
        match st.audit.healthy() {
            true => Ok(()),
            false => Err("the audit writer is not running or failing".into()),
        },
    ));
    let mut report = Map::new();
    let mut ready = true;
    for (name, result) in &checks {
        if let Err(e) = result {
            tracing::warn!(check = name, error = e, "readiness check failed");
            ready = false;
        }
        report.insert((*name).into(), Value::Bool(result.is_ok()));
    }
    let status = match ready {
        true => axum::http::StatusCode::OK,
        false => axum::http::StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::json!({ "Ready": ready, "Checks": report }).to_string();
    axum::response::IntoResponse::into_response((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    ))
}

/// Prometheus metrics (OpenMetrics text): the request, HSM and store families kept by
/// `crate::metrics`, and the counters the services keep themselves, read now.
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    use crate::metrics::Sampled;
    use std::sync::atomic::Ordering::Relaxed;
    let c = &st.alarms.counters;
    let a = &st.audit.counters;
    let counter = |name, help, value| Sampled {
        name,
        help,
        value,
        gauge: false,
    };
    let sampled = [
        counter(
            "keyward_alarms_raised",
            "Alarms raised",
            c.raised.load(Relaxed),
        ),
        counter(
            "keyward_alarms_delivered",
            "Alarms delivered to the webhook",
            c.delivered.load(Relaxed),
        ),
        counter(
            "keyward_alarm_delivery_failures",
            "Failed webhook deliveries (retried)",
            c.delivery_failures.load(Relaxed),
        ),
        counter(
            "keyward_audit_records_written",
            "Audit records stored",
            a.written.load(Relaxed) + st.audit.written_with_changes(),
        ),
        counter(
            "keyward_audit_write_failures",
            "Audit records the writer failed to store",
            a.failures.load(Relaxed),
        ),
        counter(
            "keyward_audit_checkpoints",
            "Signed audit checkpoints",
            a.checkpoints.load(Relaxed),
        ),
        counter(
            "keyward_audit_unauthenticated_unrecorded",
            "Refusals before authentication beyond the per-source budget: counted, not recorded",
            a.unauthenticated_unrecorded.load(Relaxed),
        ),
        counter(
            "keyward_secret_rotations",
            "Product-secret rotations done",
            st.ssm.rotations.succeeded.load(Relaxed),
        ),
        counter(
            "keyward_secret_rotation_failures",
            "Product-secret rotations that failed",
            st.ssm.rotations.failed.load(Relaxed),
        ),
        Sampled {
            name: "keyward_audit_queue_depth",
            help: "Audit records of reads and refusals waiting for the writer",
            value: a.queued.load(Relaxed).max(0) as u64,
            gauge: true,
        },
    ];
    axum::response::IntoResponse::into_response((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        st.metrics.render(&sampled),
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
        // GET, form-encoded and multipart requests, and with them the older HmacSHA1 /
        // HmacSHA256 ("v1") signature carried in form fields, are refused before the body
        // is read, with one answer (reference §2.6).
        if parts.method != axum::http::Method::POST || form_encoded(&parts) {
            break 'run Err(Error::UnsupportedProtocol(TC3_JSON_ONLY.into()));
        }
        // Bounded in time as well as size: a client trickling its body would otherwise hold
        // the connection (and its slot under `limits.max_connections`) for as long as it likes.
        let wait = std::time::Duration::from_secs(st.cfg.limits.body_read_timeout_secs);
        let body = match tokio::time::timeout(wait, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => break 'run Err(Error::RequestTooLarge(limit)),
            Err(_) => {
                break 'run Err(Error::InvalidParameter(format!(
                    "the request body did not arrive within {} seconds",
                    wait.as_secs()
                )))
            }
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
        if st.inline_reads && row.is_some_and(|a| a.exec == Exec::Inline) {
            run()
        } else {
            tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("action handler failed: {e}"))))
        }
    };
    let code = record_outcome(&st, &trail, &result, peer);
    let took = started.elapsed();
    let elapsed_us = took.as_micros() as u64;
    // Labels only from the action table, never the caller's header: unknown names would
    // otherwise create a series each.
    st.metrics.request(
        product.map(|p| p.service()).unwrap_or("unknown"),
        row.map(|a| a.name).unwrap_or("unknown"),
        code,
        took,
    );
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

/// Submits the request's audit record with its outcome, unless a write transaction already
/// committed it; returns the result code. One record per request, whatever front it came by.
fn record_outcome(
    st: &AppState,
    trail: &Trail,
    result: &Result<Fields>,
    peer: Option<IpAddr>,
) -> &'static str {
    let code = match result {
        Ok(_) => "Success",
        Err(e) => envelope::error_code(e),
    };
    // One record per request: the one a write transaction already committed, or this one.
    let taken = trail.take();
    let authenticated = taken.as_ref().is_some_and(|(r, _)| r.uin != 0);
    match taken {
        Some((_, true)) | None => {}
        // A refusal before authentication (no account known) is recorded within a budget
        // per source address; a flood beyond it is counted only.
        Some((_, false))
            if result.is_err() && !authenticated && !st.limiter.record_unauthenticated(peer) =>
        {
            st.audit
                .counters
                .unauthenticated_unrecorded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Some((mut r, false)) => {
            r.result_code = code.to_string();
            st.audit.submit(r);
        }
    }
    code
}

/// The answer to requests in another form than Tencent Cloud API 3.0's POST + JSON + TC3.
const TC3_JSON_ONLY: &str = "only POST requests with a JSON body (Content-Type: application/json) \
     signed with TC3-HMAC-SHA256 are supported; GET, form-encoded requests and the \
     HmacSHA1/HmacSHA256 signature are not";

/// Whether the body is declared as form fields (`application/x-www-form-urlencoded`, how the
/// SDKs send v1-signed POSTs, or `multipart/form-data`), whatever the parameters.
fn form_encoded(parts: &Parts) -> bool {
    parts.headers.get_all("content-type").iter().any(|v| {
        let media = v.as_bytes().split(|&b| b == b';').next().unwrap_or(b"");
        let media = media.trim_ascii();
        media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
            || media.eq_ignore_ascii_case(b"multipart/form-data")
    })
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
    let requested_region = check_common_headers(parts)?;
    let action = header(parts, "x-tc-action")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Action header is required".into()))?;
    let version = header(parts, "x-tc-version")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingParameter("the X-TC-Version header is required".into()))?;
    let product =
        Product::from_version(version).ok_or_else(|| Error::NoSuchVersion(version.into()))?;
    let row = row.ok_or_else(|| Error::InvalidAction(action.into()))?;
    // A source that keeps failing authentication is refused before any more of that work.
    st.limiter.admit_source(peer)?;
    let verified = authenticate(st, parts, body, product.service())
        .inspect_err(|_| st.limiter.authentication_failed(peer))?;
    let cred = verified.cred.clone();
    let now = verified.now;
    st.cam.accounts.mark_used(&cred.secret_id, now);
    trail.update(|r| {
        r.owner_uin = cred.owner_uin;
        r.uin = cred.uin;
        r.username = cred.username.clone();
    });
    let region_index = match requested_region {
        Some(r) => st
            .cfg
            .regions
            .iter()
            .position(|c| c.name == r)
            .ok_or_else(|| Error::UnsupportedRegion(r.into()))?,
        None => 0,
    };
    let region = st.cfg.regions[region_index].name.clone();
    bind_signature(st, &verified, row, region_index, peer)
        .inspect_err(|_| st.limiter.authentication_failed(peer))?;
    run_authenticated(st, &cred, row, region, trail, body, peer, now)
}

/// Runs an action for an account already authenticated (by a TC3 signature or a console
/// session): rate limit, CAM decision, handler, and the check that a restricted caller's
/// action decided on its resources. Both fronts share it, so the console can do nothing the
/// API would not let the same account do.
// The request's parts as both callers hold them; a struct for one call would only rename them.
#[allow(clippy::too_many_arguments)]
fn run_authenticated(
    st: &AppState,
    cred: &ApiCredential,
    row: &Action,
    region: String,
    trail: Arc<Trail>,
    body: &[u8],
    peer: Option<IpAddr>,
    now: i64,
) -> Result<Fields> {
    let action = row.name;
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

/// Longest `X-TC-Region` value looked at; Tencent's region names are under 32 characters.
const MAX_REGION_LEN: usize = 64;

/// Refuses requests whose routing or signing headers are ambiguous, before anything else reads
/// them: a header given twice would be read as its first value here but could be read as the
/// other by a proxy or log in front, and a region that is not plain ASCII would otherwise be
/// taken as absent (the default region). Returns the requested region, if any.
fn check_common_headers(parts: &Parts) -> Result<Option<&str>> {
    for name in parts.headers.keys() {
        let n = name.as_str();
        let signing = matches!(n, "authorization" | "content-type" | "host");
        if !(signing || n.starts_with("x-tc-")) || parts.headers.get_all(name).iter().count() < 2 {
            continue;
        }
        let msg = format!("the {n} header must be given once");
        return Err(if n == "authorization" {
            Error::InvalidAuthorization(msg)
        } else {
            // The X-TC-* headers are the API's common parameters (reference §2.5).
            Error::InvalidParameter(msg)
        });
    }
    let Some(raw) = parts.headers.get("x-tc-region") else {
        return Ok(None);
    };
    let region = raw
        .to_str()
        .ok()
        .filter(|r| r.len() <= MAX_REGION_LEN)
        .ok_or_else(|| {
            Error::InvalidParameter(format!(
                "X-TC-Region must be printable ASCII of at most {MAX_REGION_LEN} characters"
            ))
        })?;
    Ok(Some(region).filter(|r| !r.is_empty()))
}

/// How long after its first use a signature may be used again by the same source address
/// for another action or a write. A client makes the same signature for every request it
/// signs in one second with the same body (the SDKs sign neither the action nor the region),
/// so `DescribeKey` then `DisableKey` on one key, or a write retried at once, arrive with one
/// signature within about a second of each other.
const SAME_CLIENT_GRACE_SECS: i64 = 2;

/// How a signature was first used, as the signature memory keeps it.
#[derive(Clone, Copy)]
pub struct FirstUse {
    /// Action-table row and region, see `bind_signature`.
    routing: u32,
    /// Source address, IPv4 as mapped IPv6.
    from: [u8; 16],
    at: i64,
}

/// Binds a verified signature to its first use. The official SDKs sign only
/// `content-type;host`, so without this a captured `DescribeKey` could be re-sent as
/// `DisableKey`, or a `GetSecretValue` as `DeleteSecretVersion`, and verify; and a captured
/// write could be replayed. The server cannot tell such a re-sent request from the client's
/// own next request made in the same second with the same body, so the rule is:
/// - from another source address, a signature is never accepted again;
/// - from the same address, an identical read or crypto request is accepted (SDKs repeat
///   them), and another routing or a repeated write only within `SAME_CLIENT_GRACE_SECS`
///   of the first use (the client's own requests of that second); later it is a replay.
fn bind_signature(
    st: &AppState,
    v: &Verified,
    row: &Action,
    region_index: usize,
    peer: Option<IpAddr>,
) -> Result<()> {
    let routing_signed = ["x-tc-action", "x-tc-version", "x-tc-region"]
        .iter()
        .all(|h| v.signed_headers.iter().any(|s| s == h));
    if routing_signed && row.family != Family::Write {
        // The routing is covered by the signature itself and repeats are allowed: nothing
        // to remember.
        return Ok(());
    }
    let row_number = actions::position(row)
        .ok_or_else(|| Error::Internal(format!("{} is not in the action table", row.name)))?;
    let this = FirstUse {
        // Both fit: the table has a few hundred rows, and regions are a short configured list.
        routing: (row_number << 16) | (region_index as u32 & 0xffff),
        from: match peer {
            Some(IpAddr::V4(a)) => a.to_ipv6_mapped().octets(),
            Some(IpAddr::V6(a)) => a.octets(),
            None => [0; 16],
        },
        at: v.now,
    };
    let capacity = st.cfg.limits.signature_memory;
    let first = match st
        .limiter
        .signatures
        .admit(&v.signature, v.timestamp, v.now, this, capacity)
    {
        Ok(Admission::First) => return Ok(()),
        Ok(Admission::Seen(first)) => first,
        Err(MemoryFull) => {
            tracing::warn!(capacity, "signature memory full: refusing new requests");
            return Err(Error::RequestLimitExceeded(
                "too many distinct requests within the 5-minute signature window \
                 (limits.signature_memory); retry later"
                    .into(),
            ));
        }
    };
    let same_client = first.from == this.from;
    let at_once = this.at - first.at <= SAME_CLIENT_GRACE_SECS;
    let identical_read = first.routing == this.routing && row.family != Family::Write;
    if same_client && (identical_read || at_once) {
        return Ok(());
    }
    Err(Error::SignatureFailure(if !same_client {
        "this signature was already used from another address; a signature is valid for \
         the client and request it was made for only"
            .into()
    } else if first.routing != this.routing {
        "this signature was already used with different X-TC-Action, X-TC-Version or \
         X-TC-Region headers; a signature is valid for the request it was made for only"
            .into()
    } else {
        format!(
            "this signature was already used for {}: a request that changes state is \
             accepted once; sign it again with a new X-TC-Timestamp to repeat it",
            row.name
        )
    }))
}

/// A request whose TC3 signature verified.
struct Verified {
    cred: Arc<ApiCredential>,
    /// Lower-case hex, as verified.
    signature: String,
    signed_headers: Vec<String>,
    timestamp: i64,
    /// The system-clock reading the timestamp was checked against.
    now: i64,
}

/// TC3-HMAC-SHA256 verification in the order the reference gives, each failure with its code.
///
/// Two forms of what the official SDKs sign are accepted besides the reference's (see
/// docs/architecture.md, "Which scope and host a signature may name"):
/// - the scope's service may be the product's (`kms`, `ssm`, ...) or the `Host` value up to
///   its first dot ([`tc3::first_label`]): the Node.js and Java SDKs derive it from their
///   endpoint, so `127.0.0.1:8080` signs service `127`. The product is still decided by
///   `X-TC-Version`, and the signature memory binds the signature to it.
/// - the signature may cover the `Host` value as received or, failing that, the same value
///   without its `:port` suffix ([`tc3::strip_port`]): the Node.js SDK signs the host name
///   while its `Host` header carries the port.
fn authenticate(st: &AppState, parts: &Parts, body: &[u8], service: &str) -> Result<Verified> {
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
    let now = SystemClock.now();
    if (now - timestamp).abs() > MAX_SKEW_SECS {
        return Err(Error::SignatureExpire);
    }
    let host = request_host(parts)?;
    if auth.service != service && host.map(tc3::first_label) != Some(auth.service.as_str()) {
        return Err(Error::SignatureFailure(format!(
            "credential scope names service `{}`; it must be `{service}` (the product of \
             X-TC-Version) or the Host header up to its first dot (`{}`)",
            clip(&auth.service, 64),
            clip(host.map(tc3::first_label).unwrap_or(""), 64),
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
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let key = cred.signing_key(&auth.date, &auth.service, tc3::signing_key);
    let payload_hash = tc3::sha256_hex(body);
    // Whether the signature matches with `host` as the host header's value; None when a
    // signed header is missing.
    let matches = |host: Option<&str>| {
        let canonical = tc3::canonical_request_digest(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &auth.signed_headers,
            |name| match name {
                "host" => host,
                _ => header(parts, name),
            },
            &payload_hash,
        )?;
        Some(tc3::signature_matches(
            &key,
            timestamp,
            &scope,
            &canonical,
            &auth.signature,
        ))
    };
    let verified = match matches(host) {
        None => return Err(Error::SignatureFailure("a signed header is missing".into())),
        Some(true) => true,
        // Only a `:port` suffix of the Host actually received is ever taken off.
        Some(false) => host
            .and_then(tc3::strip_port)
            .is_some_and(|bare| matches(Some(bare)) == Some(true)),
    };
    if !verified {
        return Err(Error::SignatureFailure(
            "the request signature does not match".into(),
        ));
    }
    Ok(Verified {
        cred,
        signature: auth.signature,
        signed_headers: auth.signed_headers,
        timestamp,
        now,
    })
}

/// The host the client addressed: the `Host` header, or over HTTP/2 the `:authority`
/// pseudo-header, which takes Host's place there (RFC 9113 §8.3.1; Go's HTTP client, used by
/// the Go SDK and so by Dapr, speaks HTTP/2 whenever TLS offers it). A request that carries
/// both with different values is refused rather than verified against either.
fn request_host(parts: &Parts) -> Result<Option<&str>> {
    let authority = parts.uri.authority().map(|a| a.as_str());
    match (header(parts, "host"), authority) {
        (Some(h), Some(a)) if h != a => Err(Error::InvalidParameter(
            "the Host header and the request's authority name different hosts".into(),
        )),
        (Some(h), _) => Ok(Some(h)),
        (None, a) => Ok(a),
    }
}
