//! The one token the module offers: the account's asymmetric CMKs as key objects, its
//! sessions and the login state (the operations are in ops.rs). Everything here is plain
//! Rust; lib.rs does the pointers.
//!
//! Locks are never held across a request to the daemon, so one slow call does not stall the
//! application's other threads.

use crate::attrs::{self, Attr};
use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{self, Class, KeyInfo};
use crate::session::Session;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cryptoki_sys::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The one slot.
pub const SLOT_ID: CK_SLOT_ID = 1;
/// ListKeyDetail's largest page.
const PAGE: u64 = 200;

struct Object {
    key: Arc<KeyInfo>,
    class: Class,
    /// False once a listing no longer shows the key (deleted, disabled): the handle stays
    /// reserved so it is never reused for another key.
    present: bool,
}

/// Handles are indexes into `objects` plus one; a key keeps its two handles for the life of
/// the module, whatever the listing order.
#[derive(Default)]
struct Objects {
    objects: Vec<Object>,
    by_key: HashMap<String, (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)>,
}

pub struct Token {
    pub cfg: Config,
    pub(crate) client: Client,
    objects: Mutex<Objects>,
    pub(crate) sessions: Mutex<HashMap<CK_SESSION_HANDLE, Session>>,
    next_session: AtomicU64,
    logged_in: AtomicBool,
}

/// A poisoned lock only means another thread panicked (and was caught at the FFI edge);
/// the data is still consistent for our purposes, so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn b64(v: &Value, field: &str, action: &str) -> Result<Vec<u8>> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Transport(format!("{action} response lacks {field}")))?;
    B64.decode(s)
        .map_err(|_| Error::Transport(format!("{action} returned {field} that is not base64")))
}

impl Token {
    pub fn new(cfg: Config) -> Result<Token> {
        let client = Client::new(&cfg)?;
        Ok(Token {
            cfg,
            client,
            objects: Mutex::default(),
            sessions: Mutex::default(),
            next_session: AtomicU64::new(1),
            logged_in: AtomicBool::new(false),
        })
    }

    pub fn login_required(&self) -> bool {
        self.cfg.pin.is_some()
    }

    /// Whether private objects are visible and usable now.
    pub(crate) fn private_ok(&self) -> bool {
        !self.login_required() || self.logged_in.load(Ordering::SeqCst)
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in.load(Ordering::SeqCst)
    }

    // ---- sessions ----

