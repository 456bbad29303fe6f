//! End-to-end checks of what operators run the daemon with: log output, metrics, the
//! test-bench mode.

mod common;

use common::*;
use serde_json::{json, Value};

/// `KEYWARD_LOG_FORMAT=json`: every log line the daemon writes through its logger is one JSON
/// object with a level, a target and a message, so log shippers need no parsing rules. The
/// one plain line left is `keyward: listening on …`, printed (not logged) for scripts that
/// wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_when_asked_for() {
    let mut d = Daemon::softhsm();
    d.env.push(("KEYWARD_LOG_FORMAT".into(), "json".into()));
    d.stop();
    let before = d.log_text().len();
    d.start();
    ok(d.client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap());
    // A refused request logs at INFO with its fields.
    let refused = d
        .client()
        .kms("DescribeKey", json!({"KeyId": "no-such-key"}))
        .await
        .unwrap();
    assert!(code(&refused).is_some(), "{refused}");
    d.stop();
    let text = String::from_utf8_lossy(&d.log_text()[before..]).to_string();
    let mut logged = 0;
    let mut messages = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("keyward: ") {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{text}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(v.get(field).is_some(), "{field} missing: {line}");
        }
        assert_ne!(v["level"], "ERROR", "{line}");
        messages.push(v["message"].as_str().unwrap_or_default().to_string());
        logged += 1;
    }
    assert!(logged > 3, "{text}");
    assert!(
        messages.iter().any(|m| m == "PKCS#11 HSM backend ready"),
        "the summary line is there: {messages:?}"
    );
    assert!(
        messages.iter().any(|m| m == "keyward stopped"),
        "{messages:?}"
    );
}

/// A plain HTTP/1.1 GET; the whole response as text.
fn http_get(endpoint: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample line `name` (with its labels, exactly as rendered).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Issue 17: `/metrics` serves requests by action and outcome, request latency, HSM operation
/// latency, PKCS#11 session use, store latency and the audit queue, labelled only with names
/// from the action table.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_cover_requests_hsm_store_and_audit() {
    let d = Daemon::softhsm();
    let c = d.client();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("metrics")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    for _ in 0..3 {
        ok(c.kms(
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"metered")}),
        )
        .await
        .unwrap());
    }
    let refused = c
        .kms("DescribeKey", json!({"KeyId": "no-such-key"}))
        .await
        .unwrap();
    let refused_code = code(&refused).expect("refused").to_string();
    let unknown = c.kms("NoSuchActionAtAll", json!({})).await.unwrap();
    assert!(code(&unknown).is_some(), "{unknown}");

    let resp = http_get(&d.endpoint(), "/metrics");
    let (head, m) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let m = m.to_string();
    assert_eq!(
        sample(
            &m,
            r#"keyward_requests_total{service="kms",action="Encrypt",outcome="Success"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"keyward_requests_total{{service="kms",action="DescribeKey",outcome="{refused_code}"}}"#
            )
        ),
        Some(1.0),
        "{m}"
    );
    // An action outside the table is counted without its name becoming a label.
    assert!(
        m.contains(r#"action="unknown",outcome="InvalidAction"} 1"#),
        "{m}"
    );
    assert!(!m.contains("NoSuchActionAtAll"), "{m}");
    assert_eq!(
        sample(
            &m,
            r#"keyward_request_duration_seconds_count{service="kms",action="Encrypt"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert!(
        m.contains(
            r#"keyward_request_duration_seconds_bucket{le="+Inf",service="kms",action="Encrypt"} 3"#
        ) || m.contains(
            r#"keyward_request_duration_seconds_bucket{service="kms",action="Encrypt",le="+Inf"} 3"#
        ),
        "{m}"
    );
    // Each Encrypt ran one HSM encryption; the key's creation one generation (at least: the
    // managed key and the audit signer use the HSM too).
    assert!(
        sample(
            &m,
            r#"keyward_hsm_operation_duration_seconds_count{op="encrypt"}"#
        )
        .is_some_and(|n| n >= 3.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"keyward_hsm_operation_duration_seconds_count{op="generate"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "keyward_hsm_sessions"), Some(4.0), "{m}");
    assert!(
        sample(&m, "keyward_hsm_sessions_in_use").is_some_and(|n| n <= 4.0),
        "{m}"
    );
    // CreateKey committed an audited write transaction.
    assert!(
        sample(&m, r#"keyward_store_duration_seconds_count{op="commit"}"#)
            .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        sample(&m, r#"keyward_store_duration_seconds_count{op="call"}"#).is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(sample(&m, "keyward_audit_queue_depth").is_some(), "{m}");
    assert!(
        sample(&m, "keyward_audit_records_written_total").is_some(),
        "{m}"
    );
    assert!(m.ends_with("# EOF\n"), "{m}");
}
