//! The audit page: LookUpEvents by time range, account, action and resource, a page of 50 at
//! a time (older pages by NextToken), and an export of the whole selection as JSON.

use super::form::Params;
use super::layout::query;
use super::{text, Console, ConsoleState};
use crate::api::actions::Product;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::html;
use serde_json::{json, Value};
use std::sync::Arc;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/audit", get(page))
        .route("/audit/export", get(export))
}

const PAGE: u64 = 50;
/// At most this many events in one export (CloudAudit's window is 7 days anyway).
const EXPORT_MAX: usize = 20_000;

/// `YYYY-MM-DDTHH:MM` (an `<input type=datetime-local>`), read as UTC.
fn parse_time(s: &str) -> Option<i64> {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    PrimitiveDateTime::parse(s.get(..16)?, fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

fn format_time(secs: i64) -> String {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

/// The search: its form values and the LookUpEvents parameters they make.
struct Search {
    from: String,
    to: String,
    user: String,
    action: String,
    resource: String,
}

impl Search {
    fn from_params(p: &Params) -> Self {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let or = |v: &str, d: i64| {
            if v.is_empty() {
                format_time(d)
            } else {
                v.to_string()
            }
        };
        Search {
            from: or(p.get("from"), now - 86_400),
            // The end of the current minute, so events of this minute are in.
            to: or(p.get("to"), now + 60),
            user: p.get("user").trim().into(),
            action: p.get("action").trim().into(),
            resource: p.get("resource").trim().into(),
        }
    }

    fn params(&self, next: &str) -> Value {
        let mut attrs = Vec::new();
        for (key, v) in [
            ("Username", &self.user),
            ("EventName", &self.action),
            ("ResourceName", &self.resource),
        ] {
            if !v.is_empty() {
                attrs.push(json!({ "AttributeKey": key, "AttributeValue": v }));
            }
        }
        let mut p = json!({
            "StartTime": parse_time(&self.from).unwrap_or(0),
            "EndTime": parse_time(&self.to).unwrap_or(0),
            "LookupAttributes": attrs,
            "MaxResults": PAGE,
        });
        if !next.is_empty() {
            p["NextToken"] = json!(next);
        }
        p
    }

    fn query(&self) -> String {
        query(&[
            ("from", &self.from),
            ("to", &self.to),
            ("user", &self.user),
            ("action", &self.action),
            ("resource", &self.resource),
        ])
    }
}

fn detail(e: &Value) -> Value {
    serde_json::from_str(text(e, "CloudAuditEvent")).unwrap_or(Value::Null)
}

async fn page(c: Console, p: Params) -> Response {
    let s = Search::from_params(&p);
    let r = c
        .call(Product::CloudAudit, "LookUpEvents", s.params(p.get("next")))
        .await;
    let (events, next) = match &r {
        Ok(f) => (
            f.get("Events")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            f.get("NextToken")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        Err(_) => (Vec::new(), String::new()),
    };
    c.page(
        "Audit",
        html! {
            form.card method="get" action="/console/audit" role="search" {
                div.row {
                    div { label for="from" { "From (UTC)" } input #from type="datetime-local" name="from" value=(s.from); }
                    div { label for="to" { "To (UTC)" } input #to type="datetime-local" name="to" value=(s.to); }
                    div { label for="user" { "Account (user name)" } input #user type="text" name="user" value=(s.user); }
                    div { label for="action" { "Action" } input #action type="text" name="action" value=(s.action) placeholder="e.g. CreateKey"; }
                    div { label for="resource" { "Resource" } input #resource type="text" name="resource" value=(s.resource) placeholder="key ID or secret name"; }
                    button type="submit" { "Search" }
                }
            }
            @if let Err(e) = &r { (super::layout::refusal(crate::api::envelope::error_code(e), &crate::api::envelope::error_message(e))) }
            div.actions { a #export href={"/console/audit/export?" (s.query())} download { "Export as JSON" } }
            table #events {
                thead { tr { th { "Time" } th { "Account" } th { "Action" } th { "Resource" } th { "Source" } th { "Result" } } }
                tbody {
                    @for e in &events {
                        @let d = detail(e);
                        tr {
                            td { (super::when(text(e, "EventTime").parse().unwrap_or(0))) }
                            td { (text(e, "Username")) }
                            td { (text(e, "EventName")) }
                            td.wrap { (e["Resources"]["ResourceName"].as_str().unwrap_or("")) }
                            td.wrap { (text(e, "SourceIPAddress")) br; span.muted { (text(&d, "userAgent")) } }
                            td { (text(&d, "apiErrorCode")) }
                        }
                    }
                    @if events.is_empty() { tr { td colspan="6" .muted { "No events in this selection." } } }
                }
            }
            nav.pager {
                @if !p.get("next").is_empty() { a href={"/console/audit?" (s.query())} { "« Newest" } }
                @if !next.is_empty() { a rel="next" href={"/console/audit?" (s.query()) "&next=" (next)} { "Older ›" } }
            }
        },
    )
}

async fn export(c: Console, p: Params) -> Response {
    let s = Search::from_params(&p);
    let mut all = Vec::new();
    let mut next = String::new();
    loop {
        let r = match c
            .call(Product::CloudAudit, "LookUpEvents", s.params(&next))
            .await
        {
            Ok(r) => r,
            Err(e) => return c.refused("Audit export", &e),
        };
        all.extend(
            r.get("Events")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
        next = r
            .get("NextToken")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if next.is_empty() || all.len() >= EXPORT_MAX {
            break;
        }
    }
    let events: Vec<Value> = all
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["CloudAuditEvent"] = detail(&e);
            e
        })
        .collect();
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"audit-events.json\"",
            ),
        ],
        serde_json::to_string_pretty(&events).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_read_and_written_as_utc_minutes() {
        let t = super::parse_time("2026-12-04T11:30").unwrap();
        assert_eq!(super::format_time(t), "2026-12-04T11:30");
        assert_eq!(super::parse_time("2026-12-04T11:30:59"), Some(t));
        assert_eq!(super::parse_time("yesterday"), None);
    }
}
