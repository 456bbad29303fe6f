//! From sealed blob to usable session object: `C_UnwrapKey` under the root key into a
//! sensitive, non-extractable session object, cached per session (LRU keyed by a digest of the
//! blob) so that repeated use of one key costs one unwrap per session.

use cryptoki::error::RvError;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use der::asn1::UintRef;
use sha2::{Digest, Sha256};

use crate::cache::BlobDigest;
use crate::error::Error;
use crate::kind::{AsymKind, RSA2048_LEN};
use crate::pool::SessionGuard;
use crate::templates::{self, ROOT_KEY_LABEL};

/// Run `op` with the unwrapped session-object handle for the AES data key `sealed`,
/// unwrapping (and caching) it if this session has not seen the blob yet.
pub(crate) fn with_data_key<T>(
    s: &mut SessionGuard<'_>,
    sealed: &[u8],
    wrapped: &[u8],
    op: impl FnMut(&mut SessionGuard<'_>, ObjectHandle) -> Result<T, Error>,
) -> Result<T, Error> {
    with_cached_key(s, sealed, |s| unwrap_data_key(s, wrapped), op)
}

/// Run `op` with the session-object handle for `sealed` (any sealed key kind), taken from this
/// session's cache or produced by `unwrap` and then cached. The cache key is SHA-256 of the
/// whole blob, format byte included, so AES and private-key blobs cannot collide.
///
/// If a cached handle turns out to be invalid (private session objects are destroyed when
/// the process logs out), forget it and run once more with a fresh unwrap.
pub(crate) fn with_cached_key<T>(
    s: &mut SessionGuard<'_>,
    sealed: &[u8],
    unwrap: impl FnOnce(&mut SessionGuard<'_>) -> Result<ObjectHandle, Error>,
    op: impl FnMut(&mut SessionGuard<'_>, ObjectHandle) -> Result<T, Error>,
) -> Result<T, Error> {
    with_cached_digest(s, Sha256::digest(sealed).into(), unwrap, op)
}

/// [`with_cached_key`] with an explicit cache key, for session objects made from a blob for a
/// purpose other than the default one (they need other attributes, so they must not share a
/// cache entry with the default object).
///
/// `op` may also be the *unwrapping* key of a C_UnwrapKey, hence
/// CKR_UNWRAPPING_KEY_HANDLE_INVALID among the stale-handle codes.
pub(crate) fn with_cached_digest<T>(
    s: &mut SessionGuard<'_>,
    digest: BlobDigest,
    unwrap: impl FnOnce(&mut SessionGuard<'_>) -> Result<ObjectHandle, Error>,
    mut op: impl FnMut(&mut SessionGuard<'_>, ObjectHandle) -> Result<T, Error>,
) -> Result<T, Error> {
    if let Some(key) = s.cache().get(&digest) {
        match op(s, key) {
            Err(e)
                if matches!(
                    e.rv(),
                    Some(
                        RvError::KeyHandleInvalid
                            | RvError::ObjectHandleInvalid
                            | RvError::UnwrappingKeyHandleInvalid
                    )
                ) =>
            {
                s.cache().remove(&digest);
            }
            other => return other,
        }
    }
    let key = unwrap(s)?;
    for evicted in s.cache().insert(digest, key) {
        // Best effort: if destroying fails the object still dies with its session, and
        // failing the caller's operation over it would be worse.
        let _ = s.call("C_DestroyObject", |s, _| s.destroy_object(evicted));
    }
    op(s, key)
}

/// C_UnwrapKey a sealed data key into a sensitive, non-extractable session object.
fn unwrap_data_key(s: &mut SessionGuard<'_>, wrapped: &[u8]) -> Result<ObjectHandle, Error> {
    let template = templates::unwrapped_data_key_template();
    s.call("C_UnwrapKey", |s, k| k.root.unwrap(s, wrapped, &template))
        .map_err(map_unwrap_error)
}

/// Map a failed C_UnwrapKey of a sealed blob to [`Error::BadSealedKey`] where it means "this
/// blob does not unwrap".
///
/// AES-KWP integrity check failed: tampered, or wrapped under a different root key. The
/// spec'd codes are WRAPPED_KEY_INVALID / *_LEN_RANGE; SoftHSM2 2.6.1 reports an integrity
/// failure as CKR_GENERAL_ERROR instead. The blob length was already validated and the root
/// handle is known-good, so on this path GENERAL_ERROR means "this blob does not unwrap".
fn map_unwrap_error(e: Error) -> Error {
    match e.rv() {
        Some(
            RvError::WrappedKeyInvalid
            | RvError::WrappedKeyLenRange
            | RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::GeneralError,
        ) => Error::BadSealedKey,
        _ => e,
    }
}

/// C_UnwrapKey a sealed private key into a sensitive, non-extractable session object for
/// signing/decryption and check that it is the key the kind byte claims.
pub(crate) fn unwrap_private_key(
    s: &mut SessionGuard<'_>,
    kind: AsymKind,
    wrapped: &[u8],
) -> Result<ObjectHandle, Error> {
    unwrap_private_key_with(
        s,
        kind,
        wrapped,
        templates::unwrapped_private_key_template(kind),
    )
}

/// [`unwrap_private_key`] with the given unwrap template (which must ask for a sensitive,
/// non-extractable object; the root key's unwrap template refuses anything else).
pub(crate) fn unwrap_private_key_with(
    s: &mut SessionGuard<'_>,
    kind: AsymKind,
    wrapped: &[u8],
    template: Vec<Attribute>,
) -> Result<ObjectHandle, Error> {
    let key = s
        .call("C_UnwrapKey", |s, k| k.root.unwrap(s, wrapped, &template))
        .map_err(|e| match e.rv() {
            // SoftHSM2 2.6.1, measured: a blob that passes the AES-KWP check but whose PKCS#8
            // does not decode as the key type from the kind byte (an altered kind byte) gives
            // CKR_FUNCTION_FAILED.
            Some(RvError::FunctionFailed) => Error::BadSealedKey,
            _ => map_unwrap_error(e),
        })?;
    let vetted = s.call("C_GetAttributeValue", |s, _| {
        Ok(vet_unwrapped(s, kind, key))
    });
    match vetted {
        Ok(Ok(())) => Ok(key),
        Ok(Err(e)) | Err(e) => {
            if s.call("C_DestroyObject", |s, _| s.destroy_object(key))
                .is_err()
            {
                s.retire();
            }
            Err(e)
        }
    }
}

/// The unwrapped key matches `kind` and is protected. The outer `Result` of the call that
/// wraps this carries token errors; this one carries our verdict.
pub(crate) fn vet_unwrapped(
    session: &Session,
    kind: AsymKind,
    key: ObjectHandle,
) -> Result<(), Error> {
    let mut types = vec![AttributeType::Sensitive, AttributeType::Extractable];
    types.push(if kind.is_rsa() {
        AttributeType::Modulus
    } else {
        AttributeType::EcParams
    });
    let attrs = session
        .get_attributes(key, &types)
        .map_err(Error::pkcs11("C_GetAttributeValue"))?;
    if !(attrs.contains(&Attribute::Sensitive(true))
        && attrs.contains(&Attribute::Extractable(false)))
    {
        return Err(Error::KeyPolicy {
            label: ROOT_KEY_LABEL,
            reason: format!("unwrapped private key is not sensitive/non-extractable: {attrs:?}"),
        });
    }
    let matches = attrs.iter().any(|a| match a {
        Attribute::Modulus(m) => UintRef::new(m)
            .is_ok_and(|n| n.as_bytes().len() == RSA2048_LEN && n.as_bytes()[0] & 0x80 != 0),
        Attribute::EcParams(p) => kind.ec_params_der().ok().flatten().as_deref() == Some(p),
        _ => false,
    });
    if matches {
        Ok(())
    } else {
        Err(Error::BadSealedKey)
    }
}
