//! KMS pages: the key list (search, filters, paging, batch enable/disable with a
//! confirmation), creating a key, and a key's details with its lifecycle forms.

use super::form::Params;
use super::layout::{csrf, pager, query, select};
use super::{num, text, when, Console, ConsoleState, Fail};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/keys", get(list))
        .route("/keys/batch", post(batch_confirm))
        .route("/keys/batch/run", post(batch_run))
        .route("/keys/new", get(new_form).post(create))
        .route("/keys/{id}", get(details).post(change))
        .route("/keys/{id}/public-key.pem", get(public_key))
}

const PER_PAGE: u64 = 20;

const STATES: [(&str, &str); 6] = [
    ("0", "Any state"),
    ("1", "Enabled"),
    ("2", "Disabled"),
    ("3", "PendingDelete"),
    ("4", "PendingImport"),
    ("5", "Archived"),
];

const USAGES: [(&str, &str); 10] = [
    ("ALL", "Any usage"),
    ("ENCRYPT_DECRYPT", "ENCRYPT_DECRYPT (symmetric)"),
    ("ASYMMETRIC_DECRYPT_RSA_2048", "ASYMMETRIC_DECRYPT_RSA_2048"),
    ("ASYMMETRIC_DECRYPT_SM2", "ASYMMETRIC_DECRYPT_SM2"),
    (
        "ASYMMETRIC_DECRYPT_ML_KEM_768",
        "ASYMMETRIC_DECRYPT_ML_KEM_768",
    ),
    ("ASYMMETRIC_SIGN_VERIFY_SM2", "ASYMMETRIC_SIGN_VERIFY_SM2"),
    ("ASYMMETRIC_SIGN_VERIFY_ECC", "ASYMMETRIC_SIGN_VERIFY_ECC"),
    (
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
        "ASYMMETRIC_SIGN_VERIFY_RSA_2048",
    ),
    (
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
        "ASYMMETRIC_SIGN_VERIFY_ECDSA384",
    ),
    (
        "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65",
        "ASYMMETRIC_SIGN_VERIFY_ML_DSA_65",
    ),
];

struct ListQuery {
    q: String,
    state: String,
    usage: String,
    origin: String,
    tag: String,
    page: u64,
}

impl From<Params> for ListQuery {
    fn from(p: Params) -> Self {
        ListQuery {
            q: p.get("q").into(),
            state: p.get("state").into(),
            usage: p.get("usage").into(),
            origin: p.get("origin").into(),
            tag: p.get("tag").into(),
            page: p.get("page").parse().unwrap_or(1),
        }
    }
}

/// The ListKeyDetail parameters of a list query.
fn list_params(q: &ListQuery, page: u64) -> Value {
    let or_all = |v: &str| {
        if v.is_empty() {
            "ALL".to_string()
        } else {
            v.to_string()
        }
    };
    let mut params = json!({
        "Offset": (page - 1) * PER_PAGE,
        "Limit": PER_PAGE,
        "KeyState": q.state.parse::<u64>().unwrap_or(0),
        "KeyUsage": or_all(&q.usage),
        "SearchKeyAlias": q.q.trim(),
        "Origin": or_all(&q.origin),
    });
    if let Some((k, v)) = q.tag.split_once('=') {
        params["TagFilters"] = json!([{ "TagKey": k.trim(), "TagValue": [v.trim()] }]);
    } else if !q.tag.trim().is_empty() {
        params["TagFilters"] = json!([{ "TagKey": q.tag.trim() }]);
    }
    params
}

