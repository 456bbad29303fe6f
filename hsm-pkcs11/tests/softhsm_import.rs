//! Integration tests for BYOK import of AES-256 material wrapped to one of our RSA-2048 keys.
//!
//! The material is wrapped locally with RustCrypto `rsa` to the SubjectPublicKeyInfo we
//! returned, and what the token did with it is checked locally with `aes-gcm`. Setup lives in
//! `common` (fails, never skips, without SoftHSM2).

mod common;

use common::{config, find_token_key, open, raw_session};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::cipher::BlockEncrypt;
use aes_gcm::aes::Aes256;
use aes_gcm::{Aes256Gcm, Nonce};
use keyward_hsm_pkcs11::{
    AsymKind, Error, Pkcs11Hsm, RsaDecryptMechanism, RsaDecryptPath, SealedKeyPair, KCV_LEN,
    ROOT_KEY_LABEL,
};
use rand_core::{OsRng, RngCore};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPublicKey};

/// One token per test, all created before the module is initialised.
pub const TOKENS: &[&str] = &[
    "kw-import",
    "kw-import-errors",
    "kw-import-attack",
    "kw-import-objects",
    "kw-import-relogin",
    "kw-import-host",
];

/// OAEP-SHA-256 runs natively or through the host-decoding path, whichever the probe chose
/// (SoftHSM2 2.6.1: the latter); `host_decoded_imports_*` forces the host path for all.
const MECHS: [RsaDecryptMechanism; 3] = [
    RsaDecryptMechanism::Pkcs1v15,
    RsaDecryptMechanism::OaepSha1,
    RsaDecryptMechanism::OaepSha256,
];

fn random_material(len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    OsRng.fill_bytes(&mut m);
    m
}

/// Encrypt `material` to the pair's public key, as a BYOK client would.
fn wrap_to(pair: &SealedKeyPair, mech: RsaDecryptMechanism, material: &[u8]) -> Vec<u8> {
    let pk = RsaPublicKey::from_public_key_der(&pair.public_spki_der).expect("RSA SPKI");
    match mech {
        RsaDecryptMechanism::Pkcs1v15 => pk.encrypt(&mut OsRng, Pkcs1v15Encrypt, material),
        RsaDecryptMechanism::OaepSha1 => {
            pk.encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), material)
        }
        RsaDecryptMechanism::OaepSha256 => {
            pk.encrypt(&mut OsRng, Oaep::new::<sha2::Sha256>(), material)
        }
    }
    .expect("RSA encrypt")
}

/// The KCV definition, computed locally: AES-256-ECB(key, 0^16).
fn local_kcv(material: &[u8]) -> [u8; KCV_LEN] {
    let cipher = Aes256::new_from_slice(material).expect("32-byte key");
    let mut block = [0u8; KCV_LEN].into();
    cipher.encrypt_block(&mut block);
    block.into()
}

/// Encrypt in the token with the sealed key, decrypt locally with the original material.
fn assert_sealed_holds(hsm: &Pkcs11Hsm, sealed: &[u8], material: &[u8]) {
    let aad = b"byok aad";
    let msg = b"encrypted in the token, decrypted on the host";
    let (nonce, ct) = hsm.aes_gcm_encrypt(sealed, aad, msg).unwrap();
    let local = Aes256Gcm::new_from_slice(material).unwrap();
    let pt = local
        .decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad })
        .expect("local AES-GCM decryption with the original material");
    assert_eq!(pt, msg);
    // And the other way round, through the token's decryption.
    let nonce = [9u8; 12];
    let ct = local
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .unwrap();
    let pt = hsm.aes_gcm_decrypt(sealed, &nonce, aad, &ct).unwrap();
    assert_eq!(pt.as_slice(), msg);
}

fn assert_err<T: std::fmt::Debug>(r: Result<T, Error>, want: fn(&Error) -> bool, what: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    }
}

fn extractable_objects(s: &Session) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Extractable(true)]).unwrap()
}

