//! The C entry points called the way careless or hostile applications call them, with no
//! daemon at all: out of order, with NULL pointers, without a configuration, with a config
//! naming an unreachable daemon. Every call must come back with the right return value (and
//! the test process must survive it). The daemon-backed behaviour is tested in
//! tests/e2e/pkcs11_module.rs and tests/python/test_pkcs11_module.py.

use cryptoki_sys::*;
use keyward_pkcs11::entry_crypto::*;
use keyward_pkcs11::entry_general::*;
use keyward_pkcs11::entry_objects::*;
use keyward_pkcs11::C_GetFunctionList;
use std::ptr::null_mut;

fn ptr<T>(x: &mut T) -> *mut T {
    x as *mut T
}

/// One test: the module state and the environment are process-wide.
#[test]
fn entry_points_answer_every_misuse() {
    unsafe {
        // The function list is available before C_Initialize and lists every function.
        let mut list: *mut CK_FUNCTION_LIST = null_mut();
        assert_eq!(C_GetFunctionList(ptr(&mut list)), CKR_OK);
        let l = &*list;
        assert_eq!((l.version.major, l.version.minor), (2, 40));
        assert!(l.C_Initialize.is_some() && l.C_WaitForSlotEvent.is_some());
        assert_eq!(C_GetFunctionList(null_mut()), CKR_ARGUMENTS_BAD);

        // Before C_Initialize.
        let mut info = CK_INFO::default();
        assert_eq!(C_GetInfo(ptr(&mut info)), CKR_CRYPTOKI_NOT_INITIALIZED);
        let mut n: CK_ULONG = 0;
        assert_eq!(
            C_GetSlotList(CK_TRUE, null_mut(), ptr(&mut n)),
            CKR_CRYPTOKI_NOT_INITIALIZED
        );
        assert_eq!(C_Finalize(null_mut()), CKR_CRYPTOKI_NOT_INITIALIZED);
        assert_eq!(
            C_DigestInit(1, null_mut()),
            CKR_CRYPTOKI_NOT_INITIALIZED,
            "unsupported functions check initialisation first too"
        );

        // No configuration: refused with a general error (the reason goes to stderr).
        std::env::remove_var("KEYWARD_PKCS11_CONFIG");
        assert_eq!(C_Initialize(null_mut()), CKR_GENERAL_ERROR);

        // Caller-supplied mutex functions without CKF_OS_LOCKING_OK cannot be honoured.
        unsafe extern "C" fn create(_: *mut *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        unsafe extern "C" fn other(_: *mut std::ffi::c_void) -> CK_RV {
            CKR_OK
        }
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: Some(create),
            DestroyMutex: Some(other),
            LockMutex: Some(other),
            UnlockMutex: Some(other),
            flags: 0,
            pReserved: null_mut(),
        };
        assert_eq!(
            C_Initialize(ptr(&mut args) as *mut std::ffi::c_void),
            CKR_CANT_LOCK
        );

        // A configuration naming a daemon nobody runs: initialising works (no request is
        // made), anything that needs the daemon is a device error.
        let dir = std::env::temp_dir().join(format!("keyward-p11-ffi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("p11.toml");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        std::fs::write(
            &cfg,
            format!(
                "endpoint = \"http://127.0.0.1:{port}\"\nregion = \"ap-guangzhou\"\n\
                 secret_id = \"AKIDx\"\nsecret_key = \"k\"\npin = \"1234\"\ntimeout_secs = 2\n"
            ),
        )
        .unwrap();
        std::env::set_var("KEYWARD_PKCS11_CONFIG", &cfg);
        let mut args = CK_C_INITIALIZE_ARGS {
            CreateMutex: None,
            DestroyMutex: None,
            LockMutex: None,
            UnlockMutex: None,
            flags: CKF_OS_LOCKING_OK,
            pReserved: null_mut(),
        };
        assert_eq!(C_Initialize(ptr(&mut args) as *mut _), CKR_OK);
        assert_eq!(C_Initialize(null_mut()), CKR_CRYPTOKI_ALREADY_INITIALIZED);
        assert_eq!(C_GetInfo(ptr(&mut info)), CKR_OK);
        assert_eq!(&info.manufacturerID[..7], b"Keyward");

        // Two-call slot list, and a short buffer.
        assert_eq!(C_GetSlotList(CK_TRUE, null_mut(), ptr(&mut n)), CKR_OK);
        assert_eq!(n, 1);
        let mut slot: CK_SLOT_ID = 0;
        n = 0;
        assert_eq!(
            C_GetSlotList(CK_TRUE, ptr(&mut slot), ptr(&mut n)),
            CKR_BUFFER_TOO_SMALL
        );
        assert_eq!(n, 1);
        assert_eq!(C_GetSlotList(CK_TRUE, ptr(&mut slot), ptr(&mut n)), CKR_OK);
        let mut ti: CK_TOKEN_INFO = std::mem::zeroed();
        assert_eq!(C_GetTokenInfo(slot, ptr(&mut ti)), CKR_OK);
        assert!(ti.flags & CKF_LOGIN_REQUIRED != 0, "a PIN is configured");
        assert_eq!(C_GetTokenInfo(slot + 1, ptr(&mut ti)), CKR_SLOT_ID_INVALID);
        assert_eq!(C_GetTokenInfo(slot, null_mut()), CKR_ARGUMENTS_BAD);

        // Mechanisms: count, list, info, unknown.
        assert_eq!(C_GetMechanismList(slot, null_mut(), ptr(&mut n)), CKR_OK);
        let mut mechs = vec![0 as CK_MECHANISM_TYPE; n as usize];
        assert_eq!(
            C_GetMechanismList(slot, mechs.as_mut_ptr(), ptr(&mut n)),
            CKR_OK
        );
        assert!(mechs.contains(&CKM_ECDSA) && mechs.contains(&CKM_SHA256_RSA_PKCS_PSS));
        let mut mi = CK_MECHANISM_INFO::default();
        assert_eq!(C_GetMechanismInfo(slot, CKM_ECDSA, ptr(&mut mi)), CKR_OK);
        assert!(mi.flags & CKF_SIGN != 0 && mi.ulMinKeySize == 256);
        assert_eq!(
            C_GetMechanismInfo(slot, CKM_AES_GCM, ptr(&mut mi)),
            CKR_MECHANISM_INVALID
        );

        // Sessions.
        let mut h: CK_SESSION_HANDLE = 0;
        assert_eq!(
            C_OpenSession(slot, 0, null_mut(), None, ptr(&mut h)),
            CKR_SESSION_PARALLEL_NOT_SUPPORTED
        );
        assert_eq!(
            C_OpenSession(slot, CKF_SERIAL_SESSION, null_mut(), None, null_mut()),
            CKR_ARGUMENTS_BAD
        );
        assert_eq!(
            C_OpenSession(slot, CKF_SERIAL_SESSION, null_mut(), None, ptr(&mut h)),
            CKR_OK
        );
        let mut si = CK_SESSION_INFO::default();
        assert_eq!(C_GetSessionInfo(h, ptr(&mut si)), CKR_OK);
        assert_eq!(si.state, CKS_RO_PUBLIC_SESSION);
        assert_eq!(
            C_GetSessionInfo(h + 100, ptr(&mut si)),
            CKR_SESSION_HANDLE_INVALID
        );

        // Login: wrong PIN, right PIN, twice, logout.
        let mut pin = *b"1234";
        let mut wrong = *b"12345";
        assert_eq!(
            C_Login(h, CKU_USER, wrong.as_mut_ptr(), wrong.len() as CK_ULONG),
            CKR_PIN_INCORRECT
        );
        assert_eq!(
            C_Login(h, CKU_SO, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_USER_TYPE_INVALID
        );
        assert_eq!(C_Login(h, CKU_USER, null_mut(), 4), CKR_ARGUMENTS_BAD);
        assert_eq!(
            C_Login(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_OK
        );
        assert_eq!(
            C_Login(h, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG),
            CKR_USER_ALREADY_LOGGED_IN
        );
        assert_eq!(C_GetSessionInfo(h, ptr(&mut si)), CKR_OK);
        assert_eq!(si.state, CKS_RO_USER_FUNCTIONS);
        assert_eq!(C_Logout(h), CKR_OK);
        assert_eq!(C_Logout(h), CKR_USER_NOT_LOGGED_IN);

        // Operations without their *Init, bad handles, bad mechanisms.
        let mut out = [0u8; 512];
        let mut out_len = out.len() as CK_ULONG;
        let mut data = *b"data";
        assert_eq!(
            C_Sign(h, data.as_mut_ptr(), 4, out.as_mut_ptr(), ptr(&mut out_len)),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_Decrypt(h, data.as_mut_ptr(), 4, out.as_mut_ptr(), ptr(&mut out_len)),
            CKR_OPERATION_NOT_INITIALIZED
        );
        assert_eq!(
            C_FindObjects(h, null_mut(), 1, ptr(&mut n)),
            CKR_ARGUMENTS_BAD
        );
        let mut objs = [0 as CK_OBJECT_HANDLE; 4];
        assert_eq!(
            C_FindObjects(h, objs.as_mut_ptr(), 4, ptr(&mut n)),
            CKR_OPERATION_NOT_INITIALIZED
        );
        let mut mech = CK_MECHANISM {
            mechanism: CKM_ECDSA_SHA256,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(
            C_SignInit(h, ptr(&mut mech), 12345),
            CKR_USER_NOT_LOGGED_IN,
            "a private key needs the login first"
        );
        assert_eq!(
            C_VerifyInit(h, ptr(&mut mech), 12345),
            CKR_KEY_HANDLE_INVALID
        );
        assert_eq!(C_SignInit(h, null_mut(), 1), CKR_ARGUMENTS_BAD);
        let mut pss = CK_MECHANISM {
            mechanism: CKM_SHA256_RSA_PKCS_PSS,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(
            C_VerifyInit(h, ptr(&mut pss), 1),
            CKR_MECHANISM_PARAM_INVALID
        );
        let mut aes = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: null_mut(),
            ulParameterLen: 0,
        };
        assert_eq!(C_VerifyInit(h, ptr(&mut aes), 1), CKR_MECHANISM_INVALID);
        let mut attr = CK_ATTRIBUTE {
            type_: CKA_CLASS,
            pValue: null_mut(),
            ulValueLen: 0,
        };
        assert_eq!(
            C_GetAttributeValue(h, 1, ptr(&mut attr), 1),
            CKR_OBJECT_HANDLE_INVALID
        );
        assert_eq!(C_GetAttributeValue(h, 1, null_mut(), 1), CKR_ARGUMENTS_BAD);
        assert_eq!(C_DestroyObject(h, 1), CKR_FUNCTION_NOT_SUPPORTED);
        assert_eq!(
            C_SeedRandom(h, data.as_mut_ptr(), 4),
            CKR_RANDOM_SEED_NOT_SUPPORTED
        );

        // The daemon is unreachable: a device error, in well under the configured timeout.
        let t = std::time::Instant::now();
        assert_eq!(C_GenerateRandom(h, out.as_mut_ptr(), 16), CKR_DEVICE_ERROR);
        assert_eq!(
            C_FindObjectsInit(h, null_mut(), 0),
            CKR_DEVICE_ERROR,
            "listing the keys needs the daemon"
        );
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(C_GenerateRandom(h, null_mut(), 16), CKR_ARGUMENTS_BAD);
        assert_eq!(C_GenerateRandom(h, null_mut(), 0), CKR_OK);

        assert_eq!(C_CloseSession(h), CKR_OK);
        assert_eq!(C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
        assert_eq!(C_Finalize(data.as_mut_ptr() as *mut _), CKR_ARGUMENTS_BAD);
        assert_eq!(C_Finalize(null_mut()), CKR_OK);
        assert_eq!(C_GetInfo(ptr(&mut info)), CKR_CRYPTOKI_NOT_INITIALIZED);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
