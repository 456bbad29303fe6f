//! End-to-end access control: sub-accounts, API keys, groups and CAM policies managed through
//! Keyward's extension API (service `keyward`, version 2026-11-01), enforced on every KMS, SSM,
//! extension and CloudAudit action of the running daemon; and per-SecretId rate limits.

mod common;

use common::iam::*;
use common::*;
use keyward::api::actions::{Product, ACTIONS};
use keyward::client::TcClient;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const REFUSED: &str = "AuthFailure.UnauthorizedOperation";

/// Every action of a product in the daemon's action table, refused ones included, so the
/// no-policy test covers every action the daemon routes, including ones added later.
fn table_actions(product: Product) -> Vec<String> {
    ACTIONS
        .iter()
        .filter(|a| a.product == product)
        .map(|a| a.name.to_string())
        .collect()
}

fn kms_actions() -> Vec<String> {
    table_actions(Product::Kms)
}

fn ssm_actions() -> Vec<String> {
    table_actions(Product::Ssm)
}

/// The root account's resources a no-policy sub-account aims at.
struct Targets {
    key: String,
    ciphertext: String,
    data_key: String,
    secret: String,
}

/// A plausible request body for a KMS action, naming the root account's resources.
fn kms_body(action: &str, t: &Targets) -> Value {
    let k = t.key.as_str();
    let dk = t.data_key.as_str();
    match action {
        "CreateKey" => json!({"Alias": unique("sub")}),
        "DescribeKeys" | "EnableKeys" | "DisableKeys" => json!({"KeyIds": [k]}),
        "ListKeys" | "ListKeyDetail" | "ListDataKeys" | "ListDataKeyDetail"
        | "GetServiceStatus" | "GetRegions" | "ListAlgorithms" => json!({}),
        "UpdateAlias" => json!({"KeyId": k, "Alias": unique("stolen")}),
        "UpdateKeyDescription" => json!({"KeyId": k, "Description": "mine now"}),
        "Encrypt" => json!({"KeyId": k, "Plaintext": b64(b"x")}),
        "Decrypt" => json!({"CiphertextBlob": t.ciphertext}),
        "ReEncrypt" => json!({"CiphertextBlob": t.ciphertext, "DestinationKeyId": k}),
        "GenerateDataKey" => json!({"KeyId": k, "KeySpec": "AES_256"}),
        "GenerateRandom" => json!({"NumberOfBytes": 16}),
        "ScheduleKeyDeletion" => json!({"KeyId": k, "PendingWindowInDays": 7}),
        "BindCloudResource" | "UnbindCloudResource" => {
            json!({"KeyId": k, "ProductId": "cos", "ResourceId": "bucket-1"})
        }
        "SignByAsymmetricKey" => {
            json!({"KeyId": k, "Algorithm": "ECC_P256_R1", "Message": b64(b"m"), "MessageType": "RAW"})
        }
        "VerifyByAsymmetricKey" => {
            json!({"KeyId": k, "Algorithm": "ECC_P256_R1", "Message": b64(b"m"), "MessageType": "RAW", "SignatureValue": b64(&[1u8; 64])})
        }
        "AsymmetricRsaDecrypt" | "AsymmetricSm2Decrypt" => {
            json!({"KeyId": k, "Ciphertext": b64(&[7u8; 256])})
        }
        "GetParametersForImport" => {
            json!({"KeyId": k, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"})
        }
        "ImportKeyMaterial" => {
            json!({"KeyId": k, "EncryptedKeyMaterial": b64(&[0u8; 256]), "ImportToken": "x"})
        }
        "ImportDataKey" => {
            json!({"DataKeyName": unique("dk"), "ImportKeyMaterial": b64(&[0u8; 32]), "ImportType": 0, "KeyId": k})
        }
        "DescribeDataKeys" | "EnableDataKeys" | "DisableDataKeys" => {
            json!({"DataKeyIds": [dk]})
        }
        "UpdateDataKeyName" => json!({"DataKeyId": dk, "DataKeyName": unique("dk")}),
        "UpdateDataKeyDescription" => json!({"DataKeyId": dk, "Description": "x"}),
        "ScheduleDataKeyDeletion" => json!({"DataKeyId": dk, "PendingWindowInDays": 7}),
        a if a.contains("DataKey") => json!({"DataKeyId": dk}),
        _ => json!({"KeyId": k}),
    }
}

/// A plausible request body for a Secrets Manager action, naming the root account's secret.
fn ssm_body(action: &str, t: &Targets) -> Value {
    let s = t.secret.as_str();
    match action {
        "CreateSecret" => json!({"SecretName": unique("sub"), "SecretString": "x"}),
        "CreateSSHKeyPairSecret" => json!({"SecretName": unique("ssh"), "ProjectId": 0}),
        "GetSecretValue" => json!({"SecretName": s, "VersionId": "SSM_Current"}),
        "PutSecretValue" | "UpdateSecret" => {
            json!({"SecretName": s, "VersionId": "SSM_Current", "SecretString": "overwritten"})
        }
        "UpdateDescription" => json!({"SecretName": s, "Description": "mine now"}),
        "DeleteSecretVersion" => json!({"SecretName": s, "VersionId": "SSM_Current"}),
        "DeleteSecret" => json!({"SecretName": s, "RecoveryWindowInDays": 7}),
        "ListSecrets"
        | "GetServiceStatus"
        | "GetRegions"
        | "CreateService"
        | "DescribeSupportedProducts"
        | "DescribeAsyncRequestInfo" => json!({}),
        _ => json!({"SecretName": s}),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_policy_sub_account_is_refused_everything() {
    let d = Daemon::under_test();
    let root = d.client();
    let key = create_key(&root, &[]).await;
    let ciphertext = ok(root
        .kms(
            "Encrypt",
            json!({"KeyId": key, "Plaintext": b64(b"root data")}),
        )
        .await
        .unwrap())["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    let data_key = ok(root
        .kms(
            "GenerateDataKey",
            json!({"KeyId": key, "KeySpec": "AES_256", "IsHostedByKms": 1, "DataKeyName": unique("dk")}),
        )
        .await
        .unwrap())["DataKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = unique("root-secret");
    create_secret(&root, &secret, "root value", &[]).await;
    let t = Targets {
        key: key.clone(),
        ciphertext,
        data_key,
        secret: secret.clone(),
    };
    let sub = add_user(&root, "nopol").await;
    let c = &sub.client;

    let kms = kms_actions();
    let ssm = ssm_actions();
    assert_eq!(kms.len(), 69, "KMS rows: {kms:?}");
    assert_eq!(ssm.len(), 25, "SSM rows: {ssm:?}");
    for must in [
        "Encrypt",
        "Decrypt",
        "ScheduleKeyDeletion",
        "GetDataKeyPlaintext",
    ] {
        assert!(kms.iter().any(|a| a == must), "{must} missing from {kms:?}");
    }
    for must in ["GetSecretValue", "DeleteSecret", "GetSSHKeyPairValue"] {
        assert!(ssm.iter().any(|a| a == must), "{must} missing from {ssm:?}");
    }

    // Every refusal is collected so one run names every action that got through.
    let mut failures = Vec::new();
    let mut check = |what: String, r: Value| {
        if code(&r) != Some(REFUSED) || r["RequestId"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{what}: expected {REFUSED}, got {r}"));
        }
    };
    for a in &kms {
        check(format!("kms:{a}"), c.kms(a, kms_body(a, &t)).await.unwrap());
    }
    for a in &ssm {
        check(format!("ssm:{a}"), c.ssm(a, ssm_body(a, &t)).await.unwrap());
    }
    // Every extension action in the table, with a body aimed at someone else's (or its own
    // escalated) rights where one is interesting; `{}` otherwise (the refusal comes first).
    let own = json!({"Name": sub.name});
    let bodies: std::collections::HashMap<&str, Value> = [
        ("GetUser", own.clone()),
        ("AddUser", json!({"Name": unique("x"), "UseApi": 1})),
        (
            "CreatePolicy",
            json!({"PolicyName": unique("p"), "PolicyDocument": allow(&["*"], &strings(&["*"])).to_string()}),
        ),
        // Self-escalation: attaching any policy to itself.
        (
            "AttachUserPolicy",
            json!({"PolicyId": 1, "AttachUin": sub.uin}),
        ),
        ("CreateAccessKey", json!({"TargetUin": ROOT_UIN})),
        ("ListAccessKeys", json!({"TargetUin": ROOT_UIN})),
        (
            "UpdateAccessKey",
            json!({"AccessKeyId": d.cred.secret_id, "Status": "Inactive", "TargetUin": ROOT_UIN}),
        ),
        ("CreateGroup", json!({"GroupName": unique("g")})),
        ("DeleteUser", own.clone()),
        ("ExportAuditLog", json!({"AfterSeq": 0, "Limit": 10})),
        ("ArchiveAuditLog", json!({"Before": now() + 60})),
        ("AdvanceClock", json!({"Seconds": 86_400})),
    ]
    .into_iter()
    .collect();
    let admin = table_actions(Product::Admin);
    assert!(admin.len() >= 32, "extension rows: {admin:?}");
    for a in &admin {
        let body = bodies.get(a.as_str()).cloned().unwrap_or_else(|| json!({}));
        check(format!("keyward:{a}"), kw(c, a, body).await);
    }
    // The own-key variant of CreateAccessKey too.
    check(
        "keyward:CreateAccessKey (own)".into(),
        kw(c, "CreateAccessKey", json!({})).await,
    );
    let t_now = now();
    check(
        "cloudaudit:LookUpEvents".into(),
        look_up(c, json!({"StartTime": t_now - 3600, "EndTime": t_now + 60})).await,
    );
    assert!(
        failures.is_empty(),
        "{} action(s) not refused:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing the refused calls named changed.
    let meta = ok(root
        .kms("DescribeKey", json!({"KeyId": key}))
        .await
        .unwrap())["KeyMetadata"]
        .clone();
    assert_eq!(meta["KeyState"], "Enabled", "{meta}");
    assert_eq!(meta["DeletionDate"], 0, "{meta}");
    let v = ok(root
        .ssm(
            "GetSecretValue",
            json!({"SecretName": secret, "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap());
    assert_eq!(v["SecretString"], "root value");
    let users = ok(kw(&root, "ListUsers", json!({})).await);
    let subs: Vec<u64> = users["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| id_of(&u["Uin"]))
        .filter(|u| *u != ROOT_UIN)
        .collect();
    assert_eq!(subs, vec![sub.uin], "no user was added: {users}");
    // The root's key still works (UpdateAccessKey was refused).
    ok(root.kms("GetServiceStatus", json!({})).await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypt_on_one_key_only() {
    let d = Daemon::under_test();
    let root = d.client();
    let a = create_key(&root, &[]).await;
    let b = create_key(&root, &[]).await;
    let sub = add_user(&root, "enc").await;
    let c = &sub.client;
    // Before any policy: refused.
    err(
        &c.kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        REFUSED,
    );
    grant(&root, sub.uin, &allow(&["kms:Encrypt"], &[key_res(&a)])).await;

    let r = ok(c
        .kms(
            "Encrypt",
            json!({"KeyId": a, "Plaintext": b64(b"only for a")}),
        )
        .await
        .unwrap());
    assert_eq!(r["KeyId"], a.as_str());
    let blob = r["CiphertextBlob"].as_str().unwrap().to_string();
    let p = ok(root
        .kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap());
    assert_eq!(unb64(p["Plaintext"].as_str().unwrap()), b"only for a");
    assert_eq!(p["KeyId"], a.as_str());

    err(
        &c.kms("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c.kms("Decrypt", json!({"CiphertextBlob": blob}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c.kms("DescribeKey", json!({"KeyId": a})).await.unwrap(),
        REFUSED,
    );
    err(
        &c.kms("GenerateDataKey", json!({"KeyId": a, "KeySpec": "AES_256"}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c.kms("DisableKey", json!({"KeyId": a})).await.unwrap(),
        REFUSED,
    );
    // A key that does not exist is refused like any key the policy does not name (no
    // existence oracle beyond what the policy grants).
    let missing = uuid::Uuid::new_v4().to_string();
    let r = c
        .kms("Encrypt", json!({"KeyId": missing, "Plaintext": b64(b"x")}))
        .await
        .unwrap();
    assert!(
        matches!(
            code(&r),
            Some(REFUSED) | Some("ResourceUnavailable.CmkNotFound")
        ),
        "{r}"
    );
    assert_eq!(key_state(&root, &a).await, "Enabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_actions_check_every_key() {
    let d = Daemon::under_test();
    let root = d.client();
    let a = create_key(&root, &[]).await;
    let b = create_key(&root, &[]).await;
    let c_key = create_key(&root, &[]).await;
    let sub = add_user(&root, "batch").await;
    let c = &sub.client;
    grant(
        &root,
        sub.uin,
        &allow(
            &["kms:DisableKeys", "kms:EnableKeys"],
            &[key_res(&a), key_res(&b)],
        ),
    )
    .await;

    ok(c.kms("DisableKeys", json!({"KeyIds": [a, b]}))
        .await
        .unwrap());
    assert_eq!(key_state(&root, &a).await, "Disabled");
    assert_eq!(key_state(&root, &b).await, "Disabled");

    // One key outside the policy refuses the whole batch: the permitted key listed first is
    // not changed either.
    err(
        &c.kms("EnableKeys", json!({"KeyIds": [a, c_key]}))
            .await
            .unwrap(),
        REFUSED,
    );
    assert_eq!(key_state(&root, &a).await, "Disabled", "all-or-nothing");
    assert_eq!(key_state(&root, &c_key).await, "Enabled");

    ok(c.kms("EnableKeys", json!({"KeyIds": [a, b]}))
        .await
        .unwrap());
    assert_eq!(key_state(&root, &a).await, "Enabled");
    assert_eq!(key_state(&root, &b).await, "Enabled");

    err(
        &c.kms("DisableKeys", json!({"KeyIds": [a, c_key]}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c.kms("DisableKeys", json!({"KeyIds": [c_key, a]}))
            .await
            .unwrap(),
        REFUSED,
    );
    for k in [&a, &b, &c_key] {
        assert_eq!(key_state(&root, k).await, "Enabled", "{k} changed");
    }
    // The single-key actions are other actions.
    err(
        &c.kms("DisableKey", json!({"KeyId": a})).await.unwrap(),
        REFUSED,
    );

    // An explicit deny beats an allow, also across policies.
    let sub2 = add_user(&root, "deny").await;
    let c2 = &sub2.client;
    grant(&root, sub2.uin, &allow(&["kms:*"], &strings(&["*"]))).await;
    ok(c2
        .kms("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")}))
        .await
        .unwrap());
    grant(
        &root,
        sub2.uin,
        &policy(vec![statement("deny", &["kms:*"], &[key_res(&b)])]),
    )
    .await;
    ok(c2
        .kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"x")}))
        .await
        .unwrap());
    ok(c2.kms("DescribeKey", json!({"KeyId": a})).await.unwrap());
    err(
        &c2.kms("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c2.kms("DescribeKey", json!({"KeyId": b})).await.unwrap(),
        REFUSED,
    );
    err(
        &c2.kms("DisableKeys", json!({"KeyIds": [a, b]}))
            .await
            .unwrap(),
        REFUSED,
    );
    err(
        &c2.kms(
            "ScheduleKeyDeletion",
            json!({"KeyId": b, "PendingWindowInDays": 7}),
        )
        .await
        .unwrap(),
        REFUSED,
    );
    assert_eq!(key_state(&root, &a).await, "Enabled", "all-or-nothing");
    assert_eq!(key_state(&root, &b).await, "Enabled");
    // The same policy, inside one document: deny wins there too.
    let sub3 = add_user(&root, "deny1").await;
    grant(
        &root,
        sub3.uin,
        &policy(vec![
            statement("deny", &["kms:Encrypt"], &[key_res(&b)]),
            statement("allow", &["kms:*"], &strings(&["*"])),
        ]),
    )
    .await;
    err(
        &sub3
            .client
            .kms("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        REFUSED,
    );
    ok(sub3
        .client
        .kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"x")}))
        .await
        .unwrap());
}

fn ids(list: &Value, field: &str) -> BTreeSet<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|k| k[field].as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&String]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_actions_filter() {
    let d = Daemon::under_test();
    let root = d.client();
    let a = create_key(&root, &[("team", "blue")]).await;
    let b = create_key(&root, &[("team", "red")]).await;
    let c_key = create_key(&root, &[("team", "blue")]).await;
    let s1 = unique("s1");
    let s2 = unique("s2");
    let s3 = unique("s3");
    create_secret(&root, &s1, "v1", &[("team", "blue")]).await;
    create_secret(&root, &s2, "v2", &[("team", "red")]).await;
    create_secret(&root, &s3, "v3", &[("team", "blue")]).await;

    // The root sees all three of each.
    let all = ok(root.kms("ListKeys", json!({})).await.unwrap());
    let all_keys = ids(&all["Keys"], "KeyId");
    assert!(all_keys.is_superset(&set(&[&a, &b, &c_key])), "{all}");

    // By tag: blue keys and blue secrets.
    let blue = add_user(&root, "blue").await;
    let tag_cond = json!({"for_any_value:string_equal": {"qcs:resource_tag": ["team&blue"]}});
    let mut s = statement(
        "allow",
        &["kms:ListKeys", "kms:ListKeyDetail", "ssm:ListSecrets"],
        &strings(&["*"]),
    );
    s["condition"] = tag_cond;
    grant(&root, blue.uin, &policy(vec![s])).await;
    let bc = &blue.client;
    let r = ok(bc.kms("ListKeys", json!({})).await.unwrap());
    assert_eq!(ids(&r["Keys"], "KeyId"), set(&[&a, &c_key]), "{r}");
    assert_eq!(r["TotalCount"], 2, "{r}");
    // Paging runs over what the caller may see.
    let p1 = ok(bc
        .kms("ListKeys", json!({"Offset": 0, "Limit": 1}))
        .await
        .unwrap());
    let p2 = ok(bc
        .kms("ListKeys", json!({"Offset": 1, "Limit": 1}))
        .await
        .unwrap());
    assert_eq!(p1["TotalCount"], 2, "{p1}");
    assert_eq!(p2["TotalCount"], 2, "{p2}");
    let mut paged = ids(&p1["Keys"], "KeyId");
    paged.extend(ids(&p2["Keys"], "KeyId"));
    assert_eq!(paged, set(&[&a, &c_key]), "{p1} {p2}");
    let r = ok(bc.kms("ListKeyDetail", json!({})).await.unwrap());
    assert_eq!(ids(&r["KeyMetadatas"], "KeyId"), set(&[&a, &c_key]), "{r}");
    assert_eq!(r["TotalCount"], 2, "{r}");
    let r = ok(bc.ssm("ListSecrets", json!({})).await.unwrap());
    assert_eq!(
        ids(&r["SecretMetadatas"], "SecretName"),
        set(&[&s1, &s3]),
        "{r}"
    );
    assert_eq!(r["TotalCount"], 2, "{r}");
    // Listing is not reading.
    err(
        &bc.kms("DescribeKey", json!({"KeyId": a})).await.unwrap(),
        REFUSED,
    );

    // By resource name: key b and secret s2 only.
    let named = add_user(&root, "named").await;
    grant(
        &root,
        named.uin,
        &policy(vec![
            statement(
                "allow",
                &["kms:ListKeys", "kms:ListKeyDetail"],
                &[key_res(&b)],
            ),
            statement("allow", &["ssm:ListSecrets"], &[secret_res(&s2)]),
        ]),
    )
    .await;
    let nc = &named.client;
    let r = ok(nc.kms("ListKeys", json!({})).await.unwrap());
    assert_eq!(ids(&r["Keys"], "KeyId"), set(&[&b]), "{r}");
    assert_eq!(r["TotalCount"], 1, "{r}");
    let r = ok(nc.kms("ListKeyDetail", json!({})).await.unwrap());
    assert_eq!(ids(&r["KeyMetadatas"], "KeyId"), set(&[&b]), "{r}");
    assert_eq!(r["TotalCount"], 1, "{r}");
    let r = ok(nc.ssm("ListSecrets", json!({})).await.unwrap());
    assert_eq!(ids(&r["SecretMetadatas"], "SecretName"), set(&[&s2]), "{r}");
    assert_eq!(r["TotalCount"], 1, "{r}");

    // A sub-account whose policies never name the list action cannot list at all.
    let none = add_user(&root, "nolist").await;
    grant(&root, none.uin, &allow(&["kms:Encrypt"], &strings(&["*"]))).await;
    err(
        &none.client.kms("ListKeys", json!({})).await.unwrap(),
        REFUSED,
    );
    err(
        &none.client.ssm("ListSecrets", json!({})).await.unwrap(),
        REFUSED,
    );
}

async fn can_encrypt(c: &TcClient, key: &str) -> Value {
    c.kms("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"x")}))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_and_conditions() {
    let d = Daemon::under_test();
    let root = d.client();
    let a = create_key(&root, &[]).await;
    let sub = add_user(&root, "grp").await;
    let c = &sub.client;

    let g = ok(kw(
        &root,
        "CreateGroup",
        json!({"GroupName": unique("g"), "Remark": "encryptors"}),
    )
    .await);
    let gid = id_of(&g["GroupId"]);
    let pid = create_policy(&root, &allow(&["kms:Encrypt"], &[key_res(&a)])).await;
    ok(kw(
        &root,
        "AttachGroupPolicy",
        json!({"PolicyId": pid, "AttachGroupId": gid}),
    )
    .await);
    let attached = ok(kw(
        &root,
        "ListAttachedGroupPolicies",
        json!({"TargetGroupId": gid}),
    )
    .await);
    assert_eq!(attached["TotalNum"], 1, "{attached}");
    assert_eq!(id_of(&attached["List"][0]["PolicyId"]), pid, "{attached}");
    let groups = ok(kw(&root, "ListGroups", json!({})).await);
    assert!(
        groups["GroupInfo"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| id_of(&x["GroupId"]) == gid),
        "{groups}"
    );

    err(&can_encrypt(c, &a).await, REFUSED);
    let member = json!({"Info": [{"Uin": sub.uin, "GroupId": gid}]});
    ok(kw(&root, "AddUserToGroup", member.clone()).await);
    let members = ok(kw(&root, "ListUsersForGroup", json!({"GroupId": gid})).await);
    assert_eq!(members["TotalNum"], 1, "{members}");
    assert_eq!(id_of(&members["UserInfo"][0]["Uin"]), sub.uin, "{members}");
    assert_eq!(members["UserInfo"][0]["Name"], sub.name.as_str());
    ok(can_encrypt(c, &a).await);

    ok(kw(&root, "RemoveUserFromGroup", member.clone()).await);
    err(&can_encrypt(c, &a).await, REFUSED);
    let members = ok(kw(&root, "ListUsersForGroup", json!({"GroupId": gid})).await);
    assert_eq!(members["TotalNum"], 0, "{members}");

    ok(kw(&root, "AddUserToGroup", member.clone()).await);
    ok(can_encrypt(c, &a).await);
    ok(kw(
        &root,
        "DetachGroupPolicy",
        json!({"PolicyId": pid, "DetachGroupId": gid}),
    )
    .await);
    err(&can_encrypt(c, &a).await, REFUSED);
    ok(kw(
        &root,
        "AttachGroupPolicy",
        json!({"PolicyId": pid, "AttachGroupId": gid}),
    )
    .await);
    ok(can_encrypt(c, &a).await);
    ok(kw(&root, "DeleteGroup", json!({"GroupId": gid})).await);
    err(&can_encrypt(c, &a).await, REFUSED);

    // A malformed document is refused when stored.
    for bad in [
        json!({"version": "2.0", "statement": [{"effect": "allow", "action": ["kms:Encrypt"], "resource": ["*"], "condition": {"no_such_operator": {"qcs:ip": ["127.0.0.1"]}}}]}).to_string(),
        json!({"version": "1.0", "statement": [{"effect": "allow", "action": ["kms:Encrypt"], "resource": ["*"]}]}).to_string(),
        "not json".to_string(),
    ] {
        err(
            &kw(
                &root,
                "CreatePolicy",
                json!({"PolicyName": unique("bad"), "PolicyDocument": bad}),
            )
            .await,
            "InvalidParameter.PolicyDocumentError",
        );
    }

    // Conditions, one policy updated in place (each change applies to the next request).
    let with = |condition: Value| {
        let mut s = statement("allow", &["kms:Encrypt"], &[key_res(&a)]);
        s["condition"] = condition;
        policy(vec![s])
    };
    let pid = grant(
        &root,
        sub.uin,
        &with(json!({"ip_equal": {"qcs:ip": ["127.0.0.1"]}})),
    )
    .await;
    ok(can_encrypt(c, &a).await);
    let future = "2099-01-01T00:00:00Z";
    let past = "2001-01-01T00:00:00Z";
    let cases = [
        (json!({"ip_equal": {"qcs:ip": ["10.0.0.0/8"]}}), false),
        (json!({"ip_equal": {"qcs:ip": ["127.0.0.0/8"]}}), true),
        (json!({"ip_not_equal": {"qcs:ip": ["10.0.0.0/8"]}}), true),
        (json!({"ip_not_equal": {"qcs:ip": ["127.0.0.1"]}}), false),
        (
            json!({"date_greater_than": {"qcs:current_time": [future]}}),
            false,
        ),
        (
            json!({"date_greater_than": {"qcs:current_time": [past]}}),
            true,
        ),
        (
            json!({"date_less_than": {"qcs:current_time": [future]}}),
            true,
        ),
        (
            json!({"date_less_than": {"qcs:current_time": [past]}}),
            false,
        ),
        (
            json!({"ip_equal": {"qcs:ip": ["127.0.0.1"]}, "date_greater_than": {"qcs:current_time": [future]}}),
            false,
        ),
        (json!({"ip_equal": {"qcs:ip": ["127.0.0.1"]}}), true),
    ];
    for (condition, allowed) in cases {
        let doc = with(condition.clone());
        ok(kw(
            &root,
            "UpdatePolicy",
            json!({"PolicyId": pid, "PolicyDocument": doc.to_string()}),
        )
        .await);
        let stored = ok(kw(&root, "GetPolicy", json!({"PolicyId": pid})).await);
        let stored_doc: Value =
            serde_json::from_str(stored["PolicyDocument"].as_str().unwrap()).unwrap();
        assert_eq!(stored_doc, doc, "GetPolicy returns the updated document");
        let r = can_encrypt(c, &a).await;
        if allowed {
            ok(r);
        } else {
            assert_eq!(code(&r), Some(REFUSED), "{condition}: {r}");
        }
    }
    let attached = ok(kw(
        &root,
        "ListAttachedUserPolicies",
        json!({"TargetUin": sub.uin}),
    )
    .await);
    assert_eq!(attached["TotalNum"], 1, "{attached}");
    ok(kw(
        &root,
        "DetachUserPolicy",
        json!({"PolicyId": pid, "DetachUin": sub.uin}),
    )
    .await);
    err(&can_encrypt(c, &a).await, REFUSED);
}

fn is_auth_refusal(r: &Value) -> bool {
    matches!(code(r), Some(REFUSED) | Some("OperationDenied"))
}

#[tokio::test(flavor = "multi_thread")]
async fn access_keys_lifecycle() {
    let d = Daemon::under_test();
    let root = d.client();
    let name = unique("keys");
    let r = ok(kw(&root, "AddUser", json!({"Name": name, "UseApi": 0})).await);
    let uin = id_of(&r["Uin"]);
    assert!(
        r.get("SecretKey").is_none_or(|v| v.is_null() || v == ""),
        "UseApi 0 issues no key: {r}"
    );
    let u = ok(kw(&root, "GetUser", json!({"Name": name})).await);
    assert_eq!(id_of(&u["Uin"]), uin);
    assert!(u["CreateTime"].as_u64().unwrap() > 1_700_000_000, "{u}");
    err(
        &kw(&root, "AddUser", json!({"Name": name})).await,
        "ResourceInUse",
    );
    err(
        &kw(&root, "GetUser", json!({"Name": unique("ghost")})).await,
        "ResourceNotFound.UserNotExist",
    );
    let listed = ok(kw(&root, "ListAccessKeys", json!({"TargetUin": uin})).await);
    assert_eq!(
        listed["AccessKeys"].as_array().unwrap().len(),
        0,
        "{listed}"
    );
    grant(
        &root,
        uin,
        &allow(&["kms:GenerateRandom"], &strings(&["*"])),
    )
    .await;

    let mut keys = Vec::new();
    for _ in 0..2 {
        let k = ok(kw(&root, "CreateAccessKey", json!({"TargetUin": uin})).await);
        let ak = &k["AccessKey"];
        assert_eq!(ak["Status"], "Active", "{k}");
        assert!(ak["CreateTime"].as_u64().unwrap() > 1_700_000_000, "{k}");
        let id = ak["AccessKeyId"].as_str().unwrap().to_string();
        let secret = ak["SecretAccessKey"].as_str().unwrap().to_string();
        keys.push((id.clone(), root.with_credentials(&id, &secret)));
    }
    let random = json!({"NumberOfBytes": 8});
    let (k1, c1) = &keys[0];
    let (k2, c2) = &keys[1];
    ok(c1.kms("GenerateRandom", random.clone()).await.unwrap());
    ok(c2.kms("GenerateRandom", random.clone()).await.unwrap());

    ok(kw(
        &root,
        "UpdateAccessKey",
        json!({"AccessKeyId": k1, "Status": "Inactive", "TargetUin": uin}),
    )
    .await);
    err(
        &c1.kms("GenerateRandom", random.clone()).await.unwrap(),
        "AuthFailure.SecretIdNotFound",
    );
    ok(c2.kms("GenerateRandom", random.clone()).await.unwrap());
    let listed = ok(kw(&root, "ListAccessKeys", json!({"TargetUin": uin})).await);
    let status = |listed: &Value, id: &str| {
        listed["AccessKeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["AccessKeyId"] == id)
            .map(|k| k["Status"].as_str().unwrap().to_string())
    };
    assert_eq!(status(&listed, k1).as_deref(), Some("Inactive"), "{listed}");
    assert_eq!(status(&listed, k2).as_deref(), Some("Active"), "{listed}");

    ok(kw(
        &root,
        "UpdateAccessKey",
        json!({"AccessKeyId": k1, "Status": "Active", "TargetUin": uin}),
    )
    .await);
    ok(c1.kms("GenerateRandom", random.clone()).await.unwrap());

    ok(kw(
        &root,
        "DeleteAccessKey",
        json!({"AccessKeyId": k1, "TargetUin": uin}),
    )
    .await);
    err(
        &c1.kms("GenerateRandom", random.clone()).await.unwrap(),
        "AuthFailure.SecretIdNotFound",
    );
    ok(c2.kms("GenerateRandom", random.clone()).await.unwrap());
    let listed = ok(kw(&root, "ListAccessKeys", json!({"TargetUin": uin})).await);
    let list = listed["AccessKeys"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{listed}");
    assert_eq!(list[0]["AccessKeyId"], k2.as_str());
    assert_eq!(list[0]["Status"], "Active");
    assert!(
        list[0]["LastUsedTime"].as_u64().unwrap() >= list[0]["CreateTime"].as_u64().unwrap()
            && list[0]["LastUsedTime"].as_u64().unwrap() > 0,
        "a used key shows when it was used: {listed}"
    );
    assert!(
        list[0]
            .get("SecretAccessKey")
            .is_none_or(|v| v.is_null() || v == ""),
        "a listing never shows a secret: {listed}"
    );
    assert!(
        !listed.to_string().contains(&d.cred.secret_id),
        "another account's key is not listed: {listed}"
    );

    // An administrator sub-account (keyward:* on *) still cannot take over the root: it can
    // neither mint, disable nor delete the root's API keys, nor delete the root account.
    // The policy allows these actions, so the refusal is the handler's own rule: the
    // implementation answers `OperationDenied` ("only the root account manages the root
    // account's API keys", docs/access-control.md), not AuthFailure.UnauthorizedOperation.
    let admin = add_user(&root, "admin").await;
    grant(&root, admin.uin, &allow(&["keyward:*"], &strings(&["*"]))).await;
    let ac = &admin.client;
    ok(kw(ac, "ListUsers", json!({})).await);
    let attempts = [
        ("CreateAccessKey", json!({"TargetUin": ROOT_UIN})),
        (
            "UpdateAccessKey",
            json!({"AccessKeyId": d.cred.secret_id, "Status": "Inactive", "TargetUin": ROOT_UIN}),
        ),
        (
            "DeleteAccessKey",
            json!({"AccessKeyId": d.cred.secret_id, "TargetUin": ROOT_UIN}),
        ),
        ("DeleteUser", json!({"Name": "root"})),
    ];
    for (action, body) in attempts {
        let r = kw(ac, action, body).await;
        assert!(
            is_auth_refusal(&r),
            "a sub-account's {action} on the root must be refused: {r}"
        );
        assert_eq!(code(&r), Some("OperationDenied"), "{action}: {r}");
    }
    // Operator actions are the root's alone, refused with a clean access-denied answer
    // (they used to answer InvalidAction with a garbled "action `only the root…` does not
    // exist").
    for action in ["RunScheduledJobs", "AdvanceClock"] {
        let r = kw(ac, action, json!({"Seconds": 1})).await;
        assert_eq!(code(&r), Some(REFUSED), "{action}: {r}");
        let msg = r["Error"]["Message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("only the root account") && !msg.contains("does not exist"),
            "{action}: {r}"
        );
    }
    // The root cannot delete itself either.
    err(
        &kw(&root, "DeleteUser", json!({"Name": "root"})).await,
        "OperationDenied",
    );
    ok(root.kms("GenerateRandom", random.clone()).await.unwrap());
    let root_keys = ok(kw(&root, "ListAccessKeys", json!({})).await);
    assert_eq!(
        root_keys["AccessKeys"].as_array().unwrap().len(),
        1,
        "no key was minted for the root: {root_keys}"
    );

    // Deleting the user ends its remaining key.
    ok(kw(&root, "DeleteUser", json!({"Name": name})).await);
    err(
        &c2.kms("GenerateRandom", random.clone()).await.unwrap(),
        "AuthFailure.SecretIdNotFound",
    );
    err(
        &kw(&root, "GetUser", json!({"Name": name})).await,
        "ResourceNotFound.UserNotExist",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn test_only_actions_are_refused_in_production() {
    // The harness's daemon runs without [testing] adjustable_clock, like a production one.
    let d = Daemon::under_test();
    let root = d.client();
    for (action, body) in [
        ("AdvanceClock", json!({"Seconds": 86_400})),
        ("RunScheduledJobs", json!({})),
    ] {
        let r = kw(&root, action, body).await;
        assert_eq!(code(&r), Some("UnsupportedOperation"), "{action}: {r}");
        assert!(
            r["Error"]["Message"]
                .as_str()
                .is_some_and(|m| m.contains("test-only")),
            "{action}: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_per_secret_id() {
    let d = Daemon::under_test_with("[rate_limit]\ncrypto_per_sec = 5\n");
    let root = d.client();
    let key = create_key(&root, &[]).await;
    let sub = add_user(&root, "rl").await;
    grant(&root, sub.uin, &allow(&["kms:Encrypt"], &[key_res(&key)])).await;

    let started = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let c = root.clone();
        let key = key.clone();
        set.spawn(async move {
            c.kms("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"burst")}))
                .await
                .unwrap()
        });
    }
    let (mut done, mut limited) = (0, 0);
    while let Some(r) = set.join_next().await {
        let r = r.unwrap();
        match code(&r) {
            None => done += 1,
            Some("RequestLimitExceeded") => limited += 1,
            Some(other) => panic!("unexpected {other}: {r}"),
        }
    }
    assert!(
        done >= 5,
        "a second's worth passes: {done} ok, {limited} limited"
    );
    // At most the burst plus what refilled (5 a second) while the requests ran, plus one:
    // a limiter letting most of the burst through fails here however slow the machine.
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        done <= 5 + refilled + 1,
        "at most a second's worth and the refill pass: {done} ok, {limited} limited, {refilled} refilled"
    );
    assert!(
        limited >= 1,
        "the burst is limited: {done} ok, {limited} limited"
    );

    // Another SecretId has its own budget, and other action families are not limited.
    for _ in 0..5 {
        ok(sub
            .client
            .kms("Encrypt", json!({"KeyId": key, "Plaintext": b64(b"mine")}))
            .await
            .unwrap());
    }
    ok(root
        .kms("DescribeKey", json!({"KeyId": key}))
        .await
        .unwrap());
}

/// Policies written in the form Tencent's CAM documents for KMS keys
/// (`…:key/creatorUin/<creatorUin>/<KeyId>`) work as well as the short form, for allow and
/// for deny, and for list filtering.
#[tokio::test(flavor = "multi_thread")]
async fn tencent_documented_key_resource_form() {
    let d = Daemon::under_test();
    let root = d.client();
    let a = create_key(&root, &[]).await;
    let b = create_key(&root, &[]).await;
    let sub = add_user(&root, "cam-form").await;
    let c = &sub.client;
    let long = |k: &str| format!("qcs::kms:{REGION}:uin/{ROOT_UIN}:key/creatorUin/{ROOT_UIN}/{k}");
    grant(
        &root,
        sub.uin,
        &policy(vec![
            statement("allow", &["kms:Encrypt", "kms:ListKeys"], &[long("*")]),
            statement("deny", &["kms:Encrypt"], &[long(&b)]),
        ]),
    )
    .await;
    ok(
        c.kms("Encrypt", json!({"KeyId": a, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
    );
    err(
        &c.kms("Encrypt", json!({"KeyId": b, "Plaintext": b64(b"x")}))
            .await
            .unwrap(),
        REFUSED,
    );
    let listed = ok(c.kms("ListKeys", json!({"Limit": 100})).await.unwrap());
    let ids: Vec<&str> = listed["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "{listed}"
    );
}

/// Identifiers are never reused (issue 12, item 11): a user created after the newest user was
/// deleted got the deleted user's uin, and with it every right a `creatorUin` or attachment
/// named for that uin. Groups and policies likewise.
#[tokio::test(flavor = "multi_thread")]
async fn deleted_identifiers_are_never_reused() {
    let d = Daemon::under_test();
    let root = d.client();
    // The attack: alice (the newest user) creates a secret, so CAM names it with her uin;
    // she is deleted; the next user must not become her.
    let alice = add_user(&root, "alice").await;
    grant(
        &root,
        alice.uin,
        &allow(&["ssm:*"], &strings(&["qcs::ssm:*:uin/*:secret/*"])),
    )
    .await;
    let secret = unique("alices");
    create_secret(&alice.client, &secret, "alice's value", &[]).await;
    ok(kw(&root, "DeleteUser", json!({"Name": alice.name})).await);
    let mallory = add_user(&root, "mallory").await;
    assert_ne!(
        mallory.uin, alice.uin,
        "a deleted user's uin was handed out again"
    );
    assert!(mallory.uin > alice.uin);
    // The usual grant for a new user, "the secrets you create", must not reach alice's:
    // with her uin reused it did.
    let creator_res = format!(
        "qcs::ssm:{REGION}:uin/{ROOT_UIN}:secret/creatorUin/{}/*",
        mallory.uin
    );
    grant(
        &root,
        mallory.uin,
        &allow(&["ssm:GetSecretValue"], &[creator_res]),
    )
    .await;
    let r = mallory
        .client
        .ssm(
            "GetSecretValue",
            json!({"SecretName": secret, "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap();
    assert_eq!(code(&r), Some(REFUSED), "{r}");

    for (create, delete, field, id_field) in [
        ("CreateGroup", "DeleteGroup", "GroupName", "GroupId"),
        ("CreatePolicy", "DeletePolicy", "PolicyName", "PolicyId"),
    ] {
        let body = |name: String| {
            let mut b = json!({ field: name });
            if create == "CreatePolicy" {
                b["PolicyDocument"] = json!(allow(&["kms:Encrypt"], &strings(&["*"])).to_string());
            }
            b
        };
        let first = id_of(&ok(kw(&root, create, body(unique("g"))).await)[id_field]);
        let gone = match create {
            "CreateGroup" => json!({ "GroupId": first }),
            _ => json!({ "PolicyId": [first] }),
        };
        ok(kw(&root, delete, gone).await);
        let second = id_of(&ok(kw(&root, create, body(unique("g"))).await)[id_field]);
        assert!(
            second > first,
            "{create}: id {first} was handed out again as {second}"
        );
    }
}

/// Policies naming actions that do not exist are refused (issue 12, item 13): a typo in a
/// deny statement would otherwise never match and protect nothing.
#[tokio::test(flavor = "multi_thread")]
async fn policies_name_existing_actions_only() {
    let d = Daemon::under_test();
    let root = d.client();
    let create = |doc: Value| {
        let root = &root;
        async move {
            kw(
                root,
                "CreatePolicy",
                json!({"PolicyName": unique("p"), "PolicyDocument": doc.to_string()}),
            )
            .await
        }
    };
    for bad in [
        policy(vec![statement("deny", &["kms:Encrpyt"], &strings(&["*"]))]),
        policy(vec![statement("allow", &["cvm:*"], &strings(&["*"]))]),
        policy(vec![statement(
            "allow",
            &["kms:Describe*", "ssm:NoSuchThing"],
            &strings(&["*"]),
        )]),
    ] {
        let r = create(bad.clone()).await;
        assert_eq!(
            code(&r),
            Some("InvalidParameter.PolicyDocumentError"),
            "{bad}: {r}"
        );
    }
    for good in [
        policy(vec![statement("deny", &["kms:Encrypt"], &strings(&["*"]))]),
        policy(vec![statement(
            "allow",
            &["kms:Get*", "name/ssm:GetSecretValue"],
            &strings(&["*"]),
        )]),
        policy(vec![statement("allow", &["*"], &strings(&["*"]))]),
        policy(vec![statement(
            "allow",
            &["keyward:ListUsers", "cloudaudit:*"],
            &strings(&["*"]),
        )]),
    ] {
        ok(create(good).await);
    }
}

/// Binding a customer CMK to a secret takes the caller's own right to make data keys with it
/// (issue 12, item 13): a sub-account allowed everything in Secrets Manager but nothing in
/// KMS bound the root's CMKs, and the refusals told it their state.
#[tokio::test(flavor = "multi_thread")]
async fn create_secret_needs_the_right_to_use_its_cmk() {
    let d = Daemon::under_test();
    let root = d.client();
    let key = create_key(&root, &[]).await;
    let disabled = create_key(&root, &[]).await;
    ok(root
        .kms("DisableKey", json!({"KeyId": disabled}))
        .await
        .unwrap());
    let sub = add_user(&root, "ssmonly").await;
    grant(
        &root,
        sub.uin,
        &allow(&["ssm:*"], &strings(&["qcs::ssm:*:uin/*:secret/*"])),
    )
    .await;
    let create = |cmk: &str| {
        let c = sub.client.clone();
        let body = json!({"SecretName": unique("s"), "SecretString": "v", "KmsKeyId": cmk});
        async move { c.ssm("CreateSecret", body).await.unwrap() }
    };
    for cmk in [&key, &disabled] {
        let r = create(cmk).await;
        assert_eq!(code(&r), Some(REFUSED), "{r}");
        let msg = r["Error"]["Message"].as_str().unwrap_or_default();
        assert!(
            !msg.contains("disabled"),
            "the refusal tells the CMK's state: {r}"
        );
    }
    // With the right to make data keys under the one CMK, it may bind that one.
    grant(
        &root,
        sub.uin,
        &allow(&["kms:GenerateDataKey"], &[key_res(&key)]),
    )
    .await;
    ok(create(&key).await);
    assert_eq!(code(&create(&disabled).await), Some(REFUSED));
    // Without a KmsKeyId the region's managed key is used, as before.
    ok(sub
        .client
        .ssm(
            "CreateSecret",
            json!({"SecretName": unique("s"), "SecretString": "v"}),
        )
        .await
        .unwrap());
}

/// Management actions can be granted on particular users, groups and policies, in Tencent
/// CAM's resource forms (issue 12, item 12): a grant of `keyward:CreateAccessKey` worked on
/// every sub-account's keys, and one of `keyward:AttachUserPolicy` on every policy.
#[tokio::test(flavor = "multi_thread")]
async fn management_actions_are_scoped_to_their_targets() {
    let d = Daemon::under_test();
    let root = d.client();
    let alice = add_user(&root, "alice").await;
    let bob = add_user(&root, "bob").await;
    let user_res = |uin: u64| format!("qcs::cam::uin/{ROOT_UIN}:uin/{uin}");
    let policy_res = |id: u64| format!("qcs::cam::uin/{ROOT_UIN}:policyid/{id}");
    let encrypt_only = create_policy(&root, &allow(&["kms:Encrypt"], &strings(&["*"]))).await;
    let admin = create_policy(&root, &allow(&["*"], &strings(&["*"]))).await;
    let helpdesk = add_user(&root, "helpdesk").await;
    grant(
        &root,
        helpdesk.uin,
        &allow(
            &[
                "keyward:CreateAccessKey",
                "keyward:ListAccessKeys",
                "keyward:AttachUserPolicy",
            ],
            &[user_res(alice.uin), policy_res(encrypt_only)],
        ),
    )
    .await;
    let h = &helpdesk.client;
    // Alice's keys and the encrypt-only policy: allowed.
    ok(kw(h, "CreateAccessKey", json!({"TargetUin": alice.uin})).await);
    ok(kw(h, "ListAccessKeys", json!({"TargetUin": alice.uin})).await);
    ok(kw(
        h,
        "AttachUserPolicy",
        json!({"PolicyId": encrypt_only, "AttachUin": alice.uin}),
    )
    .await);
    // Bob's keys, its own keys, the admin policy, or any policy for bob: refused.
    for (action, body) in [
        ("CreateAccessKey", json!({"TargetUin": bob.uin})),
        ("CreateAccessKey", json!({})),
        ("ListAccessKeys", json!({"TargetUin": bob.uin})),
        (
            "AttachUserPolicy",
            json!({"PolicyId": admin, "AttachUin": alice.uin}),
        ),
        (
            "AttachUserPolicy",
            json!({"PolicyId": admin, "AttachUin": helpdesk.uin}),
        ),
        (
            "AttachUserPolicy",
            json!({"PolicyId": encrypt_only, "AttachUin": bob.uin}),
        ),
    ] {
        let r = kw(h, action, body.clone()).await;
        assert_eq!(code(&r), Some(REFUSED), "{action} {body}: {r}");
    }
    let keys = ok(kw(&root, "ListAccessKeys", json!({"TargetUin": bob.uin})).await);
    assert_eq!(keys["AccessKeys"].as_array().unwrap().len(), 1, "{keys}");
    // `*` still covers every user, group and policy.
    let ops = add_user(&root, "ops").await;
    grant(
        &root,
        ops.uin,
        &allow(&["keyward:CreateAccessKey"], &strings(&["*"])),
    )
    .await;
    ok(kw(
        &ops.client,
        "CreateAccessKey",
        json!({"TargetUin": bob.uin}),
    )
    .await);
}

/// An API key's row cannot be rewritten to gain rights (issue 12, item 10): setting a
/// sub-account key's uin to the root's made it act as the root, and setting a disabled key's
/// status back to Enabled revived it. The sealed secret binds both, so such a key
/// authenticates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn api_key_rows_rewritten_in_the_database_authenticate_nothing() {
    let mut d = Daemon::under_test();
    let root = d.client();
    let climber = add_user(&root, "climber").await;
    let zombie = add_user(&root, "zombie").await;
    ok(kw(
        &root,
        "UpdateAccessKey",
        json!({"AccessKeyId": zombie.secret_id, "Status": "Inactive", "TargetUin": zombie.uin}),
    )
    .await);
    d.stop();
    {
        let db = d.db();
        let n = db.execute(
            "UPDATE api_keys SET uin = ?1 WHERE secret_id = ?2",
            &vals![ROOT_UIN as i64, &climber.secret_id],
        );
        assert_eq!(n, 1);
        let n = db.execute(
            "UPDATE api_keys SET status = 'Enabled' WHERE secret_id = ?1",
            &vals![&zombie.secret_id],
        );
        assert_eq!(n, 1);
    }
    d.start();
    let root = d.client();
    for (who, sid, skey) in [
        ("climber", &climber.secret_id, &climber.secret_key),
        ("zombie", &zombie.secret_id, &zombie.secret_key),
    ] {
        let c = root.with_credentials(sid, skey);
        let r = kw(&c, "ListAccessKeys", json!({"TargetUin": ROOT_UIN})).await;
        assert_eq!(code(&r), Some("AuthFailure.SecretIdNotFound"), "{who}: {r}");
        let r = c
            .kms("GenerateRandom", json!({"NumberOfBytes": 8}))
            .await
            .unwrap();
        assert_eq!(code(&r), Some("AuthFailure.SecretIdNotFound"), "{who}: {r}");
    }
    // A tampered key cannot be laundered through the API either: re-enabling it is refused
    // with a clear reason.
    let r = kw(
        &root,
        "UpdateAccessKey",
        json!({"AccessKeyId": zombie.secret_id, "Status": "Active", "TargetUin": zombie.uin}),
    )
    .await;
    assert_eq!(code(&r), Some("OperationDenied"), "{r}");
    assert!(
        r["Error"]["Message"]
            .as_str()
            .unwrap_or_default()
            .contains("changed outside Keyward"),
        "{r}"
    );
    // Keys nobody tampered with still work, and a key disabled and enabled through the API
    // works again.
    ok(root
        .kms("GenerateRandom", json!({"NumberOfBytes": 8}))
        .await
        .unwrap());
    let fine = add_user(&root, "fine").await;
    for status in ["Inactive", "Active"] {
        ok(kw(
            &root,
            "UpdateAccessKey",
            json!({"AccessKeyId": fine.secret_id, "Status": status, "TargetUin": fine.uin}),
        )
        .await);
    }
    // It authenticates again (and, holding no policy, is refused the action itself).
    let r = kw(&fine.client, "GetUser", json!({"Name": fine.name})).await;
    assert_eq!(code(&r), Some(REFUSED), "{r}");
}
