//! Console sessions: a random id in a cookie names a server-side record holding the signed-in
//! account's identity (its API key's SecretId, uin and name — never the SecretKey), a CSRF
//! token, and the times the idle and absolute timeouts are measured from.

use crate::config::ConsoleConfig;
use axum::http::HeaderMap;
use base64::Engine;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The cookie that carries the session id.
pub const COOKIE: &str = "keyward_console";

/// Who signed in: the API key's SecretId and its account (never the SecretKey).
pub use crate::api::run_as::SignedIn as Identity;

/// A one-time message shown on the next page (the result of a form that redirected).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flash {
    Done(String),
    Refused(String),
}

/// What a request learns of its session.
#[derive(Clone, Debug)]
pub struct Current {
    pub who: Identity,
    /// The region the console shows ("" until one is chosen: the default region).
    pub region: String,
    pub csrf: String,
    pub flash: Option<Flash>,
}

struct Entry {
    who: Identity,
    region: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    flash: Option<Flash>,
}

/// Why a session id names no session.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// Never issued, or signed out.
    Unknown,
    /// Timed out (idle or absolute): the sign-in page says so.
    Expired,
}

pub struct Sessions {
    /// Keyed by the SHA-256 of the id, so the table holds nothing a cookie could be made from.
    map: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
    absolute: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(cfg: &ConsoleConfig) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle: Duration::from_secs(cfg.idle_timeout_secs),
            absolute: Duration::from_secs(cfg.absolute_timeout_secs),
            max: cfg.max_sessions.max(1),
        }
    }

    /// Starts a session; returns its id (for the cookie). When the table is full the least
    /// recently used session ends.
    pub fn create(&self, who: Identity, now: Instant) -> String {
        let id = random_token();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, e| !self.expired(e, now));
        if map.len() >= self.max {
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&id),
            Entry {
                who,
                region: String::new(),
                csrf: random_token(),
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        id
    }

    /// The session `id` names, touched (its idle timeout starts again) and its flash taken.
    pub fn get(&self, id: &str, now: Instant) -> Result<Current, Missing> {
        let key = digest(id);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = map.get_mut(&key) else {
            return Err(Missing::Unknown);
        };
        if self.expired(e, now) {
            map.remove(&key);
            return Err(Missing::Expired);
        }
        e.last_seen = now;
        Ok(Current {
            who: e.who.clone(),
            region: e.region.clone(),
            csrf: e.csrf.clone(),
            flash: e.flash.take(),
        })
    }

    pub fn set_flash(&self, id: &str, flash: Flash) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&digest(id)) {
            e.flash = Some(flash);
        }
    }

    pub fn set_region(&self, id: &str, region: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&digest(id)) {
            e.region = region.to_string();
        }
    }

    /// Signs out.
    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest(id));
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.duration_since(e.last_seen) >= self.idle
            || now.duration_since(e.created) >= self.absolute
    }
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 256 random bits from the OS, URL-safe base64.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Whether a form's CSRF token is the session's, compared in constant time.
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Whether a state-changing request comes from a page of this origin. Browsers send
/// `Origin` on every POST and `Sec-Fetch-Site` on every request; a request with neither is
/// not a browser's cross-site request (the CSRF token still has to match). `scheme` is how
/// the daemon is reached (`http` or `https`); `authority` is the request's `Host` (over
/// HTTP/2, which TLS clients negotiate, its `:authority`: see [`authority`]).
pub fn same_origin(headers: &HeaderMap, authority: Option<&str>, scheme: &str) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        if site != "same-origin" {
            return false;
        }
    }
    match get("origin") {
        None => true,
        Some(origin) => authority.is_some_and(|host| origin == format!("{scheme}://{host}")),
    }
}

/// The host a request addressed: its `Host` header, or over HTTP/2 the `:authority`
/// pseudo-header (in the URI; there is no Host header there).
pub fn authority(parts: &axum::http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// Where to go after signing in: `next` when it is a console page of this origin, else the
/// key list. Only a path under `/console/` is taken, so the parameter cannot send a user to
/// another site (`//host`, `/\\host`, `https:`) after a sign-in.
pub fn after_sign_in(next: &str) -> &str {
    let safe = next.starts_with("/console/")
        && !next.contains("//")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic());
    if safe {
        next
    } else {
        "/console/keys"
    }
}

/// The session id the request's cookie carries.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

