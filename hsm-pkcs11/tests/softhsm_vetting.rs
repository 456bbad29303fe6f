//! Start-up vetting of the token keys, each attack performed by a PIN holder against a real
//! SoftHSM2 token: a planted root with a weak or outdated unwrap template, a destroyed root,
//! an unwrap as a token or public object, and a missing root for a store that holds sealed
//! keys. Setup lives in `common` (fails, never skips, without SoftHSM2).

mod common;

use common::{config, find_token_key, open, raw_session, root_look_alike, unwrap_template};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki_sys::{CKA_EXTRACTABLE, CKA_PRIVATE, CKA_SENSITIVE, CKA_TOKEN};
use keyward_hsm_pkcs11::{Error, Pkcs11Hsm, ROOT_KEY_LABEL, SEAL_KEY_LABEL};

/// One token per test (or per planted root: a well-planted root cannot be destroyed).
pub const TOKENS: &[&str] = &[
    "kw-plant-weak",
    "kw-plant-old",
    "kw-plant-token",
    "kw-plant-destroy",
    "kw-plant-known",
    "kw-plant-mechs",
    "kw-plant-3394",
    "kw-nodestroy",
    "kw-unwrap-pub",
    "kw-missing",
    "kw-identity",
    "kw-identity-b",
];

/// The template Keyward gives the root key.
const GOOD: [(cryptoki_sys::CK_ATTRIBUTE_TYPE, bool); 4] = [
    (CKA_SENSITIVE, true),
    (CKA_EXTRACTABLE, false),
    (CKA_PRIVATE, true),
    (CKA_TOKEN, false),
];

/// Plant a root look-alike on `token` (before Keyward ever opened it) and return the error
/// `open` gives.
fn plant_and_open(token: &str, mut template: Vec<Attribute>) -> Error {
    let s = raw_session(token);
    template.retain(|a| !matches!(a, Attribute::Label(_)));
    template.push(Attribute::Label(ROOT_KEY_LABEL.as_bytes().to_vec()));
    let planted = s.generate_key(&Mechanism::AesKeyGen, &template);
    planted.expect("a PIN holder can create this root look-alike");
    let err = Pkcs11Hsm::open(&config(token, 1)).expect_err("a planted weak root must be refused");
    // Nothing was created next to it: the refusal comes before the seal key is made.
    assert!(find_token_key(&s, SEAL_KEY_LABEL).is_empty());
    err
}

fn policy_reason(err: &Error) -> &str {
    match err {
        Error::KeyPolicy { label, reason } if *label == ROOT_KEY_LABEL => reason,
        other => panic!("expected a key policy error on the root key, got {other:?}"),
    }
}

#[test]
fn planted_root_with_weak_unwrap_template_is_refused() {
    // The attack of issue 12 item 1: {SENSITIVE=true} only. The template exists, which the
    // old presence check accepted, and the PIN holder could later unwrap every CMK as
    // extractable.
    let mut t = root_look_alike(ROOT_KEY_LABEL);
    t.push(unwrap_template(&[(CKA_SENSITIVE, true)]));
    let err = plant_and_open("kw-plant-weak", t);
    let reason = policy_reason(&err);
    assert!(reason.contains("CKA_EXTRACTABLE"), "{reason}");
    assert!(err.to_string().contains("keyward-root"), "{err}");

    // All four entries, one of them the wrong way round: an unwrap as a token object.
    let mut t = root_look_alike(ROOT_KEY_LABEL);
    t.push(unwrap_template(&[
        (CKA_SENSITIVE, true),
        (CKA_EXTRACTABLE, false),
        (CKA_PRIVATE, true),
        (CKA_TOKEN, true),
    ]));
    let err = plant_and_open("kw-plant-token", t);
    let reason = policy_reason(&err);
    assert!(reason.contains("CKA_TOKEN"), "{reason}");
}

#[test]
fn root_from_an_earlier_version_is_refused_with_advice() {
    // What Keyward created before CKA_PRIVATE/CKA_TOKEN were pinned. The key cannot be
    // modified, so the operator has to re-provision; the message must say so.
    let mut t = root_look_alike(ROOT_KEY_LABEL);
    t.push(unwrap_template(&[
        (CKA_SENSITIVE, true),
        (CKA_EXTRACTABLE, false),
    ]));
    let err = plant_and_open("kw-plant-old", t);
    let reason = policy_reason(&err);
    assert!(reason.contains("CKA_PRIVATE"), "{reason}");
    assert!(reason.contains("re-provision"), "{reason}");
}

#[test]
fn planted_root_lacking_a_protective_attribute_is_refused() {
    // Perfect unwrap template, but destroyable: one call would lose every key.
    let mut t = root_look_alike(ROOT_KEY_LABEL);
    t.retain(|a| !matches!(a, Attribute::Destroyable(_)));
    t.push(Attribute::Destroyable(true));
    t.push(unwrap_template(&GOOD));
    let reason = policy_reason(&plant_and_open("kw-plant-destroy", t)).to_owned();
    assert!(reason.contains("Destroyable"), "{reason}");

    // Perfect attributes, but imported: the PIN holder knows its value.
    let s = raw_session("kw-plant-known");
    let mut t = root_look_alike(ROOT_KEY_LABEL);
    t.retain(|a| !matches!(a, Attribute::ValueLen(_)));
    t.push(Attribute::Value(vec![0x41; 32]));
    t.push(unwrap_template(&GOOD));
    s.create_object(&t).expect("the PIN holder imports a key");
    let err = Pkcs11Hsm::open(&config("kw-plant-known", 1)).unwrap_err();
    assert!(policy_reason(&err).contains("Local"), "{err}");
}

