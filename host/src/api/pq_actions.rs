//! KMS post-quantum actions (PostQuantumCryptoEncrypt/Decrypt/Sign/Verify) on ML-KEM-768 and
//! ML-DSA-65 CMKs (kms::pq). Plaintext fields are `Zeroizing`, as in crypto_actions.

use super::crypto_actions::deliver_plaintext;
use super::params::{base64_decode, base64_encode, parse, required, typed};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    #[serde(rename = "KeyId", default)]
    key_id: String,
    #[serde(rename = "PlainText", default)]
    plain_text: Zeroizing<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
    key_id: String,
}

pub(super) fn encrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: EncryptRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    let plaintext = Zeroizing::new(base64_decode(
        required("PlainText", &req.plain_text)?,
        |m| Error::InvalidPlaintext(format!("PlainText is {m}")),
    )?);
    let blob = ctx.state.kms.pq_encrypt(&ctx.caller, key_id, &plaintext)?;
    typed(EncryptResponse {
        ciphertext_blob: base64_encode(&blob),
        key_id: key_id.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DecryptRequest {
    #[serde(default)]
    ciphertext_blob: String,
    #[serde(default)]
    encryption_public_key: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
}

/// `PlainText` with a capital T, unlike Decrypt's `Plaintext`.
#[derive(Serialize)]
struct DecryptResponse {
    #[serde(rename = "KeyId")]
    key_id: String,
    #[serde(rename = "PlainText")]
    plain_text: Zeroizing<String>,
}

pub(super) fn decrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: DecryptRequest = parse(body)?;
    let blob = base64_decode(
        required("CiphertextBlob", &req.ciphertext_blob)?,
        Error::InvalidCiphertext,
    )?;
    let (key_id, plaintext) = ctx.state.kms.pq_decrypt(&ctx.caller, &blob)?;
    let plain_text = deliver_plaintext(
        &plaintext,
        &req.encryption_public_key,
        &req.encryption_algorithm,
    )?;
    typed(DecryptResponse { key_id, plain_text })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct SignRequest {
    #[serde(default)]
    message: Zeroizing<String>,
    #[serde(default)]
    key_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SignResponse {
    signature: String,
}

fn message(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(base64_decode(
        required("Message", text)?,
        |m| Error::InvalidValue(format!("Message is {m}")),
    )?))
}

pub(super) fn sign(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: SignRequest = parse(body)?;
    let message = message(&req.message)?;
    let signature =
        ctx.state
            .kms
            .pq_sign(&ctx.caller, required("KeyId", &req.key_id)?, &message)?;
    typed(SignResponse {
        signature: base64_encode(&signature),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct VerifyRequest {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    signature_value: String,
    #[serde(default)]
    message: Zeroizing<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VerifyResponse {
    signature_valid: bool,
}

pub(super) fn verify(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: VerifyRequest = parse(body)?;
    let message = message(&req.message)?;
    let signature = base64_decode(required("SignatureValue", &req.signature_value)?, |m| {
        Error::InvalidValue(format!("SignatureValue is {m}"))
    })?;
    let valid = ctx.state.kms.pq_verify(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        &message,
        &signature,
    )?;
    typed(VerifyResponse {
        signature_valid: valid,
    })
}
