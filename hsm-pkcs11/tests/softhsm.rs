//! Integration tests against throw-away SoftHSM2 tokens: key hierarchy, AES-GCM, software
//! seal. Setup lives in `common` (fails, never skips, without SoftHSM2).

mod common;

use std::sync::Arc;

use common::{config, find_token_key, open, raw_session, rv, token_serial_and_slot};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use keyward_hsm_pkcs11::{Error, Pkcs11Hsm, ROOT_KEY_LABEL, SEAL_KEY_LABEL};
use zeroize::Zeroizing;

/// One token per test, all created before the module is initialised.
pub const TOKENS: &[&str] = &[
    "kw-roundtrip",
    "kw-aad",
    "kw-tamper",
    "kw-software",
    "kw-random",
    "kw-reopen",
    "kw-attack",
    "kw-attrs",
    "kw-concurrent",
    "kw-cache",
    "kw-config",
    "kw-relogin",
    "kw-select",
    "kw-substitute",
];

#[test]
fn aes_gcm_round_trip() {
    let hsm = open("kw-roundtrip");
    assert_eq!(hsm.token_label(), "kw-roundtrip");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    assert_eq!(sealed[0], 0x02);
    assert_eq!(sealed.len(), 41);

    let pt = b"attack at dawn, keyward edition!";
    let (nonce, ct) = hsm.aes_gcm_encrypt(&sealed, b"aad", pt).unwrap();
    assert_eq!(nonce.len(), 12);
    assert_eq!(ct.len(), pt.len() + 16);
    assert_ne!(&ct[..pt.len()], pt);
    let back = hsm.aes_gcm_decrypt(&sealed, &nonce, b"aad", &ct).unwrap();
    assert_eq!(back.as_slice(), pt);

    // Fresh nonce every time.
    let (nonce2, ct2) = hsm.aes_gcm_encrypt(&sealed, b"aad", pt).unwrap();
    assert_ne!(nonce, nonce2);
    assert_ne!(ct, ct2);

    // Empty plaintext and empty AAD are valid GCM inputs.
    let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"", b"").unwrap();
    assert_eq!(c.len(), 16);
    assert!(hsm
        .aes_gcm_decrypt(&sealed, &n, b"", &c)
        .unwrap()
        .is_empty());

    // Larger message, and many calls through the cache.
    let big = vec![0xa5u8; 64 * 1024];
    for _ in 0..20 {
        let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"x", &big).unwrap();
        assert_eq!(
            hsm.aes_gcm_decrypt(&sealed, &n, b"x", &c)
                .unwrap()
                .as_slice(),
            &big[..]
        );
    }
}

#[test]
fn wrong_aad_nonce_key_or_ciphertext_fails_authentication() {
    let hsm = open("kw-aad");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let other = hsm.generate_aes256_sealed().unwrap();
    let (nonce, ct) = hsm
        .aes_gcm_encrypt(&sealed, b"tenant-a", b"secret")
        .unwrap();

    let err = hsm
        .aes_gcm_decrypt(&sealed, &nonce, b"tenant-b", &ct)
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let mut bad_nonce = nonce.clone();
    bad_nonce[0] ^= 1;
    let err = hsm
        .aes_gcm_decrypt(&sealed, &bad_nonce, b"tenant-a", &ct)
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let mut bad_ct = ct.clone();
    bad_ct[0] ^= 1;
    let err = hsm
        .aes_gcm_decrypt(&sealed, &nonce, b"tenant-a", &bad_ct)
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let mut bad_tag = ct.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    let err = hsm
        .aes_gcm_decrypt(&sealed, &nonce, b"tenant-a", &bad_tag)
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let err = hsm
        .aes_gcm_decrypt(&other, &nonce, b"tenant-a", &ct)
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let err = hsm
        .aes_gcm_decrypt(&sealed, &nonce, b"tenant-a", &ct[..15])
        .unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed), "{err:?}");

    let err = hsm
        .aes_gcm_decrypt(&sealed, &nonce[..11], b"tenant-a", &ct)
        .unwrap_err();
    assert!(matches!(err, Error::BadLength), "{err:?}");

    // The session that saw the failures is still fine.
    for _ in 0..8 {
        let back = hsm
            .aes_gcm_decrypt(&sealed, &nonce, b"tenant-a", &ct)
            .unwrap();
        assert_eq!(back.as_slice(), b"secret");
    }
}

