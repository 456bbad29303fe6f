//! Keyward's PKCS#11 module: a `cdylib` that applications (OpenSSL through pkcs11-provider,
//! OpenSSH, OpenSC's pkcs11-tool, ...) load like any token. It talks to a running Keyward
//! daemon over the KMS API and exposes the account's asymmetric CMKs as key objects
//! (docs/pkcs11-module.md).
//!
//! This file is the FFI edge: it checks pointers, converts between C and Rust, and maps
//! every error to a `CKR_*` value. Each entry point runs inside `catch_unwind`, so a bug
//! answers CKR_GENERAL_ERROR instead of unwinding into the application.

// The entry points keep the names and the safety contract the PKCS#11 specification gives
// them; the pointers they receive are the caller's, as the specification describes.
#![allow(non_snake_case, clippy::missing_safety_doc)]

pub mod client;
pub mod config;
pub mod error;
pub mod keys;
pub mod token;

use cryptoki_sys::*;
use error::{Error, Result};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, RwLock};
use token::{Attr, DecryptScheme, SignMech, Token, SLOT_ID};

const UNAVAILABLE: CK_ULONG = !0;

/// The module state between C_Initialize and C_Finalize.
static STATE: RwLock<Option<Arc<Token>>> = RwLock::new(None);

fn token() -> Result<Arc<Token>> {
    STATE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or(Error::Ck(CKR_CRYPTOKI_NOT_INITIALIZED))
}

/// Runs one entry point: its error becomes a return value, a panic CKR_GENERAL_ERROR.
fn guard(name: &str, f: impl FnOnce() -> Result<()>) -> CK_RV {
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
fn log(name: &str, e: &Error) {
    if std::env::var_os("KEYWARD_PKCS11_LOG").is_some() && !matches!(e, Error::Ck(_)) {
        eprintln!("keyward-pkcs11: {name}: {e}");
    }
}

unsafe fn slice<'a>(p: *const u8, n: CK_ULONG) -> Result<&'a [u8]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::Ck(CKR_ARGUMENTS_BAD));
    }
    Ok(std::slice::from_raw_parts(p, n as usize))
}

unsafe fn out<'a, T>(p: *mut T) -> Result<&'a mut T> {
    p.as_mut().ok_or(Error::Ck(CKR_ARGUMENTS_BAD))
}

/// The usual two-call output convention: NULL buffer asks for the length, a short one
/// answers CKR_BUFFER_TOO_SMALL with the length needed.
unsafe fn write_out(buf: *mut u8, len: *mut CK_ULONG, data: &[u8]) -> Result<()> {
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

fn pad(dst: &mut [u8], s: &str) {
    dst.fill(b' ');
    let n = s.len().min(dst.len());
    dst[..n].copy_from_slice(&s.as_bytes()[..n]);
}

unsafe fn template<'a>(p: *mut CK_ATTRIBUTE, n: CK_ULONG) -> Result<&'a mut [CK_ATTRIBUTE]> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(Error::Ck(CKR_ARGUMENTS_BAD));
    }
    Ok(std::slice::from_raw_parts_mut(p, n as usize))
}

/// A template's (type, value) pairs, copied.
unsafe fn template_values(
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

fn find_attr(t: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)], ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    t.iter().find(|(x, _)| *x == ty).map(|(_, v)| v.as_slice())
}

fn attr_bool(t: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)], ty: CK_ATTRIBUTE_TYPE) -> Option<bool> {
    find_attr(t, ty).map(|v| v.first().is_some_and(|&b| b != 0))
}

fn attr_ulong(v: &[u8]) -> Result<CK_ULONG> {
    let b: [u8; std::mem::size_of::<CK_ULONG>()] = v
        .try_into()
        .map_err(|_| Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID))?;
    Ok(CK_ULONG::from_ne_bytes(b))
}

unsafe fn mechanism<'a>(m: *mut CK_MECHANISM) -> Result<&'a CK_MECHANISM> {
    m.as_ref().ok_or(Error::Ck(CKR_ARGUMENTS_BAD))
}

