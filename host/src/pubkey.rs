//! Public-key cryptography that needs no HSM: signature verification, SPKI/PEM handling and
//! encryption to a caller's public key (the re-wrapped plaintext of Decrypt and
//! GenerateDataKey), plus the names of the asymmetric schemes every layer shares.
//!
//! All of it is RustCrypto: `rsa`, `p256`, `p384`, `sm2` (SM2DSA with SM3, SM2 encryption in
//! C1C3C2 order with ASN.1 DER encoding).

use crate::error::{Error, Result};
use keyward_shared::Algorithm;

/// The SM2 user id both sides use when none is agreed (GB/T 35276).
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// How a signature is made; the input is a message (RAW) or its digest (DIGEST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScheme {
    RsaPkcs1Sha256,
    RsaPssSha256,
    /// ECDSA over P-256 or P-384, DER signature: RAW messages hashed with SHA-256, a DIGEST
    /// used as given (32 bytes; on P-384 also a 48-byte SHA-384 digest).
    Ecdsa,
    /// SM2DSA with SM3 and the default user id, DER signature.
    Sm2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptScheme {
    RsaPkcs1v15,
    RsaOaepSha1,
    RsaOaepSha256,
    /// SM2 encryption, C1C3C2, ASN.1 DER.
    Sm2Der,
}

/// SHA-256 of `message` unless it is already a digest, which passes as given (its length
/// was checked against the key's algorithm by `kms::asymmetric`).
pub fn sha256_input(message: &[u8], is_digest: bool) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    if is_digest {
        message.to_vec()
    } else {
        Sha256::digest(message).to_vec()
    }
}

fn bad_key(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("stored public key is unusable: {e}"))
}

/// PEM of a SubjectPublicKeyInfo.
pub fn spki_pem(spki_der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki_der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

fn sm2_public(spki_der: &[u8]) -> Result<sm2::PublicKey> {
    use sm2::pkcs8::DecodePublicKey;
    sm2::PublicKey::from_public_key_der(spki_der).map_err(bad_key)
}

/// Verifies a DER (ECDSA, SM2) or raw (RSA) signature with a stored public key. A malformed
/// signature is simply "not valid".
pub fn verify(
    alg: Algorithm,
    spki_der: &[u8],
    scheme: SignScheme,
    message: &[u8],
    is_digest: bool,
    signature: &[u8],
) -> Result<bool> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::hazmat::PrehashVerifier;
    Ok(match (alg, scheme) {
        (Algorithm::Rsa2048, SignScheme::RsaPkcs1Sha256 | SignScheme::RsaPssSha256) => {
            let key = rsa::RsaPublicKey::from_public_key_der(spki_der).map_err(bad_key)?;
            let digest = sha256_input(message, is_digest);
            let padding = match scheme {
                SignScheme::RsaPkcs1Sha256 => {
                    key.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, signature)
                }
                _ => key.verify(rsa::Pss::new::<sha2::Sha256>(), &digest, signature),
            };
            padding.is_ok()
        }
        (Algorithm::EccP256, SignScheme::Ecdsa) => {
            let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(bad_key)?;
            match p256::ecdsa::Signature::from_der(signature) {
                Ok(sig) => key
                    .verify_prehash(&sha256_input(message, is_digest), &sig)
                    .is_ok(),
                Err(_) => false,
            }
        }
        (Algorithm::EccP384, SignScheme::Ecdsa) => {
            let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki_der).map_err(bad_key)?;
            match p384::ecdsa::Signature::from_der(signature) {
                Ok(sig) => key
                    .verify_prehash(&sha256_input(message, is_digest), &sig)
                    .is_ok(),
                Err(_) => false,
            }
        }
        (Algorithm::Sm2, SignScheme::Sm2) => {
            let public = sm2_public(spki_der)?;
            let key = sm2::dsa::VerifyingKey::new(SM2_DEFAULT_ID, public).map_err(bad_key)?;
            let Ok(sig) = sm2::dsa::Signature::from_der(signature) else {
                return Ok(false);
            };
            if is_digest {
                sm2::dsa::signature::hazmat::PrehashVerifier::verify_prehash(&key, message, &sig)
                    .is_ok()
            } else {
                sm2::dsa::signature::Verifier::verify(&key, message, &sig).is_ok()
            }
        }
        _ => {
            return Err(Error::InvalidValue(format!(
                "this algorithm does not apply to a {} key",
                alg.api_name()
            )))
        }
    })
}

