//! Asymmetric CMKs: public key export, signing and verification, asymmetric decryption.
//! Private keys stay sealed in the HSM backend; verification needs only the stored public key.

use super::state::Op;
use super::{Caller, Kms};
use crate::error::{Error, Result};
use crate::pubkey::{self, DecryptScheme, SignScheme};
use crate::store::KeyRecord;
use keyward_shared::Algorithm;
use zeroize::Zeroizing;

pub const MAX_SIGN_MESSAGE: usize = 4096;
/// The DIGEST length of the reference (§5.7): a SHA-256 or SM3 digest, for every key.
pub const DIGEST_LEN: usize = 32;
/// A SHA-384 digest, which a P-384 key also takes as a DIGEST (a Keyward extension: the
/// reference's 32 bytes cannot carry the 384 bits ECDSA over P-384 reads, so a caller that
/// hashes with SHA-384, as TLS and X.509 do for P-384 keys, needs it).
pub const P384_DIGEST_LEN: usize = 48;
pub const MAX_SM2_CIPHERTEXT: usize = 256;

/// The signature algorithm names of the API, per key algorithm. P-384 has no name in the SDK:
/// Keyward calls it `ECC_P384_R1`, after `ECC_P256_R1`. Like the others it hashes RAW messages
/// with SHA-256 (the reference's rule, kept so that RAW signatures made so far still verify
/// with SHA-256); as a DIGEST it takes a 32-byte digest or a 48-byte SHA-384 digest.
pub fn sign_scheme(alg: Algorithm, name: &str) -> Result<SignScheme> {
    Ok(match (alg, name) {
        (Algorithm::Rsa2048, "RSA_PKCS1_SHA_256") => SignScheme::RsaPkcs1Sha256,
        (Algorithm::Rsa2048, "RSA_PSS_SHA_256") => SignScheme::RsaPssSha256,
        (Algorithm::EccP256, "ECC_P256_R1") => SignScheme::Ecdsa,
        (Algorithm::EccP384, "ECC_P384_R1") => SignScheme::Ecdsa,
        (Algorithm::Sm2, "SM2DSA") => SignScheme::Sm2,
        _ => {
            return Err(Error::InvalidValue(format!(
                "Algorithm `{name}` does not apply to a {} key",
                alg.api_name()
            )))
        }
    })
}

/// The signature algorithms a key of `alg` offers (for ListAlgorithms and error messages).
pub fn sign_algorithm_names(alg: Algorithm) -> &'static [&'static str] {
    match alg {
        Algorithm::Rsa2048 => &["RSA_PSS_SHA_256", "RSA_PKCS1_SHA_256"],
        Algorithm::EccP256 => &["ECC_P256_R1"],
        Algorithm::EccP384 => &["ECC_P384_R1"],
        Algorithm::Sm2 => &["SM2DSA"],
        _ => &[],
    }
}

pub fn rsa_decrypt_scheme(name: &str) -> Result<DecryptScheme> {
    Ok(match name {
        "RSAES_PKCS1_V1_5" => DecryptScheme::RsaPkcs1v15,
        "RSAES_OAEP_SHA_1" => DecryptScheme::RsaOaepSha1,
        "RSAES_OAEP_SHA_256" => DecryptScheme::RsaOaepSha256,
        other => {
            return Err(Error::InvalidValue(format!(
                "Algorithm must be RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256, not `{other}`"
            )))
        }
    })
}

fn require_usage(k: &KeyRecord, prefix: &str, what: &str) -> Result<()> {
    if !k.key_usage.starts_with(prefix) {
        return Err(Error::Unsupported(format!(
            "CMK {} has KeyUsage {}, which does not allow {what}",
            k.key_id, k.key_usage
        )));
    }
    Ok(())
}

/// The DIGEST lengths a key of `alg` takes.
fn digest_lens(alg: Algorithm) -> &'static [usize] {
    match alg {
        Algorithm::EccP384 => &[DIGEST_LEN, P384_DIGEST_LEN],
        _ => &[DIGEST_LEN],
    }
}

