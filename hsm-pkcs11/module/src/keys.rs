//! What a Keyward asymmetric CMK looks like to PKCS#11: its kind, its public parts decoded
//! from the SubjectPublicKeyInfo GetPublicKey returns, and the conversions between the API's
//! encodings (DER ECDSA signatures, SHA-256 and SHA-384 digests) and PKCS#11's.

use crate::error::{Error, Result};
use cryptoki_sys::*;
use der::{asn1::ObjectIdentifier, Decode, Encode};

/// DER of the named-curve OIDs, as CKA_EC_PARAMS carries them.
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// DigestInfo prefix of SHA-256 (RFC 8017 §9.2 note 1): what CKM_RSA_PKCS signs for it.
pub const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rsa2048,
    P256,
    P384,
}

impl Kind {
    /// The API's signature algorithm name for this kind (all SHA-256 based).
    pub fn rsa_or_ec_sign_name(self, pss: bool) -> &'static str {
        match (self, pss) {
            (Kind::Rsa2048, false) => "RSA_PKCS1_SHA_256",
            (Kind::Rsa2048, true) => "RSA_PSS_SHA_256",
            (Kind::P256, _) => "ECC_P256_R1",
            (Kind::P384, _) => "ECC_P384_R1",
        }
    }

    pub fn key_type(self) -> CK_KEY_TYPE {
        match self {
            Kind::Rsa2048 => CKK_RSA,
            Kind::P256 | Kind::P384 => CKK_EC,
        }
    }

    /// Length of a PKCS#11 signature: the modulus for RSA, r||s for ECDSA.
    pub fn signature_len(self) -> usize {
        match self {
            Kind::Rsa2048 => 256,
            Kind::P256 => 64,
            Kind::P384 => 96,
        }
    }

    pub fn bits(self) -> usize {
        match self {
            Kind::Rsa2048 => 2048,
            Kind::P256 => 256,
            Kind::P384 => 384,
        }
    }
}

/// The kind a KeyUsage names, for the usages PKCS#11 can express. SM2 (no standard PKCS#11
/// mechanism for SM2DSA with its user id) and post-quantum usages are left out.
pub fn kind_of_usage(usage: &str) -> Option<(Kind, bool)> {
    Some(match usage {
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048" => (Kind::Rsa2048, true),
        "ASYMMETRIC_DECRYPT_RSA_2048" => (Kind::Rsa2048, false),
        "ASYMMETRIC_SIGN_VERIFY_ECC" => (Kind::P256, true),
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384" => (Kind::P384, true),
        _ => return None,
    })
}

/// The public parts PKCS#11 attributes expose.
#[derive(Debug, Clone)]
pub enum Public {
    /// Big-endian modulus and public exponent, without leading zeros.
    Rsa { modulus: Vec<u8>, exponent: Vec<u8> },
    /// CKA_EC_PARAMS (named curve OID) and CKA_EC_POINT (DER OCTET STRING of the point).
    Ec { params: Vec<u8>, point: Vec<u8> },
}

fn bad(what: &str) -> Error {
    Error::Transport(format!("GetPublicKey returned {what}"))
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    b[i..].to_vec()
}

/// Decodes a SubjectPublicKeyInfo of the expected kind.
pub fn parse_spki(spki_der: &[u8], kind: Kind) -> Result<Public> {
    let spki = spki::SubjectPublicKeyInfoRef::from_der(spki_der)
        .map_err(|_| bad("a malformed SubjectPublicKeyInfo"))?;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| bad("a public key with unused bits"))?;
    match kind {
        Kind::Rsa2048 => {
            if spki.algorithm.oid != OID_RSA {
                return Err(bad("a non-RSA key for an RSA CMK"));
            }
            let k = pkcs1::RsaPublicKey::from_der(key).map_err(|_| bad("a bad RSA key"))?;
            let modulus = strip_zeros(k.modulus.as_bytes());
            if modulus.len() != 256 {
                return Err(bad("an RSA key that is not 2048 bits"));
            }
            Ok(Public::Rsa {
                modulus,
                exponent: strip_zeros(k.public_exponent.as_bytes()),
            })
        }
        Kind::P256 | Kind::P384 => {
            let curve: ObjectIdentifier = spki
                .algorithm
                .parameters
                .ok_or_else(|| bad("an EC key without a curve"))?
                .decode_as()
                .map_err(|_| bad("an EC key with unnamed curve"))?;
            let (want_oid, params, point_len) = match kind {
                Kind::P256 => (OID_P256, P256_PARAMS, 65),
                _ => (OID_P384, P384_PARAMS, 97),
            };
            if spki.algorithm.oid != OID_EC || curve != want_oid {
                return Err(bad("a key on another curve"));
            }
            if key.len() != point_len || key[0] != 0x04 {
                return Err(bad("an EC point that is not uncompressed"));
            }
            let point = der::asn1::OctetStringRef::new(key)
                .and_then(|o| o.to_der())
                .map_err(|_| bad("an unencodable EC point"))?;
            Ok(Public::Ec {
                params: params.to_vec(),
                point,
            })
        }
    }
}