#[test]
fn imported_material_is_exactly_what_was_wrapped() {
    let hsm = open("kw-import");
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    for mech in MECHS {
        let material = random_material(32);
        let (sealed, kcv) = hsm
            .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
            .unwrap();
        assert_eq!(sealed.len(), 41, "{mech:?}");
        assert_eq!(sealed[0], 0x02, "{mech:?}");
        assert_sealed_holds(&hsm, &sealed, &material);

        assert_eq!(kcv, local_kcv(&material), "{mech:?}: KCV definition");
        assert_eq!(hsm.aes_key_check_value(&sealed).unwrap(), kcv, "{mech:?}");

        // Re-import of the same material (fresh ciphertext, other padding): same KCV, and since
        // AES-KWP is deterministic, even the same sealed blob.
        for again in MECHS {
            let (sealed2, kcv2) = hsm
                .import_wrapped_aes256(
                    &pair.sealed_private,
                    again,
                    &wrap_to(&pair, again, &material),
                )
                .unwrap();
            assert_eq!(kcv2, kcv, "{mech:?} then {again:?}");
            assert_eq!(sealed2, sealed);
        }
        // Different material, different KCV.
        let other = random_material(32);
        let (sealed3, kcv3) = hsm
            .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &other))
            .unwrap();
        assert_ne!(kcv3, kcv);
        assert_eq!(kcv3, local_kcv(&other));
        assert_sealed_holds(&hsm, &sealed3, &other);
    }

    // The KCV of a token-generated key is well defined too (and stable).
    let generated = hsm.generate_aes256_sealed().unwrap();
    let k1 = hsm.aes_key_check_value(&generated).unwrap();
    assert_eq!(hsm.aes_key_check_value(&generated).unwrap(), k1);
    assert_ne!(k1, [0u8; KCV_LEN]);

    // The wrapping pair still works for its ordinary uses after serving as unwrapping key.
    let ct = wrap_to(&pair, RsaDecryptMechanism::OaepSha1, b"hello");
    let pt = hsm
        .rsa_decrypt(&pair.sealed_private, RsaDecryptMechanism::OaepSha1, &ct)
        .unwrap();
    assert_eq!(pt.as_slice(), b"hello");
}

#[test]
fn bad_imports_are_rejected() {
    let hsm = Pkcs11Hsm::open(&config("kw-import-errors", 1)).unwrap();
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let other = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let import = |mech, ct: &[u8]| hsm.import_wrapped_aes256(&pair.sealed_private, mech, ct);
    let bad_length = |e: &Error| matches!(e, Error::BadLength);
    let auth_failed = |e: &Error| matches!(e, Error::AuthenticationFailed);
    for mech in MECHS {
        // AES-128 material decrypts fine but is not an AES-256 key.
        for len in [16, 24, 31, 33, 48] {
            let r = import(mech, &wrap_to(&pair, mech, &random_material(len)));
            assert_err(r, bad_length, &format!("{mech:?} {len}-byte material"));
        }
        // Garbage, a ciphertext for another key, truncated/extended ciphertexts.
        let mut garbage = random_material(256);
        garbage[0] = 0; // below the modulus, so only the padding check can fail
        assert_err(
            import(mech, &garbage),
            auth_failed,
            &format!("{mech:?} garbage"),
        );
        let foreign = wrap_to(&other, mech, &random_material(32));
        assert_err(
            import(mech, &foreign),
            auth_failed,
            &format!("{mech:?} other key"),
        );
        let good = wrap_to(&pair, mech, &random_material(32));
        assert_err(import(mech, &good[..255]), auth_failed, "short");
        assert_err(
            import(mech, &[good.clone(), vec![0]].concat()),
            auth_failed,
            "long",
        );
        assert_err(import(mech, &[]), auth_failed, "empty");
        let mut flipped = good.clone();
        flipped[100] ^= 1;
        assert_err(
            import(mech, &flipped),
            auth_failed,
            &format!("{mech:?} flipped"),
        );
        // The errors left the session usable.
        import(mech, &good).unwrap();
    }
    // Padding of one kind does not decrypt as the other.
    let v15 = wrap_to(&pair, RsaDecryptMechanism::Pkcs1v15, &random_material(32));
    assert_err(
        import(RsaDecryptMechanism::OaepSha1, &v15),
        auth_failed,
        "v1.5 as OAEP",
    );

    // Wrong wrapping keys.
    let ec = hsm.generate_key_pair_sealed(AsymKind::EcP256).unwrap();
    let ct = wrap_to(&pair, RsaDecryptMechanism::Pkcs1v15, &random_material(32));
    assert_err(
        hsm.import_wrapped_aes256(&ec.sealed_private, RsaDecryptMechanism::Pkcs1v15, &ct),
        |e| matches!(e, Error::WrongKeyKind { .. }),
        "EC wrapping key",
    );
    let aes = hsm.generate_aes256_sealed().unwrap();
    let mut tampered = pair.sealed_private.clone();
    let n = tampered.len();
    tampered[n - 5] ^= 1;
    for bad in [&aes[..], &tampered, &[], &pair.sealed_private[..10]] {
        assert_err(
            hsm.import_wrapped_aes256(bad, RsaDecryptMechanism::Pkcs1v15, &ct),
            |e| matches!(e, Error::BadSealedKey),
            "bad wrapping key blob",
        );
    }
    // aes_key_check_value only takes sealed AES keys.
    let mut tampered_aes = aes.clone();
    tampered_aes[20] ^= 1;
    for bad in [&pair.sealed_private[..], &tampered_aes, &aes[..40], &[]] {
        assert_err(
            hsm.aes_key_check_value(bad),
            |e| matches!(e, Error::BadSealedKey),
            "bad AES blob",
        );
    }

    // No failed import left an object behind: extractable or secret.
    let s = raw_session("kw-import-errors");
    assert!(extractable_objects(&s).is_empty());
    let secret = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(false),
        ])
        .unwrap();
    assert!(secret.is_empty(), "session secret keys left: {secret:?}");
}

