//! Finding, creating and vetting the two token keys (root and seal).
//!
//! Handles to private objects are not stable: PKCS#11 invalidates them when the process
//! logs out (SoftHSM2 hands out new ones after the next login). So each pooled session keeps
//! its own copy of the handles and can [`locate`] the keys again. Every locate re-checks the
//! attributes, including `CKA_LOCAL`/`CKA_NEVER_EXTRACTABLE`: a PIN holder who destroyed our
//! root key and imported one with a known value under the same label would otherwise get
//! every *new* data key wrapped under a key they know.

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use cryptoki::types::Ulong;

use crate::error::rv_of;
use crate::error::Error;
use crate::templates::{self, ROOT_KEY_LABEL, SEAL_KEY_LABEL};

/// Handles of the root and seal key, valid in the session that located them (until logout).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenKeys {
    pub(crate) root: ObjectHandle,
    pub(crate) seal: ObjectHandle,
}

#[derive(Clone, Copy)]
enum KeyUsage {
    WrapUnwrap,
    EncryptDecrypt,
}

/// First-open setup: find or create both keys, vet them, and check that the token really
/// enforces the root key's unwrap template. Returns the root key's handle in `session`.
pub(crate) fn provision(session: &Session) -> Result<ObjectHandle, Error> {
    let root = find_or_create(session, ROOT_KEY_LABEL, templates::root_key_template)?;
    verify(session, root, ROOT_KEY_LABEL, KeyUsage::WrapUnwrap)?;
    probe_unwrap_template(session, root)?;
    let seal = find_or_create(session, SEAL_KEY_LABEL, || {
        Ok(templates::seal_key_template())
    })?;
    verify(session, seal, SEAL_KEY_LABEL, KeyUsage::EncryptDecrypt)?;
    Ok(root)
}

/// Find both (existing) keys and vet them.
pub(crate) fn locate(session: &Session) -> Result<TokenKeys, Error> {
    let missing = |label| Error::KeyPolicy {
        label,
        reason: "key not found on the token".into(),
    };
    let root = find_one(session, ROOT_KEY_LABEL)?.ok_or_else(|| missing(ROOT_KEY_LABEL))?;
    verify(session, root, ROOT_KEY_LABEL, KeyUsage::WrapUnwrap)?;
    let seal = find_one(session, SEAL_KEY_LABEL)?.ok_or_else(|| missing(SEAL_KEY_LABEL))?;
    verify(session, seal, SEAL_KEY_LABEL, KeyUsage::EncryptDecrypt)?;
    Ok(TokenKeys { root, seal })
}

fn find_one(session: &Session, label: &'static str) -> Result<Option<ObjectHandle>, Error> {
    let found = session
        .find_objects(&templates::find_template(label))
        .map_err(Error::pkcs11("C_FindObjects"))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(Error::KeyPolicy {
            label,
            reason: format!(
                "{} keys carry this label; refusing to pick one",
                found.len()
            ),
        }),
    }
}

fn find_or_create(
    session: &Session,
    label: &'static str,
    template: impl FnOnce() -> Result<Vec<Attribute>, Error>,
) -> Result<ObjectHandle, Error> {
    if let Some(key) = find_one(session, label)? {
        return Ok(key);
    }
    session
        .generate_key(&Mechanism::AesKeyGen, &template()?)
        .map_err(Error::pkcs11("C_GenerateKey"))
}

