//! KMS hosted data key actions (2019-01-18): models and glue to `kms::data_keys`.

use super::params::{
    base64_decode, base64_encode, newest_first, opt_u64, page, parse, required, tag_filters, typed,
    user_created, TagFilterParam,
};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use crate::kms::data_keys::{self, NewDataKey, ORIGINS};
use crate::kms::ORIGIN_EXTERNAL;
use crate::store::{DataKeyQuery, DataKeyRecord, KeyState, Tag};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// The fields of a response built as a JSON object (always one here).
fn obj(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Fields::new(),
    }
}

/// DataKeyMetadata with every always-present field.
pub fn metadata(ctx: &Ctx<'_>, k: &DataKeyRecord) -> Value {
    let cmk_alias = ctx.state.kms.alias_of(&k.region, k.owner_uin, &k.key_id);
    json!({
        "DataKeyId": k.data_key_id,
        "KeyId": k.key_id,
        "KeyName": cmk_alias,
        "DataKeyName": k.name,
        "NumberOfBytes": k.number_of_bytes,
        "CreateTime": k.create_time,
        "Description": k.description,
        "KeyState": k.state.as_str(),
        "CreatorUin": k.creator_uin,
        "Owner": k.owner,
        "DeletionDate": k.deletion_date,
        "Origin": k.origin,
        "HsmClusterId": "",
        "ResourceId": format!("creatorUin/{}/{}", k.creator_uin, k.data_key_id),
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
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ImportRequest {
    data_key_name: String,
    /// Base64 of the data key: wiped when the request is dropped.
    import_key_material: Zeroizing<String>,
    #[serde(deserialize_with = "opt_u64")]
    import_type: Option<u64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
}

pub(super) fn import_data_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ImportRequest = parse(body)?;
    super::kms_actions::no_hsm_cluster(&req.hsm_cluster_id)?;
    let import_type = req
        .import_type
        .ok_or_else(|| Error::MissingParameter("ImportType is required".into()))?;
    let material = Zeroizing::new(base64_decode(
        required("ImportKeyMaterial", &req.import_key_material)?,
        Error::InvalidImportKeyMaterial,
    )?);
    let tags = req.tags.unwrap_or_default();
    super::kms_actions::check_tags(&tags)?;
    let has_tags = !tags.is_empty();
    let k = ctx.state.kms.import_data_key(
        &ctx.caller,
        import_type,
        &material,
        req.key_id.as_deref(),
        NewDataKey {
            name: required("DataKeyName", &req.data_key_name)?,
            description: req.description.as_deref().unwrap_or(""),
            tags,
            origin: ORIGIN_EXTERNAL,
        },
    )?;
    let mut out = obj(json!({ "KeyId": k.key_id, "DataKeyId": k.data_key_id }));
    if has_tags {
        out.insert("TagCode".into(), json!(0));
        out.insert("TagMsg".into(), json!(""));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct IdRequest {
    data_key_id: String,
}

pub(super) fn describe_data_key(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: IdRequest = parse(body)?;
    let k = ctx.state.kms.data_key(&ctx.caller, &req.data_key_id)?;
    Ok(obj(json!({ "DataKeyMetadata": metadata(ctx, &k) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct IdsRequest {
    data_key_ids: Vec<String>,
}

pub(super) fn describe_data_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: IdsRequest = parse(body)?;
    if req.data_key_ids.is_empty() || req.data_key_ids.len() > 100 {
        return Err(Error::InvalidValue(
            "DataKeyIds must hold 1 to 100 entries".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = req.data_key_ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(Error::DuplicatedDataKeyId(dup.clone()));
    }
    let mut metas = vec![];
    for id in &req.data_key_ids {
        match ctx.state.kms.data_key(&ctx.caller, id) {
            Ok(k) => metas.push(metadata(ctx, &k)),
            Err(Error::DataKeyNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(obj(json!({ "DataKeyMetadatas": metas })))
}

fn base_query(ctx: &Ctx<'_>, offset: u64, limit: u64, role: Option<u64>) -> Result<DataKeyQuery> {
    Ok(DataKeyQuery {
        region: ctx.caller.region.clone(),
        owner_uin: ctx.caller.owner_uin,
        states: None,
        origin: None,
        key_id: None,
        number_of_bytes: None,
        search: None,
        tag_filters: vec![],
        user_created: Some(user_created(role)?),
        newest_first: true,
        offset,
        limit,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    role: Option<u64>,
    #[serde(default)]
    hsm_cluster_id: Option<String>,
}

pub(super) fn list_data_keys(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ListRequest = parse(body)?;
    let (offset, limit) = page(req.offset, req.limit)?;
    let q = base_query(ctx, offset, limit, req.role)?;
    if req
        .hsm_cluster_id
        .is_some_and(|c| !c.is_empty() && c != "default")
    {
        return Ok(obj(json!({ "DataKeys": [], "TotalCount": 0 })));
    }
    let (total, keys) = ctx.state.kms.query_data_keys(&ctx.caller, &q)?;
    let ids: Vec<Value> = keys
        .iter()
        .map(|k| json!({ "DataKeyId": k.data_key_id }))
        .collect();
    Ok(obj(json!({ "DataKeys": ids, "TotalCount": total })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListDetailRequest {
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
    hsm_cluster_id: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    data_key_len: Option<u64>,
    #[serde(default)]
    tag_filters: Option<Vec<TagFilterParam>>,
    #[serde(default)]
    #[allow(dead_code)]
    member_accounts: Option<Value>,
}

pub(super) fn list_data_key_detail(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ListDetailRequest = parse(body)?;
    let (offset, limit) = page(req.offset, req.limit)?;
    let mut q = base_query(ctx, offset, limit, req.role)?;
    q.newest_first = newest_first(req.order_type)?;
    q.states = match req.key_state.unwrap_or(0) {
        0 => None,
        1 => Some(vec![KeyState::Enabled]),
        2 => Some(vec![KeyState::Disabled]),
        3 => Some(vec![KeyState::PendingDelete]),
        s => {
            return Err(Error::InvalidValue(format!(
                "KeyState must be 0 to 3, not {s}"
            )))
        }
    };
    q.origin = match req.origin.as_deref().unwrap_or("") {
        "" | "ALL" => None,
        o if ORIGINS.contains(&o) => Some(o.to_string()),
        o => return Err(Error::InvalidValue(format!("invalid Origin `{o}`"))),
    };
    q.key_id = req.key_id.filter(|k| !k.is_empty());
    q.number_of_bytes = match req.data_key_len {
        None | Some(0) => None,
        Some(n) if n <= data_keys::MAX_DATA_KEY_BYTES as u64 => Some(n as u32),
        Some(n) => {
            return Err(Error::InvalidValue(format!(
                "DataKeyLen must be 1 to 1024, not {n}"
            )))
        }
    };
    q.search = req.search_key_alias.filter(|s| !s.is_empty());
    q.tag_filters = tag_filters(req.tag_filters);
    if req
        .hsm_cluster_id
        .is_some_and(|c| !c.is_empty() && c != "default")
    {
        return Ok(obj(json!({ "TotalCount": 0, "DataKeyMetadatas": [] })));
    }
    let (total, keys) = ctx.state.kms.query_data_keys(&ctx.caller, &q)?;
    let metas: Vec<Value> = keys.iter().map(|k| metadata(ctx, k)).collect();
    Ok(obj(
        json!({ "TotalCount": total, "DataKeyMetadatas": metas }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct PlaintextRequest {
    data_key_id: String,
    #[serde(default)]
    encryption_public_key: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct PlaintextResponse {
    plaintext: Zeroizing<String>,
}

pub(super) fn get_data_key_plaintext(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: PlaintextRequest = parse(body)?;

    let pt = ctx
        .state
        .kms
        .data_key_plaintext(&ctx.caller, &req.data_key_id)?;
    let encoded = super::crypto_actions::deliver_plaintext(
        &pt,
        &req.encryption_public_key,
        &req.encryption_algorithm,
    )?;
    typed(PlaintextResponse { plaintext: encoded })
}

pub(super) fn get_data_key_ciphertext_blob(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: IdRequest = parse(body)?;
    let blob = ctx.state.kms.data_key_blob(&ctx.caller, &req.data_key_id)?;
    Ok(obj(json!({ "CiphertextBlob": base64_encode(&blob) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct RenameRequest {
    data_key_id: String,
    data_key_name: String,
}

pub(super) fn update_data_key_name(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: RenameRequest = parse(body)?;
    ctx.state
        .kms
        .rename_data_key(&ctx.caller, &req.data_key_id, &req.data_key_name)?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DescriptionRequest {
    data_key_id: String,
    description: String,
}

pub(super) fn update_data_key_description(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: DescriptionRequest = parse(body)?;
    ctx.state
        .kms
        .describe_data_key_text(&ctx.caller, &req.data_key_id, &req.description)?;
    Ok(Fields::new())
}

pub(super) fn set_enabled(ctx: &Ctx<'_>, body: &[u8], enabled: bool) -> Result<Fields> {
    let req: IdRequest = parse(body)?;
    ctx.state
        .kms
        .set_data_key_enabled(&ctx.caller, &req.data_key_id, enabled)?;
    Ok(Fields::new())
}

pub(super) fn set_enabled_batch(ctx: &Ctx<'_>, body: &[u8], enabled: bool) -> Result<Fields> {
    let req: IdsRequest = parse(body)?;
    ctx.state
        .kms
        .set_data_keys_enabled(&ctx.caller, &req.data_key_ids, enabled)?;
    Ok(Fields::new())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ScheduleRequest {
    data_key_id: String,
    #[serde(deserialize_with = "opt_u64")]
    pending_window_in_days: Option<u64>,
}

pub(super) fn schedule_deletion(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ScheduleRequest = parse(body)?;
    let days = req
        .pending_window_in_days
        .ok_or_else(|| Error::MissingParameter("PendingWindowInDays is required".into()))?;
    let date = ctx
        .state
        .kms
        .schedule_data_key_deletion(&ctx.caller, &req.data_key_id, days)?;
    Ok(obj(
        json!({ "DeletionDate": date, "DataKeyId": req.data_key_id }),
    ))
}

pub(super) fn cancel_deletion(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: IdRequest = parse(body)?;
    ctx.state
        .kms
        .cancel_data_key_deletion(&ctx.caller, &req.data_key_id)?;
    Ok(obj(json!({ "DataKeyId": req.data_key_id })))
}
