//! Access management: users (sub-accounts), API keys, groups and CAM-syntax policies, plus the
//! audit log's verification and export. Part of Keyward's extension API (service `keyward`,
//! version `2026-11-01`); action and field names follow Tencent CAM's where CAM has them.
//! Policies grant these as `keyward:<Action>` on resource `*` (docs/access-control.md).

use super::params::{opt_u64, parse, required};
use super::{Ctx, Fields};
use crate::accounts::ROOT_UIN;
use crate::audit::verify;
use crate::error::{Error, Result};
use crate::hsm::asym::spki_pem;
use crate::iam::policy::Policy;
use crate::store::{AccountRecord, ApiKeyRecord, PolicyRecord, Target};
use serde::Deserialize;
use serde_json::{json, Value};

fn out(v: Value) -> Result<Fields> {
    Ok(v.as_object().cloned().unwrap_or_default())
}

/// CAM's user, group and policy name rule.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidValue(format!(
            "{what} must be 1 to 64 characters of letters, digits and _+=,.@-"
        )))
    }
}

fn check_remark(remark: &str) -> Result<()> {
    if remark.len() > 255 {
        return Err(Error::InvalidValue(
            "Remark may be at most 255 bytes".into(),
        ));
    }
    Ok(())
}

/// Every change to users, keys, groups or policies: cached credentials and parsed
/// policies are dropped, so the change takes effect with the next request.
fn changed(ctx: &Ctx<'_>) {
    ctx.state.iam.invalidate();
}

fn user(ctx: &Ctx<'_>, name: &str) -> Result<AccountRecord> {
    ctx.state
        .kms
        .store()
        .account_by_name(name)?
        .ok_or_else(|| Error::UserNotFound(name.to_string()))
}

fn user_by_uin(ctx: &Ctx<'_>, uin: u64) -> Result<AccountRecord> {
    ctx.state
        .kms
        .store()
        .get_account(uin)?
        .ok_or_else(|| Error::UserNotFound(uin.to_string()))
}

fn user_json(a: &AccountRecord) -> Value {
    json!({
        "Uin": a.uin,
        "Name": a.name,
        "Remark": a.remark,
        "CreateTime": a.create_time,
        "Kind": a.kind,
    })
}

// ---------------------------------------------------------------- users

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AddUserRequest {
    name: String,
    #[serde(default)]
    remark: String,
    #[serde(default, deserialize_with = "opt_u64")]
    use_api: Option<u64>,
    // CAM's console-login fields are accepted and ignored: Keyward has no console.
    #[serde(default)]
    #[allow(dead_code)]
    console_login: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    password: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    need_reset_password: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    phone_num: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    country_code: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    email: Option<Value>,
}

