//! `keyward backup` and `keyward restore` (issue 14 item 5): an online backup of the SQLite
//! store taken through the running daemon while it serves writes, the data directory wiped,
//! the backup restored: everything written before the backup is back, ciphertexts made before
//! it decrypt, and the audit chain verifies. A PostgreSQL store is refused with a pointer to
//! pg_dump.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// `keyward <command> --config <config> <flag> <path> [more...]`.
fn keyward(command: &str, config: &Path, args: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keyward"));
    c.arg(command).arg("--config").arg(config);
    for (flag, path) in args {
        c.arg(flag).arg(path);
    }
    c.env("KEYWARD_LOG", "warn").output().expect("keyward runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_under_load_wipe_and_restore() {
    let mut d = Daemon::under_test_with("[audit]\ncheckpoint_every = 20\n");
    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("keyward-backup.db");
    if let TestStore::Postgres(_) = d.store {
        let out = keyward("backup", &d.config, &[("--out", &backup)]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
        return;
    }
    let c = d.client();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("bk")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut before = vec![];
    for i in 0..20 {
        let pt = format!("before backup {i}");
        let r = ok(c
            .kms(
                "Encrypt",
                json!({"KeyId": key, "Plaintext": b64(pt.as_bytes())}),
            )
            .await
            .unwrap());
        before.push((pt, r["CiphertextBlob"].as_str().unwrap().to_string()));
    }
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": "kept", "SecretString": "s3cret-before"}),
    )
    .await
    .unwrap());

    // Load: writes (keys, secrets) and crypto from four tasks while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = vec![];
    for t in 0..4 {
        let (c, stop, done, key) = (c.clone(), stop.clone(), done.clone(), key.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = match i % 3 {
                    0 => c.kms("CreateKey", json!({"Alias": unique("load")})).await,
                    1 => {
                        c.ssm(
                            "CreateSecret",
                            json!({"SecretName": unique(&format!("load{t}")), "SecretString": "v"}),
                        )
                        .await
                    }
                    _ => {
                        c.kms("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")}))
                            .await
                    }
                };
                ok(r.unwrap());
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    while done.load(Ordering::Relaxed) < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (config, backup2) = (d.config.clone(), backup.clone());
    let out =
        tokio::task::spawn_blocking(move || keyward("backup", &config, &[("--out", &backup2)]))
            .await
            .unwrap();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("from the running daemon"));
    let during = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < during + 30 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    // A key made after the backup: gone once it is restored.
    let after = ok(c
        .kms("CreateKey", json!({"Alias": unique("after")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    // A second backup to the same file is refused; the backup is readable by its owner only.
    let out = keyward("backup", &d.config, &[("--out", &backup)]);
    assert!(!out.status.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "backup mode {mode:o}");
    d.stop();
    // With the daemon stopped the backup is made directly.
    let offline = out_dir.path().join("offline.db");
    let out = keyward("backup", &d.config, &[("--out", &offline)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon not running"));

    // Wipe the data directory (the embedded backend's device key is backed up separately).
    let data = d.data_dir();
    let device_key = std::fs::read(data.join("device.key")).ok();
    std::fs::remove_dir_all(&data).unwrap();
    let out = keyward("restore", &d.config, &[("--from", &backup)]);
    assert!(
        out.status.success(),
        "restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(k) = device_key {
        std::fs::write(data.join("device.key"), k).unwrap();
        std::fs::set_permissions(
            data.join("device.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    // Restoring over a store is refused, and so is a file that is no store.
    let out = keyward("restore", &d.config, &[("--from", &backup)]);
    assert!(!out.status.success());
    let junk = out_dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database").unwrap();
    let elsewhere = out_dir.path().join("elsewhere");
    let out = keyward(
        "restore",
        &d.config,
        &[("--data-dir", &elsewhere), ("--from", &junk)],
    );
    assert!(!out.status.success(), "a file that is no store is refused");
    assert!(!elsewhere.join("keyward.db").exists());

    d.start();
    let c = d.client();
    for (pt, blob) in &before {
        let r = ok(c
            .kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap());
        assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), pt.as_bytes());
    }
    let v = ok(c
        .ssm(
            "GetSecretValue",
            json!({"SecretName": "kept", "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap());
    assert_eq!(v["SecretString"], "s3cret-before");
    err(
        &c.kms("DescribeKey", json!({"KeyId": after})).await.unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    let report = ok(common::iam::kw(&c, "VerifyAuditLog", json!({})).await);
    assert_eq!(report["Ok"], true, "{report}");
    // The restored store takes writes again.
    ok(c.kms("CreateKey", json!({"Alias": unique("again")}))
        .await
        .unwrap());
}
