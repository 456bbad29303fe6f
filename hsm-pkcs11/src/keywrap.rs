//! AES key wrap with padding (RFC 5649) under the root key, by whichever mechanism number the
//! token gives it.
//!
//! Two numbers are in use for the same algorithm, and the wrapped bytes are the same under
//! both, so a sealed blob does not depend on which one made it:
//!
//! * `CKM_AES_KEY_WRAP_PAD` (0x210A): SoftHSM2 implements it as RFC 5649. (PKCS#11 2.40 itself
//!   defines 0x210A as PKCS#7 padding followed by RFC 3394, which would give other bytes; a
//!   token doing that fails the blob length checks instead of sealing silently.)
//! * `CKM_AES_KEY_WRAP_KWP` (0x210B): the PKCS#11 3.0 number for RFC 5649, which kryoptic
//!   offers. cryptoki 0.12 has no `Mechanism` or `MechanismType` for it (its constructor for
//!   raw numbers takes vendor-defined ones only), so wrap and unwrap call the module's own
//!   `C_WrapKey`/`C_UnwrapKey`, on the session and object handles cryptoki hands out, the way
//!   `nested` reads array attributes.
//!
//! A new root key allows exactly the mechanism the token offers (the standard number first);
//! an existing one is used with the mechanism its `CKA_ALLOWED_MECHANISMS` names.

use std::ptr;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, Rv};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::{
    CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CK_ATTRIBUTE, CK_MECHANISM, CK_MECHANISM_TYPE,
    CK_OBJECT_HANDLE, CK_RV, CK_SESSION_HANDLE, CK_ULONG,
};

pub(crate) type WrapKeyFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_MECHANISM,
    CK_OBJECT_HANDLE,
    CK_OBJECT_HANDLE,
    *mut u8,
    *mut CK_ULONG,
) -> CK_RV;
pub(crate) type UnwrapKeyFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_MECHANISM,
    CK_OBJECT_HANDLE,
    *mut u8,
    CK_ULONG,
    *mut CK_ATTRIBUTE,
    CK_ULONG,
    *mut CK_OBJECT_HANDLE,
) -> CK_RV;

/// The RFC 5649 mechanism numbers a root key may allow, the standard one first.
pub(crate) const KEY_WRAP_MECHANISMS: [CK_MECHANISM_TYPE; 2] =
    [CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD];

/// How this token wraps keys under the root key (see the module documentation).
#[derive(Clone, Copy)]
pub(crate) enum KeyWrap {
    /// `CKM_AES_KEY_WRAP_PAD` through cryptoki.
    Pad,
    /// `CKM_AES_KEY_WRAP_KWP` through the module's function pointers. They stay valid: the
    /// module is never unloaded while initialised (`open::load_module`).
    Kwp {
        wrap: WrapKeyFn,
        unwrap: UnwrapKeyFn,
    },
}

impl KeyWrap {
    /// The mechanism number, as `CKA_ALLOWED_MECHANISMS` holds it.
    pub(crate) fn mechanism(self) -> CK_MECHANISM_TYPE {
        match self {
            KeyWrap::Pad => CKM_AES_KEY_WRAP_PAD,
            KeyWrap::Kwp { .. } => CKM_AES_KEY_WRAP_KWP,
        }
    }

