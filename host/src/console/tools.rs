//! The online tools of a key's page: encrypt and decrypt with a symmetric key, sign and
//! verify with an asymmetric one, each result downloadable.

use super::keys::safe_name;
use super::layout::csrf;
use super::{text, Console, ConsoleState, Fail};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new().route("/keys/{id}/tools", get(page).post(run))
}

/// The signature algorithms a key algorithm offers (kms::asymmetric::sign_algorithm_names).
fn sign_algorithms(alg: &str) -> &'static [&'static str] {
    match alg {
        "RSA_2048" => &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"],
        "ECC_P256" => &["ECC_P256_R1"],
        "ECC_P384" => &["ECC_P384_R1"],
        "SM2" => &["SM2DSA"],
        _ => &[],
    }
}

/// A result and what to call it when downloaded.
struct Outcome {
    label: &'static str,
    value: Zeroizing<String>,
    file: String,
}

fn forms(c: &Console, id: &str, meta: &Value, input: &str) -> Markup {
    let usage = text(meta, "KeyUsage");
    let alg = text(meta, "Algorithm");
    let form = |op: &str, label: &str, field: &str, hint: &str, extra: Markup| -> Markup {
        html! {
            form.card method="post" action={"/console/keys/" (id) "/tools"} {
                (csrf(&c.cur.csrf))
                input type="hidden" name="op" value=(op);
                label for={(op) "-input"} { (label) }
                textarea id={(op) "-input"} name=(field) rows="4" { @if !input.is_empty() { (input) } }
                p.muted { (hint) }
                (extra)
                p { button type="submit" id={(op) "-run"} { "Convert: " (op) } }
            }
        }
    };
    html! {
        @if usage == "ENCRYPT_DECRYPT" {
            h2 { "Encryption" }
            (form("encrypt", "Plaintext", "data", "Text to encrypt (UTF-8, at most 4 KiB). The result is the ciphertext blob, base64.", html!{}))
            h2 { "Decryption" }
            (form("decrypt", "Ciphertext (base64)", "data", "A ciphertext blob this key produced.", html!{}))
        } @else if usage.starts_with("ASYMMETRIC_SIGN_VERIFY") && !sign_algorithms(alg).is_empty() {
            @let algs = sign_algorithms(alg);
            @let pick = html! {
                label for="algorithm" { "Algorithm" }
                select #algorithm name="algorithm" { @for a in algs { option value=(a) { (a) } } }
            };
            h2 { "Sign" }
            (form("sign", "Message", "data", "Text to sign (UTF-8, RAW message). The result is the signature, base64.", pick.clone()))
            h2 { "Verify" }
            (form("verify", "Message", "data", "The signed text.", html! {
                label for="signature" { "Signature (base64)" }
                textarea #signature name="signature" rows="3" {}
                (pick)
            }))
        } @else if usage == "ASYMMETRIC_DECRYPT_RSA_2048" || usage == "ASYMMETRIC_DECRYPT_SM2" {
            h2 { "Decryption" }
            (form("asymmetric-decrypt", "Ciphertext (base64)", "data",
                "Data encrypted to this key's public key (download it from the key's page).",
                if usage == "ASYMMETRIC_DECRYPT_RSA_2048" { html! {
                    label for="algorithm" { "Algorithm" }
                    select #algorithm name="algorithm" {
                        @for a in ["RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5"] { option value=(a) { (a) } }
                    }
                } } else { html! {} }))
        } @else {
            p.muted { "This key's usage (" (usage) ") has no online tool here; use the API." }
        }
    }
}

async fn describe(c: &Console, id: &str) -> Result<Value, Response> {
    c.kms("DescribeKey", json!({ "KeyId": id }))
        .await
        .map(|f| f["KeyMetadata"].clone())
        .map_err(|e| c.refused("Online tools", &e))
}

fn shell(c: &Console, id: &str, meta: &Value, body: Markup) -> Response {
    c.page(
        &format!("Online tools · {}", text(meta, "Alias")),
        html! {
            div.actions { a href={"/console/keys/" (id)} { "‹ Key details" } }
            p { "Key " code { (id) } " · " (text(meta, "KeyUsage")) " · " (text(meta, "KeyState")) }
            (body)
        },
    )
}

