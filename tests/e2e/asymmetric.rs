//! End-to-end asymmetric CMKs on the backend under test (`KEYWARD_TEST_BACKEND`: SoftHSM2, the
//! linked-in firmware core, the firmware behind the serial link): every KeyUsage × algorithm ×
//! message type, the public key checked with RustCrypto, local encryption decrypted by the
//! daemon, and refusals.

mod common;

use common::*;
use keyward::client::TcClient;
use serde_json::json;
use sha2::Digest;

async fn create(c: &TcClient, usage: &str) -> String {
    let r = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("asym"), "KeyUsage": usage}),
        )
        .await
        .unwrap());
    assert_eq!(r["KeyUsage"], usage);
    r["KeyId"].as_str().unwrap().to_string()
}

async fn public_der(c: &TcClient, key_id: &str) -> Vec<u8> {
    let r = ok(c
        .kms("GetPublicKey", json!({"KeyId": key_id}))
        .await
        .unwrap());
    assert!(r["PublicKeyPem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----\n"));
    unb64(r["PublicKey"].as_str().unwrap())
}

async fn sign(c: &TcClient, key_id: &str, alg: &str, msg: &[u8], digest: bool) -> Vec<u8> {
    let r = ok(c
        .kms("SignByAsymmetricKey", json!({"KeyId": key_id, "Algorithm": alg, "Message": b64(msg), "MessageType": if digest { "DIGEST" } else { "RAW" }}))
        .await
        .unwrap());
    unb64(r["Signature"].as_str().unwrap())
}

async fn verify(
    c: &TcClient,
    key_id: &str,
    alg: &str,
    msg: &[u8],
    digest: bool,
    sig: &[u8],
) -> bool {
    ok(c.kms("VerifyByAsymmetricKey", json!({"KeyId": key_id, "Algorithm": alg, "Message": b64(msg), "MessageType": if digest { "DIGEST" } else { "RAW" }, "SignatureValue": b64(sig)}))
        .await
        .unwrap())["SignatureValid"]
        .as_bool()
        .unwrap()
}

/// Signs RAW and DIGEST, verifies through the API (and a tampered message fails), and
/// returns the RAW signature for independent checks.
async fn sign_both_ways(
    c: &TcClient,
    key_id: &str,
    alg: &str,
    msg: &[u8],
    digest: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let raw = sign(c, key_id, alg, msg, false).await;
    assert!(verify(c, key_id, alg, msg, false, &raw).await, "{alg} RAW");
    assert!(!verify(c, key_id, alg, b"another message", false, &raw).await);
    let dig = sign(c, key_id, alg, digest, true).await;
    assert!(
        verify(c, key_id, alg, digest, true, &dig).await,
        "{alg} DIGEST"
    );
    (raw, dig)
}

