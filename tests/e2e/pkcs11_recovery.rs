//! End-to-end: the PKCS#11 backend survives lost sessions under load, without a restart.
//!
//! The daemon's module is the fault-injecting shim (`hsm-pkcs11/fault-shim`) in front of the
//! module under test (SoftHSM2, or kryoptic with `KEYWARD_TEST_PKCS11_MODULE`): each time this test writes a new number to the trigger file, every session
//! the daemon holds answers `CKR_SESSION_HANDLE_INVALID` (odd numbers) or `CKR_DEVICE_REMOVED`
//! (even numbers) from then on and the process is logged out, which is what a token reset or a
//! pulled-and-reinserted token does. Meanwhile several tasks run Encrypt/Decrypt in a loop. At
//! most the requests in flight at a fault may fail; every later one must succeed, on the same
//! daemon process.
//!
//! It also selects the token by serial number rather than label.
//!
//! And `CKR_DEVICE_ERROR`, which tokens answer both for one failed operation and for a device
//! that is gone: a session that still answers is kept, one that does not is replaced.

mod common;

use common::*;
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Concurrent client tasks (more than the pool's sessions, so some wait for one).
const TASKS: usize = 6;
/// Faults injected, alternating the two return values.
const FAULTS: u64 = 4;
/// Successful requests between faults, so each fault hits a busy daemon.
const BETWEEN: usize = 60;

#[derive(Clone, Debug)]
#[allow(dead_code)] // Fields are read through Debug in the failure message.
struct Failure {
    action: &'static str,
    /// A fault was injected between sending the request and receiving the answer.
    in_flight_at_fault: bool,
    response: String,
}

/// The shim cargo built as host's dev-dependency, beside this test's binary.
fn shim_path() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .join("libkeyward_pkcs11_fault_shim.so");
    assert!(
        p.exists(),
        "{} missing: cargo build -p keyward-pkcs11-fault-shim",
        p.display()
    );
    p
}

/// The shim's environment for one daemon: the module under test, the trigger file and, if
/// given, the device-error file. Per daemon, never the test process's: this binary's tests
/// run side by side.
fn shim_env(
    trigger: &std::path::Path,
    device_error: Option<&std::path::Path>,
) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "KEYWARD_FAULT_SHIM_MODULE".into(),
            pkcs11_module_under_test(),
        ),
        (
            "KEYWARD_FAULT_SHIM_TRIGGER".into(),
            trigger.display().to_string(),
        ),
    ];
    if let Some(f) = device_error {
        env.push((
            "KEYWARD_FAULT_SHIM_DEVICE_ERROR".into(),
            f.display().to_string(),
        ));
    }
    env
}

/// The serial number of the test token, as OpenSC's `pkcs11-tool -L` lists it.
fn token_serial(conf: &std::path::Path) -> String {
    let out = Command::new("pkcs11-tool")
        .env(token_conf_env(), conf)
        .args([
            "--module",
            &pkcs11_module_under_test(),
            "--list-token-slots",
        ])
        .output()
        .expect("pkcs11-tool runs (apt-get install opensc)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("serial num"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, serial)| serial.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| panic!("no token serial in pkcs11-tool -L output:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_sessions_are_reopened_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let conf = make_token(dir.path());
    let serial = token_serial(&conf);
    let trigger = dir.path().join("fault-generation");
    std::fs::write(&trigger, "0").unwrap();
    let hsm = format!(
        "[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_serial = \"{serial}\"\n\
         pin_env = \"KEYWARD_TEST_PIN\"\npool_size = 4\n",
        shim_path().display()
    );
    let d = Daemon::with_token_hsm_section_and_env(dir, conf, &hsm, shim_env(&trigger, None));
    let pid = d.pid();
    let c = d.client();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("p11-fault")}))
        .await
        .unwrap());
    let key_id = key["KeyId"].as_str().unwrap().to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(AtomicUsize::new(0));
    // The fault generation last written to the trigger file. A request during which it did
    // not change was not in flight at a fault, so it must succeed.
    let generation = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<Failure>::new()));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let c = d.client();
        let (stop, successes, generation, failures, key_id) = (
            stop.clone(),
            successes.clone(),
            generation.clone(),
            failures.clone(),
            key_id.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let call = |action: &'static str, body: serde_json::Value| {
                let (c, generation, failures) = (&c, &generation, &failures);
                async move {
                    let before = generation.load(Ordering::SeqCst);
                    let resp = c.kms(action, body).await.unwrap();
                    let after = generation.load(Ordering::SeqCst);
                    if code(&resp).is_some() {
                        failures.lock().unwrap().push(Failure {
                            action,
                            in_flight_at_fault: before != after,
                            response: resp.to_string(),
                        });
                        return None;
                    }
                    Some(resp)
                }
            };
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let plain = b64(format!("task {t} request {n}").as_bytes());
                let body = json!({"KeyId": key_id, "Plaintext": plain});
                let Some(enc) = call("Encrypt", body).await else {
                    continue;
                };
                let blob = enc["CiphertextBlob"].clone();
                let Some(dec) = call("Decrypt", json!({"CiphertextBlob": blob})).await else {
                    continue;
                };
                assert_eq!(dec["Plaintext"], plain);
                successes.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // Inject each fault only after BETWEEN more round trips succeeded: the daemon must be
    // serving again before the next one, and it is busy when the fault lands.
    let wait_for_progress = || async {
        let target = successes.load(Ordering::SeqCst) + BETWEEN;
        while successes.load(Ordering::SeqCst) < target {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    for g in 1..=FAULTS {
        wait_for_progress().await;
        // Published before the write: a request that reads the old number afterwards started
        // before the fault.
        generation.store(g, Ordering::SeqCst);
        std::fs::write(&trigger, g.to_string()).unwrap();
    }
    wait_for_progress().await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }

    // Every fault reached the daemon's sessions.
    let refused = std::fs::read_to_string(format!("{}.refused", trigger.display()))
        .expect("the shim refused calls");
    for g in 1..=FAULTS {
        assert!(
            refused
                .lines()
                .any(|l| l.split(' ').next() == Some(&g.to_string())),
            "fault {g} refused no call: {refused}"
        );
    }
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "{} round trips, {} failed requests across {FAULTS} faults; refused calls per fault:\n{refused}",
        successes.load(Ordering::SeqCst),
        failures.len()
    );
    let later: Vec<_> = failures.iter().filter(|f| !f.in_flight_at_fault).collect();
    assert!(
        later.is_empty(),
        "requests that started after a fault failed: {later:#?}"
    );
    // Those that were in flight must say the HSM failed, not blame the caller's input.
    for f in &failures {
        assert!(
            f.response.contains("InternalError"),
            "unclear failure of {}: {}",
            f.action,
            f.response
        );
    }
    assert_eq!(d.pid(), pid, "the daemon was restarted");
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    assert!(
        !log.contains("panicked"),
        "daemon log shows a panic:\n{log}"
    );
}

