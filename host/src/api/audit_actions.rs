//! The audit log through Tencent CloudAudit's API (version 2019-03-19): `LookUpEvents`, so
//! `tccli cloudaudit LookUpEvents --endpoint …` and the SDK's CloudauditClient work.

use super::params::{opt_u64, out, parse};
use super::{Ctx, Fields};
use crate::audit::record::ChainedRecord;
use crate::error::{Error, Result};
use crate::store::{AuditAttribute, AuditQuery};
use serde::Deserialize;
use serde_json::{json, Value};

/// CloudAudit's limits: 50 events per page, a search window of at most 7 days.
const MAX_RESULTS: u64 = 50;
const DEFAULT_RESULTS: u64 = 10;
const MAX_WINDOW_SECS: u64 = 7 * 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct LookupAttribute {
    attribute_key: String,
    #[serde(default)]
    attribute_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct LookUpEventsRequest {
    #[serde(default, deserialize_with = "opt_u64")]
    start_time: Option<u64>,
    #[serde(default, deserialize_with = "opt_u64")]
    end_time: Option<u64>,
    #[serde(default)]
    lookup_attributes: Vec<LookupAttribute>,
    #[serde(default)]
    next_token: Option<String>,
    #[serde(default, deserialize_with = "opt_u64")]
    max_results: Option<u64>,
    /// `standard` or `quick`: both search the same local log.
    #[serde(default)]
    mode: Option<String>,
}

fn attribute(a: &LookupAttribute) -> Result<(String, AuditAttribute)> {
    let v = a.attribute_value.clone().unwrap_or_default();
    let attr = match a.attribute_key.as_str() {
        "RequestId" => AuditAttribute::RequestId(v),
        "EventName" => AuditAttribute::EventName(v),
        "EventId" => AuditAttribute::EventId(v),
        "Username" => AuditAttribute::Username(v),
        "ResourceType" => AuditAttribute::ResourceType(v),
        "ResourceName" | "ResourceId" => AuditAttribute::ResourceName(v),
        "AccessKeyId" => AuditAttribute::AccessKeyId(v),
        "ApiErrorCode" => AuditAttribute::ResultCode(v),
        "SourceIPAddress" => AuditAttribute::SourceIp(v),
        "ReadOnly" => AuditAttribute::ReadOnly(matches!(v.as_str(), "true" | "1")),
        "ActionType" => match v.as_str() {
            "Read" | "read" => AuditAttribute::ReadOnly(true),
            "Write" | "write" => AuditAttribute::ReadOnly(false),
            other => {
                return Err(Error::AuditAttributeKey(format!(
                    "ActionType must be Read or Write, not `{other}`"
                )))
            }
        },
        "PrincipalId" => AuditAttribute::Uin(v.trim().parse().map_err(|_| {
            Error::AuditAttributeKey(format!("PrincipalId must be a uin, not `{v}`"))
        })?),
        other => {
            return Err(Error::AuditAttributeKey(format!(
                "AttributeKey `{other}` is not supported; use RequestId, EventName, EventId, \
                 Username, ResourceType, ResourceName, ResourceId, AccessKeyId, ApiErrorCode, \
                 SourceIPAddress, ReadOnly, ActionType or PrincipalId"
            )))
        }
    };
    let key = match &attr {
        AuditAttribute::ReadOnly(_) => "ReadOnly".to_string(),
        _ => a.attribute_key.clone(),
    };
    Ok((key, attr))
}

pub(super) fn look_up_events(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let req: LookUpEventsRequest = parse(body)?;
    let (Some(start), Some(end)) = (req.start_time, req.end_time) else {
        return Err(Error::AuditTimeMissing);
    };
    if start > end {
        return Err(Error::AuditTimeOrder);
    }
    if end - start > MAX_WINDOW_SECS {
        return Err(Error::AuditOverTime);
    }
    let limit = req.max_results.unwrap_or(DEFAULT_RESULTS);
    if !(1..=MAX_RESULTS).contains(&limit) {
        return Err(Error::AuditMaxResults);
    }
    if let Some(m) = req.mode.as_deref() {
        if !matches!(m, "" | "standard" | "quick") {
            return Err(Error::InvalidValue(format!(
                "Mode must be standard or quick, not `{m}`"
            )));
        }
    }
    let before_seq = match req.next_token.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            Error::InvalidValue(format!("NextToken `{t}` was not issued by this service"))
        })?),
    };
    // Repeated keys are alternatives, different keys must all hold.
    let mut groups: Vec<(String, Vec<AuditAttribute>)> = Vec::new();
    for a in &req.lookup_attributes {
        let (key, attr) = attribute(a)?;
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(attr),
            None => groups.push((key, vec![attr])),
        }
    }
    let q = AuditQuery {
        start_time: start.min(i64::MAX as u64) as i64,
        end_time: end.min(i64::MAX as u64) as i64,
        attributes: groups.into_iter().map(|(_, g)| g).collect(),
        before_seq,
        limit: (limit + 1) as u32,
    };
    let (mut rows, total) = ctx.state.audit.look_up(&q)?;
    let list_over = rows.len() as u64 <= limit;
    rows.truncate(limit as usize);
    let next = if list_over {
        String::new()
    } else {
        rows.last().map(|r| r.seq.to_string()).unwrap_or_default()
    };
    let events: Vec<Value> = rows.iter().map(event).collect();
    Ok(json!({
        "Events": events,
        "ListOver": list_over,
        "NextToken": next,
        "TotalCount": total,
    })
    .as_object()
    .cloned()
    .unwrap_or_default())
}