#[test]
fn planted_root_allowing_other_mechanisms_is_refused() {
    // Perfect otherwise, but the root also (or only) allows plain RFC 3394 wrapping:
    // `CKA_ALLOWED_MECHANISMS` must hold exactly one RFC 5649 number, read back raw.
    use cryptoki::mechanism::MechanismType;
    for (token, mechanisms) in [
        (
            "kw-plant-mechs",
            vec![MechanismType::AES_KEY_WRAP_PAD, MechanismType::AES_KEY_WRAP],
        ),
        ("kw-plant-3394", vec![MechanismType::AES_KEY_WRAP]),
    ] {
        let mut t = root_look_alike(ROOT_KEY_LABEL);
        t.retain(|a| !matches!(a, Attribute::AllowedMechanisms(_)));
        t.push(Attribute::AllowedMechanisms(mechanisms));
        t.push(unwrap_template(&GOOD));
        let reason = policy_reason(&plant_and_open(token, t)).to_owned();
        assert!(reason.contains("CKA_ALLOWED_MECHANISMS"), "{reason}");
    }
}

#[test]
fn root_and_seal_keys_cannot_be_destroyed() {
    let hsm = open("kw-nodestroy");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let s = raw_session("kw-nodestroy");
    for label in [ROOT_KEY_LABEL, SEAL_KEY_LABEL] {
        let key = find_token_key(&s, label)[0];
        assert_eq!(
            s.get_attributes(key, &[AttributeType::Destroyable])
                .unwrap(),
            vec![Attribute::Destroyable(false)],
            "{label}"
        );
        match s.destroy_object(key) {
            Err(CkError::Pkcs11(RvError::ActionProhibited, _)) => {}
            other => panic!("{label}: C_DestroyObject must be refused, got {other:?}"),
        }
        assert_eq!(find_token_key(&s, label).len(), 1, "{label} survives");
    }
    // A fresh open finds the same root: the old sealed key still works.
    drop(hsm);
    let hsm = open("kw-nodestroy");
    let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"", b"still here").unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt(&sealed, &n, b"", &c)
            .unwrap()
            .as_slice(),
        b"still here"
    );
}

#[test]
fn pin_holder_cannot_unwrap_as_token_or_public_object() {
    let hsm = open("kw-unwrap-pub");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let s = raw_session("kw-unwrap-pub");
    let root = find_token_key(&s, ROOT_KEY_LABEL)[0];
    let wrapped = &sealed[1..];
    let attempt = |token: bool, private: bool| {
        vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Private(private),
            Attribute::Token(token),
        ]
    };
    // The daemon's own template works from a raw session too, so the refusals below are
    // about the one attribute each changes.
    let h = s
        .unwrap_key(
            &Mechanism::AesKeyWrapPad,
            root,
            wrapped,
            &attempt(false, true),
        )
        .expect("the daemon's template unwraps");
    s.destroy_object(h).unwrap();
    // A token object (SoftHSM2 writes it to its directory), a public one (not encrypted
    // under the PIN there), and both.
    for (token, private) in [(true, true), (false, false), (true, false)] {
        match s.unwrap_key(
            &Mechanism::AesKeyWrapPad,
            root,
            wrapped,
            &attempt(token, private),
        ) {
            Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
            other => panic!(
                "TOKEN={token} PRIVATE={private}: expected CKR_TEMPLATE_INCONSISTENT, got \
                 {other:?}"
            ),
        }
    }
    // Only the root and seal keys are on the token.
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
}

#[test]
fn missing_root_is_never_created_for_a_store_with_sealed_keys() {
    let mut cfg = config("kw-missing", 1);
    cfg.create_keys = false;
    let err = Pkcs11Hsm::open(&cfg).unwrap_err();
    assert!(
        matches!(err, Error::KeyMissing { label } if label == ROOT_KEY_LABEL),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("root key missing or replaced"),
        "{err}"
    );
    let s = raw_session("kw-missing");
    assert!(
        s.find_objects(&[Attribute::Token(true)])
            .unwrap()
            .is_empty(),
        "nothing may be created on the token"
    );
    // Provisioning is explicit, and afterwards an open that may not create finds the keys.
    let first = open("kw-missing").root_identity();
    assert_eq!(Pkcs11Hsm::open(&cfg).unwrap().root_identity(), first);
}

#[test]
fn root_identity_is_stable_and_differs_between_roots() {
    let a = open("kw-identity").root_identity();
    assert_eq!(
        open("kw-identity").root_identity(),
        a,
        "stable across opens"
    );
    let b = open("kw-identity-b").root_identity();
    assert_ne!(a, b, "another root key has another identity");
    assert_ne!(a, [0u8; 32]);
}