#[test]
fn tampered_or_misformatted_sealed_blobs_are_rejected() {
    let hsm = open("kw-tamper");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let software = hsm.seal_software(&[7u8; 16]).unwrap();

    for i in [1, 20, 40] {
        let mut t = sealed.clone();
        t[i] ^= 0x01;
        let err = hsm.aes_gcm_encrypt(&t, b"", b"x").unwrap_err();
        assert!(matches!(err, Error::BadSealedKey), "byte {i}: {err:?}");
    }
    let mut wrong_prefix = sealed.clone();
    wrong_prefix[0] = 0x03;
    assert!(matches!(
        hsm.aes_gcm_encrypt(&wrong_prefix, b"", b"x"),
        Err(Error::BadSealedKey)
    ));
    assert!(matches!(
        hsm.aes_gcm_encrypt(&sealed[..40], b"", b"x"),
        Err(Error::BadSealedKey)
    ));
    assert!(matches!(
        hsm.aes_gcm_encrypt(&[], b"", b"x"),
        Err(Error::BadSealedKey)
    ));
    assert!(matches!(
        hsm.aes_gcm_decrypt(&software, &[0; 12], b"", &[0; 16]),
        Err(Error::BadSealedKey)
    ));
    assert!(matches!(
        hsm.unseal_software(&sealed),
        Err(Error::BadSealedKey)
    ));

    for i in [0, 1, 13, software.len() - 1] {
        let mut t = software.clone();
        t[i] ^= 0x01;
        let err = hsm.unseal_software(&t).unwrap_err();
        assert!(matches!(err, Error::BadSealedKey), "byte {i}: {err:?}");
    }
    assert!(matches!(
        hsm.unseal_software(&software[..software.len() - 1]),
        Err(Error::BadSealedKey)
    ));

    // The original blobs still work after all that.
    let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"", b"ok").unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt(&sealed, &n, b"", &c)
            .unwrap()
            .as_slice(),
        b"ok"
    );
    assert_eq!(
        hsm.unseal_software(&software).unwrap().as_slice(),
        &[7u8; 16]
    );
}

#[test]
fn software_seal_round_trip() {
    let hsm = open("kw-software");
    let material: Vec<u8> = (0u8..32).collect();
    let sealed = hsm.seal_software(&material).unwrap();
    assert_eq!(sealed[0], 0x03);
    assert_eq!(sealed.len(), 1 + 12 + material.len() + 16);
    assert!(!sealed
        .windows(material.len())
        .any(|w| w == material.as_slice()));
    assert_eq!(
        hsm.unseal_software(&sealed).unwrap().as_slice(),
        &material[..]
    );

    // Same material sealed twice gives different blobs (fresh nonce).
    assert_ne!(sealed, hsm.seal_software(&material).unwrap());

    let sm4 = hsm.generate_software_sealed(16).unwrap();
    assert_eq!(sm4[0], 0x03);
    assert_eq!(sm4.len(), 1 + 12 + 16 + 16);
    let key = hsm.unseal_software(&sm4).unwrap();
    assert_eq!(key.len(), 16);
    let sm4b = hsm.generate_software_sealed(16).unwrap();
    assert_ne!(
        key.as_slice(),
        hsm.unseal_software(&sm4b).unwrap().as_slice()
    );

    assert!(matches!(hsm.seal_software(&[]), Err(Error::BadLength)));
    assert!(matches!(
        hsm.generate_software_sealed(0),
        Err(Error::BadLength)
    ));
    assert!(matches!(
        hsm.generate_software_sealed(4097),
        Err(Error::BadLength)
    ));
}

#[test]
fn random_lengths() {
    let hsm = open("kw-random");
    for len in [1, 12, 32, 4096] {
        assert_eq!(hsm.random(len).unwrap().len(), len);
    }
    assert_ne!(hsm.random(32).unwrap(), hsm.random(32).unwrap());
    assert!(matches!(hsm.random(0), Err(Error::BadLength)));
    assert!(matches!(hsm.random(4097), Err(Error::BadLength)));
}

