//! End-to-end with the serial backend: the daemon drives the firmware simulator
//! (`keyward-fw-sim`) through a real pseudo-terminal, with the same frames a device gets.

mod common;

use common::*;
use serde_json::json;

struct Sim {
    child: std::process::Child,
    device: String,
}

impl Sim {
    fn start(state: &std::path::Path, extra: &[&str]) -> Sim {
        let (child, device) = start_sim(state, extra);
        Sim { child, device }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serial_daemon(sim: &Sim) -> Daemon {
    serial_daemon_with_timeout(sim, 500)
}

fn serial_daemon_with_timeout(sim: &Sim, timeout_ms: u64) -> Daemon {
    Daemon::with_hsm_section(
        tempfile::tempdir().unwrap(),
        &format!(
            "[hsm]\nbackend = \"serial\"\npath = \"{}\"\ntimeout_ms = {timeout_ms}\n",
            sim.device
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kms_over_the_serial_link() {
    let state = tempfile::tempdir().unwrap();
    let sim = Sim::start(state.path(), &[]);
    let mut d = serial_daemon(&sim);
    let c = d.client();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("serial")}))
        .await
        .unwrap());
    let key_id = key["KeyId"].as_str().unwrap().to_string();
    let meta = ok(c
        .kms("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["ProtectionLevel"], "HSM");
    let blob = ok(c
        .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(b"over the wire"), "EncryptionContext": "{\"a\":\"b\"}"}))
        .await
        .unwrap())["CiphertextBlob"]
        .clone();
    let back = ok(c
        .kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"a\":\"b\"}"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), b"over the wire");
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        "FailedOperation.DecryptError",
    );
    let dk = ok(c
        .kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "KeySpec": "AES_256"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(dk["Plaintext"].as_str().unwrap()).len(), 32);
    let r = ok(c
        .kms("GenerateRandom", json!({"NumberOfBytes": 1024}))
        .await
        .unwrap());
    assert_eq!(unb64(r["Plaintext"].as_str().unwrap()).len(), 1024);
    // Secrets Manager rides on the same link.
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": unique("s"), "SecretString": "x"}),
    )
    .await
    .unwrap());

    // A daemon restart reconnects to the same device; old ciphertexts still open.
    d.restart();
    let c = d.client();
    let back = ok(c
        .kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"a\":\"b\"}"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), b"over the wire");
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_and_corrupted_frames_are_retried() {
    let state = tempfile::tempdir().unwrap();
    // Every third request frame is dropped and every fourth answer has a flipped bit: the host
    // must retry, skip the broken frames, and still give correct answers.
    let sim = Sim::start(state.path(), &["--drop-every", "3", "--corrupt-every", "4"]);
    let d = serial_daemon(&sim);
    let c = d.client();
    let key_id = ok(c
        .kms("CreateKey", json!({"Alias": unique("faulty")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..12u8 {
        let msg = vec![i; 40];
        let blob = ok(c
            .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(&msg)}))
            .await
            .unwrap())["CiphertextBlob"]
            .clone();
        let back = ok(c
            .kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap());
        assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), msg, "round {i}");
    }
}

