//! KMS (2019-01-18) actions: request/response models exactly as the reference names them, and
//! the glue from them to `kms::Kms`.

use super::params::{
    newest_first, opt_u64, out, page, parse, required, tag_filters, user_created, TagFilterParam,
};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use crate::kms::{self, NewKey, ASYMMETRIC_KEY_USAGES, KEY_USAGE_ENCRYPT_DECRYPT};
use crate::store::{KeyQuery, KeyRecord, KeyState, Tag};
use keyward_shared::Algorithm;
use serde::Deserialize;
use serde_json::{json, Value};

/// Multi-account targets are accepted for compatibility; one appliance has no organisation.
type MemberAccount = Option<Value>;

// ---------------------------------------------------------------- key metadata

fn compliance_type(alg: Algorithm) -> i64 {
    match alg {
        Algorithm::Sm4Gcm | Algorithm::Sm2 => 4,
        Algorithm::Aes256Gcm
        | Algorithm::Rsa2048
        | Algorithm::EccP256
        | Algorithm::EccP384
        | Algorithm::MlKem768
        | Algorithm::MlDsa65 => 2,
    }
}

/// KeyMetadata with every always-present field (typed SDKs leave zero values otherwise).
fn key_metadata(ctx: &Ctx<'_>, k: &KeyRecord) -> Value {
    json!({
        "KeyId": k.key_id,
        "Alias": k.alias,
        "CreateTime": k.create_time,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "KeyUsage": k.key_usage,
        "Type": compliance_type(k.algorithm),
        "CreatorUin": k.creator_uin,
        "KeyRotationEnabled": k.rotation_enabled,
        "Owner": k.owner,
        "NextRotateTime": k.next_rotate_time,
        "DeletionDate": k.deletion_date,
        "Origin": k.origin,
        "ValidTo": k.valid_to,
        "ResourceId": format!("creatorUin/{}/{}", k.creator_uin, k.key_id),
        "HsmClusterId": "",
        "RotateDays": k.rotate_days,
        "LastRotateTime": k.last_rotate_time,
        "IsSyncReplica": 0,
        "SourceRegion": "",
        "SyncStatus": 0,
        "SyncMessages": "",
        "SyncStartTime": 0,
        "SyncEndTime": 0,
        "SourceHsmClusterId": "",
        "AccountAppId": 0,
        "AccountUin": 0,
        "AccountName": "",
        "CreatorUinString": k.creator_uin.to_string(),
        // Keyward extensions (unknown fields are tolerated by the SDKs).
        "Algorithm": k.algorithm.api_name(),
        "ProtectionLevel": ctx.state.kms.protection_level(k.algorithm).as_str(),
    })
}

// ---------------------------------------------------------------- create / describe / list

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateKeyRequest {
    alias: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    key_usage: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    r#type: Option<u64>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
}

pub(super) fn check_tags(tags: &[Tag]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 127 || t.value.len() > 255 {
            return Err(Error::InvalidValue(
                "TagKey must be 1-127 characters and TagValue at most 255".into(),
            ));
        }
        if !seen.insert(t.key.as_str()) {
            return Err(Error::TagKeysDuplicated(t.key.clone()));
        }
    }
    Ok(())
}

pub(super) fn no_hsm_cluster(id: &Option<String>) -> Result<()> {
    match id.as_deref() {
        None | Some("") => Ok(()),
        Some(other) => Err(Error::InvalidValue(format!(
            "HsmClusterId `{other}` does not exist: this appliance has no dedicated HSM clusters"
        ))),
    }
}