#[test]
fn reopen_finds_the_same_keys() {
    let (sealed, nonce, ct, software) = {
        let hsm = open("kw-reopen");
        let sealed = hsm.generate_aes256_sealed().unwrap();
        let (nonce, ct) = hsm.aes_gcm_encrypt(&sealed, b"v1", b"persisted").unwrap();
        let software = hsm.seal_software(b"sm4-key-material").unwrap();
        (sealed, nonce, ct, software)
    }; // all sessions of the first instance closed here

    let hsm = open("kw-reopen");
    let back = hsm.aes_gcm_decrypt(&sealed, &nonce, b"v1", &ct).unwrap();
    assert_eq!(back.as_slice(), b"persisted");
    assert_eq!(
        hsm.unseal_software(&software).unwrap().as_slice(),
        b"sm4-key-material"
    );

    // A third, concurrent instance also works, and nothing was duplicated.
    let hsm2 = open("kw-reopen");
    assert_eq!(
        hsm2.aes_gcm_decrypt(&sealed, &nonce, b"v1", &ct)
            .unwrap()
            .as_slice(),
        b"persisted"
    );
    let s = raw_session("kw-reopen");
    assert_eq!(find_token_key(&s, ROOT_KEY_LABEL).len(), 1);
    assert_eq!(find_token_key(&s, SEAL_KEY_LABEL).len(), 1);
}

#[test]
fn pin_holder_cannot_unwrap_a_sealed_key_as_extractable() {
    let hsm = open("kw-attack");
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let s = raw_session("kw-attack");
    let root = find_token_key(&s, ROOT_KEY_LABEL);
    assert_eq!(root.len(), 1);
    let root = root[0];
    let wrapped = &sealed[1..];

    // The attack from the design review: ask for an extractable, non-sensitive copy.
    let weak = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
        Attribute::Sensitive(false),
        Attribute::Extractable(true),
    ];
    match s.unwrap_key(&Mechanism::AesKeyWrapPad, root, wrapped, &weak) {
        Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
        other => panic!("expected CKR_TEMPLATE_INCONSISTENT, got {other:?}"),
    }
    // Each half of the weak template is refused on its own too.
    for attr in [Attribute::Sensitive(false), Attribute::Extractable(true)] {
        let t = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            attr.clone(),
        ];
        match s.unwrap_key(&Mechanism::AesKeyWrapPad, root, wrapped, &t) {
            Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
            other => panic!("{attr:?}: expected CKR_TEMPLATE_INCONSISTENT, got {other:?}"),
        }
    }

    // Saying nothing about sensitivity must not fall back to weak defaults: SoftHSM2 refuses
    // (it requires the caller's template to repeat the unwrap template); a token that applies
    // the unwrap template instead must produce a protected key whose value cannot be read.
    let silent = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(false),
    ];
    match s.unwrap_key(&Mechanism::AesKeyWrapPad, root, wrapped, &silent) {
        Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
        Err(e) => panic!("unexpected error for silent template: {e}"),
        Ok(h) => {
            let attrs = s
                .get_attributes(h, &[AttributeType::Sensitive, AttributeType::Extractable])
                .unwrap();
            assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
            assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
            let value = s.get_attributes(h, &[AttributeType::Value]).unwrap();
            assert!(
                value.is_empty(),
                "CKA_VALUE must be unreadable, got {value:?}"
            );
            s.destroy_object(h).unwrap();
        }
    }

    // Other routes around the template are closed too.
    // C_Decrypt with the root key (treat the wrapped blob as ciphertext):
    assert!(s.decrypt(&Mechanism::AesEcb, root, &wrapped[..32]).is_err());
    // Cloning the root key with a weaker template:
    assert!(s
        .copy_object(
            root,
            &[Attribute::Token(false), Attribute::Label(b"twin".to_vec())]
        )
        .is_err());
    // Changing its attributes:
    assert!(s
        .update_attributes(root, &[Attribute::Extractable(true)])
        .is_err());
    assert!(s
        .update_attributes(root, &[Attribute::Label(b"x".to_vec())])
        .is_err());
    // Wrapping it out:
    let kek = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(32.into()),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
            ],
        )
        .unwrap();
    assert!(s.wrap_key(&Mechanism::AesKeyWrapPad, kek, root).is_err());
    s.destroy_object(kek).unwrap();

    // And our library still works with the key afterwards.
    let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"", b"still fine").unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt(&sealed, &n, b"", &c)
            .unwrap()
            .as_slice(),
        b"still fine"
    );
}

