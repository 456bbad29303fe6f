//! `keyward bench`: a load generator that sends fully signed requests over keep-alive
//! connections and reports throughput and latency percentiles.

use crate::api::actions::Product;
use crate::api::tc3;
use crate::client::TcClient;
use crate::error::{Error, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct BenchArgs {
    /// One endpoint, or several separated by commas (the daemons of one deployment): worker
    /// `i` sends to endpoint `i % n`.
    pub endpoint: String,
    pub secret_id: String,
    pub secret_key: String,
    pub region: String,
    pub action: String,
    pub concurrency: usize,
    pub duration: Duration,
    pub key_id: Option<String>,
}

pub struct BenchReport {
    pub action: String,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "action={} concurrency={} ops={} errors={} seconds={:.1} ops_per_sec={:.0} p50_us={} p99_us={} p999_us={}",
            self.action,
            self.concurrency,
            self.ops,
            self.errors,
            self.seconds,
            self.ops as f64 / self.seconds,
            self.p50_us,
            self.p99_us,
            self.p999_us
        )
    }
}

/// Builds the request body for one action, creating what it needs (a key, a blob) first.
async fn prepare(client: &TcClient, args: &BenchArgs) -> Result<Value> {
    let needs_key = matches!(
        args.action.as_str(),
        "Encrypt" | "Decrypt" | "GenerateDataKey" | "DescribeKey"
    );
    let key_id = match (&args.key_id, needs_key) {
        (Some(k), _) => k.clone(),
        (None, true) => {
            let alias = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let r = client.kms("CreateKey", json!({ "Alias": alias })).await?;
            r["KeyId"]
                .as_str()
                .ok_or_else(|| Error::Internal(format!("CreateKey failed: {r}")))?
                .to_string()
        }
        (None, false) => String::new(),
    };
    // 32 bytes of plaintext, as the benchmark brief specifies.
    const PLAINTEXT: &[u8; 32] = b"Keyward benchmark plaintext, 32B";
    let plaintext = base64::engine::general_purpose::STANDARD.encode(PLAINTEXT);
    let plaintext = plaintext.as_str();
    Ok(match args.action.as_str() {
        "Encrypt" => json!({ "KeyId": key_id, "Plaintext": plaintext }),
        "Decrypt" => {
            let r = client
                .kms(
                    "Encrypt",
                    json!({ "KeyId": key_id, "Plaintext": plaintext }),
                )
                .await?;
            let blob = r["CiphertextBlob"]
                .as_str()
                .ok_or_else(|| Error::Internal(format!("Encrypt failed: {r}")))?;
            json!({ "CiphertextBlob": blob })
        }
        "GenerateDataKey" => json!({ "KeyId": key_id, "KeySpec": "AES_256" }),
        "DescribeKey" => json!({ "KeyId": key_id }),
        // A new secret per call (`fresh_name`), with a typical 64-byte value.
        "CreateSecret" => json!({ "SecretString": "b".repeat(64) }),
        "GetSecretValue" => {
            let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
            // A 64-byte value: a typical database password or API token with its JSON wrapper.
            let value = "b".repeat(64);
            let r = client
                .ssm(
                    "CreateSecret",
                    json!({ "SecretName": name, "SecretString": value }),
                )
                .await?;
            if r.get("Error").is_some() {
                return Err(Error::Internal(format!("CreateSecret failed: {r}")));
            }
            json!({ "SecretName": name, "VersionId": "SSM_Current" })
        }
        "GenerateRandom" => json!({ "NumberOfBytes": 32 }),
        // Sign-<ALG> / Verify-<ALG>: a 32-byte DIGEST with a fresh key of that algorithm.
        a if a.starts_with("Sign-") || a.starts_with("Verify-") => {
            let (usage, algorithm) = match a.split_once('-').map(|x| x.1) {
                Some("RSA") => ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", "RSA_PKCS1_SHA_256"),
                Some("ECC") => ("ASYMMETRIC_SIGN_VERIFY_ECC", "ECC_P256_R1"),
                Some("P384") => ("ASYMMETRIC_SIGN_VERIFY_ECDSA384", "ECC_P384_R1"),
                Some("SM2") => ("ASYMMETRIC_SIGN_VERIFY_SM2", "SM2DSA"),
                _ => return Err(Error::Config(format!("unknown bench action {a}"))),
            };
            let alias = format!("bench-{}", uuid::Uuid::new_v4().simple());
            let r = client
                .kms("CreateKey", json!({ "Alias": alias, "KeyUsage": usage }))
                .await?;
            let key_id = r["KeyId"]
                .as_str()
                .ok_or_else(|| Error::Internal(format!("CreateKey failed: {r}")))?;
            // 32 bytes: the size of a SHA-256 or SM3 digest.
            let message = "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=";
            let mut body = json!({ "KeyId": key_id, "Algorithm": algorithm, "Message": message, "MessageType": "DIGEST" });
            if a.starts_with("Verify-") {
                let s = client.kms("SignByAsymmetricKey", body.clone()).await?;
                body["SignatureValue"] = s["Signature"].clone();
            }
            body
        }
        // Anything else is sent with an empty body (e.g. against the bare HTTP ceiling).
        _ => json!({}),
    })
}

