//! Signing with a sealed private key (RSA PKCS#1 v1.5 / PSS over SHA-256, ECDSA), inside
//! the token. The caller always passes a digest; ECDSA signatures come back as DER.

use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use der::asn1::{SequenceOf, UintRef};
use der::Encode;

use crate::blob::parse_private_blob;
use crate::error::{der_error, Error};
use crate::hsm::Pkcs11Hsm;
use crate::kind::{AsymKind, SignMechanism, RSA2048_LEN};
use crate::unwrap::{unwrap_private_key, with_cached_key};

/// Length of a SHA-256 digest.
pub(crate) const SHA256_LEN: usize = 32;
/// Digest lengths accepted for ECDSA: SHA-256 up to SHA-512 (the token truncates a digest
/// longer than the curve order, as ECDSA prescribes).
const ECDSA_DIGEST_LEN: std::ops::RangeInclusive<usize> = 32..=64;

/// DER of `DigestInfo { AlgorithmIdentifier { id-sha256, NULL }, OCTET STRING (32 bytes) }`
/// without the digest itself (RFC 8017 section 9.2, note 1). PKCS#1 v1.5 signing of a
/// precomputed digest with `CKM_RSA_PKCS` needs it prepended.
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

impl Pkcs11Hsm {
    /// Sign a digest with a sealed private key, inside the token.
    ///
    /// * [`Error::BadSealedKey`]: not a sealed private key, or it does not unwrap.
    /// * [`Error::WrongKeyKind`]: an RSA mechanism with an EC key or vice versa.
    /// * [`Error::BadLength`]: `digest` is not 32 bytes (RSA) or not 32..=64 bytes (ECDSA).
    /// * [`Error::Unsupported`]: the token cannot do this (see [`Pkcs11Hsm::capabilities`]).
    ///
    /// RSA signatures are 256 bytes; ECDSA signatures are DER `ECDSA-Sig-Value`.
    pub fn sign(
        &self,
        sealed_private: &[u8],
        mech: SignMechanism,
        digest: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let (kind, wrapped) = parse_private_blob(sealed_private)?;
        if mech.wants_rsa() != kind.is_rsa() {
            return Err(Error::WrongKeyKind {
                kind,
                mechanism: mech.name(),
            });
        }
        self.caps.require_kind(kind)?;
        let data = sign_input(mech, digest)?;
        if mech == SignMechanism::RsaPssSha256 && !self.caps.rsa_pss {
            return Err(Error::Unsupported("RSA-PSS (SHA-256)"));
        }
        let mechanism = sign_mechanism(mech);
        self.pool.run(|s| {
            let raw = with_cached_key(
                s,
                sealed_private,
                |s| unwrap_private_key(s, kind, wrapped),
                |s, key| s.call("C_SignInit/C_Sign", |s, _| s.sign(&mechanism, key, &data)),
            )?;
            finish_signature(kind, raw)
        })
    }
}

/// Validate the digest and build what the token signs.
pub(crate) fn sign_input(mech: SignMechanism, digest: &[u8]) -> Result<Vec<u8>, Error> {
    match mech {
        SignMechanism::RsaPkcs1Sha256 if digest.len() == SHA256_LEN => {
            let mut data = SHA256_DIGEST_INFO_PREFIX.to_vec();
            data.extend_from_slice(digest);
            Ok(data)
        }
        SignMechanism::RsaPssSha256 if digest.len() == SHA256_LEN => Ok(digest.to_vec()),
        SignMechanism::Ecdsa if ECDSA_DIGEST_LEN.contains(&digest.len()) => Ok(digest.to_vec()),
        _ => Err(Error::BadLength),
    }
}

pub(crate) fn sign_mechanism(mech: SignMechanism) -> Mechanism<'static> {
    match mech {
        SignMechanism::RsaPkcs1Sha256 => Mechanism::RsaPkcs,
        SignMechanism::RsaPssSha256 => Mechanism::RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: (SHA256_LEN as u64).into(),
        }),
        SignMechanism::Ecdsa => Mechanism::Ecdsa,
    }
}

/// Check the token's raw signature and convert ECDSA r||s to DER.
pub(crate) fn finish_signature(kind: AsymKind, raw: Vec<u8>) -> Result<Vec<u8>, Error> {
    if kind.is_rsa() {
        if raw.len() != RSA2048_LEN {
            return Err(Error::TokenOutput(format!(
                "RSA-2048 signature is {} bytes",
                raw.len()
            )));
        }
        return Ok(raw);
    }
    let n = kind.ec_scalar_len();
    if raw.len() != 2 * n {
        return Err(Error::TokenOutput(format!(
            "{kind:?} ECDSA signature is {} bytes, expected r||s of {}",
            raw.len(),
            2 * n
        )));
    }
    ecdsa_raw_to_der(&raw[..n], &raw[n..])
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from big-endian unsigned r and s.
fn ecdsa_raw_to_der(r: &[u8], s: &[u8]) -> Result<Vec<u8>, Error> {
    let mut seq = SequenceOf::<UintRef<'_>, 2>::new();
    // UintRef strips leading zeros and adds the 0x00 sign octet where needed.
    seq.add(UintRef::new(r).map_err(der_error)?)
        .map_err(der_error)?;
    seq.add(UintRef::new(s).map_err(der_error)?)
        .map_err(der_error)?;
    seq.to_der().map_err(der_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_lengths_are_checked() {
        for (mech, ok, bad) in [
            (
                SignMechanism::RsaPkcs1Sha256,
                &[32][..],
                &[0, 31, 33, 48][..],
            ),
            (SignMechanism::RsaPssSha256, &[32], &[0, 31, 33, 64]),
            (SignMechanism::Ecdsa, &[32, 48, 64], &[0, 20, 31, 65]),
        ] {
            for &n in ok {
                assert!(sign_input(mech, &vec![1; n]).is_ok(), "{mech:?} {n}");
            }
            for &n in bad {
                assert!(
                    matches!(sign_input(mech, &vec![1; n]), Err(Error::BadLength)),
                    "{mech:?} {n}"
                );
            }
        }
        let data = sign_input(SignMechanism::RsaPkcs1Sha256, &[7; 32]).unwrap();
        assert_eq!(data.len(), 51);
        assert_eq!(&data[19..], &[7; 32]);
    }

    #[test]
    fn ecdsa_der_conversion() {
        // High bit set in r gets a 0x00 sign octet; leading zeros of s are stripped.
        let r = [0x80u8; 32];
        let mut s = [0u8; 32];
        s[31] = 0x05;
        let der = ecdsa_raw_to_der(&r, &s).unwrap();
        let mut want = vec![0x30, 2 + 33 + 3, 0x02, 33, 0x00];
        want.extend_from_slice(&r);
        want.extend_from_slice(&[0x02, 0x01, 0x05]);
        assert_eq!(der, want);
    }
}
