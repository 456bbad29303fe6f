//! Key and mechanism kinds: what a sealed asymmetric key is ([`AsymKind`]) and which
//! operation a caller asks for ([`SignMechanism`], [`RsaDecryptMechanism`]), with the
//! DER/OID and cryptoki details that belong to each kind.
//!
//! This module is the bottom of the crate's import graph: it imports nothing from sibling
//! modules, not even `error` (which itself needs [`AsymKind`] for `Error::WrongKeyKind`).
//! That is why [`AsymKind::ec_params_der`] returns `der::Error` rather than the crate's
//! `Error`; callers map it with `error::der_error`.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::KeyType;
use der::asn1::ObjectIdentifier;
use der::Encode;

/// RSA modulus size in bytes for [`AsymKind::Rsa2048`].
pub(crate) const RSA2048_LEN: usize = 256;

const OID_PRIME256V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Kind of an asymmetric key generated in the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsymKind {
    /// RSA, 2048-bit modulus, public exponent 65537.
    Rsa2048,
    /// ECDSA on NIST P-256 (prime256v1).
    EcP256,
    /// ECDSA on NIST P-384 (secp384r1).
    EcP384,
}

impl AsymKind {
    pub(crate) const ALL: [AsymKind; 3] = [AsymKind::Rsa2048, AsymKind::EcP256, AsymKind::EcP384];

    pub(crate) fn byte(self) -> u8 {
        match self {
            AsymKind::Rsa2048 => 0x01,
            AsymKind::EcP256 => 0x02,
            AsymKind::EcP384 => 0x03,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        AsymKind::ALL.into_iter().find(|k| k.byte() == b)
    }

    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, AsymKind::Rsa2048)
    }

    pub(crate) fn key_type(self) -> KeyType {
        if self.is_rsa() {
            KeyType::RSA
        } else {
            KeyType::EC
        }
    }

    /// Key size in bits (modulus for RSA, field for EC), as in `CK_MECHANISM_INFO`.
    pub(crate) fn bits(self) -> u64 {
        match self {
            AsymKind::Rsa2048 => 2048,
            AsymKind::EcP256 => 256,
            AsymKind::EcP384 => 384,
        }
    }

    pub(crate) fn keygen_mechanism(self) -> Mechanism<'static> {
        if self.is_rsa() {
            Mechanism::RsaPkcsKeyPairGen
        } else {
            Mechanism::EccKeyPairGen
        }
    }

    /// `CKA_EC_PARAMS`: the DER-encoded named-curve OID (`None` for RSA).
    ///
    /// Returns `der::Error` (see the module docs for why); callers map it with
    /// `error::der_error`.
    pub(crate) fn ec_params_der(self) -> Result<Option<Vec<u8>>, der::Error> {
        let oid = match self {
            AsymKind::Rsa2048 => return Ok(None),
            AsymKind::EcP256 => OID_PRIME256V1,
            AsymKind::EcP384 => OID_SECP384R1,
        };
        oid.to_der().map(Some)
    }

    /// Length in bytes of one ECDSA scalar (r or s) on this curve.
    pub(crate) fn ec_scalar_len(self) -> usize {
        match self {
            AsymKind::Rsa2048 => 0,
            AsymKind::EcP256 => 32,
            AsymKind::EcP384 => 48,
        }
    }
}

/// Signature mechanisms for [`Pkcs11Hsm::sign`](crate::Pkcs11Hsm::sign). The caller always
/// passes a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMechanism {
    /// `digest` is a 32-byte SHA-256 digest; PKCS#1 v1.5 (CKM_RSA_PKCS over DigestInfo(SHA-256) || digest).
    RsaPkcs1Sha256,
    /// `digest` is a 32-byte SHA-256 digest; RSASSA-PSS, MGF1-SHA-256, salt length 32.
    RsaPssSha256,
    /// `digest` is the (already hashed) message digest; CKM_ECDSA; the result is DER-encoded
    /// ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }), converted from the token's r||s.
    Ecdsa,
}

impl SignMechanism {
    pub(crate) fn name(self) -> &'static str {
        match self {
            SignMechanism::RsaPkcs1Sha256 => "RSA PKCS#1 v1.5 / SHA-256",
            SignMechanism::RsaPssSha256 => "RSA-PSS / SHA-256",
            SignMechanism::Ecdsa => "ECDSA",
        }
    }

    pub(crate) fn wants_rsa(self) -> bool {
        !matches!(self, SignMechanism::Ecdsa)
    }
}

/// Padding for [`Pkcs11Hsm::rsa_decrypt`](crate::Pkcs11Hsm::rsa_decrypt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaDecryptMechanism {
    /// RSAES-PKCS1-v1_5 (`CKM_RSA_PKCS`).
    Pkcs1v15,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label.
    OaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256, empty label.
    OaepSha256,
}

impl RsaDecryptMechanism {
    pub(crate) fn mechanism(self) -> Mechanism<'static> {
        let oaep = |hash, mgf| {
            Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
        };
        match self {
            RsaDecryptMechanism::Pkcs1v15 => Mechanism::RsaPkcs,
            RsaDecryptMechanism::OaepSha1 => oaep(MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            RsaDecryptMechanism::OaepSha256 => {
                oaep(MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_params_are_named_curve_oids() {
        assert_eq!(
            AsymKind::EcP256.ec_params_der().unwrap().unwrap(),
            [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]
        );
        assert_eq!(
            AsymKind::EcP384.ec_params_der().unwrap().unwrap(),
            [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22]
        );
        assert!(AsymKind::Rsa2048.ec_params_der().unwrap().is_none());
    }

    #[test]
    fn kind_bytes_round_trip() {
        for k in AsymKind::ALL {
            assert_eq!(AsymKind::from_byte(k.byte()), Some(k));
        }
        assert_eq!(AsymKind::from_byte(0), None);
    }
}
