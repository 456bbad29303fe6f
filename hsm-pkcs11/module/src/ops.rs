//! The cryptographic operations of a session (sign, verify, decrypt), key pair generation
//! and random numbers: each one request to the daemon, made with no lock held.

use crate::error::{Error, Result};
use crate::keys::{self, Class, KeyInfo, Kind};
use crate::session::{DecryptOp, DecryptScheme, Input, SignMech, SignOp};
use crate::token::{b64, Token};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cryptoki_sys::*;
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

/// The API returns at most this many random bytes per call.
const RANDOM_CHUNK: usize = 1024;
/// Longer than any hash or DigestInfo a raw signing mechanism takes (SHA-512's is 83).
const MAX_RAW_INPUT: usize = 128;

impl Token {
    // ---- sign / verify ----

    fn key_for(&self, h: CK_OBJECT_HANDLE, want: Class) -> Result<Arc<KeyInfo>> {
        let (key, class) = self
            .object(h)
            .map_err(|_| Error::Ck(CKR_KEY_HANDLE_INVALID))?;
        if class != want {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        Ok(key)
    }

    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: SignMech,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        // Before the handle check: a hidden private key is a login problem, and says so.
        if !verify && !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let key = self.key_for(
            key,
            if verify {
                Class::Public
            } else {
                Class::Private
            },
        )?;
        if !mech.for_kind(key.kind) {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        if !key.sign {
            return Err(Error::Ck(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            if slot.is_some() {
                return Err(Error::Ck(CKR_OPERATION_ACTIVE));
            }
            *slot = Some(SignOp {
                key,
                mech,
                input: match mech.hasher() {
                    Some(hasher) => Input::Hashing(Box::new(hasher)),
                    None => Input::Raw(Vec::new()),
                },
            });
            Ok(())
        })
    }

    /// Adds data to an active sign (or verify) operation.
    pub fn sign_update(&self, h: CK_SESSION_HANDLE, verify: bool, data: &[u8]) -> Result<()> {
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            let op = slot
                .as_mut()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            match &mut op.input {
                Input::Hashing(hasher) => {
                    hasher.update(data);
                    Ok(())
                }
                // Raw mechanisms take a hash or DigestInfo; some applications still feed it
                // in parts. Anything longer than any of those is not a valid input.
                Input::Raw(raw) => {
                    if raw.len() + data.len() > MAX_RAW_INPUT {
                        *slot = None;
                        return Err(Error::Ck(CKR_DATA_LEN_RANGE));
                    }
                    raw.extend_from_slice(data);
                    Ok(())
                }
            }
        })
    }

