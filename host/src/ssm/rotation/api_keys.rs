//! API-key secrets (SecretType 3, product `Cam`): a secret holding an API key of a Keyward
//! sub-account, `{"SecretId": …, "SecretKey": …}`, which Keyward rotates. A rotation issues
//! a new key and publishes it; the key published before stays valid for the overlap, is then
//! disabled, and deleted one overlap later (a window in which an operator can still switch
//! it back on). An application that reads its own credential from Keyward within the overlap
//! never holds a key that stopped working.

use super::{Login, DAY};
use crate::cam::{Caller, Cam, ROOT_UIN};
use crate::error::{Error, Result};
use crate::ssm::{check_description, check_name, NewSecret, SecretValue, Ssm, DEFAULT_VERSION_ID};
use crate::store::{FlowRecord, ProductSecretRecord, SecretRecord, Tag, FLOW_SUCCEEDED};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::Zeroizing;

pub const SECRET_TYPE_API_KEY: u64 = 3;
pub const PRODUCT_CAM: &str = "Cam";
/// `retire_account` of a key already disabled, waiting for deletion.
const DISABLED: &str = "disabled:";

/// The stored value of an API-key secret.
#[derive(Serialize, Deserialize)]
pub struct ApiKeyValue {
    #[serde(rename = "SecretId")]
    secret_id: String,
    #[serde(rename = "SecretKey")]
    secret_key: Zeroizing<String>,
}

impl ApiKeyValue {
    pub fn parse(bytes: &[u8], what: &str) -> Result<Login> {
        let v: ApiKeyValue = serde_json::from_slice(bytes)
            .map_err(|_| Error::Internal(format!("{what} is not an API key value")))?;
        Ok(Login {
            user: v.secret_id,
            password: v.secret_key,
        })
    }

    pub fn to_bytes(login: &Login) -> Zeroizing<Vec<u8>> {
        let v = ApiKeyValue {
            secret_id: login.user.clone(),
            secret_key: login.password.clone(),
        };
        Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default())
    }
}

/// Who issues, switches and deletes API keys: CAM, set once it exists (it is built after
/// Secrets Manager).
pub trait KeyIssuer: Send + Sync {
    /// A new key of `uin`, decided for `caller` (the service itself decides nothing).
    fn issue(&self, caller: &Caller, uin: u64) -> Result<Login>;
    fn set_enabled(&self, caller: &Caller, uin: u64, secret_id: &str, enabled: bool) -> Result<()>;
    fn delete(&self, caller: &Caller, uin: u64, secret_id: &str) -> Result<()>;
}

impl KeyIssuer for Cam {
    fn issue(&self, caller: &Caller, uin: u64) -> Result<Login> {
        let c = self.create_access_key(caller, Some(uin))?;
        Ok(Login {
            user: c.secret_id,
            password: c.secret_key,
        })
    }

    fn set_enabled(&self, caller: &Caller, uin: u64, secret_id: &str, enabled: bool) -> Result<()> {
        self.set_access_key_enabled(caller, secret_id, Some(uin), enabled)
    }

    fn delete(&self, caller: &Caller, uin: u64, secret_id: &str) -> Result<()> {
        match self.delete_access_key(caller, secret_id, Some(uin)) {
            // Deleted by hand already: nothing left to do.
            Err(Error::AccessKeyNotFound(_)) => Ok(()),
            other => other,
        }
    }
}

/// What CreateSecret with SecretType 3 asks for.
pub struct NewApiKeySecret {
    pub name: String,
    pub description: String,
    pub kms_key_id: Option<String>,
    pub tags: Vec<Tag>,
    /// The sub-account whose key the secret holds.
    pub target_uin: u64,
}

/// `AdditionalConfig` of an API-key secret: `{"TargetUin": <sub-account uin>}`.
pub fn target_uin(additional_config: Option<&str>) -> Result<u64> {
    #[derive(Deserialize)]
    struct Config {
        #[serde(rename = "TargetUin")]
        target_uin: u64,
    }
    let text = additional_config.filter(|c| !c.is_empty()).ok_or_else(|| {
        Error::MissingParameter(
            "SecretType 3 needs AdditionalConfig {\"TargetUin\": <sub-account uin>}".into(),
        )
    })?;
    let c: Config = serde_json::from_str(text).map_err(|_| {
        Error::InvalidValue(
            "AdditionalConfig must be {\"TargetUin\": <sub-account uin>} for SecretType 3".into(),
        )
    })?;
    Ok(c.target_uin)
}

impl Ssm {
    /// Hands Secrets Manager the API-key issuer (CAM), once it exists.
    pub fn set_key_issuer(&self, issuer: Arc<dyn KeyIssuer>) {
        let _ = self.key_issuer.set(issuer);
    }

    fn issuer(&self) -> Result<&Arc<dyn KeyIssuer>> {
        self.key_issuer
            .get()
            .ok_or_else(|| Error::Internal("no API key issuer".into()))
    }