/// The short name CloudAudit shows: the last path segment of each CAM resource name.
fn short_names(resources: &[String]) -> String {
    resources
        .iter()
        .map(|r| r.rsplit('/').next().unwrap_or(r))
        .collect::<Vec<_>>()
        .join(",")
}

fn event(c: &ChainedRecord) -> Value {
    let r = &c.record;
    let error_code = if r.result_code == "Success" { 0 } else { 1 };
    let source = if r.service.is_empty() {
        String::new()
    } else {
        format!("{}.tencentcloudapi.com", r.service)
    };
    let detail = json!({
        "userIdentity": {
            "principalId": r.uin.to_string(),
            "accountId": r.owner_uin.to_string(),
            "secretId": r.secret_id,
            "type": if r.uin != 0 && r.uin == r.owner_uin { "root" } else { "subAccount" },
            "userName": r.username,
        },
        "eventVersion": 2,
        "apiVersion": "3.0",
        "eventType": "ApiCall",
        "actionType": if r.read_only { "Read" } else { "Write" },
        "httpMethod": "POST",
        "errorCode": error_code,
        "apiErrorCode": r.result_code,
        "requestID": r.request_id,
        "eventID": r.event_id,
        "eventTime": r.event_time,
        "eventRegion": r.region,
        "eventSource": source,
        "eventName": r.action,
        "userAgent": r.user_agent,
        "sourceIPAddress": r.source_ip,
        "resourceType": r.resource_type,
        "resources": r.resources,
        "keyId": r.key_id,
        "keyVersion": r.key_version,
        "sequence": c.seq,
        "hash": hex::encode(c.hash),
    });
    json!({
        "EventId": r.event_id,
        "Username": r.username,
        "EventTime": r.event_time.to_string(),
        "CloudAuditEvent": detail.to_string(),
        "ResourceTypeCn": r.resource_type,
        "ErrorCode": error_code,
        "EventName": r.action,
        "SecretId": r.secret_id,
        "EventSource": source,
        "RequestID": r.request_id,
        "ResourceRegion": r.region,
        "AccountID": r.owner_uin,
        "SourceIPAddress": r.source_ip,
        "EventNameCn": r.action,
        "Resources": {
            "ResourceType": r.resource_type,
            "ResourceName": short_names(&r.resources),
        },
        "EventRegion": r.region,
        "Location": "",
    })
}

// ---------------------------------------------------------------- Keyward's own audit actions
// (service `keyward`): verification, export and the checkpoint key.

pub(super) fn verify_audit_log(ctx: &Ctx<'_>, body: &[u8]) -> Result<Fields> {
    let _: serde_json::Map<String, Value> = parse(body)?;
    let report = ctx.state.audit.verify_log()?;
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
    let rows = ctx
        .state
        .audit
        .export(req.after_seq.unwrap_or(0), limit as u32)?;
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
        "PublicKey": crate::pubkey::spki_pem(&signer.public_key),
        "Fingerprint": signer.fingerprint(),
    }))
}
