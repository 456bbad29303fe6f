//! The PKCS#11 module (hsm-pkcs11/module) loaded through `cryptoki` against a daemon on
//! SoftHSM2: many threads signing at once, each signature checked with RustCrypto against
//! GetPublicKey; PKCS#11 return codes for the mistakes applications make; and a daemon that
//! goes away and comes back, answered with CKR_DEVICE_ERROR rather than a crash.
//!
//! The application-level suite (pkcs11-tool, OpenSSL, ssh-keygen) is
//! tests/python/test_pkcs11_module.py.

mod common;

use common::iam;
use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use keyward::client::TcClient;
use serde_json::json;
use sha2::Digest;
use std::path::PathBuf;

/// The module cargo built as host's dev-dependency (target/<profile>/deps/, beside this
/// test's binary, so it is always the current code), or KEYWARD_PKCS11_MODULE.
fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYWARD_PKCS11_MODULE") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().join("libkeyward_pkcs11.so");
    assert!(
        p.exists(),
        "{} missing: cargo build -p keyward-pkcs11-module",
        p.display()
    );
    p
}

async fn create(c: &TcClient, usage: &str) -> (String, Vec<u8>) {
    let r = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("p11"), "KeyUsage": usage}),
        )
        .await
        .unwrap());
    let id = r["KeyId"].as_str().unwrap().to_string();
    let p = ok(c.kms("GetPublicKey", json!({"KeyId": id})).await.unwrap());
    let der = unb64(p["PublicKey"].as_str().unwrap());
    (id, der)
}

fn rv(e: CkError) -> RvError {
    match e {
        CkError::Pkcs11(rv, _) => rv,
        other => panic!("expected a PKCS#11 return value, got {other}"),
    }
}

fn private_key(s: &Session, key_id: &str) -> ObjectHandle {
    let found = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(key_id.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "one private key object per CMK");
    found[0]
}