unsafe fn params<'a, T>(m: &CK_MECHANISM) -> Result<&'a T> {
    if m.pParameter.is_null() || m.ulParameterLen as usize != std::mem::size_of::<T>() {
        return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(&*(m.pParameter as *const T))
}

/// The daemon signs RSASSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt only.
unsafe fn check_pss(m: &CK_MECHANISM) -> Result<()> {
    let p: &CK_RSA_PKCS_PSS_PARAMS = params(m)?;
    if p.hashAlg != CKM_SHA256 || p.mgf != CKG_MGF1_SHA256 || p.sLen != 32 {
        return Err(Error::Ck(CKR_MECHANISM_PARAM_INVALID));
    }
    Ok(())
}

unsafe fn sign_mech(m: *mut CK_MECHANISM) -> Result<SignMech> {
    let m = mechanism(m)?;
    Ok(match m.mechanism {
        CKM_ECDSA => SignMech::Ecdsa,
        CKM_ECDSA_SHA256 => SignMech::EcdsaSha256,
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

unsafe fn decrypt_scheme(m: *mut CK_MECHANISM) -> Result<DecryptScheme> {
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

fn check_slot(slot: CK_SLOT_ID) -> Result<()> {
    if slot != SLOT_ID {
        return Err(Error::Ck(CKR_SLOT_ID_INVALID));
    }
    Ok(())
}

// ---- general purpose ----

#[no_mangle]
pub unsafe extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    guard("C_Initialize", || {
        if let Some(a) = (args as *const CK_C_INITIALIZE_ARGS).as_ref() {
            if !a.pReserved.is_null() {
                return Err(Error::Ck(CKR_ARGUMENTS_BAD));
            }
            let given = [
                a.CreateMutex.is_some(),
                a.DestroyMutex.is_some(),
                a.LockMutex.is_some(),
                a.UnlockMutex.is_some(),
            ];
            if given.iter().any(|&g| g) && !given.iter().all(|&g| g) {
                return Err(Error::Ck(CKR_ARGUMENTS_BAD));
            }
            // The module locks with the OS's primitives; it cannot use the caller's alone.
            if given[0] && a.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(Error::Ck(CKR_CANT_LOCK));
            }
        }
        let mut state = STATE.write().unwrap_or_else(|e| e.into_inner());
        if state.is_some() {
            return Err(Error::Ck(CKR_CRYPTOKI_ALREADY_INITIALIZED));
        }
        let cfg = config::Config::from_env().inspect_err(|e| {
            // Always said: without it, a misconfigured module is a bare CKR_GENERAL_ERROR.
            eprintln!("keyward-pkcs11: {e}");
        })?;
        *state = Some(Arc::new(Token::new(cfg).inspect_err(|e| {
            eprintln!("keyward-pkcs11: {e}");
        })?));
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard("C_Finalize", || {
        if !reserved.is_null() {
            return Err(Error::Ck(CKR_ARGUMENTS_BAD));
        }
        let mut state = STATE.write().unwrap_or_else(|e| e.into_inner());
        state
            .take()
            .map(|_| ())
            .ok_or(Error::Ck(CKR_CRYPTOKI_NOT_INITIALIZED))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    guard("C_GetInfo", || {
        token()?;
        let info = out(info)?;
        info.cryptokiVersion = CK_VERSION {
            major: 2,
            minor: 40,
        };
        pad(&mut info.manufacturerID, "Keyward");
        info.flags = 0;
        pad(&mut info.libraryDescription, "Keyward KMS PKCS#11 module");
        info.libraryVersion = CK_VERSION { major: 0, minor: 1 };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard("C_GetFunctionList", || {
        let list = out(list)?;
        // The table is immutable; the C signature merely lacks `const`.
        *list = std::ptr::addr_of!(FUNCTION_LIST) as *mut CK_FUNCTION_LIST;
        Ok(())
    })
}

// ---- slots and tokens ----

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotList(
    _token_present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetSlotList", || {
        token()?;
        let count = out(count)?;
        if !list.is_null() {
            if *count < 1 {
                *count = 1;
                return Err(Error::Ck(CKR_BUFFER_TOO_SMALL));
            }
            *list = SLOT_ID;
        }
        *count = 1;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    guard("C_GetSlotInfo", || {
        token()?;
        check_slot(slot)?;
        let info = out(info)?;
        pad(&mut info.slotDescription, "Keyward KMS");
        pad(&mut info.manufacturerID, "Keyward");
        info.flags = CKF_TOKEN_PRESENT;
        info.hardwareVersion = CK_VERSION { major: 0, minor: 1 };
        info.firmwareVersion = CK_VERSION { major: 0, minor: 1 };
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    guard("C_GetTokenInfo", || {
        let t = token()?;
        check_slot(slot)?;
        let info = out(info)?;
        pad(&mut info.label, &t.cfg.token_label);
        pad(&mut info.manufacturerID, "Keyward");
        pad(&mut info.model, "KMS API");
        // Distinguishes tokens of different accounts/regions in one application.
        let serial = {
            use sha2::Digest;
            let d = sha2::Sha256::digest(format!("{}\n{}", t.cfg.secret_id, t.cfg.region));
            hex::encode(&d[..8])
        };
        pad(&mut info.serialNumber, &serial);
        let mut flags = CKF_RNG | CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
        if t.login_required() {
            flags |= CKF_LOGIN_REQUIRED;
        }
        info.flags = flags;
        let (all, rw) = t.session_count();
        info.ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
        info.ulSessionCount = all as CK_ULONG;
        info.ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
        info.ulRwSessionCount = rw as CK_ULONG;
        info.ulMaxPinLen = 255;
        info.ulMinPinLen = 0;
        info.ulTotalPublicMemory = UNAVAILABLE;
        info.ulFreePublicMemory = UNAVAILABLE;
        info.ulTotalPrivateMemory = UNAVAILABLE;
        info.ulFreePrivateMemory = UNAVAILABLE;
        info.hardwareVersion = CK_VERSION { major: 0, minor: 1 };
        info.firmwareVersion = CK_VERSION { major: 0, minor: 1 };
        pad(&mut info.utcTime, "");
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetMechanismList", || {
        token()?;
        check_slot(slot)?;
        let mechs = token::mechanisms();
        let count = out(count)?;
        if !list.is_null() {
            if (*count as usize) < mechs.len() {
                *count = mechs.len() as CK_ULONG;
                return Err(Error::Ck(CKR_BUFFER_TOO_SMALL));
            }
            for (i, m) in mechs.iter().enumerate() {
                *list.add(i) = m.0;
            }
        }
        *count = mechs.len() as CK_ULONG;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    ty: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    guard("C_GetMechanismInfo", || {
        token()?;
        check_slot(slot)?;
        let info = out(info)?;
        let (_, min, max, flags) = token::mechanisms()
            .into_iter()
            .find(|m| m.0 == ty)
            .ok_or(Error::Ck(CKR_MECHANISM_INVALID))?;
        info.ulMinKeySize = min;
        info.ulMaxKeySize = max;
        info.flags = flags;
        Ok(())
    })
}

// ---- sessions ----

#[no_mangle]
pub unsafe extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _app: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    guard("C_OpenSession", || {
        let t = token()?;
        check_slot(slot)?;
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::Ck(CKR_SESSION_PARALLEL_NOT_SUPPORTED));
        }
        let session = out(session)?;
        *session = t.open_session(flags & CKF_RW_SESSION != 0);
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseSession(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CloseSession", || token()?.close_session(h))
}

#[no_mangle]
pub unsafe extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    guard("C_CloseAllSessions", || {
        let t = token()?;
        check_slot(slot)?;
        t.close_all();
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetSessionInfo(
    h: CK_SESSION_HANDLE,
    info: *mut CK_SESSION_INFO,
) -> CK_RV {
    guard("C_GetSessionInfo", || {
        let t = token()?;
        let rw = t.session_rw(h)?;
        let info = out(info)?;
        info.slotID = SLOT_ID;
        info.state = match (rw, t.is_logged_in()) {
            (false, false) => CKS_RO_PUBLIC_SESSION,
            (false, true) => CKS_RO_USER_FUNCTIONS,
            (true, false) => CKS_RW_PUBLIC_SESSION,
            (true, true) => CKS_RW_USER_FUNCTIONS,
        };
        info.flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        info.ulDeviceError = 0;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Login(
    h: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    pin_len: CK_ULONG,
) -> CK_RV {
    guard("C_Login", || {
        let t = token()?;
        let pin = slice(pin, pin_len)?;
        t.login(h, user, pin)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Logout(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_Logout", || token()?.logout(h))
}

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

// ---- signing and verification ----

#[no_mangle]
pub unsafe extern "C" fn C_SignInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_SignInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.sign_init(h, sign_mech(mech)?, key, false)
    })
}

/// The end of a signature: a length query or a too-small buffer keeps the operation active.
unsafe fn sign_out(
    t: &Token,
    h: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> Result<()> {
    let len = t.sign_len(h)?;
    let sig_len = out(sig_len)?;
    if sig.is_null() {
        *sig_len = len as CK_ULONG;
        return Ok(());
    }
    if (*sig_len as usize) < len {
        *sig_len = len as CK_ULONG;
        return Err(Error::Ck(CKR_BUFFER_TOO_SMALL));
    }
    let s = t.sign(h, data)?;
    write_out(sig, sig_len, &s)
}

#[no_mangle]
pub unsafe extern "C" fn C_Sign(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_Sign", || {
        let t = token()?;
        let data = slice(data, data_len)?;
        sign_out(&t, h, Some(data), sig, sig_len)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignUpdate(
    h: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_SignUpdate", || {
        let t = token()?;
        t.sign_update(h, false, slice(part, len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SignFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_SignFinal", || {
        let t = token()?;
        sign_out(&t, h, None, sig, sig_len)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_VerifyInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.sign_init(h, sign_mech(mech)?, key, true)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Verify(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    guard("C_Verify", || {
        let t = token()?;
        t.verify(h, Some(slice(data, data_len)?), slice(sig, sig_len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyUpdate(
    h: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyUpdate", || {
        let t = token()?;
        t.sign_update(h, true, slice(part, len)?)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_VerifyFinal(
    h: CK_SESSION_HANDLE,
    sig: *mut CK_BYTE,
    sig_len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyFinal", || {
        let t = token()?;
        t.verify(h, None, slice(sig, sig_len)?)
    })
}

// ---- decryption ----

#[no_mangle]
pub unsafe extern "C" fn C_DecryptInit(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_DecryptInit", || {
        let t = token()?;
        t.session_rw(h)?;
        t.decrypt_init(h, decrypt_scheme(mech)?, key)
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_Decrypt(
    h: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    plain: *mut CK_BYTE,
    plain_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_Decrypt", || {
        let t = token()?;
        let ct = slice(data, data_len)?;
        let plain_len = out(plain_len)?;
        let cap = (!plain.is_null()).then_some(*plain_len as usize);
        let p = t.decrypt(h, ct, |n| cap.is_none_or(|c| c < n))?;
        write_out(plain, plain_len, &p)
    })
}

// ---- key generation and random numbers ----

#[no_mangle]
pub unsafe extern "C" fn C_GenerateKeyPair(
    h: CK_SESSION_HANDLE,
    mech: *mut CK_MECHANISM,
    pub_attrs: *mut CK_ATTRIBUTE,
    pub_count: CK_ULONG,
    priv_attrs: *mut CK_ATTRIBUTE,
    priv_count: CK_ULONG,
    pub_key: *mut CK_OBJECT_HANDLE,
    priv_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_GenerateKeyPair", || {
        let t = token()?;
        let m = mechanism(mech)?;
        let pubt = template_values(pub_attrs, pub_count)?;
        let privt = template_values(priv_attrs, priv_count)?;
        let pub_key = out(pub_key)?;
        let priv_key = out(priv_key)?;
        let (kind, sign) = match m.mechanism {
            CKM_EC_KEY_PAIR_GEN => {
                let params =
                    find_attr(&pubt, CKA_EC_PARAMS).ok_or(Error::Ck(CKR_TEMPLATE_INCOMPLETE))?;
                let kind =
                    keys::kind_of_ec_params(params).ok_or(Error::Ck(CKR_CURVE_NOT_SUPPORTED))?;
                if attr_bool(&privt, CKA_DECRYPT) == Some(true) {
                    // Keyward's EC keys sign only.
                    return Err(Error::Ck(CKR_TEMPLATE_INCONSISTENT));
                }
                (kind, true)
            }
            CKM_RSA_PKCS_KEY_PAIR_GEN => {
                let bits =
                    find_attr(&pubt, CKA_MODULUS_BITS).ok_or(Error::Ck(CKR_TEMPLATE_INCOMPLETE))?;
                if attr_ulong(bits)? != 2048 {
                    return Err(Error::Ck(CKR_KEY_SIZE_RANGE));
                }
                if let Some(e) = find_attr(&pubt, CKA_PUBLIC_EXPONENT) {
                    let e: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
                    if e != [1, 0, 1] {
                        return Err(Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID));
                    }
                }
                // A CMK has one usage. Signing unless only decryption is asked for
                // (pkcs11-tool asks for both by default).
                let sign = attr_bool(&privt, CKA_SIGN) == Some(true)
                    || attr_bool(&privt, CKA_DECRYPT) != Some(true);
                (keys::Kind::Rsa2048, sign)
            }
            _ => return Err(Error::Ck(CKR_MECHANISM_INVALID)),
        };
        let label = find_attr(&privt, CKA_LABEL)
            .or_else(|| find_attr(&pubt, CKA_LABEL))
            .map(|l| {
                String::from_utf8(l.to_vec()).map_err(|_| Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID))
            })
            .transpose()?;
        let (p, k) = t.generate(h, kind, sign, label)?;
        *pub_key = p;
        *priv_key = k;
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GenerateRandom(
    h: CK_SESSION_HANDLE,
    buf: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_GenerateRandom", || {
        let t = token()?;
        t.session_rw(h)?;
        if len == 0 {
            return Ok(());
        }
        if buf.is_null() {
            return Err(Error::Ck(CKR_ARGUMENTS_BAD));
        }
        let r = t.random(len as usize)?;
        std::ptr::copy_nonoverlapping(r.as_ptr(), buf, r.len());
        Ok(())
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_SeedRandom(
    h: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    guard("C_SeedRandom", || {
        token()?.session_rw(h)?;
        // The daemon's HSM owns its RNG.
        Err(Error::Ck(CKR_RANDOM_SEED_NOT_SUPPORTED))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionStatus(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_GetFunctionStatus", || {
        token()?.session_rw(h)?;
        Err(Error::Ck(CKR_FUNCTION_NOT_PARALLEL))
    })
}

#[no_mangle]
pub unsafe extern "C" fn C_CancelFunction(h: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CancelFunction", || {
        token()?.session_rw(h)?;
        Err(Error::Ck(CKR_FUNCTION_NOT_PARALLEL))
    })
}

/// Entry points the token does not offer: key objects are created through CreateKey
/// (C_GenerateKeyPair) and administered through the API, and the module neither encrypts
/// nor digests (applications do both with the public key and their own library).
macro_rules! not_supported {
    ($($name:ident($($arg:ty),*);)*) => {
        $(
            #[no_mangle]
            pub unsafe extern "C" fn $name($(_: $arg),*) -> CK_RV {
                guard(stringify!($name), || {
                    token()?;
                    Err(Error::Ck(CKR_FUNCTION_NOT_SUPPORTED))
                })
            }
        )*
    };
}

not_supported! {
    C_InitToken(CK_SLOT_ID, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR);
    C_InitPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG);
    C_SetPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_GetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE);
    C_CreateObject(CK_SESSION_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG);
    C_EncryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_Encrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestInit(CK_SESSION_HANDLE, *mut CK_MECHANISM);
    C_Digest(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG);
    C_DigestKey(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_DigestFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SignRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_SignRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_VerifyRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_VerifyRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptDigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_SignEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptVerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_GenerateKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_WrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_UnwrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DeriveKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
}

#[no_mangle]
pub unsafe extern "C" fn C_WaitForSlotEvent(
    _flags: CK_FLAGS,
    _slot: *mut CK_SLOT_ID,
    _r: *mut c_void,
) -> CK_RV {
    guard("C_WaitForSlotEvent", || {
        token()?;
        // One slot whose token never goes away: there are no events.
        Err(Error::Ck(CKR_FUNCTION_NOT_SUPPORTED))
    })
}

static FUNCTION_LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
};
