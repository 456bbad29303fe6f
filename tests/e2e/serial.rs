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

    // RSA-2048 in the device (issue 18): a local OAEP-SHA-256 ciphertext decrypts.
    let rsa_dec = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("rsa"), "KeyUsage": "ASYMMETRIC_DECRYPT_RSA_2048"}),
        )
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let pk = {
        use rsa::pkcs8::DecodePublicKey;
        let der = unb64(
            ok(c.kms("GetPublicKey", json!({"KeyId": rsa_dec}))
                .await
                .unwrap())["PublicKey"]
                .as_str()
                .unwrap(),
        );
        rsa::RsaPublicKey::from_public_key_der(&der).unwrap()
    };
    let ct = pk
        .encrypt(
            &mut rand_core::OsRng,
            rsa::Oaep::new::<sha2::Sha256>(),
            b"to the device",
        )
        .unwrap();
    let r = ok(c
        .kms(
            "AsymmetricRsaDecrypt",
            json!({"KeyId": rsa_dec, "Ciphertext": b64(&ct), "Algorithm": "RSAES_OAEP_SHA_256"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), b"to the device");
}

/// Issue 18: RSA key generation runs in bounded `GeneratePrime` steps, and the link serves
/// other requests between them: Encrypts sent while RSA keys are being created complete
/// before those keys do, instead of queueing behind whole key generations.
#[tokio::test(flavor = "multi_thread")]
async fn rsa_key_generation_lets_other_requests_through() {
    let state = tempfile::tempdir().unwrap();
    let sim = Sim::start(state.path(), &[]);
    let d = serial_daemon(&sim);
    let c = d.client();
    let sym = ok(c
        .kms("CreateKey", json!({"Alias": unique("sym")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keygen = {
        let c = d.client();
        let done = done.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                ok(c.kms(
                    "CreateKey",
                    json!({"Alias": unique("rsa"), "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048"}),
                )
                .await
                .unwrap());
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    let mut served = 0;
    let mut worst = std::time::Duration::ZERO;
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let started = std::time::Instant::now();
        ok(c.kms(
            "Encrypt",
            json!({"KeyId": sym, "Plaintext": b64(b"meanwhile")}),
        )
        .await
        .unwrap());
        worst = worst.max(started.elapsed());
        served += 1;
    }
    keygen.await.unwrap();
    eprintln!("{served} Encrypts served during 3 RSA key generations, the slowest {worst:?}");
    assert!(
        served >= 3,
        "only {served} Encrypts were served while RSA keys were generated"
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
    // The store's device was checked before pairing: the other device did not get this
    // host's pairing key.
    assert!(!other_state.path().join("pairing.key").exists());

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

/// Issue 19: the link carries several requests at once. Sixteen clients at once, each
/// encrypting and decrypting plaintexts of its own, on a device that loses, damages and
/// resets answers while the pipeline is full: no client ever gets another's answer, and a
/// request fails only as an `InternalError` (a request whose three attempts all met a fault:
/// with many requests in flight, which answers the faults hit is a matter of timing, so a
/// rare one may; a CI run saw one in 192). Most requests must succeed, and without faults
/// every one must. The exact placement of faults in a pipeline, and exactly which requests
/// are sent again, is tested deterministically in host/src/hsm/serial/tests.rs.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_share_the_link_through_faults() {
    let plain: &[&str] = &[];
    for faults in [
        plain,
        // About one answer in fourteen lost or damaged, a reset every 61 frames: a pipeline
        // of eight is hit often, a request three times in a row almost never.
        &["--drop-every", "29", "--corrupt-every", "31"],
        &["--reset-every", "61"],
    ] {
        let state = tempfile::tempdir().unwrap();
        let sim = Sim::start(state.path(), faults);
        let d = serial_daemon(&sim);
        let key_id = ok(d
            .client()
            .kms("CreateKey", json!({"Alias": unique("pipe")}))
            .await
            .unwrap())["KeyId"]
            .as_str()
            .unwrap()
            .to_string();
        let clients: Vec<_> = (0..16)
            .map(|client| {
                let (c, key_id) = (d.client(), key_id.clone());
                tokio::spawn(async move {
                    for i in 0..6 {
                        let msg = format!("client {client} message {i}");
                        let enc = c
                            .kms(
                                "Encrypt",
                                json!({"KeyId": key_id, "Plaintext": b64(msg.as_bytes())}),
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        let Some(blob) = enc.get("CiphertextBlob").cloned() else {
                            return Err(format!("{msg}: Encrypt: {enc}"));
                        };
                        let back = c
                            .kms("Decrypt", json!({"CiphertextBlob": blob}))
                            .await
                            .map_err(|e| e.to_string())?;
                        let Some(text) = back.get("Plaintext").and_then(|p| p.as_str()) else {
                            return Err(format!("{msg}: Decrypt: {back}"));
                        };
                        assert_eq!(unb64(text), msg.as_bytes(), "another client's answer");
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        let mut failed = Vec::new();
        for client in clients {
            if let Err(e) = client.await.unwrap() {
                failed.push(e);
            }
        }
        // A client stops at its first failure; 16 clients send 12 requests each.
        let only_lost_attempts = failed
            .iter()
            .all(|e| e.contains("\"Code\":\"InternalError\""));
        let tolerated = if faults.is_empty() { 0 } else { 2 };
        if failed.len() > tolerated || !only_lost_attempts {
            let log = String::from_utf8_lossy(&d.log_text()).into_owned();
            let serial: Vec<&str> = log.lines().filter(|l| l.contains("serial")).collect();
            panic!(
                "{faults:?}: {failed:#?}\ndaemon log (serial):\n{}",
                serial.join("\n")
            );
        }
    }
}

/// The serial line as an attacker sees it: a raw client that opens the device and speaks the
/// wire protocol itself (postcard frames, the same bytes the daemon sends).
struct RawLine {
    file: std::fs::File,
    buf: Vec<u8>,
    pending: std::collections::VecDeque<u8>,
    seq: u32,
}

impl RawLine {
    fn open(device: &str) -> RawLine {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(device)
            .expect("open the serial device");
        // SAFETY: a valid descriptor and a termios filled in by tcgetattr.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(file.as_raw_fd(), &mut t), 0);
            libc::cfmakeraw(&mut t);
            assert_eq!(libc::tcsetattr(file.as_raw_fd(), libc::TCSANOW, &t), 0);
        }
        RawLine {
            file,
            buf: vec![0; keyward_shared::frame::MAX_FRAME],
            pending: Default::default(),
            seq: 1000,
        }
    }

    /// Sends one request frame (after a delimiter, as the host does) and returns the answer
    /// that echoes its sequence number.
    fn call(
        &mut self,
        req: &keyward_shared::wire::Request<'_>,
    ) -> keyward_shared::wire::OwnedResponse {
        use keyward_shared::frame::{decode_frame, encode_frame_vec, Feed, FrameReader};
        use std::io::{Read, Write};
        use std::os::fd::AsRawFd;
        self.seq += 1;
        let seq = self.seq;
        self.file.write_all(&[0]).unwrap();
        self.file
            .write_all(&encode_frame_vec(seq, req).unwrap())
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut reader = FrameReader::new(&mut self.buf);
        loop {
            while let Some(b) = self.pending.pop_front() {
                if let Feed::Frame(n) = reader.feed(b) {
                    if let Ok(env) =
                        decode_frame::<keyward_shared::wire::OwnedResponse>(reader.frame(n))
                    {
                        if env.seq == seq {
                            return env.body;
                        }
                    }
                }
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "the device did not answer {req:?}");
            let mut pfd = libc::pollfd {
                fd: self.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as libc::c_int) } <= 0 {
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk).unwrap();
            self.pending.extend(&chunk[..n]);
        }
    }
}

/// `keyward serve` with `config`: `Ok(stderr)` if it exited, `Err(stderr)` if it came up and
/// listened (it is then killed).
fn try_serve(config: &std::path::Path) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let log = config.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if child.try_wait().unwrap().is_some() {
            return Ok(std::fs::read_to_string(&log).unwrap_or_default());
        }
        if text.contains("listening on") || std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(text);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Issue 12 item 6, the attack: someone who can open the serial device and holds a copy of the
/// data directory (database included, the pairing key file not) tries to use the keys, first
/// as a second daemon (without a key file, then with a key of its own), then as a raw client
/// speaking the wire protocol with the sealed key and a ciphertext taken from the copied
/// database. Before pairing existed the second daemon started and the device decrypted for
/// the raw client.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_host_with_a_copy_of_the_database_cannot_use_the_keys() {
    use keyward_firmware::pairing::{SealedRequest, KEY_LEN};
    use keyward_shared::wire::{DeviceError, OwnedResponse, Request};
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().unwrap();
    let sim = Sim::start(state.path(), &[]);
    let mut first = serial_daemon(&sim);
    let c = first.client();
    let key_id = ok(c
        .kms("CreateKey", json!({"Alias": unique("paired")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = unb64(
        ok(c.kms(
            "Encrypt",
            json!({"KeyId": key_id, "Plaintext": b64(b"only for the paired host")}),
        )
        .await
        .unwrap())["CiphertextBlob"]
            .as_str()
            .unwrap(),
    );
    first.stop();

    // The copy: the whole data directory except the pairing key file.
    let second = tempfile::tempdir().unwrap();
    let copy = second.path().join("data");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(first.data_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "serial-pairing.key" && entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
    }
    let config = second.path().join("keyward.toml");
    std::fs::write(
        &config,
        std::fs::read_to_string(&first.config).unwrap().replace(
            &first.data_dir().display().to_string(),
            &copy.display().to_string(),
        ),
    )
    .unwrap();

    // A second daemon on the copy does not start, without a key file...
    let refused = |why: &str| match try_serve(&config) {
        Ok(stderr) => assert!(
            stderr.contains("the serial device is paired with another host")
                && stderr.contains(why),
            "{stderr}"
        ),
        Err(log) => panic!("a second host started on the copy of the database:\n{log}"),
    };
    refused("serial-pairing.key is missing");
    assert!(!copy.join("serial-pairing.key").exists());
    // ...nor with a key of its own.
    let own_key = copy.join("serial-pairing.key");
    std::fs::write(&own_key, [0x42u8; KEY_LEN]).unwrap();
    std::fs::set_permissions(&own_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused("does not hold the key registered on the device");

    // ...and the device refuses the raw wire requests of a client that holds the sealed key,
    // the ciphertext and its associated data, but not the pairing key.
    let db = rusqlite::Connection::open(copy.join("keyward.db")).unwrap();
    let sealed: Vec<u8> = db
        .query_row(
            "SELECT sealed FROM key_versions WHERE key_id = ?1 AND version = 1",
            [&key_id],
            |r| r.get(0),
        )
        .unwrap();
    let parsed = keyward_shared::blob::Blob::parse(&blob).unwrap();
    let aad = parsed.header.bound_prefix().to_vec();
    let mut line = RawLine::open(&sim.device);
    let decrypt = Request::Decrypt {
        algorithm: parsed.header.algorithm,
        sealed: &sealed,
        aad: &aad,
        nonce: parsed.nonce,
        ciphertext: parsed.ciphertext,
    };
    let encrypt = Request::Encrypt {
        algorithm: parsed.header.algorithm,
        sealed: &sealed,
        aad: b"",
        plaintext: b"x",
    };
    let generate = Request::GenerateKey {
        algorithm: parsed.header.algorithm,
    };
    for req in [&decrypt, &encrypt, &generate, &Request::Random { len: 32 }] {
        let resp = line.call(req);
        assert_eq!(
            resp,
            OwnedResponse::Error(DeviceError::Unauthenticated),
            "the device served {req:?} to an unpaired client"
        );
    }
    // Wrapped in an envelope of a real session, under a key that is not the pairing key.
    let OwnedResponse::Session { nonce } = line.call(&Request::BeginSession) else {
        panic!("no session")
    };
    let nonce: [u8; 32] = nonce.try_into().unwrap();
    for (counter, req) in [(1, &decrypt), (2, &encrypt), (3, &generate)] {
        let forged = SealedRequest::new(&[0x42; KEY_LEN], &nonce, counter, req).unwrap();
        assert_eq!(
            line.call(&forged.request()),
            OwnedResponse::Error(DeviceError::Unauthenticated)
        );
    }
    // Nor can it pair the device to itself.
    assert_eq!(
        line.call(&Request::Pair {
            ephemeral: &[4; 65],
            wrapped_key: &[0; 48],
        }),
        OwnedResponse::Error(DeviceError::AlreadyPaired)
    );
    drop(line);

    // The paired host is unaffected.
    first.start();
    let back = ok(first
        .client()
        .kms("Decrypt", json!({"CiphertextBlob": b64(&blob)}))
        .await
        .unwrap());
    assert_eq!(
        unb64(back["Plaintext"].as_str().unwrap()),
        b"only for the paired host"
    );
}

/// The pairing key is written at the first start, readable by the daemon's user only, and
/// is nowhere in the database (whose copy is what the attacker of item 6 holds); a key file
/// that others may read stops start-up.
#[tokio::test(flavor = "multi_thread")]
async fn the_pairing_key_lives_in_its_file_and_never_in_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().unwrap();
    let sim = Sim::start(state.path(), &[]);
    let mut d = serial_daemon(&sim);
    ok(d.client()
        .kms("CreateKey", json!({"Alias": unique("k")}))
        .await
        .unwrap());
    d.stop();
    let file = d.data_dir().join("serial-pairing.key");
    let key = std::fs::read(&file).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The device holds the same key, in its state directory.
    assert_eq!(
        std::fs::read(state.path().join("pairing.key")).unwrap(),
        key
    );
    for entry in std::fs::read_dir(d.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path == file || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(key.len()).any(|w| w == key.as_slice()),
            "the pairing key is in {}",
            path.display()
        );
    }
    assert!(!String::from_utf8_lossy(&d.log_text()).contains(&hex::encode(&key)));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let stderr = try_serve(&d.config).expect("start-up fails");
    assert!(stderr.contains("accessible to other users"), "{stderr}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    d.start();
    ok(d.client()
        .kms("GenerateRandom", json!({"NumberOfBytes": 8}))
        .await
        .unwrap());
}