    pub fn open_session(&self, rw: bool) -> CK_SESSION_HANDLE {
        let h = self.next_session.fetch_add(1, Ordering::SeqCst);
        lock(&self.sessions).insert(
            h,
            Session {
                rw,
                find: None,
                sign: None,
                verify: None,
                decrypt: None,
            },
        );
        h
    }

    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let mut s = lock(&self.sessions);
        s.remove(&h).ok_or(Error::Ck(CKR_SESSION_HANDLE_INVALID))?;
        // Closing the last session logs the application out (PKCS#11 §5.6).
        if s.is_empty() {
            self.logged_in.store(false, Ordering::SeqCst);
        }
        Ok(())
    }

    pub fn close_all(&self) {
        lock(&self.sessions).clear();
        self.logged_in.store(false, Ordering::SeqCst);
    }

    pub fn session_count(&self) -> (usize, usize) {
        let s = lock(&self.sessions);
        (s.len(), s.values().filter(|x| x.rw).count())
    }

    /// Runs `f` on session `h`.
    pub(crate) fn with_session<T>(
        &self,
        h: CK_SESSION_HANDLE,
        f: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        let mut s = lock(&self.sessions);
        let sess = s.get_mut(&h).ok_or(Error::Ck(CKR_SESSION_HANDLE_INVALID))?;
        f(sess)
    }

    pub fn session_rw(&self, h: CK_SESSION_HANDLE) -> Result<bool> {
        self.with_session(h, |s| Ok(s.rw))
    }

    pub fn login(&self, h: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        self.session_rw(h)?;
        if user == CKU_SO {
            // There is no security officer: keys are administered through the API.
            return Err(Error::Ck(CKR_USER_TYPE_INVALID));
        }
        if user == CKU_CONTEXT_SPECIFIC {
            // No key has CKA_ALWAYS_AUTHENTICATE, so no operation ever waits for this.
            return Err(Error::Ck(CKR_OPERATION_NOT_INITIALIZED));
        }
        if user != CKU_USER {
            return Err(Error::Ck(CKR_USER_TYPE_INVALID));
        }
        if let Some(want) = &self.cfg.pin {
            use subtle::ConstantTimeEq;
            let ok = want.len() == pin.len() && bool::from(want.as_bytes().ct_eq(pin));
            if !ok {
                return Err(Error::Ck(CKR_PIN_INCORRECT));
            }
        }
        if self.logged_in.swap(true, Ordering::SeqCst) {
            return Err(Error::Ck(CKR_USER_ALREADY_LOGGED_IN));
        }
        Ok(())
    }

    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        self.session_rw(h)?;
        if !self.logged_in.swap(false, Ordering::SeqCst) {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        Ok(())
    }

    // ---- objects ----

    /// Lists the account's Enabled asymmetric CMKs and records the new ones (their public
    /// keys are fetched once: a CMK's key pair never changes).
    pub fn refresh(&self) -> Result<()> {
        let mut listed = Vec::new();
        let mut offset = 0u64;
        loop {
            let r = self.client.kms(
                "ListKeyDetail",
                &json!({"Offset": offset, "Limit": PAGE, "KeyUsage": "ALL", "KeyState": 1}),
            )?;
            let page = r
                .get("KeyMetadatas")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = r.get("TotalCount").and_then(Value::as_u64).unwrap_or(0);
            let last_page = page.is_empty();
            offset += page.len() as u64;
            for m in page {
                let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                if let Some((kind, sign)) = keys::kind_of_usage(&field("KeyUsage")) {
                    listed.push((field("KeyId"), field("Alias"), kind, sign));
                }
            }
            if last_page || offset >= total {
                break;
            }
        }
        let known: Vec<String> = {
            let o = lock(&self.objects);
            listed
                .iter()
                .filter(|(id, ..)| !o.by_key.contains_key(id))
                .map(|(id, ..)| id.clone())
                .collect()
        };
        let mut fetched = HashMap::new();
        for id in known {
            match self.public_key(&id) {
                Ok(spki) => {
                    fetched.insert(id, spki);
                }
                // Disabled or deleted between the listing and now: simply not shown.
                Err(Error::Api { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut o = lock(&self.objects);
        for obj in o.objects.iter_mut() {
            obj.present = false;
        }
        for (id, alias, kind, sign) in listed {
            if let Some(&(pubh, privh)) = o.by_key.get(&id) {
                for h in [pubh, privh] {
                    let obj = &mut o.objects[(h - 1) as usize];
                    obj.present = true;
                    if obj.key.alias != alias {
                        // UpdateAlias: same key, new label.
                        let k = &obj.key;
                        obj.key = Arc::new(KeyInfo {
                            key_id: k.key_id.clone(),
                            alias: alias.clone(),
                            kind: k.kind,
                            sign: k.sign,
                            spki: k.spki.clone(),
                            public: k.public.clone(),
                        });
                    }
                }
            } else if let Some(spki) = fetched.remove(&id) {
                let public = keys::parse_spki(&spki, kind)?;
                let key = Arc::new(KeyInfo {
                    key_id: id,
                    alias,
                    kind,
                    sign,
                    spki,
                    public,
                });
                insert(&mut o, key);
            }
        }
        Ok(())
    }

    pub(crate) fn public_key(&self, key_id: &str) -> Result<Vec<u8>> {
        let r = self
            .client
            .kms("GetPublicKey", &json!({ "KeyId": key_id }))?;
        b64(&r, "PublicKey", "GetPublicKey")
    }

    /// The key object `h`, if it exists and is visible now.
    pub(crate) fn object(&self, h: CK_OBJECT_HANDLE) -> Result<(Arc<KeyInfo>, Class)> {
        let o = lock(&self.objects);
        let obj = h
            .checked_sub(1)
            .and_then(|i| o.objects.get(i as usize))
            .filter(|x| x.present)
            .ok_or(Error::Ck(CKR_OBJECT_HANDLE_INVALID))?;
        if obj.class == Class::Private && !self.private_ok() {
            return Err(Error::Ck(CKR_OBJECT_HANDLE_INVALID));
        }
        Ok((obj.key.clone(), obj.class))
    }

    /// Records a key the module just created; returns its (public, private) handles.
    pub(crate) fn add_key(&self, key: Arc<KeyInfo>) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
        insert(&mut lock(&self.objects), key)
    }

    pub fn attribute(&self, h: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_TYPE) -> Result<Attr> {
        let (key, class) = self.object(h)?;
        Ok(attrs::attribute(&key, class, self.login_required(), t))
    }

    pub fn find_init(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)],
    ) -> Result<()> {
        self.with_session(h, |s| {
            if s.find.is_some() {
                return Err(Error::Ck(CKR_OPERATION_ACTIVE));
            }
            Ok(())
        })?;
        self.refresh()?;
        let candidates: Vec<(CK_OBJECT_HANDLE, Arc<KeyInfo>, Class)> = {
            let o = lock(&self.objects);
            o.objects
                .iter()
                .enumerate()
                .filter(|(_, x)| x.present)
                .map(|(i, x)| (i as CK_OBJECT_HANDLE + 1, x.key.clone(), x.class))
                .collect()
        };
        let private_ok = self.private_ok();
        let login_required = self.login_required();
        let found: Vec<CK_OBJECT_HANDLE> = candidates
            .into_iter()
            .filter(|(_, _, class)| *class == Class::Public || private_ok)
            .filter(|(_, k, class)| {
                template.iter().all(|(t, want)| {
                    match attrs::attribute(k, *class, login_required, *t) {
                        Attr::Value(v) => &v == want,
                        _ => false,
                    }
                })
            })
            .map(|(h, ..)| h)
            .collect();
        self.with_session(h, |s| {
            // Handed out in reverse so `pop` yields them in handle order.
            s.find = Some(found.into_iter().rev().collect());
            Ok(())
        })
    }

    pub fn find_next(&self, h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
        self.with_session(h, |s| {
            let list = s
                .find
                .as_mut()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            let mut out = Vec::new();
            while out.len() < max {
                match list.pop() {
                    Some(x) => out.push(x),
                    None => break,
                }
            }
            Ok(out)
        })
    }

    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        self.with_session(h, |s| {
            s.find
                .take()
                .map(|_| ())
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))
        })
    }
}

/// Records a new key's two objects; returns (public, private) handles.
fn insert(o: &mut Objects, key: Arc<KeyInfo>) -> (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) {
    if let Some(&hs) = o.by_key.get(&key.key_id) {
        return hs;
    }
    let base = o.objects.len() as CK_OBJECT_HANDLE;
    for class in [Class::Public, Class::Private] {
        o.objects.push(Object {
            key: key.clone(),
            class,
            present: true,
        });
    }
    let hs = (base + 1, base + 2);
    o.by_key.insert(key.key_id.clone(), hs);
    hs
}
