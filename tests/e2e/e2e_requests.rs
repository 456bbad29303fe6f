//! End-to-end attacks on the request front of the running daemon: signatures re-sent with
//! other routing headers or replayed, ambiguous headers, and connections that hold the server
//! without sending anything.

mod common;

use common::*;
use keyward::api::tc3::{self, SignRequest};
use keyward::client::{now, RawRequest, TcClient};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const KMS_VERSION: &str = "2019-01-18";
const SSM_VERSION: &str = "2019-09-23";

/// A request signed once, with the headers the SDKs send (signing only content-type;host).
struct Captured {
    service: &'static str,
    version: &'static str,
    action: &'static str,
    body: Vec<u8>,
    timestamp: i64,
}

impl Captured {
    fn kms(action: &'static str, body: Value) -> Self {
        Self::new("kms", KMS_VERSION, action, body)
    }

    fn ssm(action: &'static str, body: Value) -> Self {
        Self::new("ssm", SSM_VERSION, action, body)
    }

    fn new(
        service: &'static str,
        version: &'static str,
        action: &'static str,
        body: Value,
    ) -> Self {
        Captured {
            service,
            version,
            action,
            body: serde_json::to_vec(&body).unwrap(),
            timestamp: now(),
        }
    }

    /// Sends it (re-signing gives the very same signature: same timestamp, body and host),
    /// with `overrides` replacing headers after signing, as an attacker would.
    async fn send(&self, c: &TcClient, overrides: &[(&str, &str)]) -> Value {
        let raw = c
            .raw(RawRequest {
                version: self.version,
                service: self.service,
                action: self.action,
                body: self.body.clone(),
                timestamp: Some(self.timestamp),
                host: None,
                headers: overrides
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            })
            .await
            .unwrap();
        serde_json::from_slice::<Value>(&raw.body).unwrap()["Response"].clone()
    }

    /// Sends the captured request from another address, with `overrides` replacing headers.
    async fn send_from(&self, from: &str, d: &Daemon, overrides: &[(&str, &str)]) -> Value {
        let mut headers = self.headers(d);
        for (k, v) in overrides {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            headers.push((k.to_string(), v.as_bytes().to_vec()));
        }
        send_raw_from(from, d.port, &headers, &self.body).await
    }

    /// The headers of this request as one client would send them, for hand-made HTTP.
    fn headers(&self, d: &Daemon) -> Vec<(String, Vec<u8>)> {
        let host = format!("127.0.0.1:{}", d.port);
        let auth = tc3::authorization_header(&SignRequest {
            secret_id: &d.cred.secret_id,
            secret_key: &d.cred.secret_key,
            service: self.service,
            host: &host,
            content_type: "application/json",
            timestamp: self.timestamp,
            body: &self.body,
        });
        [
            ("Host", host),
            ("Content-Type", "application/json".into()),
            ("Authorization", auth),
            ("X-TC-Action", self.action.into()),
            ("X-TC-Version", self.version.into()),
            ("X-TC-Timestamp", self.timestamp.to_string()),
            ("X-TC-Region", REGION.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_bytes()))
        .collect()
    }
}

/// One HTTP/1.1 exchange over a fresh connection from source address `from` (any of
/// 127.0.0.0/8 works on Linux loopback) with exactly these header lines (repeats and raw bytes
/// included); returns the `Response` object.
async fn send_raw_from(from: &str, port: u16, headers: &[(String, Vec<u8>)], body: &[u8]) -> Value {
    exchange(from, port, "/", headers, body).await
}

/// One exchange with request target `target` (e.g. the absolute form `http://host/`).
async fn send_raw_to(port: u16, target: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Value {
    exchange("127.0.0.1", port, target, headers, body).await
}

async fn exchange(
    from: &str,
    port: u16,
    target: &str,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Value {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
        .unwrap();
    let mut req = format!("POST {target} HTTP/1.1\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    req.extend_from_slice(body);
    let mut s = stream.into_std().unwrap();
    tokio::task::spawn_blocking(move || {
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&req).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&resp)));
        serde_json::from_slice::<Value>(&resp[split + 4..]).unwrap()["Response"].clone()
    })
    .await
    .unwrap()
}

