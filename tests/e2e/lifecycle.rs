//! End-to-end key lifecycle on SoftHSM2 with the adjustable test clock: the state table
//! through the API, rotation and ReEncrypt, scheduled deletion with alarms delivered to a real
//! webhook receiver, managed keys and bindings, and restarts in between.

mod common;

use common::*;
use keyward::client::TcClient;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const DAY: u64 = 86_400;

async fn create(c: &TcClient, body: Value) -> String {
    ok(c.kms("CreateKey", body).await.unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn advance(c: &TcClient, seconds: u64) -> Value {
    ok(c.call(
        "2026-11-01",
        "keyward",
        "AdvanceClock",
        json!({"Seconds": seconds}),
    )
    .await
    .unwrap())
}

/// A key in `state`, plus a blob encrypted under it while it was Enabled (if it had material).
async fn key_in_state(c: &TcClient, state: &str) -> (String, Option<String>) {
    if state == "PendingImport" {
        return (
            create(c, json!({"Alias": unique("st"), "Type": 2})).await,
            None,
        );
    }
    let id = create(c, json!({"Alias": unique("st")})).await;
    let blob = ok(c
        .kms("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"s")}))
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    match state {
        "Enabled" => {}
        "Disabled" => {
            ok(c.kms("DisableKey", json!({"KeyId": id})).await.unwrap());
        }
        "PendingDelete" => {
            ok(c.kms("DisableKey", json!({"KeyId": id})).await.unwrap());
            ok(c.kms(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": 7}),
            )
            .await
            .unwrap());
        }
        "Archived" => {
            ok(c.kms("ArchiveKey", json!({"KeyId": id})).await.unwrap());
        }
        other => panic!("{other}"),
    }
    assert_eq!(key_state(c, &id).await, state);
    (id, Some(blob))
}

/// Every action against every state, through the API: allowed (None) or the exact code.
#[tokio::test(flavor = "multi_thread")]
async fn state_table_every_action_in_every_state() {
    let d = Daemon::under_test_with("[testing]\nadjustable_clock = true\n");
    let c = d.client();
    let states = [
        "Enabled",
        "Disabled",
        "PendingDelete",
        "PendingImport",
        "Archived",
    ];
    const OK: Option<&str> = None;
    const DIS: Option<&str> = Some("ResourceUnavailable.CmkDisabled");
    const PD: Option<&str> = Some("ResourceUnavailable.KeyPendingDelete");
    const NS: Option<&str> = Some("ResourceUnavailable.CmkStateNotSupport");
    const AR: Option<&str> = Some("ResourceUnavailable.CmkArchived");
    const SBD: Option<&str> = Some("ResourceUnavailable.CmkShouldBeDisabled");
    const NPD: Option<&str> = Some("ResourceUnavailable.CmkNotPendingDelete");
    const EXT: Option<&str> = Some("UnsupportedOperation.ExternalCmkCanNotRotate");
    const RNS: Option<&str> = Some("UnsupportedOperation.RotateNotSupported");
    // (action, expected per state in the order above; "-" rows marked None are not applicable)
    let table: Vec<(&str, [Option<&str>; 5])> = vec![
        ("DescribeKey", [OK, OK, OK, OK, OK]),
        ("GetKeyRotationStatus", [OK, OK, OK, OK, OK]),
        ("Encrypt", [OK, DIS, PD, NS, AR]),
        ("GenerateDataKey", [OK, DIS, PD, NS, AR]),
        ("Decrypt", [OK, DIS, PD, OK, OK]),
        // The destination defaults to the blob's own key, which an archived key cannot be.
        ("ReEncrypt", [OK, DIS, PD, OK, AR]),
        ("UpdateAlias", [OK, OK, PD, OK, OK]),
        ("UpdateKeyDescription", [OK, OK, PD, OK, OK]),
        ("EnableKey", [OK, OK, PD, NS, AR]),
        ("DisableKey", [OK, OK, PD, NS, AR]),
        ("ScheduleKeyDeletion", [SBD, OK, PD, OK, SBD]),
        ("CancelKeyDeletion", [NPD, NPD, OK, NPD, NPD]),
        ("ArchiveKey", [OK, DIS, PD, NS, OK]),
        ("CancelKeyArchive", [NS, NS, PD, NS, OK]),
        ("EnableKeyRotation", [OK, OK, PD, EXT, AR]),
        ("DisableKeyRotation", [OK, OK, PD, OK, AR]),
        ("RotateKey", [OK, DIS, PD, RNS, AR]),
        ("BindCloudResource", [OK, DIS, PD, NS, AR]),
    ];
    for (action, expected) in &table {
        for (i, state) in states.iter().enumerate() {
            let (id, blob) = key_in_state(&c, state).await;
            let body = match *action {
                "Encrypt" => json!({"KeyId": id, "Plaintext": b64(b"x")}),
                "GenerateDataKey" => json!({"KeyId": id, "KeySpec": "AES_256"}),
                "Decrypt" | "ReEncrypt" => match &blob {
                    Some(b) => json!({"CiphertextBlob": b}),
                    None => continue, // a key without material has no ciphertexts
                },
                "UpdateAlias" => json!({"KeyId": id, "Alias": unique("new")}),
                "UpdateKeyDescription" => json!({"KeyId": id, "Description": "d"}),
                "ScheduleKeyDeletion" => json!({"KeyId": id, "PendingWindowInDays": 7}),
                "BindCloudResource" => {
                    json!({"KeyId": id, "ProductId": "cos", "ResourceId": "bucket-1"})
                }
                _ => json!({"KeyId": id}),
            };
            let r = c.kms(action, body).await.unwrap();
            assert_eq!(code(&r), expected[i], "{action} in state {state}: {r}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_reencrypt_and_restart() {
    let mut d = Daemon::under_test_with("[testing]\nadjustable_clock = true\n");
    let c = d.client();
    let a = create(&c, json!({"Alias": unique("rot")})).await;
    let b = create(&c, json!({"Alias": unique("other")})).await;
    let v1 = ok(c
        .kms(
            "Encrypt",
            json!({"KeyId": a, "Plaintext": b64(b"one"), "EncryptionContext": "{\"k\":\"1\"}"}),
        )
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();

    // Without a rotation, ReEncrypt to the same key changes nothing.
    let same = ok(c.kms("ReEncrypt", json!({"CiphertextBlob": v1, "SourceEncryptionContext": "{\"k\":\"1\"}", "DestinationEncryptionContext": "{\"k\": \"1\"}"})).await.unwrap());
    assert_eq!(same["ReEncrypted"], false);
    assert_eq!(same["CiphertextBlob"], v1.as_str());
    err(
        &c.kms("ReEncrypt", json!({"CiphertextBlob": v1}))
            .await
            .unwrap(),
        "FailedOperation.DecryptError",
    );

    // Automatic rotation by the clock.
    err(
        &c.kms("EnableKeyRotation", json!({"KeyId": a, "RotateDays": 6}))
            .await
            .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms("EnableKeyRotation", json!({"KeyId": a, "RotateDays": 366}))
            .await
            .unwrap(),
        "InvalidParameterValue",
    );
    ok(
        c.kms("EnableKeyRotation", json!({"KeyId": a, "RotateDays": 7}))
            .await
            .unwrap(),
    );
    assert_eq!(
        ok(c.kms("GetKeyRotationStatus", json!({"KeyId": a}))
            .await
            .unwrap())["KeyRotationEnabled"],
        true
    );
    let meta = ok(c.kms("DescribeKey", json!({"KeyId": a})).await.unwrap())["KeyMetadata"].clone();
    assert_eq!(meta["KeyRotationEnabled"], true);
    assert_eq!(meta["RotateDays"], 7);
    let next = meta["NextRotateTime"].as_u64().unwrap();
    assert!(next > meta["CreateTime"].as_u64().unwrap() + 6 * DAY);
    assert_eq!(advance(&c, 6 * DAY).await["Rotated"], 0);
    assert_eq!(advance(&c, DAY + 60).await["Rotated"], 1);
    let meta = ok(c.kms("DescribeKey", json!({"KeyId": a})).await.unwrap())["KeyMetadata"].clone();
    assert!(meta["LastRotateTime"].as_u64().unwrap() >= next);
    assert!(meta["NextRotateTime"].as_u64().unwrap() >= next + 7 * DAY);
    let v2 = ok(c
        .kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"two")}))
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    let version_of = |blob: &str| u32::from_be_bytes(unb64(blob)[17..21].try_into().unwrap());
    assert_eq!(version_of(&v1), 1);
    assert_eq!(version_of(&v2), 2);

    // Manual rotation: once per 24 hours.
    ok(c.kms("RotateKey", json!({"KeyId": a})).await.unwrap());
    err(
        &c.kms("RotateKey", json!({"KeyId": a})).await.unwrap(),
        "RequestLimitExceeded.RotateRateLimited",
    );
    advance(&c, DAY + 1).await;
    let task = ok(c.kms("RotateKey", json!({"KeyId": a})).await.unwrap());
    assert!(task["TaskId"].as_str().is_some());
    let v4 = ok(c
        .kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"four")}))
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(version_of(&v4), 4);

    // ReEncrypt refreshes the v1 blob to the newest version, then moves it to another key.
    let fresh = ok(c.kms("ReEncrypt", json!({"CiphertextBlob": v1, "SourceEncryptionContext": "{\"k\":\"1\"}", "DestinationEncryptionContext": "{\"k\":\"1\"}"})).await.unwrap());
    assert_eq!(fresh["ReEncrypted"], true);
    assert_eq!(fresh["SourceKeyId"], a.as_str());
    let fresh_blob = fresh["CiphertextBlob"].as_str().unwrap().to_string();
    assert_eq!(version_of(&fresh_blob), 4);
    let moved = ok(c.kms("ReEncrypt", json!({"CiphertextBlob": fresh_blob, "SourceEncryptionContext": "{\"k\":\"1\"}", "DestinationKeyId": b, "DestinationEncryptionContext": "{\"to\":\"b\"}"})).await.unwrap());
    assert_eq!(moved["KeyId"], b.as_str());
    assert_eq!(moved["SourceKeyId"], a.as_str());
    let moved_blob = moved["CiphertextBlob"].as_str().unwrap().to_string();

    // Every version still decrypts, before and after a restart.
    d.restart();
    let c = d.client();
    for (blob, ctx, pt) in [
        (&v1, Some("{\"k\":\"1\"}"), &b"one"[..]),
        (&v2, None, b"two"),
        (&v4, None, b"four"),
        (&moved_blob, Some("{\"to\":\"b\"}"), b"one"),
    ] {
        let mut body = json!({"CiphertextBlob": blob});
        if let Some(ctx) = ctx {
            body["EncryptionContext"] = json!(ctx);
        }
        let r = ok(c.kms("Decrypt", body).await.unwrap());
        assert_eq!(unb64(r["Plaintext"].as_str().unwrap()), pt);
    }
    // All four versions exist only sealed in the store.
    d.stop();
    let versions: Vec<(u32, Vec<u8>)> = d
        .db()
        .query(
            "SELECT version, sealed FROM key_versions WHERE key_id = ?1 ORDER BY version",
            &vals![&a],
        )
        .into_iter()
        .map(|r| (r[0].int() as u32, r[1].blob()))
        .collect();
    assert_eq!(
        versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    for (_, sealed) in versions {
        match backend_under_test() {
            Backend::SoftHsm => assert_eq!(
                sealed[0], 0x02,
                "AES-KWP wrapped under the token's root key"
            ),
            // The firmware seals with AES-GCM under its device key: more than the key itself.
            Backend::Embedded | Backend::Serial => assert!(
                sealed.len() >= 32 + 12 + 16,
                "sealed by the device key: {} bytes",
                sealed.len()
            ),
        }
    }
    d.start();
    let c = d.client();
    ok(c.kms("DisableKeyRotation", json!({"KeyId": a}))
        .await
        .unwrap());
    assert_eq!(
        ok(c.kms("GetKeyRotationStatus", json!({"KeyId": a}))
            .await
            .unwrap())["KeyRotationEnabled"],
        false
    );
    let ext = create(&c, json!({"Alias": unique("ext"), "Type": 2})).await;
    err(
        &c.kms("EnableKeyRotation", json!({"KeyId": ext}))
            .await
            .unwrap(),
        "UnsupportedOperation.ExternalCmkCanNotRotate",
    );
}

/// A tiny webhook receiver: records every JSON body POSTed to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/alarms",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Waits (bounded) until the receiver holds `n` alarms for `key_id` and returns their kinds.
async fn alarms_for(got: &Arc<Mutex<Vec<Value>>>, key_id: &str, n: usize) -> Vec<String> {
    for _ in 0..300 {
        let kinds: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a["Alarm"]["KeyId"] == key_id)
            .map(|a| a["Alarm"]["Kind"].as_str().unwrap().to_string())
            .collect();
        if kinds.len() >= n {
            return kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "webhook did not receive {n} alarms for {key_id}: {:?}",
        got.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_deletion_alarms_cancel_and_delete() {
    let (url, got) = webhook().await;
    let mut d = Daemon::under_test_with(&format!(
        "[testing]\nadjustable_clock = true\n[alarms]\nwebhook = \"{url}\"\n"
    ));
    let c = d.client();
    let id = create(&c, json!({"Alias": unique("del")})).await;
    let blob = ok(c
        .kms("Encrypt", json!({"KeyId": id, "Plaintext": b64(b"bye")}))
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    err(
        &c.kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkShouldBeDisabled",
    );
    ok(c.kms("DisableKey", json!({"KeyId": id})).await.unwrap());
    for bad in [6, 31] {
        err(
            &c.kms(
                "ScheduleKeyDeletion",
                json!({"KeyId": id, "PendingWindowInDays": bad}),
            )
            .await
            .unwrap(),
            "InvalidParameter.InvalidPendingWindowInDays",
        );
    }
    err(
        &c.kms("ScheduleKeyDeletion", json!({"KeyId": id}))
            .await
            .unwrap(),
        "MissingParameter",
    );
    let sched = ok(c
        .kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": "7"}),
        )
        .await
        .unwrap());
    let date = sched["DeletionDate"].as_u64().unwrap();
    assert_eq!(sched["KeyId"], id.as_str());
    let meta = ok(c.kms("DescribeKey", json!({"KeyId": id})).await.unwrap())["KeyMetadata"].clone();
    assert_eq!(meta["KeyState"], "PendingDelete");
    assert_eq!(meta["DeletionDate"].as_u64().unwrap(), date);

    // Using it raises an alarm that reaches the webhook.
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        "ResourceUnavailable.KeyPendingDelete",
    );
    assert_eq!(alarms_for(&got, &id, 1).await, ["PendingDeleteKeyUsed"]);

    // Cancel: back to Disabled, no reminders; re-schedule.
    ok(c.kms("CancelKeyDeletion", json!({"KeyId": id}))
        .await
        .unwrap());
    assert_eq!(key_state(&c, &id).await, "Disabled");
    assert_eq!(advance(&c, 5 * DAY).await["Reminded"], 0);
    let date = ok(c
        .kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap())["DeletionDate"]
        .as_u64()
        .unwrap();

    // A restart in the middle of the window loses nothing.
    d.restart();
    let c = d.client();
    assert_eq!(key_state(&c, &id).await, "PendingDelete");

    // Days 1-3: quiet; the last three days: one reminder a day.
    assert_eq!(advance(&c, 3 * DAY + 3600).await["Reminded"], 0);
    assert_eq!(advance(&c, DAY).await["Reminded"], 1); // 2 days 23 h left
    assert_eq!(
        advance(&c, 3600).await["Reminded"],
        0,
        "at most one reminder a day"
    );
    assert_eq!(advance(&c, DAY).await["Reminded"], 1);
    assert_eq!(advance(&c, DAY).await["Reminded"], 1);
    assert_eq!(
        alarms_for(&got, &id, 4)
            .await
            .iter()
            .filter(|k| *k == "PendingDeleteReminder")
            .count(),
        3
    );
    let now = advance(&c, 0).await["Now"].as_u64().unwrap();
    assert!(now < date, "not due yet");
    assert_eq!(key_state(&c, &id).await, "PendingDelete");

    // Past the date: gone with its material.
    assert_eq!(advance(&c, date - now + 1).await["Deleted"], 1);
    err(
        &c.kms("DescribeKey", json!({"KeyId": id})).await.unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    assert!(alarms_for(&got, &id, 5)
        .await
        .contains(&"KeyDeleted".to_string()));
    // curl is installed by scripts/test.sh: a missing curl or a failed request fails here.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", &format!("{}/metrics", d.endpoint())])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET /metrics failed: {out:?}");
    let metrics = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(metrics.contains("keyward_alarms_raised_total"), "{metrics}");
    d.stop();
    let left = d.db().row(
        "SELECT COUNT(*) FROM key_versions WHERE key_id = ?1",
        &vals![&id],
    )[0]
    .int();
    assert_eq!(left, 0, "material destroyed");
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_key_and_bindings() {
    let d = Daemon::under_test();
    let c = d.client();
    let managed = ok(c.kms("ListKeyDetail", json!({"Role": 1})).await.unwrap());
    assert_eq!(managed["TotalCount"], 1);
    let m = managed["KeyMetadatas"][0].clone();
    assert_eq!(m["Alias"], "KMS-Default");
    assert_ne!(m["Owner"], "user");
    let mid = m["KeyId"].as_str().unwrap().to_string();
    assert_eq!(
        ok(c.kms("ListKeys", json!({"Role": 1})).await.unwrap())["TotalCount"],
        1
    );
    assert_eq!(
        ok(c.kms("ListKeys", json!({})).await.unwrap())["TotalCount"],
        0
    );
    for (action, body) in [
        ("DisableKey", json!({"KeyId": mid})),
        ("ArchiveKey", json!({"KeyId": mid})),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": mid, "PendingWindowInDays": 7}),
        ),
        ("UpdateAlias", json!({"KeyId": mid, "Alias": "mine"})),
        ("DisableKeys", json!({"KeyIds": [mid]})),
    ] {
        err(
            &c.kms(action, body).await.unwrap(),
            "UnsupportedOperation.NotUserCreatedCmk",
        );
    }
    // It can be used, queried and rotated.
    let blob = ok(c
        .kms("Encrypt", json!({"KeyId": mid, "Plaintext": b64(b"m")}))
        .await
        .unwrap())["CiphertextBlob"]
        .clone();
    ok(c.kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap());
    ok(c.kms("EnableKeyRotation", json!({"KeyId": mid}))
        .await
        .unwrap());
    ok(c.kms("RotateKey", json!({"KeyId": mid})).await.unwrap());

    // Bindings block deletion until removed.
    let id = create(&c, json!({"Alias": unique("bound")})).await;
    ok(c.kms(
        "BindCloudResource",
        json!({"KeyId": id, "ProductId": "cbs", "ResourceId": "disk-1"}),
    )
    .await
    .unwrap());
    ok(c.kms("DisableKey", json!({"KeyId": id})).await.unwrap());
    err(
        &c.kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": id, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap(),
        "FailedOperation.CmkUsedByCloudProduct",
    );
    err(
        &c.kms(
            "UnbindCloudResource",
            json!({"KeyId": id, "ProductId": "cbs", "ResourceId": "disk-2"}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CloudResourceBindingNotFound",
    );
    ok(c.kms(
        "UnbindCloudResource",
        json!({"KeyId": id, "ProductId": "cbs", "ResourceId": "disk-1"}),
    )
    .await
    .unwrap());
    ok(c.kms(
        "ScheduleKeyDeletion",
        json!({"KeyId": id, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap());
    err(
        &c.kms(
            "BindCloudResource",
            json!({"KeyId": id, "ProductId": "cbs"}),
        )
        .await
        .unwrap(),
        "MissingParameter",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hosted_data_keys() {
    let mut d = Daemon::under_test_with("[testing]\nadjustable_clock = true\n");
    let c = d.client();
    let cmk = create(&c, json!({"Alias": unique("dk")})).await;
    let name = unique("hosted");

    // Generated and hosted in one call.
    let g = ok(c.kms("GenerateDataKey", json!({"KeyId": cmk, "KeySpec": "AES_256", "IsHostedByKms": 1, "DataKeyName": name, "Description": "db key", "Tags": [{"TagKey": "app", "TagValue": "db"}]})).await.unwrap());
    let dk = g["DataKeyId"].as_str().unwrap().to_string();
    let value = unb64(g["Plaintext"].as_str().unwrap());
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": cmk, "KeySpec": "AES_256", "IsHostedByKms": 1}),
        )
        .await
        .unwrap(),
        "MissingParameter",
    );
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": cmk, "KeySpec": "AES_256", "IsHostedByKms": 1, "DataKeyName": name}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue.DataKeyNameAlreadyExists",
    );

    let meta = ok(c
        .kms("DescribeDataKey", json!({"DataKeyId": dk}))
        .await
        .unwrap())["DataKeyMetadata"]
        .clone();
    assert_eq!(meta["DataKeyName"], name.as_str());
    assert_eq!(meta["KeyId"], cmk.as_str());
    assert_eq!(meta["NumberOfBytes"], 32);
    assert_eq!(meta["KeyState"], "Enabled");
    assert_eq!(meta["Origin"], "TENCENT_KMS");
    assert_eq!(meta["Description"], "db key");
    let pt = ok(c
        .kms("GetDataKeyPlaintext", json!({"DataKeyId": dk}))
        .await
        .unwrap());
    assert_eq!(unb64(pt["Plaintext"].as_str().unwrap()), value);
    let blob = ok(c
        .kms("GetDataKeyCiphertextBlob", json!({"DataKeyId": dk}))
        .await
        .unwrap())["CiphertextBlob"]
        .clone();
    assert_eq!(
        unb64(
            ok(c.kms("Decrypt", json!({"CiphertextBlob": blob}))
                .await
                .unwrap())["Plaintext"]
                .as_str()
                .unwrap()
        ),
        value
    );

    // Imports: a ciphertext DEK and a plaintext DEK.
    let dek = ok(c
        .kms(
            "GenerateDataKey",
            json!({"KeyId": cmk, "NumberOfBytes": 24}),
        )
        .await
        .unwrap());
    let imp1 = ok(c.kms("ImportDataKey", json!({"DataKeyName": unique("imp"), "ImportKeyMaterial": dek["CiphertextBlob"], "ImportType": 1})).await.unwrap());
    assert_eq!(imp1["KeyId"], cmk.as_str());
    let imp1_id = imp1["DataKeyId"].as_str().unwrap().to_string();
    assert_eq!(
        ok(c.kms("GetDataKeyPlaintext", json!({"DataKeyId": imp1_id}))
            .await
            .unwrap())["Plaintext"],
        dek["Plaintext"]
    );
    let raw = [9u8; 16];
    let imp2 = ok(c.kms("ImportDataKey", json!({"DataKeyName": unique("imp"), "ImportKeyMaterial": b64(&raw), "ImportType": 2, "KeyId": cmk})).await.unwrap());
    let imp2_id = imp2["DataKeyId"].as_str().unwrap().to_string();
    assert_eq!(
        unb64(
            ok(c.kms("GetDataKeyPlaintext", json!({"DataKeyId": imp2_id}))
                .await
                .unwrap())["Plaintext"]
                .as_str()
                .unwrap()
        ),
        raw
    );
    err(
        &c.kms(
            "ImportDataKey",
            json!({"DataKeyName": unique("imp"), "ImportKeyMaterial": b64(&raw), "ImportType": 2}),
        )
        .await
        .unwrap(),
        "MissingParameter",
    );
    err(&c.kms("ImportDataKey", json!({"DataKeyName": unique("imp"), "ImportKeyMaterial": b64(b"not a blob at all, really"), "ImportType": 1})).await.unwrap(), "InvalidParameterValue.InvalidImportKeyMaterial");
    err(&c.kms("ImportDataKey", json!({"DataKeyName": "bad name!", "ImportKeyMaterial": b64(&raw), "ImportType": 2, "KeyId": cmk})).await.unwrap(), "InvalidParameterValue.InvalidDataKeyName");

    // Listing and filters.
    assert_eq!(
        ok(c.kms("ListDataKeys", json!({})).await.unwrap())["TotalCount"],
        3
    );
    let ext = ok(c
        .kms("ListDataKeyDetail", json!({"Origin": "EXTERNAL"}))
        .await
        .unwrap());
    assert_eq!(ext["TotalCount"], 2);
    assert_eq!(
        ok(c.kms("ListDataKeyDetail", json!({"DataKeyLen": 16}))
            .await
            .unwrap())["TotalCount"],
        1
    );
    assert_eq!(
        ok(c.kms("ListDataKeyDetail", json!({"SearchKeyAlias": name}))
            .await
            .unwrap())["TotalCount"],
        1
    );
    assert_eq!(
        ok(c.kms(
            "ListDataKeyDetail",
            json!({"TagFilters": [{"TagKey": "app", "TagValue": ["db"]}]})
        )
        .await
        .unwrap())["TotalCount"],
        1
    );
    assert_eq!(
        ok(
            c.kms("DescribeDataKeys", json!({"DataKeyIds": [dk, imp1_id]}))
                .await
                .unwrap()
        )["DataKeyMetadatas"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Edits and state.
    let renamed = unique("renamed");
    ok(c.kms(
        "UpdateDataKeyName",
        json!({"DataKeyId": dk, "DataKeyName": renamed}),
    )
    .await
    .unwrap());
    ok(c.kms(
        "UpdateDataKeyDescription",
        json!({"DataKeyId": dk, "Description": "new"}),
    )
    .await
    .unwrap());
    err(
        &c.kms(
            "UpdateDataKeyDescription",
            json!({"DataKeyId": dk, "Description": "x".repeat(101)}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    let meta = ok(c
        .kms("DescribeDataKey", json!({"DataKeyId": dk}))
        .await
        .unwrap())["DataKeyMetadata"]
        .clone();
    assert_eq!(meta["DataKeyName"], renamed.as_str());
    assert_eq!(meta["Description"], "new");
    ok(c.kms("DisableDataKey", json!({"DataKeyId": dk}))
        .await
        .unwrap());
    err(
        &c.kms("GetDataKeyPlaintext", json!({"DataKeyId": dk}))
            .await
            .unwrap(),
        "ResourceUnavailable.DataKeyDisabled",
    );
    ok(c.kms("EnableDataKeys", json!({"DataKeyIds": [dk]}))
        .await
        .unwrap());
    err(
        &c.kms("DisableDataKeys", json!({"DataKeyIds": [dk, dk]}))
            .await
            .unwrap(),
        "InvalidParameterValue.DuplicatedDataKeyId",
    );
    ok(
        c.kms("DisableDataKeys", json!({"DataKeyIds": [dk, imp1_id]}))
            .await
            .unwrap(),
    );
    assert_eq!(
        ok(c.kms("ListDataKeyDetail", json!({"KeyState": 2}))
            .await
            .unwrap())["TotalCount"],
        2
    );
    err(
        &c.kms(
            "DescribeDataKey",
            json!({"DataKeyId": uuid::Uuid::new_v4().to_string()}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.DataKeyNotFound",
    );

    // Deletion: window, cancel, reschedule, restart, due.
    err(
        &c.kms(
            "ScheduleDataKeyDeletion",
            json!({"DataKeyId": dk, "PendingWindowInDays": 3}),
        )
        .await
        .unwrap(),
        "InvalidParameter.InvalidPendingWindowInDays",
    );
    err(
        &c.kms("CancelDataKeyDeletion", json!({"DataKeyId": dk}))
            .await
            .unwrap(),
        "ResourceUnavailable.DataKeyNotPendingDelete",
    );
    let date = ok(c
        .kms(
            "ScheduleDataKeyDeletion",
            json!({"DataKeyId": dk, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap())["DeletionDate"]
        .as_u64()
        .unwrap();
    assert!(date > 0);
    err(
        &c.kms("GetDataKeyPlaintext", json!({"DataKeyId": dk}))
            .await
            .unwrap(),
        "ResourceUnavailable.DataKeyPendingDelete",
    );
    err(
        &c.kms("EnableDataKey", json!({"DataKeyId": dk}))
            .await
            .unwrap(),
        "ResourceUnavailable.DataKeyPendingDelete",
    );
    ok(c.kms("CancelDataKeyDeletion", json!({"DataKeyId": dk}))
        .await
        .unwrap());
    assert_eq!(
        ok(c.kms("DescribeDataKey", json!({"DataKeyId": dk}))
            .await
            .unwrap())["DataKeyMetadata"]["KeyState"],
        "Disabled"
    );
    ok(c.kms(
        "ScheduleDataKeyDeletion",
        json!({"DataKeyId": dk, "PendingWindowInDays": 7}),
    )
    .await
    .unwrap());
    d.restart();
    let c = d.client();
    assert_eq!(
        ok(c.kms("DescribeDataKey", json!({"DataKeyId": dk}))
            .await
            .unwrap())["DataKeyMetadata"]["KeyState"],
        "PendingDelete"
    );
    assert_eq!(advance(&c, 7 * DAY + 60).await["Deleted"], 1);
    err(
        &c.kms("DescribeDataKey", json!({"DataKeyId": dk}))
            .await
            .unwrap(),
        "ResourceUnavailable.DataKeyNotFound",
    );
    let status = ok(c.kms("GetServiceStatus", json!({})).await.unwrap());
    assert_eq!(status["IsAllowedDataKeyHosted"], true);
    assert_eq!(status["DataKeyUsedCount"], 2);

    // The value lives only encrypted: not in the database file.
    d.stop();
    let bytes = d.stored_bytes();
    assert!(
        !bytes.windows(raw.len()).any(|w| w == raw),
        "imported data key in plaintext on disk"
    );
}
