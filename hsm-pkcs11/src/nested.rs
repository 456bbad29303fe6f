//! Reading an array-valued attribute (`CKA_UNWRAP_TEMPLATE`) back from the token, values
//! included.
//!
//! cryptoki 0.12 cannot: `AttributeType::try_from` rejects the array attribute types, and
//! `Session::get_attributes` fetches a value in one buffer it allocates itself, so the nested
//! `CK_ATTRIBUTE`s reach the token with `pValue = NULL` and it answers only their types and
//! lengths. PKCS#11 (2.40 §4.1 "array attributes") needs a third call with a buffer per nested
//! value. So we call the module's `C_GetAttributeValue` ourselves, on the session and object
//! handles cryptoki hands out.
//!
//! The function pointer comes from the module's own `C_GetFunctionList`, after loading the
//! module once more with libloading (what cryptoki does too): the dynamic loader returns the
//! instance cryptoki already loaded and initialised, so the handles are valid in it.

use std::ffi::c_void;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use cryptoki::context::Function;
use cryptoki::error::{Error as CryptokiError, Rv};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectHandle};
use cryptoki::session::Session;
use cryptoki_sys::{
    CKF_UNWRAP, CKF_WRAP, CKM_AES_KEY_WRAP_KWP, CKR_OK, CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE,
    CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE, CK_RV,
    CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG, CK_UNAVAILABLE_INFORMATION,
};

use crate::error::Error;

type GetAttributeValue =
    unsafe extern "C" fn(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG) -> CK_RV;

/// Nested attributes read back: type and raw value, in the token's order.
pub(crate) type NestedAttributes = Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>;

/// Upper bounds on what we accept from the token, so a hostile or broken module cannot make
/// us allocate without limit: our templates have 4 entries of at most a few bytes each.
const MAX_NESTED: usize = 64;
const MAX_NESTED_VALUE: usize = 1024;

/// The module's `C_GetAttributeValue`, kept together with the library handle that keeps it
/// mapped.
#[derive(Clone)]
pub(crate) struct AttributeReader {
    get: GetAttributeValue,
    /// The module's key-wrap entry points, for the one mechanism cryptoki 0.12 cannot name
    /// (see [`KeyWrap`]).
    wrap: WrapKeyFn,
    unwrap: UnwrapKeyFn,
    mechanism_info: MechanismInfoFn,
    _library: Arc<cryptoki_sys::Pkcs11>,
}

type WrapKeyFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_MECHANISM,
    CK_OBJECT_HANDLE,
    CK_OBJECT_HANDLE,
    *mut u8,
    *mut CK_ULONG,
) -> CK_RV;
type UnwrapKeyFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    *mut CK_MECHANISM,
    CK_OBJECT_HANDLE,
    *mut u8,
    CK_ULONG,
    *mut CK_ATTRIBUTE,
    CK_ULONG,
    *mut CK_OBJECT_HANDLE,
) -> CK_RV;
type MechanismInfoFn =
    unsafe extern "C" fn(CK_SLOT_ID, CK_MECHANISM_TYPE, *mut CK_MECHANISM_INFO) -> CK_RV;

/// How this token wraps keys under the root key with AES key wrap with padding (RFC 5649).
/// Both give the same bytes for the same key; only the mechanism number differs.
///
/// * `SoftHsmPad`: `CKM_AES_KEY_WRAP_PAD` (0x210A), which SoftHSM2 implements as RFC 5649.
///   (PKCS#11 itself defines 0x210A as PKCS#7 padding followed by RFC 3394.)
/// * `Kwp`: `CKM_AES_KEY_WRAP_KWP` (0x210B), the PKCS#11 3.0 number for RFC 5649, which
///   kryoptic offers. cryptoki 0.12 has no `Mechanism` for it, so it is called through the
///   module's own function pointers, like the array attributes above.
#[derive(Clone, Copy)]
pub(crate) enum KeyWrap {
    SoftHsmPad,
    Kwp {
        wrap: WrapKeyFn,
        unwrap: UnwrapKeyFn,
    },
}