#[test]
fn token_keys_are_sensitive_and_never_extractable() {
    let hsm = open("kw-attrs");
    // Exercise every path that creates objects, so a leak would show up below.
    let sealed = hsm.generate_aes256_sealed().unwrap();
    hsm.aes_gcm_encrypt(&sealed, b"", b"x").unwrap();
    hsm.generate_software_sealed(16).unwrap();

    let s = raw_session("kw-attrs");
    for label in [ROOT_KEY_LABEL, SEAL_KEY_LABEL] {
        let keys = find_token_key(&s, label);
        assert_eq!(keys.len(), 1, "{label}");
        let attrs = s
            .get_attributes(
                keys[0],
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Private,
                    AttributeType::Modifiable,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::NeverExtractable(true),
            Attribute::AlwaysSensitive(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
        ] {
            assert!(
                attrs.contains(&want),
                "{label}: missing {want:?} in {attrs:?}"
            );
        }
    }
    let extractable = s
        .find_objects(&[Attribute::Token(true), Attribute::Extractable(true)])
        .unwrap();
    assert!(
        extractable.is_empty(),
        "extractable token objects: {extractable:?}"
    );
    // The only token objects are our two keys.
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
    // And no extractable session object survived generate_aes256_sealed.
    let extractable_session = s
        .find_objects(&[Attribute::Token(false), Attribute::Extractable(true)])
        .unwrap();
    assert!(extractable_session.is_empty(), "{extractable_session:?}");
}

#[test]
fn concurrent_use_shares_the_pool() {
    let hsm = Arc::new(Pkcs11Hsm::open(&config("kw-concurrent", 2)).unwrap());
    let blobs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..4)
            .map(|_| hsm.generate_aes256_sealed().unwrap())
            .collect(),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let hsm = Arc::clone(&hsm);
            let blobs = Arc::clone(&blobs);
            std::thread::spawn(move || {
                for i in 0..100usize {
                    let blob = &blobs[(t + i) % blobs.len()];
                    let msg = format!("thread {t} message {i}");
                    let (n, c) = hsm.aes_gcm_encrypt(blob, b"ctx", msg.as_bytes()).unwrap();
                    let back = hsm.aes_gcm_decrypt(blob, &n, b"ctx", &c).unwrap();
                    assert_eq!(back.as_slice(), msg.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker panicked");
    }
}

#[test]
fn key_cache_is_bounded_and_evicted_keys_are_destroyed() {
    // One session, so every unwrapped key lands in the same cache.
    let hsm = Pkcs11Hsm::open(&config("kw-cache", 1)).unwrap();
    let blobs: Vec<Vec<u8>> = (0..1030)
        .map(|_| hsm.generate_aes256_sealed().unwrap())
        .collect();
    let mut first = None;
    for b in &blobs {
        let (n, c) = hsm.aes_gcm_encrypt(b, b"", b"m").unwrap();
        first.get_or_insert((n, c));
    }
    let s = raw_session("kw-cache");
    let session_keys = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(false),
        ])
        .unwrap();
    assert_eq!(
        session_keys.len(),
        1024,
        "cache must hold exactly its capacity"
    );

    // The evicted first key is transparently unwrapped again.
    let (n, c) = first.unwrap();
    assert_eq!(
        hsm.aes_gcm_decrypt(&blobs[0], &n, b"", &c)
            .unwrap()
            .as_slice(),
        b"m"
    );
}

#[test]
fn open_reports_configuration_errors() {
    let err = Pkcs11Hsm::open(&config("no-such-token", 1)).unwrap_err();
    assert!(
        matches!(&err, Error::TokenNotFound(l) if l == "label \"no-such-token\""),
        "{err:?}"
    );

    // Trailing spaces in the configured label are ignored.
    let hsm = Pkcs11Hsm::open(&config("kw-config   ", 1)).unwrap();
    assert_eq!(hsm.token_label(), "kw-config");
    drop(hsm);

    assert!(matches!(
        Pkcs11Hsm::open(&config("kw-config", 0)),
        Err(Error::InvalidConfig(_))
    ));

    let mut missing = config("kw-config", 1);
    missing.module = "/nonexistent/libpkcs11.so".into();
    assert!(matches!(
        Pkcs11Hsm::open(&missing),
        Err(Error::Pkcs11 { .. })
    ));

    // Wrong PIN. Only meaningful while nothing in this process is logged in to the token
    // (PKCS#11 login is per application, so C_Login would report "already logged in").
    let mut wrong = config("kw-config", 1);
    wrong.pin = Zeroizing::new("0000".into());
    let err = Pkcs11Hsm::open(&wrong).unwrap_err();
    assert_eq!(rv(&err), Some(RvError::PinIncorrect), "{err:?}");
}

/// `[hsm]` may name the token by label, serial or slot; every criterion given must match.
#[test]
fn token_is_selected_by_label_serial_or_slot() {
    let (serial, slot) = token_serial_and_slot("kw-select");
    let by = |label: &str, serial: Option<&str>, slot: Option<u64>| {
        let mut cfg = config(label, 1);
        cfg.token_serial = serial.map(str::to_owned);
        cfg.slot = slot;
        Pkcs11Hsm::open(&cfg)
    };
    // Serial alone (with its space padding, as tools print it), slot alone, and all three.
    let padded = format!("{serial}  ");
    for (serial, slot) in [
        (Some(padded.as_str()), None),
        (None, Some(slot)),
        (Some(&serial[..]), Some(slot)),
    ] {
        let label = if serial.is_some() && slot.is_some() {
            "kw-select"
        } else {
            ""
        };
        let hsm = by(label, serial, slot).unwrap();
        assert_eq!(hsm.token_label(), "kw-select");
    }
    // Criteria that contradict each other select nothing, and say what was asked for.
    let err = by("kw-config", Some(&serial), None).unwrap_err();
    assert!(
        matches!(&err, Error::TokenNotFound(what) if what.contains("kw-config") && what.contains(&serial)),
        "{err:?}"
    );
    assert!(matches!(
        by("kw-select", None, Some(u64::MAX)),
        Err(Error::TokenNotFound(_))
    ));
    // Nothing at all is refused rather than meaning "the first token".
    assert!(matches!(by("", None, None), Err(Error::InvalidConfig(_))));
}

#[test]
fn pool_recovers_after_the_process_is_logged_out() {
    let hsm = Pkcs11Hsm::open(&config("kw-relogin", 2)).unwrap();
    let sealed = hsm.generate_aes256_sealed().unwrap();
    let (n, c) = hsm.aes_gcm_encrypt(&sealed, b"", b"before").unwrap();
    let software = hsm.seal_software(b"sm4").unwrap();
    // Login state is per process: logging out any session logs out all of ours, and the
    // private root/seal keys then look like invalid handles. Every entry point must recover
    // by logging in again, on every pooled session, without the caller seeing an error.
    let raw = raw_session("kw-relogin");
    for _ in 0..2 {
        raw.logout().unwrap();
        for _ in 0..4 {
            let pt = hsm.aes_gcm_decrypt(&sealed, &n, b"", &c).unwrap();
            assert_eq!(pt.as_slice(), b"before");
        }
        raw.logout().unwrap();
        assert_eq!(hsm.unseal_software(&software).unwrap().as_slice(), b"sm4");
        raw.logout().unwrap();
        let fresh = hsm.generate_aes256_sealed().unwrap();
        raw.logout().unwrap();
        hsm.aes_gcm_encrypt(&fresh, b"", b"after").unwrap();
    }
}

#[test]
fn substituted_root_key_is_refused() {
    // A PIN holder would like to replace the root key with one whose value they know, with
    // otherwise perfect-looking attributes: every *new* data key would then be wrapped under
    // a key the attacker knows. Destroying the root is refused (CKA_DESTROYABLE=false), so
    // the running instance keeps its key ...
    let hsm = open("kw-substitute");
    hsm.generate_aes256_sealed().unwrap();
    let s = raw_session("kw-substitute");
    let root = find_token_key(&s, ROOT_KEY_LABEL)[0];
    assert!(s.destroy_object(root).is_err());
    // ... and an imported look-alike next to it makes the label ambiguous, which is refused
    // by a fresh open and by the running instance when it next locates its keys.
    let mut planted = common::root_look_alike(ROOT_KEY_LABEL);
    planted.retain(|a| !matches!(a, Attribute::ValueLen(_)));
    planted.extend([
        Attribute::Value(vec![0x41; 32]),
        common::unwrap_template(&[
            (cryptoki_sys::CKA_SENSITIVE, true),
            (cryptoki_sys::CKA_EXTRACTABLE, false),
            (cryptoki_sys::CKA_PRIVATE, true),
            (cryptoki_sys::CKA_TOKEN, false),
        ]),
    ]);
    s.create_object(&planted).unwrap();
    let err = Pkcs11Hsm::open(&config("kw-substitute", 1)).unwrap_err();
    assert!(
        matches!(&err, Error::KeyPolicy { label, .. } if *label == ROOT_KEY_LABEL),
        "{err:?}"
    );
    // (A planted root alone, on a token without ours, is refused by its missing CKA_LOCAL:
    // tests/softhsm_vetting.rs.)
}