/// The DER inside a `PUBLIC KEY` PEM. Lenient about line length and whitespace (clients send
/// 64- or 76-column bodies, with or without a final newline), strict about the label.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
    let start = pem.find(BEGIN)? + BEGIN.len();
    let end = pem[start..].find("-----END PUBLIC KEY-----")? + start;
    let body: String = pem[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Encrypts `plaintext` to a caller's public key (PEM), for the `EncryptionPublicKey` /
/// `EncryptionAlgorithm` fields of Decrypt, GenerateDataKey and GetDataKeyPlaintext: the
/// plaintext then leaves the daemon only encrypted to the caller.
pub fn encrypt_to_public_key(pem: &str, algorithm: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    use rsa::pkcs8::DecodePublicKey;
    let algorithm = if algorithm.is_empty() {
        "SM2"
    } else {
        algorithm
    };
    let bad_key = |e: &dyn std::fmt::Display| {
        Error::InvalidValue(format!(
            "EncryptionPublicKey is not a usable {algorithm} public key: {e}"
        ))
    };
    let der = pem_body(pem).ok_or_else(|| bad_key(&"not a PEM PUBLIC KEY"))?;
    match algorithm {
        "SM2" | "SM2_C1C3C2_ASN1" => {
            let key = <sm2::PublicKey as sm2::pkcs8::DecodePublicKey>::from_public_key_der(&der)
                .map_err(|e| bad_key(&e))?;
            let ek = sm2::pke::EncryptingKey::new(key);
            let mut rng = Sm2Rng;
            let out = if algorithm == "SM2_C1C3C2_ASN1" {
                ek.encrypt_der(&mut rng, plaintext)
            } else {
                ek.encrypt(&mut rng, plaintext)
            };
            out.map_err(|e| Error::Internal(format!("SM2 encryption: {e}")))
        }
        "RSAES_PKCS1_V1_5" | "RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" => {
            let key = rsa::RsaPublicKey::from_public_key_der(&der).map_err(|e| bad_key(&e))?;
            let mut rng = rand_core::OsRng;
            let out = match algorithm {
                "RSAES_PKCS1_V1_5" => key.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, plaintext),
                "RSAES_OAEP_SHA_1" => {
                    key.encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), plaintext)
                }
                _ => key.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), plaintext),
            };
            out.map_err(|e| {
                Error::InvalidValue(format!("cannot encrypt to EncryptionPublicKey: {e}"))
            })
        }
        other => Err(Error::InvalidValue(format!(
            "EncryptionAlgorithm must be SM2, SM2_C1C3C2_ASN1, RSAES_PKCS1_V1_5, RSAES_OAEP_SHA_1 or RSAES_OAEP_SHA_256, not `{other}`"
        ))),
    }
}

/// The `sm2` crate belongs to the newer RustCrypto generation (rand_core 0.10); this adapts
/// the operating system's RNG to it.
struct Sm2Rng;

impl sm2::elliptic_curve::rand_core::TryRng for Sm2Rng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> std::result::Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> std::result::Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Self::Error> {
        self.fill(dst);
        Ok(())
    }
}

impl sm2::elliptic_curve::rand_core::TryCryptoRng for Sm2Rng {}

impl Sm2Rng {
    fn fill(&mut self, dst: &mut [u8]) {
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, dst);
    }
}
