//! KMS (2019-01-18) cryptographic actions: Encrypt, Decrypt, ReEncrypt, data keys, random
//! bytes, asymmetric keys and BYOK. Requests and responses are typed; every field that
//! carries plaintext or key material is a `Zeroizing` string, wiped when the response is
//! dropped (its serialized copy is wiped by `envelope::success`).

use super::kms_actions::{check_tags, no_hsm_cluster, KeyIdRequest};
use super::params::{base64_decode, base64_encode, opt_u64, parse, required, typed};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use crate::kms;
use crate::store::Tag;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

// ---------------------------------------------------------------- responses

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptResponse {
    ciphertext_blob: String,
    key_id: String,
}

/// Decrypt, AsymmetricRsaDecrypt, AsymmetricSm2Decrypt: `Plaintext` is base64 of the
/// plaintext, or of its encryption to the caller's `EncryptionPublicKey`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptResponse {
    key_id: String,
    plaintext: Zeroizing<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateDataKeyResponse {
    key_id: String,
    plaintext: Zeroizing<String>,
    ciphertext_blob: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag_msg: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RandomResponse {
    plaintext: Zeroizing<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptResponse {
    ciphertext_blob: String,
    key_id: String,
    source_key_id: String,
    re_encrypted: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ImportParametersResponse {
    key_id: String,
    import_token: String,
    public_key: String,
    parameters_valid_to: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PublicKeyResponse {
    key_id: String,
    public_key: String,
    public_key_pem: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SignResponse {
    signature: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VerifyResponse {
    signature_valid: bool,
}

// ---------------------------------------------------------------- crypto

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct EncryptRequest {
    key_id: String,
    /// Base64 of the plaintext: wiped when the request is dropped.
    plaintext: Zeroizing<String>,
    #[serde(default)]
    encryption_context: Option<String>,
}

pub(super) fn encrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: EncryptRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    let plaintext = Zeroizing::new(base64_decode(&req.plaintext, Error::InvalidPlaintext)?);
    if plaintext.is_empty() || plaintext.len() > kms::MAX_PLAINTEXT_BYTES {
        return Err(Error::InvalidPlaintext(format!(
            "Plaintext must decode to 1 to {} bytes",
            kms::MAX_PLAINTEXT_BYTES
        )));
    }
    let (blob, key_id) = ctx.state.kms.encrypt(
        &ctx.caller,
        key_id,
        &plaintext,
        req.encryption_context.as_deref(),
    )?;
    typed(EncryptResponse {
        ciphertext_blob: base64_encode(&blob),
        key_id,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: String,
    #[serde(default)]
    encryption_context: Option<String>,
    #[serde(default)]
    encryption_public_key: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
}

/// SSM's undocumented EncryptionPublicKey fields are refused rather than guessed at.
pub(super) fn no_public_key_rewrap(key: &Option<String>, alg: &Option<String>) -> Result<()> {
    if key.as_deref().is_some_and(|k| !k.is_empty())
        || alg.as_deref().is_some_and(|a| !a.is_empty())
    {
        return Err(Error::Unsupported(
            "EncryptionPublicKey is not supported for this action".into(),
        ));
    }
    Ok(())
}

/// The `Plaintext` field: base64 of the plaintext, or — when the caller gave
/// `EncryptionPublicKey` — base64 of the plaintext encrypted to that key with
/// `EncryptionAlgorithm` (default `SM2`, C1C3C2), so it never travels in the clear.
pub(super) fn deliver_plaintext(
    plaintext: &[u8],
    public_key: &Option<String>,
    algorithm: &Option<String>,
) -> Result<Zeroizing<String>> {
    match public_key.as_deref().filter(|k| !k.is_empty()) {
        None => {
            if algorithm.as_deref().is_some_and(|a| !a.is_empty()) {
                return Err(Error::MissingParameter(
                    "EncryptionAlgorithm needs EncryptionPublicKey".into(),
                ));
            }
            Ok(Zeroizing::new(base64_encode(plaintext)))
        }
        Some(pem) => {
            let wrapped = crate::pubkey::encrypt_to_public_key(
                pem,
                algorithm.as_deref().unwrap_or(""),
                plaintext,
            )?;
            Ok(Zeroizing::new(base64_encode(&wrapped)))
        }
    }
}

pub(super) fn decrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: DecryptRequest = parse(body)?;
    let blob = base64_decode(
        required("CiphertextBlob", &req.ciphertext_blob)?,
        Error::InvalidCiphertext,
    )?;
    let (key_id, plaintext) =
        ctx.state
            .kms
            .decrypt(&ctx.caller, &blob, req.encryption_context.as_deref())?;
    let encoded = deliver_plaintext(
        &plaintext,
        &req.encryption_public_key,
        &req.encryption_algorithm,
    )?;
    typed(DecryptResponse {
        key_id,
        plaintext: encoded,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GenerateDataKeyRequest {
    key_id: String,
    #[serde(default)]
    key_spec: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    number_of_bytes: Option<u64>,
    #[serde(default)]
    encryption_context: Option<String>,
    #[serde(default)]
    encryption_public_key: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    is_hosted_by_kms: Option<u64>,
    #[serde(default)]
    data_key_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
}

pub const MAX_DATA_KEY_BYTES: u64 = 1024;

pub(super) fn generate_data_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GenerateDataKeyRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    no_hsm_cluster(&req.hsm_cluster_id)?;
    let hosted = match req.is_hosted_by_kms.unwrap_or(0) {
        0 => false,
        1 => true,
        v => {
            return Err(Error::InvalidValue(format!(
                "IsHostedByKms must be 0 or 1, not {v}"
            )))
        }
    };
    let tags = req.tags.unwrap_or_default();
    let name = req.data_key_name.unwrap_or_default();
    if hosted {
        if name.is_empty() {
            return Err(Error::MissingParameter(
                "DataKeyName is required when IsHostedByKms is 1".into(),
            ));
        }
        crate::kms::data_keys::check_name(&name)?;
        check_tags(&tags)?;
    }
    // NumberOfBytes wins when both are given.
    let len = match (
        req.number_of_bytes,
        req.key_spec.as_deref().filter(|s| !s.is_empty()),
    ) {
        (Some(n), _) if (1..=MAX_DATA_KEY_BYTES).contains(&n) => n as usize,
        (Some(n), _) => {
            return Err(Error::InvalidValue(format!(
                "NumberOfBytes must be 1 to {MAX_DATA_KEY_BYTES}, not {n}"
            )))
        }
        (None, Some("AES_128")) => 16,
        (None, Some("AES_256")) => 32,
        (None, Some(other)) => {
            return Err(Error::InvalidValue(format!(
                "KeySpec must be AES_128 or AES_256, not `{other}`"
            )))
        }
        (None, None) => {
            return Err(Error::MissingParameter(
                "one of KeySpec or NumberOfBytes is required".into(),
            ))
        }
    };
    let (plaintext, blob, key_id) = ctx.state.kms.generate_data_key(
        &ctx.caller,
        key_id,
        len,
        req.encryption_context.as_deref(),
    )?;
    let encoded = deliver_plaintext(
        &plaintext,
        &req.encryption_public_key,
        &req.encryption_algorithm,
    )?;
    let mut response = GenerateDataKeyResponse {
        key_id,
        plaintext: encoded,
        ciphertext_blob: base64_encode(&blob),
        data_key_id: None,
        tag_code: None,
        tag_msg: None,
    };
    if hosted {
        let has_tags = !tags.is_empty();
        let dk = ctx.state.kms.host_data_key(
            &ctx.caller,
            &response.key_id,
            &plaintext,
            crate::kms::data_keys::NewDataKey {
                name: &name,
                description: req.description.as_deref().unwrap_or(""),
                tags,
                origin: crate::kms::ORIGIN_KMS,
            },
        )?;
        response.data_key_id = Some(dk.data_key_id);
        if has_tags {
            (response.tag_code, response.tag_msg) = (Some(0), Some(String::new()));
        }
    }
    typed(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GenerateRandomRequest {
    #[serde(deserialize_with = "opt_u64")]
    number_of_bytes: Option<u64>,
}

pub(super) fn generate_random(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GenerateRandomRequest = parse(body)?;
    let n = req
        .number_of_bytes
        .ok_or_else(|| Error::MissingParameter("NumberOfBytes is required".into()))?;
    if !(1..=1024).contains(&n) {
        return Err(Error::InvalidValue(format!(
            "NumberOfBytes must be 1 to 1024, not {n}"
        )));
    }
    let bytes = ctx.state.kms.random(n as usize)?;
    typed(RandomResponse {
        plaintext: Zeroizing::new(base64_encode(&bytes)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ReEncryptRequest {
    ciphertext_blob: String,
    #[serde(default)]
    destination_key_id: Option<String>,
    #[serde(default)]
    source_encryption_context: Option<String>,
    #[serde(default)]
    destination_encryption_context: Option<String>,
}

pub(super) fn re_encrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ReEncryptRequest = parse(body)?;
    let blob = base64_decode(
        required("CiphertextBlob", &req.ciphertext_blob)?,
        Error::InvalidCiphertext,
    )?;
    if let Some(d) = req.destination_key_id.as_deref().filter(|d| !d.is_empty()) {
        kms::check_key_id(d)?;
    }
    let r = ctx.state.kms.re_encrypt(
        &ctx.caller,
        &blob,
        req.destination_key_id.as_deref(),
        req.source_encryption_context.as_deref(),
        req.destination_encryption_context.as_deref(),
    )?;
    typed(ReEncryptResponse {
        ciphertext_blob: base64_encode(&r.blob),
        key_id: r.key_id,
        source_key_id: r.source_key_id,
        re_encrypted: r.re_encrypted,
    })
}

// ---------------------------------------------------------------- BYOK

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ImportParamsRequest {
    key_id: String,
    wrapping_algorithm: String,
    wrapping_key_spec: String,
}

pub(super) fn get_parameters_for_import(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ImportParamsRequest = parse(body)?;
    let p = ctx.state.kms.import_parameters(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        required("WrappingAlgorithm", &req.wrapping_algorithm)?,
        required("WrappingKeySpec", &req.wrapping_key_spec)?,
    )?;
    typed(ImportParametersResponse {
        key_id: p.key_id,
        import_token: p.token,
        public_key: base64_encode(&p.public_key),
        parameters_valid_to: p.valid_to,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ImportMaterialRequest {
    encrypted_key_material: String,
    import_token: String,
    key_id: String,
    #[serde(default, deserialize_with = "opt_u64")]
    valid_to: Option<u64>,
}

pub(super) fn import_key_material(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ImportMaterialRequest = parse(body)?;
    let encrypted = base64_decode(
        required("EncryptedKeyMaterial", &req.encrypted_key_material)?,
        |m| Error::DecryptMaterial(format!("EncryptedKeyMaterial is {m}")),
    )?;
    ctx.state.kms.import_material(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        &encrypted,
        required("ImportToken", &req.import_token)?,
        req.valid_to,
    )?;
    Ok(Fields::new())
}

pub(super) fn delete_imported_key_material(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    ctx.state
        .kms
        .delete_material(&ctx.caller, required("KeyId", &req.key_id)?)?;
    Ok(Fields::new())
}

// ---------------------------------------------------------------- asymmetric keys

pub(super) fn get_public_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    let der = ctx.state.kms.public_key(&ctx.caller, key_id)?;
    typed(PublicKeyResponse {
        key_id: key_id.to_string(),
        public_key: base64_encode(&der),
        public_key_pem: crate::pubkey::spki_pem(&der),
    })
}

/// `MessageType`: RAW (default) or DIGEST.
fn is_digest(message_type: &Option<String>) -> Result<bool> {
    match message_type.as_deref().unwrap_or("") {
        "" | "RAW" => Ok(false),
        "DIGEST" => Ok(true),
        other => Err(Error::InvalidValue(format!(
            "MessageType must be RAW or DIGEST, not `{other}`"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct SignRequest {
    algorithm: String,
    message: Zeroizing<String>,
    key_id: String,
    #[serde(default)]
    message_type: Option<String>,
}

pub(super) fn sign_by_asymmetric_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: SignRequest = parse(body)?;
    let digest = is_digest(&req.message_type)?;
    let message = Zeroizing::new(base64_decode(required("Message", &req.message)?, |m| {
        Error::InvalidValue(format!("Message is {m}"))
    })?);
    let sig = ctx.state.kms.sign(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        required("Algorithm", &req.algorithm)?,
        &message,
        digest,
    )?;
    typed(SignResponse {
        signature: base64_encode(&sig),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct VerifyRequest {
    key_id: String,
    signature_value: String,
    message: String,
    algorithm: String,
    #[serde(default)]
    message_type: Option<String>,
}

pub(super) fn verify_by_asymmetric_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: VerifyRequest = parse(body)?;
    let digest = is_digest(&req.message_type)?;
    let message = base64_decode(required("Message", &req.message)?, |m| {
        Error::InvalidValue(format!("Message is {m}"))
    })?;
    let signature = base64_decode(required("SignatureValue", &req.signature_value)?, |m| {
        Error::InvalidValue(format!("SignatureValue is {m}"))
    })?;
    let valid = ctx.state.kms.verify(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        required("Algorithm", &req.algorithm)?,
        &message,
        digest,
        &signature,
    )?;
    typed(VerifyResponse {
        signature_valid: valid,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RsaDecryptRequest {
    key_id: String,
    ciphertext: String,
    algorithm: String,
}

pub(super) fn asymmetric_rsa_decrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: RsaDecryptRequest = parse(body)?;
    let scheme = crate::kms::rsa_decrypt_scheme(required("Algorithm", &req.algorithm)?)?;
    asymmetric_decrypt(ctx, &req.key_id, &req.ciphertext, scheme)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Sm2DecryptRequest {
    key_id: String,
    ciphertext: String,
}

pub(super) fn asymmetric_sm2_decrypt(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: Sm2DecryptRequest = parse(body)?;
    asymmetric_decrypt(
        ctx,
        &req.key_id,
        &req.ciphertext,
        crate::pubkey::DecryptScheme::Sm2Der,
    )
}

fn asymmetric_decrypt(
    ctx: &Ctx<'_>,
    key_id: &str,
    ciphertext: &str,
    scheme: crate::pubkey::DecryptScheme,
) -> Result<Fields> {
    let key_id = required("KeyId", key_id)?;
    let ct = base64_decode(
        required("Ciphertext", ciphertext)?,
        Error::InvalidCiphertext,
    )?;
    let pt = ctx
        .state
        .kms
        .asymmetric_decrypt(&ctx.caller, key_id, scheme, &ct)?;
    typed(DecryptResponse {
        key_id: key_id.to_string(),
        plaintext: Zeroizing::new(base64_encode(&pt)),
    })
}