async fn list(c: Console, p: Params) -> Response {
    let q = ListQuery::from(p);
    let page = q.page.max(1);
    let usage = if q.usage.is_empty() {
        "ALL"
    } else {
        q.usage.as_str()
    };
    let (total, keys) = match c.kms("ListKeyDetail", list_params(&q, page)).await {
        Ok(f) => (
            f["TotalCount"].as_u64().unwrap_or(0),
            f["KeyMetadatas"].as_array().cloned().unwrap_or_default(),
        ),
        Err(e) => return c.refused("Keys", &e),
    };
    let filters = query(&[
        ("q", &q.q),
        ("state", &q.state),
        ("usage", &q.usage),
        ("origin", &q.origin),
        ("tag", &q.tag),
    ]);
    c.page(
        "Keys",
        html! {
            div.actions { a href="/console/keys/new" { "Create key" } }
            form.card.row method="get" action="/console/keys" role="search" {
                div { label for="q" { "Alias or key ID (partial)" } input #q type="search" name="q" value=(q.q); }
                div { label for="state" { "State" } (select("state", "state", &STATES, &q.state)) }
                div { label for="usage" { "Usage" } (select("usage", "usage", &USAGES, usage)) }
                div { label for="origin" { "Origin" } (select("origin", "origin", &[("", "Any origin"), ("TENCENT_KMS", "KMS"), ("EXTERNAL", "External (BYOK)")], &q.origin)) }
                div { label for="tag" { "Tag (key or key=value)" } input #tag type="text" name="tag" value=(q.tag); }
                div { button type="submit" { "Search" } }
            }
            form method="post" action="/console/keys/batch" {
                (csrf(&c.cur.csrf))
                table {
                    thead { tr {
                        th { input type="checkbox" data-select-all="key" aria-label="Select all" hidden; }
                        th { "Alias" } th { "Key ID" } th { "State" } th { "Usage" } th { "Origin" } th { "Created" }
                    } }
                    tbody {
                        @for k in &keys {
                            @let id = text(k, "KeyId");
                            tr {
                                td { input type="checkbox" name="key" value=(id) aria-label={"Select " (text(k, "Alias"))}; }
                                td { a href={"/console/keys/" (id)} { (text(k, "Alias")) } }
                                td.wrap { code { (id) } }
                                td { span class={"badge " (text(k, "KeyState"))} { (text(k, "KeyState")) } }
                                td { (text(k, "KeyUsage")) }
                                td { (text(k, "Origin")) }
                                td { (when(num(k, "CreateTime"))) }
                            }
                        }
                        @if keys.is_empty() { tr { td colspan="7" .muted { "No keys match." } } }
                    }
                }
                div.actions {
                    button type="submit" name="op" value="enable" { "Enable selected" }
                    button.secondary type="submit" name="op" value="disable" { "Disable selected" }
                }
            }
            (pager("/console/keys", &filters, page, PER_PAGE, total))
        },
    )
}

fn batch_op(op: &str) -> Result<(&'static str, &'static str), Fail> {
    match op {
        "enable" => Ok(("EnableKeys", "Enable")),
        "disable" => Ok(("DisableKeys", "Disable")),
        _ => Err(Fail::BadForm("op must be enable or disable".into())),
    }
}

/// The confirmation page: the chosen keys, by alias and ID, and one button that does it.
async fn batch_confirm(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let (_, verb) = batch_op(f.get("op"))?;
    let ids = f.all("key");
    if ids.is_empty() {
        return Ok(c.redirect(
            "/console/keys",
            Err(crate::error::Error::MissingParameter(
                "choose at least one key".into(),
            )),
        ));
    }
    let keys = match c.kms("DescribeKeys", json!({ "KeyIds": ids })).await {
        Ok(f) => f["KeyMetadatas"].as_array().cloned().unwrap_or_default(),
        Err(e) => return Ok(c.refused("Confirm", &e)),
    };
    Ok(c.page(
        &format!("{verb} {} keys?", keys.len()),
        html! {
            p { "These keys will be " (verb.to_lowercase()) "d:" }
            ul #chosen {
                @for k in &keys { li { strong { (text(k, "Alias")) } " " code { (text(k, "KeyId")) } " (" (text(k, "KeyState")) ")" } }
            }
            form.card method="post" action="/console/keys/batch/run" {
                (csrf(&c.cur.csrf))
                input type="hidden" name="op" value=(f.get("op"));
                @for k in &keys { input type="hidden" name="key" value=(text(k, "KeyId")); }
                button type="submit" { (verb) " these keys" }
                " " a href="/console/keys" { "Cancel" }
            }
        },
    ))
}

async fn batch_run(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let (action, verb) = batch_op(f.get("op"))?;
    let ids = f.all("key");
    let r = c.kms(action, json!({ "KeyIds": ids })).await;
    Ok(c.redirect(
        "/console/keys",
        r.map(|_| format!("{verb}d {} keys.", ids.len())),
    ))
}

/// KeyUsage choices the deployment offers (ListAlgorithms: what this backend runs).
async fn usages(c: &Console) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(f) = c.kms("ListAlgorithms", json!({})).await {
        for group in [
            "SymmetricAlgorithms",
            "AsymmetricAlgorithms",
            "AsymmetricSignVerifyAlgorithms",
        ] {
            for a in f[group].as_array().into_iter().flatten() {
                let u = text(a, "KeyUsage").to_string();
                out.push((
                    u.clone(),
                    format!(
                        "{u} ({}, {})",
                        text(a, "Algorithm"),
                        text(a, "ProtectionLevel")
                    ),
                ));
            }
        }
    }
    if out.is_empty() {
        out.push(("ENCRYPT_DECRYPT".into(), "ENCRYPT_DECRYPT".into()));
    }
    out
}

