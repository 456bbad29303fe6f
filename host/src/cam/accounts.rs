//! Accounts and API keys. An API SecretKey must be available in plaintext to check HMAC
//! signatures, so the store keeps it encrypted under a *system key* that is itself sealed by
//! the HSM; the daemon decrypts each SecretKey once and keeps it in a zeroizing cache.

use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::integrity::SystemKey;
use crate::store::{AccountRecord, AccountStore, ApiKeyRecord, MetaStore, Trail};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Set once every API key's sealing binds its account and status.
const KEYS_BOUND_META: &str = "api_keys_bound_v2";
/// Bound on cached credentials (each a few hundred bytes).
const CREDENTIAL_CACHE_MAX: usize = 100_000;
pub const ROOT_UIN: u64 = 100_000_000_001;

/// A freshly minted credential, printed once.
#[derive(Serialize)]
pub struct IssuedCredential {
    #[serde(rename = "SecretId")]
    pub secret_id: String,
    #[serde(rename = "SecretKey", serialize_with = "serialize_secret")]
    pub secret_key: Zeroizing<String>,
    #[serde(rename = "Region")]
    pub region: String,
}

fn serialize_secret<S: serde::Serializer>(
    s: &Zeroizing<String>,
    ser: S,
) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s)
}

/// What a verified SecretId stands for.
pub struct ApiCredential {
    pub secret_id: String,
    pub uin: u64,
    pub owner_uin: u64,
    /// The account's user name (the audit log's Username).
    pub username: String,
    pub secret_key: Zeroizing<String>,
    /// TC3 signing keys derived from `secret_key`, by (date, service): deriving one takes
    /// three HMACs, and a client signs every request of a day for a service with the same
    /// one. Held with the credential, so a changed or removed key (the credential cache
    /// drops its entry) takes its derived keys with it. See [`ApiCredential::signing_key`].
    pub signing_keys: std::sync::Mutex<Vec<DerivedKey>>,
}

/// One TC3 signing key derived from a credential's secret key.
pub struct DerivedKey {
    date: String,
    service: String,
    key: Zeroizing<[u8; 32]>,
}

/// How many (date, service) signing keys a credential keeps: two services (kms, ssm) and the
/// two dates around midnight, plus the Host-derived scopes some SDKs sign with.
const DERIVED_KEYS: usize = 8;

impl ApiCredential {
    pub fn new(
        secret_id: String,
        uin: u64,
        owner_uin: u64,
        username: String,
        secret_key: Zeroizing<String>,
    ) -> Self {
        ApiCredential {
            secret_id,
            uin,
            owner_uin,
            username,
            secret_key,
            signing_keys: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uin == self.owner_uin
    }

    /// The request-signing key for `date` and `service`, made by `derive` from the secret key
    /// once and then kept (at most [`DERIVED_KEYS`], the oldest dropped first). The API front
    /// passes `tc3::signing_key`; the derivation stays there, this only remembers it.
    pub fn signing_key(
        &self,
        date: &str,
        service: &str,
        derive: impl FnOnce(&str, &str, &str) -> Zeroizing<[u8; 32]>,
    ) -> Zeroizing<[u8; 32]> {
        let mut keys = self
            .signing_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = keys.iter().find(|d| d.date == date && d.service == service) {
            return d.key.clone();
        }
        let key = derive(&self.secret_key, date, service);
        if keys.len() >= DERIVED_KEYS {
            keys.remove(0);
        }
        keys.push(DerivedKey {
            date: date.to_string(),
            service: service.to_string(),
            key: key.clone(),
        });
        key
    }
}

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    system: Arc<SystemKey>,
    clock: Arc<dyn Clock>,
    /// Opened credentials by SecretId; dropped on every change to keys or accounts, here or
    /// (through the store's change feed) on another daemon.
    cache: Cache<String, Arc<ApiCredential>>,
    /// Last-use times not yet written to the store: one write per flush, not per request.
    last_used: Mutex<HashMap<String, i64>>,
}

impl Accounts {
    /// Loads the accounts service; re-seals API keys of an older store once.
    pub fn open(
        store: Arc<dyn AccountStore>,
        meta: &dyn MetaStore,
        system: Arc<SystemKey>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let accounts = Accounts {
            store,
            system,
            clock,
            cache: Cache::new(CREDENTIAL_CACHE_MAX),
            last_used: Mutex::new(HashMap::new()),
        };
        // Once per data directory: afterwards every key is sealed with its binding.
        if meta.get_meta(KEYS_BOUND_META)?.is_none() {
            accounts.bind_legacy_keys()?;
            meta.set_meta(KEYS_BOUND_META, b"1")?;
        }
        Ok(accounts)
    }