async fn send_raw(port: u16, headers: &[(String, Vec<u8>)], body: &[u8]) -> Value {
    send_raw_from("127.0.0.1", port, headers, body).await
}

/// The attacker's address: another host as far as the daemon can tell.
const ELSEWHERE: &str = "127.0.0.2";

/// Longer than the daemon's grace for a client's own same-second requests.
async fn after_grace() {
    tokio::time::sleep(Duration::from_millis(3100)).await;
}

/// Rewrites the daemon's `[limits]` table (the harness writes one) and restarts it.
fn restart_with_limits(d: &mut Daemon, limits: &str) {
    d.stop();
    let text = std::fs::read_to_string(&d.config).unwrap();
    let text = text.replace("[limits]\n", &format!("[limits]\n{limits}\n"));
    std::fs::write(&d.config, text).unwrap();
    d.start();
}

async fn create_key(c: &TcClient) -> String {
    ok(c.kms("CreateKey", json!({"Alias": unique("req")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_read_cannot_be_resent_as_a_write() {
    let d = Daemon::embedded();
    let c = d.client();
    let key_id = create_key(&c).await;

    // DescribeKey → DisableKey: the body {"KeyId": ...} fits both.
    let describe = Captured::kms("DescribeKey", json!({"KeyId": key_id}));
    ok(describe.send(&c, &[]).await);
    let r = describe
        .send_from(ELSEWHERE, &d, &[("X-TC-Action", "DisableKey")])
        .await;
    err(&r, "AuthFailure.SignatureFailure");
    assert_eq!(key_state(&c, &key_id).await, "Enabled");
    // From the client's own address too, once its own requests of that second are over.
    after_grace().await;
    let r = describe.send(&c, &[("X-TC-Action", "DisableKey")]).await;
    err(&r, "AuthFailure.SignatureFailure");
    let message = r["Error"]["Message"].as_str().unwrap();
    assert!(message.contains("X-TC-Action"), "{r}");
    assert_eq!(key_state(&c, &key_id).await, "Enabled");

    // GetSecretValue → DeleteSecretVersion: {"SecretName", "VersionId"} fits both.
    let name = unique("req");
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": name, "SecretString": "one", "VersionId": "v1"}),
    )
    .await
    .unwrap());
    ok(c.ssm(
        "PutSecretValue",
        json!({"SecretName": name, "SecretString": "two", "VersionId": "v2"}),
    )
    .await
    .unwrap());
    let get = Captured::ssm(
        "GetSecretValue",
        json!({"SecretName": name, "VersionId": "v1"}),
    );
    assert_eq!(ok(get.send(&c, &[]).await)["SecretString"], "one");
    err(
        &get.send_from(ELSEWHERE, &d, &[("X-TC-Action", "DeleteSecretVersion")])
            .await,
        "AuthFailure.SignatureFailure",
    );
    // Nor can the captured read itself be replayed from elsewhere to read the secret.
    err(
        &get.send_from(ELSEWHERE, &d, &[]).await,
        "AuthFailure.SignatureFailure",
    );
    let again = ok(c
        .ssm(
            "GetSecretValue",
            json!({"SecretName": name, "VersionId": "v1"}),
        )
        .await
        .unwrap());
    assert_eq!(again["SecretString"], "one", "version v1 must survive");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_may_send_several_actions_with_one_body_in_one_second() {
    // The SDKs sign neither action nor region, so these share one signature when made in
    // the same second, as SDK code often does; they must all run.
    let d = Daemon::embedded();
    let c = d.client();
    let key_id = create_key(&c).await;
    let body = json!({"KeyId": key_id});
    let ts = now();
    for action in [
        "DescribeKey",
        "DisableKey",
        "DescribeKey",
        "EnableKey",
        "GetKeyRotationStatus",
    ] {
        let mut req = Captured::kms(action, body.clone());
        req.timestamp = ts;
        ok(req.send(&c, &[]).await);
    }
    assert_eq!(key_state(&c, &key_id).await, "Enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signature_is_bound_to_its_region() {
    let d = Daemon::embedded_with(
        "[[regions]]\nname = \"ap-guangzhou\"\n[[regions]]\nname = \"ap-shanghai\"\n",
    );
    let c = d.client();
    let key_id = create_key(&c).await;
    let describe = Captured::kms("DescribeKey", json!({"KeyId": key_id}));
    ok(describe.send(&c, &[]).await);
    err(
        &describe
            .send_from(ELSEWHERE, &d, &[("X-TC-Region", "ap-shanghai")])
            .await,
        "AuthFailure.SignatureFailure",
    );

    // A request made without X-TC-Region (the default region) cannot gain one later.
    let list = Captured::kms("ListKeys", json!({}));
    let mut headers = list.headers(&d);
    headers.retain(|(k, _)| k != "X-TC-Region");
    ok(send_raw(d.port, &headers, &list.body).await);
    after_grace().await;
    headers.push(("X-TC-Region".into(), b"ap-shanghai".to_vec()));
    err(
        &send_raw(d.port, &headers, &list.body).await,
        "AuthFailure.SignatureFailure",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_reads_pass_and_replayed_writes_are_refused() {
    let d = Daemon::embedded();
    let c = d.client();
    let key_id = create_key(&c).await;

    // SDKs repeat identical requests, and two made in one second share a signature.
    let describe = Captured::kms("DescribeKey", json!({"KeyId": key_id}));
    let encrypt = Captured::kms(
        "Encrypt",
        json!({"KeyId": key_id, "Plaintext": b64(b"same")}),
    );
    for _ in 0..3 {
        ok(describe.send(&c, &[]).await);
        ok(encrypt.send(&c, &[]).await);
    }

    // A captured DisableKey replayed after the owner re-enabled the key.
    // (Each signed at its own second: within one second, the same body under another
    // action shares a signature, as DescribeKey's above.)
    let mut disable = Captured::kms("DisableKey", json!({"KeyId": key_id}));
    disable.timestamp = describe.timestamp - 3;
    ok(disable.send(&c, &[]).await);
    let mut enable = Captured::kms("EnableKey", json!({"KeyId": key_id}));
    enable.timestamp = disable.timestamp - 7;
    ok(enable.send(&c, &[]).await);
    err(
        &disable.send_from(ELSEWHERE, &d, &[]).await,
        "AuthFailure.SignatureFailure",
    );
    assert_eq!(key_state(&c, &key_id).await, "Enabled");
    after_grace().await;
    let r = disable.send(&c, &[]).await;
    err(&r, "AuthFailure.SignatureFailure");
    assert!(
        r["Error"]["Message"].as_str().unwrap().contains("once"),
        "{r}"
    );
    assert_eq!(key_state(&c, &key_id).await, "Enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicated_and_malformed_routing_headers_are_refused() {
    let d = Daemon::embedded();
    let c = d.client();
    let key_id = create_key(&c).await;
    let body = json!({"KeyId": key_id});

    // Two X-TC-Action headers: the first would be run, the second logged by a proxy.
    let req = Captured::kms("DescribeKey", body.clone());
    let mut headers = req.headers(&d);
    headers.push(("X-TC-Action".into(), b"DisableKey".to_vec()));
    err(
        &send_raw(d.port, &headers, &req.body).await,
        "InvalidParameter",
    );
    assert_eq!(key_state(&c, &key_id).await, "Enabled");

    for dup in ["X-TC-Region", "X-TC-Timestamp", "X-TC-Version"] {
        let req = Captured::kms("DescribeKey", body.clone());
        let mut headers = req.headers(&d);
        let value = headers.iter().find(|(k, _)| k == dup).unwrap().1.clone();
        headers.push((dup.into(), value));
        err(
            &send_raw(d.port, &headers, &req.body).await,
            "InvalidParameter",
        );
    }

    let req = Captured::kms("DescribeKey", body.clone());
    let mut headers = req.headers(&d);
    let auth = headers
        .iter()
        .find(|(k, _)| k == "Authorization")
        .unwrap()
        .1
        .clone();
    headers.push(("Authorization".into(), auth));
    err(
        &send_raw(d.port, &headers, &req.body).await,
        "AuthFailure.InvalidAuthorization",
    );

    // A region that is not ASCII was taken as absent, i.e. the default region.
    for region in [
        b"ap-guangzhou\xff".to_vec(),
        "ap-广州".as_bytes().to_vec(),
        vec![b'a'; 200],
    ] {
        let req = Captured::kms("DescribeKey", body.clone());
        let mut headers = req.headers(&d);
        headers.retain(|(k, _)| k != "X-TC-Region");
        headers.push(("X-TC-Region".into(), region));
        err(
            &send_raw(d.port, &headers, &req.body).await,
            "InvalidParameter",
        );
    }
    // The well-formed request itself is fine.
    let req = Captured::kms("DescribeKey", body);
    ok(send_raw(d.port, &req.headers(&d), &req.body).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_signature_memory_refuses_new_requests_not_old_ones() {
    let mut d = Daemon::embedded();
    restart_with_limits(&mut d, "signature_memory = 4");
    let c = d.client();
    let first = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 8}));
    ok(first.send(&c, &[]).await);
    let mut refused = None;
    for n in 9..20 {
        let r = Captured::kms("GenerateRandom", json!({"NumberOfBytes": n}))
            .send(&c, &[])
            .await;
        if code(&r).is_some() {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the fifth distinct signature must be refused");
    err(&r, "RequestLimitExceeded");
    // What is remembered still works as before: repeats pass, rebinding fails.
    ok(first.send(&c, &[]).await);
    err(
        &first
            .send_from(ELSEWHERE, &d, &[("X-TC-Action", "GetServiceStatus")])
            .await,
        "AuthFailure.SignatureFailure",
    );
}

/// Opens `n` connections that never send a byte.
fn idle_sockets(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

/// Whether the server closed `s` (EOF or reset) within `wait`.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => true, // an error answer before closing also ends the connection
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_and_do_not_starve_requests() {
    let mut d = Daemon::embedded();
    restart_with_limits(
        &mut d,
        "max_connections = 32\nheader_read_timeout_secs = 2\nidle_timeout_secs = 2\nbody_read_timeout_secs = 2",
    );
    let port = d.port;
    let mut idle = tokio::task::spawn_blocking(move || idle_sockets(port, 64))
        .await
        .unwrap();
    let started = Instant::now();
    let c = d.client();
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        c.kms("GenerateRandom", json!({"NumberOfBytes": 16})),
    )
    .await
    .expect("a legitimate request is served while idle connections come and go")
    .unwrap();
    ok(r);
    eprintln!("served after {:?}", started.elapsed());

    // Every idle socket is closed by the server: 32 at a time, each after ~2 s.
    let all_closed = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .all(|s| closed_within(s, Duration::from_secs(15)))
    })
    .await
    .unwrap();
    assert!(all_closed, "an idle connection stayed open");

    // A connection that sends half a request head is closed as well.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut slow, Duration::from_secs(15)));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // And one that stops sending its body half-way gets an answer and is closed.
    let req = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 16}));
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = b"POST / HTTP/1.1\r\n".to_vec();
    for (k, v) in req.headers(&d) {
        head.extend_from_slice(format!("{k}: ").as_bytes());
        head.extend_from_slice(&v);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("Content-Length: {}\r\n\r\n", req.body.len()).as_bytes());
    head.extend_from_slice(&req.body[..4]);
    s.write_all(&head).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(15)));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let mut d = Daemon::embedded();
    restart_with_limits(
        &mut d,
        "max_connections = 4\nheader_read_timeout_secs = 60\nidle_timeout_secs = 60",
    );
    let port = d.port;
    let idle = idle_sockets(port, 4);
    let c = d.client();
    let call = c.kms("GenerateRandom", json!({"NumberOfBytes": 16}));
    tokio::pin!(call);
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut call)
            .await
            .is_err(),
        "a fifth connection was served while four were open"
    );
    drop(idle);
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("served once a slot is free")
        .unwrap();
    ok(r);
}

