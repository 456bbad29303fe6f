//! RSA decryption with a sealed private key, inside the token.
//!
//! # Two paths
//!
//! Which one runs is decided per token and padding at open ([`Capabilities::decrypt_path`]):
//!
//! * [`RsaDecryptPath::Token`]: `C_Decrypt` with the token's own mechanism (`CKM_RSA_PKCS`,
//!   `CKM_RSA_PKCS_OAEP`). Real HSMs take this path for every padding Keyward offers.
//! * [`RsaDecryptPath::HostOaepDecoding`]: for an OAEP variant the token refuses (SoftHSM2
//!   2.6.1 checks `hashAlg == CKM_SHA_1` and `mgf == CKG_MGF1_SHA1` and answers anything else
//!   with `CKR_ARGUMENTS_BAD`, so OAEP-SHA-256 never works there), the RSA step still runs in
//!   the token as raw RSA (`CKM_RSA_X_509`) and `oaep` removes the padding on the host in
//!   constant time. The private key never leaves the token; the padded block passes through
//!   host memory, only in `Zeroizing` buffers.
//!
//! # Decryption is an oracle
//!
//! [`Pkcs11Hsm::rsa_decrypt`] reports a padding failure as [`Error::AuthenticationFailed`]. With
//! PKCS#1 v1.5 that distinction is a Bleichenbacher oracle for whoever can submit ciphertexts;
//! it is inherent to offering v1.5 decryption at all (callers should prefer OAEP and must not
//! reveal the failure reason to untrusted parties in a timing- or content-visible way). For
//! OAEP, both paths give the same single error for every kind of bad ciphertext (tampered,
//! encrypted to another key, out of range), so the error tells nothing about the padding.

use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use zeroize::Zeroizing;

use crate::blob::parse_private_blob;
use crate::capabilities::{Capabilities, RsaDecryptPath};
use crate::error::{map_decrypt_error, Error};
use crate::hsm::Pkcs11Hsm;
use crate::kind::{RsaDecryptMechanism, RSA2048_LEN};
use crate::oaep::{self, OaepHash};
use crate::pool::SessionGuard;
use crate::unwrap::{unwrap_private_key, with_cached_key};

impl Pkcs11Hsm {
    /// Decrypt an RSA ciphertext with a sealed RSA private key, inside the token (for an OAEP
    /// variant the token lacks: raw RSA in the token and the padding removed on the host, see
    /// the module documentation).
    ///
    /// A ciphertext that does not decrypt (bad padding, wrong length, wrong key) is
    /// [`Error::AuthenticationFailed`], never garbage. [`Error::Unsupported`] if the token
    /// can do the padding neither natively nor through raw RSA; [`Error::WrongKeyKind`] for
    /// an EC key.
    pub fn rsa_decrypt(
        &self,
        sealed_private: &[u8],
        mech: RsaDecryptMechanism,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (kind, wrapped) = parse_private_blob(sealed_private)?;
        if !kind.is_rsa() {
            return Err(Error::WrongKeyKind {
                kind,
                mechanism: "RSA decryption",
            });
        }
        self.caps.require_kind(kind)?;
        let path = self.rsa_decrypt_path(mech)?;
        let caps = self.caps;
        // An RSA ciphertext is exactly one modulus long; anything else cannot decrypt.
        if ciphertext.len() != RSA2048_LEN {
            return Err(Error::AuthenticationFailed);
        }
        self.pool.run(|s| {
            with_cached_key(
                s,
                sealed_private,
                |s| unwrap_private_key(s, kind, wrapped),
                |s, key| match path {
                    RsaDecryptPath::Token => {
                        let mechanism = mech.mechanism();
                        s.call("C_DecryptInit/C_Decrypt", |s, _| {
                            s.decrypt(&mechanism, key, ciphertext)
                        })
                        .map(Zeroizing::new)
                        .map_err(|e| caps.rsa_refusal(map_decrypt_error(e)))
                    }
                    RsaDecryptPath::HostOaepDecoding => {
                        host_oaep_decrypt(s, key, mech, ciphertext).map_err(|e| caps.rsa_refusal(e))
                    }
                },
            )
        })
    }

