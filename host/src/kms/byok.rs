//! Bring your own key: EXTERNAL CMKs get their material from the caller, encrypted to an
//! RSA-2048 wrapping key that GetParametersForImport creates in the HSM. The material is
//! unwrapped inside the HSM (AES) and sealed like generated material; a check value computed
//! there lets only the same material be imported again, so old ciphertexts come back.

use super::{Caller, Kms, ORIGIN_EXTERNAL};
use crate::error::{Error, Result};
use crate::integrity::Subject;
use crate::pubkey::DecryptScheme;
use crate::store::{Fence, ImportParams, KeyRecord, KeyState, Trail};
use keyward_shared::Algorithm;

/// Import tokens and wrapping keys live 24 hours.
pub const IMPORT_WINDOW: i64 = 86_400;
/// The largest ValidTo the API accepts.
pub const MAX_VALID_TO: u64 = 2_147_443_200;

fn external(k: &KeyRecord) -> Result<()> {
    if k.origin != ORIGIN_EXTERNAL {
        return Err(Error::NotExternalCmk(k.key_id.clone()));
    }
    match k.state {
        KeyState::Enabled | KeyState::PendingImport => Ok(()),
        KeyState::Disabled => Err(Error::CmkDisabled(k.key_id.clone())),
        KeyState::PendingDelete => Err(Error::KeyPendingDelete(k.key_id.clone())),
        KeyState::Archived => Err(Error::CmkArchived(k.key_id.clone())),
    }
}

fn wrapping_scheme(name: &str) -> Result<DecryptScheme> {
    super::rsa_decrypt_scheme(name)
}

impl Kms {
    pub fn import_parameters(
        &self,
        caller: &Caller,
        key_id: &str,
        wrapping_algorithm: &str,
        wrapping_key_spec: &str,
    ) -> Result<ImportParams> {
        if wrapping_key_spec != "RSA_2048" {
            return Err(Error::InvalidValue(format!(
                "WrappingKeySpec must be RSA_2048, not `{wrapping_key_spec}`"
            )));
        }
        wrapping_scheme(wrapping_algorithm)?;
        let k = self.describe_key(caller, key_id)?;
        external(&k)?;
        let (sealed_private, public_key) = self.hsm.generate_key_pair(Algorithm::Rsa2048)?;
        let token = hex::encode(self.hsm.random(32)?.as_slice());
        let mut params = ImportParams {
            token,
            key_id: k.key_id,
            wrapping_algorithm: wrapping_algorithm.to_string(),
            sealed_private,
            public_key,
            valid_to: self.clock.now() + IMPORT_WINDOW,
            tag: vec![],
        };
        params.tag = self.system.tag(&Subject::import_params(&params))?;
        self.store.insert_import_params(&caller.trail, &params)?;
        Ok(params)
    }

    pub fn import_material(
        &self,
        caller: &Caller,
        key_id: &str,
        encrypted: &[u8],
        token: &str,
        valid_to: Option<u64>,
    ) -> Result<()> {
        let now = self.clock.now();
        let valid_to = match valid_to.unwrap_or(0) {
            0 => 0,
            v if v > MAX_VALID_TO || (v as i64) <= now => {
                return Err(Error::InvalidValue(format!(
                    "ValidTo must be 0 or a future time up to {MAX_VALID_TO}"
                )))
            }
            v => v as i64,
        };
        let k = self.describe_key(caller, key_id)?;
        external(&k)?;
        let params = self
            .store
            .get_import_params(token)?
            .filter(|p| p.valid_to > now)
            .ok_or(Error::TokenExpired)?;
        // Before the wrapping key is used: parameters written into the database by hand
        // would make the HSM unwrap under a key of the writer's choosing.
        if params.tag.is_empty() {
            return Err(Error::TokenExpired);
        }
        self.system
            .check(&Subject::import_params(&params), &params.tag)?;
        if params.key_id != k.key_id {
            return Err(Error::InvalidValue(
                "ImportToken was issued for another CMK".into(),
            ));
        }
        let (sealed, kcv) = self
            .hsm
            .import_wrapped(
                k.algorithm,
                &params.sealed_private,
                wrapping_scheme(&params.wrapping_algorithm)?,
                encrypted,
            )
            .map_err(|e| match e {
                Error::DecryptFailed | Error::InvalidValue(_) => Error::DecryptMaterial(format!(
                    "EncryptedKeyMaterial does not unwrap to {} bytes of {} material with the wrapping key",
                    k.algorithm.key_len(),
                    k.algorithm.api_name()
                )),
                other => other,
            })?;
        self.store.set_key_material(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            key_id,
            Some(&self.new_version(key_id, 1, sealed, vec![], now)?),
            &mut |k| {
                external(k)?;
                let stored = stored_check(&k.key_id, &kcv);
                // Keys imported before this check was shortened keep the full value until
                // their next import.
                let same = match k.material_kcv.len() {
                    0 => true,
                    16 => k.material_kcv == kcv,
                    _ => k.material_kcv == stored,
                };
                if !same {
                    return Err(Error::MaterialNotMatch(k.key_id.clone()));
                }
                k.material_kcv = stored.clone();
                k.valid_to = valid_to;
                k.state = KeyState::Enabled;
                Ok(())
            },
        )?;
        self.forget_versions(key_id);
        Ok(())
    }

    pub fn delete_material(&self, caller: &Caller, key_id: &str) -> Result<()> {
        super::check_key_id(key_id)?;
        self.store.set_key_material(
            &caller.trail,
            &caller.region,
            caller.owner_uin,
            key_id,
            None,
            &mut |k| {
                external(k)?;
                k.state = KeyState::PendingImport;
                k.valid_to = 0;
                Ok(())
            },
        )?;
        self.forget_versions(key_id);
        Ok(())
    }

    /// Removes material whose ValidTo has passed (the key waits for a re-import).
    pub(super) fn expire_materials(&self, now: i64, fence: Fence) -> Result<usize> {
        let mut n = 0;
        for k in self.store.keys_in_state(KeyState::Enabled)? {
            if k.origin == ORIGIN_EXTERNAL && k.valid_to > 0 && k.valid_to <= now {
                // Expiry is bookkeeping the deadline the importer chose: no record.
                let res = self.store.set_key_material(
                    &Trail::off().fenced(Some(fence)),
                    &k.region,
                    k.owner_uin,
                    &k.key_id,
                    None,
                    &mut |k| {
                        k.state = KeyState::PendingImport;
                        k.valid_to = 0;
                        Ok(())
                    },
                );
                if res.is_ok() {
                    self.forget_versions(&k.key_id);
                    tracing::info!(key_id = %k.key_id, "imported key material expired");
                    n += 1;
                }
            }
        }
        Ok(n)
    }
}

/// What the store keeps of imported material's check value (AES-ECB of a zero block,
/// computed in the HSM): 4 bytes of a digest bound to the key id, enough to tell a re-import
/// of other material (a false match has probability 2^-32, and an importer who forced one
/// could only make old ciphertexts unreadable, as DeleteImportedKeyMaterial does), but no
/// offline test for a guessed material, which the full value would be.
fn stored_check(key_id: &str, kcv: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"keyward/kcv/v1\0");
    h.update(key_id.as_bytes());
    h.update([0]);
    h.update(kcv);
    h.finalize()[..4].to_vec()
}
