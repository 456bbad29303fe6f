//! Integration tests for asymmetric keys generated in the token and held only sealed.
//!
//! Everything the token produces is checked with an independent implementation (RustCrypto
//! `rsa`, `p256`, `p384`), starting from the SubjectPublicKeyInfo we return. Setup lives in
//! `common` (fails, never skips, without SoftHSM2).

mod common;

use std::sync::Arc;

use common::{config, find_token_key, open, raw_session};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use keyward_hsm_pkcs11::{
    AsymKind, Error, Pkcs11Hsm, RsaDecryptMechanism, RsaDecryptPath, SignMechanism, ROOT_KEY_LABEL,
};
use p256::pkcs8::DecodePublicKey;
use rand_core::OsRng;
use rsa::signature::hazmat::PrehashVerifier;
use rsa::signature::Verifier;
use rsa::{Oaep, Pkcs1v15Encrypt, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// One token per test, all created before the module is initialised.
pub const TOKENS: &[&str] = &[
    "kw-caps",
    "kw-rsa-sign",
    "kw-ec-sign",
    "kw-rsa-decrypt",
    "kw-asym-attack",
    "kw-asym-objects",
    "kw-asym-errors",
    "kw-asym-relogin",
    "kw-oaep-paths",
];

fn rsa_public(spki: &[u8]) -> RsaPublicKey {
    RsaPublicKey::from_public_key_der(spki).expect("RSA SPKI parses")
}

fn assert_err<T: std::fmt::Debug>(r: Result<T, Error>, want: fn(&Error) -> bool, what: &str) {
    match r {
        Err(e) if want(&e) => {}
        other => panic!("{what}: unexpected {other:?}"),
    }
}

fn auth_failed(e: &Error) -> bool {
    matches!(e, Error::AuthenticationFailed)
}
fn bad_sealed(e: &Error) -> bool {
    matches!(e, Error::BadSealedKey)
}
fn bad_length(e: &Error) -> bool {
    matches!(e, Error::BadLength)
}
fn wrong_kind(e: &Error) -> bool {
    matches!(e, Error::WrongKeyKind { .. })
}

#[test]
fn capabilities_are_probed_and_honoured() {
    let hsm = open("kw-caps");
    let caps = hsm.capabilities();
    eprintln!("SoftHSM2 capabilities: {caps:?}");
    // SoftHSM2 2.6.1 does all of these.
    assert!(caps.rsa_2048 && caps.ec_p256 && caps.ec_p384, "{caps:?}");
    assert!(caps.rsa_pss && caps.rsa_oaep_sha1, "{caps:?}");
    assert!(caps.rsa_oaep_sha1_unwrap, "{caps:?}");

    // The probe leaves nothing behind: only the root and seal keys, no session objects.
    let s = raw_session("kw-caps");
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
    assert!(s
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap()
        .is_empty());
    assert!(s
        .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
        .unwrap()
        .is_empty());

    // OAEP-SHA-256: SoftHSM2 2.6.1 refuses it; then the probe found raw RSA, and OAEP-SHA-256
    // runs through the host-decoding path. Either way the call must really work.
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let public = rsa_public(&pair.public_spki_der);
    let ct = public
        .encrypt(&mut OsRng, Oaep::new::<Sha256>(), b"oaep-256")
        .unwrap();
    let r = hsm.rsa_decrypt(&pair.sealed_private, RsaDecryptMechanism::OaepSha256, &ct);
    assert_eq!(r.unwrap().as_slice(), b"oaep-256");
    let sha256 = RsaDecryptMechanism::OaepSha256;
    let sha1 = RsaDecryptMechanism::OaepSha1;
    assert_eq!(hsm.rsa_decrypt_path(sha1).unwrap(), RsaDecryptPath::Token);
    assert_eq!(hsm.rsa_import_path(sha1).unwrap(), RsaDecryptPath::Token);
    if caps.rsa_oaep_sha256 {
        assert_eq!(hsm.rsa_decrypt_path(sha256).unwrap(), RsaDecryptPath::Token);
    } else {
        assert!(caps.rsa_raw, "{caps:?}");
        assert!(!caps.rsa_oaep_sha256_unwrap, "{caps:?}");
        assert_eq!(
            hsm.rsa_decrypt_path(sha256).unwrap(),
            RsaDecryptPath::HostOaepDecoding
        );
        assert_eq!(
            hsm.rsa_import_path(sha256).unwrap(),
            RsaDecryptPath::HostOaepDecoding
        );
        // Why: SoftHSM2 2.6.1 checks the OAEP parameters (hashAlg must be CKM_SHA_1, mgf
        // CKG_MGF1_SHA1) and refuses anything else with CKR_ARGUMENTS_BAD, for the public key
        // as for the private one.
        let s = raw_session("kw-caps");
        let (pub_t, priv_t) = (
            vec![
                Attribute::Token(false),
                Attribute::Encrypt(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
            ],
            vec![Attribute::Token(false), Attribute::Decrypt(true)],
        );
        let (p, k) = s
            .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &pub_t, &priv_t)
            .unwrap();
        let oaep256 = Mechanism::RsaPkcsOaep(cryptoki::mechanism::rsa::PkcsOaepParams::new(
            cryptoki::mechanism::MechanismType::SHA256,
            cryptoki::mechanism::rsa::PkcsMgfType::MGF1_SHA256,
            cryptoki::mechanism::rsa::PkcsOaepSource::empty(),
        ));
        for r in [
            s.encrypt(&oaep256, p, b"x").map(drop),
            s.decrypt(&oaep256, k, &ct).map(drop),
        ] {
            assert!(
                matches!(r, Err(CkError::Pkcs11(RvError::ArgumentsBad, _))),
                "{r:?}"
            );
        }
        s.destroy_object(k).unwrap();
        s.destroy_object(p).unwrap();
    }
}

#[test]
fn rsa_signatures_verify_independently() {
    let hsm = open("kw-rsa-sign");
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    assert_eq!(&pair.sealed_private[..2], &[0x04, 0x01]);
    let public = rsa_public(&pair.public_spki_der);
    assert_eq!(rsa::traits::PublicKeyParts::size(&public), 256);
    assert_eq!(
        rsa::traits::PublicKeyParts::e(&public),
        &rsa::BigUint::from(65537u32)
    );

    let pkcs1 = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(public.clone());
    let pss = rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(public.clone(), 32);
    for i in 0..4u8 {
        let msg = [b'm', i];
        let digest = Sha256::digest(msg);

        let sig = hsm
            .sign(&pair.sealed_private, SignMechanism::RsaPkcs1Sha256, &digest)
            .unwrap();
        assert_eq!(sig.len(), 256);
        let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
        pkcs1.verify(&msg, &sig).expect("PKCS#1 v1.5 signature");
        assert!(pkcs1.verify(b"other", &sig).is_err());

        let sig = hsm
            .sign(&pair.sealed_private, SignMechanism::RsaPssSha256, &digest)
            .unwrap();
        assert_eq!(sig.len(), 256);
        let sig = rsa::pss::Signature::try_from(sig.as_slice()).unwrap();
        pss.verify(&msg, &sig).expect("PSS signature");
        pss.verify_prehash(&digest, &sig).expect("PSS prehash");
        assert!(pss.verify(b"other", &sig).is_err());
    }
    // PSS is randomised, PKCS#1 v1.5 is not.
    let d = Sha256::digest(b"x");
    let pss_a = hsm
        .sign(&pair.sealed_private, SignMechanism::RsaPssSha256, &d)
        .unwrap();
    let pss_b = hsm
        .sign(&pair.sealed_private, SignMechanism::RsaPssSha256, &d)
        .unwrap();
    assert_ne!(pss_a, pss_b);
    let v15_a = hsm
        .sign(&pair.sealed_private, SignMechanism::RsaPkcs1Sha256, &d)
        .unwrap();
    let v15_b = hsm
        .sign(&pair.sealed_private, SignMechanism::RsaPkcs1Sha256, &d)
        .unwrap();
    assert_eq!(v15_a, v15_b);

    // Two key pairs are different keys.
    let other = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    assert_ne!(other.public_spki_der, pair.public_spki_der);
    let sig = hsm
        .sign(&other.sealed_private, SignMechanism::RsaPkcs1Sha256, &d)
        .unwrap();
    let sig = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
    assert!(pkcs1.verify(b"x", &sig).is_err());
}

#[test]
fn ecdsa_signatures_verify_independently() {
    let hsm = open("kw-ec-sign");

    let pair = hsm.generate_key_pair_sealed(AsymKind::EcP256).unwrap();
    assert_eq!(&pair.sealed_private[..2], &[0x04, 0x02]);
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&pair.public_spki_der).unwrap();
    // Enough signatures that r or s with a high bit or a leading zero byte turn up, which
    // exercises the r||s -> DER conversion.
    for i in 0..64u32 {
        let msg = i.to_be_bytes();
        let sig = hsm
            .sign(
                &pair.sealed_private,
                SignMechanism::Ecdsa,
                &Sha256::digest(msg),
            )
            .unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).expect("strict DER");
        vk.verify(&msg, &sig).expect("P-256 signature");
        assert!(vk.verify(b"other", &sig).is_err());
    }
    // Longer digests are truncated to the curve size by both sides (ECDSA bits2int).
    for digest in [Sha384::digest(b"x").to_vec(), Sha512::digest(b"x").to_vec()] {
        let sig = hsm
            .sign(&pair.sealed_private, SignMechanism::Ecdsa, &digest)
            .unwrap();
        let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
        vk.verify_prehash(&digest, &sig)
            .expect("P-256, long digest");
    }

    let pair = hsm.generate_key_pair_sealed(AsymKind::EcP384).unwrap();
    assert_eq!(&pair.sealed_private[..2], &[0x04, 0x03]);
    let vk = p384::ecdsa::VerifyingKey::from_public_key_der(&pair.public_spki_der).unwrap();
    for i in 0..32u32 {
        let msg = i.to_be_bytes();
        let sig = hsm
            .sign(
                &pair.sealed_private,
                SignMechanism::Ecdsa,
                &Sha384::digest(msg),
            )
            .unwrap();
        let sig = p384::ecdsa::Signature::from_der(&sig).expect("strict DER");
        vk.verify(&msg, &sig).expect("P-384 signature");
        assert!(vk.verify(b"other", &sig).is_err());
    }
    // A SHA-256 digest with P-384 (shorter than the order: used as is).
    let digest = Sha256::digest(b"y");
    let sig = hsm
        .sign(&pair.sealed_private, SignMechanism::Ecdsa, &digest)
        .unwrap();
    let sig = p384::ecdsa::Signature::from_der(&sig).unwrap();
    vk.verify_prehash(&digest, &sig)
        .expect("P-384, SHA-256 digest");
}

