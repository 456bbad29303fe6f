//! `keyward backup` and `keyward restore` (issue 14 item 5): an online backup taken while the
//! daemon serves writes (SQLite: through the running daemon; PostgreSQL: pg_dump), the data
//! directory (and database) wiped, the backup restored: everything written before the backup
//! is back, ciphertexts made before it decrypt, and the audit chain verifies. And `kill -9`
//! during a write load: every acknowledged write survives, nothing is half-written.

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
    if postgres_under_test() {
        c.env(pg::PASSWORD_ENV, &pg::cluster().password);
    }
    c.env("KEYWARD_LOG", "warn").output().expect("keyward runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_under_load_wipe_and_restore() {
    let mut d = Daemon::under_test_with("[audit]\ncheckpoint_every = 20\n");
    let out_dir = tempfile::tempdir().unwrap();
    let backup = out_dir.path().join("keyward-backup.db");
    let database = match &d.store {
        TestStore::Postgres(name) => Some(name.clone()),
        TestStore::Sqlite | TestStore::External => None,
    };
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
    let how = if database.is_some() {
        "pg_dump, online"
    } else {
        "from the running daemon"
    };
    assert!(String::from_utf8_lossy(&out.stderr).contains(how));
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
    if database.is_none() {
        assert!(String::from_utf8_lossy(&out.stderr).contains("daemon not running"));
    }

    // Wipe the data directory (the embedded backend's device key is backed up separately).
    let data = d.data_dir();
    let device_key = std::fs::read(data.join("device.key")).ok();
    std::fs::remove_dir_all(&data).unwrap();
    if let Some(db) = &database {
        let sql = format!("DROP DATABASE {db}");
        assert!(pg::cluster().psql("postgres", &sql).status.success());
        let sql = format!("CREATE DATABASE {db}");
        assert!(pg::cluster().psql("postgres", &sql).status.success());
    }
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
    if database.is_some() {
        // A dump of another database is refused too, and leaves the target untouched.
        let other = pg::cluster().create_database();
        let foreign = out_dir.path().join("foreign.dump");
        let out = Command::new("pg_dump")
            .args(["--format=custom", "--file"])
            .arg(&foreign)
            .arg(format!("--dbname={}", pg::cluster().url(&other)))
            .env("PGPASSWORD", &pg::cluster().password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = keyward("restore", &d.config, &[("--from", &foreign)]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("not a dump of a Keyward store"));
    }
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

/// A write the daemon acknowledged (answered without an error) before it was killed.
#[derive(Debug, Clone)]
enum Ack {
    Key(String),
    Disabled(String),
    /// Secret name, version id, value.
    Version(String, String, String),
}

/// Four writers against `c` until the daemon stops answering; what it acknowledged.
async fn write_until_killed(c: keyward::client::TcClient, writer: usize) -> Vec<Ack> {
    let mut acks = Vec::new();
    let (mut keys, mut secrets) = (Vec::new(), Vec::new());
    for i in 0usize.. {
        let (r, ack) = match (writer + i) % 4 {
            0 => {
                let r = c.kms("CreateKey", json!({"Alias": unique("crash")})).await;
                (r, None)
            }
            1 | 2 if secrets.is_empty() || (writer + i) % 4 == 1 => {
                let (name, value) = (unique("crash"), unique("value"));
                let r = c
                    .ssm(
                        "CreateSecret",
                        json!({"SecretName": name, "VersionId": "v0", "SecretString": value}),
                    )
                    .await;
                secrets.push(name.clone());
                (r, Some(Ack::Version(name, "v0".into(), value)))
            }
            2 => {
                let name: String = secrets[i % secrets.len()].clone();
                let (version, value) = (format!("v{i}"), unique("value"));
                let r = c
                    .ssm(
                        "PutSecretValue",
                        json!({"SecretName": name, "VersionId": version, "SecretString": value}),
                    )
                    .await;
                (r, Some(Ack::Version(name, version, value)))
            }
            _ => match keys.pop() {
                Some(id) => {
                    let r = c.kms("DisableKey", json!({"KeyId": id})).await;
                    (r, Some(Ack::Disabled(id)))
                }
                None => continue,
            },
        };
        let Ok(r) = r else {
            // No answer: the daemon is gone, and this write may or may not have happened.
            return acks;
        };
        assert!(code(&r).is_none(), "unexpected refusal: {r}");
        match ack {
            Some(a) => acks.push(a),
            None => {
                let id = r["KeyId"].as_str().unwrap().to_string();
                keys.push(id.clone());
                acks.push(Ack::Key(id));
            }
        }
    }
    unreachable!()
}

/// Every acknowledged write is there, as acknowledged. (A created key may also be disabled
/// by a DisableKey whose answer the kill cut off.)
async fn check_acks(c: &keyward::client::TcClient, acks: &[Ack]) {
    for a in acks {
        match a {
            Ack::Key(id) => {
                let state = key_state(c, id).await;
                assert!(state == "Enabled" || state == "Disabled", "{id}: {state}");
            }
            Ack::Disabled(id) => assert_eq!(key_state(c, id).await, "Disabled", "{id}"),
            Ack::Version(name, version, value) => {
                let r = ok(c
                    .ssm(
                        "GetSecretValue",
                        json!({"SecretName": name, "VersionId": version}),
                    )
                    .await
                    .unwrap());
                assert_eq!(r["SecretString"], value.as_str(), "{name} {version}");
            }
        }
    }
}

/// Every item of a KMS (`ListKeys`) or SSM (`ListSecrets`) listing, page by page.
async fn listed(
    c: &keyward::client::TcClient,
    action: &str,
    field: &str,
) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    loop {
        let body = json!({"Offset": all.len(), "Limit": 100});
        let r = if action == "ListKeys" {
            c.kms(action, body).await
        } else {
            c.ssm(action, body).await
        };
        let page = ok(r.unwrap())[field].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// `kill -9` during a write load, 20 times, at moments spread over the request path (from 15
/// to ~400 ms into a load of key creations, state changes, secret creations and new secret
/// versions from four writers, so kills land in parsing, authentication, HSM calls, the store
/// transaction and the audit append): after each restart every acknowledged write is present
/// as acknowledged; at the end every key and every secret version in the store is whole (keys
/// describe, enabled keys encrypt, versions read back) and the audit chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_under_write_load_loses_no_acknowledged_write() {
    let mut d = Daemon::under_test();
    let mut all: Vec<Ack> = Vec::new();
    for trial in 0..20u64 {
        let c = d.client();
        let writers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(write_until_killed(c.clone(), w)))
            .collect();
        let at = 15 + (trial * 97) % 400;
        tokio::time::sleep(std::time::Duration::from_millis(at)).await;
        d.crash();
        let mut acks = Vec::new();
        for w in writers {
            acks.extend(w.await.unwrap());
        }
        d.start();
        check_acks(&d.client(), &acks).await;
        all.extend(acks);
    }
    let c = d.client();
    check_acks(&c, &all).await;
    assert!(
        all.len() > 40,
        "too little load to mean anything: {}",
        all.len()
    );
    // Nothing half-written: every key in the store is whole, every secret version reads.
    let keys = listed(&c, "ListKeys", "Keys").await;
    for k in &keys {
        let id = k["KeyId"].as_str().unwrap();
        if key_state(&c, id).await == "Enabled" {
            ok(
                c.kms("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"whole")}))
                    .await
                    .unwrap(),
            );
        }
    }
    let secrets = listed(&c, "ListSecrets", "SecretMetadatas").await;
    assert!(keys.len() > 10 && secrets.len() > 10);
    for s in &secrets {
        let name = s["SecretName"].as_str().unwrap();
        let versions = ok(c
            .ssm("ListSecretVersionIds", json!({"SecretName": name}))
            .await
            .unwrap());
        for v in versions["Versions"].as_array().unwrap() {
            ok(c.ssm(
                "GetSecretValue",
                json!({"SecretName": name, "VersionId": v["VersionId"]}),
            )
            .await
            .unwrap());
        }
    }
    let report = ok(common::iam::kw(&c, "VerifyAuditLog", json!({})).await);
    assert_eq!(report["Ok"], true, "{report}");
}

/// The store over TLS (`[store] tls_ca`): a PostgreSQL server that takes TCP logins over TLS
/// only (`hostssl` in its pg_hba.conf), its certificate signed by a private CA. The daemon
/// serves on it, `keyward backup` (pg_dump) reaches it the same way, and a daemon that does
/// not trust the server's CA, or offers no TLS, is refused before it serves anything.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_store_over_tls() {
    use common::dbservers::{Certs, PgServer};
    let certs = Certs::new();
    let server = PgServer::start_tls(&certs);
    server.psql("postgres", "CREATE DATABASE keyward_tls");
    let secrets = tempfile::tempdir().unwrap();
    let password_file = server.password_file(secrets.path());
    let section =
        |tls_ca: Option<&Path>| {
            format!(
            "\n[store]\nkind = \"postgres\"\nurl = \"host=127.0.0.1 port={} dbname=keyward_tls \
             user=admin\"\npassword_file = \"{}\"\n{}",
            server.port,
            password_file.display(),
            tls_ca.map_or(String::new(), |ca| format!("tls_ca = \"{}\"\n", ca.display()))
        )
        };
    let mut d = Daemon::embedded_on_store(&section(Some(&certs.ca)));
    let c = d.client();
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("tls")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = ok(c
        .kms(
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"over tls")}),
        )
        .await
        .unwrap())["CiphertextBlob"]
        .clone();
    let plain = ok(c
        .kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap())["Plaintext"]
        .clone();
    assert_eq!(unb64(plain.as_str().unwrap()), b"over tls");

    let out_dir = tempfile::tempdir().unwrap();
    let dump = out_dir.path().join("tls.dump");
    let out = keyward("backup", &d.config, &[("--out", &dump)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&dump).unwrap().len() > 0);
    d.stop();

    // Another CA: the server's certificate is not trusted.
    let other = Certs::new();
    std::fs::write(
        &d.config,
        std::fs::read_to_string(&d.config).unwrap().replace(
            &certs.ca.display().to_string(),
            &other.ca.display().to_string(),
        ),
    )
    .unwrap();
    let log = d.refused_start();
    assert!(
        log.to_lowercase().contains("certificate"),
        "refused for another reason: {log}"
    );
    // No TLS at all: the server takes no plain TCP login.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let plain_config: String = text
        .lines()
        .filter(|l| !l.starts_with("tls_ca"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&d.config, plain_config).unwrap();
    let log = d.refused_start();
    assert!(
        log.contains("pg_hba.conf"),
        "refused for another reason: {log}"
    );
}
