//! Secrets Manager (2019-09-23) actions: request/response models as the reference names them,
//! and the glue to `ssm::Ssm`.

use super::params::{
    base64_decode, base64_encode, newest_first, opt_u64, parse, required, tag_filters, typed,
    TagFilterParam,
};
use super::{Ctx, Fields};
use crate::error::{Error, Result};
use crate::ssm::{NewSecret, SecretValue, DEFAULT_VERSION_ID, MAX_VALUE_BYTES};
use crate::store::{SecretQuery, SecretRecord, SecretStatus, Tag};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Reads that take microseconds run on the worker thread (see `api::handle`).
/// The fields of a response built as a JSON object (always one here).
fn obj(v: Value) -> Fields {
    match v {
        Value::Object(m) => m,
        _ => Fields::new(),
    }
}

/// Exactly one of SecretString (text as sent) and SecretBinary (base64), at most 32 KiB.
fn value(
    string: Option<Zeroizing<String>>,
    binary: Option<Zeroizing<String>>,
) -> Result<SecretValue> {
    let string = string.filter(|s| !s.is_empty());
    let binary = binary.filter(|s| !s.is_empty());
    let v = match (string, binary) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidValue(
                "give exactly one of SecretString and SecretBinary".into(),
            ))
        }
        (None, None) => {
            return Err(Error::MissingParameter(
                "one of SecretString and SecretBinary is required".into(),
            ))
        }
        (Some(s), None) => SecretValue {
            bytes: Zeroizing::new(s.as_bytes().to_vec()),
            is_binary: false,
        },
        (None, Some(b)) => SecretValue {
            bytes: Zeroizing::new(base64_decode(&b, |m| {
                Error::InvalidValue(format!("SecretBinary is {m}"))
            })?),
            is_binary: true,
        },
    };
    if v.bytes.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidValue(format!(
            "the secret value is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
            v.bytes.len()
        )));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateSecretRequest {
    secret_name: String,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    secret_type: Option<u64>,
    #[serde(default)]
    secret_binary: Option<Zeroizing<String>>,
    #[serde(default)]
    secret_string: Option<Zeroizing<String>>,
    /// SecretType 3: `{"TargetUin": <sub-account uin>}`; otherwise accepted, not stored.
    #[serde(default)]
    additional_config: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default)]
    kms_hsm_cluster_id: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    encrypt_type: Option<u64>,
}

pub(super) fn create_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateSecretRequest = parse(body)?;
    match req.secret_type.unwrap_or(0) {
        0 => {}
        API_KEY => return create_api_key_secret(ctx, req),
        t => {
            return Err(Error::InvalidValue(format!(
                "CreateSecret creates user-defined (SecretType 0) and API-key (3) secrets, \
                 not type {t}"
            )))
        }
    }
    check_protection(req.encrypt_type, req.kms_hsm_cluster_id.as_deref())?;
    let tags = req.tags.unwrap_or_default();
    super::kms_actions::check_tags(&tags)?;
    let has_tags = !tags.is_empty();
    let version_id = req
        .version_id
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_VERSION_ID.into());
    let s = ctx.state.ssm.create(
        &ctx.caller,
        NewSecret {
            secret_type: 0,
            ssh: Default::default(),
            name: req.secret_name,
            version_id: version_id.clone(),
            description: req.description.unwrap_or_default(),
            kms_key_id: req.kms_key_id,
            value: value(req.secret_string, req.secret_binary)?,
            tags,
        },
    )?;
    let mut out = obj(json!({ "SecretName": s.name, "VersionId": version_id }));
    if has_tags {
        out.insert("TagCode".into(), json!(0));
        out.insert("TagMsg".into(), json!(""));
    }
    Ok(out)
}

const API_KEY: u64 = crate::ssm::rotation::api_keys::SECRET_TYPE_API_KEY;

