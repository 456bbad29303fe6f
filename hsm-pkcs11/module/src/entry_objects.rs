//! Entry points: reading attributes and searching for objects.
// The names and the safety contract are the PKCS#11 specification's.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::attrs::Attr;
use crate::error::Error;
use crate::ffi::*;
use cryptoki_sys::*;

// ---- objects ----

#[no_mangle]
pub unsafe extern "C" fn C_GetAttributeValue(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    attrs: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard("C_GetAttributeValue", || {
        let t = token()?;
        t.session_rw(h)?;
        let attrs = template(attrs, count)?;
        let mut rv = CKR_OK;
        for a in attrs.iter_mut() {
            match t.attribute(obj, a.type_)? {
                Attr::Value(v) => {
                    if a.pValue.is_null() {
                        a.ulValueLen = v.len() as CK_ULONG;
                    } else if (a.ulValueLen as usize) < v.len() {
                        a.ulValueLen = UNAVAILABLE;
                        rv = CKR_BUFFER_TOO_SMALL;
                    } else {
                        std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len());
                        a.ulValueLen = v.len() as CK_ULONG;
                    }
                }
                Attr::Sensitive => {
                    a.ulValueLen = UNAVAILABLE;
                    rv = CKR_ATTRIBUTE_SENSITIVE;
                }
                Attr::Invalid => {
                    a.ulValueLen = UNAVAILABLE;
                    rv = CKR_ATTRIBUTE_TYPE_INVALID;
                }
            }
        }
        if rv == CKR_OK {
            Ok(())
        } else {
            Err(Error::Ck(rv))
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetObjectSize(
    h: CK_SESSION_HANDLE,
    obj: CK_OBJECT_HANDLE,
    size: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetObjectSize", || {
        let t = token()?;
        t.session_rw(h)?;
        t.attribute(obj, CKA_CLASS)?;
        // The objects live in the daemon; they take no room in the module that means anything.
        *out(size)? = UNAVAILABLE;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsInit(
    h: CK_SESSION_HANDLE,
    attrs: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard("C_FindObjectsInit", || {
        let t = token()?;
        let template = template_values(attrs, count)?;
        t.find_init(h, &template)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjects(
    h: CK_SESSION_HANDLE,
    objs: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_FindObjects", || {
        let t = token()?;
        let count = out(count)?;
        if objs.is_null() && max > 0 {
            return Err(Error::Ck(CKR_ARGUMENTS_BAD));
        }
        let found = t.find_next(h, max as usize)?;
        for (i, o) in found.iter().enumerate() {
            *objs.add(i) = *o;
        }
        *count = found.len() as CK_ULONG;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_FindObjectsFinal(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_FindObjectsFinal", || token()?.find_final(h))
}