/// The DIGEST the API signs for CKM_ECDSA input `data` (already a hash). ECDSA uses the
/// leftmost bits of the hash up to the order's length and reads them as an integer, so a
/// shorter hash is the same integer left-padded with zeros, and a longer one is cut to the
/// order's length. The API takes 32 bytes for every key and 48 (SHA-384) for P-384 keys:
/// a hash of up to 32 bytes goes as 32 (what every daemon takes), a longer one on P-384 as
/// its leftmost 48 bytes, left-padded, and on P-256 as its leftmost 32.
pub fn ecdsa_digest(kind: Kind, data: &[u8]) -> Result<Vec<u8>> {
    if data.is_empty() {
        return Err(Error::Ck(CKR_DATA_LEN_RANGE));
    }
    let len = match kind {
        Kind::P384 if data.len() > 32 => 48,
        Kind::P256 | Kind::P384 => 32,
        Kind::Rsa2048 => return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT)),
    };
    let take = &data[..data.len().min(len)];
    let mut d = vec![0u8; len];
    d[len - take.len()..].copy_from_slice(take);
    Ok(d)
}

/// The SHA-256 digest inside a CKM_RSA_PKCS input, which must be a SHA-256 DigestInfo (the
/// only hash the daemon's RSA_PKCS1_SHA_256 signs).
pub fn digest_info_sha256(data: &[u8]) -> Result<Vec<u8>> {
    match data.strip_prefix(SHA256_DIGEST_INFO) {
        Some(d) if d.len() == 32 => Ok(d.to_vec()),
        _ => Err(Error::Ck(CKR_DATA_INVALID)),
    }
}

/// DER ECDSA-Sig-Value (the API's form) to r||s (PKCS#11's).
pub fn ecdsa_der_to_raw(kind: Kind, der_sig: &[u8]) -> Result<Vec<u8>> {
    let bad = || Error::Transport("the daemon returned a malformed ECDSA signature".into());
    Ok(match kind {
        Kind::P256 => p256::ecdsa::Signature::from_der(der_sig)
            .map_err(|_| bad())?
            .to_bytes()
            .to_vec(),
        Kind::P384 => p384::ecdsa::Signature::from_der(der_sig)
            .map_err(|_| bad())?
            .to_bytes()
            .to_vec(),
        Kind::Rsa2048 => return Err(bad()),
    })
}

/// r||s to DER; a wrong length or out-of-range value is an invalid signature.
pub fn ecdsa_raw_to_der(kind: Kind, raw: &[u8]) -> Result<Vec<u8>> {
    if raw.len() != kind.signature_len() {
        return Err(Error::Ck(CKR_SIGNATURE_LEN_RANGE));
    }
    let invalid = || Error::Ck(CKR_SIGNATURE_INVALID);
    Ok(match kind {
        Kind::P256 => p256::ecdsa::Signature::from_slice(raw)
            .map_err(|_| invalid())?
            .to_der()
            .as_bytes()
            .to_vec(),
        Kind::P384 => p384::ecdsa::Signature::from_slice(raw)
            .map_err(|_| invalid())?
            .to_der()
            .as_bytes()
            .to_vec(),
        Kind::Rsa2048 => return Err(invalid()),
    })
}

/// The kind a CKA_EC_PARAMS value names.
pub fn kind_of_ec_params(params: &[u8]) -> Option<Kind> {
    if params == P256_PARAMS {
        Some(Kind::P256)
    } else if params == P384_PARAMS {
        Some(Kind::P384)
    } else {
        None
    }
}

/// One CMK as the module knows it.
pub struct KeyInfo {
    pub key_id: String,
    pub alias: String,
    pub kind: Kind,
    /// A signing key (else an RSA decryption key).
    pub sign: bool,
    pub spki: Vec<u8>,
    pub public: Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    Private,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_inputs() {
        // Shorter hashes keep their integer value; P-256 takes the leftmost 32 bytes, P-384
        // the leftmost 48 (a SHA-384 hash whole, a SHA-512 hash cut).
        let d = ecdsa_digest(Kind::P384, &[1u8; 20]).unwrap();
        assert_eq!(d.len(), 32);
        assert_eq!(&d[..12], &[0u8; 12]);
        assert_eq!(&d[12..], &[1u8; 20]);
        let long: Vec<u8> = (0..64).collect();
        assert_eq!(ecdsa_digest(Kind::P256, &long[..48]).unwrap(), long[..32]);
        assert_eq!(ecdsa_digest(Kind::P384, &long[..48]).unwrap(), long[..48]);
        assert_eq!(ecdsa_digest(Kind::P384, &long).unwrap(), long[..48]);
        let d = ecdsa_digest(Kind::P384, &long[..40]).unwrap();
        assert_eq!((&d[..8], &d[8..]), (&[0u8; 8][..], &long[..40]));
        assert!(ecdsa_digest(Kind::P384, &[]).is_err());
        assert!(ecdsa_digest(Kind::Rsa2048, &long[..32]).is_err());
    }

    #[test]
    fn digest_info() {
        let mut di = SHA256_DIGEST_INFO.to_vec();
        di.extend_from_slice(&[7u8; 32]);
        assert_eq!(digest_info_sha256(&di).unwrap(), [7u8; 32]);
        assert!(digest_info_sha256(&[7u8; 32]).is_err());
        di.push(0);
        assert!(digest_info_sha256(&di).is_err());
    }

    #[test]
    fn signature_round_trip() {
        let mut raw = vec![0x11u8; 64];
        raw[32] = 0x80; // s with the high bit set needs a leading zero in DER
        let der = ecdsa_raw_to_der(Kind::P256, &raw).unwrap();
        assert_eq!(ecdsa_der_to_raw(Kind::P256, &der).unwrap(), raw);
        assert!(matches!(
            ecdsa_raw_to_der(Kind::P256, &raw[..63]),
            Err(Error::Ck(CKR_SIGNATURE_LEN_RANGE))
        ));
    }
}
