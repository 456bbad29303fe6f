//! Secrets Manager (2019-09-23) product-secret actions: database credentials that Keyward
//! creates and rotates (`ssm::rotation`, docs/rotation.md).

use super::params::{opt_u64, out, parse};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use crate::ssm::rotation::{format_time, target::Grant, NewProductSecret};
use crate::store::Tag;
use serde::Deserialize;
use serde_json::json;

pub(super) fn describe_supported_products(ctx: &Ctx<'_>, _body: &[u8]) -> Result<Fields> {
    let products = ctx.state.ssm.supported_products();
    out(json!({ "Products": products, "TotalCount": products.len() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateProductSecretRequest {
    secret_name: String,
    user_name_prefix: String,
    product_name: String,
    #[serde(rename = "InstanceID")]
    instance_id: String,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    privileges_list: Vec<Grant>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default)]
    rotation_begin_time: Option<String>,
    #[serde(default)]
    enable_rotation: Option<bool>,
    #[serde(default, deserialize_with = "opt_i64")]
    rotation_frequency: Option<i64>,
    #[serde(default)]
    kms_hsm_cluster_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    account_remark: Option<String>,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    encrypt_type: Option<u64>,
}

fn opt_i64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    Ok(opt_u64(d)?.map(|v| v.min(i64::MAX as u64) as i64))
}

pub(super) fn create_product_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateProductSecretRequest = parse(body)?;
    super::ssm_actions::check_protection(req.encrypt_type, req.kms_hsm_cluster_id.as_deref())?;
    if req.account_type.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(Error::InvalidValue(
            "AccountType applies to SQL Server accounts, which Keyward does not rotate".into(),
        ));
    }
    let tags = req.tags.unwrap_or_default();
    super::kms_actions::check_tags(&tags)?;
    let has_tags = !tags.is_empty();
    let (s, flow) = ctx.state.ssm.create_product_secret(
        &ctx.caller,
        NewProductSecret {
            name: req.secret_name,
            description: req.description.unwrap_or_default(),
            kms_key_id: req.kms_key_id,
            tags,
            product: req.product_name,
            instance_id: req.instance_id,
            user_prefix: req.user_name_prefix,
            domains: req.domains,
            grants: req.privileges_list,
            enable_rotation: req.enable_rotation.unwrap_or(false),
            frequency_days: req.rotation_frequency,
            begin_time: req.rotation_begin_time,
        },
    )?;
    let mut fields = out(json!({ "SecretName": s.name, "FlowID": flow }))?;
    if has_tags {
        fields.insert("TagCode".into(), json!(0));
        fields.insert("TagMsg".into(), json!(""));
    }
    Ok(fields)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NameRequest {
    secret_name: String,
}

pub(super) fn rotate_product_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let flow = ctx
        .state
        .ssm
        .rotate_product_secret(&ctx.caller, &req.secret_name)?;
    out(json!({ "FlowID": flow }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UpdateRotationStatusRequest {
    secret_name: String,
    enable_rotation: bool,
    #[serde(default, deserialize_with = "opt_i64")]
    frequency: Option<i64>,
    #[serde(default)]
    rotation_begin_time: Option<String>,
}

pub(super) fn update_rotation_status(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: UpdateRotationStatusRequest = parse(body)?;
    ctx.state.ssm.update_rotation_status(
        &ctx.caller,
        &req.secret_name,
        req.enable_rotation,
        req.frequency,
        req.rotation_begin_time.as_deref(),
    )?;
    out(json!({}))
}

pub(super) fn describe_rotation_detail(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let p = ctx
        .state
        .ssm
        .rotation_detail(&ctx.caller, &req.secret_name)?;
    out(json!({
        "EnableRotation": p.rotation_enabled,
        "Frequency": p.frequency_days,
        "LatestRotateTime": format_time(p.last_rotation),
        "NextRotateBeginTime": if p.rotation_enabled { format_time(p.next_rotation) } else { String::new() },
    }))
}

pub(super) fn describe_rotation_history(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let versions = ctx
        .state
        .ssm
        .rotation_history(&ctx.caller, &req.secret_name)?;
    let ids: Vec<&str> = versions.iter().map(|v| v.version_id.as_str()).collect();
    let accounts: Vec<_> = versions
        .iter()
        .map(|v| {
            json!({
                "AccountName": v.account,
                "Host": v.hosts,
                "Version": v.version_id,
                "RotatedTime": format_time(v.time),
            })
        })
        .collect();
    out(json!({
        "VersionIDs": ids,
        "TotalCount": ids.len(),
        "AccountInfoList": accounts,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct FlowRequest {
    #[serde(rename = "FlowID", deserialize_with = "opt_i64")]
    flow_id: Option<i64>,
}

pub(super) fn describe_async_request_info(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: FlowRequest = parse(body)?;
    let id = req
        .flow_id
        .ok_or_else(|| Error::MissingParameter("FlowID is required".into()))?;
    let f = ctx.state.ssm.flow(&ctx.caller, id)?;
    out(json!({ "TaskStatus": f.status, "Description": f.description }))
}
