//! Runs actions for an account that signed in to the console: the same action table, rate
//! limits, CAM decisions, handlers and audit log as a TC3-signed request, only authenticated
//! differently (a session instead of a signature).

use super::actions::{self, Product};
use super::{record_outcome, run_authenticated, AppState, Fields};
use crate::audit::record::AuditRecord;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::store::Trail;
use serde_json::Value;
use std::net::IpAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// What the audit record's user agent starts with for every console request, so the log
/// (and LookUpEvents) tells console actions from SDK calls.
pub const CONSOLE_SOURCE: &str = "keyward-console";

/// Who asks, as the console knows them: the signed-in API key's SecretId (never its
/// SecretKey), the region the console is looking at, and where the browser is.
pub struct Requester<'a> {
    pub secret_id: &'a str,
    /// A configured region's name; empty for the default (first) region.
    pub region: &'a str,
    pub peer: Option<IpAddr>,
    pub user_agent: &'a str,
}

/// Runs `product`/`action` with the JSON `params` for the account whose API key `who`
/// names. The key is looked up again on every call: a key disabled or deleted after the
/// sign-in authorizes nothing more (`AuthFailure.SecretIdNotFound`).
pub async fn run_as(
    st: &Arc<AppState>,
    who: &Requester<'_>,
    product: Product,
    action: &str,
    params: &Value,
) -> Result<Fields> {
    let row =
        actions::find(product, action).ok_or_else(|| Error::InvalidAction(action.to_string()))?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let region = match who.region {
        "" => st.cfg.regions[0].name.clone(),
        r => st
            .cfg
            .regions
            .iter()
            .find(|c| c.name == r)
            .ok_or_else(|| Error::UnsupportedRegion(r.to_string()))?
            .name
            .clone(),
    };
    let record = AuditRecord {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_time: SystemClock.now(),
        region: region.clone(),
        service: product.service().to_string(),
        action: action.to_string(),
        read_only: row.family.read_only(),
        secret_id: who.secret_id.to_string(),
        source_ip: who.peer.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: super::clip(&format!("{CONSOLE_SOURCE} ({})", who.user_agent), 256),
        request_id,
        ..Default::default()
    };
    let trail = Arc::new(Trail::new(st.audit.enabled().then_some(record)));
    // Parameters may hold plaintexts and secret values: the serialized copy is wiped.
    let body =
        Zeroizing::new(serde_json::to_vec(params).map_err(|e| Error::Internal(e.to_string()))?);
    let (st2, secret_id, peer) = (st.clone(), who.secret_id.to_string(), who.peer);
    let trail2 = trail.clone();
    let run = move || -> Result<Fields> {
        let cred = st2
            .cam
            .accounts
            .credential(&secret_id)?
            .ok_or(Error::SecretIdNotFound)?;
        let now = SystemClock.now();
        st2.cam.accounts.mark_used(&cred.secret_id, now);
        trail2.update(|r| {
            r.owner_uin = cred.owner_uin;
            r.uin = cred.uin;
            r.username = cred.username.clone();
        });
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_authenticated(&st2, &cred, row, region, trail2, &body, peer, now)
        }))
        .unwrap_or_else(|_| Err(Error::Internal("action handler panicked".into())))
    };
    let result = tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("action handler failed: {e}"))));
    record_outcome(st, &trail, &result, who.peer);
    if let Err(e) = &result {
        if super::envelope::error_code(e) == "InternalError" {
            tracing::error!(action, error = %e, "internal error (console)");
        }
    }
    result
}

/// The account an API key names, as a console session keeps it (no SecretKey).
#[derive(Clone, Debug)]
pub struct SignedIn {
    pub secret_id: String,
    pub owner_uin: u64,
    pub uin: u64,
    pub username: String,
    pub root: bool,
}

/// Why a sign-in failed.
pub enum SignInRefused {
    /// Too many failures from this address (the API's `auth_failures_per_sec` budget).
    Throttled(Error),
    /// Unknown or disabled SecretId, or a SecretKey that does not match.
    Wrong,
    /// The credential store did not answer.
    Unavailable(Error),
}

/// Checks a SecretId/SecretKey pair typed into the console's sign-in form against the
/// credential store the API uses (the SecretKey compared in constant time). Failures count
/// against the same per-address budget as failed signatures, and every attempt is audited
/// (`ConsoleSignIn`). Blocking: run it on the blocking pool.
pub fn sign_in(
    st: &AppState,
    secret_id: &str,
    secret_key: &str,
    peer: Option<IpAddr>,
    user_agent: &str,
) -> std::result::Result<SignedIn, SignInRefused> {
    use subtle::ConstantTimeEq;
    st.limiter
        .admit_source(peer)
        .map_err(SignInRefused::Throttled)?;
    let cred = st
        .cam
        .accounts
        .credential(secret_id)
        .map_err(SignInRefused::Unavailable)?
        .filter(|c| {
            !secret_key.is_empty()
                && bool::from(c.secret_key.as_bytes().ct_eq(secret_key.as_bytes()))
        });
    let who = cred.map(|c| SignedIn {
        secret_id: c.secret_id.clone(),
        owner_uin: c.owner_uin,
        uin: c.uin,
        username: c.username.clone(),
        root: c.is_root(),
    });
    record_sign_in(st, secret_id, who.as_ref(), peer, user_agent);
    who.ok_or_else(|| {
        st.limiter.authentication_failed(peer);
        SignInRefused::Wrong
    })
}

/// A console event of its own (sign-in, sign-out) as an audit record, service `keyward`.
fn console_record(
    st: &AppState,
    action: &str,
    secret_id: &str,
    account: Option<&SignedIn>,
    peer: Option<IpAddr>,
    user_agent: &str,
) -> AuditRecord {
    let mut r = AuditRecord {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_time: SystemClock.now(),
        region: st.cfg.regions[0].name.clone(),
        service: Product::Admin.service().to_string(),
        action: action.into(),
        read_only: true,
        secret_id: super::clip(secret_id, 128),
        source_ip: peer.map(|ip| ip.to_string()).unwrap_or_default(),
        user_agent: super::clip(&format!("{CONSOLE_SOURCE} ({user_agent})"), 256),
        request_id: uuid::Uuid::new_v4().to_string(),
        result_code: "AuthFailure.SignatureFailure".into(),
        ..Default::default()
    };
    if let Some(a) = account {
        r.owner_uin = a.owner_uin;
        r.uin = a.uin;
        r.username = a.username.clone();
        r.result_code = "Success".into();
    }
    r
}

/// Records a console sign-in attempt (action `ConsoleSignIn`) in the audit log: who, from
/// where, and whether it succeeded. Failures are recorded within the same per-address budget
/// as the API's unauthenticated refusals.
fn record_sign_in(
    st: &AppState,
    secret_id: &str,
    signed_in: Option<&SignedIn>,
    peer: Option<IpAddr>,
    user_agent: &str,
) {
    if !st.audit.enabled() {
        return;
    }
    if signed_in.is_none() && !st.limiter.record_unauthenticated(peer) {
        st.audit
            .counters
            .unauthenticated_unrecorded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    }
    st.audit.submit(console_record(
        st,
        "ConsoleSignIn",
        secret_id,
        signed_in,
        peer,
        user_agent,
    ));
}

/// Records a console sign-out (action `ConsoleSignOut`).
pub fn record_sign_out(st: &AppState, who: &SignedIn, peer: Option<IpAddr>, user_agent: &str) {
    if st.audit.enabled() {
        st.audit.submit(console_record(
            st,
            "ConsoleSignOut",
            &who.secret_id,
            Some(who),
            peer,
            user_agent,
        ));
    }
}
