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

/// `keyward serve --data-dir D` with no configuration file and an environment without
/// SoftHSM2's or the PIN's variables; returns the child and its endpoint.
fn serve_bare(data: &std::path::Path, log: &std::path::Path) -> (std::process::Child, String) {
    use std::io::Read;
    let out = std::fs::File::create(log).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("SOFTHSM2_CONF")
        .env_remove("KEYWARD_PIN")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdout(std::process::Stdio::null())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut text = String::new();
        std::fs::File::open(log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        if let Some(pos) = text.find("listening on http://") {
            let url: String = text[pos + "listening on ".len()..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return (child, url);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("keyward serve exited with {status}:\n{text}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no listen line:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Issue 17: test-bench mode from an empty directory. `keyward init --softhsm` provisions a
/// SoftHSM2 token inside the data directory (its own softhsm2.conf, the PIN in a 0600 file,
/// the SO PIN shown once) and `keyward serve` runs on it with nothing else: no configuration
/// file, no SOFTHSM2_CONF, no PIN variable. Keys are HSM-level and survive a restart.
#[tokio::test(flavor = "multi_thread")]
async fn init_softhsm_then_serve_with_no_further_setup() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let init = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["init", "--softhsm", "--data-dir"])
            .arg(&data)
            .args(extra)
            .env_remove("SOFTHSM2_CONF")
            .env_remove("KEYWARD_PIN")
            .output()
            .unwrap()
    };
    let out = init(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let cred: Value = serde_json::from_slice(&out.stdout).expect("credentials on stdout");
    assert!(stderr.contains("SO PIN"), "{stderr}");
    let token = data.join("softhsm");
    for (name, mode) in [
        ("pin", 0o600),
        ("softhsm2.conf", 0o600),
        ("hsm.toml", 0o600),
    ] {
        let m = std::fs::metadata(token.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, mode, "{name}");
    }
    let m = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
    assert_eq!(m, 0o700);
    let pin = std::fs::read_to_string(token.join("pin")).unwrap();
    assert!(pin.len() >= 32, "a long generated PIN");
    assert!(
        !stderr.contains(pin.trim()),
        "the user PIN is never printed"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(pin.trim()));

    let log = tmp.path().join("serve.log");
    let (child, endpoint) = serve_bare(&data, &log);
    let c = keyward::client::TcClient::new(
        &endpoint,
        cred["SecretId"].as_str().unwrap(),
        cred["SecretKey"].as_str().unwrap(),
        cred["Region"].as_str().unwrap(),
    )
    .unwrap();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("bench")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let described = ok(c.kms("DescribeKey", json!({"KeyId": key})).await.unwrap());
    assert_eq!(described["KeyMetadata"]["ProtectionLevel"], "HSM");
    let blob = ok(c
        .kms("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"bench")}))
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    stop(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("PKCS#11 HSM backend ready"), "{text}");
    assert!(text.contains("test bench"), "{text}");

    // A restart finds the same token and key.
    let (child, endpoint) = serve_bare(&data, &log);
    let c = keyward::client::TcClient::new(
        &endpoint,
        cred["SecretId"].as_str().unwrap(),
        cred["SecretKey"].as_str().unwrap(),
        cred["Region"].as_str().unwrap(),
    )
    .unwrap();
    let plain = ok(c
        .kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap())["Plaintext"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(unb64(&plain), b"bench");
    stop(child);

    // A second `init --softhsm` on the same directory is refused and changes nothing.
    let again = init(&[]);
    assert!(!again.status.success());
    assert_eq!(
        std::fs::read_to_string(token.join("pin")).unwrap(),
        pin,
        "the token is untouched"
    );
}

/// Issue 17: SIGTERM stops accepting, lets a request already in flight finish and answer, and
/// stores its audit record before the process exits (the record of a read goes through the
/// batching writer's queue, which shutdown flushes).
#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_the_request_in_flight_and_flushes_its_audit_record() {
    use std::io::{Read, Write};
    let mut d = Daemon::embedded();
    let host = format!("127.0.0.1:{}", d.port);
    let body = br#"{"NumberOfBytes": 16}"#;
    let timestamp = keyward::client::now();
    let auth = keyward::api::tc3::authorization_header(&keyward::api::tc3::SignRequest {
        secret_id: &d.cred.secret_id,
        secret_key: &d.cred.secret_key,
        service: "kms",
        host: &host,
        content_type: "application/json",
        timestamp,
        body,
    });
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nX-TC-Action: GenerateRandom\r\nX-TC-Version: 2019-01-18\r\n\
         X-TC-Region: {REGION}\r\nX-TC-Timestamp: {timestamp}\r\nAuthorization: {auth}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    // Half the body: the daemon now waits inside the request for the rest.
    s.write_all(&body[..8]).unwrap();
    s.flush().unwrap();
    // Ordering only (no assertion on time): let the head reach the daemon before the signal.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    s.write_all(&body[8..]).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let json_body: Value = serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap();
    let answered = ok(json_body["Response"].clone());
    assert!(answered["Plaintext"].is_string(), "{answered}");
    let request_id = answered["RequestId"].as_str().unwrap().to_string();
    d.stop();
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    assert!(log.contains("keyward stopped"), "{log}");

    // The daemon is gone; its log holds the drained request's record.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["audit", "export", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let export = String::from_utf8_lossy(&out.stdout);
    assert!(
        export.lines().any(|l| l.contains(&request_id)),
        "no audit record for {request_id}"
    );
}

/// Issue 17: under systemd (`Type=notify`) the daemon reports READY=1 once it serves — after
/// the store, HSM and audit log are open and the listener is bound — and STOPPING=1 when asked
/// to stop. The test plays the service manager with a datagram socket in `NOTIFY_SOCKET`.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_readiness_and_stopping_notifications() {
    let mut d = Daemon::embedded();
    d.stop();
    let socket_path = d.dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    d.env
        .push(("NOTIFY_SOCKET".into(), socket_path.display().to_string()));
    d.start();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("a notification");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("STATUS=serving on http://127.0.0.1:{}", d.port)),
        "{ready}"
    );
    // Ready means serving: a request succeeds right away.
    ok(d.client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap());
    d.stop();
    let n = socket.recv(&mut buf).expect("a notification");
    let stopping = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
}

/// Issue 17: HSM failures are counted per operation in `/metrics` — here the serial firmware
/// device is pulled (its simulator killed) and random bytes are asked for.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_hsm_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, device) = start_sim(&dir.path().join("device"), &[]);
    let mut d = Daemon::with_hsm_section(
        dir,
        &format!("[hsm]\nbackend = \"serial\"\npath = \"{device}\"\ntimeout_ms = 300\n"),
    );
    d.sim = Some(sim);
    ok(d.client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap());
    let mut sim = d.sim.take().unwrap();
    sim.kill().unwrap();
    sim.wait().unwrap();
    let failed = d
        .client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap();
    let failed_code = code(&failed).expect("refused").to_string();
    let m = http_get(&d.endpoint(), "/metrics");
    assert!(
        sample(
            &m_body(&m),
            r#"keyward_hsm_operation_errors_total{op="random"}"#
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m_body(&m),
            &format!(
                r#"keyward_requests_total{{service="kms",action="GenerateRandom",outcome="{failed_code}"}}"#
            )
        ),
        Some(1.0),
        "{m}"
    );
}

fn m_body(resp: &str) -> String {
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}
