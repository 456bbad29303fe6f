//! Post-quantum CMKs: ML-KEM-768 (FIPS 203) for PostQuantumCryptoEncrypt/Decrypt and
//! ML-DSA-65 (FIPS 204) for PostQuantumCryptoSign/Verify, with RustCrypto's `ml-kem` and
//! `ml-dsa`.
//!
//! No backend (PKCS#11 tokens, the firmware) runs them, so a key's private half is its FIPS
//! seed (64 bytes for ML-KEM, 32 for ML-DSA), drawn from the HSM's random generator and
//! stored sealed under the system key (AES-GCM inside the HSM, bound to the key id and
//! version); an operation opens the seed into zeroizing host memory for its duration. That is
//! `ProtectionLevel` SOFTWARE, as SM2 keys are on PKCS#11.
//!
//! Ciphertext blob (docs/post-quantum.md), all integers big-endian:
//! `0x51 || key id (16-byte UUID) || version (u32) || algorithm id (u8) || KEM ciphertext length
//! (u16) || KEM ciphertext || nonce (12) || AES-256-GCM ciphertext || tag (16)`; the AES key is
//! the ML-KEM shared secret, the associated data everything before the nonce.

use super::state::Op;
use super::{Caller, Kms};
use crate::error::{Error, Result};
use crate::store::{KeyRecord, KeyVersion};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use keyward_shared::Algorithm;
use ml_dsa::signature::SignatureEncoding;
use ml_dsa::{EncodedSignature, Keypair, MlDsa65, Signature, SigningKey, VerifyingKey};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::pkcs8::{DecodePublicKey, EncodePublicKey};
use ml_kem::{MlKem768, Seed};
use zeroize::Zeroizing;

pub const USAGE_ML_KEM_768: &str = "ASYMMETRIC_DECRYPT_ML_KEM_768";
pub const USAGE_ML_DSA_65: &str = "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65";
/// PostQuantumCryptoEncrypt's and Sign's limit on the decoded input.
pub const MAX_PQ_INPUT: usize = 4096;
const BLOB_FORMAT: u8 = 0x51;
const NONCE_LEN: usize = 12;
const SEED_CONTEXT: &[u8] = b"keyward/pq-seed/v1\0";

type EncapsulationKey = ml_kem::EncapsulationKey<MlKem768>;
type DecapsulationKey = ml_kem::DecapsulationKey<MlKem768>;
type KemCiphertext = ml_kem::Ciphertext<MlKem768>;