#[test]
fn rsa_decryption_round_trips_and_rejects_bad_ciphertexts() {
    let hsm = open("kw-rsa-decrypt");
    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let public = rsa_public(&pair.public_spki_der);
    let sealed = &pair.sealed_private;
    let decrypt = |mech, ct: &[u8]| hsm.rsa_decrypt(sealed, mech, ct);

    for pt in [&b"a data key, 32 bytes long......."[..], b"", &[0xff; 100]] {
        let ct = public.encrypt(&mut OsRng, Pkcs1v15Encrypt, pt).unwrap();
        assert_eq!(
            decrypt(RsaDecryptMechanism::Pkcs1v15, &ct)
                .unwrap()
                .as_slice(),
            pt
        );
        let ct = public
            .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), pt)
            .unwrap();
        assert_eq!(
            decrypt(RsaDecryptMechanism::OaepSha1, &ct)
                .unwrap()
                .as_slice(),
            pt
        );
    }

    let pt = b"secret";
    let v15 = public.encrypt(&mut OsRng, Pkcs1v15Encrypt, pt).unwrap();
    let oaep = public
        .encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), pt)
        .unwrap();

    // Tampered OAEP ciphertexts: a bit flip anywhere destroys the padding.
    for i in [0, 1, 100, 255] {
        let mut t = oaep.clone();
        t[i] ^= 0x01;
        assert_err(
            decrypt(RsaDecryptMechanism::OaepSha1, &t),
            auth_failed,
            &format!("OAEP flipped byte {i}"),
        );
    }
    // c = 1 decrypts to m = 1, which is invalid padding for every scheme, deterministically.
    let mut one = vec![0u8; 256];
    one[255] = 1;
    for mech in [RsaDecryptMechanism::Pkcs1v15, RsaDecryptMechanism::OaepSha1] {
        assert_err(decrypt(mech, &one), auth_failed, "c = 1");
        // Larger than the modulus.
        assert_err(decrypt(mech, &[0xff; 256]), auth_failed, "c > n");
        // Wrong lengths.
        assert_err(decrypt(mech, &v15[..255]), auth_failed, "255 bytes");
        assert_err(decrypt(mech, &[]), auth_failed, "empty");
        let mut long = v15.clone();
        long.push(0);
        assert_err(decrypt(mech, &long), auth_failed, "257 bytes");
    }
    // Right key, wrong padding scheme.
    assert_err(
        decrypt(RsaDecryptMechanism::OaepSha1, &v15),
        auth_failed,
        "v1.5 ciphertext as OAEP",
    );
    // Right ciphertext, wrong key.
    let other = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    assert_err(
        hsm.rsa_decrypt(&other.sealed_private, RsaDecryptMechanism::OaepSha1, &oaep),
        auth_failed,
        "other key",
    );

    // The failures did not disturb the session or the cached key.
    assert_eq!(
        decrypt(RsaDecryptMechanism::Pkcs1v15, &v15)
            .unwrap()
            .as_slice(),
        pt
    );
    assert_eq!(
        decrypt(RsaDecryptMechanism::OaepSha1, &oaep)
            .unwrap()
            .as_slice(),
        pt
    );

    // Decrypting with an EC key is a caller error.
    let ec = hsm.generate_key_pair_sealed(AsymKind::EcP256).unwrap();
    assert_err(
        hsm.rsa_decrypt(&ec.sealed_private, RsaDecryptMechanism::Pkcs1v15, &v15),
        wrong_kind,
        "EC key",
    );
}

