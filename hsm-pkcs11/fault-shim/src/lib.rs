//! A fault-injecting PKCS#11 module for tests: it loads the real module named by
//! `KEYWARD_FAULT_SHIM_MODULE` (default SoftHSM2), hands out the real function list with the
//! session functions wrapped, and kills every open session whenever the number in the file
//! named by `KEYWARD_FAULT_SHIM_TRIGGER` changes.
//!
//! Killing is what a token reset or a pulled-and-reinserted token does to an application: at
//! once, every session it holds answers an error from then on (odd generations
//! `CKR_SESSION_HANDLE_INVALID`, even ones `CKR_DEVICE_REMOVED`, so both paths are exercised),
//! and the login state is gone (the shim calls the real `C_Logout`), so new sessions need
//! `C_Login` again. After a `CKR_DEVICE_REMOVED` fault the token is also briefly absent: the
//! next `C_OpenSession` answers `CKR_TOKEN_NOT_PRESENT`, as while a token is being reinserted. SoftHSM2 itself cannot be made to do this from outside the process: another
//! process's `C_CloseAllSessions` does not touch ours.
//!
//! Killed sessions stay open in the real module until the application closes them, so the
//! real module cannot reuse their handles for new sessions while we still answer for them.
//!
//! Not a stub of a token: every call that is not refused runs in the real module.
//!
//! Each refusal is counted in `<trigger>.refused` (one line per generation: `generation
//! count`), so a test can tell that its faults really reached the application.
//!
//! A second file, named by `KEYWARD_FAULT_SHIM_DEVICE_ERROR`, injects `CKR_DEVICE_ERROR`, the
//! code tokens use both for "this one operation failed" (kryoptic, for any OpenSSL failure)
//! and for "the device is gone". Each time its first number changes, the next
//! `C_EncryptInit` answers `CKR_DEVICE_ERROR`: with the word `transient` after the number the
//! session stays fine, with `fatal` every open session is killed with that code (as by a
//! trigger generation). The shim writes the sessions opened so far to `<file>.opens`, so a
//! test can tell whether the application replaced its sessions.

#![allow(non_snake_case)] // PKCS#11's function names.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki_sys::*;

struct Real {
    /// Keeps the real module loaded for as long as its function pointers are used (forever).
    _library: libloading::Library,
    list: CK_FUNCTION_LIST,
}

struct State {
    /// Sessions the application opened and has not closed.
    open: HashSet<CK_SESSION_HANDLE>,
    /// Sessions killed by a fault, still open in the real module.
    killed: HashSet<CK_SESSION_HANDLE>,
    /// The trigger file's number when we last looked.
    generation: u64,
    /// What killed sessions answer.
    rv: CK_RV,
    /// Calls refused, per generation.
    refused: std::collections::BTreeMap<u64, u64>,
    /// `C_OpenSession` calls still to answer `CKR_TOKEN_NOT_PRESENT`.
    absent_opens: u32,
    /// The device-error file's number when we last looked.
    device_error_generation: u64,
    /// A device error is due on the next `C_EncryptInit`: `Some(fatal)`.
    device_error_due: Option<bool>,
    /// Sessions opened in the real module so far.
    opens: u64,
}

static REAL: OnceLock<Result<Real, String>> = OnceLock::new();
static STATE: Mutex<Option<State>> = Mutex::new(None);
/// The function list we hand out: the real one with the session functions replaced.
static LIST: OnceLock<CK_FUNCTION_LIST> = OnceLock::new();

fn real() -> &'static CK_FUNCTION_LIST {
    match REAL.get() {
        Some(Ok(r)) => &r.list,
        // C_GetFunctionList loads the module before handing out any function of ours.
        _ => unreachable!("shim function called before C_GetFunctionList succeeded"),
    }
}