/// A P-384 key signs a 48-byte SHA-384 DIGEST: the signature is ECDSA-with-SHA-384 of the
/// message, which the `p384` crate's own hashing verifier checks; the API verifies it too.
/// Other lengths keep the reference's `InvalidParameterValue`.
async fn p384_takes_sha384_digests(
    c: &TcClient,
    key_id: &str,
    vk: &p384::ecdsa::VerifyingKey,
    msg: &[u8],
) {
    use p384::ecdsa::signature::Verifier;
    let d384 = sha2::Sha384::digest(msg).to_vec();
    let sig = sign(c, key_id, "ECC_P384_R1", &d384, true).await;
    let parsed = p384::ecdsa::Signature::from_der(&sig).expect("DER signature");
    vk.verify(msg, &parsed)
        .expect("ECDSA P-384 with SHA-384 verifies");
    assert!(vk.verify(b"another message", &parsed).is_err());
    assert!(verify(c, key_id, "ECC_P384_R1", &d384, true, &sig).await);
    let mut other = d384.clone();
    other[47] ^= 1;
    assert!(!verify(c, key_id, "ECC_P384_R1", &other, true, &sig).await);
    for len in [31, 33, 47, 49, 64] {
        err(&c.kms("SignByAsymmetricKey", json!({"KeyId": key_id, "Algorithm": "ECC_P384_R1", "Message": b64(&vec![1u8; len]), "MessageType": "DIGEST"})).await.unwrap(), "InvalidParameterValue");
        err(&c.kms("VerifyByAsymmetricKey", json!({"KeyId": key_id, "Algorithm": "ECC_P384_R1", "Message": b64(&vec![1u8; len]), "MessageType": "DIGEST", "SignatureValue": b64(&sig)})).await.unwrap(), "InvalidParameterValue");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_keys_verify_independently() {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::hazmat::PrehashVerifier;
    let d = Daemon::under_test();
    let c = d.client();
    let msg = b"keyward signs this";
    let digest = sha2::Sha256::digest(msg).to_vec();

    let rsa_key = create(&c, "ASYMMETRIC_SIGN_VERIFY_RSA_2048").await;
    let pk = rsa::RsaPublicKey::from_public_key_der(&public_der(&c, &rsa_key).await).unwrap();
    assert_eq!(rsa::traits::PublicKeyParts::size(&pk), 256);
    for alg in ["RSA_PKCS1_SHA_256", "RSA_PSS_SHA_256"] {
        let (raw, dig) = sign_both_ways(&c, &rsa_key, alg, msg, &digest).await;
        for sig in [raw, dig] {
            let ok = if alg == "RSA_PKCS1_SHA_256" {
                pk.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest, &sig)
            } else {
                pk.verify(rsa::Pss::new::<sha2::Sha256>(), &digest, &sig)
            };
            assert!(
                ok.is_ok(),
                "{alg} signature does not verify with the rsa crate"
            );
        }
    }

    let p256_key = create(&c, "ASYMMETRIC_SIGN_VERIFY_ECC").await;
    let vk =
        p256::ecdsa::VerifyingKey::from_public_key_der(&public_der(&c, &p256_key).await).unwrap();
    let (raw, dig) = sign_both_ways(&c, &p256_key, "ECC_P256_R1", msg, &digest).await;
    for sig in [raw, dig] {
        let sig = p256::ecdsa::Signature::from_der(&sig).expect("DER signature");
        vk.verify_prehash(&digest, &sig).expect("p256 verifies");
    }

    let p384_key = create(&c, "ASYMMETRIC_SIGN_VERIFY_ECDSA384").await;
    let vk =
        p384::ecdsa::VerifyingKey::from_public_key_der(&public_der(&c, &p384_key).await).unwrap();
    let (raw, dig) = sign_both_ways(&c, &p384_key, "ECC_P384_R1", msg, &digest).await;
    for sig in [raw, dig] {
        vk.verify_prehash(&digest, &p384::ecdsa::Signature::from_der(&sig).unwrap())
            .expect("p384 verifies");
    }
    p384_takes_sha384_digests(&c, &p384_key, &vk, msg).await;

    let sm2_key = create(&c, "ASYMMETRIC_SIGN_VERIFY_SM2").await;
    let meta = ok(c
        .kms("DescribeKey", json!({"KeyId": sm2_key}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    // SoftHSM2 has no SM2 (the host runs it); the firmware runs it itself.
    let sm2_level = match backend_under_test() {
        Backend::SoftHsm => "SOFTWARE",
        _ => protection_level_under_test(),
    };
    assert_eq!(meta["ProtectionLevel"], sm2_level);
    assert_eq!(meta["Type"], 4);
    let spki = public_der(&c, &sm2_key).await;
    let (raw, _) = sign_both_ways(&c, &sm2_key, "SM2DSA", msg, &sha2::Sha256::digest(b"e")).await;
    let pk = <sm2::PublicKey as sm2::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    let vk = sm2::dsa::VerifyingKey::new("1234567812345678", pk).unwrap();
    sm2::dsa::signature::Verifier::verify(&vk, msg, &sm2::dsa::Signature::from_der(&raw).unwrap())
        .expect("SM2DSA verifies");

    // Refusals. A 48-byte DIGEST is a P-384 key's only (a SHA-384 digest).
    for len in [31, 33, 48] {
        err(&c.kms("SignByAsymmetricKey", json!({"KeyId": p256_key, "Algorithm": "ECC_P256_R1", "Message": b64(&vec![0u8; len]), "MessageType": "DIGEST"})).await.unwrap(), "InvalidParameterValue");
    }
    err(&c.kms("VerifyByAsymmetricKey", json!({"KeyId": p256_key, "Algorithm": "ECC_P256_R1", "Message": b64(&[0u8; 48]), "MessageType": "DIGEST", "SignatureValue": b64(&[0x30, 0])})).await.unwrap(), "InvalidParameterValue");
    err(
        &c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": p256_key, "Algorithm": "ECC_P256_R1", "Message": b64(&[0u8; 4097])}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": p256_key, "Algorithm": "RSA_PSS_SHA_256", "Message": b64(msg)}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(&c.kms("SignByAsymmetricKey", json!({"KeyId": p256_key, "Algorithm": "ECC_P256_R1", "Message": b64(msg), "MessageType": "HASH"})).await.unwrap(), "InvalidParameterValue");
    err(
        &c.kms("Encrypt", json!({"KeyId": rsa_key, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        "UnsupportedOperation",
    );
    err(&c.kms("AsymmetricRsaDecrypt", json!({"KeyId": rsa_key, "Ciphertext": b64(&[1u8; 256]), "Algorithm": "RSAES_PKCS1_V1_5"})).await.unwrap(), "UnsupportedOperation");
    err(
        &c.kms("RotateKey", json!({"KeyId": rsa_key})).await.unwrap(),
        "UnsupportedOperation.RotateNotSupported",
    );
    let sym = ok(c
        .kms("CreateKey", json!({"Alias": unique("sym")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    err(
        &c.kms("GetPublicKey", json!({"KeyId": sym})).await.unwrap(),
        "UnsupportedOperation",
    );
    err(
        &c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": sym, "Algorithm": "SM2DSA", "Message": b64(msg)}),
        )
        .await
        .unwrap(),
        "UnsupportedOperation",
    );
    // State gating: a disabled key neither signs nor exports.
    ok(c.kms("DisableKey", json!({"KeyId": p256_key}))
        .await
        .unwrap());
    err(
        &c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": p256_key, "Algorithm": "ECC_P256_R1", "Message": b64(msg)}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );
    err(
        &c.kms("GetPublicKey", json!({"KeyId": p256_key}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );

    // ListAlgorithms reports what the backend does, and where.
    let algs = ok(c.kms("ListAlgorithms", json!({})).await.unwrap());
    let sv: Vec<(String, String)> = algs["AsymmetricSignVerifyAlgorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["KeyUsage"].as_str().unwrap().to_string(),
                a["ProtectionLevel"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let level = protection_level_under_test();
    for usage in [
        "ASYMMETRIC_SIGN_VERIFY_ECC",
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
    ] {
        assert!(
            sv.contains(&(usage.into(), level.into())),
            "{usage}: {sv:?}"
        );
    }
    assert!(sv.contains(&("ASYMMETRIC_SIGN_VERIFY_SM2".into(), sm2_level.into())));

    // Private keys exist only sealed: on PKCS#11 RSA/EC wrapped by the token's root key, SM2
    // by its seal key; on the firmware, every key under the device key (format 1).
    let firmware = backend_under_test() != Backend::SoftHsm;
    let mut d = d;
    d.stop();
    let db = rusqlite::Connection::open(d.data_dir().join("keyward.db")).unwrap();
    for (key, format) in [
        (&rsa_key, if firmware { 0x01 } else { 0x04u8 }),
        (&p256_key, if firmware { 0x01 } else { 0x04 }),
        (&p384_key, if firmware { 0x01 } else { 0x04 }),
        (&sm2_key, if firmware { 0x01 } else { 0x03 }),
    ] {
        let sealed: Vec<u8> = db
            .query_row(
                "SELECT sealed FROM key_versions WHERE key_id = ?1",
                [key],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sealed[0], format, "sealed format of {key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn decryption_keys_open_local_ciphertexts() {
    use rsa::pkcs8::DecodePublicKey;
    let d = Daemon::under_test();
    let c = d.client();
    let rsa_key = create(&c, "ASYMMETRIC_DECRYPT_RSA_2048").await;
    let pk = rsa::RsaPublicKey::from_public_key_der(&public_der(&c, &rsa_key).await).unwrap();
    let secret = b"wrapped for keyward";
    // Another key's public key: what a ciphertext for the wrong key looks like.
    let other_key = create(&c, "ASYMMETRIC_DECRYPT_RSA_2048").await;
    let other_pk =
        rsa::RsaPublicKey::from_public_key_der(&public_der(&c, &other_key).await).unwrap();
    let encrypt = |pk: &rsa::RsaPublicKey, alg: &str| -> Vec<u8> {
        let mut rng = rand_core::OsRng;
        match alg {
            "RSAES_PKCS1_V1_5" => pk.encrypt(&mut rng, rsa::Pkcs1v15Encrypt, secret),
            "RSAES_OAEP_SHA_1" => pk.encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), secret),
            _ => pk.encrypt(&mut rng, rsa::Oaep::new::<sha2::Sha256>(), secret),
        }
        .unwrap()
    };
    // OAEP-SHA-256 on SoftHSM2 2.6.1 takes the host-decoding path (raw RSA in the token), the
    // others the token's own mechanisms: all must decrypt what RustCrypto encrypted.
    let algs = ["RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"];
    let cases: Vec<(&str, Vec<u8>)> = algs.iter().map(|a| (*a, encrypt(&pk, a))).collect();
    for (alg, ct) in &cases {
        let r = ok(c
            .kms(
                "AsymmetricRsaDecrypt",
                json!({"KeyId": rsa_key, "Ciphertext": b64(ct), "Algorithm": alg}),
            )
            .await
            .unwrap());
        assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), secret, "{alg}");
        // No padding oracle through the answer: a tampered ciphertext (anywhere, including the
        // first byte, which for OAEP decides "Y != 0"), one for another key and one out of
        // range give the same code and the same message.
        let mut bad = vec![encrypt(&other_pk, alg), vec![0xff; 256]];
        for i in [0, 1, 10, 128, 255] {
            let mut t = ct.clone();
            t[i] ^= 1;
            bad.push(t);
        }
        let mut answers = std::collections::BTreeSet::new();
        for b in &bad {
            let r = c
                .kms(
                    "AsymmetricRsaDecrypt",
                    json!({"KeyId": rsa_key, "Ciphertext": b64(b), "Algorithm": alg}),
                )
                .await
                .unwrap();
            err(&r, "FailedOperation.DecryptError");
            answers.insert(r["Error"]["Message"].as_str().unwrap().to_string());
        }
        assert_eq!(
            answers.len(),
            1,
            "{alg}: distinguishable answers {answers:?}"
        );
    }
    err(
        &c.kms(
            "AsymmetricRsaDecrypt",
            json!({"KeyId": rsa_key, "Ciphertext": b64(&cases[0].1), "Algorithm": "RSA_RAW"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    // On PKCS#11 the path was chosen once at start-up and logged once, at INFO.
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    let softhsm = backend_under_test() == Backend::SoftHsm;
    let ready: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("PKCS#11 HSM backend ready"))
        .collect();
    if softhsm {
        assert_eq!(ready.len(), 1, "{log}");
        assert!(ready[0].contains("INFO"), "{}", ready[0]);
        assert!(ready[0].contains("rsa_oaep_sha1=\"token\""), "{}", ready[0]);
        assert!(
            ready[0].contains("rsa_oaep_sha256=\"host-oaep-decoding\"")
                || ready[0].contains("rsa_oaep_sha256=\"token\""),
            "{}",
            ready[0]
        );
    }

    let sm2_key = create(&c, "ASYMMETRIC_DECRYPT_SM2").await;
    let spki = public_der(&c, &sm2_key).await;
    let pk = <sm2::PublicKey as sm2::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    let ek = sm2::pke::EncryptingKey::new(pk);
    let ct = ek.encrypt_der(&mut getrandom::SysRng, secret).unwrap();
    let r = ok(c
        .kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": sm2_key, "Ciphertext": b64(&ct)}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), secret);
    let mut bad = ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    err(
        &c.kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": sm2_key, "Ciphertext": b64(&bad)}),
        )
        .await
        .unwrap(),
        "FailedOperation.DecryptError",
    );
    err(
        &c.kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": sm2_key, "Ciphertext": b64(&[0u8; 257])}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue.InvalidCiphertext",
    );
    err(
        &c.kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": rsa_key, "Ciphertext": b64(&ct)}),
        )
        .await
        .unwrap(),
        "UnsupportedOperation",
    );
    err(
        &c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": sm2_key, "Algorithm": "SM2DSA", "Message": b64(b"x")}),
        )
        .await
        .unwrap(),
        "UnsupportedOperation",
    );
}
