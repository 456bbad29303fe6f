//! The CMK state machine as one table: for every operation and every key state, either
//! "allowed" or the documented refusal. Every action consults `check` before it acts.

use crate::error::{Error, Result};
use crate::store::{KeyRecord, KeyState};

/// Operations whose permission depends on the key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Describe,
    Encrypt,
    GenerateDataKey,
    Decrypt,
    ReEncryptFrom,
    ReEncryptTo,
    UpdateAlias,
    UpdateDescription,
    Enable,
    Disable,
    ScheduleDeletion,
    CancelDeletion,
    Archive,
    CancelArchive,
    EnableRotation,
    DisableRotation,
    GetRotationStatus,
    Rotate,
    Bind,
    Unbind,
    GetPublicKey,
    Sign,
    Verify,
    AsymmetricDecrypt,
}

impl Op {
    /// Encrypt/Decrypt-family operations: they need an ENCRYPT_DECRYPT key, and refusing
    /// them on a key pending deletion raises an alarm.
    pub fn is_symmetric_crypto(self) -> bool {
        matches!(
            self,
            Op::Encrypt | Op::Decrypt | Op::GenerateDataKey | Op::ReEncryptFrom | Op::ReEncryptTo
        )
    }

    /// Service-managed keys (Owner other than `user`) refuse these, with
    /// `UnsupportedOperation.NotUserCreatedCmk`: what the key cannot be.
    pub fn managed_refusal(self) -> Option<&'static str> {
        match self {
            Op::UpdateAlias => Some("renamed"),
            Op::Disable => Some("disabled"),
            Op::Archive => Some("archived"),
            Op::ScheduleDeletion => Some("deleted"),
            _ => None,
        }
    }

    /// Operations that use the key's material (refused once imported material expired).
    pub fn uses_material(self) -> bool {
        self.is_symmetric_crypto()
            || matches!(
                self,
                Op::GetPublicKey | Op::Sign | Op::Verify | Op::AsymmetricDecrypt
            )
    }

    pub const ALL: [Op; 24] = [
        Op::Describe,
        Op::Encrypt,
        Op::GenerateDataKey,
        Op::Decrypt,
        Op::ReEncryptFrom,
        Op::ReEncryptTo,
        Op::UpdateAlias,
        Op::UpdateDescription,
        Op::Enable,
        Op::Disable,
        Op::ScheduleDeletion,
        Op::CancelDeletion,
        Op::Archive,
        Op::CancelArchive,
        Op::EnableRotation,
        Op::DisableRotation,
        Op::GetRotationStatus,
        Op::Rotate,
        Op::Bind,
        Op::Unbind,
        Op::GetPublicKey,
        Op::Sign,
        Op::Verify,
        Op::AsymmetricDecrypt,
    ];
}

/// What a state does with an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Allow,
    /// `ResourceUnavailable.CmkDisabled`
    Disabled,
    /// `ResourceUnavailable.KeyPendingDelete`
    PendingDelete,
    /// `ResourceUnavailable.CmkArchived`
    Archived,
    /// `ResourceUnavailable.CmkStateNotSupport`
    NotSupported,
    /// `ResourceUnavailable.CmkShouldBeDisabled`
    ShouldBeDisabled,
    /// `ResourceUnavailable.CmkNotPendingDelete`
    NotPendingDelete,
}

use Rule::*;

/// Columns: Enabled, Disabled, PendingDelete, PendingImport, Archived (as `KeyState::ALL`).
pub fn rules(op: Op) -> [Rule; 5] {
    match op {
        Op::Describe | Op::GetRotationStatus | Op::Unbind => [Allow; 5],
        Op::Encrypt
        | Op::GenerateDataKey
        | Op::ReEncryptTo
        | Op::Rotate
        | Op::Bind
        | Op::GetPublicKey
        | Op::Sign => [Allow, Disabled, PendingDelete, NotSupported, Archived],
        // Archived keys still decrypt: that is what archiving is for.
        Op::Decrypt | Op::ReEncryptFrom | Op::AsymmetricDecrypt | Op::Verify => {
            [Allow, Disabled, PendingDelete, NotSupported, Allow]
        }
        Op::UpdateAlias | Op::UpdateDescription => [Allow, Allow, PendingDelete, Allow, Allow],
        // Repeating a transition is a no-op, as in Tencent KMS.
        Op::Enable | Op::Disable => [Allow, Allow, PendingDelete, NotSupported, Archived],
        // PendingImport keys have no material to protect and may be deleted directly.
        Op::ScheduleDeletion => [
            ShouldBeDisabled,
            Allow,
            PendingDelete,
            Allow,
            ShouldBeDisabled,
        ],
        Op::CancelDeletion => [
            NotPendingDelete,
            NotPendingDelete,
            Allow,
            NotPendingDelete,
            NotPendingDelete,
        ],
        Op::Archive => [Allow, Disabled, PendingDelete, NotSupported, Allow],
        Op::CancelArchive => [
            NotSupported,
            NotSupported,
            PendingDelete,
            NotSupported,
            Allow,
        ],
        Op::EnableRotation => [Allow, Allow, PendingDelete, NotSupported, Archived],
        // Turning rotation off is harmless wherever the key can still be managed.
        Op::DisableRotation => [Allow, Allow, PendingDelete, Allow, Archived],
    }
}

fn column(state: KeyState) -> usize {
    KeyState::ALL
        .iter()
        .position(|s| *s == state)
        .unwrap_or_default()
}

/// Allowed, or the documented error for this operation in the key's state.
pub fn check(op: Op, k: &KeyRecord) -> Result<()> {
    let id = || k.key_id.clone();
    match rules(op)[column(k.state)] {
        Allow => Ok(()),
        Disabled => Err(Error::CmkDisabled(id())),
        PendingDelete => Err(Error::KeyPendingDelete(id())),
        Archived => Err(Error::CmkArchived(id())),
        ShouldBeDisabled => Err(Error::CmkShouldBeDisabled(id())),
        NotPendingDelete => Err(Error::CmkNotPendingDelete(id())),
        NotSupported => Err(Error::CmkStateNotSupport(format!(
            "CMK {} is in state {}, which does not allow {op:?}",
            k.key_id,
            k.state.as_str()
        ))),
    }
}

/// The state an allowed operation leaves the key in (None: unchanged).
pub fn target(op: Op, k: &KeyRecord) -> Option<KeyState> {
    match op {
        Op::Enable => Some(KeyState::Enabled),
        Op::Disable => Some(KeyState::Disabled),
        Op::ScheduleDeletion => Some(KeyState::PendingDelete),
        // Back to Disabled (scheduling required it), or to PendingImport if the key never
        // received material.
        Op::CancelDeletion if k.current_version == 0 => Some(KeyState::PendingImport),
        Op::CancelDeletion => Some(KeyState::Disabled),
        Op::Archive => Some(KeyState::Archived),
        Op::CancelArchive => Some(KeyState::Enabled),
        _ => None,
    }
}

/// Checks `op` and applies its state change.
pub fn transition(op: Op, k: &mut KeyRecord) -> Result<()> {
    check(op, k)?;
    if let Some(next) = target(op, k) {
        k.state = next;
    }
    Ok(())
}