/// Both OAEP paths on one token: `forced` decodes every OAEP variant on the host (raw RSA in
/// the token), `hsm` uses the token's OAEP where the probe found it. Both must decrypt what an
/// independent implementation encrypted, and give the one same error for every bad ciphertext:
/// tampered anywhere, for another key, another padding or hash, out of range, wrong length.
#[test]
fn oaep_decrypts_on_both_paths_with_one_error_for_every_bad_ciphertext() {
    let hsm = open("kw-oaep-paths");
    let mut forced = open("kw-oaep-paths");
    forced.force_host_oaep_decoding();
    for mech in [
        RsaDecryptMechanism::OaepSha1,
        RsaDecryptMechanism::OaepSha256,
    ] {
        assert_eq!(
            forced.rsa_decrypt_path(mech).unwrap(),
            RsaDecryptPath::HostOaepDecoding
        );
        assert_eq!(
            forced.rsa_import_path(mech).unwrap(),
            RsaDecryptPath::HostOaepDecoding
        );
    }
    // PKCS#1 v1.5 is never decoded on the host.
    assert_eq!(
        forced
            .rsa_decrypt_path(RsaDecryptMechanism::Pkcs1v15)
            .unwrap(),
        RsaDecryptPath::Token
    );
    // The token's own capabilities are still reported as probed.
    assert_eq!(forced.capabilities(), hsm.capabilities());

    let pair = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let other = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let public = rsa_public(&pair.public_spki_der);
    let encrypt = |mech, pk: &RsaPublicKey, pt: &[u8]| {
        match mech {
            RsaDecryptMechanism::OaepSha1 => pk.encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), pt),
            RsaDecryptMechanism::OaepSha256 => pk.encrypt(&mut OsRng, Oaep::new::<Sha256>(), pt),
            RsaDecryptMechanism::Pkcs1v15 => pk.encrypt(&mut OsRng, Pkcs1v15Encrypt, pt),
        }
        .unwrap()
    };
    for (path, h) in [("native", &hsm), ("host", &forced)] {
        for (mech, max) in [
            (RsaDecryptMechanism::OaepSha1, 256 - 2 * 20 - 2),
            (RsaDecryptMechanism::OaepSha256, 256 - 2 * 32 - 2),
        ] {
            let what = format!("{path} {mech:?}");
            for pt in [&b""[..], b"\x00", &[0u8; 32], &[1u8; 32], &vec![0xa5; max]] {
                let ct = encrypt(mech, &public, pt);
                let got = h.rsa_decrypt(&pair.sealed_private, mech, &ct);
                assert_eq!(got.unwrap().as_slice(), pt, "{what}: {} bytes", pt.len());
            }
            let ct = encrypt(mech, &public, b"secret");
            let mut bad: Vec<(String, Vec<u8>, &[u8])> = vec![];
            for i in [0, 1, 2, 31, 32, 33, 100, 200, 255] {
                let mut t = ct.clone();
                t[i] ^= 0x01;
                bad.push((format!("byte {i} flipped"), t, &pair.sealed_private[..]));
            }
            bad.push(("other key".into(), ct.clone(), &other.sealed_private[..]));
            let for_other = encrypt(mech, &rsa_public(&other.public_spki_der), b"secret");
            bad.push((
                "encrypted to another key".into(),
                for_other,
                &pair.sealed_private[..],
            ));
            let v15 = encrypt(RsaDecryptMechanism::Pkcs1v15, &public, b"secret");
            bad.push((
                "PKCS#1 v1.5 ciphertext".into(),
                v15,
                &pair.sealed_private[..],
            ));
            let other_hash = if mech == RsaDecryptMechanism::OaepSha1 {
                RsaDecryptMechanism::OaepSha256
            } else {
                RsaDecryptMechanism::OaepSha1
            };
            let ct2 = encrypt(other_hash, &public, b"secret");
            bad.push(("the other OAEP hash".into(), ct2, &pair.sealed_private[..]));
            let mut one = vec![0u8; 256];
            one[255] = 1;
            bad.push(("c = 1".into(), one, &pair.sealed_private[..]));
            bad.push(("c = 0".into(), vec![0u8; 256], &pair.sealed_private[..]));
            bad.push(("c > n".into(), vec![0xff; 256], &pair.sealed_private[..]));
            bad.push((
                "255 bytes".into(),
                ct[..255].to_vec(),
                &pair.sealed_private[..],
            ));
            bad.push((
                "257 bytes".into(),
                [&ct[..], &[0]].concat(),
                &pair.sealed_private[..],
            ));
            bad.push(("empty".into(), vec![], &pair.sealed_private[..]));
            let mut messages = std::collections::BTreeSet::new();
            for (case, c, key) in &bad {
                let r = h.rsa_decrypt(key, mech, c);
                messages.insert(format!("{:?}", r.as_ref().map(|_| ())));
                assert_err(r, auth_failed, &format!("{what}: {case}"));
            }
            assert_eq!(
                messages.len(),
                1,
                "{what}: distinguishable errors {messages:?}"
            );
            // The failures did not disturb the session or the cached key.
            let got = h.rsa_decrypt(&pair.sealed_private, mech, &ct).unwrap();
            assert_eq!(got.as_slice(), b"secret", "{what}");
        }
    }
}

