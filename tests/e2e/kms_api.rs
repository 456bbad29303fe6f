//! End-to-end: the `keyward` daemon on a fresh SoftHSM2 token, driven over HTTP with real
//! TC3 signatures. Every foundation action, success and failure paths.

mod common;

use common::*;
use keyward::client::RawRequest;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn key_lifecycle_and_listing() {
    let d = Daemon::under_test();
    let c = d.client();
    let alias = unique("app");
    let created = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": alias, "Description": "测试 key", "Tags": [{"TagKey": "env", "TagValue": "dev"}]}),
        )
        .await
        .unwrap());
    let key_id = created["KeyId"].as_str().unwrap().to_string();
    assert_eq!(created["KeyState"], "Enabled");
    assert_eq!(created["KeyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(created["TagCode"], 0);
    assert!(created["CreateTime"].as_u64().unwrap() > 1_700_000_000);

    let meta = ok(c
        .kms("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["Alias"], alias.as_str());
    assert_eq!(meta["Description"], "测试 key");
    assert_eq!(meta["Origin"], "TENCENT_KMS");
    assert_eq!(meta["Type"], 2);
    assert_eq!(meta["KeyRotationEnabled"], false);
    assert_eq!(meta["DeletionDate"], 0);
    assert_eq!(meta["ProtectionLevel"], protection_level_under_test());
    assert_eq!(meta["Owner"], "user");
    assert!(meta["CreatorUin"].is_u64());

    // Alias rules.
    err(
        &c.kms("CreateKey", json!({"Alias": alias})).await.unwrap(),
        "InvalidParameterValue.AliasAlreadyExists",
    );
    for bad in [
        "KMS-reserved",
        "kms-x",
        "-lead",
        "with space",
        "",
        &"a".repeat(61),
    ] {
        let r = c.kms("CreateKey", json!({"Alias": bad})).await.unwrap();
        assert!(
            matches!(
                code(&r),
                Some("InvalidParameterValue.InvalidAlias") | Some("MissingParameter")
            ),
            "{bad}: {r}"
        );
    }
    err(
        &c.kms(
            "CreateKey",
            json!({"Alias": unique("u"), "KeyUsage": "NOPE"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue.InvalidKeyUsage",
    );
    err(
        &c.kms("CreateKey", json!({"Alias": unique("u"), "Type": 3}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidType",
    );
    err(
        &c.kms(
            "CreateKey",
            json!({"Alias": unique("u"), "Description": "x".repeat(1025)}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );

    // Updates.
    let alias2 = unique("renamed");
    ok(
        c.kms("UpdateAlias", json!({"KeyId": key_id, "Alias": alias2}))
            .await
            .unwrap(),
    );
    ok(c.kms(
        "UpdateKeyDescription",
        json!({"KeyId": key_id, "Description": "new"}),
    )
    .await
    .unwrap());
    let meta = ok(c
        .kms("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["Alias"], alias2.as_str());
    assert_eq!(meta["Description"], "new");
    err(
        &c.kms("UpdateAlias", json!({"KeyId": key_id, "Alias": "kms-no"}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidAlias",
    );
    // The old alias is free again.
    let other = ok(c.kms("CreateKey", json!({"Alias": alias})).await.unwrap());
    let other_id = other["KeyId"].as_str().unwrap().to_string();
    err(
        &c.kms("UpdateAlias", json!({"KeyId": other_id, "Alias": alias2}))
            .await
            .unwrap(),
        "InvalidParameterValue.AliasAlreadyExists",
    );

    // An EXTERNAL key waits for its material.
    let ext = ok(c
        .kms("CreateKey", json!({"Alias": unique("ext"), "Type": 2}))
        .await
        .unwrap());
    assert_eq!(ext["KeyState"], "PendingImport");
    let ext_id = ext["KeyId"].as_str().unwrap().to_string();
    err(
        &c.kms("Encrypt", json!({"KeyId": ext_id, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkStateNotSupport",
    );

    // Listing.
    let all = ok(c.kms("ListKeys", json!({})).await.unwrap());
    assert_eq!(all["TotalCount"], 3);
    let page = ok(c
        .kms("ListKeys", json!({"Offset": 1, "Limit": "1"}))
        .await
        .unwrap());
    assert_eq!(page["Keys"].as_array().unwrap().len(), 1);
    err(
        &c.kms("ListKeys", json!({"Limit": 201})).await.unwrap(),
        "InvalidParameterValue",
    );
    let found = ok(c
        .kms("ListKeyDetail", json!({"SearchKeyAlias": "renamed"}))
        .await
        .unwrap());
    assert_eq!(found["TotalCount"], 1);
    assert_eq!(found["KeyMetadatas"][0]["KeyId"], key_id.as_str());
    let asc = ok(c
        .kms("ListKeyDetail", json!({"OrderType": 1, "KeyUsage": "ALL"}))
        .await
        .unwrap());
    let desc = ok(c
        .kms("ListKeyDetail", json!({"OrderType": 0, "KeyUsage": "ALL"}))
        .await
        .unwrap());
    let ids = |v: &serde_json::Value| {
        v["KeyMetadatas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["KeyId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let mut rev = ids(&desc);
    rev.reverse();
    assert_eq!(ids(&asc), rev);
    assert_eq!(ids(&asc)[0], key_id);
    let ext_only = ok(c
        .kms("ListKeyDetail", json!({"Origin": "EXTERNAL"}))
        .await
        .unwrap());
    assert_eq!(ids(&ext_only), vec![ext_id.clone()]);
    let tagged = ok(c
        .kms(
            "ListKeyDetail",
            json!({"TagFilters": [{"TagKey": "env", "TagValue": ["dev"]}]}),
        )
        .await
        .unwrap());
    assert_eq!(ids(&tagged), vec![key_id.clone()]);
    err(
        &c.kms("ListKeyDetail", json!({"KeyState": 9}))
            .await
            .unwrap(),
        "InvalidParameterValue",
    );

    // Enable / disable, single and batch, and the state filter.
    ok(c.kms("DisableKeys", json!({"KeyIds": [key_id, other_id]}))
        .await
        .unwrap());
    let disabled = ok(c
        .kms("ListKeyDetail", json!({"KeyState": 2}))
        .await
        .unwrap());
    assert_eq!(disabled["TotalCount"], 2);
    ok(c.kms("EnableKey", json!({"KeyId": other_id}))
        .await
        .unwrap());
    let disabled = ok(c
        .kms("ListKeyDetail", json!({"KeyState": 2}))
        .await
        .unwrap());
    assert_eq!(ids(&disabled), vec![key_id.clone()]);
    ok(c.kms("EnableKeys", json!({"KeyIds": [key_id]}))
        .await
        .unwrap());
    err(
        &c.kms("DisableKeys", json!({"KeyIds": [key_id, key_id]}))
            .await
            .unwrap(),
        "InvalidParameterValue.DuplicatedKeyId",
    );
    // A batch with one unknown key changes nothing.
    let missing = uuid::Uuid::new_v4().to_string();
    err(
        &c.kms("DisableKeys", json!({"KeyIds": [key_id, missing]}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    let meta = ok(c
        .kms("DescribeKey", json!({"KeyId": key_id}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["KeyState"], "Enabled");
    err(
        &c.kms("EnableKey", json!({"KeyId": ext_id})).await.unwrap(),
        "ResourceUnavailable.CmkStateNotSupport",
    );

    let many = ok(c
        .kms(
            "DescribeKeys",
            json!({"KeyIds": [key_id, other_id, missing]}),
        )
        .await
        .unwrap());
    assert_eq!(many["KeyMetadatas"].as_array().unwrap().len(), 2);
    err(
        &c.kms("DescribeKey", json!({"KeyId": missing}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    err(
        &c.kms("DescribeKey", json!({"KeyId": "not a key"}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidKeyId",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_decrypt_data_keys_random() {
    let d = Daemon::under_test();
    let c = d.client();
    let key_id = ok(c
        .kms("CreateKey", json!({"Alias": unique("enc")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let plaintext = b"attack at dawn \x00\xff";
    let enc = ok(c
        .kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(plaintext), "EncryptionContext": "{\"app\": \"demo\", \"b\": \"2\"}"}))
        .await
        .unwrap());
    assert_eq!(enc["KeyId"], key_id.as_str());
    let blob = enc["CiphertextBlob"].as_str().unwrap().to_string();
    // Same context, other spelling: decrypts.
    let dec = ok(c
        .kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"b\":\"2\",\"app\":\"demo\"}"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(dec["Plaintext"].as_str().unwrap()), plaintext);
    assert_eq!(dec["KeyId"], key_id.as_str());
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        "FailedOperation.DecryptError",
    );
    err(
        &c.kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"app\":\"other\",\"b\":\"2\"}"}),
        )
        .await
        .unwrap(),
        "FailedOperation.DecryptError",
    );
    err(
        &c.kms(
            "Encrypt",
            json!({"KeyId": key_id, "Plaintext": b64(b"x"), "EncryptionContext": "[1]"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );

    // Every tampered byte of the blob is refused, never decrypted to something else.
    let raw = unb64(&blob);
    for i in 0..raw.len() {
        let mut t = raw.clone();
        t[i] ^= 0x01;
        let r = c.kms("Decrypt", json!({"CiphertextBlob": b64(&t), "EncryptionContext": "{\"app\":\"demo\",\"b\":\"2\"}"})).await.unwrap();
        // The blob: format (0), key id (1..17), version (17..21), algorithm (21), nonce
        // length (22), then nonce and ciphertext. A flipped bit in the structure is a
        // malformed blob, in the key id another (missing) key, anywhere else a failed
        // authentication.
        let want = match i {
            0 | 21 | 22 => "InvalidParameterValue.InvalidCiphertext",
            1..=16 => "ResourceUnavailable.CmkNotFound",
            _ => "FailedOperation.DecryptError",
        };
        assert_eq!(code(&r), Some(want), "tampered byte {i}: {r}");
    }
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": b64(&raw[..20])}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidCiphertext",
    );
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": "%%%not-base64"}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidCiphertext",
    );
    err(
        &c.kms("Encrypt", json!({"KeyId": key_id, "Plaintext": "***"}))
            .await
            .unwrap(),
        "InvalidParameterValue.InvalidPlaintext",
    );

    // Size limits.
    ok(c.kms(
        "Encrypt",
        json!({"KeyId": key_id, "Plaintext": b64(&[7u8; 4096])}),
    )
    .await
    .unwrap());
    err(
        &c.kms(
            "Encrypt",
            json!({"KeyId": key_id, "Plaintext": b64(&[7u8; 4097])}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue.InvalidPlaintext",
    );

    // Disabled keys neither encrypt nor decrypt.
    ok(c.kms("DisableKey", json!({"KeyId": key_id})).await.unwrap());
    err(
        &c.kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );
    err(
        &c.kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"app\":\"demo\",\"b\":\"2\"}"}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "KeySpec": "AES_256"}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );
    ok(c.kms("EnableKey", json!({"KeyId": key_id})).await.unwrap());
    err(
        &c.kms(
            "Encrypt",
            json!({"KeyId": uuid::Uuid::new_v4().to_string(), "Plaintext": b64(b"x")}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );

    // Data keys.
    for (spec, len) in [("AES_128", 16), ("AES_256", 32)] {
        let dk = ok(c
            .kms(
                "GenerateDataKey",
                json!({"KeyId": key_id, "KeySpec": spec, "EncryptionContext": "{\"k\":\"v\"}"}),
            )
            .await
            .unwrap());
        let pt = unb64(dk["Plaintext"].as_str().unwrap());
        assert_eq!(pt.len(), len);
        let back = ok(c.kms("Decrypt", json!({"CiphertextBlob": dk["CiphertextBlob"], "EncryptionContext": "{\"k\": \"v\"}"})).await.unwrap());
        assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), pt);
    }
    let dk = ok(c
        .kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "KeySpec": "AES_128", "NumberOfBytes": 1024}),
        )
        .await
        .unwrap());
    assert_eq!(
        unb64(dk["Plaintext"].as_str().unwrap()).len(),
        1024,
        "NumberOfBytes wins over KeySpec"
    );
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "NumberOfBytes": 1025}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "NumberOfBytes": 0}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms(
            "GenerateDataKey",
            json!({"KeyId": key_id, "KeySpec": "AES_512"}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms("GenerateDataKey", json!({"KeyId": key_id}))
            .await
            .unwrap(),
        "MissingParameter",
    );

    // Random.
    let a = unb64(
        ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 1024}))
            .await
            .unwrap())["Plaintext"]
            .as_str()
            .unwrap(),
    );
    let b = unb64(
        ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 1024}))
            .await
            .unwrap())["Plaintext"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(a.len(), 1024);
    assert_ne!(a, b);
    assert_eq!(
        unb64(
            ok(c.kms("GenerateRandom", json!({"NumberOfBytes": "1"}))
                .await
                .unwrap())["Plaintext"]
                .as_str()
                .unwrap()
        )
        .len(),
        1
    );
    err(
        &c.kms("GenerateRandom", json!({"NumberOfBytes": 0}))
            .await
            .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms("GenerateRandom", json!({"NumberOfBytes": 1025}))
            .await
            .unwrap(),
        "InvalidParameterValue",
    );
    err(
        &c.kms("GenerateRandom", json!({})).await.unwrap(),
        "MissingParameter",
    );

    // Service queries.
    let regions = ok(c.kms("GetRegions", json!({})).await.unwrap());
    assert_eq!(regions["Regions"], json!([REGION]));
    let algs = ok(c.kms("ListAlgorithms", json!({})).await.unwrap());
    assert_eq!(
        algs["SymmetricAlgorithms"],
        json!([{"KeyUsage": "ENCRYPT_DECRYPT", "Algorithm": "AES_256", "ProtectionLevel": protection_level_under_test()}])
    );
    let status = ok(c.kms("GetServiceStatus", json!({})).await.unwrap());
    assert_eq!(status["ServiceEnabled"], true);
    assert_eq!(status["CmkUserCount"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn authentication_failures() {
    let d = Daemon::under_test();
    let c = d.client();
    let wrong_key = c.with_credentials(&d.cred.secret_id, "WrongSecretKey00000000000000000000");
    err(
        &wrong_key
            .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
            .await
            .unwrap(),
        "AuthFailure.SignatureFailure",
    );
    let unknown = c.with_credentials("AKIDunknown000000000000000000000000", &d.cred.secret_key);
    err(
        &unknown
            .kms("GenerateRandom", json!({"NumberOfBytes": 4}))
            .await
            .unwrap(),
        "AuthFailure.SecretIdNotFound",
    );

    let send = |timestamp: Option<i64>, headers: Vec<(String, String)>, host: Option<String>| {
        let c = c.clone();
        async move {
            let r = c
                .raw(RawRequest {
                    version: "2019-01-18",
                    service: "kms",
                    action: "GenerateRandom",
                    body: br#"{"NumberOfBytes": 8}"#.to_vec(),
                    timestamp,
                    host,
                    headers,
                })
                .await
                .unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.content_type.as_deref(), Some("application/json"));
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["Response"].clone()
        }
    };
    let now = keyward::client::now();
    err(
        &send(Some(now - 301), vec![], None).await,
        "AuthFailure.SignatureExpire",
    );
    err(
        &send(Some(now + 400), vec![], None).await,
        "AuthFailure.SignatureExpire",
    );
    ok(send(Some(now - 200), vec![], None).await);
    err(
        &send(
            None,
            vec![("Authorization".into(), "Basic abc".into())],
            None,
        )
        .await,
        "AuthFailure.InvalidAuthorization",
    );
    err(
        &send(None, vec![("X-TC-Region".into(), "mars-1".into())], None).await,
        "UnsupportedRegion",
    );
    err(
        &send(
            None,
            vec![("X-TC-Version".into(), "2017-03-12".into())],
            None,
        )
        .await,
        "NoSuchVersion",
    );
    err(
        &send(
            None,
            vec![("X-TC-Action".into(), "LaunchRockets".into())],
            None,
        )
        .await,
        "InvalidAction",
    );
    // A header swapped after signing breaks the signature.
    err(
        &send(None, vec![("Host".into(), "evil.example:80".into())], None).await,
        "AuthFailure.SignatureFailure",
    );
    // tccli's `--endpoint http://host:port` signs a Host header that carries the scheme.
    ok(send(None, vec![], Some(format!("http://127.0.0.1:{}", d.port))).await);
    // A credential scope naming another service is refused.
    let r = c
        .raw(RawRequest {
            version: "2019-01-18",
            service: "ssm",
            action: "GenerateRandom",
            body: br#"{"NumberOfBytes": 8}"#.to_vec(),
            timestamp: None,
            host: None,
            headers: vec![],
        })
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    err(&v["Response"], "AuthFailure.SignatureFailure");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_documented_codes_and_daemon_keeps_serving() {
    let d = Daemon::under_test();
    let c = d.client();
    let key_id = ok(c
        .kms("CreateKey", json!({"Alias": unique("bad")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let raw = |action: &'static str, body: Vec<u8>| {
        let c = c.clone();
        async move {
            let r = c
                .raw(RawRequest {
                    version: "2019-01-18",
                    service: "kms",
                    action,
                    body,
                    timestamp: None,
                    host: None,
                    headers: vec![],
                })
                .await
                .unwrap();
            assert_eq!(r.status, 200, "always HTTP 200");
            assert_eq!(r.content_type.as_deref(), Some("application/json"));
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["Response"].clone()
        }
    };
    err(
        &raw("Encrypt", b"{not json".to_vec()).await,
        "InvalidParameter",
    );
    err(&raw("Encrypt", b"[1,2]".to_vec()).await, "InvalidParameter");
    err(
        &raw("Encrypt", br#"{"KeyId": 5, "Plaintext": "eA=="}"#.to_vec()).await,
        "InvalidParameter",
    );
    err(
        &raw(
            "Encrypt",
            format!("{{\"KeyId\": \"{key_id}\"}}").into_bytes(),
        )
        .await,
        "MissingParameter",
    );
    err(
        &raw(
            "Encrypt",
            format!("{{\"KeyId\": \"{key_id}\", \"Plaintext\": \"eA==\", \"Bogus\": 1}}")
                .into_bytes(),
        )
        .await,
        "UnknownParameter",
    );
    err(
        &raw("GenerateRandom", b"{\"NumberOfBytes\": \"lots\"}".to_vec()).await,
        "InvalidParameter",
    );
    err(
        &raw("GenerateRandom", b"{\"NumberOfBytes\": -4}".to_vec()).await,
        "InvalidParameter",
    );
    err(
        &raw("Encrypt", vec![b' '; 70_000]).await,
        "RequestSizeLimitExceeded",
    );
    err(&raw("NoSuchThing", b"{}".to_vec()).await, "InvalidAction");
    err(
        &raw("Decrypt", b"{\"CiphertextBlob\": \"AAAA\"}".to_vec()).await,
        "InvalidParameterValue.InvalidCiphertext",
    );
    // Still serving, and nothing was half-written.
    ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 4}))
        .await
        .unwrap());
    assert_eq!(
        ok(c.kms("ListKeys", json!({})).await.unwrap())["TotalCount"],
        1
    );

    // A GET is refused with a Tencent error, not an HTTP error page.
    // curl is installed by scripts/test.sh: a missing curl or a failed request fails here.
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i", &d.endpoint()])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("UnsupportedProtocol"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn regions_are_separate_and_gm_region_uses_sm4() {
    let d = Daemon::under_test_with(
        "[[regions]]\nname = \"ap-guangzhou\"\nalgorithm = \"AES_256\"\n\n[[regions]]\nname = \"ap-beijing\"\nalgorithm = \"SM4\"\n",
    );
    let gz = d.client();
    let bj = keyward::client::TcClient::new(
        &d.endpoint(),
        &d.cred.secret_id,
        &d.cred.secret_key,
        "ap-beijing",
    )
    .unwrap();
    let regions = ok(gz.kms("GetRegions", json!({})).await.unwrap());
    assert_eq!(regions["Regions"], json!(["ap-guangzhou", "ap-beijing"]));
    let algs = ok(bj.kms("ListAlgorithms", json!({})).await.unwrap());
    assert_eq!(algs["SymmetricAlgorithms"][0]["Algorithm"], "SM4");

    // The same alias may exist once per region; keys are invisible across regions.
    let alias = unique("both");
    let gz_key = ok(gz.kms("CreateKey", json!({"Alias": alias})).await.unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let bj_key = ok(bj.kms("CreateKey", json!({"Alias": alias})).await.unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    err(
        &bj.kms("DescribeKey", json!({"KeyId": gz_key}))
            .await
            .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    assert_eq!(
        ok(bj.kms("ListKeys", json!({})).await.unwrap())["TotalCount"],
        1
    );

    let meta = ok(bj
        .kms("DescribeKey", json!({"KeyId": bj_key}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["Type"], 4, "GM region keys report Type 4");
    assert_eq!(meta["Algorithm"], "SM4");
    // SoftHSM2 has no SM4 (sealed by the token, used in host memory); the firmware runs it
    // (on the serial device: HSM; linked in: software).
    let expected = if backend_under_test() == Backend::SoftHsm {
        "SOFTWARE"
    } else {
        protection_level_under_test()
    };
    assert_eq!(meta["ProtectionLevel"], expected);

    let blob = ok(bj.kms("Encrypt", json!({"KeyId": bj_key, "Plaintext": b64(b"sm4 data"), "EncryptionContext": "{\"x\":\"y\"}"})).await.unwrap())["CiphertextBlob"].clone();
    let dec = ok(bj
        .kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"x\":\"y\"}"}),
        )
        .await
        .unwrap());
    assert_eq!(unb64(dec["Plaintext"].as_str().unwrap()), b"sm4 data");
    err(
        &bj.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        "FailedOperation.DecryptError",
    );
    // A blob from one region does not decrypt in another.
    err(
        &gz.kms(
            "Decrypt",
            json!({"CiphertextBlob": blob, "EncryptionContext": "{\"x\":\"y\"}"}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkNotFound",
    );
    let dk = ok(bj
        .kms(
            "GenerateDataKey",
            json!({"KeyId": bj_key, "NumberOfBytes": 16}),
        )
        .await
        .unwrap());
    let back = ok(bj
        .kms("Decrypt", json!({"CiphertextBlob": dk["CiphertextBlob"]}))
        .await
        .unwrap());
    assert_eq!(back["Plaintext"], dk["Plaintext"]);
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::zombie_processes)] // the children are returned to the caller, which waits
async fn first_serve_on_empty_directory_prints_root_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || {
        let log = dir
            .path()
            .join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(p) = text.find("listening on http://127.0.0.1:") {
                let port: u16 = text[p + 30..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
                    .parse()
                    .unwrap();
                return (child, text, port);
            }
            assert!(std::time::Instant::now() < deadline, "no start: {text}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let (mut first, text, port) = start();
    let line = text
        .lines()
        .find(|l| l.starts_with("{\"SecretId\""))
        .expect("credential JSON on stderr");
    let cred: serde_json::Value = serde_json::from_str(line).unwrap();
    let c = keyward::client::TcClient::new(
        &format!("http://127.0.0.1:{port}"),
        cred["SecretId"].as_str().unwrap(),
        cred["SecretKey"].as_str().unwrap(),
        cred["Region"].as_str().unwrap(),
    )
    .unwrap();
    ok(c.kms("GenerateRandom", json!({"NumberOfBytes": 8}))
        .await
        .unwrap());
    // A second daemon on the same data directory is refused while the first runs.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        !second.status.success(),
        "two daemons on one data directory"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut again, text, _) = start();
    assert!(
        !text.contains("SecretKey"),
        "the root key is shown only on first start"
    );
    again.kill().unwrap();
    again.wait().unwrap();
    // `init` on an initialised directory refuses instead of minting another root key.
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!init.status.success());
    assert!(init.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_backend_offers_what_the_firmware_runs() {
    let d = Daemon::embedded();
    let c = d.client();
    // The firmware core runs every asymmetric key type the API names (issue 18).
    let rsa = ok(c
        .kms(
            "CreateKey",
            json!({"Alias": unique("u"), "KeyUsage": "ASYMMETRIC_SIGN_VERIFY_RSA_2048"}),
        )
        .await
        .unwrap());
    assert_eq!(rsa["KeyUsage"], "ASYMMETRIC_SIGN_VERIFY_RSA_2048");
    let algs = ok(c.kms("ListAlgorithms", json!({})).await.unwrap());
    assert_eq!(
        algs["AsymmetricAlgorithms"],
        json!([
            {"KeyUsage": "ASYMMETRIC_DECRYPT_RSA_2048", "Algorithm": "RSA_2048", "ProtectionLevel": "SOFTWARE"},
            {"KeyUsage": "ASYMMETRIC_DECRYPT_SM2", "Algorithm": "SM2", "ProtectionLevel": "SOFTWARE"},
            {"KeyUsage": "ASYMMETRIC_DECRYPT_ML_KEM_768", "Algorithm": "ML_KEM_768", "ProtectionLevel": "SOFTWARE"}
        ])
    );
    let sv: Vec<&str> = algs["AsymmetricSignVerifyAlgorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["KeyUsage"].as_str().unwrap())
        .collect();
    assert_eq!(
        sv,
        [
            "ASYMMETRIC_SIGN_VERIFY_SM2",
            "ASYMMETRIC_SIGN_VERIFY_ECC",
            "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
            "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
            "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65"
        ]
    );
    let key = ok(c
        .kms("CreateKey", json!({"Alias": unique("sym")}))
        .await
        .unwrap());
    let blob = ok(c
        .kms(
            "Encrypt",
            json!({"KeyId": key["KeyId"], "Plaintext": b64(b"embedded")}),
        )
        .await
        .unwrap())["CiphertextBlob"]
        .clone();
    let back = ok(c
        .kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap());
    assert_eq!(unb64(back["Plaintext"].as_str().unwrap()), b"embedded");
}

/// Issue 13: post-quantum CMKs on every backend (SOFTWARE level: seeds sealed through the
/// HSM, operations in the host). Independent FIPS 203/204 implementations check them in the
/// Python suite (test_kms_pq.py).
#[tokio::test(flavor = "multi_thread")]
async fn post_quantum_keys_encrypt_and_sign() {
    let mut d = Daemon::under_test();
    let c = d.client();
    let create = |usage: &'static str| {
        let c = &c;
        async move {
            ok(c.kms(
                "CreateKey",
                json!({"Alias": unique("pq"), "KeyUsage": usage}),
            )
            .await
            .unwrap())["KeyId"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let kem = create("ASYMMETRIC_DECRYPT_ML_KEM_768").await;
    let dsa = create("ASYMMETRIC_SIGN_VERIFY_ML_DSA_65").await;
    let algs = ok(c.kms("ListAlgorithms", json!({})).await.unwrap());
    for (list, usage) in [
        ("AsymmetricAlgorithms", "ASYMMETRIC_DECRYPT_ML_KEM_768"),
        (
            "AsymmetricSignVerifyAlgorithms",
            "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65",
        ),
    ] {
        let entry = algs[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["KeyUsage"] == usage)
            .unwrap_or_else(|| panic!("{usage} missing: {algs}"))
            .clone();
        assert_eq!(entry["ProtectionLevel"], "SOFTWARE", "{entry}");
    }

    let blob = ok(c
        .kms(
            "PostQuantumCryptoEncrypt",
            json!({"KeyId": kem, "PlainText": b64(b"post-quantum")}),
        )
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    let r = ok(c
        .kms("PostQuantumCryptoDecrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap());
    assert_eq!(r["KeyId"], kem.as_str());
    assert_eq!(unb64(r["PlainText"].as_str().unwrap()), b"post-quantum");
    let mut tampered = unb64(&blob);
    tampered[40] ^= 1;
    err(
        &c.kms(
            "PostQuantumCryptoDecrypt",
            json!({"CiphertextBlob": b64(&tampered)}),
        )
        .await
        .unwrap(),
        "FailedOperation.DecryptError",
    );

    let sig = ok(c
        .kms(
            "PostQuantumCryptoSign",
            json!({"KeyId": dsa, "Message": b64(b"signed")}),
        )
        .await
        .unwrap())["Signature"]
        .as_str()
        .unwrap()
        .to_string();
    let verify = |message: &'static [u8], sig: String| {
        let (c, dsa) = (&c, &dsa);
        async move {
            ok(c.kms(
                "PostQuantumCryptoVerify",
                json!({"KeyId": dsa, "Message": b64(message), "SignatureValue": sig}),
            )
            .await
            .unwrap())["SignatureValid"]
                .clone()
        }
    };
    assert_eq!(verify(b"signed", sig.clone()).await, true);
    assert_eq!(verify(b"signed!", sig.clone()).await, false);

    // State gates apply: a disabled key neither signs nor encrypts, and both survive a restart.
    ok(c.kms("DisableKey", json!({"KeyId": dsa})).await.unwrap());
    err(
        &c.kms(
            "PostQuantumCryptoSign",
            json!({"KeyId": dsa, "Message": b64(b"x")}),
        )
        .await
        .unwrap(),
        "ResourceUnavailable.CmkDisabled",
    );
    ok(c.kms("EnableKey", json!({"KeyId": dsa})).await.unwrap());
    d.restart();
    let c = d.client();
    let r = ok(c
        .kms("PostQuantumCryptoDecrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap());
    assert_eq!(unb64(r["PlainText"].as_str().unwrap()), b"post-quantum");
    assert_eq!(
        ok(c.kms(
            "PostQuantumCryptoVerify",
            json!({"KeyId": dsa, "Message": b64(b"signed"), "SignatureValue": sig}),
        )
        .await
        .unwrap())["SignatureValid"],
        true
    );
}

/// Issue 20 item 9: every refusal README.md lists ("What Keyward refuses") answers its code,
/// the refused actions taken from the action table itself.
#[tokio::test(flavor = "multi_thread")]
async fn documented_refusals_answer_their_codes() {
    use keyward::api::actions::{Product, Run, ACTIONS};
    // The embedded backend, for the backend limits of the firmware.
    let d = Daemon::embedded();
    let c = d.client();
    let mut refused = 0;
    for a in ACTIONS.iter() {
        let Run::Refused(reason) = a.run else {
            continue;
        };
        let r = match a.product {
            Product::Kms => c.kms(a.name, json!({})).await.unwrap(),
            Product::Ssm => c.ssm(a.name, json!({})).await.unwrap(),
            other => panic!("a refused {other:?} action: {}", a.name),
        };
        assert_eq!(code(&r), Some("UnsupportedOperation"), "{}: {r}", a.name);
        assert_eq!(r["Error"]["Message"], reason, "{}", a.name);
        refused += 1;
    }
    assert_eq!(refused, 13, "the 13 white-box actions");

    let secret = unique("refusals");
    // DeleteMode 1 is refused on a user-defined secret that exists.
    let user_defined = unique("user-defined");
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": user_defined, "SecretString": "v"}),
    )
    .await
    .unwrap());
    let refusals = [
        (
            "ssm",
            "CreateSecret",
            json!({"SecretName": secret, "SecretString": "v", "VersionId": "v1", "EncryptType": 1}),
            "UnsupportedOperation",
        ),
        (
            "ssm",
            "CreateSecret",
            json!({"SecretName": secret, "SecretString": "v", "VersionId": "v1", "SecretType": 1}),
            "InvalidParameterValue",
        ),
        (
            "ssm",
            "CreateSecret",
            json!({"SecretName": secret, "SecretString": "v", "VersionId": "v1", "KmsHsmClusterId": "cluster-1"}),
            "InvalidParameterValue",
        ),
        (
            "ssm",
            "CreateSSHKeyPairSecret",
            json!({"SecretName": secret, "ProjectId": 0, "EncryptType": 1}),
            "UnsupportedOperation",
        ),
        (
            "ssm",
            "DeleteSecret",
            json!({"SecretName": user_defined, "DeleteMode": 1}),
            "UnsupportedOperation",
        ),
        (
            "ssm",
            "CreateProductSecret",
            json!({"SecretName": secret, "UserNamePrefix": "app", "ProductName": "Mysql",
                   "InstanceID": "not-configured", "Domains": ["%"], "PrivilegesList": []}),
            "InvalidParameterValue",
        ),
        (
            "ssm",
            "GetSecretValue",
            json!({"SecretName": secret, "VersionId": "v1", "EncryptionPublicKey": "-----BEGIN PUBLIC KEY-----"}),
            "UnsupportedOperation",
        ),
        (
            "kms",
            "CreateKey",
            json!({"Alias": unique("r"), "HsmClusterId": "cluster-1"}),
            "InvalidParameterValue",
        ),
    ];
    for (service, action, body, want) in refusals {
        let r = match service {
            "kms" => c.kms(action, body.clone()).await.unwrap(),
            _ => c.ssm(action, body.clone()).await.unwrap(),
        };
        assert_eq!(code(&r), Some(want), "{action} {body}: {r}");
    }
}

/// `GET path` with curl: the status code and the body (a failed request fails the test).
fn http_get(d: &Daemon, path: &str) -> (u16, serde_json::Value) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            "\n%{http_code}",
            &format!("{}{path}", d.endpoint()),
        ])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "GET {path}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), serde_json::from_str(body).unwrap())
}

/// Issue 17: liveness and readiness for orchestrators and load balancers; on the serial
/// backend a device that went away makes the daemon unready while it stays alive.
#[tokio::test(flavor = "multi_thread")]
async fn health_and_readiness() {
    let mut d = Daemon::under_test();
    assert_eq!(http_get(&d, "/healthz"), (200, json!({"Alive": true})));
    let (status, ready) = http_get(&d, "/readyz");
    assert_eq!(status, 200, "{ready}");
    assert_eq!(
        ready,
        json!({"Ready": true, "Checks": {"hsm": true, "store": true, "audit": true}})
    );
    // `keyward status` for operators: the same checks and what the daemon runs on.
    let creds = d.dir.path().join("root.json");
    std::fs::write(
        &creds,
        json!({"SecretId": d.cred.secret_id, "SecretKey": d.cred.secret_key, "Region": REGION})
            .to_string(),
    )
    .unwrap();
    let keyward_status = |d: &Daemon| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["status", "--endpoint", &d.endpoint(), "--credentials"])
            .arg(&creds)
            .env("KEYWARD_LOG", "warn")
            .output()
            .expect("keyward status runs");
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        (out.status.success(), v)
    };
    let key = ok(d
        .client()
        .kms("CreateKey", json!({"Alias": unique("status")}))
        .await
        .unwrap());
    assert!(key["KeyId"].is_string());
    let (fine, v) = keyward_status(&d);
    assert!(fine, "{v}");
    let backend = match backend_under_test() {
        Backend::SoftHsm => "pkcs11",
        Backend::Embedded => "embedded",
        Backend::Serial => "serial",
    };
    assert_eq!(v["Hsm"]["Backend"], backend, "{v}");
    assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"), "{v}");
    assert_eq!(
        v["Ready"],
        json!({"hsm": true, "store": true, "audit": true}),
        "{v}"
    );
    assert!(v["Keys"].as_u64().unwrap() >= 1, "the key just made: {v}");
    assert!(v["AuditHead"].as_u64().unwrap() > 0, "{v}");
    if let Some(mut sim) = d.sim.take() {
        sim.kill().unwrap();
        sim.wait().unwrap();
        // The probe's result is reused for a second.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (status, ready) = http_get(&d, "/readyz");
        assert_eq!(status, 503, "{ready}");
        assert_eq!(ready["Ready"], false);
        assert_eq!(ready["Checks"]["hsm"], false, "{ready}");
        assert_eq!(ready["Checks"]["store"], true, "{ready}");
        assert_eq!(http_get(&d, "/healthz").0, 200);
        let (fine, v) = keyward_status(&d);
        assert!(!fine, "status exits non-zero when the HSM is gone: {v}");
        assert_eq!(v["Ready"]["hsm"], false, "{v}");
    }
}
