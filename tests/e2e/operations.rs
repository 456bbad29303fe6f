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
