//! RSA decryption with a sealed private key, inside the token.
//!
//! # Decryption is an oracle
//!
//! [`Pkcs11Hsm::rsa_decrypt`] reports a padding failure as [`Error::AuthenticationFailed`]. With
//! PKCS#1 v1.5 that distinction is a Bleichenbacher oracle for whoever can submit ciphertexts;
//! it is inherent to offering v1.5 decryption at all (callers should prefer OAEP and must not
//! reveal the failure reason to untrusted parties in a timing- or content-visible way).

use zeroize::Zeroizing;

use crate::blob::parse_private_blob;
use crate::error::{map_decrypt_error, Error};
use crate::hsm::Pkcs11Hsm;
use crate::kind::{RsaDecryptMechanism, RSA2048_LEN};
use crate::unwrap::{unwrap_private_key, with_cached_key};

impl Pkcs11Hsm {
    /// Decrypt an RSA ciphertext with a sealed RSA private key, inside the token.
    ///
    /// A ciphertext that does not decrypt (bad padding, wrong length, wrong key) is
    /// [`Error::AuthenticationFailed`], never garbage. [`Error::Unsupported`] if the token
    /// cannot do the padding (SoftHSM2 2.6.1: OAEP with SHA-256); [`Error::WrongKeyKind`] for
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
        self.caps.require_rsa_decrypt(mech)?;
        // An RSA ciphertext is exactly one modulus long; anything else cannot decrypt.
        if ciphertext.len() != RSA2048_LEN {
            return Err(Error::AuthenticationFailed);
        }
        let mechanism = mech.mechanism();
        let mut s = self.pool.checkout()?;
        with_cached_key(
            &mut s,
            sealed_private,
            |s| unwrap_private_key(s, kind, wrapped),
            |s, key| {
                s.call("C_DecryptInit/C_Decrypt", |s, _| {
                    s.decrypt(&mechanism, key, ciphertext)
                })
                .map(Zeroizing::new)
                .map_err(map_decrypt_error)
            },
        )
    }
}
