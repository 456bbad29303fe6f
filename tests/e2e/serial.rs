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
    Daemon::with_hsm_section(
        tempfile::tempdir().unwrap(),
        &format!(
            "[hsm]\nbackend = \"serial\"\npath = \"{}\"\ntimeout_ms = 500\n",
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