fn check_message(alg: Algorithm, message: &[u8], is_digest: bool) -> Result<()> {
    if is_digest && !digest_lens(alg).contains(&message.len()) {
        let want = match alg {
            Algorithm::EccP384 => {
                format!("{DIGEST_LEN} or {P384_DIGEST_LEN} bytes (SHA-384) for a P-384 key")
            }
            _ => format!("exactly {DIGEST_LEN} bytes"),
        };
        return Err(Error::InvalidValue(format!(
            "a DIGEST Message must be {want}, not {}",
            message.len()
        )));
    }
    if !is_digest && (message.is_empty() || message.len() > MAX_SIGN_MESSAGE) {
        return Err(Error::InvalidValue(format!(
            "a RAW Message must be 1 to {MAX_SIGN_MESSAGE} bytes"
        )));
    }
    Ok(())
}

impl Kms {
    /// The key's newest version (asymmetric keys have exactly one).
    pub(super) fn asymmetric_key(
        &self,
        caller: &Caller,
        key_id: &str,
        op: Op,
    ) -> Result<(KeyRecord, std::sync::Arc<crate::store::KeyVersion>)> {
        let k = self.describe_key(caller, key_id)?;
        if k.algorithm.is_symmetric() {
            return Err(Error::Unsupported(format!(
                "CMK {} is a symmetric key; {op:?} needs an asymmetric key",
                k.key_id
            )));
        }
        self.gate(op, &k)?;
        let v = self.version(caller, &k, k.current_version)?;
        Ok((k, v))
    }

    /// GetPublicKey: DER SubjectPublicKeyInfo.
    pub fn public_key(&self, caller: &Caller, key_id: &str) -> Result<Vec<u8>> {
        let (_, v) = self.asymmetric_key(caller, key_id, Op::GetPublicKey)?;
        Ok(v.public_key.clone())
    }

    pub fn sign(
        &self,
        caller: &Caller,
        key_id: &str,
        algorithm: &str,
        message: &[u8],
        is_digest: bool,
    ) -> Result<Vec<u8>> {
        let (k, v) = self.asymmetric_key(caller, key_id, Op::Sign)?;
        require_usage(&k, "ASYMMETRIC_SIGN_VERIFY", "signing")?;
        let scheme = sign_scheme(k.algorithm, algorithm)?;
        check_message(k.algorithm, message, is_digest)?;
        self.hsm
            .sign(k.algorithm, &v.sealed, scheme, message, is_digest)
    }

    pub fn verify(
        &self,
        caller: &Caller,
        key_id: &str,
        algorithm: &str,
        message: &[u8],
        is_digest: bool,
        signature: &[u8],
    ) -> Result<bool> {
        let (k, v) = self.asymmetric_key(caller, key_id, Op::Verify)?;
        require_usage(&k, "ASYMMETRIC_SIGN_VERIFY", "verification")?;
        let scheme = sign_scheme(k.algorithm, algorithm)?;
        check_message(k.algorithm, message, is_digest)?;
        pubkey::verify(
            k.algorithm,
            &v.public_key,
            scheme,
            message,
            is_digest,
            signature,
        )
    }

    /// AsymmetricRsaDecrypt / AsymmetricSm2Decrypt.
    pub fn asymmetric_decrypt(
        &self,
        caller: &Caller,
        key_id: &str,
        scheme: DecryptScheme,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (k, v) = self.asymmetric_key(caller, key_id, Op::AsymmetricDecrypt)?;
        let (usage, alg) = match scheme {
            DecryptScheme::Sm2Der => ("ASYMMETRIC_DECRYPT_SM2", Algorithm::Sm2),
            _ => ("ASYMMETRIC_DECRYPT_RSA_2048", Algorithm::Rsa2048),
        };
        if k.key_usage != usage {
            return Err(Error::Unsupported(format!(
                "CMK {} has KeyUsage {}; this operation needs {usage}",
                k.key_id, k.key_usage
            )));
        }
        if scheme == DecryptScheme::Sm2Der && ciphertext.len() > MAX_SM2_CIPHERTEXT {
            return Err(Error::InvalidCiphertext(format!(
                "an SM2 Ciphertext is at most {MAX_SM2_CIPHERTEXT} bytes"
            )));
        }
        if ciphertext.is_empty() {
            return Err(Error::InvalidCiphertext("Ciphertext is empty".into()));
        }
        self.hsm.asym_decrypt(alg, &v.sealed, scheme, ciphertext)
    }

    /// Whether this backend can create keys of `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        // Post-quantum keys run in the host on every backend (kms::pq).
        alg.is_post_quantum() || self.hsm.supports(alg)
    }
}