/// SM2 and P-256 keys live in the device (protection level HSM): signatures verify with
/// RustCrypto and SM2 ciphertexts made locally are decrypted by the device.
#[tokio::test(flavor = "multi_thread")]
async fn asymmetric_keys_in_the_device() {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::pkcs8::DecodePublicKey;
    use sha2::Digest;
    let state = tempfile::tempdir().unwrap();
    let sim = Sim::start(state.path(), &[]);
    let d = serial_daemon(&sim);
    let c = d.client();
    let msg = b"signed inside the device";

    let ecc = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("ecc"), "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_ECC"}),
        )
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let meta =
        ok(c.kms("DescribeKey", json!({"KeyId": ecc})).await.unwrap())["KeyMetadata"].clone();
    assert_eq!(meta["ProtectionLevel"], "HSM");
    let spki = unb64(
        ok(c.kms("GetPublicKey", json!({"KeyId": ecc})).await.unwrap())["PublicKey"]
            .as_str()
            .unwrap(),
    );
    let sig = unb64(
        ok(c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": ecc, "Algorithm": "ECC_P256_R1", "Message": b64(msg)}),
        )
        .await
        .unwrap())["Signature"]
            .as_str()
            .unwrap(),
    );
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(&spki).unwrap();
    vk.verify_prehash(
        &sha2::Sha256::digest(msg),
        &p256::ecdsa::Signature::from_der(&sig).unwrap(),
    )
    .expect("the device's P-256 signature verifies");

    let sm2_sign = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("sm2"), "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_SM2"}),
        )
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let spki = unb64(
        ok(c.kms("GetPublicKey", json!({"KeyId": sm2_sign}))
            .await
            .unwrap())["PublicKey"]
            .as_str()
            .unwrap(),
    );
    let sig = unb64(
        ok(c.kms(
            "SignByAsymmetricKey",
            json!({"KeyId": sm2_sign, "Algorithm": "SM2DSA", "Message": b64(msg)}),
        )
        .await
        .unwrap())["Signature"]
            .as_str()
            .unwrap(),
    );
    let pk = <sm2::PublicKey as sm2::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    let vk = sm2::dsa::VerifyingKey::new("1234567812345678", pk).unwrap();
    sm2::dsa::signature::Verifier::verify(&vk, msg, &sm2::dsa::Signature::from_der(&sig).unwrap())
        .expect("the device's SM2 signature verifies");

    let sm2_dec = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("sm2d"), "KeyUsage": "ASYMMETRIC_DECRYPT_SM2"}),
        )
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let spki = unb64(
        ok(c.kms("GetPublicKey", json!({"KeyId": sm2_dec}))
            .await
            .unwrap())["PublicKey"]
            .as_str()
            .unwrap(),
    );
    let pk = <sm2::PublicKey as sm2::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
    let ct = sm2::pke::EncryptingKey::new(pk)
        .encrypt_der(&mut getrandom::SysRng, b"to the device")
        .unwrap();
    let r = ok(c
        .kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": sm2_dec, "Ciphertext": b64(&ct)}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), b"to the device");
    let mut bad = ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    err(
        &c.kms(
            "AsymmetricSm2Decrypt",
            json!({"KeyId": sm2_dec, "Ciphertext": b64(&bad)}),
        )
        .await
        .unwrap(),
        "FailedOperation.DecryptError",
    );
    err(
        &c.kms(
            "CreateKey",
            json!({"Alias": unique("rsa"), "KeyUsage": "ASYMMETRIC_DECRYPT_RSA_2048"}),
        )
        .await
        .unwrap(),
        "UnsupportedOperation.UnsupportedKeyUsageInCurrentRegion",
    );
}

/// The daemon pins the device it first saw: another device (another device secret) on the
/// same data directory is refused at start, the original one is accepted again.
#[tokio::test(flavor = "multi_thread")]
async fn the_data_directory_is_pinned_to_its_device() {
    let first_state = tempfile::tempdir().unwrap();
    let other_state = tempfile::tempdir().unwrap();
    let first = Sim::start(first_state.path(), &[]);
    let mut d = serial_daemon(&first);
    let c = d.client();
    ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 8}))
        .await
        .unwrap());
    d.stop();
    drop(first);

    let other = Sim::start(other_state.path(), &[]);
    let config = std::fs::read_to_string(&d.config).unwrap();
    let device_line = config
        .lines()
        .find(|l| l.starts_with("path = "))
        .unwrap()
        .to_string();
    std::fs::write(
        &d.config,
        config.replace(&device_line, &format!("path = \"{}\"", other.device)),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another HSM device"));

    // The original device (same secret, new pseudo-terminal) is accepted again.
    let again = Sim::start(first_state.path(), &[]);
    let config = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        config.replace(
            &format!("path = \"{}\"", other.device),
            &format!("path = \"{}\"", again.device),
        ),
    )
    .unwrap();
    d.start();
    ok(d.client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 8}))
        .await
        .unwrap());
}

/// A device that stalls past the host's timeout (its late answer must be ignored, never taken
/// for the retry's) and a device that resets halfway through an answer.
#[tokio::test(flavor = "multi_thread")]
async fn stalled_and_resetting_devices() {
    for faults in [["--stall-every", "3"], ["--reset-every", "3"]] {
        let state = tempfile::tempdir().unwrap();
        let sim = Sim::start(state.path(), &faults);
        // 1 s: a stalled request (1.5 s) times out once; its late answer arrives while the
        // retry is pending and must be ignored.
        let d = serial_daemon_with_timeout(&sim, 1000);
        let c = d.client();
        let key_id = ok(c
            .kms("CreateKey", json!({"Alias": unique("f")}))
            .await
            .unwrap())["KeyId"]
            .as_str()
            .unwrap()
            .to_string();
        for i in 0..6u8 {
            let msg = vec![i; 24];
            let blob = ok(c
                .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(&msg)}))
                .await
                .unwrap())["CiphertextBlob"]
                .clone();
            let back = ok(c
                .kms("Decrypt", json!({"CiphertextBlob": blob}))
                .await
                .unwrap());
            assert_eq!(
                unb64(back["Plaintext"].as_str().unwrap()),
                msg,
                "{faults:?} round {i}"
            );
        }
    }
}
