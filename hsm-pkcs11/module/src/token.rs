//! The one token the module offers: the account's asymmetric CMKs as key objects, sessions
//! and their active operations. Everything here is plain Rust; lib.rs does the pointers.
//!
//! Locks are never held across a request to the daemon, so one slow call does not stall the
//! application's other threads.

use crate::client::Client;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::{self, Kind, Public};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use cryptoki_sys::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use zeroize::Zeroizing;

/// The one slot.
pub const SLOT_ID: CK_SLOT_ID = 1;
/// The API returns at most this many random bytes per call.
const RANDOM_CHUNK: usize = 1024;
/// Longer than any hash or DigestInfo a raw signing mechanism takes (SHA-512's is 83).
const MAX_RAW_INPUT: usize = 128;
/// ListKeyDetail's largest page.
const PAGE: u64 = 200;

/// One CMK as the module knows it.
pub struct KeyInfo {
    pub key_id: String,
    pub alias: String,
    pub kind: Kind,
    /// A signing key (else an RSA decryption key).
    pub sign: bool,
    pub spki: Vec<u8>,
    pub public: Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    Private,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignMech {
    /// CKM_ECDSA: the input is a hash.
    Ecdsa,
    EcdsaSha256,
    /// CKM_RSA_PKCS: the input is a SHA-256 DigestInfo.
    RsaPkcs,
    RsaPkcsSha256,
    /// CKM_RSA_PKCS_PSS: the input is a SHA-256 hash.
    RsaPss,
    RsaPssSha256,
}

impl SignMech {
    fn hashes(self) -> bool {
        matches!(
            self,
            SignMech::EcdsaSha256 | SignMech::RsaPkcsSha256 | SignMech::RsaPssSha256
        )
    }

