//! The CMK state machine, in one place: which state allows which operation, and transitions.

use crate::error::{Error, Result};
use crate::store::{KeyRecord, KeyState};

/// Encrypt and GenerateDataKey need an Enabled key.
pub fn check_usable_for_encrypt(k: &KeyRecord) -> Result<()> {
    match k.state {
        KeyState::Enabled => Ok(()),
        KeyState::Archived => Err(Error::CmkArchived(k.key_id.clone())),
        other => refuse(k, other),
    }
}

/// Decrypt works on Enabled and Archived keys (archived keys only decrypt).
pub fn check_usable_for_decrypt(k: &KeyRecord) -> Result<()> {
    match k.state {
        KeyState::Enabled | KeyState::Archived => Ok(()),
        other => refuse(k, other),
    }
}

fn refuse(k: &KeyRecord, state: KeyState) -> Result<()> {
    Err(match state {
        KeyState::Disabled => Error::CmkDisabled(k.key_id.clone()),
        KeyState::PendingDelete => Error::KeyPendingDelete(k.key_id.clone()),
        KeyState::Archived => Error::CmkArchived(k.key_id.clone()),
        KeyState::PendingImport | KeyState::Enabled => Error::CmkStateNotSupport(format!(
            "CMK {} is in state {} and cannot be used for this operation",
            k.key_id,
            state.as_str()
        )),
    })
}

/// Alias and description edits are refused while a key waits for deletion.
pub fn check_editable(k: &KeyRecord) -> Result<()> {
    if k.state == KeyState::PendingDelete {
        return Err(Error::KeyPendingDelete(k.key_id.clone()));
    }
    Ok(())
}

pub fn check_can_set_enabled(k: &KeyRecord, enabled: bool) -> Result<()> {
    match (k.state, enabled) {
        (KeyState::Enabled | KeyState::Disabled, _) => Ok(()),
        (other, _) => Err(Error::CmkStateNotSupport(format!(
            "CMK {} is in state {} and cannot be {}",
            k.key_id,
            other.as_str(),
            if enabled { "enabled" } else { "disabled" }
        ))),
    }
}

/// EnableKey / DisableKey: Enabled <-> Disabled; repeating a transition is a no-op.
pub fn set_enabled(k: &mut KeyRecord, enabled: bool) -> Result<()> {
    check_can_set_enabled(k, enabled)?;
    k.state = if enabled {
        KeyState::Enabled
    } else {
        KeyState::Disabled
    };
    Ok(())
}
