//! TC3-HMAC-SHA256: the Tencent Cloud API 3.0 request signature, both directions.
//!
//! The server verifies over the raw bytes it received (body, query string, Host header value)
//! and never re-serialises anything: the Python SDK signs `json.dumps` output and tccli signs a
//! `Host` of `http://127.0.0.1:8080`, and both must verify as sent.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "TC3-HMAC-SHA256";

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub secret_id: String,
    pub date: String,
    pub service: String,
    /// Lower-case header names, in the order given.
    pub signed_headers: Vec<String>,
    pub signature: String,
}

/// Why an `Authorization` header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedAuthorization(pub &'static str);

pub fn parse_authorization(value: &str) -> Result<Authorization, MalformedAuthorization> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(MalformedAuthorization(
            "Authorization must start with `TC3-HMAC-SHA256 `",
        ))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        let (k, v) = part
            .split_once('=')
            .ok_or(MalformedAuthorization("Authorization field without `=`"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(MalformedAuthorization("unknown Authorization field")),
        }
    }
    let credential = credential.ok_or(MalformedAuthorization("Credential missing"))?;
    let signed = signed.ok_or(MalformedAuthorization("SignedHeaders missing"))?;
    let signature = signature.ok_or(MalformedAuthorization("Signature missing"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 4 || parts[3] != "tc3_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(MalformedAuthorization(
            "Credential must be <SecretId>/<date>/<service>/tc3_request",
        ));
    }
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(MalformedAuthorization("Signature must be 64 hex digits"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|h| h.to_ascii_lowercase()).collect();
    if signed_headers.iter().any(|h| h.is_empty()) {
        return Err(MalformedAuthorization("empty name in SignedHeaders"));
    }
    if !signed_headers.iter().any(|h| h == "content-type")
        || !signed_headers.iter().any(|h| h == "host")
    {
        return Err(MalformedAuthorization(
            "SignedHeaders must include content-type and host",
        ));
    }
    Ok(Authorization {
        secret_id: parts[0].to_string(),
        date: parts[1].to_string(),
        service: parts[2].to_string(),
        signed_headers,
        signature: signature.to_ascii_lowercase(),
    })
}

/// Builds the canonical request. `headers` yields the value of each signed header by its
/// lower-case name; the names are used in ASCII order as the spec requires.
pub fn canonical_request(
    method: &str,
    path: &str,
    query: &str,
    signed_headers: &[String],
    header_value: impl Fn(&str) -> Option<String>,
    payload_hash: &str,
) -> Option<(String, String)> {
    let names = sorted_names(signed_headers);
    let values = names
        .iter()
        .map(|n| header_value(n))
        .collect::<Option<Vec<String>>>()?;
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let mut cr = Vec::new();
    canonical_parts(
        method,
        path,
        query,
        &names,
        &values,
        payload_hash,
        &mut |b| cr.extend_from_slice(b),
    );
    // Only ASCII letters were changed (lower-cased) in text that was UTF-8.
    let cr = String::from_utf8(cr).ok()?;
    Some((cr, names.join(";")))
}

/// SHA-256 of [`canonical_request`], computed without building it: the server's side of
/// every request, where the strings would be built only to be hashed. `header_value` borrows
/// from the request. None when a signed header is missing.
pub fn canonical_request_digest<'a>(
    method: &str,
    path: &str,
    query: &str,
    signed_headers: &[String],
    header_value: impl Fn(&str) -> Option<&'a str>,
    payload_hash: &str,
) -> Option<[u8; 32]> {
    let names = sorted_names(signed_headers);
    let values = names
        .iter()
        .map(|n| header_value(n))
        .collect::<Option<Vec<&str>>>()?;
    let mut h = Sha256::new();
    canonical_parts(
        method,
        path,
        query,
        &names,
        &values,
        payload_hash,
        &mut |b| h.update(b),
    );
    Some(h.finalize().into())
}

fn sorted_names(signed_headers: &[String]) -> Vec<&str> {
    let mut names: Vec<&str> = signed_headers.iter().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// The canonical request's bytes, in order, to `out`: `values[i]` is the value of the signed
/// header `names[i]` (names sorted), trimmed and lower-cased here.
fn canonical_parts(
    method: &str,
    path: &str,
    query: &str,
    names: &[&str],
    values: &[&str],
    payload_hash: &str,
    out: &mut impl FnMut(&[u8]),
) {
    for part in [method, "\n", path, "\n", query, "\n"] {
        out(part.as_bytes());
    }
    for (name, value) in names.iter().zip(values) {
        out(name.as_bytes());
        out(b":");
        // `to_ascii_lowercase` in pieces, through a stack buffer.
        for chunk in value.trim().as_bytes().chunks(64) {
            let mut lower = [0u8; 64];
            let lower = &mut lower[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            out(lower);
        }
        out(b"\n");
    }
    out(b"\n");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out(b";");
        }
        out(name.as_bytes());
    }
    out(b"\n");
    out(payload_hash.as_bytes());
}

