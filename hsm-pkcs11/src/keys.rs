//! Finding, creating and vetting the two token keys (root and seal).
//!
//! Handles to private objects are not stable: PKCS#11 invalidates them when the process
//! logs out (SoftHSM2 hands out new ones after the next login). So each pooled session keeps
//! its own copy of the handles and can [`locate`] the keys again. Every locate re-checks all
//! the attributes, the nested unwrap template included, and `CKA_LOCAL`/`CKA_NEVER_EXTRACTABLE`:
//! a PIN holder who planted a root under our label before the first start (or, on a token that
//! ignores `CKA_DESTROYABLE`, replaced ours) would otherwise get every *new* data key wrapped
//! under a key they know or may unwrap weakly. The (costlier) unwrap-template probe and the
//! identity run once per [`provision`], i.e. on every start.

use cryptoki::error::RvError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use cryptoki_sys::{
    CKA_ALLOWED_MECHANISMS, CKA_EXTRACTABLE, CKA_PRIVATE, CKA_SENSITIVE, CKA_TOKEN,
    CKA_UNWRAP_TEMPLATE, CKM_AES_GCM, CK_ATTRIBUTE_TYPE, CK_FALSE, CK_MECHANISM_TYPE, CK_TRUE,
};
use sha2::{Digest, Sha256};

use crate::error::rv_of;
use crate::error::Error;
use crate::keywrap::{KeyWrap, KEY_WRAP_MECHANISMS};
use crate::nested::AttributeReader;
use crate::templates::{self, ROOT_KEY_LABEL, SEAL_KEY_LABEL};

/// The root key's handle and how this token wraps with it.
#[derive(Clone, Copy)]
pub(crate) struct RootKey {
    pub(crate) handle: ObjectHandle,
    pub(crate) key_wrap: KeyWrap,
}

impl RootKey {
    /// Wrap `key` under the root key (RFC 5649).
    pub(crate) fn wrap(
        self,
        session: &Session,
        key: ObjectHandle,
    ) -> Result<Vec<u8>, cryptoki::error::Error> {
        self.key_wrap.wrap(session, self.handle, key)
    }

