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
//!
//! The same function list serves what cryptoki 0.12 cannot do for mechanism numbers it has no
//! name for (`CKM_AES_KEY_WRAP_KWP`, 0x210B): reading `CKA_ALLOWED_MECHANISMS` as raw numbers,
//! `C_GetMechanismInfo` about such a number, and `C_WrapKey`/`C_UnwrapKey` for
//! [`crate::keywrap`].

use std::ffi::c_void;
use std::path::Path;
use std::ptr;
use std::sync::Arc;

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki_sys::{
    CKF_UNWRAP, CKF_WRAP, CKM_AES_KEY_WRAP_KWP, CKM_AES_KEY_WRAP_PAD, CKR_OK, CK_ATTRIBUTE,
    CK_ATTRIBUTE_TYPE, CK_FUNCTION_LIST, CK_MECHANISM_INFO, CK_MECHANISM_TYPE, CK_OBJECT_HANDLE,
    CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID, CK_ULONG, CK_UNAVAILABLE_INFORMATION,
};

use crate::error::Error;
use crate::keywrap::{KeyWrap, UnwrapKeyFn, WrapKeyFn, KEY_WRAP_MECHANISMS};

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
    /// The module's key-wrap and mechanism-info entry points, for the one mechanism cryptoki
    /// 0.12 cannot name (see [`KeyWrap`]).
    wrap: WrapKeyFn,
    unwrap: UnwrapKeyFn,
    mechanism_info: MechanismInfoFn,
    _library: Arc<cryptoki_sys::Pkcs11>,
}

type MechanismInfoFn =
    unsafe extern "C" fn(CK_SLOT_ID, CK_MECHANISM_TYPE, *mut CK_MECHANISM_INFO) -> CK_RV;

/// Upper bound on the entries of a `CK_ULONG` array attribute (`CKA_ALLOWED_MECHANISMS`).
const MAX_ULONGS: usize = 64;

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

    /// The RFC 5649 key wrap a new root key on the token behind `session` should use: the
    /// first of [`KEY_WRAP_MECHANISMS`] its slot offers for both wrapping and unwrapping
    /// (asked with `C_GetMechanismInfo`, which takes any number, unlike cryptoki's list).
    pub(crate) fn offered_key_wrap(&self, session: &Session) -> Result<Option<KeyWrap>, Error> {
        let slot = session
            .get_session_info()
            .map_err(Error::pkcs11("C_GetSessionInfo"))?
            .slot_id()
            .id() as CK_SLOT_ID;
        for mechanism in KEY_WRAP_MECHANISMS {
            let mut info = CK_MECHANISM_INFO::default();
            // SAFETY: `info` is one writable CK_MECHANISM_INFO; the slot is the session's.
            let rv = unsafe { (self.mechanism_info)(slot, mechanism, &mut info) };
            if rv == CKR_OK && info.flags & CKF_WRAP != 0 && info.flags & CKF_UNWRAP != 0 {
                return Ok(self.key_wrap(mechanism));
            }
        }
        Ok(None)
    }

    /// The key wrap for RFC 5649 mechanism number `mechanism`, `None` for any other number.
    pub(crate) fn key_wrap(&self, mechanism: CK_MECHANISM_TYPE) -> Option<KeyWrap> {
        match mechanism {
            CKM_AES_KEY_WRAP_PAD => Some(KeyWrap::Pad),
            CKM_AES_KEY_WRAP_KWP => Some(KeyWrap::Kwp {
                wrap: self.wrap,
                unwrap: self.unwrap,
            }),
            _ => None,
        }
    }

    /// A `CK_ULONG`-array attribute (`CKA_ALLOWED_MECHANISMS`) of `object`, every number as the
    /// token holds it: cryptoki's reader refuses numbers it has no name for (0x210B).
    /// `Ok(None)`: the object has no such attribute.
    pub(crate) fn read_ulongs(
        &self,
        session: &Session,
        object: ObjectHandle,
        outer: CK_ATTRIBUTE_TYPE,
    ) -> Result<Option<Vec<CK_ULONG>>, Error> {
        let entry = size_of::<CK_ULONG>();
        let bad = |what: &str| Error::TokenOutput(format!("attribute {outer:#x}: {what}"));
        let Some(count) = self.count(session, object, outer, entry, MAX_ULONGS)? else {
            return Ok(None);
        };
        let mut values: Vec<CK_ULONG> = vec![0; count];
        let mut attr = CK_ATTRIBUTE {
            type_: outer,
            pValue: values.as_mut_ptr().cast::<c_void>(),
            ulValueLen: (count * entry) as CK_ULONG,
        };
        if self.call(session, object, &mut attr)?.is_none() {
            return Err(bad("vanished while being read"));
        }
        let got = usize::try_from(attr.ulValueLen)
            .ok()
            .filter(|l| *l <= values.len() * entry && *l % entry == 0)
            .ok_or_else(|| bad("value longer than its buffer"))?;
        values.truncate(got / entry);
        Ok(Some(values))
    }

    /// How many entries of `entry` bytes the array attribute `outer` of `object` holds (a
    /// C_GetAttributeValue with a NULL value), at most `max`. `Ok(None)`: no such attribute.
    fn count(
        &self,
        session: &Session,
        object: ObjectHandle,
        outer: CK_ATTRIBUTE_TYPE,
        entry: usize,
        max: usize,
    ) -> Result<Option<usize>, Error> {
        let mut attr = CK_ATTRIBUTE {
            type_: outer,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        };
        if self.call(session, object, &mut attr)?.is_none() {
            return Ok(None);
        }
        let bad = |what: &str| Error::TokenOutput(format!("attribute {outer:#x}: {what}"));
        let len = usize::try_from(attr.ulValueLen).map_err(|_| bad("impossible length"))?;
        if len % entry != 0 || len / entry > max {
            return Err(bad("length is not a small whole number of entries"));
        }
        Ok(Some(len / entry))
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
        let Some(count) = self.count(session, object, outer, entry, MAX_NESTED)? else {
            return Ok(None);
        };
        let mut attr = CK_ATTRIBUTE {
            type_: outer,
            pValue: ptr::null_mut(),
            ulValueLen: (count * entry) as CK_ULONG,
        };
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
            count
        ];
        attr.pValue = nested.as_mut_ptr().cast::<c_void>();
        attr.ulValueLen = (nested.len() * entry) as CK_ULONG;
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
