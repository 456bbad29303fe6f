//! Helpers for the access-control and audit suites: Keyward's extension API (service
//! `keyward`, version 2026-11-01), CloudAudit's LookUpEvents, sub-accounts and CAM policies.

use super::{ok, unique, REGION};
use keyward::client::TcClient;
use serde_json::{json, Value};

/// The root account's uin; sub-accounts are numbered from 100000000002.
pub const ROOT_UIN: u64 = 100_000_000_001;
pub const KEYWARD_VERSION: &str = "2026-11-01";
pub const CLOUDAUDIT_VERSION: &str = "2019-03-19";

/// Calls a Keyward extension action (service `keyward`).
pub async fn kw(c: &TcClient, action: &str, body: Value) -> Value {
    c.call(KEYWARD_VERSION, "keyward", action, body)
        .await
        .unwrap()
}

/// Calls CloudAudit's LookUpEvents.
pub async fn look_up(c: &TcClient, body: Value) -> Value {
    c.call(CLOUDAUDIT_VERSION, "cloudaudit", "LookUpEvents", body)
        .await
        .unwrap()
}

/// An id the API returns as a number (or, tolerated, a numeric string).
#[track_caller]
pub fn id_of(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a numeric id: {v}"))
}

pub struct SubAccount {
    pub uin: u64,
    pub name: String,
    pub secret_id: String,
    pub secret_key: String,
    /// Signs with the sub-account's API key.
    pub client: TcClient,
}

/// Creates a sub-account with an API key (AddUser, UseApi = 1).
pub async fn add_user(root: &TcClient, prefix: &str) -> SubAccount {
    let name = unique(prefix);
    let r = ok(kw(
        root,
        "AddUser",
        json!({"Name": name, "Remark": "e2e", "UseApi": 1}),
    )
    .await);
    assert_eq!(r["Name"], name.as_str(), "{r}");
    let uin = id_of(&r["Uin"]);
    assert!(uin > ROOT_UIN, "sub-account uin {uin}");
    let secret_id = r["SecretId"].as_str().expect("SecretId").to_string();
    let secret_key = r["SecretKey"].as_str().expect("SecretKey").to_string();
    assert!(!secret_id.is_empty() && !secret_key.is_empty(), "{r}");
    let client = root.with_credentials(&secret_id, &secret_key);
    SubAccount {
        uin,
        name,
        secret_id,
        secret_key,
        client,
    }
}

/// The CAM name of one of the root account's keys.
pub fn key_res(key_id: &str) -> String {
    format!("qcs::kms:{REGION}:uin/{ROOT_UIN}:key/{key_id}")
}

/// The CAM name of a secret the root account created.
pub fn secret_res(name: &str) -> String {
    format!("qcs::ssm:{REGION}:uin/{ROOT_UIN}:secret/creatorUin/{ROOT_UIN}/{name}")
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// One CAM statement.
pub fn statement(effect: &str, actions: &[&str], resources: &[String]) -> Value {
    json!({"effect": effect, "action": actions, "resource": resources})
}

/// A CAM 2.0 document of these statements.
pub fn policy(statements: Vec<Value>) -> Value {
    json!({"version": "2.0", "statement": statements})
}

/// A document with one allow statement.
pub fn allow(actions: &[&str], resources: &[String]) -> Value {
    policy(vec![statement("allow", actions, resources)])
}

pub async fn create_policy(root: &TcClient, doc: &Value) -> u64 {
    let r = ok(kw(
        root,
        "CreatePolicy",
        json!({"PolicyName": unique("p"), "PolicyDocument": doc.to_string(), "Description": "e2e"}),
    )
    .await);
    id_of(&r["PolicyId"])
}

pub async fn attach_user(root: &TcClient, policy_id: u64, uin: u64) {
    ok(kw(
        root,
        "AttachUserPolicy",
        json!({"PolicyId": policy_id, "AttachUin": uin}),
    )
    .await);
}

/// Creates a policy from `doc` and attaches it to the sub-account; returns its id.
pub async fn grant(root: &TcClient, uin: u64, doc: &Value) -> u64 {
    let id = create_policy(root, doc).await;
    attach_user(root, id, uin).await;
    id
}

/// Creates a symmetric key (with optional tags); returns its id.
pub async fn create_key(c: &TcClient, tags: &[(&str, &str)]) -> String {
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    let mut body = json!({"Alias": unique("k")});
    if !tags.is_empty() {
        body["Tags"] = Value::Array(tags);
    }
    ok(c.kms("CreateKey", body).await.unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

pub async fn create_secret(c: &TcClient, name: &str, value: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    let mut body = json!({"SecretName": name, "SecretString": value});
    if !tags.is_empty() {
        body["Tags"] = Value::Array(tags);
    }
    ok(c.ssm("CreateSecret", body).await.unwrap());
}

pub fn now() -> u64 {
    keyward::client::now() as u64
}