/// Check that a root/seal key has the required attributes. A pre-provisioned, substituted or
/// tampered-with key with weaker attributes is refused.
fn verify(
    session: &Session,
    key: ObjectHandle,
    label: &'static str,
    usage: KeyUsage,
) -> Result<(), Error> {
    let wraps = matches!(usage, KeyUsage::WrapUnwrap);
    let required = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(Ulong::new(templates::AES256_LEN as _)),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        // Generated inside the token and never exposed: proves nobody outside knows the
        // value, not merely that it is protected now.
        Attribute::Local(true),
        Attribute::AlwaysSensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
        Attribute::Wrap(wraps),
        Attribute::Unwrap(wraps),
        Attribute::Encrypt(!wraps),
        Attribute::Decrypt(!wraps),
    ];
    let types: Vec<AttributeType> = required.iter().map(Attribute::attribute_type).collect();
    let actual = session
        .get_attributes(key, &types)
        .map_err(Error::pkcs11("C_GetAttributeValue"))?;
    for want in &required {
        if !actual.contains(want) {
            let got = actual
                .iter()
                .find(|a| a.attribute_type() == want.attribute_type());
            return Err(Error::KeyPolicy {
                label,
                reason: format!("expected {want:?}, token has {got:?}"),
            });
        }
    }
    if wraps {
        let info = session
            .get_attribute_info(key, &[templates::UNWRAP_TEMPLATE_TYPE])
            .map_err(Error::pkcs11("C_GetAttributeValue"))?;
        // cryptoki cannot read the nested values back; presence is checked here and
        // enforcement by `probe_unwrap_template`.
        if !matches!(info.first(), Some(AttributeInfo::Available(n)) if *n > 0) {
            return Err(Error::KeyPolicy {
                label,
                reason: "CKA_UNWRAP_TEMPLATE is missing".into(),
            });
        }
    }
    Ok(())
}

/// Check that the token really enforces the root key's unwrap template, using a throw-away
/// key so that nothing of value is exposed if it does not.
///
/// On any error return the caller drops `session`, which destroys whatever session objects
/// are left in it.
fn probe_unwrap_template(session: &Session, root: ObjectHandle) -> Result<(), Error> {
    let violation = |reason: &str| Error::KeyPolicy {
        label: ROOT_KEY_LABEL,
        reason: reason.to_owned(),
    };
    let probe = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &templates::generated_data_key_template(),
        )
        .map_err(Error::pkcs11("C_GenerateKey"))?;
    let wrapped = session.wrap_key(&Mechanism::AesKeyWrapPad, root, probe);
    session
        .destroy_object(probe)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    let wrapped = wrapped.map_err(Error::pkcs11("C_WrapKey"))?;

    // 1. Explicitly asking for an extractable, non-sensitive key must be refused.
    let weak = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    match session.unwrap_key(&Mechanism::AesKeyWrapPad, root, &wrapped, &weak) {
        Ok(handle) => {
            // Best effort; the caller closes the session on this error anyway.
            let _ = session.destroy_object(handle);
            return Err(violation(
                "token unwrapped a key as extractable/non-sensitive: CKA_UNWRAP_TEMPLATE is not enforced",
            ));
        }
        // Refused, as it should be. (SoftHSM2: CKR_TEMPLATE_INCONSISTENT.) Errors that say
        // nothing about the template are real failures.
        Err(e) if !is_refusal(rv_of(&e)) => return Err(Error::pkcs11("C_UnwrapKey")(e)),
        Err(_) => {}
    }

    // 2. A template silent about SENSITIVE/EXTRACTABLE must not fall back to the token's
    //    defaults. Refusing is fine (SoftHSM2 does); so is applying the unwrap template.
    let silent = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
    ];
    match session.unwrap_key(&Mechanism::AesKeyWrapPad, root, &wrapped, &silent) {
        Ok(handle) => {
            let attrs = session.get_attributes(
                handle,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            );
            session
                .destroy_object(handle)
                .map_err(Error::pkcs11("C_DestroyObject"))?;
            let attrs = attrs.map_err(Error::pkcs11("C_GetAttributeValue"))?;
            if !(attrs.contains(&Attribute::Sensitive(true))
                && attrs.contains(&Attribute::Extractable(false)))
            {
                return Err(violation(
                    "token does not apply CKA_UNWRAP_TEMPLATE to keys unwrapped without explicit attributes",
                ));
            }
        }
        Err(e) if !is_refusal(rv_of(&e)) => return Err(Error::pkcs11("C_UnwrapKey")(e)),
        Err(_) => {}
    }
    Ok(())
}

/// Return values by which a token says "not with that template".
fn is_refusal(rv: Option<RvError>) -> bool {
    matches!(
        rv,
        Some(
            RvError::TemplateInconsistent
                | RvError::TemplateIncomplete
                | RvError::AttributeValueInvalid
                | RvError::AttributeReadOnly
                | RvError::AttributeTypeInvalid
                | RvError::KeyFunctionNotPermitted
        )
    )
}