    /// Creates the root account and its first API key if no root account exists yet.
    pub fn ensure_root(
        &self,
        meta: &dyn MetaStore,
        region: &str,
    ) -> Result<Option<IssuedCredential>> {
        let created = meta.insert_meta("root_uin", ROOT_UIN.to_string().as_bytes())?;
        if !created {
            return Ok(None);
        }
        self.store.insert_account(&AccountRecord {
            uin: ROOT_UIN,
            name: "root".into(),
            kind: "root".into(),
            remark: String::new(),
            create_time: self.clock.now(),
        })?;
        // Start-up, not a request: no record.
        self.issue_api_key(&Trail::off(), ROOT_UIN, region, usize::MAX)
            .map(Some)
    }

    /// Issues an API key for `uin`, if the account holds fewer than `max_per_account`.
    pub fn issue_api_key(
        &self,
        trail: &Trail,
        uin: u64,
        region: &str,
        max_per_account: usize,
    ) -> Result<IssuedCredential> {
        let secret_id = format!("AKID{}", self.random_token(32)?);
        let secret_key = Zeroizing::new(self.random_token(32)?);
        let sealed = self.seal_secret(&Binding::new(&secret_id, uin, true), &secret_key)?;
        self.store.insert_api_key(
            trail,
            &ApiKeyRecord {
                secret_id: secret_id.clone(),
                uin,
                sealed_secret: sealed,
                enabled: true,
                create_time: self.clock.now(),
                last_used: 0,
            },
            max_per_account,
        )?;
        Ok(IssuedCredential {
            secret_id,
            secret_key,
            region: region.to_string(),
        })
    }

    /// Looks up a SecretId. `None` for unknown or disabled keys.
    pub fn credential(&self, secret_id: &str) -> Result<Option<Arc<ApiCredential>>> {
        if let Some(c) = self.cache.get(secret_id) {
            return Ok(Some(c));
        }
        let generation = self.cache.generation();
        let Some(rec) = self.store.get_api_key(secret_id)? else {
            return Ok(None);
        };
        if !rec.enabled {
            return Ok(None);
        }
        let secret_key = match self.open_secret(&Binding::of(&rec), &rec.sealed_secret) {
            Ok(k) => k,
            // The row's account or status is not the one its secret was sealed for: it was
            // changed outside Keyward (someone wrote to the database). It authenticates
            // nothing.
            Err(Error::DecryptFailed) => {
                tracing::error!(
                    secret_id,
                    uin = rec.uin,
                    "API key does not match its sealed binding; refusing it"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let username = self
            .store
            .get_account(rec.uin)?
            .map(|a| a.name)
            .unwrap_or_default();
        let cred = Arc::new(ApiCredential::new(
            secret_id.to_string(),
            rec.uin,
            ROOT_UIN,
            username,
            secret_key,
        ));
        self.cache
            .insert(generation, secret_id.to_string(), cred.clone());
        Ok(Some(cred))
    }

    /// Enables or disables a key: its secret is re-sealed for the new status in the same
    /// write, so the status cannot be changed in the database alone.
    pub fn set_enabled(&self, trail: &Trail, key: &ApiKeyRecord, enabled: bool) -> Result<()> {
        let secret = self
            .open_secret(&Binding::of(key), &key.sealed_secret)
            .map_err(|e| match e {
                Error::DecryptFailed => Error::OperationNotPermitted(format!(
                    "API key {} was changed outside Keyward and no longer matches its sealed \
                     secret; delete it and issue a new one",
                    key.secret_id
                )),
                other => other,
            })?;
        let sealed = self.seal_secret(&Binding::new(&key.secret_id, key.uin, enabled), &secret)?;
        self.store
            .set_api_key_enabled(trail, &key.secret_id, enabled, &sealed)?;
        self.forget(|c| c.secret_id == key.secret_id);
        Ok(())
    }

    /// `nonce || ciphertext` of a SecretKey under the system key, bound to `binding`.
    fn seal_secret(&self, binding: &Binding<'_>, secret: &str) -> Result<Vec<u8>> {
        self.system.seal(&binding.aad(), secret.as_bytes())
    }

    /// The SecretKey sealed for `binding`; `DecryptFailed` if it was sealed for another.
    fn open_secret(&self, binding: &Binding<'_>, sealed: &[u8]) -> Result<Zeroizing<String>> {
        self.open_with_aad(&binding.aad(), sealed)
    }

    fn open_with_aad(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<String>> {
        let plain = self.system.open_sealed(aad, sealed)?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| Error::Internal("sealed secret is not UTF-8".into()))?;
        Ok(Zeroizing::new(text.to_string()))
    }

    /// Re-seals keys written before their sealing bound the account and status (it bound
    /// the SecretId only), once, at start-up: from then on only the binding form is
    /// accepted. A row changed before the upgrade keeps its change; no later one does.
    fn bind_legacy_keys(&self) -> Result<()> {
        for account in self.store.list_accounts()? {
            for key in self.store.list_api_keys(account.uin)? {
                if self
                    .open_secret(&Binding::of(&key), &key.sealed_secret)
                    .is_ok()
                {
                    continue;
                }
                let Ok(secret) =
                    self.open_with_aad(&legacy_aad(&key.secret_id), &key.sealed_secret)
                else {
                    tracing::error!(secret_id = %key.secret_id, "API key does not open; left as is");
                    continue;
                };
                let sealed = self.seal_secret(&Binding::of(&key), &secret)?;
                self.store.set_api_key_enabled(
                    &Trail::off(),
                    &key.secret_id,
                    key.enabled,
                    &sealed,
                )?;
                tracing::info!(secret_id = %key.secret_id, "API key sealing bound to its account");
            }
        }
        Ok(())
    }

    /// Drops cached credentials after a key or account changed, so the next request reads
    /// the store again (a disabled key stops working at once).
    pub fn forget(&self, pred: impl Fn(&ApiCredential) -> bool) {
        self.cache.invalidate(|_, c| pred(c));
    }

    /// The credential cache, for the store's change feed (`coherence`).
    pub(crate) fn credential_cache(&self) -> &Cache<String, Arc<ApiCredential>> {
        &self.cache
    }

    /// Remembers that a key was just used; `flush_last_used` writes it out.
    pub fn mark_used(&self, secret_id: &str, now: i64) {
        if let Ok(mut m) = self.last_used.lock() {
            match m.get_mut(secret_id) {
                Some(t) => *t = (*t).max(now),
                None => {
                    m.insert(secret_id.to_string(), now);
                }
            }
        }
    }

    /// The last-use time of a key, including uses not yet flushed.
    pub fn last_used(&self, rec: &ApiKeyRecord) -> i64 {
        let pending = self
            .last_used
            .lock()
            .ok()
            .and_then(|m| m.get(&rec.secret_id).copied())
            .unwrap_or(0);
        rec.last_used.max(pending)
    }

    pub fn flush_last_used(&self) -> Result<()> {
        let used: Vec<(String, i64)> = match self.last_used.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return Ok(()),
        };
        self.store.touch_api_keys(&used)
    }

    /// A random string of letters and digits drawn from the HSM's RNG.
    fn random_token(&self, len: usize) -> Result<String> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = String::with_capacity(len);
        while out.len() < len {
            for b in self.system.hsm().random(64)?.iter() {
                // Rejection sampling keeps the distribution uniform: 62 * 4 = 248.
                if *b < 248 && out.len() < len {
                    out.push(ALPHABET[(*b % 62) as usize] as char);
                }
            }
        }
        Ok(out)
    }
}

/// What an API key's sealed secret is bound to: its SecretId, account and status. Writing
/// another uin or status into the row (to become the root, or to revive a disabled key)
/// leaves a secret that no longer opens.
struct Binding<'a> {
    secret_id: &'a str,
    uin: u64,
    enabled: bool,
}