fn private_key_template(kind: KeyType, extras: &[Attribute]) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(kind),
        Attribute::Token(false),
    ];
    t.extend_from_slice(extras);
    t
}

#[test]
fn pin_holder_cannot_unwrap_a_sealed_private_key_as_extractable() {
    let hsm = open("kw-asym-attack");
    let s = raw_session("kw-asym-attack");
    let root = find_token_key(&s, ROOT_KEY_LABEL)[0];
    for (kind, key_type) in [
        (AsymKind::Rsa2048, KeyType::RSA),
        (AsymKind::EcP256, KeyType::EC),
        (AsymKind::EcP384, KeyType::EC),
    ] {
        let pair = hsm.generate_key_pair_sealed(kind).unwrap();
        let wrapped = &pair.sealed_private[2..];
        let unwrap = |extras: &[Attribute]| {
            s.unwrap_key(
                &Mechanism::AesKeyWrapPad,
                root,
                wrapped,
                &private_key_template(key_type, extras),
            )
        };
        // The attack: an extractable, non-sensitive copy whose CKA_PRIVATE_EXPONENT / CKA_VALUE
        // could simply be read.
        for extras in [
            &[Attribute::Extractable(true), Attribute::Sensitive(false)][..],
            &[Attribute::Extractable(true), Attribute::Sensitive(true)],
            &[Attribute::Extractable(false), Attribute::Sensitive(false)],
            &[Attribute::Extractable(true)],
            &[Attribute::Sensitive(false)],
        ] {
            match unwrap(extras) {
                Err(CkError::Pkcs11(RvError::TemplateInconsistent, _)) => {}
                other => {
                    panic!("{kind:?} {extras:?}: expected CKR_TEMPLATE_INCONSISTENT, got {other:?}")
                }
            }
        }

        // Even the legitimate template yields a key that cannot leave the token.
        let h = unwrap(&[
            Attribute::Extractable(false),
            Attribute::Sensitive(true),
            Attribute::Sign(true),
        ])
        .expect("legitimate unwrap");
        let kek = attacker_kek(&s);
        match s.wrap_key(&Mechanism::AesKeyWrapPad, kek, h) {
            Err(CkError::Pkcs11(RvError::KeyUnextractable, _)) => {}
            other => panic!("{kind:?}: wrapping the unwrapped key out: {other:?}"),
        }
        assert!(s
            .update_attributes(h, &[Attribute::Extractable(true)])
            .is_err());
        let secret = if kind == AsymKind::Rsa2048 {
            AttributeType::PrivateExponent
        } else {
            AttributeType::Value
        };
        assert!(
            s.get_attributes(h, &[secret]).unwrap().is_empty(),
            "{kind:?}: private value readable"
        );
        s.destroy_object(h).unwrap();
        s.destroy_object(kek).unwrap();

        // Our library still works with the blob.
        hsm.sign(&pair.sealed_private, sign_mech(kind), &[1; 32])
            .unwrap();
    }
}

