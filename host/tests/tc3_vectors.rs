//! TC3-HMAC-SHA256 against the captured SDK/tccli requests in tests/data/tc3-test-vectors.json:
//! every intermediate value and the final signature must match, from the raw request parts.

use keyward::api::tc3;
use serde_json::Value;

#[test]
fn captured_requests_verify() {
    let text = include_str!("data/tc3-test-vectors.json");
    let doc: Value = serde_json::from_str(text).unwrap();
    let secret_key = doc["secret_key"].as_str().unwrap();
    let mut checked = 0;
    for v in doc["vectors"].as_array().unwrap() {
        let headers = v["headers"].as_object().unwrap();
        let Some(auth) = headers.get("Authorization").and_then(Value::as_str) else {
            continue; // the legacy v1 (HmacSHA256 form) vector carries no TC3 header
        };
        let exp = &v["expected"];
        let auth = tc3::parse_authorization(auth).unwrap();
        let body = v["body"].as_str().unwrap_or("").as_bytes();
        let pq = v["path_and_query"].as_str().unwrap();
        let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_str())
                .map(str::to_string)
        };
        let (cr, _) = tc3::canonical_request(
            v["method"].as_str().unwrap(),
            path,
            query,
            &auth.signed_headers,
            header,
            &tc3::sha256_hex(body),
        )
        .unwrap();
        assert_eq!(
            cr,
            exp["canonical_request"].as_str().unwrap(),
            "{}",
            v["name"]
        );
        assert_eq!(
            tc3::sha256_hex(cr.as_bytes()),
            exp["canonical_request_sha256"].as_str().unwrap()
        );
        let ts: i64 = exp["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(tc3::utc_date(ts).unwrap(), exp["date"].as_str().unwrap());
        let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
        let sts = tc3::string_to_sign(ts, &scope, &cr);
        assert_eq!(sts, exp["string_to_sign"].as_str().unwrap());
        let key = tc3::signing_key(secret_key, &auth.date, &auth.service);
        assert_eq!(hex::encode(*key), exp["k_signing"].as_str().unwrap());
        let sig = tc3::signature(&key, &sts);
        assert_eq!(sig, exp["signature"].as_str().unwrap());
        // The server's streamed path reaches the same digest and accepts the signature.
        let digest = tc3::canonical_request_digest(
            v["method"].as_str().unwrap(),
            path,
            query,
            &auth.signed_headers,
            |name| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.as_str())
            },
            &tc3::sha256_hex(body),
        )
        .unwrap();
        assert_eq!(
            hex::encode(digest),
            exp["canonical_request_sha256"].as_str().unwrap()
        );
        assert!(tc3::signature_matches(
            &key,
            ts,
            &scope,
            &digest,
            &auth.signature
        ));
        checked += 1;
    }
    assert_eq!(
        checked, 4,
        "four TC3 vectors (POST kms, POST ssm, tccli host, GET)"
    );
}

#[test]
fn client_signer_reproduces_sdk_signature() {
    let doc: Value = serde_json::from_str(include_str!("data/tc3-test-vectors.json")).unwrap();
    let v = &doc["vectors"][0];
    let header = tc3::authorization_header(&tc3::SignRequest {
        secret_id: doc["secret_id"].as_str().unwrap(),
        secret_key: doc["secret_key"].as_str().unwrap(),
        service: "kms",
        host: v["headers"]["Host"].as_str().unwrap(),
        content_type: "application/json",
        timestamp: v["expected"]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        body: v["body"].as_str().unwrap().as_bytes(),
    });
    assert_eq!(header, v["headers"]["Authorization"].as_str().unwrap());
}