/// Issue 12 item 9: a source that keeps failing authentication is refused before its
/// signatures are checked (sparing the work), while other sources are served; it is served
/// again once its budget has refilled.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_keeps_failing_authentication_is_throttled() {
    let d = Daemon::embedded_with("[rate_limit]\nauth_failures_per_sec = 10\n");
    let c = d.client();
    let forged = |d: &Daemon| {
        let mut h = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 4})).headers(d);
        for (name, value) in h.iter_mut() {
            if name == "Authorization" {
                *value = String::from_utf8(value.clone())
                    .unwrap()
                    .replace(&d.cred.secret_id, "AKIDforgedforgedforged")
                    .into_bytes();
            }
        }
        h
    };
    let mut codes = Vec::new();
    for _ in 0..60 {
        let r = send_raw_from(ELSEWHERE, d.port, &forged(&d), br#"{"NumberOfBytes":4}"#).await;
        codes.push(r["Error"]["Code"].as_str().unwrap_or("none").to_string());
    }
    let not_found = codes
        .iter()
        .take_while(|c| *c == "AuthFailure.SecretIdNotFound")
        .count();
    assert!(
        not_found >= 10,
        "the burst is authenticated as usual: {codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "AuthFailure.SecretIdNotFound" || c == "RequestLimitExceeded"),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .filter(|c| *c == "RequestLimitExceeded")
            .count()
            >= 30,
        "the flood is refused before authentication: {codes:?}"
    );
    // A genuine request from the throttled address waits too ...
    let genuine = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 4}));
    err(
        &genuine.send_from(ELSEWHERE, &d, &[]).await,
        "RequestLimitExceeded",
    );
    // ... while other addresses are served.
    ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap());
    // Once the budget has refilled, the address is served again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 5}));
    ok(later.send_from(ELSEWHERE, &d, &[]).await);
}