    /// CreateSecret with SecretType 3: a new key of the target sub-account (the caller
    /// needs the right to manage that user's keys), stored as the secret. Returns the
    /// secret and the FlowID of the finished request.
    pub fn create_api_key_secret(
        &self,
        caller: &Caller,
        new: NewApiKeySecret,
    ) -> Result<(SecretRecord, i64)> {
        check_name(&new.name)?;
        check_description(&new.description)?;
        if new.target_uin == ROOT_UIN || new.target_uin == caller.owner_uin {
            return Err(Error::InvalidValue(
                "API-key secrets hold keys of sub-accounts, not of the root account".into(),
            ));
        }
        if self
            .store
            .get_secret(&caller.region, caller.owner_uin, &new.name)?
            .is_some()
        {
            return Err(Error::SecretExists(new.name));
        }
        let issuer = self.issuer()?;
        let key = issuer.issue(caller, new.target_uin)?;
        let made = self.store_api_key_secret(caller, &new, &key);
        match made {
            Ok(s) => {
                let flow = self.rotation.insert_flow(
                    &caller.trail,
                    &FlowRecord {
                        flow_id: 0,
                        region: s.region.clone(),
                        owner_uin: s.owner_uin,
                        secret_name: s.name.clone(),
                        action: "CreateSecret".into(),
                        status: FLOW_SUCCEEDED,
                        description: format!("API key of {} stored", new.target_uin),
                        create_time: self.clock.now(),
                    },
                )?;
                Ok((s, flow))
            }
            Err(e) => {
                // The key nobody will ever read is deleted again.
                let _ = issuer.delete(&caller.internal(), new.target_uin, &key.user);
                Err(e)
            }
        }
    }

    fn store_api_key_secret(
        &self,
        caller: &Caller,
        new: &NewApiKeySecret,
        key: &Login,
    ) -> Result<SecretRecord> {
        let now = self.clock.now();
        let secret = self.create(
            caller,
            NewSecret {
                secret_type: SECRET_TYPE_API_KEY,
                ssh: Default::default(),
                name: new.name.clone(),
                version_id: DEFAULT_VERSION_ID.into(),
                description: new.description.clone(),
                kms_key_id: new.kms_key_id.clone(),
                value: SecretValue {
                    bytes: ApiKeyValue::to_bytes(key),
                    is_binary: false,
                },
                tags: new.tags.clone(),
            },
        )?;
        let record = ProductSecretRecord {
            region: secret.region.clone(),
            owner_uin: secret.owner_uin,
            name: secret.name.clone(),
            product: PRODUCT_CAM.into(),
            instance_id: new.target_uin.to_string(),
            user_prefix: String::new(),
            domains: Vec::new(),
            privileges: "[]".into(),
            rotation_enabled: false,
            frequency_days: 30,
            next_rotation: now + 30 * DAY,
            last_rotation: now,
            retire_account: String::new(),
            retire_at: 0,
            failures: 0,
            retry_at: 0,
        };
        self.register_product_secret(caller, secret, &record, key, now)
    }

    fn target_of(p: &ProductSecretRecord) -> Result<u64> {
        p.instance_id
            .parse()
            .map_err(|_| Error::Store(format!("bad target of API-key secret {}", p.name)))
    }

    /// Issues a new key and publishes it; a key that could not be published is deleted.
    pub(super) fn rotate_api_key(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        secret: &SecretRecord,
        now: i64,
    ) -> Result<()> {
        let uin = Self::target_of(p)?;
        let issuer = self.issuer()?;
        let key = issuer.issue(caller, uin)?;
        if let Err(e) = self.publish(caller, secret, &key, now) {
            let _ = issuer.delete(caller, uin, &key.user);
            return Err(e);
        }
        tracing::info!(secret = %p.name, uin, key = %key.user, "API-key secret rotated");
        Ok(())
    }

    /// Deletes the secret's keys (DeleteMode 1); empty ids are skipped.
    pub(super) fn delete_api_keys(
        &self,
        caller: &Caller,
        p: &ProductSecretRecord,
        ids: &[&str],
    ) -> Result<()> {
        let uin = Self::target_of(p)?;
        let issuer = self.issuer()?;
        for id in ids.iter().filter(|id| !id.is_empty()) {
            issuer.delete(caller, uin, id)?;
        }
        Ok(())
    }

    /// After the overlap the previous key is disabled; one overlap later it is deleted.
    pub(super) fn retire_api_key(&self, caller: &Caller, p: &ProductSecretRecord) -> Result<()> {
        let uin = Self::target_of(p)?;
        let issuer = self.issuer()?;
        match p.retire_account.strip_prefix(DISABLED) {
            Some(id) => {
                issuer.delete(caller, uin, id)?;
                self.retired(caller, p, None)?;
                tracing::info!(secret = %p.name, key = %id, "previous API key deleted");
            }
            None => {
                let id = &p.retire_account;
                issuer.set_enabled(caller, uin, id, false)?;
                let later = self.clock.now() + self.cfg.rotation.overlap_secs as i64;
                self.retired(caller, p, Some((format!("{DISABLED}{id}"), later)))?;
                tracing::info!(secret = %p.name, key = %id, "previous API key disabled");
            }
        }
        Ok(())
    }
}