/// What a seed is sealed to: its algorithm, key and version.
fn seed_aad(alg: Algorithm, key_id: &str, version: u32) -> Vec<u8> {
    let mut aad = SEED_CONTEXT.to_vec();
    aad.push(alg.id());
    aad.extend_from_slice(key_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// The public key (DER SubjectPublicKeyInfo, with the NIST OIDs) for a seed.
fn public_key(alg: Algorithm, seed: &[u8]) -> Result<Vec<u8>> {
    let der = match alg {
        Algorithm::MlKem768 => {
            let dk = DecapsulationKey::from_seed(kem_seed(seed)?);
            dk.encapsulation_key().to_public_key_der()
        }
        Algorithm::MlDsa65 => signing_key(seed)?.verifying_key().to_public_key_der(),
        other => return Err(Error::Internal(format!("{other:?} is not post-quantum"))),
    };
    der.map(|d| d.as_bytes().to_vec())
        .map_err(|e| Error::Internal(format!("encoding a post-quantum public key: {e}")))
}

fn kem_seed(seed: &[u8]) -> Result<Seed> {
    Seed::try_from(seed).map_err(|_| Error::Internal("an ML-KEM seed is 64 bytes".into()))
}

fn signing_key(seed: &[u8]) -> Result<SigningKey<MlDsa65>> {
    let seed = ml_dsa::Seed::try_from(seed)
        .map_err(|_| Error::Internal("an ML-DSA seed is 32 bytes".into()))?;
    Ok(SigningKey::<MlDsa65>::from_seed(&seed))
}

/// The fixed part of a blob (the AEAD's associated data).
fn header(key_id: &str, version: u32, kem_ct: &[u8]) -> Result<Vec<u8>> {
    let id = uuid::Uuid::parse_str(key_id)
        .map_err(|_| Error::Internal(format!("key id {key_id} is not a UUID")))?;
    let mut h = vec![BLOB_FORMAT];
    h.extend_from_slice(id.as_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.push(Algorithm::MlKem768.id());
    h.extend_from_slice(&(kem_ct.len() as u16).to_be_bytes());
    h.extend_from_slice(kem_ct);
    Ok(h)
}

/// A parsed blob: key id, version, KEM ciphertext, nonce, AEAD ciphertext, header length.
struct ParsedBlob<'a> {
    key_id: String,
    version: u32,
    kem_ct: &'a [u8],
    header: &'a [u8],
    nonce: &'a [u8],
    sealed: &'a [u8],
}

fn parse_blob(blob: &[u8]) -> Result<ParsedBlob<'_>> {
    let bad = || Error::InvalidCiphertext("CiphertextBlob is not a post-quantum ciphertext".into());
    let fixed = 1 + 16 + 4 + 1 + 2;
    if blob.len() < fixed || blob[0] != BLOB_FORMAT || blob[21] != Algorithm::MlKem768.id() {
        return Err(bad());
    }
    let key_id = uuid::Uuid::from_slice(&blob[1..17])
        .map_err(|_| bad())?
        .to_string();
    let version = u32::from_be_bytes(blob[17..21].try_into().map_err(|_| bad())?);
    let ct_len = usize::from(u16::from_be_bytes([blob[22], blob[23]]));
    let header_len = fixed + ct_len;
    if blob.len() < header_len + NONCE_LEN + 16 {
        return Err(bad());
    }
    let (header, rest) = blob.split_at(header_len);
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    Ok(ParsedBlob {
        key_id,
        version,
        kem_ct: &header[fixed..],
        header,
        nonce,
        sealed,
    })
}

/// AES-256-GCM under an ML-KEM shared secret (32 bytes).
fn aead(shared: &[u8]) -> Result<Aes256Gcm> {
    Aes256Gcm::new_from_slice(shared)
        .map_err(|_| Error::Internal("an ML-KEM shared secret is 32 bytes".into()))
}

fn check_input(what: &str, data: &[u8]) -> Result<()> {
    if data.is_empty() || data.len() > MAX_PQ_INPUT {
        return Err(Error::InvalidValue(format!(
            "{what} must be 1 to {MAX_PQ_INPUT} bytes"
        )));
    }
    Ok(())
}

fn require(k: &KeyRecord, usage: &str, action: &str) -> Result<()> {
    if k.key_usage != usage {
        return Err(Error::Unsupported(format!(
            "CMK {} has KeyUsage {}; {action} needs a {usage} key",
            k.key_id, k.key_usage
        )));
    }
    Ok(())
}

impl Kms {
    /// A new post-quantum key pair for `key_id` version `version`: its sealed seed and its
    /// public key (DER SubjectPublicKeyInfo).
    pub(super) fn pq_generate(
        &self,
        alg: Algorithm,
        key_id: &str,
        version: u32,
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let seed = self.hsm.random(alg.key_len())?;
        let public = public_key(alg, &seed)?;
        let sealed = self.system.seal(&seed_aad(alg, key_id, version), &seed)?;
        Ok((sealed, public))
    }

    /// The version's seed, in host memory for one operation.
    fn pq_seed(&self, k: &KeyRecord, v: &KeyVersion) -> Result<Zeroizing<Vec<u8>>> {
        self.system
            .open_sealed(&seed_aad(k.algorithm, &k.key_id, v.version), &v.sealed)
            .map_err(|e| match e {
                Error::DecryptFailed => Error::IntegrityFailure(format!(
                    "the sealed seed of version {} of CMK {}",
                    v.version, k.key_id
                )),
                other => other,
            })
    }

    /// PostQuantumCryptoEncrypt: encapsulates to the key's public half and encrypts under the
    /// shared secret.
    pub fn pq_encrypt(&self, caller: &Caller, key_id: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        check_input("PlainText", plaintext)?;
        // Encryption uses the public key only: gated like GetPublicKey (Enabled keys).
        let (k, v) = self.asymmetric_key(caller, key_id, Op::GetPublicKey)?;
        require(&k, USAGE_ML_KEM_768, "PostQuantumCryptoEncrypt")?;
        let ek = EncapsulationKey::from_public_key_der(&v.public_key)
            .map_err(|e| Error::Internal(format!("stored ML-KEM public key: {e}")))?;
        let (kem_ct, shared) = ek.encapsulate();
        let mut blob = header(&k.key_id, v.version, kem_ct.as_slice())?;
        let nonce = self.hsm.random(NONCE_LEN)?;
        let sealed = aead(shared.as_slice())?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &blob,
                },
            )
            .map_err(|_| Error::Internal("AES-GCM encryption failed".into()))?;
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        caller.trail.key_version(&k.key_id, v.version);
        Ok(blob)
    }

    /// PostQuantumCryptoDecrypt: the blob names its key and version.
    pub fn pq_decrypt(&self, caller: &Caller, blob: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>)> {
        let p = parse_blob(blob)?;
        let k = self.describe_key(caller, &p.key_id)?;
        require(&k, USAGE_ML_KEM_768, "PostQuantumCryptoDecrypt")?;
        self.gate(Op::AsymmetricDecrypt, &k)?;
        let v = self.version(caller, &k, p.version)?;
        let kem_ct = KemCiphertext::try_from(p.kem_ct).map_err(|_| Error::DecryptFailed)?;
        let dk = DecapsulationKey::from_seed(kem_seed(&self.pq_seed(&k, &v)?)?);
        // A tampered KEM ciphertext decapsulates to an unrelated secret (implicit rejection),
        // so it fails below like any other tampering.
        let shared = Zeroizing::new(dk.decapsulate(&kem_ct));
        let plain = aead(shared.as_slice())?
            .decrypt(
                Nonce::from_slice(p.nonce),
                Payload {
                    msg: p.sealed,
                    aad: p.header,
                },
            )
            .map_err(|_| Error::DecryptFailed)?;
        caller.trail.key_version(&k.key_id, v.version);
        Ok((k.key_id, Zeroizing::new(plain)))
    }

    /// PostQuantumCryptoSign: ML-DSA-65 (the deterministic variant, empty context).
    pub fn pq_sign(&self, caller: &Caller, key_id: &str, message: &[u8]) -> Result<Vec<u8>> {
        check_input("Message", message)?;
        let (k, v) = self.asymmetric_key(caller, key_id, Op::Sign)?;
        require(&k, USAGE_ML_DSA_65, "PostQuantumCryptoSign")?;
        let sk = signing_key(&self.pq_seed(&k, &v)?)?;
        let sig = sk
            .expanded_key()
            .sign_deterministic(message, b"")
            .map_err(|_| Error::Internal("ML-DSA signing failed".into()))?;
        Ok(sig.to_bytes().to_vec())
    }

    /// PostQuantumCryptoVerify against the key's public half.
    pub fn pq_verify(
        &self,
        caller: &Caller,
        key_id: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool> {
        check_input("Message", message)?;
        let (k, v) = self.asymmetric_key(caller, key_id, Op::Verify)?;
        require(&k, USAGE_ML_DSA_65, "PostQuantumCryptoVerify")?;
        let vk = VerifyingKey::<MlDsa65>::from_public_key_der(&v.public_key)
            .map_err(|e| Error::Internal(format!("stored ML-DSA public key: {e}")))?;
        let Ok(encoded) = EncodedSignature::<MlDsa65>::try_from(signature) else {
            return Ok(false);
        };
        Ok(Signature::<MlDsa65>::decode(&encoded)
            .is_some_and(|sig| vk.verify_with_context(message, b"", &sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_parse_back_and_refuse_garbage() {
        let id = uuid::Uuid::new_v4().to_string();
        let mut blob = header(&id, 3, &[7u8; 1088]).unwrap();
        blob.extend_from_slice(&[1u8; NONCE_LEN + 20]);
        let p = parse_blob(&blob).unwrap();
        assert_eq!((p.key_id.as_str(), p.version), (id.as_str(), 3));
        assert_eq!(p.kem_ct.len(), 1088);
        assert_eq!(p.sealed.len(), 20);
        for bad in [&blob[..10], &blob[..blob.len() - 21], &[0u8; 40][..]] {
            assert!(matches!(parse_blob(bad), Err(Error::InvalidCiphertext(_))));
        }
    }

    #[test]
    fn public_keys_come_from_seeds() {
        let kem = public_key(Algorithm::MlKem768, &[1u8; 64]).unwrap();
        assert_eq!(kem, public_key(Algorithm::MlKem768, &[1u8; 64]).unwrap());
        assert!(EncapsulationKey::from_public_key_der(&kem).is_ok());
        let dsa = public_key(Algorithm::MlDsa65, &[2u8; 32]).unwrap();
        assert!(VerifyingKey::<MlDsa65>::from_public_key_der(&dsa).is_ok());
        assert!(public_key(Algorithm::MlDsa65, &[2u8; 31]).is_err());
    }
}