    /// Unwrap `wrapped` under the root key into a new object with `template`.
    pub(crate) fn unwrap(
        self,
        session: &Session,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<ObjectHandle, cryptoki::error::Error> {
        self.key_wrap
            .unwrap(session, self.handle, wrapped, template)
    }
}

/// Handles of the root and seal key, valid in the session that located them (until logout).
#[derive(Clone, Copy)]
pub(crate) struct TokenKeys {
    pub(crate) root: RootKey,
    pub(crate) seal: ObjectHandle,
}

#[derive(Clone, Copy)]
enum KeyUsage {
    WrapUnwrap,
    EncryptDecrypt,
}

/// Open-time setup, run on every start: find both keys (creating them only if `create`),
/// vet every attribute, check that the token really enforces the root key's unwrap template,
/// and compute the root key's identity. Returns the root key's handle in `session` and its
/// identity (see [`root_identity`]).
pub(crate) fn provision(
    session: &Session,
    reader: &AttributeReader,
    create: bool,
) -> Result<(RootKey, [u8; ROOT_IDENTITY_LEN]), Error> {
    let handle = find_or_create(session, ROOT_KEY_LABEL, create, || {
        let key_wrap = reader.offered_key_wrap(session)?.ok_or(Error::Unsupported(
            "AES key wrap with padding (RFC 5649: CKM_AES_KEY_WRAP_KWP or CKM_AES_KEY_WRAP_PAD)",
        ))?;
        templates::root_key_template(key_wrap)
    })?;
    let root = locate_root(session, reader, handle)?;
    probe_unwrap_template(session, root)?;
    let seal = find_or_create(session, SEAL_KEY_LABEL, create, || {
        Ok(templates::seal_key_template())
    })?;
    verify(
        session,
        reader,
        seal,
        SEAL_KEY_LABEL,
        KeyUsage::EncryptDecrypt,
    )?;
    Ok((root, root_identity(session, root)?))
}

/// Find both (existing) keys and vet them.
pub(crate) fn locate(session: &Session, reader: &AttributeReader) -> Result<TokenKeys, Error> {
    let handle = find_one(session, ROOT_KEY_LABEL)?.ok_or(Error::KeyMissing {
        label: ROOT_KEY_LABEL,
    })?;
    let root = locate_root(session, reader, handle)?;
    let seal = find_one(session, SEAL_KEY_LABEL)?.ok_or(Error::KeyMissing {
        label: SEAL_KEY_LABEL,
    })?;
    verify(
        session,
        reader,
        seal,
        SEAL_KEY_LABEL,
        KeyUsage::EncryptDecrypt,
    )?;
    Ok(TokenKeys { root, seal })
}

/// Vet the root key and wrap with the mechanism its `CKA_ALLOWED_MECHANISMS` names.
fn locate_root(
    session: &Session,
    reader: &AttributeReader,
    handle: ObjectHandle,
) -> Result<RootKey, Error> {
    let mechanism = verify(
        session,
        reader,
        handle,
        ROOT_KEY_LABEL,
        KeyUsage::WrapUnwrap,
    )?;
    // `verify` accepted only a number `key_wrap` knows.
    let key_wrap = reader.key_wrap(mechanism).ok_or(Error::KeyPolicy {
        label: ROOT_KEY_LABEL,
        reason: format!("CKA_ALLOWED_MECHANISMS names {mechanism:#x}"),
    })?;
    Ok(RootKey { handle, key_wrap })
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

/// The key labelled `label`; if there is none, a new one only when `create` (a store that
/// already holds keys sealed under the old one must never silently meet a fresh key).
fn find_or_create(
    session: &Session,
    label: &'static str,
    create: bool,
    template: impl FnOnce() -> Result<Vec<Attribute>, Error>,
) -> Result<ObjectHandle, Error> {
    if let Some(key) = find_one(session, label)? {
        return Ok(key);
    }
    if !create {
        return Err(Error::KeyMissing { label });
    }
    let template = template()?;
    match session.generate_key(&Mechanism::AesKeyGen, &template) {
        // A token older than PKCS#11 3.0 may not know CKA_DESTROYABLE at all; it then cannot
        // protect the key from deletion, and the store's record of the root identity is what
        // catches a lost root. Anything else about the template stays non-negotiable.
        Err(e) if rv_of(&e) == Some(RvError::AttributeTypeInvalid) => {
            let without: Vec<Attribute> = template
                .into_iter()
                .filter(|a| a.attribute_type() != AttributeType::Destroyable)
                .collect();
            session.generate_key(&Mechanism::AesKeyGen, &without)
        }
        other => other,
    }
    .map_err(Error::pkcs11("C_GenerateKey"))
}

/// Check that a root/seal key has every protective attribute this crate creates it with, the
/// root key's nested `CKA_UNWRAP_TEMPLATE` included, value by value. A pre-provisioned,
/// planted, substituted or tampered-with key with weaker attributes is refused with an error
/// naming the first attribute that differs. Returns the one mechanism the key allows.
fn verify(
    session: &Session,
    reader: &AttributeReader,
    key: ObjectHandle,
    label: &'static str,
    usage: KeyUsage,
) -> Result<CK_MECHANISM_TYPE, Error> {
    let wraps = matches!(usage, KeyUsage::WrapUnwrap);
    let mechanisms: &[CK_MECHANISM_TYPE] = match usage {
        KeyUsage::WrapUnwrap => &KEY_WRAP_MECHANISMS,
        KeyUsage::EncryptDecrypt => &[CKM_AES_GCM],
    };
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
        Attribute::Destroyable(false),
        Attribute::Wrap(wraps),
        Attribute::Unwrap(wraps),
        Attribute::Encrypt(!wraps),
        Attribute::Decrypt(!wraps),
        Attribute::Sign(false),
        Attribute::Verify(false),
        Attribute::Derive(false),
    ];
    let types: Vec<AttributeType> = required.iter().map(Attribute::attribute_type).collect();
    let actual = session
        .get_attributes(key, &types)
        .map_err(Error::pkcs11("C_GetAttributeValue"))?;
    for want in &required {
        let got = actual
            .iter()
            .find(|a| a.attribute_type() == want.attribute_type());
        // CKA_DESTROYABLE is PKCS#11 3.0; a token that does not know the attribute cannot
        // honour it either (see `find_or_create`). A token that reports it must report false.
        if got.is_none() && want.attribute_type() == AttributeType::Destroyable {
            continue;
        }
        if got != Some(want) {
            return Err(Error::KeyPolicy {
                label,
                reason: format!("expected {want:?}, token has {got:?}"),
            });
        }
    }
    // Read raw: cryptoki cannot read back a number it has no name for (0x210B).
    let allowed = reader.read_ulongs(session, key, CKA_ALLOWED_MECHANISMS)?;
    let mechanism = match allowed.as_deref() {
        Some(&[one]) if mechanisms.contains(&one) => one,
        other => {
            return Err(Error::KeyPolicy {
                label,
                reason: format!(
                    "expected CKA_ALLOWED_MECHANISMS to be one of {mechanisms:#x?}, token has \
                     {other:#x?}"
                ),
            })
        }
    };
    if wraps {
        verify_unwrap_template(session, reader, key, label)?;
    }
    Ok(mechanism)
}

/// Name of a boolean attribute of [`templates::UNWRAP_TEMPLATE`], for messages.
fn attribute_name(t: CK_ATTRIBUTE_TYPE) -> String {
    match t {
        CKA_SENSITIVE => "CKA_SENSITIVE".into(),
        CKA_EXTRACTABLE => "CKA_EXTRACTABLE".into(),
        CKA_PRIVATE => "CKA_PRIVATE".into(),
        CKA_TOKEN => "CKA_TOKEN".into(),
        other => format!("attribute {other:#x}"),
    }
}

/// The root key's `CKA_UNWRAP_TEMPLATE` must be exactly [`templates::UNWRAP_TEMPLATE`]: every
/// entry present with its value, nothing else. Presence alone is not enough: a PIN holder who
/// planted the root before `keyward init` with `{CKA_SENSITIVE=true}` only would later unwrap
/// every CMK as extractable.
fn verify_unwrap_template(
    session: &Session,
    reader: &AttributeReader,
    key: ObjectHandle,
    label: &'static str,
) -> Result<(), Error> {
    let policy = |reason: String| Error::KeyPolicy { label, reason };
    let Some(nested) = reader.read_array(session, key, CKA_UNWRAP_TEMPLATE)? else {
        return Err(policy("CKA_UNWRAP_TEMPLATE is missing".into()));
    };
    let value_of = |t: CK_ATTRIBUTE_TYPE| {
        nested
            .iter()
            .find(|(nt, _)| *nt == t)
            .map(|(_, v)| v.as_slice())
    };
    // A key made by Keyward before CKA_PRIVATE/CKA_TOKEN were pinned: the template cannot be
    // changed (CKA_MODIFIABLE=false), so say what to do rather than only what is wrong.
    let predates = nested.len() == 2
        && value_of(CKA_SENSITIVE) == Some(&[CK_TRUE][..])
        && value_of(CKA_EXTRACTABLE) == Some(&[CK_FALSE][..]);
    let hint = if predates {
        "; this root key was created by an earlier Keyward version and cannot be modified: \
         re-provision (a new token or a new token label, a new data directory with \
         `keyward init`) and move the keys over"
    } else {
        ""
    };
    for (t, want) in templates::UNWRAP_TEMPLATE {
        let want_byte = if want { CK_TRUE } else { CK_FALSE };
        match value_of(t) {
            Some([b]) if *b == want_byte => {}
            Some(v) => {
                return Err(policy(format!(
                    "CKA_UNWRAP_TEMPLATE has {}={v:02x?}, expected {want}{hint}",
                    attribute_name(t)
                )))
            }
            None => {
                return Err(policy(format!(
                    "CKA_UNWRAP_TEMPLATE lacks {}={want}{hint}",
                    attribute_name(t)
                )))
            }
        }
    }
    if let Some((extra, _)) = nested
        .iter()
        .find(|(t, _)| !templates::UNWRAP_TEMPLATE.iter().any(|(w, _)| w == t))
    {
        return Err(policy(format!(
            "CKA_UNWRAP_TEMPLATE has an unexpected entry {}",
            attribute_name(*extra)
        )));
    }
    if nested.len() != templates::UNWRAP_TEMPLATE.len() {
        return Err(policy("CKA_UNWRAP_TEMPLATE repeats an entry".into()));
    }
    Ok(())
}

/// The unwrap template as cryptoki attributes for a secret key, with `flip` (if any) inverted.
fn unwrap_attempt(flip: Option<CK_ATTRIBUTE_TYPE>) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
    ];
    for (ty, value) in templates::UNWRAP_TEMPLATE {
        let v = if flip == Some(ty) { !value } else { value };
        t.push(match ty {
            CKA_SENSITIVE => Attribute::Sensitive(v),
            CKA_EXTRACTABLE => Attribute::Extractable(v),
            CKA_PRIVATE => Attribute::Private(v),
            _ => Attribute::Token(v),
        });
    }
    t
}