async fn new_form(c: Console) -> Response {
    let usages = usages(&c).await;
    c.page(
        "Create key",
        html! {
            form.card method="post" action="/console/keys/new" {
                (csrf(&c.cur.csrf))
                label for="alias" { "Alias" }
                input #alias type="text" name="alias" required maxlength="60" autofocus;
                p.muted { "Letters, digits, _ and -; unique in the region." }
                label for="description" { "Description" }
                input #description type="text" name="description" maxlength="1024";
                label for="usage" { "Key usage" }
                select #usage name="usage" {
                    @for (v, l) in &usages { option value=(v) { (l) } }
                }
                label for="origin" { "Key material" }
                (select("origin", "origin", &[("1", "Generated by Keyward (in the HSM)"), ("2", "External: import your own (BYOK)")], "1"))
                label for="tags" { "Tags (one key=value a line)" }
                textarea #tags name="tags" rows="3" {}
                p { button type="submit" { "Create" } " " a href="/console/keys" { "Cancel" } }
            }
        },
    )
}

/// `key=value` lines into the API's Tags.
fn tags(lines: &str) -> Vec<Value> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            json!({ "TagKey": k.trim(), "TagValue": v.trim() })
        })
        .collect()
}

async fn create(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let mut params = json!({
        "Alias": f.get("alias"),
        "Description": f.get("description"),
        "KeyUsage": f.get("usage"),
        "Type": if f.get("origin") == "2" { 2 } else { 1 },
    });
    let t = tags(f.get("tags"));
    if !t.is_empty() {
        params["Tags"] = Value::Array(t);
    }
    match c.kms("CreateKey", params).await {
        Ok(r) => {
            let id = r["KeyId"].as_str().unwrap_or("");
            Ok(c.redirect(
                &format!("/console/keys/{id}"),
                Ok(format!("Key {id} created.")),
            ))
        }
        Err(e) => Ok(c.refused("Create key", &e)),
    }
}