/// Secrets Manager actions go to the `ssm` service, everything else to `kms`.
fn is_ssm(action: &str) -> bool {
    matches!(action, "GetSecretValue" | "CreateSecret")
}

/// The API action a bench action calls (`Sign-ECC` is SignByAsymmetricKey with an ECC key).
fn api_action(action: &str) -> &str {
    match action.split_once('-') {
        Some(("Sign", _)) => "SignByAsymmetricKey",
        Some(("Verify", _)) => "VerifyByAsymmetricKey",
        _ => action,
    }
}

/// A Lua script for `wrk` (Debian's package) replaying one request signed now: an independent
/// load generator that costs far less CPU per request than `keyward bench`, so on a two-core
/// machine more of the second core is left to the daemon. The signature stays valid for the
/// 5-minute TC3 window, and the daemon accepts an identical read or crypto request again from
/// the same address (`api::bind_signature`). Every response is checked: an HTTP status other
/// than 200 or a body with an `"Error"` counts as an API error, reported as `api_errors=N`.
pub async fn wrk_script(args: &BenchArgs) -> Result<String> {
    let endpoint = args.endpoint.split(',').next().unwrap_or_default().trim();
    let client = TcClient::new(endpoint, &args.secret_id, &args.secret_key, &args.region)?;
    let body = serde_json::to_string(&prepare(&client, args).await?)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let product = if is_ssm(&args.action) {
        Product::Ssm
    } else {
        Product::Kms
    };
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let timestamp = crate::client::now();
    let auth = tc3::authorization_header(&tc3::SignRequest {
        secret_id: &args.secret_id,
        secret_key: &args.secret_key,
        service: product.service(),
        host,
        content_type: "application/json",
        timestamp,
        body: body.as_bytes(),
    });
    let headers = [
        ("Host", host),
        ("Content-Type", "application/json"),
        ("Authorization", auth.as_str()),
        ("X-TC-Action", api_action(&args.action)),
        ("X-TC-Version", product.version()),
        ("X-TC-Timestamp", &timestamp.to_string()),
        ("X-TC-Region", &args.region),
    ]
    .iter()
    .map(|(k, v)| format!("wrk.headers[\"{k}\"] = [==[{v}]==]\n"))
    .collect::<String>();
    // Long strings ([==[ ]==]) need no escaping: JSON, base64 and the header values never
    // contain `]==]`. `response` runs in each wrk thread; `done` reads the threads' counts.
    Ok(format!(
        r#"wrk.method = "POST"
wrk.body = [==[{body}]==]
{headers}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
api_errors = 0
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"Error"', 1, true) then api_errors = api_errors + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("api_errors") end
  io.write(string.format("api_errors=%d requests=%d p50_us=%d p99_us=%d\n", n,
    summary.requests, latency:percentile(50), latency:percentile(99)))
end
"#
    ))
}

pub async fn run(args: BenchArgs) -> Result<BenchReport> {
    let clients = args
        .endpoint
        .split(',')
        .map(|e| TcClient::new(e.trim(), &args.secret_id, &args.secret_key, &args.region))
        .collect::<Result<Vec<_>>>()?;
    let body = Arc::new(prepare(&clients[0], &args).await?);
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.concurrency);
    for i in 0..args.concurrency.max(1) {
        let client = clients[i % clients.len()].clone();
        let body = body.clone();
        let action = args.action.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let api_action = api_action(&action);
                let mut body = (*body).clone();
                if action == "CreateSecret" {
                    body["SecretName"] = format!("bench-{}", uuid::Uuid::new_v4().simple()).into();
                }
                let call = if is_ssm(&action) {
                    client.ssm(api_action, body).await
                } else {
                    client.kms(api_action, body).await
                };
                match call {
                    Ok(r) if r.get("Error").is_none() => lat.push(t.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t
            .await
            .map_err(|e| Error::Internal(format!("bench task: {e}")))?;
        all.extend(lat);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> u64 {
        if all.is_empty() {
            0
        } else {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)]
        }
    };
    Ok(BenchReport {
        action: args.action,
        concurrency: args.concurrency,
        ops: all.len() as u64,
        errors,
        seconds,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
    })
}

/// A bare axum endpoint answering every request with a fixed 100-byte JSON body: the HTTP
/// ceiling the daemon's numbers are compared against.
pub async fn serve_bare(listen: std::net::SocketAddr) -> Result<()> {
    const BODY: &str = r#"{"Response":{"RequestId":"00000000-0000-0000-0000-000000000000","Plaintext":"AAAAAAAAAAAAAAAA"}}"#;
    let app = axum::Router::new().fallback(|| async {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!("{BODY:<100}"),
        )
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "keyward: bare HTTP endpoint on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
