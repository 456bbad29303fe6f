//! Hosted data keys: list (search, state filter, paging), generate one under a CMK, details
//! with rename, description, enable/disable, and deletion with a waiting period.
//! The plaintext of a data key is never shown here.

use super::form::Params;
use super::layout::{csrf, pager, query, select};
use super::{num, text, when, Console, ConsoleState, Fail};
use crate::error::Error;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/datakeys", get(list))
        .route("/datakeys/new", get(new_form).post(create))
        .route("/datakeys/{id}", get(details).post(change))
}

const PER_PAGE: u64 = 20;

async fn list(c: Console, p: Params) -> Response {
    let page: u64 = p.get("page").parse().unwrap_or(1).max(1);
    let params = json!({
        "Offset": (page - 1) * PER_PAGE,
        "Limit": PER_PAGE,
        "KeyState": p.get("state").parse::<u64>().unwrap_or(0),
        "SearchKeyAlias": p.get("q").trim(),
    });
    let (total, keys) = match c.kms("ListDataKeyDetail", params).await {
        Ok(f) => (
            f["TotalCount"].as_u64().unwrap_or(0),
            f["DataKeyMetadatas"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        ),
        Err(e) => return c.refused("Data keys", &e),
    };
    let filters = query(&[("q", p.get("q")), ("state", p.get("state"))]);
    c.page(
        "Data keys",
        html! {
            div.actions { a href="/console/datakeys/new" { "Generate data key" } }
            form.card.row method="get" action="/console/datakeys" role="search" {
                div { label for="q" { "Name or ID (partial)" } input #q type="search" name="q" value=(p.get("q")); }
                div { label for="state" { "State" }
                      (select("state", "state", &[("0", "Any state"), ("1", "Enabled"), ("2", "Disabled"), ("3", "PendingDelete")], p.get("state"))) }
                div { button type="submit" { "Search" } }
            }
            table {
                thead { tr { th { "Name" } th { "Data key ID" } th { "CMK" } th { "State" } th { "Bytes" } th { "Created" } } }
                tbody {
                    @for k in &keys {
                        tr {
                            td { a href={"/console/datakeys/" (text(k, "DataKeyId"))} { (text(k, "DataKeyName")) } }
                            td.wrap { code { (text(k, "DataKeyId")) } }
                            td { a href={"/console/keys/" (text(k, "KeyId"))} { (text(k, "KeyName")) } }
                            td { span class={"badge " (text(k, "KeyState"))} { (text(k, "KeyState")) } }
                            td { (num(k, "NumberOfBytes")) }
                            td { (when(num(k, "CreateTime"))) }
                        }
                    }
                    @if keys.is_empty() { tr { td colspan="6" .muted { "No data keys match." } } }
                }
            }
            (pager("/console/datakeys", &filters, page, PER_PAGE, total))
        },
    )
}

async fn new_form(c: Console) -> Response {
    let cmks = c
        .kms(
            "ListKeyDetail",
            json!({ "Limit": 200, "KeyState": 1, "KeyUsage": "ENCRYPT_DECRYPT" }),
        )
        .await
        .map(|f| f["KeyMetadatas"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    c.page(
        "Generate data key",
        html! {
            form.card method="post" action="/console/datakeys/new" {
                (csrf(&c.cur.csrf))
                label for="name" { "Name" }
                input #name type="text" name="name" required;
                label for="description" { "Description" }
                input #description type="text" name="description";
                label for="cmk" { "CMK that protects it" }
                select #cmk name="cmk" {
                    @for k in &cmks { option value=(text(k, "KeyId")) { (text(k, "Alias")) " (" (text(k, "KeyId")) ")" } }
                }
                label for="spec" { "Size" }
                (select("spec", "spec", &[("AES_256", "32 bytes (AES_256)"), ("AES_128", "16 bytes (AES_128)")], "AES_256"))
                p { button type="submit" { "Generate" } " " a href="/console/datakeys" { "Cancel" } }
            }
        },
    )
}

async fn create(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let params = json!({
        "KeyId": f.get("cmk"),
        "KeySpec": f.get("spec"),
        "IsHostedByKms": 1,
        "DataKeyName": f.get("name"),
        "Description": f.get("description"),
    });
    Ok(match c.kms("GenerateDataKey", params).await {
        Ok(r) => {
            let id = r
                .get("DataKeyId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            c.redirect(
                &format!("/console/datakeys/{id}"),
                Ok(format!("Data key {id} generated.")),
            )
        }
        Err(e) => c.refused("Generate data key", &e),
    })
}

async fn details(c: Console, Path(id): Path<String>) -> Response {
    let meta = match c.kms("DescribeDataKey", json!({ "DataKeyId": id })).await {
        Ok(f) => f["DataKeyMetadata"].clone(),
        Err(e) => return c.refused("Data key", &e),
    };
    let here = format!("/console/datakeys/{id}");
    let op = |op: &str, label: &str, class: &str| -> Markup {
        html! {
            form.inline method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value=(op);
                button class=(class) type="submit" { (label) }
            }
        }
    };
    let edit = |op: &str, field: &str, label: &str, value: &str| -> Markup {
        html! {
            form.card method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value=(op);
                label for={"new-" (field)} { (label) }
                div.row { input id={"new-" (field)} type="text" name=(field) value=(value); button type="submit" { "Save " (field) } }
            }
        }
    };
    let state = text(&meta, "KeyState");
    c.page(
        &format!("Data key {}", text(&meta, "DataKeyName")),
        html! {
            div.actions { a href="/console/datakeys" { "‹ All data keys" } }
            dl.fields #datakey-fields {
                @for (k, v) in meta.as_object().into_iter().flatten() {
                    dt { (k) }
                    dd data-field=(k) {
                        @if k.ends_with("Time") || k == "DeletionDate" {
                            @if v.as_i64().unwrap_or(0) > 0 { (when(v.as_i64().unwrap_or(0))) } @else { "—" }
                        } @else if let Some(s) = v.as_str() { (s) } @else { (v.to_string()) }
                    }
                }
            }
            div.actions {
                @match state {
                    "Enabled" => { (op("disable", "Disable", "secondary")) },
                    "Disabled" => { (op("enable", "Enable", "")) },
                    "PendingDelete" => { (op("cancel-deletion", "Cancel deletion", "")) },
                    _ => {},
                }
            }
            (edit("rename", "name", "Name", text(&meta, "DataKeyName")))
            (edit("description", "description", "Description", text(&meta, "Description")))
            @if state != "PendingDelete" {
                form.card method="post" action=(here) {
                    (csrf(&c.cur.csrf)) input type="hidden" name="op" value="schedule-deletion";
                    p.muted { "A data key must be disabled first." }
                    div.row {
                        div { label for="pending-days" { "Waiting period (days, 7-30)" }
                              input #pending-days type="number" name="days" min="7" max="30" value="7"; }
                        button.danger type="submit" { "Schedule deletion" }
                    }
                }
            }
        },
    )
}

async fn change(c: Console, Path(id): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let (action, params, done) = match f.get("op") {
        "enable" => (
            "EnableDataKey",
            json!({ "DataKeyId": id }),
            "Data key enabled.",
        ),
        "disable" => (
            "DisableDataKey",
            json!({ "DataKeyId": id }),
            "Data key disabled.",
        ),
        "rename" => (
            "UpdateDataKeyName",
            json!({ "DataKeyId": id, "DataKeyName": f.get("name") }),
            "Name saved.",
        ),
        "description" => (
            "UpdateDataKeyDescription",
            json!({ "DataKeyId": id, "Description": f.get("description") }),
            "Description saved.",
        ),
        "schedule-deletion" => {
            let days: u64 =
                f.get("days").trim().parse().map_err(|_| {
                    Fail::BadForm("the waiting period must be a number of days".into())
                })?;
            (
                "ScheduleDataKeyDeletion",
                json!({ "DataKeyId": id, "PendingWindowInDays": days }),
                "Deletion scheduled.",
            )
        }
        "cancel-deletion" => (
            "CancelDataKeyDeletion",
            json!({ "DataKeyId": id }),
            "Deletion cancelled.",
        ),
        other => return Err(Fail::BadForm(format!("unknown operation `{other}`"))),
    };
    let r: Result<String, Error> = c.kms(action, params).await.map(|_| done.to_string());
    Ok(c.redirect(&format!("/console/datakeys/{id}"), r))
}