#[test]
fn pin_holder_cannot_unwrap_an_imported_key_as_extractable() {
    let hsm = open("kw-import-attack");
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let material = random_material(32);
    let mech = RsaDecryptMechanism::OaepSha1;
    let (sealed, _) = hsm
        .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
        .unwrap();
    let s = raw_session("kw-import-attack");
    let root = find_token_key(&s, ROOT_KEY_LABEL)[0];
    let template = |extras: &[Attribute]| {
        let mut t = vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
        ];
        t.extend_from_slice(extras);
        t
    };
    for extras in [
        &[Attribute::Extractable(true), Attribute::Sensitive(false)][..],
        &[Attribute::Extractable(true), Attribute::Sensitive(true)],
        &[Attribute::Extractable(false), Attribute::Sensitive(false)],
        &[Attribute::Extractable(true)],
        &[Attribute::Sensitive(false)],
    ] {
        match s.unwrap_key(
            &Mechanism::AesKeyWrapPad,
            root,
            &sealed[1..],
            &template(extras),
        ) {
            Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
            other => panic!("{extras:?}: expected CKR_TEMPLATE_INCONSISTENT, got {other:?}"),
        }
    }
    assert!(extractable_objects(&s).is_empty());
    assert_sealed_holds(&hsm, &sealed, &material);
}

#[test]
fn import_leaves_no_extractable_objects_and_least_privilege_rsa_handles() {
    // One pooled session, so every cached key lands in the same place.
    let hsm = Pkcs11Hsm::open(&config("kw-import-objects", 1)).unwrap();
    let s = raw_session("kw-import-objects");
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let mech = RsaDecryptMechanism::Pkcs1v15;
    let material = random_material(32);
    let (sealed, _) = hsm
        .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
        .unwrap();
    // The import's temporary AES object is gone; the cached RSA handle is not extractable.
    assert!(extractable_objects(&s).is_empty());
    assert!(s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(false)
        ])
        .unwrap()
        .is_empty());
    let private = |s: &Session| {
        s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .unwrap()
    };
    let attrs = |h| {
        s.get_attributes(
            h,
            &[
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Unwrap,
                AttributeType::Decrypt,
                AttributeType::Sign,
            ],
        )
        .unwrap()
    };
    let unwrapping = private(&s);
    assert_eq!(unwrapping.len(), 1, "one cached unwrapping handle");
    let a = attrs(unwrapping[0]);
    for want in [
        Attribute::Token(false),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(true),
        Attribute::Decrypt(false),
        Attribute::Sign(false),
    ] {
        assert!(
            a.contains(&want),
            "unwrapping handle: missing {want:?} in {a:?}"
        );
    }

    // The same blob used for decryption gets its own object, without CKA_UNWRAP.
    let ct = wrap_to(&pair, mech, b"x");
    hsm.rsa_decrypt(&pair.sealed_private, mech, &ct).unwrap();
    let both = private(&s);
    assert_eq!(both.len(), 2, "separate cache entries per purpose");
    let decrypting = both.into_iter().find(|h| *h != unwrapping[0]).unwrap();
    let a = attrs(decrypting);
    println!("decrypt/sign handle attributes: {a:?}");
    for want in [
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Unwrap(false),
        Attribute::Decrypt(true),
    ] {
        assert!(
            a.contains(&want),
            "decrypt handle: missing {want:?} in {a:?}"
        );
    }

    // Repeated imports reuse the cached unwrapping handle and leave nothing else behind.
    for _ in 0..5 {
        hsm.import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
            .unwrap();
    }
    assert_eq!(private(&s).len(), 2);
    // KCV computation caches the (non-extractable) data key, like any other use.
    hsm.aes_key_check_value(&sealed).unwrap();
    assert!(extractable_objects(&s).is_empty());
    // Still only the root and seal keys on the token.
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
}

