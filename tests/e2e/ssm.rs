//! End-to-end Secrets Manager on SoftHSM2: every action, the envelope proof (nothing in
//! plaintext on disk, the CMK governs reads, swapped ciphertexts fail), deletion with the test
//! clock, and 10,000 secrets surviving a restart.

mod common;

use common::*;
use keyward::client::TcClient;
use serde_json::{json, Value};

const DAY: u64 = 86_400;

async fn create(c: &TcClient, name: &str, value: &str) -> Value {
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": name, "SecretString": value}),
    )
    .await
    .unwrap())
}

async fn get(c: &TcClient, name: &str, version: &str) -> Value {
    c.ssm(
        "GetSecretValue",
        json!({"SecretName": name, "VersionId": version}),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_values_versions_and_states() {
    let d = Daemon::under_test();
    let c = d.client();
    let name = unique("db");
    let r = ok(c.ssm("CreateSecret", json!({"SecretName": name, "SecretString": "s3cr3t", "Description": "主库", "Tags": [{"TagKey": "env", "TagValue": "prod"}]})).await.unwrap());
    assert_eq!(r["VersionId"], "SSM_Current");
    let v = ok(get(&c, &name, "SSM_Current").await);
    assert_eq!(v["SecretString"], "s3cr3t");
    assert_eq!(v["SecretBinary"], "");
    err(
        &c.ssm(
            "CreateSecret",
            json!({"SecretName": name, "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "ResourceInUse.SecretExists",
    );
    for bad in ["-x", "has space", &"n".repeat(129)] {
        err(
            &c.ssm(
                "CreateSecret",
                json!({"SecretName": bad, "SecretString": "x"}),
            )
            .await
            .unwrap(),
            "InvalidParameterValue",
        );
    }
    err(
        &c.ssm(
            "CreateSecret",
            json!({"SecretName": unique("n"), "SecretString": "x", "SecretBinary": "eA=="}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.ssm("CreateSecret", json!({"SecretName": unique("n")}))
            .await
            .unwrap(),
        "MissingParameter",
    );
    err(
        &c.ssm(
            "CreateSecret",
            json!({"SecretName": unique("n"), "SecretString": "x", "VersionId": ".bad"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );

    // Size limits: 4096 and 32768 bytes accepted, 32769 refused; binary is byte-exact.
    for (len, ok_expected) in [(4096usize, true), (32768, true), (32769, false)] {
        let n = unique("big");
        let r = c
            .ssm(
                "CreateSecret",
                json!({"SecretName": n, "SecretString": "x".repeat(len)}),
            )
            .await
            .unwrap();
        if ok_expected {
            ok(r);
            assert_eq!(
                ok(get(&c, &n, "SSM_Current").await)["SecretString"]
                    .as_str()
                    .unwrap()
                    .len(),
                len
            );
        } else {
            err(&r, "InvalidParameterValue");
        }
    }
    let bin: Vec<u8> = (0..=255u8).cycle().take(32768).collect();
    let bn = unique("bin");
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": bn, "SecretBinary": b64(&bin), "VersionId": "v1"}),
    )
    .await
    .unwrap());
    let v = ok(get(&c, &bn, "v1").await);
    assert_eq!(v["SecretString"], "");
    assert_eq!(unb64(v["SecretBinary"].as_str().unwrap()), bin);

    // Versions: add, duplicate, limit of 10, overwrite, list, delete.
    for i in 2..=10 {
        ok(c.ssm("PutSecretValue", json!({"SecretName": name, "VersionId": format!("v{i}"), "SecretString": format!("value {i}")})).await.unwrap());
    }
    err(
        &c.ssm(
            "PutSecretValue",
            json!({"SecretName": name, "VersionId": "v11", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "LimitExceeded",
    );
    err(
        &c.ssm(
            "PutSecretValue",
            json!({"SecretName": name, "VersionId": "v2", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "ResourceInUse.VersionIdExists",
    );
    assert_eq!(ok(get(&c, &name, "v7").await)["SecretString"], "value 7");
    ok(c.ssm(
        "UpdateSecret",
        json!({"SecretName": name, "VersionId": "v7", "SecretBinary": b64(b"\x00\x01")}),
    )
    .await
    .unwrap());
    let v = ok(get(&c, &name, "v7").await);
    assert_eq!(unb64(v["SecretBinary"].as_str().unwrap()), b"\x00\x01");
    err(
        &c.ssm(
            "UpdateSecret",
            json!({"SecretName": name, "VersionId": "v99", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "ResourceNotFound",
    );
    let versions = ok(c
        .ssm("ListSecretVersionIds", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 10);
    assert_eq!(versions["Versions"][0]["VersionId"], "SSM_Current");
    ok(c.ssm(
        "DeleteSecretVersion",
        json!({"SecretName": name, "VersionId": "v3"}),
    )
    .await
    .unwrap());
    err(&get(&c, &name, "v3").await, "ResourceNotFound");
    err(
        &c.ssm(
            "DeleteSecretVersion",
            json!({"SecretName": name, "VersionId": "v3"}),
        )
        .await
        .unwrap(),
        "ResourceNotFound",
    );
    ok(c.ssm(
        "PutSecretValue",
        json!({"SecretName": name, "VersionId": "v11", "SecretString": "fits again"}),
    )
    .await
    .unwrap());

    // Describe, description, list.
    ok(c.ssm(
        "UpdateDescription",
        json!({"SecretName": name, "Description": "new"}),
    )
    .await
    .unwrap());
    err(
        &c.ssm(
            "UpdateDescription",
            json!({"SecretName": name, "Description": "x".repeat(2049)}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    let desc = ok(c
        .ssm("DescribeSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(desc["Description"], "new");
    assert_eq!(desc["Status"], "Enabled");
    assert_eq!(desc["SecretType"], 0);
    assert_eq!(desc["RotationStatus"], false);
    let list = ok(c
        .ssm(
            "ListSecrets",
            json!({"TagFilters": [{"TagKey": "env", "TagValue": ["prod"]}]}),
        )
        .await
        .unwrap());
    assert_eq!(list["TotalCount"], 1);
    assert_eq!(list["SecretMetadatas"][0]["KmsKeyType"], "DEFAULT");
    assert_eq!(
        ok(c.ssm("ListSecrets", json!({"SearchSecretName": "big-"}))
            .await
            .unwrap())["TotalCount"],
        2
    );
    err(
        &c.ssm("DescribeSecret", json!({"SecretName": "nope"}))
            .await
            .unwrap(),
        "ResourceNotFound.SecretNotExist",
    );

    // States.
    err(
        &c.ssm("DeleteSecret", json!({"SecretName": name}))
            .await
            .unwrap(),
        "OperationDenied",
    );
    ok(c.ssm("DisableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    err(
        &get(&c, &name, "v2").await,
        "ResourceUnavailable.ResourceDisabled",
    );
    assert_eq!(
        ok(c.ssm("ListSecrets", json!({"State": 2})).await.unwrap())["TotalCount"],
        1
    );
    let del = ok(c
        .ssm(
            "DeleteSecret",
            json!({"SecretName": name, "RecoveryWindowInDays": 7}),
        )
        .await
        .unwrap());
    assert!(del["DeleteTime"].as_u64().unwrap() > 1_700_000_000);
    err(
        &get(&c, &name, "v2").await,
        "ResourceUnavailable.ResourcePendingDeleted",
    );
    err(
        &c.ssm("EnableSecret", json!({"SecretName": name}))
            .await
            .unwrap(),
        "ResourceUnavailable.ResourcePendingDeleted",
    );
    err(
        &c.ssm(
            "PutSecretValue",
            json!({"SecretName": name, "VersionId": "v12", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.ResourcePendingDeleted",
    );
    ok(c.ssm("RestoreSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(
        ok(c.ssm("DescribeSecret", json!({"SecretName": name}))
            .await
            .unwrap())["Status"],
        "Disabled"
    );
    err(
        &c.ssm("RestoreSecret", json!({"SecretName": name}))
            .await
            .unwrap(),
        "OperationDenied",
    );
    ok(c.ssm("EnableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(ok(get(&c, &name, "v2").await)["SecretString"], "value 2");
    ok(c.ssm("DisableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    err(
        &c.ssm(
            "DeleteSecret",
            json!({"SecretName": name, "RecoveryWindowInDays": 31}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    ok(c.ssm("DeleteSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    err(
        &c.ssm("DescribeSecret", json!({"SecretName": name}))
            .await
            .unwrap(),
        "ResourceNotFound.SecretNotExist",
    );

    // Service actions, and what is refused.
    let status = ok(c.ssm("GetServiceStatus", json!({})).await.unwrap());
    assert_eq!(status["ServiceEnabled"], true);
    assert_eq!(
        ok(c.ssm("GetRegions", json!({})).await.unwrap())["Regions"],
        json!([REGION])
    );
    let s1 = ok(c
        .ssm(
            "CreateService",
            json!({"PayMode": "PostPay", "ClientToken": "tok-1"}),
        )
        .await
        .unwrap());
    let s2 = ok(c
        .ssm(
            "CreateService",
            json!({"PayMode": "PostPay", "ClientToken": "tok-1"}),
        )
        .await
        .unwrap());
    assert_eq!(s1["OrderId"], s2["OrderId"]);
    err(
        &c.ssm(
            "CreateService",
            json!({"PayMode": "Prepaid", "ClientToken": "t"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.ssm("RotateProductSecret", json!({"SecretName": "x"}))
            .await
            .unwrap(),
        "ResourceNotFound.SecretNotExist",
    );
    // The KMS and SSM GetRegions are different actions of different products, both signed.
    ok(c.kms("GetRegions", json!({})).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn envelope_encryption_proof() {
    let mut d = Daemon::under_test();
    let c = d.client();
    let cmk = ok(c
        .kms("CreateKey", json!({"Alias": unique("ssm")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let (a, b) = (unique("alpha"), unique("beta"));
    let secret_a = "ENVELOPE-MARKER-alpha-value-0123456789";
    let secret_b = "ENVELOPE-MARKER-beta-value-9876543210";
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": a, "SecretString": secret_a, "KmsKeyId": cmk}),
    )
    .await
    .unwrap());
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": b, "SecretString": secret_b, "KmsKeyId": cmk}),
    )
    .await
    .unwrap());
    let desc = ok(c
        .ssm("DescribeSecret", json!({"SecretName": a}))
        .await
        .unwrap());
    assert_eq!(desc["KmsKeyId"], cmk.as_str());
    let list = ok(c
        .ssm("ListSecrets", json!({"SearchSecretName": a}))
        .await
        .unwrap());
    assert_eq!(list["SecretMetadatas"][0]["KmsKeyType"], "CUSTOMER");

    // The CMK governs the secret.
    ok(c.kms("DisableKey", json!({"KeyId": cmk})).await.unwrap());
    err(
        &get(&c, &a, "SSM_Current").await,
        "FailedOperation.AccessKmsError",
    );
    err(
        &c.ssm(
            "PutSecretValue",
            json!({"SecretName": a, "VersionId": "v2", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "FailedOperation.AccessKmsError",
    );
    ok(c.kms("EnableKey", json!({"KeyId": cmk})).await.unwrap());
    assert_eq!(
        ok(get(&c, &a, "SSM_Current").await)["SecretString"],
        secret_a
    );
    err(&c.ssm("CreateSecret", json!({"SecretName": unique("x"), "SecretString": "x", "KmsKeyId": uuid::Uuid::new_v4().to_string()})).await.unwrap(), "FailedOperation.AccessKmsError");

    // Recover the data keys through KMS (the store holds only their CMK blobs) ...
    d.stop();
    let rows: Vec<(String, Vec<u8>)> = d
        .db()
        .query("SELECT secret_name, key_blob FROM secret_versions", &[])
        .into_iter()
        .map(|r| (r[0].text(), r[1].blob()))
        .collect();
    d.start();
    let c = d.client();
    let mut data_keys = vec![];
    for (name, blob) in &rows {
        let ctx = json!({"SecretName": name, "VersionId": "SSM_Current"}).to_string();
        let r = ok(c
            .kms(
                "Decrypt",
                json!({"CiphertextBlob": b64(blob), "EncryptionContext": ctx}),
            )
            .await
            .unwrap());
        data_keys.push(unb64(r["Plaintext"].as_str().unwrap()));
    }
    assert_eq!(data_keys.len(), 2);
    // ... and find neither them nor the values in the database, its WAL or the log.
    d.stop();
    let bytes = d.stored_bytes();
    for needle in [
        secret_a.as_bytes(),
        secret_b.as_bytes(),
        &data_keys[0],
        &data_keys[1],
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "plaintext found in the store"
        );
    }
    let log = d.log_text();
    assert!(!log
        .windows(secret_a.len())
        .any(|w| w == secret_a.as_bytes()));

    // Swap the two secrets' stored ciphertexts: both reads must fail, neither may return the
    // other's value.
    {
        let db = d.db();
        let get_row = |n: &str| -> (Vec<u8>, Vec<u8>, Vec<u8>) {
            let r = db.row(
                "SELECT key_blob, nonce, ciphertext FROM secret_versions WHERE secret_name = ?1",
                &vals![n],
            );
            (r[0].blob(), r[1].blob(), r[2].blob())
        };
        let (ra, rb) = (get_row(&a), get_row(&b));
        for (n, r) in [(&a, &rb), (&b, &ra)] {
            db.execute(
                "UPDATE secret_versions SET key_blob = ?2, nonce = ?3, ciphertext = ?4 WHERE secret_name = ?1",
                &vals![n, &r.0, &r.1, &r.2],
            );
        }
    }
    d.start();
    let c = d.client();
    for n in [&a, &b] {
        let r = get(&c, n, "SSM_Current").await;
        err(&r, "FailedOperation.AccessKmsError");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_secret_deletion_survives_restart() {
    let mut d = Daemon::under_test_with("[testing]\nadjustable_clock = true\n");
    let c = d.client();
    let name = unique("tmp");
    create(&c, &name, "bye").await;
    ok(c.ssm("DisableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    let when = ok(c
        .ssm(
            "DeleteSecret",
            json!({"SecretName": name, "RecoveryWindowInDays": 3}),
        )
        .await
        .unwrap())["DeleteTime"]
        .as_u64()
        .unwrap();
    d.restart();
    let c = d.client();
    let adv = |s: u64| {
        let c = c.clone();
        async move {
            ok(c.call(
                "2026-11-01",
                "keyward",
                "AdvanceClock",
                json!({"Seconds": s}),
            )
            .await
            .unwrap())
        }
    };
    assert_eq!(adv(2 * DAY).await["SecretsDeleted"], 0);
    let desc = ok(c
        .ssm("DescribeSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(desc["Status"], "PendingDelete");
    assert_eq!(desc["DeleteTime"].as_u64().unwrap(), when);
    assert_eq!(adv(DAY + 60).await["SecretsDeleted"], 1);
    err(
        &c.ssm("DescribeSecret", json!({"SecretName": name}))
            .await
            .unwrap(),
        "ResourceNotFound.SecretNotExist",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_secrets_survive_restart() {
    const N: usize = 10_000;
    const TASKS: usize = 16;
    let mut d = Daemon::softhsm();
    let c = d.client();
    let mut tasks = vec![];
    for t in 0..TASKS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(TASKS) {
                let r = c
                    .ssm("CreateSecret", json!({"SecretName": format!("bulk-{i:05}"), "SecretString": format!("value-{i}")}))
                    .await
                    .unwrap();
                assert!(code(&r).is_none(), "{r}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    d.restart();
    let c = d.client();
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0;
    loop {
        let page = ok(c
            .ssm(
                "ListSecrets",
                json!({"Offset": offset, "Limit": 1000, "OrderType": 1}),
            )
            .await
            .unwrap());
        assert_eq!(page["TotalCount"], N);
        let metas = page["SecretMetadatas"].as_array().unwrap();
        if metas.is_empty() {
            break;
        }
        for m in metas {
            assert!(seen.insert(m["SecretName"].as_str().unwrap().to_string()));
        }
        offset += metas.len();
    }
    assert_eq!(seen.len(), N);
    let mut tasks = vec![];
    for t in 0..TASKS {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(TASKS) {
                let r = get(&c, &format!("bulk-{i:05}"), "SSM_Current").await;
                assert_eq!(r["SecretString"], format!("value-{i}"), "{r}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ssh_key_pair_secrets() {
    let d = Daemon::under_test();
    let c = d.client();
    let name = unique("ssh");
    let r = ok(c
        .ssm(
            "CreateSSHKeyPairSecret",
            json!({"SecretName": name, "ProjectId": 3, "SSHKeyName": "ops_key"}),
        )
        .await
        .unwrap());
    let key_id = r["SSHKeyID"].as_str().unwrap().to_string();
    assert!(key_id.starts_with("skey-"));
    assert_eq!(r["SSHKeyName"], "ops_key");
    let by_id = ok(c
        .ssm("GetSSHKeyPairValue", json!({"SSHKeyId": key_id}))
        .await
        .unwrap());
    let by_name = ok(c
        .ssm("GetSSHKeyPairValue", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(by_id["PrivateKey"], by_name["PrivateKey"]);
    assert_eq!(by_id["ProjectID"], 3);
    let public = ssh_key::PublicKey::from_openssh(by_id["PublicKey"].as_str().unwrap()).unwrap();
    let private = ssh_key::PrivateKey::from_openssh(by_id["PrivateKey"].as_str().unwrap()).unwrap();
    assert_eq!(
        private.public_key().key_data(),
        public.key_data(),
        "the halves belong together"
    );
    assert_eq!(public.comment(), "ops_key");
    err(
        &c.ssm("GetSSHKeyPairValue", json!({})).await.unwrap(),
        "MissingParameter",
    );
    err(
        &c.ssm(
            "CreateSSHKeyPairSecret",
            json!({"SecretName": unique("ssh")}),
        )
        .await
        .unwrap(),
        "MissingParameter",
    );
    err(
        &c.ssm(
            "UpdateSecret",
            json!({"SecretName": name, "VersionId": "SSM_Current", "SecretString": "x"}),
        )
        .await
        .unwrap(),
        "OperationDenied",
    );
    let desc = ok(c
        .ssm("DescribeSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(desc["SecretType"], 2);
    assert_eq!(desc["ResourceName"], "ops_key");
    // The private key is stored only envelope-encrypted.
    let mut d = d;
    d.stop();
    let bytes = d.stored_bytes();
    let pem = by_id["PrivateKey"].as_str().unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    assert!(!bytes
        .windows(body_line.len())
        .any(|w| w == body_line.as_bytes()));
}
