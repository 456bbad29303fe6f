//! Shared SoftHSM2 setup for the integration tests.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and only sees tokens that exist at
//! that moment. So one `OnceLock` sets up a private token directory with one fresh token per
//! test (tests run in parallel and must not race to create the same root key) before anything
//! loads the module. Each test binary lists its tokens in its own `TOKENS` constant.
//!
//! These tests FAIL, not skip, when SoftHSM2 is missing: a silently skipped HSM test suite
//! would look green while testing nothing.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use keyward_hsm_pkcs11::{Error, Pkcs11Config, Pkcs11Hsm};
use zeroize::Zeroizing;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const PIN: &str = "1234";
pub const SO_PIN: &str = "5678";

pub fn setup() {
    static SETUP: OnceLock<PathBuf> = OnceLock::new();
    SETUP.get_or_init(|| {
        assert!(
            Path::new(MODULE).exists(),
            "SoftHSM2 module not found at {MODULE}. Install SoftHSM2 (e.g. `apt-get install \
             softhsm2`); the HSM tests refuse to pass without it."
        );
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        remove_stale_dirs(&root);
        let dir = root.join(format!("softhsm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).expect("create token dir");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .expect("write softhsm2.conf");
        // Must happen before the first C_Initialize in this process.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        for label in crate::TOKENS {
            let out = Command::new("softhsm2-util")
                .args(["--init-token", "--free", "--label", label])
                .args(["--pin", PIN, "--so-pin", SO_PIN])
                .env("SOFTHSM2_CONF", &conf)
                .output()
                .expect("run softhsm2-util (is SoftHSM2 installed?)");
            assert!(
                out.status.success(),
                "softhsm2-util --init-token {label} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    });
}

/// Token directories of earlier runs whose process is gone (Linux: no /proc/<pid>).
fn remove_stale_dirs(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("softhsm-")) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn config(label: &str, pool_size: usize) -> Pkcs11Config {
    setup();
    Pkcs11Config {
        module: MODULE.into(),
        token_label: label.into(),
        token_serial: None,
        slot: None,
        pin: Zeroizing::new(PIN.into()),
        pool_size,
        create_keys: true,
    }
}

pub fn open(label: &str) -> Pkcs11Hsm {
    Pkcs11Hsm::open(&config(label, 4)).expect("open token")
}

/// A session of our own, straight through cryptoki: what an attacker holding the user PIN
/// (or an admin tool) would have.
/// The serial number and slot ID of the test token labelled `label`, read directly.
pub fn token_serial_and_slot(label: &str) -> (String, u64) {
    setup();
    let pkcs11 = Pkcs11::new(MODULE).expect("load module");
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    pkcs11
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find_map(|s| {
            let info = pkcs11.get_token_info(s).expect("token info");
            (info.label() == label).then(|| (info.serial_number().to_owned(), s.id()))
        })
        .expect("test token")
}

pub fn raw_session(label: &str) -> Session {
    setup();
    let pkcs11 = Pkcs11::new(MODULE).expect("load module");
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    let slot = pkcs11
        .get_slots_with_token()
        .expect("slots")
        .into_iter()
        .find(|s| pkcs11.get_token_info(*s).expect("token info").label() == label)
        .expect("test token");
    let session = pkcs11.open_rw_session(slot).expect("open session");
    match session.login(UserType::User, Some(&AuthPin::from(PIN))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}

pub fn find_token_key(session: &Session, label: &str) -> Vec<ObjectHandle> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .expect("find objects")
}

pub fn rv(e: &Error) -> Option<RvError> {
    e.rv()
}

static CK_TRUE_BYTE: cryptoki_sys::CK_BBOOL = cryptoki_sys::CK_TRUE;
static CK_FALSE_BYTE: cryptoki_sys::CK_BBOOL = cryptoki_sys::CK_FALSE;

/// A `CKA_UNWRAP_TEMPLATE` attribute with the given boolean entries, as a PIN holder planting a
/// root key would build it (cryptoki has no typed attribute for it). The nested values point
/// to statics, so the attribute stays valid as long as the caller needs it.
pub fn unwrap_template(entries: &[(cryptoki_sys::CK_ATTRIBUTE_TYPE, bool)]) -> Attribute {
    let nested: Vec<cryptoki_sys::CK_ATTRIBUTE> = entries
        .iter()
        .map(|&(type_, v)| cryptoki_sys::CK_ATTRIBUTE {
            type_,
            pValue: if v { &CK_TRUE_BYTE } else { &CK_FALSE_BYTE } as *const u8 as *mut _,
            ulValueLen: 1,
        })
        .collect();
    // SAFETY: CK_ATTRIBUTE is a padding-free C struct (two CK_ULONGs and a pointer on the
    // platforms SoftHSM2 runs on); the Vec is fully initialised.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            nested.as_ptr().cast::<u8>(),
            std::mem::size_of_val(nested.as_slice()),
        )
    }
    .to_vec();
    Attribute::VendorDefined((
        cryptoki::object::AttributeType::VendorDefined(cryptoki_sys::CKA_UNWRAP_TEMPLATE),
        bytes,
    ))
}

/// Every attribute Keyward gives its root key except the unwrap template: what a PIN holder
/// planting a look-alike root would copy.
pub fn root_look_alike(label: &str) -> Vec<Attribute> {
    use cryptoki::mechanism::MechanismType;
    use cryptoki::object::KeyType;
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Destroyable(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_KEY_WRAP_PAD]),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}