/// CreateSecret with SecretType 3: Keyward issues the sub-account's key and rotates it
/// (docs/rotation.md); the caller gives no value.
fn create_api_key_secret(ctx: &Ctx<'_>, req: CreateSecretRequest) -> Result<Fields> {
    if req.secret_string.is_some_and(|s| !s.is_empty())
        || req.secret_binary.is_some_and(|s| !s.is_empty())
    {
        return Err(Error::InvalidValue(
            "API-key secrets hold a key Keyward issues: give no SecretString or SecretBinary"
                .into(),
        ));
    }
    check_protection(req.encrypt_type, None)?;
    let tags = req.tags.unwrap_or_default();
    super::kms_actions::check_tags(&tags)?;
    let target_uin = crate::ssm::rotation::api_keys::target_uin(req.additional_config.as_deref())?;
    let (s, _) = ctx.state.ssm.create_api_key_secret(
        &ctx.caller,
        crate::ssm::rotation::api_keys::NewApiKeySecret {
            name: req.secret_name,
            description: req.description.unwrap_or_default(),
            kms_key_id: req.kms_key_id,
            tags,
            target_uin,
        },
    )?;
    Ok(obj(
        json!({ "SecretName": s.name, "VersionId": DEFAULT_VERSION_ID }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GetValueRequest {
    secret_name: String,
    version_id: String,
    #[serde(default)]
    encryption_public_key: Option<String>,
    #[serde(default)]
    encryption_algorithm: Option<String>,
}

/// GetSecretValue: both value fields are present and the unused one is empty, unless
/// `[ssm] omit_unused_value_field` leaves the unused one out.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct SecretValueResponse {
    secret_name: String,
    version_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_binary: Option<Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: Option<Zeroizing<String>>,
}

pub(super) fn get_secret_value(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GetValueRequest = parse(body)?;
    super::crypto_actions::no_public_key_rewrap(
        &req.encryption_public_key,
        &req.encryption_algorithm,
    )?;
    // An empty VersionId reads `SSM_Current`: Dapr's Tencent Cloud SSM secret store (Go SDK)
    // sends `"VersionId": ""` unless its caller names a version (docs/dapr.md). An absent
    // VersionId is still refused, as the reference requires the field.
    let version_id = if req.version_id.is_empty() {
        DEFAULT_VERSION_ID.to_string()
    } else {
        req.version_id
    };
    let v = ctx
        .state
        .ssm
        .get_value(&ctx.caller, &req.secret_name, &version_id)?;
    let unused = || {
        let omit = ctx.state.cfg.ssm.omit_unused_value_field;
        (!omit).then(|| Zeroizing::new(String::new()))
    };
    let (string, binary) = if v.is_binary {
        (unused(), Some(Zeroizing::new(base64_encode(&v.bytes))))
    } else {
        let text = String::from_utf8(v.bytes.to_vec())
            .map_err(|_| Error::Internal("stored text value is not UTF-8".into()))?;
        (Some(Zeroizing::new(text)), unused())
    };
    typed(SecretValueResponse {
        secret_name: req.secret_name,
        version_id,
        secret_binary: binary,
        secret_string: string,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct PutValueRequest {
    secret_name: String,
    version_id: String,
    #[serde(default)]
    secret_binary: Option<Zeroizing<String>>,
    #[serde(default)]
    secret_string: Option<Zeroizing<String>>,
}

pub(super) fn put_secret_value(ctx: &Ctx<'_>, body: &[u8], replace: bool) -> Result<Fields> {
    let req: PutValueRequest = parse(body)?;
    let v = value(req.secret_string, req.secret_binary)?;
    ctx.state
        .ssm
        .put_value(&ctx.caller, &req.secret_name, &req.version_id, &v, replace)?;
    Ok(obj(
        json!({ "SecretName": req.secret_name, "VersionId": req.version_id }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DescriptionRequest {
    secret_name: String,
    description: String,
}

pub(super) fn update_description(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: DescriptionRequest = parse(body)?;
    ctx.state
        .ssm
        .update_description(&ctx.caller, &req.secret_name, &req.description)?;
    Ok(obj(json!({ "SecretName": req.secret_name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct NameRequest {
    secret_name: String,
}

pub(super) fn describe_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let s = ctx.state.ssm.secret(&ctx.caller, &req.secret_name)?;
    let p = Rotation::of(ctx, &s)?;
    Ok(obj(json!({
        "SecretName": s.name,
        "Description": s.description,
        "KmsKeyId": s.kms_key_id,
        "CreateUin": s.create_uin,
        "Status": s.status.as_str(),
        "DeleteTime": s.delete_time,
        "CreateTime": s.create_time,
        "SecretType": s.secret_type,
        "ProductName": p.product,
        "ResourceID": p.resource_id,
        "RotationStatus": p.enabled,
        "RotationFrequency": p.frequency,
        "ResourceName": s.ssh_key_name,
        "ProjectID": s.project_id,
        "AssociatedInstanceIDs": [],
        "TargetUin": p.target_uin,
        "AdditionalConfig": "",
        "EncryptType": 0,
        "EncryptSwitching": false,
        "CreateUinString": s.create_uin.to_string(),
        "TargetUinString": p.target_uin.to_string(),
        "NextRotationTime": p.next_text,
    })))
}

/// What DescribeSecret and ListSecrets show of a product secret's rotation (empty for
/// user-defined and SSH key pair secrets).
#[derive(Default)]
struct Rotation {
    product: String,
    resource_id: String,
    enabled: bool,
    frequency: i64,
    next: i64,
    next_text: String,
    begin_text: String,
    target_uin: u64,
}

impl Rotation {
    fn of(ctx: &Ctx<'_>, s: &SecretRecord) -> Result<Rotation> {
        let Some(p) = ctx.state.ssm.product_record(s)? else {
            return Ok(Rotation::default());
        };
        let next = if p.rotation_enabled {
            p.next_rotation
        } else {
            0
        };
        let text = |t: i64| match t {
            0 => String::new(),
            t => crate::ssm::rotation::format_time(t),
        };
        Ok(Rotation {
            target_uin: match p.product.as_str() {
                crate::ssm::rotation::api_keys::PRODUCT_CAM => p.instance_id.parse().unwrap_or(0),
                _ => 0,
            },
            resource_id: p.instance_id,
            product: p.product,
            enabled: p.rotation_enabled,
            frequency: p.frequency_days,
            next,
            next_text: text(next),
            begin_text: text(next),
        })
    }
}

/// SecretMetadata (ListSecrets item) with every always-present field.
fn metadata(s: &SecretRecord, p: &Rotation) -> Value {
    json!({
        "SecretName": s.name,
        "Description": s.description,
        "KmsKeyId": s.kms_key_id,
        "CreateUin": s.create_uin,
        "Status": s.status.as_str(),
        "DeleteTime": s.delete_time,
        "CreateTime": s.create_time,
        "KmsKeyType": s.kms_key_type,
        "RotationStatus": i64::from(p.enabled),
        "NextRotationTime": p.next,
        "SecretType": s.secret_type,
        "ProductName": p.product,
        "ResourceName": s.ssh_key_name,
        "ProjectID": s.project_id,
        "AssociatedInstanceIDs": [],
        "TargetUin": p.target_uin,
        "RotationFrequency": p.frequency,
        "ResourceID": p.resource_id,
        "RotationBeginTime": p.begin_text,
        "EncryptType": 0,
        "EncryptSwitching": false,
        "CreateUinString": s.create_uin.to_string(),
        "TargetUinString": p.target_uin.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ListSecretsRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    offset: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    limit: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    order_type: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    state: Option<u64>,
    #[serde(default)]
    search_secret_name: Option<String>,
    #[serde(default)]
    tag_filters: Option<Vec<TagFilterParam>>,
    #[serde(default, deserialize_with = "opt_u64")]
    secret_type: Option<u64>,
    #[serde(default)]
    product_name: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    encrypt_type: Option<u64>,
    #[serde(default, rename = "InstanceID")]
    instance_id: Option<String>,
}

pub(super) fn list_secrets(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: ListSecretsRequest = parse(body)?;
    let empty = || obj(json!({ "TotalCount": 0, "SecretMetadatas": [] }));
    let status = match req.state.unwrap_or(0) {
        0 => None,
        1 => Some(SecretStatus::Enabled),
        2 => Some(SecretStatus::Disabled),
        3 => Some(SecretStatus::PendingDelete),
        // PendingCreate / CreateFailed exist only for product secrets.
        4 | 5 => return Ok(empty()),
        s => {
            return Err(Error::InvalidValue(format!(
                "State must be 0 to 5, not {s}"
            )))
        }
    };
    let secret_type = req.secret_type.unwrap_or(0);
    if secret_type > 4 {
        return Err(Error::InvalidValue(format!(
            "SecretType must be 0 to 4, not {secret_type}"
        )));
    }
    // Every secret is KMS-encrypted: EncryptType 1 matches nothing.
    if req.encrypt_type.unwrap_or(0) != 0 {
        return Ok(empty());
    }
    let products: Vec<String> = req
        .product_name
        .unwrap_or_default()
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let instance = req.instance_id.filter(|i| !i.is_empty());
    let mut q = SecretQuery {
        region: ctx.caller.region.clone(),
        owner_uin: ctx.caller.owner_uin,
        status,
        search: req.search_secret_name.filter(|s| !s.is_empty()),
        tag_filters: tag_filters(req.tag_filters),
        secret_type,
        newest_first: newest_first(req.order_type)?,
        offset: req.offset.unwrap_or(0),
        limit: match req.limit.unwrap_or(0) {
            0 => 20,
            n => n,
        },
    };
    let by_product = !products.is_empty() || instance.is_some();
    let (offset, limit) = (q.offset as usize, q.limit as usize);
    if by_product {
        // The store does not index products: filter the whole list here, then page.
        (q.offset, q.limit) = (0, ctx.state.cfg.limits.secret_limit.max(1));
    }
    let (total, secrets) = ctx.state.ssm.query(&ctx.caller, &q)?;
    let mut items = Vec::new();
    for s in secrets {
        let p = Rotation::of(ctx, &s)?;
        let wanted = (products.is_empty()
            || products.iter().any(|x| x.eq_ignore_ascii_case(&p.product)))
            && instance.as_ref().is_none_or(|i| *i == p.resource_id);
        if wanted {
            items.push(metadata(&s, &p));
        }
    }
    let (total, metas) = match by_product {
        true => (
            items.len() as u64,
            items.into_iter().skip(offset).take(limit).collect(),
        ),
        false => (total, items),
    };
    Ok(obj(
        json!({ "TotalCount": total, "SecretMetadatas": metas }),
    ))
}

pub(super) fn list_secret_version_ids(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    let versions: Vec<Value> = ctx
        .state
        .ssm
        .versions(&ctx.caller, &req.secret_name)?
        .into_iter()
        .map(|(v, t)| json!({ "VersionId": v, "CreateTime": t }))
        .collect();
    Ok(obj(
        json!({ "SecretName": req.secret_name, "Versions": versions }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct VersionRequest {
    secret_name: String,
    version_id: String,
}

pub(super) fn delete_secret_version(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: VersionRequest = parse(body)?;
    ctx.state
        .ssm
        .delete_version(&ctx.caller, &req.secret_name, &req.version_id)?;
    Ok(obj(
        json!({ "SecretName": req.secret_name, "VersionId": req.version_id }),
    ))
}

pub(super) fn set_enabled(ctx: &Ctx<'_>, body: &[u8], enabled: bool) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    ctx.state
        .ssm
        .set_enabled(&ctx.caller, &req.secret_name, enabled)?;
    Ok(obj(json!({ "SecretName": req.secret_name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct DeleteSecretRequest {
    secret_name: String,
    #[serde(default, deserialize_with = "opt_u64")]
    recovery_window_in_days: Option<u64>,
    #[serde(default, rename = "CleanSSHKey")]
    #[allow(dead_code)]
    clean_ssh_key: Option<bool>,
    #[serde(default, deserialize_with = "opt_u64")]
    delete_mode: Option<u64>,
}

pub(super) fn delete_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: DeleteSecretRequest = parse(body)?;
    let drop_credentials = match req.delete_mode.unwrap_or(0) {
        0 => false,
        1 => true,
        m => {
            return Err(Error::InvalidValue(format!(
                "DeleteMode must be 0 or 1, not {m}"
            )))
        }
    };
    let when = ctx.state.ssm.delete(
        &ctx.caller,
        &req.secret_name,
        req.recovery_window_in_days.unwrap_or(0),
        drop_credentials,
    )?;
    Ok(obj(
        json!({ "SecretName": req.secret_name, "DeleteTime": when }),
    ))
}

pub(super) fn restore_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: NameRequest = parse(body)?;
    ctx.state.ssm.restore(&ctx.caller, &req.secret_name)?;
    Ok(obj(json!({ "SecretName": req.secret_name })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateSshRequest {
    secret_name: String,
    #[serde(deserialize_with = "opt_i64")]
    project_id: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(default, rename = "SSHKeyName")]
    ssh_key_name: Option<String>,
    #[serde(default)]
    kms_hsm_cluster_id: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    encrypt_type: Option<u64>,
}

fn opt_i64<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom("invalid type: expected an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom("invalid type: expected an integer")),
        Some(_) => Err(D::Error::custom("invalid type: expected an integer")),
    }
}

/// Creates an Ed25519 key pair and stores it as an SSH key pair secret (see `ssm::ssh`).
pub(super) fn create_ssh_key_pair_secret(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateSshRequest = parse(body)?;
    let project_id = req
        .project_id
        .ok_or_else(|| Error::MissingParameter("ProjectId is required".into()))?;
    check_protection(req.encrypt_type, req.kms_hsm_cluster_id.as_deref())?;
    let tags = req.tags.unwrap_or_default();
    super::kms_actions::check_tags(&tags)?;
    let s = ctx.state.ssm.create_ssh_key_pair(
        &ctx.caller,
        crate::ssm::ssh::NewSshKeyPair {
            name: req.secret_name,
            description: req.description.unwrap_or_default(),
            kms_key_id: req.kms_key_id,
            key_name: req.ssh_key_name,
            project_id,
            tags,
        },
    )?;
    Ok(obj(json!({
        "SecretName": s.name,
        "SSHKeyID": s.ssh_key_id,
        "SSHKeyName": s.ssh_key_name,
        "TagCode": 0,
        "TagMsg": "",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct GetSshRequest {
    #[serde(default)]
    secret_name: Option<String>,
    #[serde(default, rename = "SSHKeyId")]
    ssh_key_id: Option<String>,
}

#[derive(serde::Serialize)]
struct SshKeyPairResponse {
    #[serde(rename = "SSHKeyID")]
    ssh_key_id: String,
    #[serde(rename = "PublicKey")]
    public_key: String,
    #[serde(rename = "PrivateKey")]
    private_key: Zeroizing<String>,
    #[serde(rename = "ProjectID")]
    project_id: i64,
    #[serde(rename = "SSHKeyDescription")]
    ssh_key_description: String,
    #[serde(rename = "SSHKeyName")]
    ssh_key_name: String,
}

pub(super) fn get_ssh_key_pair_value(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: GetSshRequest = parse(body)?;
    let pair = ctx.state.ssm.ssh_key_pair(
        &ctx.caller,
        req.secret_name.as_deref(),
        req.ssh_key_id.as_deref(),
    )?;
    typed(SshKeyPairResponse {
        ssh_key_id: pair.info.id,
        public_key: pair.public_key,
        private_key: pair.private_key,
        project_id: pair.info.project_id,
        ssh_key_description: String::new(),
        ssh_key_name: pair.info.name,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

pub(super) fn get_service_status(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: Empty = parse(body)?;
    Ok(obj(json!({
        "ServiceEnabled": true,
        "InvalidType": 1,
        // API-key secrets (SecretType 3) are offered (docs/rotation.md).
        "AccessKeyEscrowEnabled": true,
        "ExpireTime": "",
        "SecretLimit": ctx.state.cfg.limits.secret_limit,
        "PayModel": "",
        "RenewFlag": 0,
        "ResourceId": "",
        "TotalCount": ctx.state.ssm.count(&ctx.caller)?,
        "ResourceRegion": 0,
    })))
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
    Ok(obj(json!({ "Regions": regions })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateServiceRequest {
    pay_mode: String,
    client_token: String,
}

/// The service is always on here; activation succeeds idempotently (same token, same order).
pub(super) fn create_service(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: CreateServiceRequest = parse(body)?;
    if required("PayMode", &req.pay_mode)? != "PostPay" {
        return Err(Error::InvalidValue("PayMode must be PostPay".into()));
    }
    let token = required("ClientToken", &req.client_token)?;
    if token.len() > 64 || !token.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
        return Err(Error::InvalidValue(
            "ClientToken must be 1 to 64 visible ASCII characters without spaces".into(),
        ));
    }
    let order = crate::api::tc3::sha256_hex(format!("{}/{token}", ctx.caller.owner_uin).as_bytes());
    Ok(obj(json!({
        "ResourceId": format!("ssm_{}", ctx.caller.owner_uin),
        "OrderId": format!("keyward-{}", &order[..20]),
    })))
}

/// `EncryptType` and `KmsHsmClusterId` of the secret-creating actions: every secret here is
/// protected by a KMS key, and there are no dedicated HSM clusters.
pub(super) fn check_protection(encrypt_type: Option<u64>, hsm_cluster: Option<&str>) -> Result<()> {
    if encrypt_type.unwrap_or(0) != 0 {
        return Err(Error::Unsupported(
            "EncryptType 1 (software key) is not offered: every secret is protected by a KMS key"
                .into(),
        ));
    }
    if hsm_cluster.is_some_and(|c| !c.is_empty()) {
        return Err(Error::InvalidValue(
            "KmsHsmClusterId: this appliance has no dedicated HSM clusters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssm;

    #[test]
    fn value_limits() {
        let z = |s: String| Some(Zeroizing::new(s));
        assert!(value(z("x".repeat(MAX_VALUE_BYTES)), None).is_ok());
        assert!(value(z("x".repeat(MAX_VALUE_BYTES + 1)), None).is_err());
        assert!(value(z("a".into()), z("YQ==".into())).is_err());
        assert!(matches!(value(None, None), Err(Error::MissingParameter(_))));
        let b = value(None, z("AAEC/w==".into())).unwrap();
        assert!(b.is_binary);
        assert_eq!(b.bytes.as_slice(), &[0, 1, 2, 255]);
        assert!(ssm::check_version_id("v1.2_x-y").is_ok());
        assert!(ssm::check_version_id(".v").is_err());
        assert!(ssm::check_name(&"n".repeat(128)).is_ok());
        assert!(ssm::check_name(&"n".repeat(129)).is_err());
    }
}