/// Check that the token really enforces the root key's unwrap template, using a throw-away
/// key so that nothing of value is exposed if it does not. Runs on every start.
///
/// On any error return the caller drops `session`, which destroys whatever session objects
/// are left in it. (A wrongly accepted TOKEN=true unwrap is destroyed right away.)
fn probe_unwrap_template(session: &Session, root: RootKey) -> Result<(), Error> {
    let violation = |reason: String| Error::KeyPolicy {
        label: ROOT_KEY_LABEL,
        reason,
    };
    let probe = session
        .generate_key(
            &Mechanism::AesKeyGen,
            &templates::generated_data_key_template(),
        )
        .map_err(Error::pkcs11("C_GenerateKey"))?;
    let wrapped = root.wrap(session, probe);
    session
        .destroy_object(probe)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    let wrapped = wrapped.map_err(Error::pkcs11("C_WrapKey"))?;
    let unwrap = |t: &[Attribute]| root.unwrap(session, &wrapped, t);
    let destroy = |h| {
        session
            .destroy_object(h)
            .map_err(Error::pkcs11("C_DestroyObject"))
    };

    // 0. The daemon's own template must work, so that the refusals below are refusals of
    //    the one attribute each attempt changes, not of something else.
    destroy(unwrap(&unwrap_attempt(None)).map_err(Error::pkcs11("C_UnwrapKey"))?)?;

    // 1. Asking for any one protective attribute the other way round must be refused.
    for (flip, value) in templates::UNWRAP_TEMPLATE {
        match unwrap(&unwrap_attempt(Some(flip))) {
            Ok(handle) => {
                destroy(handle)?;
                return Err(violation(format!(
                    "token unwrapped a key with {}={}: CKA_UNWRAP_TEMPLATE is not enforced",
                    attribute_name(flip),
                    !value
                )));
            }
            // Refused, as it should be. (SoftHSM2: CKR_TEMPLATE_INCONSISTENT.) Errors that
            // say nothing about the template are real failures.
            Err(e) if !is_refusal(rv_of(&e)) => return Err(Error::pkcs11("C_UnwrapKey")(e)),
            Err(_) => {}
        }
    }

    // 2. A template silent about them must not fall back to the token's defaults. Refusing
    //    is fine (SoftHSM2 does); so is applying the unwrap template.
    let silent = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
    ];
    match unwrap(&silent) {
        Ok(handle) => {
            let attrs = session.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Private,
                    AttributeType::Token,
                ],
            );
            destroy(handle)?;
            let attrs = attrs.map_err(Error::pkcs11("C_GetAttributeValue"))?;
            let want = unwrap_attempt(None);
            if let Some(missing) = want[2..].iter().find(|w| !attrs.contains(w)) {
                return Err(violation(format!(
                    "token does not apply CKA_UNWRAP_TEMPLATE to keys unwrapped without \
                     explicit attributes ({missing:?} not applied)"
                )));
            }
        }
        Err(e) if !is_refusal(rv_of(&e)) => return Err(Error::pkcs11("C_UnwrapKey")(e)),
        Err(_) => {}
    }
    Ok(())
}

