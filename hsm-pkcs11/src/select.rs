//! Choosing the token: by label, serial number or slot ID, as `[hsm]` says.
//!
//! Used when opening and again by the session pool when a token went away, so it sits below
//! both (`open` and `pool` import it; it imports neither).

use std::fmt;

use cryptoki::context::Pkcs11;
use cryptoki::slot::{Slot, TokenInfo};

use crate::error::Error;

/// Which token to use: every criterion given must hold, and exactly one token may match.
#[derive(Clone, Debug)]
pub(crate) struct TokenSelector {
    /// Without PKCS#11's space padding; `None`: any label.
    pub(crate) label: Option<String>,
    pub(crate) serial: Option<String>,
    pub(crate) slot: Option<u64>,
}

impl TokenSelector {
    /// From `Pkcs11Config`'s `token_label` (empty: any), `token_serial` and `slot`.
    pub(crate) fn new(label: &str, serial: Option<&str>, slot: Option<u64>) -> Result<Self, Error> {
        let trimmed = |s: &str| Some(s.trim_end_matches(' ').to_owned()).filter(|s| !s.is_empty());
        let sel = TokenSelector {
            label: trimmed(label),
            serial: serial.and_then(trimmed),
            slot,
        };
        if sel.label.is_none() && sel.serial.is_none() && sel.slot.is_none() {
            // "The first token" would silently change meaning when a token is added.
            return Err(Error::InvalidConfig(
                "select the token by label, serial or slot",
            ));
        }
        Ok(sel)
    }

    fn matches(&self, slot: Slot, info: &TokenInfo) -> bool {
        self.label
            .as_deref()
            .is_none_or(|l| info.label().trim_end_matches(' ') == l)
            && self
                .serial
                .as_deref()
                .is_none_or(|s| info.serial_number().trim_end_matches(' ') == s)
            && self.slot.is_none_or(|id| slot.id() == id)
    }
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(l) = &self.label {
            parts.push(format!("label {l:?}"));
        }
        if let Some(s) = &self.serial {
            parts.push(format!("serial {s:?}"));
        }
        if let Some(id) = self.slot {
            parts.push(format!("slot {id}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The one slot whose token matches `sel`. Asks the module for a fresh slot list each time,
/// so a token that was removed and reinserted (possibly into another slot) is found again.
pub(crate) fn find_slot(pkcs11: &Pkcs11, sel: &TokenSelector) -> Result<(Slot, String), Error> {
    let slots = pkcs11
        .get_slots_with_token()
        .map_err(Error::pkcs11("C_GetSlotList"))?;
    let mut found = None;
    for slot in slots {
        // A slot whose token cannot be queried (e.g. just removed) cannot be the one we want.
        let Ok(info) = pkcs11.get_token_info(slot) else {
            continue;
        };
        if sel.matches(slot, &info) {
            if found.is_some() {
                return Err(Error::AmbiguousToken(sel.to_string()));
            }
            found = Some((slot, info.label().trim_end_matches(' ').to_owned()));
        }
    }
    found.ok_or_else(|| Error::TokenNotFound(sel.to_string()))
}