#[test]
fn import_survives_logout() {
    let hsm = Pkcs11Hsm::open(&config("kw-import-relogin", 2)).unwrap();
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let mech = RsaDecryptMechanism::OaepSha1;
    let material = random_material(32);
    let import = || {
        hsm.import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
            .unwrap()
    };
    let (sealed, kcv) = import();
    // Logging out destroys the cached unwrapping handles; the library must log in again and
    // unwrap afresh without the caller noticing.
    let raw = raw_session("kw-import-relogin");
    for _ in 0..2 {
        raw.logout().unwrap();
        for _ in 0..4 {
            assert_eq!(import(), (sealed.clone(), kcv));
        }
        raw.logout().unwrap();
        for _ in 0..4 {
            assert_eq!(hsm.aes_key_check_value(&sealed).unwrap(), kcv);
        }
    }
}

/// The host-decoding path (raw RSA in the token, OAEP decoded on the host, the material put
/// back with C_CreateObject) seals exactly what the token's own unwrap seals, rejects what it
/// rejects with the same errors, and leaves no key object behind but the cached,
/// non-extractable RSA handle.
#[test]
fn host_decoded_imports_match_native_ones_and_leave_nothing_behind() {
    let native = Pkcs11Hsm::open(&config("kw-import-host", 1)).unwrap();
    let mut host = Pkcs11Hsm::open(&config("kw-import-host", 1)).unwrap();
    host.force_host_oaep_decoding();
    let pair = native.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let other = native.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let oaep = [
        RsaDecryptMechanism::OaepSha1,
        RsaDecryptMechanism::OaepSha256,
    ];
    for mech in oaep {
        assert_eq!(
            host.rsa_import_path(mech).unwrap(),
            RsaDecryptPath::HostOaepDecoding
        );
    }
    assert_eq!(
        native
            .rsa_import_path(RsaDecryptMechanism::OaepSha1)
            .unwrap(),
        RsaDecryptPath::Token
    );

    let material = random_material(32);
    // The reference: the token's own OAEP-SHA-1 unwrap.
    let mech = RsaDecryptMechanism::OaepSha1;
    let (sealed, kcv) = native
        .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
        .unwrap();
    for mech in oaep {
        for h in [&native, &host] {
            let (sealed2, kcv2) = h
                .import_wrapped_aes256(&pair.sealed_private, mech, &wrap_to(&pair, mech, &material))
                .unwrap();
            // AES-KWP is deterministic: the very same blob, and the KCV computed in the token.
            assert_eq!(sealed2, sealed, "{mech:?}");
            assert_eq!(kcv2, kcv, "{mech:?}");
        }
        assert_eq!(kcv, local_kcv(&material));
        assert_sealed_holds(&host, &sealed, &material);

        // The same errors, whatever the path: bad padding and another key alike.
        let auth_failed = |e: &Error| matches!(e, Error::AuthenticationFailed);
        for h in [&native, &host] {
            let path = h.rsa_import_path(mech).unwrap();
            let good = wrap_to(&pair, mech, &material);
            let mut cases = vec![
                ("other key", wrap_to(&other, mech, &material)),
                ("c > n", vec![0xff; 256]),
                ("short", good[..255].to_vec()),
            ];
            for i in [0, 1, 50, 255] {
                let mut t = good.clone();
                t[i] ^= 0x80;
                cases.push(("tampered", t));
            }
            for (case, ct) in cases {
                assert_err(
                    h.import_wrapped_aes256(&pair.sealed_private, mech, &ct),
                    auth_failed,
                    &format!("{path:?} {mech:?} {case}"),
                );
            }
            for len in [16, 31, 33] {
                assert_err(
                    h.import_wrapped_aes256(
                        &pair.sealed_private,
                        mech,
                        &wrap_to(&pair, mech, &random_material(len)),
                    ),
                    |e| matches!(e, Error::BadLength),
                    &format!("{path:?} {mech:?} {len}-byte material"),
                );
            }
        }
    }

    // Nothing left but cached handles, none extractable: the RSA keys and the one sealed data
    // key `assert_sealed_holds` used. No import left its temporary AES object.
    let s = raw_session("kw-import-host");
    assert!(extractable_objects(&s).is_empty());
    let secret = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(false),
        ])
        .unwrap();
    assert_eq!(secret.len(), 1, "session secret keys: {secret:?}");
    let private = s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    for h in secret.into_iter().chain(private) {
        let a = s
            .get_attributes(h, &[AttributeType::Sensitive, AttributeType::Extractable])
            .unwrap();
        assert!(a.contains(&Attribute::Sensitive(true)), "{a:?}");
        assert!(a.contains(&Attribute::Extractable(false)), "{a:?}");
    }
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
}