    /// Its PKCS#11 name, for logs and the capability table.
    pub fn name(self) -> &'static str {
        match self {
            KeyWrap::Pad => "CKM_AES_KEY_WRAP_PAD",
            KeyWrap::Kwp { .. } => "CKM_AES_KEY_WRAP_KWP",
        }
    }

    /// `C_WrapKey` of `key` under `wrapping`.
    pub(crate) fn wrap(
        self,
        session: &Session,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> Result<Vec<u8>, CryptokiError> {
        let Self::Kwp { wrap, .. } = self else {
            return session.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key);
        };
        let mut mech = kwp_mechanism();
        let call = |buf: *mut u8, len: &mut CK_ULONG, mech: &mut CK_MECHANISM| {
            // SAFETY: handles from this module's cryptoki context; `buf` is NULL (length
            // query) or `*len` writable bytes; `mech` has no parameter.
            let rv = unsafe {
                wrap(
                    session.handle(),
                    mech,
                    wrapping.handle(),
                    key.handle(),
                    buf,
                    len,
                )
            };
            Rv::from(rv).into_result(Function::WrapKey)
        };
        let mut len: CK_ULONG = 0;
        call(ptr::null_mut(), &mut len, &mut mech)?;
        let mut out = vec![0u8; usize::try_from(len).unwrap_or(0).min(MAX_WRAPPED)];
        let mut len = out.len() as CK_ULONG;
        call(out.as_mut_ptr(), &mut len, &mut mech)?;
        out.truncate(usize::try_from(len).unwrap_or(0).min(out.len()));
        Ok(out)
    }

    /// `C_UnwrapKey` of `wrapped` under `unwrapping` into a new object with `template`.
    pub(crate) fn unwrap(
        self,
        session: &Session,
        unwrapping: ObjectHandle,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<ObjectHandle, CryptokiError> {
        let Self::Kwp { unwrap, .. } = self else {
            return session.unwrap_key(&Mechanism::AesKeyWrapPad, unwrapping, wrapped, template);
        };
        let mut mech = kwp_mechanism();
        let mut attrs: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        // C_UnwrapKey takes a non-const pointer; the module only reads it.
        let mut input = wrapped.to_vec();
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: handles from this module's cryptoki context; `attrs` point into `template`,
        // which outlives the call (the module only reads them); `input` is `wrapped.len()`
        // readable bytes; `handle` is one writable handle.
        let rv = unsafe {
            unwrap(
                session.handle(),
                &mut mech,
                unwrapping.handle(),
                input.as_mut_ptr(),
                input.len() as CK_ULONG,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
                &mut handle,
            )
        };
        Rv::from(rv).into_result(Function::UnwrapKey)?;
        // SAFETY: the module just created this object in `session`.
        Ok(unsafe { ObjectHandle::new_from_raw(handle) })
    }
}

/// `CKA_ALLOWED_MECHANISMS = [mechanism]` for a template. A number cryptoki can name goes in
/// as its typed attribute; one it cannot (0x210B) as the same attribute type with the raw
/// `CK_MECHANISM_TYPE` bytes, through cryptoki's `Attribute::VendorDefined` escape hatch, which
/// passes any type and value through unchanged. The token sees the same `CK_ATTRIBUTE` either way.
pub(crate) fn allowed_mechanism(mechanism: CK_MECHANISM_TYPE) -> Attribute {
    match MechanismType::try_from(mechanism) {
        Ok(m) => Attribute::AllowedMechanisms(vec![m]),
        Err(_) => Attribute::VendorDefined((
            AttributeType::AllowedMechanisms,
            mechanism.to_ne_bytes().to_vec(),
        )),
    }
}

/// Upper bound on a wrapped key we accept: an RSA-2048 private key wrapped is under 1.3 KiB.
const MAX_WRAPPED: usize = 16 * 1024;

fn kwp_mechanism() -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP_KWP,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_mechanism_is_the_same_attribute_either_way() {
        for m in KEY_WRAP_MECHANISMS {
            let a = allowed_mechanism(m);
            assert_eq!(a.attribute_type(), AttributeType::AllowedMechanisms);
            let raw = CK_ATTRIBUTE::from(&a);
            assert_eq!(raw.type_, cryptoki_sys::CKA_ALLOWED_MECHANISMS);
            assert_eq!(raw.ulValueLen as usize, size_of::<CK_MECHANISM_TYPE>());
            // SAFETY: pValue points to ulValueLen bytes owned by `a`.
            let value = unsafe { *(raw.pValue as *const CK_MECHANISM_TYPE) };
            assert_eq!(value, m);
        }
    }
}
