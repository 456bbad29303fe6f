//! Access management: users (sub-accounts), API keys, groups and CAM-syntax policies, adapted
//! from requests to `cam::Cam`, which holds the rules. Part of Keyward's extension API (service `keyward`,
//! version `2026-11-01`); action and field names follow Tencent CAM's where CAM has them.
//! Policies grant these as `keyward:<Action>` on resource `*` (docs/access-control.md).

use super::params::{opt_u64, out, parse, required};
use super::{Ctx, Fields};
use crate::cam::PolicyChange;
use crate::error::{Error, Result};
use crate::store::{AccountRecord, Target};
use serde::Deserialize;
use serde_json::{json, Value};

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
    let use_api = match req.use_api.unwrap_or(0) {
        0 => false,
        1 => true,
        n => {
            return Err(Error::InvalidValue(format!(
                "UseApi must be 0 or 1, not {n}"
            )))
        }
    };
    let (rec, cred) = ctx
        .state
        .cam
        .add_user(&ctx.caller, &req.name, &req.remark, use_api)?;
    let mut v = json!({ "Uin": rec.uin, "Name": rec.name, "Remark": rec.remark });
    if let Some(cred) = cred {
        v["SecretId"] = json!(cred.secret_id);
        v["SecretKey"] = json!(cred.secret_key.as_str());
    }
    out(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NameRequest {
    name: String,
}

pub(super) fn get_user(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let user = ctx
        .state
        .cam
        .get_user(&ctx.caller, required("Name", &req.name)?)?;
    out(user_json(&user))
}

pub(super) fn list_users(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let users: Vec<Value> = ctx.state.cam.users()?.iter().map(user_json).collect();
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
    let name = required("Name", &req.name)?;
    ctx.state
        .cam
        .update_user(&ctx.caller, name, req.remark.as_deref())?;
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
    ctx.state
        .cam
        .delete_user(&ctx.caller, required("Name", &req.name)?)?;
    out(json!({}))
}

// ---------------------------------------------------------------- API keys

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct TargetRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    target_uin: Option<u64>,
}

pub(super) fn create_access_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: TargetRequest = parse(body)?;
    let cred = ctx
        .state
        .cam
        .create_access_key(&ctx.caller, req.target_uin)?;
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
    let id = required("AccessKeyId", &req.access_key_id)?;
    ctx.state
        .cam
        .set_access_key_enabled(&ctx.caller, id, req.target_uin, enabled)?;
    out(json!({}))
}

pub(super) fn delete_access_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: AccessKeyRequest = parse(body)?;
    let id = required("AccessKeyId", &req.access_key_id)?;
    ctx.state
        .cam
        .delete_access_key(&ctx.caller, id, req.target_uin)?;
    out(json!({}))
}

pub(super) fn list_access_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: TargetRequest = parse(body)?;
    let keys: Vec<Value> = ctx
        .state
        .cam
        .access_keys(&ctx.caller, req.target_uin)?
        .iter()
        .map(|k| {
            json!({
                "AccessKeyId": k.key.secret_id,
                "Status": if k.key.enabled { "Active" } else { "Inactive" },
                "CreateTime": k.key.create_time,
                "LastUsedTime": k.last_used,
            })
        })
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
    let g = ctx
        .state
        .cam
        .create_group(&ctx.caller, &req.group_name, &req.remark)?;
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
    ctx.state
        .cam
        .delete_group(&ctx.caller, group_id(req.group_id)?)?;
    out(json!({}))
}

pub(super) fn list_groups(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let groups: Vec<Value> = ctx
        .state
        .cam
        .groups()?
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
    let mut pairs = Vec::new();
    for m in &req.info {
        let uin = m
            .uin
            .or(m.uid)
            .ok_or_else(|| Error::MissingParameter("Info[].Uin is required".into()))?;
        pairs.push((group_id(m.group_id)?, uin));
    }
    ctx.state.cam.set_memberships(&ctx.caller, &pairs, add)?;
    out(json!({}))
}

pub(super) fn list_users_for_group(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GroupIdRequest = parse(body)?;
    let users: Vec<Value> = ctx
        .state
        .cam
        .group_members(&ctx.caller, group_id(req.group_id)?)?
        .iter()
        .map(|a| json!({ "Uin": a.uin, "Uid": a.uin, "Name": a.name }))
        .collect();
    out(json!({ "TotalNum": users.len(), "UserInfo": users }))
}

// ---------------------------------------------------------------- policies

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
    let p = ctx.state.cam.create_policy(
        &ctx.caller,
        &req.policy_name,
        &req.description,
        &req.policy_document,
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
    let change = PolicyChange {
        description: req.description.as_deref(),
        document: req.policy_document.as_deref(),
    };
    ctx.state.cam.update_policy(&ctx.caller, id, change)?;
    out(json!({ "PolicyId": id }))
}

pub(super) fn delete_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        policy_id: Vec<Value>,
    }
    let req: Req = parse(body)?;
    let ids = req
        .policy_id
        .iter()
        .map(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| Error::InvalidValue(format!("PolicyId `{v}` is not a number")))
        })
        .collect::<Result<Vec<u64>>>()?;
    ctx.state.cam.delete_policies(&ctx.caller, &ids)?;
    out(json!({}))
}

pub(super) fn get_policy(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Req {
        #[serde(default, deserialize_with = "opt_u64")]
        policy_id: Option<u64>,
    }
    let req: Req = parse(body)?;
    let p = ctx
        .state
        .cam
        .policy(&ctx.caller, policy_id(req.policy_id)?)?;
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
        .cam
        .policies()?
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
    let id = policy_id(req.policy_id)?;
    let target = if to_user {
        let (field, uin) = match attach {
            true => ("AttachUin", req.attach_uin),
            false => ("DetachUin", req.detach_uin),
        };
        Target::User(uin.ok_or_else(|| Error::MissingParameter(format!("{field} is required")))?)
    } else {
        let (field, gid) = match attach {
            true => ("AttachGroupId", req.attach_group_id),
            false => ("DetachGroupId", req.detach_group_id),
        };
        Target::Group(gid.ok_or_else(|| Error::MissingParameter(format!("{field} is required")))?)
    };
    ctx.state
        .cam
        .set_attachment(&ctx.caller, id, target, attach)?;
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
        Target::User(uin)
    } else {
        let gid = req
            .target_group_id
            .ok_or_else(|| Error::MissingParameter("TargetGroupId is required".into()))?;
        Target::Group(gid)
    };
    let list: Vec<Value> = ctx
        .state
        .cam
        .attached(&ctx.caller, target)?
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