/// Whether `signature` (64 hex digits, as parsed from the header) is the TC3 signature of the
/// request whose canonical request hashes to `canonical_digest`: [`signature`] over
/// [`string_to_sign`], streamed into the HMAC, compared in constant time.
pub fn signature_matches(
    signing_key: &[u8; 32],
    timestamp: i64,
    scope: &str,
    canonical_digest: &[u8; 32],
    signature: &str,
) -> bool {
    use subtle::ConstantTimeEq;
    let mut digest_hex = [0u8; 64];
    // 32 bytes always fit 64 hex digits.
    let _ = hex::encode_to_slice(canonical_digest, &mut digest_hex);
    let mut mac = HmacSha256::new_from_slice(signing_key).expect("HMAC takes any key length");
    mac.update(ALGORITHM.as_bytes());
    mac.update(b"\n");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(scope.as_bytes());
    mac.update(b"\n");
    mac.update(&digest_hex);
    let mut expected = [0u8; 64];
    let _ = hex::encode_to_slice(mac.finalize().into_bytes(), &mut expected);
    signature.len() == 64 && bool::from(expected.ct_eq(signature.as_bytes()))
}

/// The credential-scope service an SDK that derives it from its endpoint computes: the
/// endpoint up to its first dot (`endpoint.split(".")[0]` in the Node.js and Java SDKs). The
/// endpoint string is what such an SDK sends as `Host`, so this is taken from the `Host`
/// value as received: `127` for `127.0.0.1:8080`, `kms` for `kms.example.internal:8443`,
/// `localhost:8443` for `localhost:8443` (no dot: the port stays, as those SDKs keep it).
pub fn first_label(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// `host` without its `:port` suffix, when it has one: `kms.example.internal` for
/// `kms.example.internal:8443`, `[::1]` for `[::1]:8443`. None for a host without a port, a
/// bare IPv6 address, or anything else (tccli's `http://127.0.0.1:8080` is left alone).
/// The Node.js SDK signs the host name without the port while its `Host` header carries it.
pub fn strip_port(host: &str) -> Option<&str> {
    let (name, port) = host.rsplit_once(':')?;
    let is_port = (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit());
    let unbracketed_colon = name.contains(':') && !(name.starts_with('[') && name.ends_with(']'));
    (is_port && !name.is_empty() && !unbracketed_colon).then_some(name)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn string_to_sign(timestamp: i64, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{timestamp}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    )
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// kSigning = HMAC(HMAC(HMAC("TC3"+SecretKey, date), service), "tc3_request").
pub fn signing_key(secret_key: &str, date: &str, service: &str) -> zeroize::Zeroizing<[u8; 32]> {
    let mut k = zeroize::Zeroizing::new(Vec::with_capacity(3 + secret_key.len()));
    k.extend_from_slice(b"TC3");
    k.extend_from_slice(secret_key.as_bytes());
    let k_date = zeroize::Zeroizing::new(hmac(&k, date.as_bytes()));
    let k_service = zeroize::Zeroizing::new(hmac(k_date.as_ref(), service.as_bytes()));
    zeroize::Zeroizing::new(hmac(k_service.as_ref(), b"tc3_request"))
}

pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> String {
    hex::encode(hmac(signing_key, string_to_sign.as_bytes()))
}

/// UTC calendar date (`YYYY-MM-DD`) of a Unix timestamp.
pub fn utc_date(timestamp: i64) -> Option<String> {
    let dt = time::OffsetDateTime::from_unix_timestamp(timestamp).ok()?;
    let d = dt.date();
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

/// Everything a client needs to sign one POST request the way the official SDKs do.
pub struct SignRequest<'a> {
    pub secret_id: &'a str,
    pub secret_key: &'a str,
    pub service: &'a str,
    pub host: &'a str,
    pub content_type: &'a str,
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// Returns the `Authorization` header value for a POST to `/` signing content-type and host.
pub fn authorization_header(req: &SignRequest<'_>) -> String {
    let date = utc_date(req.timestamp).unwrap_or_default();
    let signed = ["content-type".to_string(), "host".to_string()];
    let (cr, signed_names) = canonical_request(
        "POST",
        "/",
        "",
        &signed,
        |name| match name {
            "content-type" => Some(req.content_type.to_string()),
            "host" => Some(req.host.to_string()),
            _ => None,
        },
        &sha256_hex(req.body),
    )
    .expect("both headers are provided");
    let scope = format!("{date}/{}/tc3_request", req.service);
    let sts = string_to_sign(req.timestamp, &scope, &cr);
    let key = signing_key(req.secret_key, &date, req.service);
    format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_names}, Signature={}",
        req.secret_id,
        signature(&key, &sts)
    )
}

/// What [`SeenSignatures::admit`] found for a verified signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission<R> {
    /// Not seen before; now remembered with the given use.
    First,
    /// Seen before: how it was first used (kept, not replaced).
    Seen(R),
}