fn pss() -> Mechanism<'static> {
    Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32u64.into(),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn module_serves_threads_and_reports_errors() {
    let mut d = Daemon::softhsm();
    let c = d.client();
    let (ec_id, ec_der) = create(&c, "ASYMMETRIC_SIGN_VERIFY_ECC").await;
    let (rsa_id, rsa_der) = create(&c, "ASYMMETRIC_SIGN_VERIFY_RSA_2048").await;

    // No PIN in the configuration: no login, private keys visible in every session.
    let cfg = d.dir.path().join("pkcs11.toml");
    std::fs::write(
        &cfg,
        format!(
            "endpoint = \"{}\"\nregion = \"{REGION}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n",
            d.endpoint(),
            d.cred.secret_id,
            d.cred.secret_key
        ),
    )
    .unwrap();
    // The only test in this binary: nothing else reads the environment concurrently.
    std::env::set_var("KEYWARD_PKCS11_CONFIG", &cfg);

    let ec_der2 = ec_der.clone();
    let rsa_der2 = rsa_der.clone();
    let (ec_id2, rsa_id2) = (ec_id.clone(), rsa_id.clone());
    let ec_id3 = ec_id.clone();
    let pkcs11 = tokio::task::spawn_blocking(move || {
        let p = Pkcs11::new(module_path()).unwrap();
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        // Initialising twice is the application's mistake, and says so.
        assert_eq!(
            rv(
                p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                    .unwrap_err()
            ),
            RvError::CryptokiAlreadyInitialized
        );
        let slot = p.get_slots_with_token().unwrap()[0];

        // 8 threads, each with its own session, signing with both keys at once.
        std::thread::scope(|scope| {
            for t in 0..8u8 {
                let (p, ec_id, rsa_id) = (&p, &ec_id2, &rsa_id2);
                let (ec_der, rsa_der) = (&ec_der2, &rsa_der2);
                scope.spawn(move || {
                    use p256::ecdsa::signature::Verifier;
                    use p256::pkcs8::DecodePublicKey;
                    let s = p.open_ro_session(slot).unwrap();
                    let ec_key = private_key(&s, ec_id);
                    let rsa_key = private_key(&s, rsa_id);
                    let ec_pub = p256::ecdsa::VerifyingKey::from_public_key_der(ec_der).unwrap();
                    let rsa_pub = rsa::RsaPublicKey::from_public_key_der(rsa_der).unwrap();
                    for i in 0..5u8 {
                        let msg = format!("thread {t} message {i}").into_bytes();
                        let sig = s.sign(&Mechanism::EcdsaSha256, ec_key, &msg).unwrap();
                        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                        ec_pub.verify(&msg, &sig).unwrap();

                        let sig = s.sign(&pss(), rsa_key, &msg).unwrap();
                        let digest = sha2::Sha256::digest(&msg);
                        rsa_pub
                            .verify(rsa::Pss::new::<sha2::Sha256>(), &digest, &sig)
                            .unwrap();
                    }
                });
            }
        });

        let s = p.open_rw_session(slot).unwrap();
        let ec_key = private_key(&s, &ec_id2);
        // The private key never leaves the daemon.
        let err = s
            .get_attributes(ec_key, &[AttributeType::Value])
            .map(|a| a.len());
        assert!(
            matches!(
                err,
                Ok(0) | Err(CkError::Pkcs11(RvError::AttributeSensitive, _))
            ),
            "{err:?}"
        );
        // An RSA mechanism with an EC key, a handle that names nothing.
        assert_eq!(
            rv(s.sign(&Mechanism::Sha256RsaPkcs, ec_key, b"x").unwrap_err()),
            RvError::KeyTypeInconsistent
        );
        assert_eq!(
            // SAFETY: only a number handed to the module, which must refuse it.
            rv(s.sign(
                &Mechanism::EcdsaSha256,
                unsafe { ObjectHandle::new_from_raw(9999) },
                b"x"
            )
            .unwrap_err()),
            RvError::KeyHandleInvalid
        );
        // PSS parameters the daemon does not sign with.
        let wrong_salt = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
            hash_alg: MechanismType::SHA256,
            mgf: PkcsMgfType::MGF1_SHA256,
            s_len: 20u64.into(),
        });
        let rsa_key = private_key(&s, &rsa_id2);
        assert_eq!(
            rv(s.sign(&wrong_salt, rsa_key, b"x").unwrap_err()),
            RvError::MechanismParamInvalid
        );
        // Random bytes beyond one API call's 1024.
        assert_eq!(s.generate_random_vec(3000).unwrap().len(), 3000);
        (p, s, ec_key)
    })
    .await
    .unwrap();

    // The daemon goes away: a device error, not a crash; back again, the same handle works.
    d.stop();
    let (pkcs11, s, ec_key) = tokio::task::spawn_blocking(move || {
        let (p, s, k) = pkcs11;
        assert_eq!(
            rv(s.sign(&Mechanism::EcdsaSha256, k, b"daemon down")
                .unwrap_err()),
            RvError::DeviceError
        );
        (p, s, k)
    })
    .await
    .unwrap();
    d.start();
    // The restarted daemon listens on another port: the application finalizes, the
    // configuration names the new endpoint, and a fresh C_Initialize serves again.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .lines()
            .map(|l| {
                if l.starts_with("endpoint") {
                    format!("endpoint = \"{}\"\n", d.endpoint())
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>(),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        drop(s);
        let _ = ec_key;
        pkcs11.finalize().unwrap();
        let p = Pkcs11::new(module_path()).unwrap();
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = p.get_slots_with_token().unwrap()[0];
        let s = p.open_ro_session(slot).unwrap();
        let k = private_key(&s, &ec_id3);
        let sig = s.sign(&Mechanism::EcdsaSha256, k, b"daemon back").unwrap();
        let key = p256::ecdsa::VerifyingKey::from_public_key_der(&ec_der).unwrap();
        key.verify(
            b"daemon back",
            &p256::ecdsa::Signature::from_slice(&sig).unwrap(),
        )
        .unwrap();
        drop(s);
        p.finalize().unwrap();
    })
    .await
    .unwrap();

    // A sub-account whose policy lets it list keys and sign with the EC key only: the module
    // under its API key signs with that key and answers CKR_FUNCTION_REJECTED for the other.
    let c = d.client();
    let sub = iam::add_user(&c, "p11sub").await;
    let doc = iam::policy(vec![
        iam::statement(
            "allow",
            &["kms:ListKeyDetail", "kms:GetPublicKey"],
            &["*".to_string()],
        ),
        iam::statement(
            "allow",
            &["kms:SignByAsymmetricKey"],
            &[iam::key_res(&ec_id)],
        ),
    ]);
    iam::grant(&c, sub.uin, &doc).await;
    std::fs::write(
        &cfg,
        format!(
            "endpoint = \"{}\"\nregion = \"{REGION}\"\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n",
            d.endpoint(),
            sub.secret_id,
            sub.secret_key
        ),
    )
    .unwrap();
    tokio::task::spawn_blocking(move || {
        let p = Pkcs11::new(module_path()).unwrap();
        p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        let slot = p.get_slots_with_token().unwrap()[0];
        let s = p.open_ro_session(slot).unwrap();
        let k = private_key(&s, &ec_id);
        assert_eq!(
            s.sign(&Mechanism::EcdsaSha256, k, b"allowed")
                .unwrap()
                .len(),
            64
        );
        let k = private_key(&s, &rsa_id);
        assert_eq!(
            rv(s.sign(&pss(), k, b"denied").unwrap_err()),
            RvError::FunctionRejected
        );
        drop(s);
        p.finalize().unwrap();
    })
    .await
    .unwrap();
}