fn field_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A one-button form posting `op` to the key's page.
fn op_button(csrf_token: &str, id: &str, op: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action={"/console/keys/" (id)} {
            (csrf(csrf_token))
            input type="hidden" name="op" value=(op);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// Every DescribeKey field, times as dates.
fn fields(meta: &Value) -> Markup {
    html! {
        dl.fields #key-fields {
            @for (k, v) in meta.as_object().into_iter().flatten() {
                dt { (k) }
                dd data-field=(k) {
                    @if k.ends_with("Time") || k == "DeletionDate" || k == "ValidTo" {
                        @if v.as_i64().unwrap_or(0) > 0 { (when(v.as_i64().unwrap_or(0))) } @else { "—" }
                    } @else { (field_value(v)) }
                }
            }
        }
    }
}

/// State buttons, alias and description.
fn edit_section(t: &str, id: &str, meta: &Value) -> Markup {
    let op = |o: &str, label: &str, class: &str| op_button(t, id, o, label, class);
    html! {
        h2 { "State" }
        div.actions {
            @match text(meta, "KeyState") {
                "Enabled" => { (op("disable", "Disable", "secondary")) (op("archive", "Archive", "secondary")) },
                "Disabled" => { (op("enable", "Enable", "")) },
                "Archived" => { (op("unarchive", "Cancel archive", "")) },
                "PendingDelete" => { (op("cancel-deletion", "Cancel deletion", "")) },
                _ => {},
            }
        }
        h2 { "Alias and description" }
        form.card method="post" action={"/console/keys/" (id)} {
            (csrf(t))
            input type="hidden" name="op" value="alias";
            label for="new-alias" { "Alias" }
            div.row { input #new-alias type="text" name="alias" value=(text(meta, "Alias")) required; button type="submit" { "Save alias" } }
        }
        form.card method="post" action={"/console/keys/" (id)} {
            (csrf(t))
            input type="hidden" name="op" value="description";
            label for="new-description" { "Description" }
            div.row { input #new-description type="text" name="description" value=(text(meta, "Description")); button type="submit" { "Save description" } }
        }
    }
}

/// Automatic rotation (DescribeKey carries KeyRotationEnabled, RotateDays, NextRotateTime).
fn rotation_section(t: &str, id: &str, r: &Value) -> Markup {
    let days = match num(r, "RotateDays") {
        d if d > 0 => d,
        _ => 365,
    };
    html! {
        h2 { "Rotation" }
        form.card method="post" action={"/console/keys/" (id)} {
            (csrf(t))
            p #rotation-status {
                "Automatic rotation is " strong { @if r["KeyRotationEnabled"].as_bool() == Some(true) { "on" } @else { "off" } }
                @if num(r, "RotateDays") > 0 { ", every " (num(r, "RotateDays")) " days" }
                @if num(r, "NextRotateTime") > 0 { "; next " (when(num(r, "NextRotateTime"))) }
                "."
            }
            div.row {
                div { label for="rotate-days" { "Period (days, 7-365)" }
                      input #rotate-days type="number" name="days" min="7" max="365" value=(days); }
                button type="submit" name="op" value="rotation-on" { "Turn rotation on" }
                button.secondary type="submit" name="op" value="rotation-off" { "Turn rotation off" }
                button.secondary type="submit" name="op" value="rotate" { "Rotate now" }
            }
        }
    }
}

/// Cloud resource bindings and deletion.
fn binding_and_deletion(t: &str, id: &str, meta: &Value) -> Markup {
    html! {
        h2 { "Cloud resource bindings" }
        form.card method="post" action={"/console/keys/" (id)} {
            (csrf(t))
            p.muted { "A key bound to a cloud resource cannot be scheduled for deletion until it is unbound." }
            div.row {
                div { label for="product-id" { "Product" } input #product-id type="text" name="product" required; }
                div { label for="resource-id" { "Resource ID" } input #resource-id type="text" name="resource" required; }
                button type="submit" name="op" value="bind" { "Bind" }
                button.secondary type="submit" name="op" value="unbind" { "Unbind" }
            }
        }
        h2 { "Deletion" }
        @if text(meta, "KeyState") == "PendingDelete" {
            p { "Scheduled for deletion on " (when(num(meta, "DeletionDate"))) ". "
                (op_button(t, id, "cancel-deletion", "Cancel deletion", "")) }
        } @else {
            form.card method="post" action={"/console/keys/" (id)} {
                (csrf(t))
                input type="hidden" name="op" value="schedule-deletion";
                p.muted { "A key must be disabled first. It is deleted after the waiting period unless the deletion is cancelled." }
                div.row {
                    div { label for="pending-days" { "Waiting period (days, 7-30)" }
                          input #pending-days type="number" name="days" min="7" max="30" value="7"; }
                    button.danger type="submit" { "Schedule deletion" }
                }
            }
        }
    }
}

async fn details(c: Console, Path(id): Path<String>) -> Response {
    let meta = match c.kms("DescribeKey", json!({ "KeyId": id })).await {
        Ok(f) => f["KeyMetadata"].clone(),
        Err(e) => return c.refused("Key", &e),
    };
    let symmetric = text(&meta, "KeyUsage") == "ENCRYPT_DECRYPT";
    let external = text(&meta, "Origin") == "EXTERNAL";
    let t = c.cur.csrf.as_str();
    c.page(
        &format!("Key {}", text(&meta, "Alias")),
        html! {
            div.actions {
                a href="/console/keys" { "‹ All keys" }
                a href={"/console/keys/" (id) "/tools"} { "Online tools" }
                @if !symmetric { a href={"/console/keys/" (id) "/public-key.pem"} download { "Download public key" } }
                @if external { a href={"/console/keys/" (id) "/import"} { "Import key material" } }
            }
            (fields(&meta))
            (edit_section(t, &id, &meta))
            @if symmetric && !external { (rotation_section(t, &id, &meta)) }
            (binding_and_deletion(t, &id, &meta))
        },
    )
}

async fn change(c: Console, Path(id): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let days = |d: &str| {
        f.get("days")
            .trim()
            .parse::<u64>()
            .map_err(|_| Fail::BadForm(format!("{d} must be a number of days")))
    };
    let (action, params, done) = match f.get("op") {
        "enable" => ("EnableKey", json!({ "KeyId": id }), "Key enabled."),
        "disable" => ("DisableKey", json!({ "KeyId": id }), "Key disabled."),
        "archive" => ("ArchiveKey", json!({ "KeyId": id }), "Key archived."),
        "unarchive" => (
            "CancelKeyArchive",
            json!({ "KeyId": id }),
            "Archive cancelled.",
        ),
        "alias" => (
            "UpdateAlias",
            json!({ "KeyId": id, "Alias": f.get("alias") }),
            "Alias saved.",
        ),
        "description" => (
            "UpdateKeyDescription",
            json!({ "KeyId": id, "Description": f.get("description") }),
            "Description saved.",
        ),
        "rotation-on" => (
            "EnableKeyRotation",
            json!({ "KeyId": id, "RotateDays": days("the period")? }),
            "Automatic rotation turned on.",
        ),
        "rotation-off" => (
            "DisableKeyRotation",
            json!({ "KeyId": id }),
            "Automatic rotation turned off.",
        ),
        "rotate" => (
            "RotateKey",
            json!({ "KeyId": id }),
            "Key rotated: a new version encrypts from now on.",
        ),
        "schedule-deletion" => (
            "ScheduleKeyDeletion",
            json!({ "KeyId": id, "PendingWindowInDays": days("the waiting period")? }),
            "Deletion scheduled.",
        ),
        "bind" | "unbind" => (
            if f.get("op") == "bind" {
                "BindCloudResource"
            } else {
                "UnbindCloudResource"
            },
            json!({ "KeyId": id, "ProductId": f.get("product").trim(), "ResourceId": f.get("resource").trim() }),
            if f.get("op") == "bind" {
                "Bound to the resource."
            } else {
                "Unbound from the resource."
            },
        ),
        "cancel-deletion" => (
            "CancelKeyDeletion",
            json!({ "KeyId": id }),
            "Deletion cancelled; the key is disabled.",
        ),
        other => return Err(Fail::BadForm(format!("unknown operation `{other}`"))),
    };
    let r = c.kms(action, params).await;
    Ok(c.redirect(&format!("/console/keys/{id}"), r.map(|_| done.to_string())))
}

async fn public_key(c: Console, Path(id): Path<String>) -> Response {
    match c.kms("GetPublicKey", json!({ "KeyId": id })).await {
        Ok(f) => (
            [
                (header::CONTENT_TYPE, "application/x-pem-file".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{}.pem\"", safe_name(&id)),
                ),
            ],
            text(&Value::Object(f), "PublicKeyPem").to_string(),
        )
            .into_response(),
        Err(e) => c.refused("Public key", &e),
    }
}

/// A file name made only of safe characters.
pub fn safe_name(s: &str) -> String {
    let n: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(80)
        .collect();
    if n.is_empty() {
        "download".into()
    } else {
        n
    }
}