/// `CKR_DEVICE_ERROR` means either "this operation failed" (kryoptic answers it for any
/// OpenSSL failure, a bad RSA ciphertext included) or "the device is gone". The pool keeps a
/// session that still answers `C_GetSessionInfo` after one (the request fails), and replaces
/// one that does not (the request runs again on a new session). The shim's device-error file
/// injects each kind on the next `C_EncryptInit`.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_error_replaces_the_session_only_if_the_session_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let conf = make_token(dir.path());
    let serial = token_serial(&conf);
    let trigger = dir.path().join("fault-generation");
    let device_error = dir.path().join("device-error");
    std::fs::write(&trigger, "0").unwrap();
    std::fs::write(&device_error, "0").unwrap();
    let hsm = format!(
        "[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_serial = \"{serial}\"\n\
         pin_env = \"KEYWARD_TEST_PIN\"\npool_size = 2\n",
        shim_path().display()
    );
    let d = Daemon::with_token_hsm_section_and_env(
        dir,
        conf,
        &hsm,
        shim_env(&trigger, Some(&device_error)),
    );
    let c = d.client();
    let key_id = ok(c
        .kms("CreateKey", json!({"Alias": unique("p11-deverr")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let round_trips = |n: usize| {
        let (c, key_id) = (&c, &key_id);
        async move {
            for i in 0..n {
                let plain = b64(format!("round trip {i}").as_bytes());
                let enc = ok(c
                    .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": plain}))
                    .await
                    .unwrap());
                let dec = ok(c
                    .kms("Decrypt", json!({"CiphertextBlob": enc["CiphertextBlob"]}))
                    .await
                    .unwrap());
                assert_eq!(dec["Plaintext"], plain);
            }
        }
    };
    let opens = || -> u64 {
        std::fs::read_to_string(format!("{}.opens", device_error.display()))
            .expect("the shim counts the sessions it opens")
            .trim()
            .parse()
            .unwrap()
    };
    let encrypt_fails = || async {
        let r = c
            .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(b"x")}))
            .await
            .unwrap();
        err(&r, "InternalError");
    };
    round_trips(10).await;
    let before = opens();

    // The operation failed, the session did not: it stays in the pool.
    std::fs::write(&device_error, "1 transient").unwrap();
    encrypt_fails().await;
    round_trips(10).await;
    assert_eq!(
        opens(),
        before,
        "a session that still answered was replaced"
    );

    // The session is gone too: the request is run again on a new session and succeeds.
    std::fs::write(&device_error, "2 fatal").unwrap();
    round_trips(10).await;
    assert!(
        opens() > before,
        "a session that no longer answers was kept"
    );
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    assert!(
        !log.contains("panicked"),
        "daemon log shows a panic:\n{log}"
    );
}