fn load() -> Result<Real, String> {
    let path = std::env::var("KEYWARD_FAULT_SHIM_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into());
    // SAFETY: loading a PKCS#11 module runs its initialisers, which is what loading it
    // directly would do too.
    let library = unsafe { libloading::Library::new(&path) }.map_err(|e| e.to_string())?;
    // SAFETY: the symbol has the PKCS#11 signature; it writes one pointer to a static list.
    let list = unsafe {
        let get: libloading::Symbol<unsafe extern "C" fn(CK_FUNCTION_LIST_PTR_PTR) -> CK_RV> =
            library
                .get(b"C_GetFunctionList\0")
                .map_err(|e| e.to_string())?;
        let mut list = std::ptr::null_mut();
        let rv = get(&mut list);
        if rv != CKR_OK || list.is_null() {
            return Err(format!("{path}: C_GetFunctionList returned {rv:#x}"));
        }
        *list
    };
    Ok(Real {
        _library: library,
        list,
    })
}

fn state() -> std::sync::MutexGuard<'static, Option<State>> {
    // Only set-like bookkeeping happens under the lock; it is consistent after a panic.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Kill every open session if the trigger file's number changed since we last looked.
fn check_trigger(st: &mut State) {
    let Ok(path) = std::env::var("KEYWARD_FAULT_SHIM_TRIGGER") else {
        return;
    };
    let Some(generation) = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    if generation == st.generation {
        return;
    }
    st.generation = generation;
    if generation % 2 == 1 {
        st.rv = CKR_SESSION_HANDLE_INVALID;
    } else {
        st.rv = CKR_DEVICE_REMOVED;
        st.absent_opens = 1;
    }
    // A reset token forgets the login too. Login state is per application: logging out
    // through any live session logs all of them out.
    if let (Some(&any), Some(logout)) = (st.open.iter().next(), real().C_Logout) {
        // SAFETY: `any` is a session the real module opened and nobody closed.
        unsafe { logout(any) };
    }
    let open: Vec<_> = st.open.drain().collect();
    st.killed.extend(open);
}

/// Arm a device error if the device-error file's number changed since we last looked.
fn check_device_error(st: &mut State) {
    let Ok(path) = std::env::var("KEYWARD_FAULT_SHIM_DEVICE_ERROR") else {
        return;
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut words = text.split_whitespace();
    let Some(generation) = words.next().and_then(|n| n.parse::<u64>().ok()) else {
        return;
    };
    if generation != st.device_error_generation {
        st.device_error_generation = generation;
        st.device_error_due = Some(words.next() == Some("fatal"));
    }
}

/// `Some(rv)`: refuse the call `function` on `h` with `rv`.
fn fault(h: CK_SESSION_HANDLE, function: &str) -> Option<CK_RV> {
    let mut guard = state();
    let st = guard.get_or_insert_with(|| State {
        open: HashSet::new(),
        killed: HashSet::new(),
        generation: 0,
        rv: CKR_SESSION_HANDLE_INVALID,
        refused: Default::default(),
        absent_opens: 0,
        device_error_generation: 0,
        device_error_due: None,
        opens: 0,
    });
    check_trigger(st);
    if function == "C_EncryptInit" && !st.killed.contains(&h) {
        check_device_error(st);
        match st.device_error_due.take() {
            Some(false) => return Some(CKR_DEVICE_ERROR),
            Some(true) => {
                st.rv = CKR_DEVICE_ERROR;
                let open: Vec<_> = st.open.drain().collect();
                st.killed.extend(open);
                return Some(CKR_DEVICE_ERROR);
            }
            None => {}
        }
    }
    if h == CK_INVALID_HANDLE && st.absent_opens > 0 {
        // Only `shim_open_session` asks about the invalid handle.
        st.absent_opens -= 1;
        refuse(st, CKR_TOKEN_NOT_PRESENT)
    } else if st.killed.contains(&h) {
        refuse(st, st.rv)
    } else {
        None
    }
}

/// Count a refusal in `<trigger>.refused` and return `rv`.
fn refuse(st: &mut State, rv: CK_RV) -> Option<CK_RV> {
    *st.refused.entry(st.generation).or_default() += 1;
    if let Ok(trigger) = std::env::var("KEYWARD_FAULT_SHIM_TRIGGER") {
        let text: String = st
            .refused
            .iter()
            .map(|(g, n)| format!("{g} {n}\n"))
            .collect();
        // Best effort: the count is for the test's information, the refusal is what matters.
        let _ = std::fs::write(format!("{trigger}.refused"), text);
    }
    Some(rv)
}

macro_rules! wrap {
    ($($name:ident ( $($arg:ident : $ty:ty),* );)*) => {
        $(
            unsafe extern "C" fn $name(h: CK_SESSION_HANDLE $(, $arg: $ty)*) -> CK_RV {
                if let Some(rv) = fault(h, stringify!($name)) {
                    return rv;
                }
                match real().$name {
                    // SAFETY: forwarding the caller's arguments unchanged to the real module.
                    Some(f) => unsafe { f(h $(, $arg)*) },
                    None => CKR_FUNCTION_NOT_SUPPORTED,
                }
            }
        )*
        fn install(list: &mut CK_FUNCTION_LIST) {
            $( list.$name = Some($name); )*
        }
    };
}

wrap! {
    C_GetSessionInfo(info: *mut CK_SESSION_INFO);
    C_Login(user: CK_USER_TYPE, pin: *mut CK_UTF8CHAR, len: CK_ULONG);
    C_Logout();
    C_CreateObject(t: *mut CK_ATTRIBUTE, n: CK_ULONG, o: *mut CK_OBJECT_HANDLE);
    C_CopyObject(o: CK_OBJECT_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG, p: *mut CK_OBJECT_HANDLE);
    C_DestroyObject(o: CK_OBJECT_HANDLE);
    C_GetAttributeValue(o: CK_OBJECT_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG);
    C_SetAttributeValue(o: CK_OBJECT_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG);
    C_FindObjectsInit(t: *mut CK_ATTRIBUTE, n: CK_ULONG);
    C_FindObjects(o: *mut CK_OBJECT_HANDLE, max: CK_ULONG, n: *mut CK_ULONG);
    C_FindObjectsFinal();
    C_EncryptInit(m: *mut CK_MECHANISM, k: CK_OBJECT_HANDLE);
    C_Encrypt(i: *mut CK_BYTE, il: CK_ULONG, o: *mut CK_BYTE, ol: *mut CK_ULONG);
    C_DecryptInit(m: *mut CK_MECHANISM, k: CK_OBJECT_HANDLE);
    C_Decrypt(i: *mut CK_BYTE, il: CK_ULONG, o: *mut CK_BYTE, ol: *mut CK_ULONG);
    C_SignInit(m: *mut CK_MECHANISM, k: CK_OBJECT_HANDLE);
    C_Sign(i: *mut CK_BYTE, il: CK_ULONG, o: *mut CK_BYTE, ol: *mut CK_ULONG);
    C_VerifyInit(m: *mut CK_MECHANISM, k: CK_OBJECT_HANDLE);
    C_Verify(i: *mut CK_BYTE, il: CK_ULONG, s: *mut CK_BYTE, sl: CK_ULONG);
    C_GenerateKey(m: *mut CK_MECHANISM, t: *mut CK_ATTRIBUTE, n: CK_ULONG, o: *mut CK_OBJECT_HANDLE);
    C_GenerateKeyPair(
        m: *mut CK_MECHANISM,
        pt: *mut CK_ATTRIBUTE,
        pn: CK_ULONG,
        st: *mut CK_ATTRIBUTE,
        sn: CK_ULONG,
        po: *mut CK_OBJECT_HANDLE,
        so: *mut CK_OBJECT_HANDLE
    );
    C_WrapKey(m: *mut CK_MECHANISM, w: CK_OBJECT_HANDLE, k: CK_OBJECT_HANDLE, o: *mut CK_BYTE, ol: *mut CK_ULONG);
    C_UnwrapKey(
        m: *mut CK_MECHANISM,
        u: CK_OBJECT_HANDLE,
        i: *mut CK_BYTE,
        il: CK_ULONG,
        t: *mut CK_ATTRIBUTE,
        n: CK_ULONG,
        o: *mut CK_OBJECT_HANDLE
    );
    C_DeriveKey(m: *mut CK_MECHANISM, b: CK_OBJECT_HANDLE, t: *mut CK_ATTRIBUTE, n: CK_ULONG, o: *mut CK_OBJECT_HANDLE);
    C_GenerateRandom(o: *mut CK_BYTE, n: CK_ULONG);
}

unsafe extern "C" fn shim_open_session(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    app: *mut std::ffi::c_void,
    notify: CK_NOTIFY,
    out: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    let Some(open) = real().C_OpenSession else {
        return CKR_FUNCTION_NOT_SUPPORTED;
    };
    // A fault that is due happens before the new session exists, not to it; a token that is
    // absent refuses the session.
    if let Some(rv) = fault(CK_INVALID_HANDLE, "C_OpenSession") {
        return rv;
    }
    // SAFETY: forwarding the caller's arguments unchanged.
    let rv = unsafe { open(slot, flags, app, notify, out) };
    if rv == CKR_OK && !out.is_null() {
        // SAFETY: the real module wrote the handle on success.
        let h = unsafe { *out };
        if let Some(st) = state().as_mut() {
            st.open.insert(h);
            st.opens += 1;
            if let Ok(path) = std::env::var("KEYWARD_FAULT_SHIM_DEVICE_ERROR") {
                // Best effort, for the test's information.
                let _ = std::fs::write(format!("{path}.opens"), st.opens.to_string());
            }
        }
    }
    rv
}

unsafe extern "C" fn shim_close_session(h: CK_SESSION_HANDLE) -> CK_RV {
    let refused = fault(h, "C_CloseSession");
    if let Some(st) = state().as_mut() {
        st.open.remove(&h);
        st.killed.remove(&h);
    }
    let Some(close) = real().C_CloseSession else {
        return CKR_FUNCTION_NOT_SUPPORTED;
    };
    // SAFETY: forwarding. A killed session is closed for real now, so its handle may be reused.
    let rv = unsafe { close(h) };
    refused.unwrap_or(rv)
}

unsafe extern "C" fn shim_close_all_sessions(slot: CK_SLOT_ID) -> CK_RV {
    if let Some(st) = state().as_mut() {
        st.open.clear();
        st.killed.clear();
    }
    match real().C_CloseAllSessions {
        // SAFETY: forwarding.
        Some(f) => unsafe { f(slot) },
        None => CKR_FUNCTION_NOT_SUPPORTED,
    }
}

/// The module's entry point: the real module's function list with the session functions
/// wrapped.
///
/// # Safety
/// `list` must be a valid pointer to write one pointer to, as PKCS#11 requires.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: CK_FUNCTION_LIST_PTR_PTR) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    if REAL.get_or_init(load).is_err() {
        return CKR_GENERAL_ERROR;
    }
    let ours = LIST.get_or_init(|| {
        let mut l = *real();
        install(&mut l);
        l.C_OpenSession = Some(shim_open_session);
        l.C_CloseSession = Some(shim_close_session);
        l.C_CloseAllSessions = Some(shim_close_all_sessions);
        l.C_GetFunctionList = Some(C_GetFunctionList);
        l
    });
    // PKCS#11 hands out a mutable pointer but callers never write through it.
    // SAFETY: `list` is valid (checked non-null; the caller's contract).
    unsafe { *list = std::ptr::from_ref(ours).cast_mut() };
    CKR_OK
}