/// Headers of a request signed with credential-scope service `service` over host
/// `signed_host`, sent with `Host: host` (issue 13 item 1: what the Node.js and Java SDKs sign).
fn signed_as(
    d: &Daemon,
    (version, action): (&str, &str),
    body: &[u8],
    service: &str,
    signed_host: &str,
    host: &str,
) -> Vec<(String, Vec<u8>)> {
    let timestamp = now();
    let auth = tc3::authorization_header(&SignRequest {
        secret_id: &d.cred.secret_id,
        secret_key: &d.cred.secret_key,
        service,
        host: signed_host,
        content_type: "application/json",
        timestamp,
        body,
    });
    [
        ("Host", host.to_string()),
        ("Content-Type", "application/json".into()),
        ("Authorization", auth),
        ("X-TC-Action", action.into()),
        ("X-TC-Version", version.into()),
        ("X-TC-Timestamp", timestamp.to_string()),
        ("X-TC-Region", REGION.into()),
        ("X-TC-RequestClient", "SDK_NODEJS_4.1.313".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect()
}

/// The Node.js SDK with endpoint `127.0.0.1:<port>` signs service `127` and host `127.0.0.1`
/// while sending `Host: 127.0.0.1:<port>`; with `kms.example.internal:<port>` service `kms`
/// and the host without its port; with `localhost:<port>` service `localhost:<port>`. The Java
/// SDK's older releases sign the first label with the host as sent. All of these verify.
#[tokio::test(flavor = "multi_thread")]
async fn sdks_that_derive_the_scope_from_the_endpoint_are_accepted() {
    let d = Daemon::embedded();
    let p = d.port;
    let (ip, named, local) = (
        format!("127.0.0.1:{p}"),
        format!("kms.example.internal:{p}"),
        format!("localhost:{p}"),
    );
    let local_label = local.clone();
    let forms: [(&str, &str, &str, &str); 6] = [
        // (scope service, signed host, Host header, what it stands for)
        ("127", "127.0.0.1", &ip, "Node.js, IP:port"),
        ("127", &ip, &ip, "Java, IP:port"),
        (
            "kms",
            "kms.example.internal",
            &named,
            "Node.js, named on a port",
        ),
        (&local_label, "localhost", &local, "Node.js, localhost:port"),
        ("kms", "127.0.0.1", &ip, "product scope, host without port"),
        (
            "kms",
            "kms.example.internal",
            "kms.example.internal",
            "default port",
        ),
    ];
    for (n, (service, signed_host, host, what)) in forms.into_iter().enumerate() {
        let body = format!(r#"{{"NumberOfBytes":{}}}"#, 8 + n).into_bytes();
        let h = signed_as(
            &d,
            (KMS_VERSION, "GenerateRandom"),
            &body,
            service,
            signed_host,
            host,
        );
        let r = ok(send_raw(p, &h, &body).await);
        assert_eq!(
            unb64(r["Plaintext"].as_str().unwrap()).len(),
            8 + n,
            "{what}"
        );
    }
    // Secrets Manager the same way, with the product taken from X-TC-Version.
    let name = unique("node");
    let body = serde_json::to_vec(&json!({"SecretName": name, "SecretString": "s3cret"})).unwrap();
    let h = signed_as(
        &d,
        (SSM_VERSION, "CreateSecret"),
        &body,
        "127",
        "127.0.0.1",
        &ip,
    );
    assert_eq!(ok(send_raw(p, &h, &body).await)["VersionId"], "SSM_Current");
    let body = serde_json::to_vec(&json!({"SecretName": name, "VersionId": ""})).unwrap();
    let h = signed_as(
        &d,
        (SSM_VERSION, "GetSecretValue"),
        &body,
        "ssm",
        "ssm.example.internal",
        &format!("ssm.example.internal:{p}"),
    );
    let r = ok(send_raw(p, &h, &body).await);
    assert_eq!(r["SecretString"], "s3cret");
    assert_eq!(r["VersionId"], "SSM_Current");
}

/// What stays refused: a scope service that is neither the product's nor the Host's first
/// label, a signature over another host (only a `:port` suffix of the Host received is ever
/// taken off), a Host that disagrees with the request target, and a signature whose scope does
/// not name the product re-sent as another product's action.
#[tokio::test(flavor = "multi_thread")]
async fn forged_scopes_and_hosts_are_refused() {
    let d = Daemon::embedded();
    let p = d.port;
    let ip = format!("127.0.0.1:{p}");
    let local = format!("localhost:{p}");
    let named = format!("kms.example.internal:{p}");
    let other_port = format!("127.0.0.1:{}", if p == 9 { 10 } else { 9 });
    let cases: [(&str, &str, &str, &str); 11] = [
        // (scope service, signed host, Host header, why it must fail)
        ("cvm", "127.0.0.1", &ip, "another product's service"),
        ("ssm", "127.0.0.1", &ip, "the other product's service"),
        (
            "128",
            "127.0.0.1",
            &ip,
            "a label the Host does not start with",
        ),
        (
            "127.0.0.1",
            "127.0.0.1",
            &ip,
            "the whole host is not its first label",
        ),
        (
            "localhost",
            "localhost",
            &local,
            "a dotless Host's label keeps its port",
        ),
        (
            "example",
            "kms.example.internal",
            &named,
            "the second label",
        ),
        ("127", "10.0.0.1", &ip, "a signature over another host"),
        ("127", &other_port, &ip, "a signature over another port"),
        ("127", "127.0.0", &ip, "a shortened host"),
        ("kms", "kms.example.internal.evil", &named, "a longer host"),
        (
            "kms",
            "kms.example.internal",
            "kms.example.internal.evil",
            "another Host",
        ),
    ];
    for (n, (service, signed_host, host, why)) in cases.into_iter().enumerate() {
        let body = format!(r#"{{"NumberOfBytes":{}}}"#, 8 + n).into_bytes();
        let h = signed_as(
            &d,
            (KMS_VERSION, "GenerateRandom"),
            &body,
            service,
            signed_host,
            host,
        );
        let r = send_raw(p, &h, &body).await;
        assert_eq!(code(&r), Some("AuthFailure.SignatureFailure"), "{why}: {r}");
        let message = r["Error"]["Message"].as_str().unwrap();
        let expected = if n < 6 {
            "credential scope names service"
        } else {
            "signature does not match"
        };
        assert!(message.contains(expected), "{why}: {r}");
    }

    // Host and the request target's authority must agree (HTTP/1.1 absolute form here; an
    // HTTP/2 request has only the authority, tests/python/test_dapr.py).
    let body = br#"{"NumberOfBytes":4}"#;
    let h = signed_as(
        &d,
        (KMS_VERSION, "GenerateRandom"),
        body,
        "127",
        "127.0.0.1",
        &ip,
    );
    let r = send_raw_to(p, "http://kms.example.internal/", &h, body).await;
    err(&r, "InvalidParameter");
    let r = send_raw_to(p, &format!("http://{ip}/"), &h, body).await;
    ok(r);

    // Two Host headers are refused before any signature work, whichever one was signed.
    let body = br#"{"NumberOfBytes":5}"#;
    let mut h = signed_as(
        &d,
        (KMS_VERSION, "GenerateRandom"),
        body,
        "127",
        "127.0.0.1",
        &ip,
    );
    h.push(("Host".into(), b"kms.example.internal".to_vec()));
    err(&send_raw(p, &h, body).await, "InvalidParameter");

    // A scope that names no product does not free the signature from its product: the
    // signature memory binds it to KMS, so it cannot be re-sent as Secrets Manager's action.
    let body = b"{}";
    let h = signed_as(
        &d,
        (KMS_VERSION, "GetServiceStatus"),
        body,
        "127",
        "127.0.0.1",
        &ip,
    );
    ok(send_raw(p, &h, body).await);
    let mut moved = h.clone();
    for (k, v) in moved.iter_mut() {
        if k == "X-TC-Version" {
            *v = SSM_VERSION.as_bytes().to_vec();
        }
    }
    err(
        &send_raw_from(ELSEWHERE, p, &moved, body).await,
        "AuthFailure.SignatureFailure",
    );
    after_grace().await;
    err(
        &send_raw(p, &moved, body).await,
        "AuthFailure.SignatureFailure",
    );
}

/// Issue 13 item 2: form-encoded POSTs (the SDKs' HmacSHA1/HmacSHA256 "v1" signature) and
/// multipart bodies get UnsupportedProtocol saying what is required, as GET does.
#[tokio::test(flavor = "multi_thread")]
async fn form_encoded_and_v1_signed_requests_are_refused() {
    let d = Daemon::embedded();
    let body = format!(
        "Action=GenerateRandom&NumberOfBytes=16&Version={KMS_VERSION}&Region={REGION}\
         &Timestamp={}&Nonce=4242&SecretId={}&SignatureMethod=HmacSHA256&Signature=abc%3D",
        now(),
        d.cred.secret_id
    );
    for content_type in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "Multipart/Form-Data; boundary=xyz",
    ] {
        let h = vec![
            (
                "Host".to_string(),
                format!("127.0.0.1:{}", d.port).into_bytes(),
            ),
            ("Content-Type".into(), content_type.as_bytes().to_vec()),
        ];
        let r = send_raw(d.port, &h, body.as_bytes()).await;
        err(&r, "UnsupportedProtocol");
        let message = r["Error"]["Message"].as_str().unwrap();
        assert!(message.contains("TC3-HMAC-SHA256"), "{r}");
        assert!(message.contains("application/json"), "{r}");
    }
    // A TC3-signed request that declares a form body is refused the same way.
    let req = Captured::kms("GenerateRandom", json!({"NumberOfBytes": 16}));
    let mut h = req.headers(&d);
    h.retain(|(k, _)| k != "Content-Type");
    h.push((
        "Content-Type".into(),
        b"application/x-www-form-urlencoded".to_vec(),
    ));
    err(
        &send_raw(d.port, &h, &req.body).await,
        "UnsupportedProtocol",
    );
    // JSON still works.
    ok(send_raw(d.port, &req.headers(&d), &req.body).await);
}