pub(super) fn add_user(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: AddUserRequest = parse(body)?;
    check_name("Name", &req.name)?;
    check_remark(&req.remark)?;
    let use_api = match req.use_api.unwrap_or(0) {
        0 => false,
        1 => true,
        n => {
            return Err(Error::InvalidValue(format!(
                "UseApi must be 0 or 1, not {n}"
            )))
        }
    };
    let now = ctx.state.clock.now();
    let rec =
        ctx.state
            .kms
            .store()
            .create_sub_account(&ctx.caller.trail, &req.name, &req.remark, now)?;
    let mut v = json!({ "Uin": rec.uin, "Name": rec.name, "Remark": rec.remark });
    if use_api {
        let cred =
            ctx.state
                .accounts
                .issue_api_key(&ctx.caller.trail, rec.uin, &ctx.caller.region)?;
        v["SecretId"] = json!(cred.secret_id);
        v["SecretKey"] = json!(cred.secret_key.as_str());
    }
    changed(ctx);
    out(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NameRequest {
    name: String,
}

pub(super) fn get_user(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    out(user_json(&user(ctx, required("Name", &req.name)?)?))
}

pub(super) fn list_users(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let users: Vec<Value> = ctx
        .state
        .kms
        .store()
        .list_accounts()?
        .iter()
        .map(user_json)
        .collect();
    out(json!({ "Data": users }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UpdateUserRequest {
    name: String,
    #[serde(default)]
    remark: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    console_login: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    password: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    need_reset_password: Option<Value>,
}

pub(super) fn update_user(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: UpdateUserRequest = parse(body)?;
    let u = user(ctx, required("Name", &req.name)?)?;
    if let Some(remark) = &req.remark {
        check_remark(remark)?;
        ctx.state
            .kms
            .store()
            .update_account_remark(&ctx.caller.trail, u.uin, remark)?;
    }
    out(json!({}))
}

pub(super) fn delete_user(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        name: String,
        #[serde(default)]
        #[allow(dead_code)]
        force: Option<Value>,
    }
    let req: Req = parse(body)?;
    let u = user(ctx, required("Name", &req.name)?)?;
    if u.kind == "root" {
        return Err(Error::OperationNotPermitted(
            "the root account cannot be deleted".into(),
        ));
    }
    ctx.state
        .kms
        .store()
        .delete_account(&ctx.caller.trail, u.uin)?;
    ctx.state.accounts.forget(|c| c.uin == u.uin);
    changed(ctx);
    out(json!({}))
}

// ---------------------------------------------------------------- API keys

/// The account whose keys a request manages: `TargetUin`, or the caller. Only the root
/// account manages the root's keys, so no sub-account can mint itself root credentials.
fn key_owner(ctx: &Ctx<'_>, target: Option<u64>) -> Result<AccountRecord> {
    let uin = target.unwrap_or(ctx.caller.uin);
    let owner = user_by_uin(ctx, uin)?;
    if owner.uin == ROOT_UIN && ctx.caller.uin != ROOT_UIN {
        return Err(Error::OperationNotPermitted(
            "only the root account manages the root account's API keys".into(),
        ));
    }
    Ok(owner)
}

fn key_json(ctx: &Ctx<'_>, k: &ApiKeyRecord) -> Value {
    json!({
        "AccessKeyId": k.secret_id,
        "Status": if k.enabled { "Active" } else { "Inactive" },
        "CreateTime": k.create_time,
        "LastUsedTime": ctx.state.accounts.last_used(k),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct TargetRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    target_uin: Option<u64>,
}

/// API keys per account, as in CAM.
const MAX_KEYS_PER_ACCOUNT: usize = 10;

pub(super) fn create_access_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: TargetRequest = parse(body)?;
    let owner = key_owner(ctx, req.target_uin)?;
    if ctx.state.kms.store().list_api_keys(owner.uin)?.len() >= MAX_KEYS_PER_ACCOUNT {
        return Err(Error::InvalidValue(format!(
            "an account may hold at most {MAX_KEYS_PER_ACCOUNT} API keys"
        )));
    }
    let cred =
        ctx.state
            .accounts
            .issue_api_key(&ctx.caller.trail, owner.uin, &ctx.caller.region)?;
    out(json!({
        "AccessKey": {
            "AccessKeyId": cred.secret_id,
            "SecretAccessKey": cred.secret_key.as_str(),
            "Status": "Active",
            "CreateTime": ctx.state.clock.now(),
        }
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AccessKeyRequest {
    access_key_id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    target_uin: Option<u64>,
}

/// The key named by a request, after checking it belongs to the target account.
fn owned_key(ctx: &Ctx<'_>, req: &AccessKeyRequest) -> Result<ApiKeyRecord> {
    let id = required("AccessKeyId", &req.access_key_id)?;
    let key = ctx
        .state
        .kms
        .store()
        .get_api_key(id)?
        .ok_or_else(|| Error::AccessKeyNotFound(id.to_string()))?;
    let owner = key_owner(ctx, Some(req.target_uin.unwrap_or(key.uin)))?;
    if owner.uin != key.uin {
        return Err(Error::AccessKeyNotFound(id.to_string()));
    }
    Ok(key)
}

pub(super) fn update_access_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: AccessKeyRequest = parse(body)?;
    let enabled = match req.status.as_deref() {
        Some("Active") => true,
        Some("Inactive") => false,
        Some(other) => {
            return Err(Error::InvalidValue(format!(
                "Status must be Active or Inactive, not `{other}`"
            )))
        }
        None => return Err(Error::MissingParameter("Status is required".into())),
    };
    let key = owned_key(ctx, &req)?;
    ctx.state
        .kms
        .store()
        .set_api_key_enabled(&ctx.caller.trail, &key.secret_id, enabled)?;
    ctx.state.accounts.forget(|c| c.secret_id == key.secret_id);
    out(json!({}))
}

pub(super) fn delete_access_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: AccessKeyRequest = parse(body)?;
    let key = owned_key(ctx, &req)?;
    if key.uin == ROOT_UIN && ctx.state.kms.store().list_api_keys(ROOT_UIN)?.len() == 1 {
        return Err(Error::OperationNotPermitted(
            "the root account's last API key cannot be deleted".into(),
        ));
    }
    ctx.state
        .kms
        .store()
        .delete_api_key(&ctx.caller.trail, &key.secret_id)?;
    ctx.state.accounts.forget(|c| c.secret_id == key.secret_id);
    out(json!({}))
}

pub(super) fn list_access_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: TargetRequest = parse(body)?;
    let owner = key_owner(ctx, req.target_uin)?;
    let keys: Vec<Value> = ctx
        .state
        .kms
        .store()
        .list_api_keys(owner.uin)?
        .iter()
        .map(|k| key_json(ctx, k))
        .collect();
    out(json!({ "AccessKeys": keys }))
}

// ---------------------------------------------------------------- groups

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateGroupRequest {
    group_name: String,
    #[serde(default)]
    remark: String,
}

pub(super) fn create_group(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateGroupRequest = parse(body)?;
    check_name("GroupName", &req.group_name)?;
    check_remark(&req.remark)?;
    let g = ctx.state.kms.store().create_group(
        &ctx.caller.trail,
        &req.group_name,
        &req.remark,
        ctx.state.clock.now(),
    )?;
    out(json!({ "GroupId": g.group_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GroupIdRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    group_id: Option<u64>,
}

fn group_id(id: Option<u64>) -> Result<u64> {
    id.ok_or_else(|| Error::MissingParameter("GroupId is required".into()))
}

pub(super) fn delete_group(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GroupIdRequest = parse(body)?;
    let id = group_id(req.group_id)?;
    if !ctx.state.kms.store().delete_group(&ctx.caller.trail, id)? {
        return Err(Error::GroupNotFound(id.to_string()));
    }
    changed(ctx);
    out(json!({}))
}

pub(super) fn list_groups(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let groups: Vec<Value> = ctx
        .state
        .kms
        .store()
        .list_groups()?
        .iter()
        .map(|g| {
            json!({
                "GroupId": g.group_id,
                "GroupName": g.name,
                "Remark": g.remark,
                "CreateTime": g.create_time,
            })
        })
        .collect();
    out(json!({ "TotalNum": groups.len(), "GroupInfo": groups }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct Membership {
    #[serde(default, deserialize_with = "opt_u64")]
    uin: Option<u64>,
    /// CAM names users by Uid; Keyward's users have one number, accepted under both names.
    #[serde(default, deserialize_with = "opt_u64")]
    uid: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    group_id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct MembershipRequest {
    info: Vec<Membership>,
}

pub(super) fn group_membership(ctx: &Ctx<'_>, body: &[u8], add: bool) -> Result<Fields> {
    let req: MembershipRequest = parse(body)?;
    if req.info.is_empty() {
        return Err(Error::MissingParameter(
            "Info must name at least one user".into(),
        ));
    }
    let store = ctx.state.kms.store();
    // Validate everything first, so a bad entry changes nothing.
    let mut pairs = Vec::new();
    for m in &req.info {
        let uin = m
            .uin
            .or(m.uid)
            .ok_or_else(|| Error::MissingParameter("Info[].Uin is required".into()))?;
        let gid = group_id(m.group_id)?;
        user_by_uin(ctx, uin)?;
        store
            .get_group(gid)?
            .ok_or_else(|| Error::GroupNotFound(gid.to_string()))?;
        pairs.push((gid, uin));
    }
    for (gid, uin) in pairs {
        if add {
            store.add_group_member(&ctx.caller.trail, gid, uin)?;
        } else {
            store.remove_group_member(&ctx.caller.trail, gid, uin)?;
        }
    }
    changed(ctx);
    out(json!({}))
}

pub(super) fn list_users_for_group(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GroupIdRequest = parse(body)?;
    let id = group_id(req.group_id)?;
    let store = ctx.state.kms.store();
    store
        .get_group(id)?
        .ok_or_else(|| Error::GroupNotFound(id.to_string()))?;
    let mut users = Vec::new();
    for uin in store.group_members(id)? {
        if let Some(a) = store.get_account(uin)? {
            users.push(json!({ "Uin": a.uin, "Uid": a.uin, "Name": a.name }));
        }
    }
    out(json!({ "TotalNum": users.len(), "UserInfo": users }))
}

// ---------------------------------------------------------------- policies

fn validate_document(doc: &str) -> Result<()> {
    if doc.len() > 6144 {
        return Err(Error::InvalidPolicyDocument(
            "a policy document may be at most 6144 bytes".into(),
        ));
    }
    Policy::parse(doc)
        .map(|_| ())
        .map_err(|e| Error::InvalidPolicyDocument(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreatePolicyRequest {
    policy_name: String,
    policy_document: String,
    #[serde(default)]
    description: String,
}

pub(super) fn create_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreatePolicyRequest = parse(body)?;
    check_name("PolicyName", &req.policy_name)?;
    check_remark(&req.description)?;
    validate_document(&req.policy_document)?;
    let p = ctx.state.kms.store().create_policy(
        &ctx.caller.trail,
        &req.policy_name,
        &req.description,
        &req.policy_document,
        ctx.state.clock.now(),
    )?;
    out(json!({ "PolicyId": p.policy_id }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UpdatePolicyRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    policy_id: Option<u64>,
    #[serde(default)]
    policy_document: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    policy_name: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    alias: Option<String>,
}

fn policy_id(id: Option<u64>) -> Result<u64> {
    id.ok_or_else(|| Error::MissingParameter("PolicyId is required".into()))
}

pub(super) fn update_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: UpdatePolicyRequest = parse(body)?;
    let id = policy_id(req.policy_id)?;
    if let Some(d) = &req.policy_document {
        validate_document(d)?;
    }
    if let Some(d) = &req.description {
        check_remark(d)?;
    }
    if !ctx.state.kms.store().update_policy(
        &ctx.caller.trail,
        id,
        req.description.as_deref(),
        req.policy_document.as_deref(),
        ctx.state.clock.now(),
    )? {
        return Err(Error::PolicyNotFound(id.to_string()));
    }
    changed(ctx);
    out(json!({ "PolicyId": id }))
}

pub(super) fn delete_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        policy_id: Vec<Value>,
    }
    let req: Req = parse(body)?;
    let store = ctx.state.kms.store();
    let mut ids = Vec::new();
    for v in &req.policy_id {
        let id = v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| Error::InvalidValue(format!("PolicyId `{v}` is not a number")))?;
        store
            .get_policy(id)?
            .ok_or_else(|| Error::PolicyNotFound(id.to_string()))?;
        ids.push(id);
    }
    for id in ids {
        store.delete_policy(&ctx.caller.trail, id)?;
    }
    changed(ctx);
    out(json!({}))
}

fn policy(ctx: &Ctx<'_>, id: u64) -> Result<PolicyRecord> {
    ctx.state
        .kms
        .store()
        .get_policy(id)?
        .ok_or_else(|| Error::PolicyNotFound(id.to_string()))
}

pub(super) fn get_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        #[serde(default, deserialize_with = "opt_u64")]
        policy_id: Option<u64>,
    }
    let req: Req = parse(body)?;
    let p = policy(ctx, policy_id(req.policy_id)?)?;
    out(json!({
        "PolicyName": p.name,
        "Description": p.description,
        "PolicyDocument": p.document,
        "AddTime": p.create_time,
        "UpdateTime": p.update_time,
        "Type": 1,
    }))
}

pub(super) fn list_policies(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let list: Vec<Value> = ctx
        .state
        .kms
        .store()
        .list_policies()?
        .iter()
        .map(|p| {
            json!({
                "PolicyId": p.policy_id,
                "PolicyName": p.name,
                "Description": p.description,
                "AddTime": p.create_time,
                "Type": 1,
            })
        })
        .collect();
    out(json!({ "TotalNum": list.len(), "List": list }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct AttachRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    policy_id: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    attach_uin: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    detach_uin: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    attach_group_id: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    detach_group_id: Option<u64>,
}

pub(super) fn attach(ctx: &Ctx<'_>, body: &[u8], to_user: bool, attach: bool) -> Result<Fields> {
    let req: AttachRequest = parse(body)?;
    let p = policy(ctx, policy_id(req.policy_id)?)?;
    let store = ctx.state.kms.store();
    let target = if to_user {
        let (field, uin) = match attach {
            true => ("AttachUin", req.attach_uin),
            false => ("DetachUin", req.detach_uin),
        };
        let uin = uin.ok_or_else(|| Error::MissingParameter(format!("{field} is required")))?;
        let u = user_by_uin(ctx, uin)?;
        if u.kind == "root" {
            return Err(Error::OperationNotPermitted(
                "the root account is always allowed; policies attach to sub-accounts".into(),
            ));
        }
        Target::User(uin)
    } else {
        let (field, gid) = match attach {
            true => ("AttachGroupId", req.attach_group_id),
            false => ("DetachGroupId", req.detach_group_id),
        };
        let gid = gid.ok_or_else(|| Error::MissingParameter(format!("{field} is required")))?;
        store
            .get_group(gid)?
            .ok_or_else(|| Error::GroupNotFound(gid.to_string()))?;
        Target::Group(gid)
    };
    if attach {
        store.attach_policy(
            &ctx.caller.trail,
            p.policy_id,
            target,
            ctx.state.clock.now(),
        )?;
    } else {
        store.detach_policy(&ctx.caller.trail, p.policy_id, target)?;
    }
    changed(ctx);
    out(json!({}))
}

pub(super) fn list_attached(ctx: &Ctx<'_>, body: &[u8], user: bool) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        #[serde(default, deserialize_with = "opt_u64")]
        target_uin: Option<u64>,
        #[serde(default, deserialize_with = "opt_u64")]
        target_group_id: Option<u64>,
        #[serde(default, deserialize_with = "opt_u64")]
        #[allow(dead_code)]
        page: Option<u64>,
        #[serde(default, deserialize_with = "opt_u64")]
        #[allow(dead_code)]
        rp: Option<u64>,
    }
    let req: Req = parse(body)?;
    let target = if user {
        let uin = req
            .target_uin
            .ok_or_else(|| Error::MissingParameter("TargetUin is required".into()))?;
        user_by_uin(ctx, uin)?;
        Target::User(uin)
    } else {
        let gid = req
            .target_group_id
            .ok_or_else(|| Error::MissingParameter("TargetGroupId is required".into()))?;
        Target::Group(gid)
    };
    let list: Vec<Value> = ctx
        .state
        .kms
        .store()
        .attached_policies(target)?
        .iter()
        .map(|p| {
            json!({
                "PolicyId": p.policy_id,
                "PolicyName": p.name,
                "Description": p.description,
                "AddTime": p.create_time,
            })
        })
        .collect();
    out(json!({ "TotalNum": list.len(), "List": list }))
}

// ---------------------------------------------------------------- audit log

pub(super) fn verify_audit_log(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    ctx.state.audit.flush();
    let report = verify::verify(ctx.state.kms.store(), &ctx.state.audit.signer.public_key)?;
    let mut v =
        serde_json::to_value(&report).map_err(|e| Error::Internal(format!("audit report: {e}")))?;
    v["Ok"] = json!(report.ok());
    out(v)
}

const MAX_EXPORT: u64 = 1000;

pub(super) fn export_audit_log(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        #[serde(default, deserialize_with = "opt_u64")]
        after_seq: Option<u64>,
        #[serde(default, deserialize_with = "opt_u64")]
        limit: Option<u64>,
    }
    let req: Req = parse(body)?;
    let limit = req.limit.unwrap_or(MAX_EXPORT);
    if !(1..=MAX_EXPORT).contains(&limit) {
        return Err(Error::InvalidValue(format!(
            "Limit must be 1 to {MAX_EXPORT}"
        )));
    }
    ctx.state.audit.flush();
    let rows = ctx
        .state
        .kms
        .store()
        .audit_after(req.after_seq.unwrap_or(0), limit as u32)?;
    let next = rows
        .last()
        .map(|r| r.seq)
        .unwrap_or(req.after_seq.unwrap_or(0));
    let records: Vec<Value> = rows.iter().map(crate::audit::export_json).collect();
    out(json!({ "Records": records, "NextSeq": next }))
}

pub(super) fn describe_audit_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let signer = &ctx.state.audit.signer;
    out(json!({
        "PublicKey": spki_pem(&signer.public_key),
        "Fingerprint": signer.fingerprint(),
    }))
}