    /// How [`rsa_decrypt`](Pkcs11Hsm::rsa_decrypt) runs `mech` on this token.
    pub fn rsa_decrypt_path(&self, mech: RsaDecryptMechanism) -> Result<RsaDecryptPath, Error> {
        self.effective_caps()
            .decrypt_path(mech)
            .ok_or_else(|| Capabilities::unsupported(mech))
    }

    /// How [`import_wrapped_aes256`](Pkcs11Hsm::import_wrapped_aes256) runs `mech` on this
    /// token.
    pub fn rsa_import_path(&self, mech: RsaDecryptMechanism) -> Result<RsaDecryptPath, Error> {
        self.effective_caps()
            .import_path(mech)
            .ok_or_else(|| Capabilities::unsupported(mech))
    }

    /// Decode every OAEP variant on the host from now on, even where the token does it
    /// natively, so that tests can run both paths on one token. Not for production use:
    /// [`capabilities`](Pkcs11Hsm::capabilities) still reports what the token can do.
    #[doc(hidden)]
    pub fn force_host_oaep_decoding(&mut self) {
        self.force_host_oaep = true;
    }

    fn effective_caps(&self) -> Capabilities {
        if self.force_host_oaep {
            self.caps.without_native_oaep()
        } else {
            self.caps
        }
    }
}

/// Raw RSA (`CKM_RSA_X_509`) in the token with `key` (an unwrapped RSA private key with
/// `CKA_DECRYPT`), then EME-OAEP decoding on the host.
///
/// Every failure that depends on the ciphertext is [`Error::AuthenticationFailed`]: the
/// token's refusal of a ciphertext not below the modulus and a padding failure alike.
pub(crate) fn host_oaep_decrypt(
    s: &mut SessionGuard<'_>,
    key: ObjectHandle,
    mech: RsaDecryptMechanism,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let hash = match mech {
        RsaDecryptMechanism::OaepSha1 => OaepHash::Sha1,
        RsaDecryptMechanism::OaepSha256 => OaepHash::Sha256,
        RsaDecryptMechanism::Pkcs1v15 => {
            return Err(Error::Unsupported(
                "PKCS#1 v1.5 decoding on the host (only OAEP is decoded there)",
            ))
        }
    };
    let block = raw_rsa_decrypt(s, key, ciphertext)?;
    oaep::decode(hash, &block)
}

/// `C_Decrypt(CKM_RSA_X_509)`: the modulus-length RSA plaintext, in a zeroizing buffer.
///
/// PKCS#11 says the output is exactly one modulus long; a token that strips leading zero
/// bytes gets them back (the integer is the same), and a longer output is refused.
pub(crate) fn raw_rsa_decrypt(
    s: &mut SessionGuard<'_>,
    key: ObjectHandle,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let out = s
        .call("C_DecryptInit/C_Decrypt", |s, _| {
            s.decrypt(&Mechanism::RsaX509, key, ciphertext)
                .map(Zeroizing::new)
        })
        .map_err(map_decrypt_error)?;
    left_pad(out, RSA2048_LEN)
}

/// `out` as exactly `len` bytes, zero-padded on the left.
fn left_pad(out: Zeroizing<Vec<u8>>, len: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    if out.len() > len {
        return Err(Error::TokenOutput(format!(
            "raw RSA decryption gave {} bytes, expected at most {len}",
            out.len()
        )));
    }
    if out.len() == len {
        return Ok(out);
    }
    let mut block = Zeroizing::new(vec![0u8; len]);
    block[len - out.len()..].copy_from_slice(&out);
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_raw_outputs_are_left_padded() {
        let padded = left_pad(Zeroizing::new(vec![1, 2]), 4).unwrap();
        assert_eq!(padded.as_slice(), [0, 0, 1, 2]);
        assert_eq!(
            left_pad(Zeroizing::new(vec![9; 4]), 4).unwrap().as_slice(),
            [9; 4]
        );
        assert!(matches!(
            left_pad(Zeroizing::new(vec![9; 5]), 4),
            Err(Error::TokenOutput(_))
        ));
    }
}
