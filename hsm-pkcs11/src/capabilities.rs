//! What the token can do with sealed asymmetric keys ([`Capabilities`]), and the checks the
//! operations run against it. How the flags are established is in `probe`.

use cryptoki::error::RvError;

use crate::error::Error;
use crate::kind::{AsymKind, RsaDecryptMechanism};

/// What this token can do with sealed asymmetric keys, established at
/// [`Pkcs11Hsm::open`](crate::Pkcs11Hsm::open).
///
/// Each flag means the complete path worked once on this token with throw-away keys:
/// generate, wrap under the root key, unwrap with the non-extractable template, and run the
/// mechanism (for decryption: a round trip through the token's public-key encryption; for
/// unwrapping: a `C_UnwrapKey` of a key encrypted to the token's public key).
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
    /// The token decrypts RSA-OAEP with SHA-1 / MGF1-SHA-1 (`CKM_RSA_PKCS_OAEP`, C_Decrypt).
    pub rsa_oaep_sha1: bool,
    /// The token decrypts RSA-OAEP with SHA-256 / MGF1-SHA-256 (SoftHSM2 2.6.1: no).
    pub rsa_oaep_sha256: bool,
    /// The token unwraps keys encrypted with RSA-OAEP SHA-1 (`CKM_RSA_PKCS_OAEP`,
    /// C_UnwrapKey).
    pub rsa_oaep_sha1_unwrap: bool,
    /// The token unwraps keys encrypted with RSA-OAEP SHA-256 (SoftHSM2 2.6.1: no).
    pub rsa_oaep_sha256_unwrap: bool,
    /// Raw RSA decryption (`CKM_RSA_X_509`): where the token lacks an OAEP variant, the RSA
    /// step runs in the token and the padding is removed on the host
    /// ([`RsaDecryptPath::HostOaepDecoding`]).
    pub rsa_raw: bool,
    /// The token answers an RSA ciphertext that does not decrypt with `CKR_DEVICE_ERROR` and
    /// keeps the session (kryoptic returns that code for every OpenSSL failure, a padding
    /// error included), instead of `CKR_ENCRYPTED_DATA_INVALID` or the like. On such a token
    /// that code from an RSA `C_Decrypt` or `C_UnwrapKey` of a caller's ciphertext means "does
    /// not decrypt", like the others; on any other token it stays a device error.
    pub rsa_refusal_is_device_error: bool,
}

/// Where an RSA decryption (or BYOK unwrap) with a given padding runs on this token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaDecryptPath {
    /// Entirely in the token, with its own mechanism (`CKM_RSA_PKCS`, `CKM_RSA_PKCS_OAEP`).
    Token,
    /// Raw RSA (`CKM_RSA_X_509`) in the token, then EME-OAEP decoding on the host in constant
    /// time. The private key stays in the token; the padded block (the RSA plaintext) passes
    /// through host memory in zeroized buffers. For a BYOK import the decoded material goes
    /// straight back into the token and is sealed there like natively unwrapped material.
    HostOaepDecoding,
}

impl RsaDecryptPath {
    /// Short name for logs: `token` or `host-oaep-decoding`.
    pub fn name(self) -> &'static str {
        match self {
            RsaDecryptPath::Token => "token",
            RsaDecryptPath::HostOaepDecoding => "host-oaep-decoding",
        }
    }
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
            AsymKind::Rsa2048 => "RSA-2048 key pairs",
            AsymKind::EcP256 => "P-256 key pairs",
            AsymKind::EcP384 => "P-384 key pairs",
        }))
    }

    /// How [`Pkcs11Hsm::rsa_decrypt`](crate::Pkcs11Hsm::rsa_decrypt) runs `mech` on this
    /// token, or `None` if it cannot (PKCS#1 v1.5 comes with `rsa_2048` and is never decoded
    /// on the host: a host-side v1.5 check would be one more Bleichenbacher oracle to get
    /// right).
    pub fn decrypt_path(&self, mech: RsaDecryptMechanism) -> Option<RsaDecryptPath> {
        let native = match mech {
            RsaDecryptMechanism::Pkcs1v15 => return self.rsa_2048.then_some(RsaDecryptPath::Token),
            RsaDecryptMechanism::OaepSha1 => self.rsa_oaep_sha1,
            RsaDecryptMechanism::OaepSha256 => self.rsa_oaep_sha256,
        };
        self.oaep_path(native)
    }

    /// How [`Pkcs11Hsm::import_wrapped_aes256`](crate::Pkcs11Hsm::import_wrapped_aes256)
    /// runs `mech` on this token, or `None` if it cannot.
    pub fn import_path(&self, mech: RsaDecryptMechanism) -> Option<RsaDecryptPath> {
        let native = match mech {
            RsaDecryptMechanism::Pkcs1v15 => return self.rsa_2048.then_some(RsaDecryptPath::Token),
            RsaDecryptMechanism::OaepSha1 => self.rsa_oaep_sha1_unwrap,
            RsaDecryptMechanism::OaepSha256 => self.rsa_oaep_sha256_unwrap,
        };
        self.oaep_path(native)
    }

    fn oaep_path(&self, native: bool) -> Option<RsaDecryptPath> {
        if native {
            Some(RsaDecryptPath::Token)
        } else if self.rsa_raw {
            Some(RsaDecryptPath::HostOaepDecoding)
        } else {
            None
        }
    }

    /// Without native OAEP: every OAEP variant decoded on the host (raw RSA permitting).
    /// For tests, so that both paths run on one token.
    pub(crate) fn without_native_oaep(self) -> Self {
        Capabilities {
            rsa_oaep_sha1: false,
            rsa_oaep_sha256: false,
            rsa_oaep_sha1_unwrap: false,
            rsa_oaep_sha256_unwrap: false,
            ..self
        }
    }

    /// `e`, from an RSA `C_Decrypt` or `C_UnwrapKey` of a caller's ciphertext, as
    /// [`Error::AuthenticationFailed`] where this token reports a ciphertext that does not
    /// decrypt with `CKR_DEVICE_ERROR` (see [`Capabilities::rsa_refusal_is_device_error`]).
    pub(crate) fn rsa_refusal(&self, e: Error) -> Error {
        if self.rsa_refusal_is_device_error && e.rv() == Some(RvError::DeviceError) {
            Error::AuthenticationFailed
        } else {
            e
        }
    }

    /// The error for a padding this token can run neither natively nor through raw RSA.
    pub(crate) fn unsupported(mech: RsaDecryptMechanism) -> Error {
        Error::Unsupported(match mech {
            RsaDecryptMechanism::Pkcs1v15 => "RSA PKCS#1 v1.5 decryption",
            RsaDecryptMechanism::OaepSha1 => "RSA-OAEP with SHA-1 (natively or through raw RSA)",
            RsaDecryptMechanism::OaepSha256 => {
                "RSA-OAEP with SHA-256 (natively or through raw RSA)"
            }
        })
    }
}