    fn for_kind(self, kind: Kind) -> bool {
        match self {
            SignMech::Ecdsa | SignMech::EcdsaSha256 => kind != Kind::Rsa2048,
            _ => kind == Kind::Rsa2048,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecryptScheme {
    Pkcs1v15,
    OaepSha1,
    OaepSha256,
}

impl DecryptScheme {
    fn api_name(self) -> &'static str {
        match self {
            DecryptScheme::Pkcs1v15 => "RSAES_PKCS1_V1_5",
            DecryptScheme::OaepSha1 => "RSAES_OAEP_SHA_1",
            DecryptScheme::OaepSha256 => "RSAES_OAEP_SHA_256",
        }
    }
}

/// The input of a sign or verify operation collected so far.
enum Input {
    Raw(Vec<u8>),
    Hashing(Sha256),
}

struct SignOp {
    key: Arc<KeyInfo>,
    mech: SignMech,
    input: Input,
}

struct DecryptOp {
    key: Arc<KeyInfo>,
    scheme: DecryptScheme,
    /// The plaintext of a size query, kept so the real call does not decrypt again.
    result: Option<Zeroizing<Vec<u8>>>,
}

pub struct Session {
    pub rw: bool,
    find: Option<Vec<CK_OBJECT_HANDLE>>,
    sign: Option<SignOp>,
    verify: Option<SignOp>,
    decrypt: Option<DecryptOp>,
}

pub struct Token {
    pub cfg: Config,
    client: Client,
    objects: Mutex<Objects>,
    sessions: Mutex<HashMap<CK_SESSION_HANDLE, Session>>,
    next_session: AtomicU64,
    logged_in: AtomicBool,
}

/// A poisoned lock only means another thread panicked (and was caught at the FFI edge);
/// the data is still consistent for our purposes, so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn b64(v: &Value, field: &str, action: &str) -> Result<Vec<u8>> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Transport(format!("{action} response lacks {field}")))?;
    B64.decode(s)
        .map_err(|_| Error::Transport(format!("{action} returned {field} that is not base64")))
}

/// The outcome of reading one attribute.
pub enum Attr {
    Value(Vec<u8>),
    Sensitive,
    Invalid,
}

fn ulong(v: CK_ULONG) -> Attr {
    Attr::Value(v.to_ne_bytes().to_vec())
}

fn bool_attr(v: bool) -> Attr {
    Attr::Value(vec![if v { CK_TRUE } else { CK_FALSE }])
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
    fn private_ok(&self) -> bool {
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
    fn with_session<T>(
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

    fn public_key(&self, key_id: &str) -> Result<Vec<u8>> {
        let r = self
            .client
            .kms("GetPublicKey", &json!({ "KeyId": key_id }))?;
        b64(&r, "PublicKey", "GetPublicKey")
    }

    /// The key object `h`, if it exists and is visible now.
    fn object(&self, h: CK_OBJECT_HANDLE) -> Result<(Arc<KeyInfo>, Class)> {
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

    pub fn attribute(&self, h: CK_OBJECT_HANDLE, t: CK_ATTRIBUTE_TYPE) -> Result<Attr> {
        let (key, class) = self.object(h)?;
        Ok(self.attr_of(&key, class, t))
    }

    fn attr_of(&self, k: &KeyInfo, class: Class, t: CK_ATTRIBUTE_TYPE) -> Attr {
        let private = class == Class::Private;
        let common = match t {
            CKA_CLASS => Some(ulong(if private {
                CKO_PRIVATE_KEY
            } else {
                CKO_PUBLIC_KEY
            })),
            CKA_TOKEN | CKA_LOCAL => Some(bool_attr(true)),
            CKA_PRIVATE => Some(bool_attr(private && self.login_required())),
            CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE | CKA_DERIVE => Some(bool_attr(false)),
            CKA_LABEL => Some(Attr::Value(k.alias.as_bytes().to_vec())),
            CKA_ID => Some(Attr::Value(k.key_id.as_bytes().to_vec())),
            CKA_KEY_TYPE => Some(ulong(k.kind.key_type())),
            CKA_KEY_GEN_MECHANISM => Some(ulong(match k.kind {
                Kind::Rsa2048 => CKM_RSA_PKCS_KEY_PAIR_GEN,
                _ => CKM_EC_KEY_PAIR_GEN,
            })),
            CKA_START_DATE | CKA_END_DATE | CKA_SUBJECT => Some(Attr::Value(Vec::new())),
            CKA_PUBLIC_KEY_INFO => Some(Attr::Value(k.spki.clone())),
            CKA_ALLOWED_MECHANISMS => Some(Attr::Value(
                allowed_mechanisms(k)
                    .iter()
                    .flat_map(|m| m.to_ne_bytes())
                    .collect(),
            )),
            _ => None,
        };
        if let Some(a) = common {
            return a;
        }
        let key_specific = match (&k.public, t) {
            (Public::Rsa { modulus, .. }, CKA_MODULUS) => Some(Attr::Value(modulus.clone())),
            (Public::Rsa { exponent, .. }, CKA_PUBLIC_EXPONENT) => {
                Some(Attr::Value(exponent.clone()))
            }
            (Public::Rsa { .. }, CKA_MODULUS_BITS) => Some(ulong(k.kind.bits() as CK_ULONG)),
            (Public::Ec { params, .. }, CKA_EC_PARAMS) => Some(Attr::Value(params.clone())),
            (Public::Ec { point, .. }, CKA_EC_POINT) => Some(Attr::Value(point.clone())),
            _ => None,
        };
        if let Some(a) = key_specific {
            return a;
        }
        if private {
            match t {
                CKA_SIGN => bool_attr(k.sign),
                CKA_DECRYPT => bool_attr(!k.sign),
                CKA_SIGN_RECOVER | CKA_UNWRAP | CKA_ALWAYS_AUTHENTICATE | CKA_WRAP_WITH_TRUSTED => {
                    bool_attr(false)
                }
                CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE => bool_attr(true),
                CKA_EXTRACTABLE => bool_attr(false),
                // The private key never leaves the daemon's HSM.
                CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1
                | CKA_EXPONENT_2 | CKA_COEFFICIENT | CKA_VALUE => Attr::Sensitive,
                _ => Attr::Invalid,
            }
        } else {
            match t {
                CKA_VERIFY => bool_attr(k.sign),
                // Encryption to an RSA decryption key happens with its public key, in the
                // application; the module does not offer C_Encrypt.
                CKA_ENCRYPT | CKA_WRAP | CKA_VERIFY_RECOVER | CKA_TRUSTED => bool_attr(false),
                _ => Attr::Invalid,
            }
        }
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
        let found: Vec<CK_OBJECT_HANDLE> = candidates
            .into_iter()
            .filter(|(_, _, class)| *class == Class::Public || private_ok)
            .filter(|(_, k, class)| {
                template
                    .iter()
                    .all(|(t, want)| match self.attr_of(k, *class, *t) {
                        Attr::Value(v) => &v == want,
                        _ => false,
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

    // ---- sign / verify ----

    fn key_for(&self, h: CK_OBJECT_HANDLE, want: Class) -> Result<Arc<KeyInfo>> {
        let (key, class) = self
            .object(h)
            .map_err(|_| Error::Ck(CKR_KEY_HANDLE_INVALID))?;
        if class != want {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        Ok(key)
    }

    pub fn sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: SignMech,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        // Before the handle check: a hidden private key is a login problem, and says so.
        if !verify && !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let key = self.key_for(
            key,
            if verify {
                Class::Public
            } else {
                Class::Private
            },
        )?;
        if !mech.for_kind(key.kind) {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        if !key.sign {
            return Err(Error::Ck(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            if slot.is_some() {
                return Err(Error::Ck(CKR_OPERATION_ACTIVE));
            }
            *slot = Some(SignOp {
                key,
                mech,
                input: if mech.hashes() {
                    Input::Hashing(Sha256::new())
                } else {
                    Input::Raw(Vec::new())
                },
            });
            Ok(())
        })
    }

    /// Adds data to an active sign (or verify) operation; raw mechanisms are single-part.
    pub fn sign_update(&self, h: CK_SESSION_HANDLE, verify: bool, data: &[u8]) -> Result<()> {
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            let op = slot
                .as_mut()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            match &mut op.input {
                Input::Hashing(hasher) => {
                    hasher.update(data);
                    Ok(())
                }
                // Raw mechanisms take a hash or DigestInfo; some applications still feed it
                // in parts. Anything longer than any of those is not a valid input.
                Input::Raw(raw) => {
                    if raw.len() + data.len() > MAX_RAW_INPUT {
                        *slot = None;
                        return Err(Error::Ck(CKR_DATA_LEN_RANGE));
                    }
                    raw.extend_from_slice(data);
                    Ok(())
                }
            }
        })
    }

    /// The length a signature of the active operation will have.
    pub fn sign_len(&self, h: CK_SESSION_HANDLE) -> Result<usize> {
        self.with_session(h, |s| {
            let op = s
                .sign
                .as_ref()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            Ok(op.key.kind.signature_len())
        })
    }

    /// Ends the sign (or verify) operation: its key, mechanism and digest to submit.
    fn finish_input(
        &self,
        h: CK_SESSION_HANDLE,
        verify: bool,
        last: Option<&[u8]>,
    ) -> Result<(Arc<KeyInfo>, SignMech, Result<[u8; 32]>)> {
        self.with_session(h, |s| {
            let slot = if verify { &mut s.verify } else { &mut s.sign };
            let op = slot
                .take()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            let digest = match op.input {
                Input::Hashing(mut hasher) => {
                    if let Some(d) = last {
                        hasher.update(d);
                    }
                    Ok(hasher.finalize().into())
                }
                Input::Raw(mut raw) => {
                    if let Some(d) = last {
                        raw.extend_from_slice(d);
                    }
                    match op.mech {
                        SignMech::Ecdsa => keys::ecdsa_digest(op.key.kind, &raw),
                        SignMech::RsaPkcs => keys::digest_info_sha256(&raw),
                        SignMech::RsaPss => raw
                            .as_slice()
                            .try_into()
                            .map_err(|_| Error::Ck(CKR_DATA_LEN_RANGE)),
                        _ => Err(Error::Ck(CKR_GENERAL_ERROR)),
                    }
                }
            };
            Ok((op.key, op.mech, digest))
        })
    }

    /// Signs (ends the operation). `data` is the single-part input, None for C_SignFinal.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: Option<&[u8]>) -> Result<Vec<u8>> {
        let (key, mech, digest) = self.finish_input(h, false, data)?;
        let digest = digest?;
        let pss = matches!(mech, SignMech::RsaPss | SignMech::RsaPssSha256);
        let r = self.client.kms(
            "SignByAsymmetricKey",
            &json!({
                "KeyId": key.key_id,
                "Algorithm": key.kind.rsa_or_ec_sign_name(pss),
                "MessageType": "DIGEST",
                "Message": B64.encode(digest),
            }),
        )?;
        let sig = b64(&r, "Signature", "SignByAsymmetricKey")?;
        match key.kind {
            Kind::Rsa2048 => {
                if sig.len() != 256 {
                    return Err(Error::Transport("RSA signature of the wrong length".into()));
                }
                Ok(sig)
            }
            _ => keys::ecdsa_der_to_raw(key.kind, &sig),
        }
    }

    /// Verifies (ends the operation) through VerifyByAsymmetricKey.
    pub fn verify(&self, h: CK_SESSION_HANDLE, data: Option<&[u8]>, sig: &[u8]) -> Result<()> {
        let (key, mech, digest) = self.finish_input(h, true, data)?;
        let digest = digest?;
        let api_sig = match key.kind {
            Kind::Rsa2048 => {
                if sig.len() != 256 {
                    return Err(Error::Ck(CKR_SIGNATURE_LEN_RANGE));
                }
                sig.to_vec()
            }
            _ => keys::ecdsa_raw_to_der(key.kind, sig)?,
        };
        let pss = matches!(mech, SignMech::RsaPss | SignMech::RsaPssSha256);
        let r = self.client.kms(
            "VerifyByAsymmetricKey",
            &json!({
                "KeyId": key.key_id,
                "Algorithm": key.kind.rsa_or_ec_sign_name(pss),
                "MessageType": "DIGEST",
                "Message": B64.encode(digest),
                "SignatureValue": B64.encode(api_sig),
            }),
        )?;
        match r.get("SignatureValid").and_then(Value::as_bool) {
            Some(true) => Ok(()),
            Some(false) => Err(Error::Ck(CKR_SIGNATURE_INVALID)),
            None => Err(Error::Transport(
                "VerifyByAsymmetricKey response lacks SignatureValid".into(),
            )),
        }
    }

    // ---- decrypt ----

    pub fn decrypt_init(
        &self,
        h: CK_SESSION_HANDLE,
        scheme: DecryptScheme,
        key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        if !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let key = self.key_for(key, Class::Private)?;
        if key.kind != Kind::Rsa2048 {
            return Err(Error::Ck(CKR_KEY_TYPE_INCONSISTENT));
        }
        if key.sign {
            return Err(Error::Ck(CKR_KEY_FUNCTION_NOT_PERMITTED));
        }
        self.with_session(h, |s| {
            if s.decrypt.is_some() {
                return Err(Error::Ck(CKR_OPERATION_ACTIVE));
            }
            s.decrypt = Some(DecryptOp {
                key,
                scheme,
                result: None,
            });
            Ok(())
        })
    }

    /// Decrypts. With `keep` (a size query or a too-small buffer) the operation stays active
    /// and remembers the plaintext; otherwise it ends.
    pub fn decrypt(
        &self,
        h: CK_SESSION_HANDLE,
        ciphertext: &[u8],
        keep: impl FnOnce(usize) -> bool,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let (key, scheme, cached) = self.with_session(h, |s| {
            let op = s
                .decrypt
                .as_mut()
                .ok_or(Error::Ck(CKR_OPERATION_NOT_INITIALIZED))?;
            Ok((op.key.clone(), op.scheme, op.result.clone()))
        })?;
        let plain = match cached {
            Some(p) => p,
            None => {
                if ciphertext.len() != 256 {
                    self.with_session(h, |s| {
                        s.decrypt = None;
                        Ok(())
                    })?;
                    return Err(Error::Ck(CKR_ENCRYPTED_DATA_LEN_RANGE));
                }
                let r = self.client.kms(
                    "AsymmetricRsaDecrypt",
                    &json!({
                        "KeyId": key.key_id,
                        "Algorithm": scheme.api_name(),
                        "Ciphertext": B64.encode(ciphertext),
                    }),
                );
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        self.with_session(h, |s| {
                            s.decrypt = None;
                            Ok(())
                        })?;
                        // A padding failure is the daemon refusing the ciphertext.
                        return Err(match e {
                            Error::Api { ref code, .. }
                                if code.starts_with("InvalidParameter")
                                    || code.starts_with("FailedOperation") =>
                            {
                                Error::Ck(CKR_ENCRYPTED_DATA_INVALID)
                            }
                            other => other,
                        });
                    }
                };
                Zeroizing::new(b64(&r, "Plaintext", "AsymmetricRsaDecrypt")?)
            }
        };
        let stay = keep(plain.len());
        self.with_session(h, |s| {
            if stay {
                if let Some(op) = s.decrypt.as_mut() {
                    op.result = Some(plain.clone());
                }
            } else {
                s.decrypt = None;
            }
            Ok(())
        })?;
        Ok(plain)
    }

    // ---- key generation, random ----

    /// Creates a CMK; returns (public, private) handles.
    pub fn generate(
        &self,
        h: CK_SESSION_HANDLE,
        kind: Kind,
        sign: bool,
        alias: Option<String>,
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        if !self.session_rw(h)? {
            return Err(Error::Ck(CKR_SESSION_READ_ONLY));
        }
        if !self.private_ok() {
            return Err(Error::Ck(CKR_USER_NOT_LOGGED_IN));
        }
        let usage = match (kind, sign) {
            (Kind::Rsa2048, true) => "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            (Kind::Rsa2048, false) => "ASYMMETRIC_DECRYPT_RSA_2048",
            (Kind::P256, _) => "ASYMMETRIC_SIGN_VERIFY_ECC",
            (Kind::P384, _) => "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
        };
        let alias = match alias {
            Some(a) => {
                if !valid_alias(&a) {
                    return Err(Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID));
                }
                a
            }
            None => format!("pkcs11-{}", hex::encode(self.random(6)?)),
        };
        let r = self
            .client
            .kms(
                "CreateKey",
                &json!({
                    "Alias": alias,
                    "KeyUsage": usage,
                    "Description": "created through the Keyward PKCS#11 module",
                }),
            )
            .map_err(|e| match e {
                // The alias (from CKA_LABEL) is the only value the application chose: taken
                // or refused.
                Error::Api { ref code, .. } if code.starts_with("InvalidParameter") => {
                    Error::Ck(CKR_ATTRIBUTE_VALUE_INVALID)
                }
                other => other,
            })?;
        let key_id = r
            .get("KeyId")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Transport("CreateKey response lacks KeyId".into()))?
            .to_string();
        let spki = self.public_key(&key_id)?;
        let public = keys::parse_spki(&spki, kind)?;
        let key = Arc::new(KeyInfo {
            key_id,
            alias,
            kind,
            sign,
            spki,
            public,
        });
        Ok(insert(&mut lock(&self.objects), key))
    }

    pub fn random(&self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let want = (n - out.len()).min(RANDOM_CHUNK);
            let r = self
                .client
                .kms("GenerateRandom", &json!({ "NumberOfBytes": want }))?;
            let chunk = b64(&r, "Plaintext", "GenerateRandom")?;
            if chunk.len() != want {
                return Err(Error::Transport(
                    "GenerateRandom returned a short answer".into(),
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
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

/// CreateKey's alias rule: 1-60 of [A-Za-z0-9_-], the first alphanumeric.
fn valid_alias(a: &str) -> bool {
    (1..=60).contains(&a.len())
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && a.as_bytes()[0].is_ascii_alphanumeric()
}

fn allowed_mechanisms(k: &KeyInfo) -> Vec<CK_MECHANISM_TYPE> {
    match (k.kind, k.sign) {
        (Kind::Rsa2048, true) => vec![
            CKM_RSA_PKCS,
            CKM_SHA256_RSA_PKCS,
            CKM_RSA_PKCS_PSS,
            CKM_SHA256_RSA_PKCS_PSS,
        ],
        (Kind::Rsa2048, false) => vec![CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP],
        _ => vec![CKM_ECDSA, CKM_ECDSA_SHA256],
    }
}

/// The mechanisms of the token, with their key sizes (bits) and flags.
pub fn mechanisms() -> Vec<(CK_MECHANISM_TYPE, CK_ULONG, CK_ULONG, CK_FLAGS)> {
    let ec = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
    vec![
        (
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            2048,
            2048,
            CKF_HW | CKF_GENERATE_KEY_PAIR,
        ),
        (
            CKM_EC_KEY_PAIR_GEN,
            256,
            384,
            CKF_HW | CKF_GENERATE_KEY_PAIR | ec,
        ),
        (
            CKM_RSA_PKCS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY | CKF_DECRYPT,
        ),
        (
            CKM_SHA256_RSA_PKCS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY,
        ),
        (CKM_RSA_PKCS_PSS, 2048, 2048, CKF_HW | CKF_SIGN | CKF_VERIFY),
        (
            CKM_SHA256_RSA_PKCS_PSS,
            2048,
            2048,
            CKF_HW | CKF_SIGN | CKF_VERIFY,
        ),
        (CKM_RSA_PKCS_OAEP, 2048, 2048, CKF_HW | CKF_DECRYPT),
        (CKM_ECDSA, 256, 384, CKF_HW | CKF_SIGN | CKF_VERIFY | ec),
        (
            CKM_ECDSA_SHA256,
            256,
            384,
            CKF_HW | CKF_SIGN | CKF_VERIFY | ec,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert!(valid_alias("tls-key_1"));
        assert!(!valid_alias("-x"));
        assert!(!valid_alias("a b"));
        assert!(!valid_alias(&"a".repeat(61)));
    }
}