/// The memory is full: the signature was neither admitted nor remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFull;

/// Verified signatures with how each was first used (for the front: routing headers, source
/// address, time). The official SDKs sign only `content-type;host`, so the routing headers are
/// outside the signature, and only this memory binds them to it.
///
/// A signature verifies only while its timestamp is within `window` seconds of the server
/// clock, so it need be remembered only that long: entries sit in one bucket per timestamp
/// (the signature covers the timestamp, so a signature always comes back with the same one),
/// and whole buckets are dropped as they leave the window. The number of entries is capped;
/// when full, new signatures are refused rather than old ones forgotten, because forgetting a
/// live signature would reopen the attack for it.
pub struct SeenSignatures<R> {
    window: i64,
    inner: Mutex<Buckets<R>>,
}

struct Buckets<R> {
    /// Keyed by the first 16 bytes of the signature: an HMAC output nobody can aim at
    /// another without the key, and 128 bits leave no room for accidental collisions.
    by_timestamp: BTreeMap<i64, HashMap<[u8; 16], R>>,
    len: usize,
}

impl<R: Copy> SeenSignatures<R> {
    pub fn new(window: i64) -> Self {
        SeenSignatures {
            window,
            inner: Mutex::new(Buckets {
                by_timestamp: BTreeMap::new(),
                len: 0,
            }),
        }
    }

    /// Looks up and, when new, remembers `signature` (hex, as verified) with `first_use`.
    /// `now` must be the clock reading the timestamp was checked against, so that nothing
    /// still inside the window is dropped.
    pub fn admit(
        &self,
        signature: &str,
        timestamp: i64,
        now: i64,
        first_use: R,
        capacity: usize,
    ) -> Result<Admission<R>, MemoryFull> {
        let mut key = [0u8; 16];
        // A verified signature is 64 hex digits; anything else cannot reach here.
        if hex::decode_to_slice(signature.get(..32).unwrap_or(""), &mut key).is_err() {
            return Err(MemoryFull);
        }
        let mut b = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        b.expire(now - self.window);
        if let Some(seen) = b.by_timestamp.get(&timestamp).and_then(|m| m.get(&key)) {
            return Ok(Admission::Seen(*seen));
        }
        if b.len >= capacity {
            return Err(MemoryFull);
        }
        b.by_timestamp
            .entry(timestamp)
            .or_default()
            .insert(key, first_use);
        b.len += 1;
        Ok(Admission::First)
    }