    /// The length a signature of the active operation will have.
    pub fn sign_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        self.with_session(h, |s| {
            let op = s
                .sign
                .as_ref()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            Ok(op.key.kind.signature_len())
        })
    }

    /// Ends the sign (or verify) operation: its key, mechanism and digest to submit.
    fn finish_input(
        &self,
        h: CK_SESSION_HANDLE,
        verify: bool,
        last: Option<&[u8]>,
    ) -> Result<(Arc<KeyInfo>, SignMech, Result<Vec<u8>>)> {
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            let op = slot
                .take()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            let digest = match op.input {
                Input::Hashing(mut hasher) => {
                    if let Some(d) = last {
                        hasher.update(d);
                    }
                    let hash = (*hasher).finalize();
                    match op.mech {
                        // On P-256 a SHA-384 hash is cut to the order's length, as ECDSA does.
                        SignMech::EcdsaSha384 => keys::ecdsa_digest(op.key.kind, &hash),
                        _ => Ok(hash),
                    }
                }
                Input::Raw(mut raw) => {
                    if let Some(d) = last {
                        raw.extend_from_slice(d);
                    }
                    match op.mech {
                        SignMech::Ecdsa => keys::ecdsa_digest(op.key.kind, &raw),
                        SignMech::RsaPkcs => keys::digest_info_sha256(&raw),
                        SignMech::RsaPss if raw.len() == 32 => Ok(raw),
                        SignMech::RsaPss => Err(Error::Ck(CKR_DATA_LEN_RANGE)),
                        _ => Err(Error::Ck(CKR_GENERAL_ERROR)),
                    }
                }
            };
            Ok((op.key, op.mech, digest))
        })
    }

    /// Signs (ends the operation). `data` is the single-part input, None for C_SignFinal.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: Option<&[u8]>) -> Result<Vec<u8>> {
        let (key, mech, digest) = self.finish_input(h, false, data)?;
        let digest = digest?;
        let pss = matches!(mech, SignMech::RsaPss | SignMech::RsaPssSha256);
        let r = self.client.kms(
            "SignByAsymmetricKey",
            &json!({
                "KeyId": key.key_id,
                "Algorithm": key.kind.rsa_or_ec_sign_name(pss),
                "MessageType": "DIGEST",
                "Message": B64.encode(digest),
            }),
        )?;
        let sig = b64(&r, "Signature", "SignByAsymmetricKey")?;
        match key.kind {
            Kind::Rsa2048 => {
                if sig.len() != 256 {
                    return Err(Error::Transport("RSA signature of the wrong length".into()));
                }
                Ok(sig)
            }
            _ => keys::ecdsa_der_to_raw(key.kind, &sig),
        }
    }

    /// Verifies (ends the operation) through VerifyByAsymmetricKey.
    pub fn verify(&self, h: CK_SESSION_HANDLE, data: Option<&[u8]>, sig: &[u8]) -> Result<()> {
        let (key, mech, digest) = self.finish_input(h, true, data)?;
        let digest = digest?;
        let api_sig = match key.kind {
            Kind::Rsa2048 => {
                if sig.len() != 256 {
                    return Err(Error::Ck(CKR_SIGNATURE_LEN_RANGE));
                }
                sig.to_vec()
            }
            _ => keys::ecdsa_raw_to_der(key.kind, sig)?,
        };
        let pss = matches!(mech, SignMech::RsaPss | SignMech::RsaPssSha256);
        let r = self.client.kms(
            "VerifyByAsymmetricKey",
            &json!({
                "KeyId": key.key_id,
                "Algorithm": key.kind.rsa_or_ec_sign_name(pss),
                "MessageType": "DIGEST",
                "Message": B64.encode(digest),
                "SignatureValue": B64.encode(api_sig),
            }),
        )?;
        match r.get("SignatureValid").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Ck(CKR_SIGNATURE_INVALID)),
            None => Err(Error::Transport(
                "VerifyByAsymmetricKey response lacks SignatureValid".into(),
            )),
        }
    }

    // ---- decrypt ----

    pub fn decrypt_init(
        &self,
        h: CK_SESSION_HANDLE,
        scheme: DecryptScheme,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        if !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let key = self.key_for(key, Class::Private)?;
        if key.kind != Kind::Rsa2048 {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        if key.sign {
            return Err(Error::Ck(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        self.with_session(h, |s| {
            if s.decrypt.is_some() {
                return Err(Error::Ck(CKR_OPERATION_ACTIVE));
            }
            s.decrypt = Some(DecryptOp {
                key,
                scheme,
                result: None,
            });
            Ok(())
        })
    }

    /// Decrypts. With `keep` (a size query or a too-small buffer) the operation stays active
    /// and remembers the plaintext; otherwise it ends.
    pub fn decrypt(
        &self,
        h: CK_SESSION_HANDLE,
        ciphertext: &[u8],
        keep: impl FnOnce(usize) -> bool,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (key, scheme, cached) = self.with_session(h, |s| {
            let op = s
                .decrypt
                .as_mut()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            Ok((op.key.clone(), op.scheme, op.result.clone()))
        })?;
        let plain = match cached {
            Some(p) => p,
            None => {
                if ciphertext.len() != 256 {
                    self.with_session(h, |s| {
                        s.decrypt = None;
                        Ok(())
                    })?;
                    return Err(Error::Ck(CKR_ENCRYPTED_DATA_LEN_RANGE));
                }
                let r = self.client.kms(
                    "AsymmetricRsaDecrypt",
                    &json!({
                        "KeyId": key.key_id,
                        "Algorithm": scheme.api_name(),
                        "Ciphertext": B64.encode(ciphertext),
                    }),
                );
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        self.with_session(h, |s| {
                            s.decrypt = None;
                            Ok(())
                        })?;
                        // A padding failure is the daemon refusing the ciphertext.
                        return Err(match e {
                            Error::Api { ref code, .. }
                                if code.starts_with("InvalidParameter")
                                    || code.starts_with("FailedOperation") =>
                            {
                                Error::Ck(CKR_ENCRYPTED_DATA_INVALID)
                            }
                            other => other,
                        });
                    }
                };
                Zeroizing::new(b64(&r, "Plaintext", "AsymmetricRsaDecrypt")?)
            }
        };
        let stay = keep(plain.len());
        self.with_session(h, |s| {
            if stay {
                if let Some(op) = s.decrypt.as_mut() {
                    op.result = Some(plain.clone());
                }
            } else {
                s.decrypt = None;
            }
            Ok(())
        })?;
        Ok(plain)
    }

    // ---- key generation, random ----

    /// Creates a CMK; returns (public, private) handles.
    pub fn generate(
        &self,
        h: CK_SESSION_HANDLE,
        kind: Kind,
        sign: bool,
        alias: Option<String>,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        if !self.session_rw(h)? {
            return Err(Error::Ck(CKR_SESSION_READ_ONLY));
        }
        if !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let usage = match (kind, sign) {
            (Kind::Rsa2048, true) => "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            (Kind::Rsa2048, false) => "ASYMMETRIC_DECRYPT_RSA_2048",
            (Kind::P256, _) => "ASYMMETRIC_SIGN_VERIFY_ECC",
            (Kind::P384, _) => "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
        };
        let alias = match alias {
            Some(a) => {
                if !valid_alias(&a) {
                    return Err(Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                a
            }
            None => format!("pkcs11-{}", hex::encode(self.random(6)?)),
        };
        let r = self
            .client
            .kms(
                "CreateKey",
                &json!({
                    "Alias": alias,
                    "KeyUsage": usage,
                    "Description": "created through the Keyward PKCS#11 module",
                }),
            )
            .map_err(|e| match e {
                // The alias (from CKA_LABEL) is the only value the application chose: taken
                // or refused.
                Error::Api { ref code, .. } if code.starts_with("InvalidParameter") => {
                    Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID)
                }
                other => other,
            })?;
        let key_id = r
            .get("KeyId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Transport("CreateKey response lacks KeyId".into()))?
            .to_string();
        let spki = self.public_key(&key_id)?;
        let public = keys::parse_spki(&spki, kind)?;
        let key = Arc::new(KeyInfo {
            key_id,
            alias,
            kind,
            sign,
            spki,
            public,
        });
        Ok(self.add_key(key))
    }

    pub fn random(&self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(RANDOM_CHUNK);
            let r = self
                .client
                .kms("GenerateRandom", &json!({ "NumberOfBytes": want }))?;
            let chunk = b64(&r, "Plaintext", "GenerateRandom")?;
            if chunk.len() != want {
                return Err(Error::Transport(
                    "GenerateRandom returned a short answer".into(),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// CreateKey's alias rule: 1-60 of [A-Za-z0-9_-], the first alphanumeric.
fn valid_alias(a: &str) -> bool {
    (1..=60).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && a.as_bytes()[0].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert!(valid_alias("tls-key_1"));
        assert!(!valid_alias("-x"));
        assert!(!valid_alias("a b"));
        assert!(!valid_alias(&"a".repeat(61)));
    }
}
