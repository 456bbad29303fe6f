//! TC3-HMAC-SHA256 request authentication on arbitrary header text: the `Authorization`
//! parser, then everything `authenticate` (host/src/api/mod.rs) does with a parsed header
//! short of the credential lookup: the canonical request over the signed headers, the
//! credential-scope date, the string to sign, the signature and its comparison.
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
    let Some((canonical, signed)) = tc3::canonical_request(
        "POST",
        "/",
        &query,
        &auth.signed_headers,
        header,
        &tc3::sha256_hex(body),
    ) else {
        return;
    };
    assert_eq!(signed.split(';').count(), auth.signed_headers.len());
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let sts = tc3::string_to_sign(timestamp, &scope, &canonical);
    let expected = tc3::signature(
        &tc3::signing_key(SECRET_KEY, &auth.date, &auth.service),
        &sts,
    );
    let _ = tc3::signatures_equal(&expected, &auth.signature);
});