    /// Number of signatures remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<R> Buckets<R> {
    /// Drops the buckets of timestamps before `oldest`, which no longer verify.
    fn expire(&mut self, oldest: i64) {
        while let Some(entry) = self.by_timestamp.first_entry() {
            if *entry.key() >= oldest {
                break;
            }
            self.len -= entry.remove().len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streamed_verification_agrees_with_the_strings() {
        let signed: Vec<String> = ["host", "content-type", "x-tc-action"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        let long = format!("  Application/JSON; charset={}  ", "X".repeat(150));
        let value = |name: &str| match name {
            "host" => Some("KMS.Example.Internal:8443"),
            "content-type" => Some(long.as_str()),
            "x-tc-action" => Some("Encrypt"),
            _ => None,
        };
        let payload = sha256_hex(b"{}");
        let (cr, _) = canonical_request(
            "POST",
            "/",
            "a=1",
            &signed,
            |n| value(n).map(str::to_string),
            &payload,
        )
        .unwrap();
        let digest =
            canonical_request_digest("POST", "/", "a=1", &signed, value, &payload).unwrap();
        assert_eq!(hex::encode(digest), sha256_hex(cr.as_bytes()));
        let key = signing_key("secret", "2026-12-04", "kms");
        let scope = "2026-12-04/kms/tc3_request";
        let good = signature(&key, &string_to_sign(1_780_000_000, scope, &cr));
        assert!(signature_matches(
            &key,
            1_780_000_000,
            scope,
            &digest,
            &good
        ));
        assert!(!signature_matches(
            &key,
            1_780_000_001,
            scope,
            &digest,
            &good
        ));
        let mut bad = good.clone().into_bytes();
        bad[63] = if bad[63] == b'0' { b'1' } else { b'0' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(!signature_matches(
            &key,
            1_780_000_000,
            scope,
            &digest,
            &bad
        ));
        assert!(!signature_matches(
            &key,
            1_780_000_000,
            scope,
            &digest,
            &good[..63]
        ));
        // A missing signed header is told apart from a mismatch.
        let missing = ["x-tc-region".to_string()];
        assert_eq!(
            canonical_request_digest("POST", "/", "", &missing, value, &payload),
            None
        );
    }

    #[test]
    fn parses_sdk_header() {
        let a = parse_authorization("TC3-HMAC-SHA256 Credential=AKID/2026-11-22/kms/tc3_request, SignedHeaders=content-type;host, Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d").unwrap();
        assert_eq!(a.secret_id, "AKID");
        assert_eq!(a.service, "kms");
        assert_eq!(a.signed_headers, ["content-type", "host"]);
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in [
            "",
            "HMAC Credential=a/b/c/tc3_request, SignedHeaders=content-type;host, Signature=00",
            "TC3-HMAC-SHA256 Credential=a/b/tc3_request, SignedHeaders=content-type;host, Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d",
            "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=host, Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d",
            "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=content-type;host, Signature=xyz",
        ] {
            assert!(parse_authorization(bad).is_err(), "{bad}");
        }
    }

    const SIG_A: &str = "540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d";
    const SIG_B: &str = "0000b4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d";

    #[test]
    fn seen_signatures_bind_routing_and_expire_with_the_window() {
        let seen = SeenSignatures::new(300);
        let now = 1_795_359_828;
        assert_eq!(seen.admit(SIG_A, now, now, 1u32, 10), Ok(Admission::First));
        assert_eq!(seen.admit(SIG_A, now, now, 2, 10), Ok(Admission::Seen(1)));
        // Still remembered at its last valid second...
        assert_eq!(
            seen.admit(SIG_A, now, now + 300, 2, 10),
            Ok(Admission::Seen(1))
        );
        // ...and forgotten only once it can no longer verify.
        assert_eq!(
            seen.admit(SIG_B, now + 301, now + 301, 1, 10),
            Ok(Admission::First)
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_full_memory_refuses_new_signatures_and_keeps_old_ones() {
        let seen = SeenSignatures::new(300);
        let now = 1_795_359_828;
        assert_eq!(seen.admit(SIG_A, now, now, 1u32, 1), Ok(Admission::First));
        assert_eq!(seen.admit(SIG_B, now, now, 1, 1), Err(MemoryFull));
        assert_eq!(seen.admit(SIG_A, now, now, 2, 1), Ok(Admission::Seen(1)));
        // A future timestamp (client clock ahead) is kept until it, too, leaves the window.
        assert_eq!(
            seen.admit(SIG_B, now + 300, now + 301, 1, 1),
            Ok(Admission::First)
        );
        assert_eq!(seen.admit(SIG_A, now, now + 600, 2, 1), Err(MemoryFull));
    }

    #[test]
    fn first_label_is_the_host_up_to_its_first_dot() {
        assert_eq!(first_label("127.0.0.1:8080"), "127");
        assert_eq!(first_label("kms.example.internal:8443"), "kms");
        assert_eq!(first_label("localhost:8443"), "localhost:8443");
        assert_eq!(first_label("[::1]:8443"), "[::1]:8443");
    }

    #[test]
    fn strip_port_removes_only_a_port_suffix() {
        assert_eq!(strip_port("127.0.0.1:8080"), Some("127.0.0.1"));
        assert_eq!(
            strip_port("kms.example.internal:8443"),
            Some("kms.example.internal")
        );
        assert_eq!(strip_port("localhost:1"), Some("localhost"));
        assert_eq!(strip_port("[::1]:8443"), Some("[::1]"));
        for unchanged in [
            "kms.example.internal",
            "127.0.0.1",
            "::1",
            "[::1]",
            "fe80::1:8443",
            "http://127.0.0.1:8080",
            "host:",
            ":8080",
            "host:123456",
            "host:80a",
            "host:-1",
        ] {
            assert_eq!(strip_port(unchanged), None, "{unchanged}");
        }
    }

    #[test]
    fn utc_date_formats() {
        assert_eq!(utc_date(1795359828).unwrap(), "2026-11-22");
        assert_eq!(utc_date(0).unwrap(), "1970-01-01");
    }
}
