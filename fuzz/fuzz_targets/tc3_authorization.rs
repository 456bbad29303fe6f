//! TC3-HMAC-SHA256 request authentication on arbitrary header text: the `Authorization`
//! parser, then everything `authenticate` (host/src/api/mod.rs) does with a parsed header
//! short of the credential lookup: the canonical request over the signed headers, the
//! credential-scope date, the string to sign, the signature and its comparison (the strings
//! and the server's streamed path must agree), and the forms
//! of scope service and host the Node.js and Java SDKs sign (`first_label`, `strip_port`).
//!
//! Input: the `Authorization` value on the first line, `Name: value` header lines, an empty
//! line, then the body (the shape of an HTTP request head, so seeds are readable).
#![no_main]

use keyward::api::tc3;
use libfuzzer_sys::fuzz_target;

const SECRET_KEY: &str = "KeywardTestSecretKey0000000000000";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The whole input as one header value (a header may not hold a newline, but the parser
    // must not care).
    let _ = tc3::parse_authorization(&text);

    let (head, body) = match text.split_once("\n\n") {
        Some((h, b)) => (h, b.as_bytes()),
        None => (&*text, &[][..]),
    };
    let mut lines = head.lines();
    let Some(authorization) = lines.next() else {
        return;
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let Ok(auth) = tc3::parse_authorization(authorization) else {
        return;
    };

    // The host forms: a first label is a dotless prefix; only a `:port` suffix is stripped.
    let received = header("host");
    let host = received.clone().unwrap_or_default();
    let label = tc3::first_label(&host);
    assert!(host.starts_with(label) && !label.contains('.'));
    let bare = tc3::strip_port(&host);
    if let Some(bare) = bare {
        let port = &host[bare.len()..];
        assert!(port.starts_with(':') && (2..=6).contains(&port.len()));
        assert!(port[1..].bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            tc3::strip_port(bare),
            None,
            "a port is stripped once: {host:?}"
        );
    }

    // What the parser accepted, written out again, parses to the same thing.
    let again = format!(
        "{} Credential={}/{}/{}/tc3_request, SignedHeaders={}, Signature={}",
        tc3::ALGORITHM,
        auth.secret_id,
        auth.date,
        auth.service,
        auth.signed_headers.join(";"),
        auth.signature
    );
    assert_eq!(
        tc3::parse_authorization(&again).as_ref(),
        Ok(&auth),
        "re-serialised header parses differently: {again:?}"
    );

    let timestamp: i64 = header("x-tc-timestamp")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let _ = tc3::utc_date(timestamp);
    let query = header("x-fuzz-query").unwrap_or_default();
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let key = tc3::signing_key(SECRET_KEY, &auth.date, &auth.service);
    // As `authenticate` does: the host as received, then without its port.
    for (n, host) in [received.as_deref(), bare].into_iter().enumerate() {
        if n > 0 && host.is_none() {
            break;
        }
        let Some((canonical, signed)) = tc3::canonical_request(
            "POST",
            "/",
            &query,
            &auth.signed_headers,
            |name| match name {
                "host" => host.map(str::to_string),
                _ => header(name),
            },
            &tc3::sha256_hex(body),
        ) else {
            return;
        };
        assert_eq!(signed.split(';').count(), auth.signed_headers.len());
        let sts = tc3::string_to_sign(timestamp, &scope, &canonical);
        let expected = tc3::signature(&key, &sts);
        // The server's streamed path (`authenticate`) agrees with the strings: the same
        // digest of the canonical request, and the same verdict on the signature.
        let digest = tc3::canonical_request_digest(
            "POST",
            "/",
            &query,
            &auth.signed_headers,
            |name| match name {
                "host" => host,
                _ => headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str()),
            },
            &tc3::sha256_hex(body),
        )
        .expect("the streamed path finds every header the string path found");
        let digest_hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest_hex, tc3::sha256_hex(canonical.as_bytes()));
        assert_eq!(
            tc3::signature_matches(&key, timestamp, &scope, &digest, &auth.signature),
            expected == auth.signature
        );
    }
});