fn attacker_kek(s: &Session) -> ObjectHandle {
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(false),
            Attribute::ValueLen(32.into()),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
        ],
    )
    .unwrap()
}

fn sign_mech(kind: AsymKind) -> SignMechanism {
    if kind == AsymKind::Rsa2048 {
        SignMechanism::RsaPkcs1Sha256
    } else {
        SignMechanism::Ecdsa
    }
}

fn private_keys(s: &Session) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap()
}

#[test]
fn private_keys_never_persist_and_stay_non_extractable() {
    // One pooled session, so every cached key lands in the same place.
    let hsm = Pkcs11Hsm::open(&config("kw-asym-objects", 1)).unwrap();
    let s = raw_session("kw-asym-objects");
    let mut pairs = Vec::new();
    for kind in [AsymKind::Rsa2048, AsymKind::EcP256, AsymKind::EcP384] {
        pairs.push((kind, hsm.generate_key_pair_sealed(kind).unwrap()));
        // Generation leaves no key objects at all, token or session, public or private.
        assert!(private_keys(&s).is_empty(), "{kind:?}");
        assert!(s
            .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
            .unwrap()
            .is_empty());
    }

    for (kind, pair) in &pairs {
        for _ in 0..3 {
            hsm.sign(&pair.sealed_private, sign_mech(*kind), &[7; 32])
                .unwrap();
        }
    }
    let rsa = &pairs[0].1;
    let ct = rsa_public(&rsa.public_spki_der)
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, b"k")
        .unwrap();
    hsm.rsa_decrypt(&rsa.sealed_private, RsaDecryptMechanism::Pkcs1v15, &ct)
        .unwrap();

    // Exactly one cached, unwrapped copy per sealed key; none of them is a token object, and
    // all are sensitive and non-extractable.
    let found = private_keys(&s);
    assert_eq!(found.len(), 3, "one cached handle per key");
    for h in found {
        let attrs = s
            .get_attributes(
                h,
                &[
                    AttributeType::Token,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .unwrap();
        for want in [
            Attribute::Token(false),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ] {
            assert!(attrs.contains(&want), "missing {want:?} in {attrs:?}");
        }
    }
    assert!(s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Token(true)
        ])
        .unwrap()
        .is_empty());
    assert!(s
        .find_objects(&[Attribute::Extractable(true)])
        .unwrap()
        .is_empty());
    // Still only the root and seal keys on the token.
    assert_eq!(s.find_objects(&[Attribute::Token(true)]).unwrap().len(), 2);
}

