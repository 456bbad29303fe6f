//! The crate's single error type.

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, RvError};

use crate::kind::AsymKind;

/// Everything that can go wrong in this crate.
///
/// Callers that need to react to a specific PKCS#11 return value (for example to tell an
/// operator that the token was removed) can use [`Error::rv`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A PKCS#11 call failed. `function` names the PKCS#11 function (or short sequence of
    /// functions, e.g. `C_EncryptInit/C_Encrypt`) this crate was calling; `source` carries
    /// cryptoki's error, which includes the return value and the exact function that failed.
    // Debug of the cryptoki error ("Pkcs11(TemplateInconsistent, UnwrapKey)") names the return
    // value; its Display is only the long spec prose, which is hard to grep in logs.
    #[error("{function} failed: {source:?}")]
    Pkcs11 {
        /// PKCS#11 function(s) being called.
        function: &'static str,
        /// The underlying cryptoki error.
        #[source]
        source: CryptokiError,
    },

    /// No slot holds a token matching the selection (label, serial, slot; described).
    #[error("no PKCS#11 token with {0}")]
    TokenNotFound(String),

    /// More than one slot holds a token matching the selection, so the choice would be
    /// arbitrary.
    #[error("more than one PKCS#11 token has {0}")]
    AmbiguousToken(String),

    /// A sealed blob has the wrong format byte or length, or the token refused to open it
    /// (tampered, truncated, or sealed under a different root/seal key).
    #[error("sealed key blob is malformed, tampered with, or sealed under another key")]
    BadSealedKey,

    /// AES-GCM tag verification failed: wrong key, nonce or AAD, or the ciphertext was modified.
    #[error("authentication failed (wrong key, nonce or AAD, or modified ciphertext)")]
    AuthenticationFailed,

    /// A length argument is out of range (random length, nonce length, material length).
    #[error("length out of range")]
    BadLength,

    /// The configuration cannot be used (for example `pool_size == 0`).
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// The token cannot do what was asked (key kind or mechanism); see
    /// `Pkcs11Hsm::capabilities`.
    /// The payload names the feature ("RSA-OAEP with SHA-256"), never a whole sentence.
    #[error("{0} is not supported by this token")]
    Unsupported(&'static str),

    /// The mechanism does not fit the sealed key (e.g. ECDSA with an RSA key, or RSA
    /// decryption with an EC key).
    #[error("{mechanism} cannot be used with a {kind:?} key")]
    WrongKeyKind {
        /// Kind of the sealed key that was passed.
        kind: AsymKind,
        /// The operation that was asked for.
        mechanism: &'static str,
    },

    /// The token returned something this crate cannot accept (a malformed public key, a
    /// signature or wrapped key of an impossible size).
    #[error("unexpected output from the token: {0}")]
    TokenOutput(String),

    /// A root or seal key found on the token does not have the attributes this crate requires,
    /// or the token does not enforce them. We refuse to use such a key rather than silently
    /// operating with a weaker hierarchy.
    #[error("token key {label:?} violates the key policy: {reason}")]
    KeyPolicy {
        /// Label of the offending key.
        label: &'static str,
        /// Which check failed.
        reason: String,
    },

    /// A root or seal key is not on the token, and the caller did not allow creating it
    /// (`Pkcs11Config::create_keys` is false because its store already holds keys sealed
    /// under the key that should be there).
    #[error(
        "root key missing or replaced: token key {label:?} is not on the token, but keys were \
         sealed under it; restore the original token (a new key is never created for a store \
         that holds sealed keys)"
    )]
    KeyMissing {
        /// Label of the missing key.
        label: &'static str,
    },
}

impl Error {
    /// The PKCS#11 return value behind this error, if it came from the token.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            Error::Pkcs11 {
                source: CryptokiError::Pkcs11(rv, _),
                ..
            } => Some(*rv),
            _ => None,
        }
    }

    pub(crate) fn pkcs11(function: &'static str) -> impl FnOnce(CryptokiError) -> Error {
        move |source| Error::Pkcs11 { function, source }
    }
}

/// Return value carried by a cryptoki error, if any.
pub(crate) fn rv_of(err: &CryptokiError) -> Option<RvError> {
    match err {
        CryptokiError::Pkcs11(rv, _) => Some(*rv),
        _ => None,
    }
}

/// A DER encoding step failed on data that came from (or is about to go to) the token.
pub(crate) fn der_error(e: der::Error) -> Error {
    Error::TokenOutput(format!("DER encoding failed: {e}"))
}

/// Map a failed GCM decryption to [`Error::AuthenticationFailed`] where it means "the tag did
/// not verify".
///
/// PKCS#11 says CKR_ENCRYPTED_DATA_INVALID (or CKR_ENCRYPTED_DATA_LEN_RANGE for an impossible
/// length). SoftHSM2 2.6.1 instead returns CKR_GENERAL_ERROR from C_Decrypt when OpenSSL's
/// final tag check fails. We accept that only from C_Decrypt itself (not C_DecryptInit), after
/// the key handle, nonce length and minimum ciphertext length were validated, where the tag
/// check is the only thing left that can fail. The cost: a genuine device fault during
/// C_Decrypt on such a token also surfaces as AuthenticationFailed.
pub(crate) fn map_decrypt_error(e: Error) -> Error {
    match &e {
        Error::Pkcs11 {
            source:
                CryptokiError::Pkcs11(RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange, _)
                | CryptokiError::Pkcs11(RvError::GeneralError, Function::Decrypt),
            ..
        } => Error::AuthenticationFailed,
        _ => e,
    }
}