/// Length of [`Pkcs11Hsm::root_identity`](crate::Pkcs11Hsm::root_identity).
pub const ROOT_IDENTITY_LEN: usize = 32;

/// A fixed, public AES-256 key: the input of [`root_identity`].
const IDENTITY_INPUT: [u8; 32] = *b"keyward/root-identity/input/v1.\0";

/// The root key's identity: SHA-256 over a domain string and `AES-KWP(root, IDENTITY_INPUT)`,
/// computed in the token.
///
/// Why this construction: the store must recognise "the root my keys are sealed under", and
/// the root's value never leaves the token. AES-KWP is deterministic, so wrapping a fixed
/// input gives the same answer on every start and a different one (but for 2^-128) under any
/// other key, including one a PIN holder generated with the same label and perfect
/// attributes. The root can only wrap/unwrap (no encrypt, allowed mechanism KWP only), so
/// wrapping is the one keyed operation available. CKA_CHECK_VALUE would be simpler but is
/// only 3 bytes: a PIN holder could generate keys in the token until one matched. The hash
/// keeps the stored value from being a usable sealed blob of a known key.
///
/// The seal key is not covered: it lives on the same token, cannot be destroyed or changed
/// either, so replacing it means re-initialising the token, which replaces the root as well.
fn root_identity(session: &Session, root: RootKey) -> Result<[u8; ROOT_IDENTITY_LEN], Error> {
    let input = session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(IDENTITY_INPUT.to_vec()),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
        ])
        .map_err(Error::pkcs11("C_CreateObject"))?;
    let wrapped = root.wrap(session, input);
    session
        .destroy_object(input)
        .map_err(Error::pkcs11("C_DestroyObject"))?;
    let wrapped = wrapped.map_err(Error::pkcs11("C_WrapKey"))?;
    let mut h = Sha256::new();
    h.update(b"keyward/root-identity/v1");
    h.update(&wrapped);
    Ok(h.finalize().into())
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