impl<'a> Binding<'a> {
    fn new(secret_id: &'a str, uin: u64, enabled: bool) -> Self {
        Binding {
            secret_id,
            uin,
            enabled,
        }
    }

    fn of(key: &'a ApiKeyRecord) -> Self {
        Self::new(&key.secret_id, key.uin, key.enabled)
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = b"keyward/api-secret-key/v2\0".to_vec();
        aad.extend_from_slice(self.secret_id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.uin.to_be_bytes());
        aad.push(u8::from(self.enabled));
        aad
    }
}

/// The associated data of keys sealed before the binding (SecretId only).
fn legacy_aad(secret_id: &str) -> Vec<u8> {
    let mut aad = b"keyward/api-secret-key/".to_vec();
    aad.extend_from_slice(secret_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn signing_keys_are_derived_once_per_date_and_service_and_bounded() {
        let cred = ApiCredential::new("AKID".into(), 1, 1, "root".into(), "sk".to_string().into());
        let calls = Cell::new(0u8);
        let derive = |sk: &str, date: &str, service: &str| {
            calls.set(calls.get() + 1);
            assert_eq!(sk, "sk");
            let mut k = [0u8; 32];
            k[0] = date.len() as u8;
            k[1] = service.as_bytes()[0];
            Zeroizing::new(k)
        };
        let first = cred.signing_key("2026-12-04", "kms", derive);
        assert_eq!(*cred.signing_key("2026-12-04", "kms", derive), *first);
        assert_eq!(calls.get(), 1);
        let ssm = cred.signing_key("2026-12-04", "ssm", derive);
        assert_ne!(*ssm, *first);
        assert_eq!(calls.get(), 2);
        // Past the bound the oldest goes first, and is derived again when asked for.
        for day in 10..10 + DERIVED_KEYS {
            cred.signing_key(&format!("2026-12-{day}"), "kms", derive);
        }
        assert_eq!(cred.signing_keys.lock().unwrap().len(), DERIVED_KEYS);
        let before = calls.get();
        cred.signing_key("2026-12-04", "kms", derive);
        assert_eq!(calls.get(), before + 1);
    }
}
