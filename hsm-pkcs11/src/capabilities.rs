//! What the token can do with sealed asymmetric keys ([`Capabilities`]), and the checks the
//! operations run against it. How the flags are established is in `probe`.

use crate::error::Error;
use crate::kind::{AsymKind, RsaDecryptMechanism};

/// What this token can do with sealed asymmetric keys, established at
/// [`Pkcs11Hsm::open`](crate::Pkcs11Hsm::open).
///
/// Each flag means the complete path worked once on this token with throw-away keys:
/// generate, wrap under the root key, unwrap with the non-extractable template, and run the
/// mechanism (for decryption: a round trip through the token's public-key encryption).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RSA-2048 key pairs, PKCS#1 v1.5 signing and decryption.
    pub rsa_2048: bool,
    /// ECDSA key pairs on P-256.
    pub ec_p256: bool,
    /// ECDSA key pairs on P-384.
    pub ec_p384: bool,
    /// RSASSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt) with RSA-2048 keys.
    pub rsa_pss: bool,
    /// RSA-OAEP with SHA-1 / MGF1-SHA-1.
    pub rsa_oaep_sha1: bool,
    /// RSA-OAEP with SHA-256 / MGF1-SHA-256.
    pub rsa_oaep_sha256: bool,
}

impl Capabilities {
    fn kind(&self, kind: AsymKind) -> bool {
        match kind {
            AsymKind::Rsa2048 => self.rsa_2048,
            AsymKind::EcP256 => self.ec_p256,
            AsymKind::EcP384 => self.ec_p384,
        }
    }

    pub(crate) fn require_kind(&self, kind: AsymKind) -> Result<(), Error> {
        if self.kind(kind) {
            return Ok(());
        }
        Err(Error::Unsupported(match kind {
            AsymKind::Rsa2048 => "RSA-2048 key pairs are not supported by this token",
            AsymKind::EcP256 => "P-256 key pairs are not supported by this token",
            AsymKind::EcP384 => "P-384 key pairs are not supported by this token",
        }))
    }

    /// `mech` worked in the decryption trial at open (PKCS#1 v1.5 comes with `rsa_2048`).
    pub(crate) fn require_rsa_decrypt(&self, mech: RsaDecryptMechanism) -> Result<(), Error> {
        match mech {
            RsaDecryptMechanism::Pkcs1v15 => Ok(()),
            RsaDecryptMechanism::OaepSha1 if self.rsa_oaep_sha1 => Ok(()),
            RsaDecryptMechanism::OaepSha256 if self.rsa_oaep_sha256 => Ok(()),
            RsaDecryptMechanism::OaepSha1 => Err(Error::Unsupported(
                "RSA-OAEP with SHA-1 is not supported by this token",
            )),
            RsaDecryptMechanism::OaepSha256 => Err(Error::Unsupported(
                "RSA-OAEP with SHA-256 is not supported by this token",
            )),
        }
    }
}
