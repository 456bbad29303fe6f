//! Entry points: C_Initialize and C_Finalize, library, slot and token information, sessions
//! and login.
// The names and the safety contract are the PKCS#11 specification's.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use crate::attrs;
use crate::error::Error;
use crate::ffi::*;
use crate::token::{Token, SLOT_ID};
use cryptoki_sys::*;
use std::ffi::c_void;
use std::sync::Arc;

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
        let cfg = crate::config::Config::from_env().inspect_err(|e| {
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
        let mechs = attrs::mechanisms();
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
        let (_, min, max, flags) = attrs::mechanisms()
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