pub(super) fn create_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateKeyRequest = parse(body)?;
    no_hsm_cluster(&req.hsm_cluster_id)?;
    let tags = req.tags.unwrap_or_default();
    check_tags(&tags)?;
    let has_tags = !tags.is_empty();
    let key = ctx.state.kms.create_key(
        &ctx.caller,
        NewKey {
            alias: req.alias,
            description: req.description.unwrap_or_default(),
            key_usage: req
                .key_usage
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| KEY_USAGE_ENCRYPT_DECRYPT.into()),
            origin_type: req.r#type.unwrap_or(1),
            tags,
        },
    )?;
    let mut fields = out(json!({
        "KeyId": key.key_id,
        "Alias": key.alias,
        "CreateTime": key.create_time,
        "Description": key.description,
        "KeyState": key.state.as_str(),
        "KeyUsage": key.key_usage,
        "HsmClusterId": "",
    }))?;
    if has_tags {
        fields.insert("TagCode".into(), json!(0));
        fields.insert("TagMsg".into(), json!(""));
    }
    Ok(fields)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub(super) struct KeyIdRequest {
    pub(super) key_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

pub(super) fn describe_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    let key = ctx
        .state
        .kms
        .describe_key(&ctx.caller, required("KeyId", &req.key_id)?)?;
    out(json!({ "KeyMetadata": key_metadata(ctx, &key) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct KeyIdsRequest {
    key_ids: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

fn check_key_ids(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::MissingParameter("KeyIds must not be empty".into()));
    }
    if ids.len() > kms::MAX_BATCH {
        return Err(Error::InvalidValue(format!(
            "KeyIds holds at most {} entries",
            kms::MAX_BATCH
        )));
    }
    Ok(())
}

pub(super) fn describe_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdsRequest = parse(body)?;
    check_key_ids(&req.key_ids)?;
    kms::check_batch(&req.key_ids)?;
    let mut metas = Vec::with_capacity(req.key_ids.len());
    for id in &req.key_ids {
        // Unknown ids are left out, as a lookup by filter would.
        match ctx.state.kms.describe_key(&ctx.caller, id) {
            Ok(k) => metas.push(key_metadata(ctx, &k)),
            Err(Error::CmkNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    out(json!({ "KeyMetadatas": metas }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListKeysRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    role: Option<u64>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
}

fn base_query(ctx: &Ctx<'_>, offset: u64, limit: u64) -> KeyQuery {
    KeyQuery {
        region: ctx.caller.region.clone(),
        owner_uin: ctx.caller.owner_uin,
        states: None,
        origin: None,
        key_usage: None,
        search: None,
        tag_filters: vec![],
        user_created: Some(true),
        newest_first: true,
        offset,
        limit,
    }
}

pub(super) fn list_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ListKeysRequest = parse(body)?;
    let (offset, limit) = page(req.offset, req.limit)?;
    let user_created = user_created(req.role)?;
    if req.hsm_cluster_id.is_some_and(|c| !c.is_empty()) {
        return out(json!({ "Keys": [], "TotalCount": 0 }));
    }
    let mut q = base_query(ctx, offset, limit);
    q.user_created = Some(user_created);
    q.states = Some(vec![
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingImport,
    ]);
    let (total, keys) = ctx.state.kms.query_keys(&ctx.caller, &q)?;
    let keys: Vec<Value> = keys.iter().map(|k| json!({ "KeyId": k.key_id })).collect();
    out(json!({ "Keys": keys, "TotalCount": total }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListKeyDetailRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    role: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    order_type: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    key_state: Option<u64>,
    #[serde(default)]
    search_key_alias: Option<String>,
    #[serde(default)]
    origin: Option<String>,
    #[serde(default)]
    key_usage: Option<String>,
    #[serde(default)]
    tag_filters: Option<Vec<TagFilterParam>>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    member_accounts: Option<Value>,
}

pub(super) fn list_key_detail(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ListKeyDetailRequest = parse(body)?;
    let (offset, limit) = page(req.offset, req.limit)?;
    let mut q = base_query(ctx, offset, limit);
    q.newest_first = newest_first(req.order_type)?;
    q.states = match req.key_state.unwrap_or(0) {
        0 => None,
        code => Some(vec![KeyState::from_filter_code(code).ok_or_else(|| {
            Error::InvalidValue(format!("KeyState must be 0 to 5, not {code}"))
        })?]),
    };
    q.origin = match req.origin.as_deref().unwrap_or("") {
        "" | "ALL" => None,
        o @ (kms::ORIGIN_KMS | kms::ORIGIN_EXTERNAL) => Some(o.to_string()),
        o => return Err(Error::InvalidValue(format!("invalid Origin `{o}`"))),
    };
    // An empty KeyUsage means ENCRYPT_DECRYPT only, not every usage (reference §12.8).
    q.key_usage = match req.key_usage.as_deref().unwrap_or("") {
        "" => Some(KEY_USAGE_ENCRYPT_DECRYPT.to_string()),
        "ALL" => None,
        u if u == KEY_USAGE_ENCRYPT_DECRYPT || ASYMMETRIC_KEY_USAGES.contains(&u) => {
            Some(u.to_string())
        }
        u => return Err(Error::InvalidKeyUsage(format!("invalid KeyUsage `{u}`"))),
    };
    q.search = req.search_key_alias.filter(|s| !s.is_empty());
    q.tag_filters = tag_filters(req.tag_filters);
    q.user_created = Some(user_created(req.role)?);
    let cluster = req.hsm_cluster_id.unwrap_or_default();
    if !(cluster.is_empty() || cluster == "default") {
        return out(json!({ "TotalCount": 0, "KeyMetadatas": [] }));
    }
    let (total, keys) = ctx.state.kms.query_keys(&ctx.caller, &q)?;
    let metas: Vec<Value> = keys.iter().map(|k| key_metadata(ctx, k)).collect();
    out(json!({ "TotalCount": total, "KeyMetadatas": metas }))
}

// ---------------------------------------------------------------- edits and state

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UpdateAliasRequest {
    alias: String,
    key_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

pub(super) fn update_alias(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: UpdateAliasRequest = parse(body)?;
    ctx.state
        .kms
        .update_alias(&ctx.caller, required("KeyId", &req.key_id)?, &req.alias)?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UpdateDescriptionRequest {
    description: String,
    key_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

pub(super) fn update_key_description(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: UpdateDescriptionRequest = parse(body)?;
    ctx.state.kms.update_description(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        &req.description,
    )?;
    Ok(Fields::new())
}

pub(super) fn set_enabled(ctx: &Ctx<'_>, body: &[u8], enabled: bool) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    ctx.state
        .kms
        .set_enabled(&ctx.caller, required("KeyId", &req.key_id)?, enabled)?;
    Ok(Fields::new())
}

pub(super) fn set_enabled_batch(ctx: &Ctx<'_>, body: &[u8], enabled: bool) -> Result<Fields> {
    let req: KeyIdsRequest = parse(body)?;
    check_key_ids(&req.key_ids)?;
    ctx.state
        .kms
        .set_enabled_batch(&ctx.caller, &req.key_ids, enabled)?;
    Ok(Fields::new())
}

// ---------------------------------------------------------------- lifecycle

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ScheduleDeletionRequest {
    key_id: String,
    #[serde(deserialize_with = "opt_u64")]
    pending_window_in_days: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

pub(super) fn schedule_key_deletion(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ScheduleDeletionRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    let days = req
        .pending_window_in_days
        .ok_or_else(|| Error::MissingParameter("PendingWindowInDays is required".into()))?;
    let date = ctx.state.kms.schedule_deletion(&ctx.caller, key_id, days)?;
    out(json!({ "DeletionDate": date, "KeyId": key_id }))
}

pub(super) fn cancel_key_deletion(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    ctx.state.kms.cancel_deletion(&ctx.caller, key_id)?;
    out(json!({ "KeyId": key_id }))
}

pub(super) fn archive(ctx: &Ctx<'_>, body: &[u8], archive: bool) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    ctx.state
        .kms
        .archive(&ctx.caller, required("KeyId", &req.key_id)?, archive)?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct EnableRotationRequest {
    key_id: String,
    #[serde(default, deserialize_with = "opt_u64")]
    rotate_days: Option<u64>,
    #[serde(default)]
    #[allow(dead_code)]
    member_account: MemberAccount,
}

pub(super) fn enable_key_rotation(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: EnableRotationRequest = parse(body)?;
    ctx.state.kms.enable_rotation(
        &ctx.caller,
        required("KeyId", &req.key_id)?,
        req.rotate_days,
    )?;
    Ok(Fields::new())
}

pub(super) fn disable_key_rotation(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    ctx.state
        .kms
        .disable_rotation(&ctx.caller, required("KeyId", &req.key_id)?)?;
    Ok(Fields::new())
}

pub(super) fn get_key_rotation_status(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    let k = ctx
        .state
        .kms
        .rotation_status(&ctx.caller, required("KeyId", &req.key_id)?)?;
    out(json!({ "KeyRotationEnabled": k.rotation_enabled }))
}

pub(super) fn rotate_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: KeyIdRequest = parse(body)?;
    let k = ctx
        .state
        .kms
        .rotate_now(&ctx.caller, required("KeyId", &req.key_id)?)?;
    // Rotation completes before the answer; the TaskId names it for callers that poll.
    out(json!({ "TaskId": format!("rotate-{}-v{}", k.key_id, k.current_version) }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct BindRequest {
    key_id: String,
    product_id: String,
    resource_id: String,
}

pub(super) fn bind_cloud_resource(ctx: &Ctx<'_>, body: &[u8], bind: bool) -> Result<Fields> {
    let req: BindRequest = parse(body)?;
    let key_id = required("KeyId", &req.key_id)?;
    let product = required("ProductId", &req.product_id)?;
    let resource = required("ResourceId", &req.resource_id)?;
    if product.len() > 128 || resource.len() > 256 {
        return Err(Error::InvalidValue(
            "ProductId must be at most 128 bytes and ResourceId at most 256".into(),
        ));
    }
    if bind {
        ctx.state.kms.bind(&ctx.caller, key_id, product, resource)?;
    } else {
        ctx.state
            .kms
            .unbind(&ctx.caller, key_id, product, resource)?;
    }
    Ok(Fields::new())
}

// ---------------------------------------------------------------- service queries

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

pub(super) fn get_service_status(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: Empty = parse(body)?;
    let (used, data_keys_used) = ctx.state.kms.usage(&ctx.caller)?;
    out(json!({
        "ServiceEnabled": true,
        "InvalidType": 1,
        "UserLevel": 0,
        "ProExpireTime": 0,
        "ProRenewFlag": 0,
        "ProResourceId": "",
        "ExclusiveVSMEnabled": false,
        "ExclusiveHSMEnabled": false,
        "SubscriptionInfo": "",
        "CmkUserCount": used,
        "CmkLimit": ctx.state.cfg.limits.cmk_limit,
        "IsAllowedDataKeyHosted": true,
        "DataKeyLimit": crate::kms::data_keys::DATA_KEY_LIMIT,
        "FreeDataKeyLimit": crate::kms::data_keys::DATA_KEY_LIMIT,
        "DataKeyUsedCount": data_keys_used,
    }))
}

pub(super) fn get_regions(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: Empty = parse(body)?;
    let regions: Vec<&str> = ctx
        .state
        .cfg
        .regions
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    out(json!({ "Regions": regions }))
}

/// What this region and HSM backend can do: every (KeyUsage, Algorithm) pair a CreateKey here
/// would accept, with where the key would live (`ProtectionLevel`, a Keyward extension).
pub(super) fn list_algorithms(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: Empty = parse(body)?;
    let kms = &ctx.state.kms;
    let alg = kms.region_algorithm(&ctx.caller.region)?;
    let info = |usage: &str, a: Algorithm| {
        json!({
            "KeyUsage": usage,
            "Algorithm": a.api_name(),
            "ProtectionLevel": kms.protection_level(a).as_str(),
        })
    };
    let pick = |pairs: &[(&str, Algorithm)]| -> Vec<Value> {
        pairs
            .iter()
            .filter(|(_, a)| kms.supports(*a))
            .map(|(u, a)| info(u, *a))
            .collect()
    };
    out(json!({
        "SymmetricAlgorithms": [info(KEY_USAGE_ENCRYPT_DECRYPT, alg)],
        "AsymmetricAlgorithms": pick(&[
            ("ASYMMETRIC_DECRYPT_RSA_2048", Algorithm::Rsa2048),
            ("ASYMMETRIC_DECRYPT_SM2", Algorithm::Sm2),
            (kms::pq::USAGE_ML_KEM_768, Algorithm::MlKem768),
        ]),
        "AsymmetricSignVerifyAlgorithms": pick(&[
            ("ASYMMETRIC_SIGN_VERIFY_SM2", Algorithm::Sm2),
            ("ASYMMETRIC_SIGN_VERIFY_ECC", Algorithm::EccP256),
            ("ASYMMETRIC_SIGN_VERIFY_RSA_2048", Algorithm::Rsa2048),
            ("ASYMMETRIC_SIGN_VERIFY_ECDSA384", Algorithm::EccP384),
            (kms::pq::USAGE_ML_DSA_65, Algorithm::MlDsa65),
        ]),
    }))
}
