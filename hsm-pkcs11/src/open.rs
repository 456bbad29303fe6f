//! Opening a [`Pkcs11Hsm`]: loading and initialising the module, finding the token, logging
//! in the session pool, provisioning the token keys and probing the token's capabilities.
//!
//! This is the top of the import graph below the crate root: it uses `probe`, which uses the
//! operation modules, which use `hsm`. Keeping `open` out of `hsm` is what lets the probe
//! reuse the sign and key-pair code without a cycle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::RvError;
use cryptoki::types::AuthPin;

use crate::error::{rv_of, Error};
use crate::hsm::{Pkcs11Config, Pkcs11Hsm};
use crate::keys;
use crate::nested::AttributeReader;
use crate::pool::{Pool, SessionFactory};
use crate::probe;
use crate::select::{find_slot, TokenSelector};

impl Pkcs11Hsm {
    /// Load and initialise the module, find the token, open and log in `pool_size` sessions,
    /// and find (or create) and vet the root and seal keys.
    pub fn open(cfg: &Pkcs11Config) -> Result<Self, Error> {
        if cfg.pool_size == 0 {
            return Err(Error::InvalidConfig("pool_size must be at least 1"));
        }
        let (pkcs11, reader) = load_module(&cfg.module)?;
        let selector = TokenSelector::new(&cfg.token_label, cfg.token_serial.as_deref(), cfg.slot)?;
        let (slot, label) = find_slot(&pkcs11, &selector)?;
        let factory = SessionFactory {
            pkcs11,
            slot: Mutex::new(slot),
            selector,
            pin: AuthPin::from(cfg.pin.as_str()),
            reader,
        };

        // Provision on the first session, then make it the first pool member. If anything
        // fails, dropping it closes it and destroys any probe objects left behind.
        let first = factory.open_session()?;
        let (root, root_identity) = keys::provision(&first, &factory.reader, cfg.create_keys)?;
        let caps = probe::probe_capabilities(&factory.pkcs11, factory.slot(), &first, root)?;
        let mut sessions = Vec::with_capacity(cfg.pool_size);
        sessions.push(factory.adopt(first)?);
        for _ in 1..cfg.pool_size {
            sessions.push(factory.open()?);
        }

        Ok(Pkcs11Hsm {
            pool: Pool::new(factory, sessions),
            token_label: label,
            caps,
            force_host_oaep: false,
            root_identity,
            key_wrap: root.key_wrap.name(),
        })
    }
}

/// Load and `C_Initialize` a module once per process and path.
///
/// Loading the same module twice would give us the same library instance anyway (the
/// dynamic loader shares it), and a second `C_Initialize` returns
/// `CKR_CRYPTOKI_ALREADY_INITIALIZED`. Keeping one context per path avoids that and,
/// because the context is never dropped, the module is never unloaded while initialised.
///
/// The [`AttributeReader`] is loaded alongside, once per path as well.
/// Initialises a fresh token labelled `label` on the first slot whose token is not
/// initialised yet (SoftHSM2 always offers one), sets its SO PIN and user PIN, and logs out.
/// For test benches (`keyward init --softhsm`): the PINs go straight to the module, never
/// through a command line that other local users could read in the process list.
pub fn init_token(module: &Path, label: &str, so_pin: &str, user_pin: &str) -> Result<(), Error> {
    use cryptoki::session::UserType;
    let (pkcs11, _) = load_module(module)?;
    let slot = pkcs11
        .get_slots_with_token()
        .map_err(Error::pkcs11("C_GetSlotList"))?
        .into_iter()
        .find(|s| {
            pkcs11
                .get_token_info(*s)
                .is_ok_and(|t| !t.token_initialized())
        })
        .ok_or(Error::InvalidConfig(
            "the module offers no uninitialised token to set up",
        ))?;
    let so_pin = AuthPin::from(so_pin);
    pkcs11
        .init_token(slot, &so_pin, label)
        .map_err(Error::pkcs11("C_InitToken"))?;
    let session = pkcs11
        .open_rw_session(slot)
        .map_err(Error::pkcs11("C_OpenSession"))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(Error::pkcs11("C_Login"))?;
    session
        .init_pin(&AuthPin::from(user_pin))
        .map_err(Error::pkcs11("C_InitPIN"))?;
    session.logout().map_err(Error::pkcs11("C_Logout"))?;
    Ok(())
}

fn load_module(path: &Path) -> Result<(Pkcs11, AttributeReader), Error> {
    type Loaded = (Pkcs11, AttributeReader);
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Loaded>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        // Only held for a map lookup/insert and the load itself; the map stays consistent.
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = modules.get(&key) {
        return Ok(loaded.clone());
    }
    let pkcs11 = Pkcs11::new(&key).map_err(Error::pkcs11("C_GetFunctionList"))?;
    match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => {}
        // Someone else in this process (another library, a test) initialised it already.
        Err(e) if rv_of(&e) == Some(RvError::CryptokiAlreadyInitialized) => {}
        Err(e) => return Err(Error::pkcs11("C_Initialize")(e)),
    }
    let loaded = (pkcs11, AttributeReader::load(&key)?);
    modules.insert(key, loaded.clone());
    Ok(loaded)
}
