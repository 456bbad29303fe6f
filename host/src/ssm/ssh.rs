//! SSH key pair secrets (SecretType 2), emulated on-prem: Keyward generates an Ed25519 key pair,
//! keeps both halves as the secret's `SSM_Current` value (envelope-encrypted like any other
//! secret), and hands them out in OpenSSH form. There is no CVM here, so the cloud-only fields
//! (ProjectId, instance bindings, CleanSSHKey) are recorded or accepted without effect.

use super::{NewSecret, SecretValue, SshKeyInfo, Ssm, DEFAULT_VERSION_ID};
use crate::cam::Caller;
use crate::error::{Error, Result};
use crate::store::{SecretRecord, Tag};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub const SECRET_TYPE_SSH: u64 = 2;

/// The stored value of an SSH key pair secret.
#[derive(Serialize, Deserialize)]
struct KeyPairValue {
    #[serde(rename = "PublicKey")]
    public_key: String,
    #[serde(rename = "PrivateKey")]
    private_key: String,
}

impl Drop for KeyPairValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.private_key);
    }
}

/// What CreateSSHKeyPairSecret asks for.
pub struct NewSshKeyPair {
    pub name: String,
    pub description: String,
    pub kms_key_id: Option<String>,
    pub key_name: Option<String>,
    pub project_id: i64,
    pub tags: Vec<Tag>,
}

pub struct KeyPair {
    pub info: SshKeyInfo,
    pub public_key: String,
    pub private_key: Zeroizing<String>,
}

/// Key pair names: at most 25 of `[A-Za-z0-9_]`, starting with a letter or digit.
pub fn check_key_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 25
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !ok {
        return Err(Error::InvalidValue(format!(
            "invalid SSHKeyName `{name}`: at most 25 letters, digits or `_`, starting with a letter or digit"
        )));
    }
    Ok(())
}

impl Ssm {
    /// CreateSSHKeyPairSecret: a new Ed25519 key pair stored as a secret.
    pub fn create_ssh_key_pair(&self, caller: &Caller, new: NewSshKeyPair) -> Result<SecretRecord> {
        let NewSshKeyPair {
            name,
            description,
            kms_key_id,
            key_name,
            project_id,
            tags,
        } = new;
        let mut id_bytes = [0u8; 4];
        OsRng.fill_bytes(&mut id_bytes);
        let id = format!("skey-{}", hex::encode(id_bytes));
        let key_name = match key_name.filter(|n| !n.is_empty()) {
            Some(n) => {
                check_key_name(&n)?;
                n
            }
            None => id.replace('-', "_"),
        };
        let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| Error::Internal(format!("SSH key generation: {e}")))?;
        let private_key = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| Error::Internal(format!("SSH key encoding: {e}")))?;
        let mut public = key.public_key().clone();
        public.set_comment(&key_name);
        let public_key = public
            .to_openssh()
            .map_err(|e| Error::Internal(format!("SSH key encoding: {e}")))?;
        let value = KeyPairValue {
            public_key,
            private_key: private_key.to_string(),
        };
        let json =
            Zeroizing::new(serde_json::to_vec(&value).map_err(|e| Error::Internal(e.to_string()))?);
        self.create(
            caller,
            NewSecret {
                secret_type: SECRET_TYPE_SSH,
                ssh: SshKeyInfo {
                    id,
                    name: key_name,
                    project_id,
                },
                name,
                version_id: DEFAULT_VERSION_ID.into(),
                description,
                kms_key_id,
                value: SecretValue {
                    bytes: json,
                    is_binary: false,
                },
                tags,
            },
        )
    }

    /// GetSSHKeyPairValue, by secret name or key pair id.
    pub fn ssh_key_pair(
        &self,
        caller: &Caller,
        name: Option<&str>,
        key_id: Option<&str>,
    ) -> Result<KeyPair> {
        let secret = match (
            name.filter(|n| !n.is_empty()),
            key_id.filter(|k| !k.is_empty()),
        ) {
            (Some(n), _) => self.secret(caller, n)?,
            (None, Some(k)) => self
                .store
                .secret_by_ssh_key(&caller.region, caller.owner_uin, k)?
                .ok_or_else(|| Error::SecretNotFound(k.to_string()))?,
            (None, None) => {
                return Err(Error::MissingParameter(
                    "give SecretName or SSHKeyId".into(),
                ))
            }
        };
        if secret.secret_type != SECRET_TYPE_SSH {
            return Err(Error::InvalidValue(format!(
                "secret {} is not an SSH key pair secret",
                secret.name
            )));
        }
        let v = self.get_value(caller, &secret.name, DEFAULT_VERSION_ID)?;
        let pair: KeyPairValue = serde_json::from_slice(&v.bytes)
            .map_err(|_| Error::Internal("stored key pair is malformed".into()))?;
        Ok(KeyPair {
            info: SshKeyInfo {
                id: secret.ssh_key_id.clone(),
                name: secret.ssh_key_name.clone(),
                project_id: secret.project_id,
            },
            public_key: pair.public_key.clone(),
            private_key: Zeroizing::new(pair.private_key.clone()),
        })
    }
}