impl KeyWrap {
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
            // SAFETY: handles from this module; `buf` is NULL (length query) or `*len`
            // writable bytes; `mech` has no parameter.
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
            eprintln!("DEBUG raw wrap rv={rv:#x}");
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
        let mut input = wrapped.to_vec();
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: handles from this module; `attrs` point into `template`, which outlives the
        // call (the module only reads them); `input` is `wrapped.len()` readable bytes.
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

/// Upper bound on a wrapped key we accept: an RSA-2048 private key wrapped is under 1.3 KiB.
const MAX_WRAPPED: usize = 16 * 1024;

fn kwp_mechanism() -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP_KWP,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    }
}

impl AttributeReader {
    /// Load `path` (already loaded and initialised through cryptoki) and take its
    /// `C_GetAttributeValue` from its function list.
    pub(crate) fn load(path: &Path) -> Result<Self, Error> {
        // SAFETY: loading a PKCS#11 module runs its initialisers, exactly as cryptoki's own
        // load of the same path did a moment ago; it is the module the operator configured.
        let library = unsafe { cryptoki_sys::Pkcs11::new(path) }
            .map_err(|_| Error::InvalidConfig("cannot load the PKCS#11 module a second time"))?;
        if library.C_GetFunctionList.is_err() {
            return Err(Error::InvalidConfig(
                "the PKCS#11 module has no C_GetFunctionList",
            ));
        }
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: the symbol exists (checked above); C_GetFunctionList writes one pointer to a
        // static function table owned by the module, which stays mapped while `library` lives.
        let rv = unsafe { library.C_GetFunctionList(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(Error::InvalidConfig("C_GetFunctionList failed"));
        }
        // SAFETY: `list` is non-null and points to the module's CK_FUNCTION_LIST (above).
        let get = unsafe { (*list).C_GetAttributeValue }.ok_or(Error::InvalidConfig(
            "the PKCS#11 module has no C_GetAttributeValue",
        ))?;
        // SAFETY: as above.
        let (wrap, unwrap, mechanism_info) = unsafe {
            (
                (*list).C_WrapKey,
                (*list).C_UnwrapKey,
                (*list).C_GetMechanismInfo,
            )
        };
        let (Some(wrap), Some(unwrap), Some(mechanism_info)) = (wrap, unwrap, mechanism_info)
        else {
            return Err(Error::InvalidConfig(
                "the PKCS#11 module has no C_WrapKey, C_UnwrapKey or C_GetMechanismInfo",
            ));
        };
        Ok(AttributeReader {
            get,
            wrap,
            unwrap,
            mechanism_info,
            _library: Arc::new(library),
        })
    }

    /// How the token behind `session` wraps keys with RFC 5649: the standard mechanism if
    /// its slot offers it for wrapping, otherwise SoftHSM2's.
    pub(crate) fn key_wrap(&self, session: &Session) -> KeyWrap {
        let Ok(info) = session.get_session_info() else {
            return KeyWrap::SoftHsmPad;
        };
        let mut mi = CK_MECHANISM_INFO::default();
        // SAFETY: `mi` is one writable CK_MECHANISM_INFO.
        let rv = unsafe {
            (self.mechanism_info)(
                info.slot_id().id() as CK_SLOT_ID,
                CKM_AES_KEY_WRAP_KWP,
                &mut mi,
            )
        };
        eprintln!("DEBUG key_wrap rv={rv:#x} flags={:#x}", mi.flags);
        if rv == CKR_OK && mi.flags & CKF_WRAP != 0 && mi.flags & CKF_UNWRAP != 0 {
            KeyWrap::Kwp {
                wrap: self.wrap,
                unwrap: self.unwrap,
            }
        } else {
            KeyWrap::SoftHsmPad
        }
    }

    /// One C_GetAttributeValue with a single attribute, `Ok(None)` if the object does not
    /// have it.
    fn call(
        &self,
        session: &Session,
        object: ObjectHandle,
        attr: &mut CK_ATTRIBUTE,
    ) -> Result<Option<()>, Error> {
        // SAFETY: the handles come from cryptoki for the same module instance; `attr` is one
        // valid CK_ATTRIBUTE whose pValue is NULL or points to ulValueLen writable bytes (the
        // callers below guarantee it, including for the nested array's own pointers).
        let rv = unsafe { (self.get)(session.handle(), object.handle(), attr, 1) };
        match rv {
            CKR_OK if attr.ulValueLen != CK_UNAVAILABLE_INFORMATION => Ok(Some(())),
            CKR_OK | cryptoki_sys::CKR_ATTRIBUTE_TYPE_INVALID => Ok(None),
            rv => Err(Error::TokenOutput(format!(
                "C_GetAttributeValue of an array attribute failed: CK_RV {rv:#x}"
            ))),
        }
    }

    /// The nested attributes of array attribute `outer` on `object`, with their values, in the
    /// token's order. `Ok(None)`: the object has no such attribute.
    pub(crate) fn read_array(
        &self,
        session: &Session,
        object: ObjectHandle,
        outer: CK_ATTRIBUTE_TYPE,
    ) -> Result<Option<NestedAttributes>, Error> {
        let entry = size_of::<CK_ATTRIBUTE>();
        let bad = |what: &str| Error::TokenOutput(format!("array attribute {outer:#x}: {what}"));
        // 1. Size of the array.
        let mut attr = CK_ATTRIBUTE {
            type_: outer,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        };
        if self.call(session, object, &mut attr)?.is_none() {
            return Ok(None);
        }
        let len = usize::try_from(attr.ulValueLen).map_err(|_| bad("impossible length"))?;
        if len % entry != 0 || len / entry > MAX_NESTED {
            return Err(bad("length is not a small whole number of CK_ATTRIBUTEs"));
        }
        // 2. Types and lengths of the nested attributes (all nested pValue NULL). The nested
        // types are CK_UNAVAILABLE_INFORMATION, meaning "tell me": kryoptic answers
        // CKR_TEMPLATE_INCONSISTENT to any other type it does not hold (0 is CKA_CLASS), while
        // SoftHSM2 overwrites the types whatever they were.
        let mut nested = vec![
            CK_ATTRIBUTE {
                type_: CK_UNAVAILABLE_INFORMATION,
                pValue: ptr::null_mut(),
                ulValueLen: 0,
            };
            len / entry
        ];
        attr.pValue = nested.as_mut_ptr().cast::<c_void>();
        attr.ulValueLen = attr.ulValueLen.min((nested.len() * entry) as CK_ULONG);
        if self.call(session, object, &mut attr)?.is_none() {
            return Err(bad("vanished while being read"));
        }
        // 3. The values, into one buffer per nested attribute.
        let mut values = Vec::with_capacity(nested.len());
        for n in &mut nested {
            let vlen = usize::try_from(n.ulValueLen)
                .ok()
                .filter(|l| *l <= MAX_NESTED_VALUE)
                .ok_or_else(|| bad("nested value length out of range"))?;
            let mut buf = vec![0u8; vlen];
            n.pValue = buf.as_mut_ptr().cast::<c_void>();
            values.push(buf);
        }
        if self.call(session, object, &mut attr)?.is_none() {
            return Err(bad("vanished while being read"));
        }
        nested
            .iter()
            .zip(values)
            .map(|(n, mut v)| {
                let got = usize::try_from(n.ulValueLen)
                    .ok()
                    .filter(|l| *l <= v.len())
                    .ok_or_else(|| bad("nested value longer than its buffer"))?;
                v.truncate(got);
                Ok((n.type_, v))
            })
            .collect::<Result<Vec<_>, Error>>()
            .map(Some)
    }
}
