//! What every entry point shares: the module state between C_Initialize and C_Finalize, the
//! guard that turns errors and panics into return values, and safe views of the caller's
//! pointers (buffers, templates, mechanism parameters).

use crate::error::{Error, Result};
use crate::session::{DecryptScheme, SignMech};
use crate::token::{Token, SLOT_ID};
use cryptoki_sys::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};

pub(crate) const UNAVAILABLE: CK_ULONG = !0;

/// The module state between C_Initialize and C_Finalize.
pub(crate) static STATE: RwLock<Option<Arc<Token>>> = RwLock::new(None);

pub(crate) fn token() -> Result<Arc<Token>> {
    STATE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or(Error::Ck(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// Runs one entry point: its error becomes a return value, a panic CKR_GENERAL_ERROR.
pub(crate) fn guard(name: &str, f: impl FnOnce() -> Result<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(e)) => {
            log(name, &e);
            e.rv()
        }
        Err(_) => {
            if std::env::var_os("KEYWARD_PKCS11_LOG").is_some() {
                eprintln!("keyward-pkcs11: {name}: internal error (panic caught)");
            }
            CKR_GENERAL_ERROR
        }
    }
}

/// Errors that are not the ordinary PKCS#11 conversation (daemon errors, transport,
/// configuration) are written to stderr when KEYWARD_PKCS11_LOG is set: the application's
/// own error message rarely says more than the return value.
pub(crate) fn log(name: &str, e: &Error) {
    if std::env::var_os("KEYWARD_PKCS11_LOG").is_some() && !matches!(e, Error::Ck(_)) {
        eprintln!("keyward-pkcs11: {name}: {e}");
    }
}

pub(crate) unsafe fn slice<'a>(p: *const u8, n: CK_ULONG) -> Result<&'a [u8]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::Ck(CKR_ARGUMENTS_BAD));
    }
    Ok(std::slice::from_raw_parts(p, n as usize))
}

pub(crate) unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T> {
    p.as_mut().ok_or(Error::Ck(CKR_ARGUMENTS_BAD))
}

/// The usual two-call output convention: NULL buffer asks for the length, a short one
/// answers CKR_BUFFER_TOO_SMALL with the length needed.
pub(crate) unsafe fn write_out(buf: *mut u8, len: *mut CK_ULONG, data: &[u8]) -> Result<()> {
    let len = out(len)?;
    if buf.is_null() {
        *len = data.len() as CK_ULONG;
        return Ok(());
    }
    if (*len as usize) < data.len() {
        *len = data.len() as CK_ULONG;
        return Err(Error::Ck(CKR_BUFFER_TOO_SMALL));
    }
    std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
    *len = data.len() as CK_ULONG;
    Ok(())
}

pub(crate) fn pad(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

pub(crate) unsafe fn template<'a>(
    p: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> Result<&'a mut [CK_ATTRIBUTE]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::Ck(CKR_ARGUMENTS_BAD));
    }
    Ok(std::slice::from_raw_parts_mut(p, n as usize))
}

/// A template's (type, value) pairs, copied.
pub(crate) unsafe fn template_values(
    p: *mut CK_ATTRIBUTE,
    n: CK_ULONG,
) -> Result<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>> {
    template(p, n)?
        .iter()
        .map(|a| {
            Ok((
                a.type_,
                slice(a.pValue as *const u8, a.ulValueLen)?.to_vec(),
            ))
        })
        .collect()
}

pub(crate) fn find_attr(
    t: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ty: CK_ATTRIBUTE_TYPE,
) -> Option<&[u8]> {
    t.iter().find(|(x, _)| *x == ty).map(|(_, v)| v.as_slice())
}

pub(crate) fn attr_bool(t: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)], ty: CK_ATTRIBUTE_TYPE) -> Option<bool> {
    find_attr(t, ty).map(|v| v.first().is_some_and(|&b| b != 0))
}

pub(crate) fn attr_ulong(v: &[u8]) -> Result<CK_ULONG> {
    let b: [u8; std::mem::size_of::<CK_ULONG>()] = v
        .try_into()
        .map_err(|_| Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID))?;
    Ok(CK_ULONG::from_ne_bytes(b))
}

pub(crate) unsafe fn mechanism<'a>(m: *mut CK_MECHANISM) -> Result<&'a CK_MECHANISM> {
    m.as_ref().ok_or(Error::Ck(CKR_ARGUMENTS_BAD))
}

pub(crate) unsafe fn params<'a, T>(m: &CK_MECHANISM) -> Result<&'a T> {
    if m.pParameter.is_null() || m.ulParameterLen as usize != std::mem::size_of::<T>() {
        return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(&*(m.pParameter as *const T))
}

/// The daemon signs RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt only.
pub(crate) unsafe fn check_pss(m: &CK_MECHANISM) -> Result<()> {
    let p: &CK_RSA_PKCS_PSS_PARAMS = params(m)?;
    if p.hashAlg != CKM_SHA256 || p.mgf != CKG_MGF1_SHA256 || p.sLen != 32 {
        return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(())
}

pub(crate) unsafe fn sign_mech(m: *mut CK_MECHANISM) -> Result<SignMech> {
    let m = mechanism(m)?;
    Ok(match m.mechanism {
        CKM_ECDSA => SignMech::Ecdsa,
        CKM_ECDSA_SHA256 => SignMech::EcdsaSha256,
        CKM_ECDSA_SHA384 => SignMech::EcdsaSha384,
        CKM_RSA_PKCS => SignMech::RsaPkcs,
        CKM_SHA256_RSA_PKCS => SignMech::RsaPkcsSha256,
        CKM_RSA_PKCS_PSS => {
            check_pss(m)?;
            SignMech::RsaPss
        }
        CKM_SHA256_RSA_PKCS_PSS => {
            check_pss(m)?;
            SignMech::RsaPssSha256
        }
        _ => return Err(Error::Ck(CKR_MECHANISM_INVALID)),
    })
}

pub(crate) unsafe fn decrypt_scheme(m: *mut CK_MECHANISM) -> Result<DecryptScheme> {
    let m = mechanism(m)?;
    Ok(match m.mechanism {
        CKM_RSA_PKCS => DecryptScheme::Pkcs1v15,
        CKM_RSA_PKCS_OAEP => {
            let p: &CK_RSA_PKCS_OAEP_PARAMS = params(m)?;
            // The API takes no OAEP label.
            if p.ulSourceDataLen != 0 {
                return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID));
            }
            match (p.hashAlg, p.mgf) {
                (CKM_SHA_1, CKG_MGF1_SHA1) => DecryptScheme::OaepSha1,
                (CKM_SHA256, CKG_MGF1_SHA256) => DecryptScheme::OaepSha256,
                _ => return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID)),
            }
        }
        _ => return Err(Error::Ck(CKR_MECHANISM_INVALID)),
    })
}

pub(crate) fn check_slot(slot: CK_SLOT_ID) -> Result<()> {
    if slot != SLOT_ID {
        return Err(Error::Ck(CKR_SLOT_ID_INVALID));
    }
    Ok(())
}