#[test]
fn malformed_blobs_and_arguments_are_rejected() {
    let hsm = open("kw-asym-errors");
    let rsa = hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    let p256 = hsm.generate_key_pair_sealed(AsymKind::EcP256).unwrap();
    let p384 = hsm.generate_key_pair_sealed(AsymKind::EcP384).unwrap();
    let aes = hsm.generate_aes256_sealed().unwrap();
    let d32 = [3u8; 32];

    // Format byte, kind byte, truncation, non-blobs.
    let mut t = p256.sealed_private.clone();
    t[0] = 0x02;
    assert_err(
        hsm.sign(&t, SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "format",
    );
    let mut t = p256.sealed_private.clone();
    t[1] = 0x07;
    assert_err(hsm.sign(&t, SignMechanism::Ecdsa, &d32), bad_sealed, "kind");
    let t = &p256.sealed_private[..p256.sealed_private.len() - 8];
    assert_err(hsm.sign(t, SignMechanism::Ecdsa, &d32), bad_sealed, "short");
    assert_err(
        hsm.sign(&[], SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "empty",
    );
    assert_err(
        hsm.sign(&aes, SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "AES blob",
    );
    assert_err(
        hsm.aes_gcm_encrypt(&p256.sealed_private, b"", b"x"),
        bad_sealed,
        "private blob as AES key",
    );

    // Tampered wrapped key material: AES-KWP integrity check.
    for blob in [
        &rsa.sealed_private,
        &p256.sealed_private,
        &p384.sealed_private,
    ] {
        for i in [2, 20, blob.len() - 1] {
            let mut t = blob.clone();
            t[i] ^= 0x01;
            let mech = if blob[1] == 0x01 {
                SignMechanism::RsaPkcs1Sha256
            } else {
                SignMechanism::Ecdsa
            };
            assert_err(hsm.sign(&t, mech, &d32), bad_sealed, &format!("byte {i}"));
        }
    }

    // The kind byte is outside the wrap: swapping it must not yield a usable key.
    let mut as_p384 = p256.sealed_private.clone();
    as_p384[1] = 0x03;
    assert_err(
        hsm.sign(&as_p384, SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "P-256 key labelled P-384",
    );
    let mut as_p256 = p384.sealed_private.clone();
    as_p256[1] = 0x02;
    assert_err(
        hsm.sign(&as_p256, SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "P-384 key labelled P-256",
    );
    let mut as_rsa = p256.sealed_private.clone();
    as_rsa[1] = 0x01;
    assert_err(
        hsm.sign(&as_rsa, SignMechanism::RsaPkcs1Sha256, &d32),
        bad_sealed,
        "EC key labelled RSA",
    );
    let mut as_ec = rsa.sealed_private.clone();
    as_ec[1] = 0x02;
    assert_err(
        hsm.sign(&as_ec, SignMechanism::Ecdsa, &d32),
        bad_sealed,
        "RSA key labelled EC",
    );

    // Mechanism / key mismatches.
    for mech in [SignMechanism::RsaPkcs1Sha256, SignMechanism::RsaPssSha256] {
        assert_err(
            hsm.sign(&p256.sealed_private, mech, &d32),
            wrong_kind,
            "RSA mech, EC key",
        );
    }
    assert_err(
        hsm.sign(&rsa.sealed_private, SignMechanism::Ecdsa, &d32),
        wrong_kind,
        "ECDSA, RSA key",
    );

    // Digest lengths.
    for mech in [SignMechanism::RsaPkcs1Sha256, SignMechanism::RsaPssSha256] {
        for len in [0, 20, 31, 33, 48, 64] {
            assert_err(
                hsm.sign(&rsa.sealed_private, mech, &vec![1; len]),
                bad_length,
                &format!("{mech:?} {len}"),
            );
        }
    }
    for len in [0, 20, 31, 65, 128] {
        assert_err(
            hsm.sign(&p384.sealed_private, SignMechanism::Ecdsa, &vec![1; len]),
            bad_length,
            &format!("ECDSA {len}"),
        );
    }

    // After all that, the genuine blobs still work.
    hsm.sign(&rsa.sealed_private, SignMechanism::RsaPssSha256, &d32)
        .unwrap();
    hsm.sign(&p256.sealed_private, SignMechanism::Ecdsa, &d32)
        .unwrap();
    hsm.sign(&p384.sealed_private, SignMechanism::Ecdsa, &d32)
        .unwrap();
}

#[test]
fn sealed_keys_survive_logout_reopen_and_concurrency() {
    let pair = {
        let hsm = open("kw-asym-relogin");
        hsm.generate_key_pair_sealed(AsymKind::EcP256).unwrap()
    }; // every session of the first instance is closed here

    let hsm = Arc::new(Pkcs11Hsm::open(&config("kw-asym-relogin", 2)).unwrap());
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&pair.public_spki_der).unwrap();
    let verify = |msg: &[u8], sig: &[u8]| {
        vk.verify(msg, &p256::ecdsa::Signature::from_der(sig).unwrap())
            .unwrap()
    };
    let sig = hsm
        .sign(
            &pair.sealed_private,
            SignMechanism::Ecdsa,
            &Sha256::digest(b"a"),
        )
        .unwrap();
    verify(b"a", &sig);

    // Logging out destroys every private session object, i.e. all cached unwrapped keys;
    // the library must re-login and unwrap again without the caller noticing.
    let raw = raw_session("kw-asym-relogin");
    for _ in 0..2 {
        raw.logout().unwrap();
        for _ in 0..3 {
            let sig = hsm
                .sign(
                    &pair.sealed_private,
                    SignMechanism::Ecdsa,
                    &Sha256::digest(b"b"),
                )
                .unwrap();
            verify(b"b", &sig);
        }
        raw.logout().unwrap();
        hsm.generate_key_pair_sealed(AsymKind::Rsa2048).unwrap();
    }

    let threads: Vec<_> = (0..4)
        .map(|t| {
            let hsm = Arc::clone(&hsm);
            let blob = pair.sealed_private.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let msg = format!("thread {t} message {i}");
                        let sig = hsm
                            .sign(&blob, SignMechanism::Ecdsa, &Sha256::digest(msg.as_bytes()))
                            .unwrap();
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for (msg, sig) in t.join().expect("worker panicked") {
            verify(msg.as_bytes(), &sig);
        }
    }
}