async fn page(c: Console, Path(id): Path<String>) -> Response {
    match describe(&c, &id).await {
        Ok(meta) => shell(&c, &id, &meta, forms(&c, &id, &meta, "")),
        Err(r) => r,
    }
}

async fn run(c: Console, Path(id): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let meta = match describe(&c, &id).await {
        Ok(m) => m,
        Err(r) => return Ok(r),
    };
    let data = f.get("data");
    let op = f.get("op");
    let result = match op {
        "encrypt" => c
            .kms("Encrypt", json!({ "KeyId": id, "Plaintext": B64.encode(data) }))
            .await
            .map(|r| Outcome { label: "Ciphertext", value: Zeroizing::new(text(&Value::Object(r), "CiphertextBlob").into()), file: "ciphertext.txt".into() }),
        "decrypt" => c
            .kms("Decrypt", json!({ "CiphertextBlob": data.trim() }))
            .await
            .map(|r| plaintext_outcome(text(&Value::Object(r), "Plaintext"))),
        "sign" => c
            .kms("SignByAsymmetricKey", json!({ "KeyId": id, "Algorithm": f.get("algorithm"), "Message": B64.encode(data), "MessageType": "RAW" }))
            .await
            .map(|r| Outcome { label: "Signature", value: Zeroizing::new(text(&Value::Object(r), "Signature").into()), file: "signature.txt".into() }),
        "verify" => c
            .kms("VerifyByAsymmetricKey", json!({ "KeyId": id, "Algorithm": f.get("algorithm"), "Message": B64.encode(data), "MessageType": "RAW", "SignatureValue": f.get("signature").trim() }))
            .await
            .map(|r| {
                let ok = r.get("SignatureValid").and_then(Value::as_bool) == Some(true);
                Outcome { label: "Verification", value: Zeroizing::new(if ok { "valid".into() } else { "NOT valid".into() }), file: "verification.txt".into() }
            }),
        "asymmetric-decrypt" => {
            let r = if text(&meta, "KeyUsage") == "ASYMMETRIC_DECRYPT_SM2" {
                c.kms("AsymmetricSm2Decrypt", json!({ "KeyId": id, "Ciphertext": data.trim() })).await
            } else {
                c.kms("AsymmetricRsaDecrypt", json!({ "KeyId": id, "Ciphertext": data.trim(), "Algorithm": f.get("algorithm") })).await
            };
            r.map(|r| plaintext_outcome(text(&Value::Object(r), "Plaintext")))
        }
        other => return Err(Fail::BadForm(format!("unknown tool `{other}`"))),
    };
    let out = match result {
        Ok(o) => html! {
            section.card #result aria-live="polite" {
                h2 { (o.label) }
                pre.value #result-value { (o.value.as_str()) }
                form method="post" action="/console/download" {
                    (csrf(&c.cur.csrf))
                    input type="hidden" name="name" value=(o.file);
                    input type="hidden" name="content" value=(o.value.as_str());
                    button.secondary type="submit" #download { "Download" }
                }
            }
        },
        Err(e) => super::layout::refusal(
            crate::api::envelope::error_code(&e),
            &crate::api::envelope::error_message(&e),
        ),
    };
    Ok(shell(
        &c,
        &id,
        &meta,
        html! { (out) (forms(&c, &id, &meta, "")) },
    ))
}

/// A decrypted plaintext (base64 from the API): as text when it is UTF-8, else as base64.
fn plaintext_outcome(b64: &str) -> Outcome {
    let raw = Zeroizing::new(B64.decode(b64).unwrap_or_default());
    match std::str::from_utf8(&raw) {
        Ok(s) => Outcome {
            label: "Plaintext",
            value: Zeroizing::new(s.into()),
            file: "plaintext.txt".into(),
        },
        Err(_) => Outcome {
            label: "Plaintext (binary, base64)",
            value: Zeroizing::new(B64.encode(&*raw)),
            file: "plaintext.b64".into(),
        },
    }
}

/// Hands a result back as a file. The content comes from the session's own form (CSRF
/// token), is served as an attachment of an opaque type, and is never rendered.
pub async fn download(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", safe_name(f.get("name"))),
            ),
        ],
        f.get("content").to_string(),
    )
        .into_response())
}
