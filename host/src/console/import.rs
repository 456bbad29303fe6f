//! BYOK: importing key material into an external CMK. Step 1 asks for a wrapping public key
//! and an import token (GetParametersForImport) and offers both as downloads; step 2 uploads
//! the material wrapped to that key (ImportKeyMaterial), as a file or base64.

use super::layout::{csrf, select};
use super::{num, text, when, Console, ConsoleState, Fail};
use axum::body::Bytes;
use axum::extract::{Multipart, Path};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/keys/{id}/import", get(page).post(parameters))
        .route("/keys/{id}/import/material", post(material))
}

const ALGORITHMS: [(&str, &str); 3] = [
    ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_256"),
    ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_1"),
    ("RSAES_PKCS1_V1_5", "RSAES_PKCS1_V1_5"),
];

/// DER (base64) as a PEM public key.
fn pem(der_b64: &str) -> String {
    let body: Vec<String> = der_b64
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        body.join("\n")
    )
}

fn download(c: &Console, id: &str, file: &str, content: &str, label: &str) -> Markup {
    html! {
        form.inline method="post" action="/console/download" {
            (csrf(&c.cur.csrf))
            input type="hidden" name="name" value=(file);
            input type="hidden" name="content" value=(content);
            button.secondary type="submit" id=(id) { (label) }
        }
    }
}

fn steps(c: &Console, id: &str, params: Option<&Value>) -> Markup {
    html! {
        h2 { "1. Get a wrapping key and an import token" }
        form.card method="post" action={"/console/keys/" (id) "/import"} {
            (csrf(&c.cur.csrf))
            div.row {
                div { label for="wrapping" { "Wrapping algorithm" } (select("algorithm", "wrapping", &ALGORITHMS, "RSAES_OAEP_SHA_256")) }
                button type="submit" { "Get parameters" }
            }
            p.muted { "The wrapping key is RSA_2048, made in the HSM for this import; the token is valid for 24 hours." }
        }
        @if let Some(p) = params {
            section.card #import-parameters {
                dl.fields {
                    dt { "Public key (base64 DER)" } dd #wrapping-public-key { code { (text(p, "PublicKey")) } }
                    dt { "Import token" } dd #import-token { code { (text(p, "ImportToken")) } }
                    dt { "Valid until" } dd { (when(num(p, "ParametersValidTo"))) }
                }
                div.actions {
                    (download(c, "download-public-key", "wrapping-public-key.pem", &pem(text(p, "PublicKey")), "Download public key (PEM)"))
                    (download(c, "download-token", "import-token.txt", text(p, "ImportToken"), "Download import token"))
                }
            }
        }
        h2 { "2. Upload the wrapped key material" }
        form.card method="post" action={"/console/keys/" (id) "/import/material"} enctype="multipart/form-data" {
            (csrf(&c.cur.csrf))
            label for="token" { "Import token" }
            input #token type="text" name="token" value=(params.map(|p| text(p, "ImportToken")).unwrap_or("")) required;
            label for="file" { "Wrapped key material (a binary file)" }
            input #file type="file" name="file";
            label for="material" { "…or its base64" }
            textarea #material name="material" rows="3" {}
            label for="valid-to" { "Material expires (Unix seconds; 0: never)" }
            input #valid-to type="number" name="valid_to" value="0" min="0";
            p { button type="submit" { "Import key material" } }
        }
    }
}

async fn shell(c: &Console, id: &str, params: Option<&Value>) -> Response {
    let meta = match c.kms("DescribeKey", json!({ "KeyId": id })).await {
        Ok(f) => f["KeyMetadata"].clone(),
        Err(e) => return c.refused("Import key material", &e),
    };
    c.page(
        &format!("Import key material · {}", text(&meta, "Alias")),
        html! {
            div.actions { a href={"/console/keys/" (id)} { "‹ Key details" } }
            p { "Key " code { (id) } " · origin " (text(&meta, "Origin")) " · " (text(&meta, "KeyState")) }
            (steps(c, id, params))
        },
    )
}

async fn page(c: Console, Path(id): Path<String>) -> Response {
    shell(&c, &id, None).await
}

async fn parameters(c: Console, Path(id): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let params = json!({ "KeyId": id, "WrappingAlgorithm": f.get("algorithm"), "WrappingKeySpec": "RSA_2048" });
    Ok(match c.kms("GetParametersForImport", params).await {
        Ok(p) => shell(&c, &id, Some(&Value::Object(p))).await,
        Err(e) => c.redirect(&format!("/console/keys/{id}/import"), Err(e)),
    })
}

async fn material(c: Console, Path(id): Path<String>, mp: Multipart) -> Result<Response, Fail> {
    let (f, file) = c.upload(mp).await?;
    let material = match &file {
        Some(bytes) => B64.encode(bytes.as_slice()),
        None => f.get("material").split_whitespace().collect(),
    };
    let valid_to: u64 = f.get("valid_to").trim().parse().unwrap_or(0);
    let params = json!({
        "KeyId": id,
        "ImportToken": f.get("token").trim(),
        "EncryptedKeyMaterial": material,
        "ValidTo": valid_to,
    });
    let r = c.kms("ImportKeyMaterial", params).await;
    Ok(match r {
        Ok(_) => c.redirect(
            &format!("/console/keys/{id}"),
            Ok("Key material imported: the key is enabled.".into()),
        ),
        Err(e) => c.redirect(&format!("/console/keys/{id}/import"), Err(e)),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_keys_become_pem_with_64_column_lines() {
        let p = super::pem(&"A".repeat(130));
        let lines: Vec<&str> = p.lines().collect();
        assert_eq!(lines[0], "-----BEGIN PUBLIC KEY-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[3].len(), 2);
        assert_eq!(lines[4], "-----END PUBLIC KEY-----");
    }
}