/// `Set-Cookie` for a new session: not readable by scripts, never sent on cross-site
/// requests, only over TLS when the daemon has TLS, and only to the console's paths.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sessions(idle: u64, absolute: u64, max: usize) -> Sessions {
        Sessions::new(&ConsoleConfig {
            enabled: true,
            idle_timeout_secs: idle,
            absolute_timeout_secs: absolute,
            max_sessions: max,
        })
    }

    fn alice() -> Identity {
        Identity {
            secret_id: "AKIDalice".into(),
            owner_uin: 100000000001,
            uin: 100000000002,
            username: "alice".into(),
            root: false,
        }
    }

    #[test]
    fn a_session_holds_identity_and_a_csrf_token_of_its_own() {
        let s = sessions(60, 600, 10);
        let t0 = Instant::now();
        let a = s.create(alice(), t0);
        let b = s.create(alice(), t0);
        assert_ne!(a, b);
        assert!(a.len() >= 43, "256 bits of id");
        let (ca, cb) = (s.get(&a, t0).unwrap(), s.get(&b, t0).unwrap());
        assert_eq!(ca.who.secret_id, "AKIDalice");
        assert_ne!(ca.csrf, cb.csrf);
        assert_ne!(ca.csrf, a, "the CSRF token is not the session id");
        assert_eq!(s.get("forged", t0).unwrap_err(), Missing::Unknown);
    }

    #[test]
    fn idle_and_absolute_timeouts_end_a_session() {
        let s = sessions(10, 25, 10);
        let t0 = Instant::now();
        let id = s.create(alice(), t0);
        // Used every 9 seconds it stays alive past the idle timeout...
        for i in 1..=2 {
            assert!(s.get(&id, t0 + Duration::from_secs(9 * i)).is_ok());
        }
        // ...but not past the absolute one.
        assert_eq!(
            s.get(&id, t0 + Duration::from_secs(25)).unwrap_err(),
            Missing::Expired
        );
        assert_eq!(s.get(&id, t0).unwrap_err(), Missing::Unknown, "removed");
        let idle = s.create(alice(), t0);
        assert_eq!(
            s.get(&idle, t0 + Duration::from_secs(10)).unwrap_err(),
            Missing::Expired
        );
    }

    #[test]
    fn sign_out_ends_the_session_and_a_full_table_drops_the_least_recent() {
        let s = sessions(60, 600, 2);
        let t0 = Instant::now();
        let a = s.create(alice(), t0);
        let b = s.create(alice(), t0 + Duration::from_secs(1));
        assert!(s.get(&a, t0 + Duration::from_secs(2)).is_ok());
        let c = s.create(alice(), t0 + Duration::from_secs(3));
        assert!(
            s.get(&b, t0 + Duration::from_secs(3)).is_err(),
            "b was least recent"
        );
        assert!(s.get(&a, t0 + Duration::from_secs(3)).is_ok());
        s.end(&c);
        assert_eq!(
            s.get(&c, t0 + Duration::from_secs(3)).unwrap_err(),
            Missing::Unknown
        );
    }

    #[test]
    fn a_flash_is_shown_once() {
        let s = sessions(60, 600, 10);
        let t0 = Instant::now();
        let id = s.create(alice(), t0);
        s.set_flash(&id, Flash::Done("Key enabled".into()));
        assert_eq!(
            s.get(&id, t0).unwrap().flash,
            Some(Flash::Done("Key enabled".into()))
        );
        assert_eq!(s.get(&id, t0).unwrap().flash, None);
    }

    #[test]
    fn csrf_tokens_must_match_exactly() {
        let t = random_token();
        assert!(csrf_matches(&t, &t));
        assert!(!csrf_matches(&t, ""));
        assert!(!csrf_matches(&t, &t[..t.len() - 1]));
        assert!(!csrf_matches(&t, &random_token()));
        assert!(!csrf_matches("", ""), "a session always has a token");
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let mut h = HeaderMap::new();
        let host = Some("127.0.0.1:8080");
        assert!(
            same_origin(&h, host, "http"),
            "no browser headers: the token decides"
        );
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h, host, "http"));
        assert!(
            !same_origin(&h, host, "https"),
            "another scheme is another origin"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&h, host, "http"));
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&h, host, "http"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(
            !same_origin(&h, host, "http"),
            "a sibling subdomain is not trusted"
        );
        h.remove("sec-fetch-site");
        h.insert("origin", HeaderValue::from_static("http://evil.example"));
        assert!(!same_origin(&h, host, "http"));
        h.insert("origin", HeaderValue::from_static("null"));
        assert!(!same_origin(&h, host, "http"));
        h.insert("origin", HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(
            !same_origin(&h, None, "http"),
            "no host known: an Origin cannot match"
        );
    }

    #[test]
    fn sign_in_returns_only_to_console_pages() {
        assert_eq!(
            after_sign_in("/console/secrets?q=a"),
            "/console/secrets?q=a"
        );
        for bad in [
            "",
            "/",
            "https://evil.example/console/",
            "//evil.example",
            "/console//evil.example",
            "/console/\\evil.example",
            "/consolex",
            "/console/keys\r\nSet-Cookie: x=y",
        ] {
            assert_eq!(after_sign_in(bad), "/console/keys", "{bad:?}");
        }
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_under_tls() {
        let c = set_cookie("abc", true);
        for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
            assert!(c.contains(attr), "{c} lacks {attr}");
        }
        assert!(!set_cookie("abc", false).contains("Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("other=1; {COOKIE}=abc; x=y")).unwrap(),
        );
        assert_eq!(cookie(&h).as_deref(), Some("abc"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }
}
