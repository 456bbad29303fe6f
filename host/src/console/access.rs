//! Access pages: users (sub-accounts), their API keys (a new SecretKey is shown once, on the
//! page that answers its creation, and kept nowhere), policies with a JSON editor that is
//! checked before saving, and attaching or detaching policies. The actions are the extension
//! API's (`keyward:*`), so a sub-account sees and does here only what its policies allow.

use super::layout::{csrf, refusal};
use super::{num, text, when, Console, ConsoleState, Fail};
use crate::api::envelope::{error_code, error_message};
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
        .route("/access", get(overview).post(add_user))
        .route("/access/users/{name}", get(user).post(change_user))
        .route("/access/policies/new", get(new_policy).post(create_policy))
        .route("/access/policies/{id}", get(policy).post(change_policy))
        .route("/access/groups", axum::routing::post(super::groups::create))
        .route(
            "/access/groups/{id}",
            get(super::groups::page).post(super::groups::change),
        )
}

pub(super) fn list<'a>(v: &'a Result<Value, Error>, field: &str) -> &'a [Value] {
    match v {
        Ok(v) => v[field].as_array().map(Vec::as_slice).unwrap_or(&[]),
        Err(_) => &[],
    }
}

/// A listing the caller may not see shows the refusal in its place.
pub(super) fn refused_part(v: &Result<Value, Error>) -> Markup {
    match v {
        Err(e) => refusal(error_code(e), &error_message(e)),
        Ok(_) => html! {},
    }
}

fn user_href(name: &str) -> String {
    format!(
        "/console/access/users/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

async fn overview(c: Console) -> Response {
    let users = c.admin("ListUsers", json!({})).await;
    let policies = c.admin("ListPolicies", json!({})).await;
    let groups = c.admin("ListGroups", json!({})).await;
    c.page(
        "Access",
        html! {
            h2 { "Users" }
            (refused_part(&users))
            table #users {
                thead { tr { th { "Name" } th { "Uin" } th { "Remark" } th { "Created" } } }
                tbody {
                    @for u in list(&users, "Data") {
                        tr {
                            td { a href=(user_href(text(u, "Name"))) { (text(u, "Name")) } }
                            td { (num(u, "Uin")) }
                            td { (text(u, "Remark")) }
                            td { (when(num(u, "CreateTime"))) }
                        }
                    }
                }
            }
            form.card method="post" action="/console/access" {
                (csrf(&c.cur.csrf))
                h2 { "Add a user" }
                div.row {
                    div { label for="user-name" { "Name" } input #user-name type="text" name="name" required; }
                    div { label for="user-remark" { "Remark" } input #user-remark type="text" name="remark"; }
                    div { label { input type="checkbox" name="api_key" value="1" checked; " with an API key" } }
                    button type="submit" { "Add user" }
                }
            }
            (super::groups::section(&c, &groups))
            h2 { "Policies" }
            div.actions { a href="/console/access/policies/new" { "Create policy" } }
            (refused_part(&policies))
            table #policies {
                thead { tr { th { "ID" } th { "Name" } th { "Description" } th { "Created" } } }
                tbody {
                    @for p in list(&policies, "List") {
                        tr {
                            td { (num(p, "PolicyId")) }
                            td { a href={"/console/access/policies/" (num(p, "PolicyId"))} { (text(p, "PolicyName")) } }
                            td { (text(p, "Description")) }
                            td { (when(num(p, "AddTime"))) }
                        }
                    }
                }
            }
        },
    )
}

/// The page that shows a new SecretKey: once, here, and nowhere else.
fn secret_once(
    c: &Console,
    title: &str,
    secret_id: &str,
    secret_key: &str,
    back: &str,
) -> Response {
    c.page(
        title,
        html! {
            section.card #new-key {
                p { strong { "Copy the SecretKey now: it is shown only on this page." } }
                dl.fields {
                    dt { "SecretId" } dd #new-secret-id { code { (secret_id) } }
                    dt { "SecretKey" } dd #new-secret-key { code { (secret_key) } }
                }
            }
            p { a href=(back) { "Done" } }
        },
    )
}

async fn add_user(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let name = f.get("name").trim().to_string();
    let with_key = f.get("api_key") == "1";
    let params = json!({ "Name": name, "Remark": f.get("remark"), "UseApi": u8::from(with_key) });
    match c.admin("AddUser", params).await {
        Ok(r) if with_key => Ok(secret_once(
            &c,
            &format!("User {name} added"),
            text(&r, "SecretId"),
            text(&r, "SecretKey"),
            &user_href(&name),
        )),
        Ok(_) => Ok(c.redirect(&user_href(&name), Ok(format!("User {name} added.")))),
        Err(e) => Ok(c.redirect("/console/access", Err(e))),
    }
}

async fn user(c: Console, Path(name): Path<String>) -> Response {
    let u = match c.admin("GetUser", json!({ "Name": name })).await {
        Ok(u) => u,
        Err(e) => return c.refused("User", &e),
    };
    let uin = num(&u, "Uin");
    let keys = c.admin("ListAccessKeys", json!({ "TargetUin": uin })).await;
    let attached = c
        .admin("ListAttachedUserPolicies", json!({ "TargetUin": uin }))
        .await;
    let policies = c.admin("ListPolicies", json!({})).await;
    let here = user_href(&name);
    let op = |op: &str, label: &str, class: &str, hidden: &[(&str, String)]| -> Markup {
        html! {
            form.inline method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value=(op);
                @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
                button class=(class) type="submit" { (label) }
            }
        }
    };
    c.page(
        &format!("User {name}"),
        html! {
            div.actions { a href="/console/access" { "‹ Access" } }
            dl.fields {
                dt { "Uin" } dd { (uin) }
                dt { "Remark" } dd { (text(&u, "Remark")) }
                dt { "Created" } dd { (when(num(&u, "CreateTime"))) }
            }
            h2 { "API keys" }
            (refused_part(&keys))
            table #api-keys {
                thead { tr { th { "SecretId" } th { "Status" } th { "Created" } th { "Last used" } th {} } }
                tbody {
                    @for k in list(&keys, "AccessKeys") {
                        @let id = text(k, "AccessKeyId").to_string();
                        tr {
                            td { code { (id) } }
                            td { (text(k, "Status")) }
                            td { (when(num(k, "CreateTime"))) }
                            td { (when(num(k, "LastUsedTime"))) }
                            td {
                                @if text(k, "Status") == "Active" { (op("key-disable", "Disable", "secondary", &[("key", id.clone())])) }
                                @else { (op("key-enable", "Enable", "secondary", &[("key", id.clone())])) }
                                " " (op("key-delete", "Delete", "danger", &[("key", id.clone())]))
                            }
                        }
                    }
                }
            }
            div.actions { (op("key-create", "Create API key", "", &[])) }
            h2 { "Policies attached" }
            (refused_part(&attached))
            table #attached {
                thead { tr { th { "Policy" } th { "Description" } th {} } }
                tbody {
                    @for p in list(&attached, "List") {
                        tr {
                            td { a href={"/console/access/policies/" (num(p, "PolicyId"))} { (text(p, "PolicyName")) } }
                            td { (text(p, "Description")) }
                            td { (op("detach", "Detach", "secondary", &[("policy", num(p, "PolicyId").to_string())])) }
                        }
                    }
                }
            }
            form.card method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value="attach";
                div.row {
                    div { label for="attach-policy" { "Attach a policy" }
                        select #attach-policy name="policy" {
                            @for p in list(&policies, "List") { option value=(num(p, "PolicyId")) { (text(p, "PolicyName")) } }
                        }
                    }
                    button type="submit" { "Attach" }
                }
            }
            h2 { "Delete" }
            (op("delete-user", "Delete this user", "danger", &[]))
        },
    )
}

async fn change_user(c: Console, Path(name): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let here = user_href(&name);
    let uin = match c.admin("GetUser", json!({ "Name": name })).await {
        Ok(u) => num(&u, "Uin"),
        Err(e) => return Ok(c.refused("User", &e)),
    };
    let policy = || {
        f.get("policy")
            .parse::<u64>()
            .map_err(|_| Fail::BadForm("choose a policy".into()))
    };
    let key = f.get("key");
    let r: Result<String, Error> = match f.get("op") {
        "key-create" => {
            return Ok(
                match c
                    .admin("CreateAccessKey", json!({ "TargetUin": uin }))
                    .await
                {
                    Ok(r) => {
                        let k = &r["AccessKey"];
                        secret_once(
                            &c,
                            &format!("New API key for {name}"),
                            text(k, "AccessKeyId"),
                            text(k, "SecretAccessKey"),
                            &here,
                        )
                    }
                    Err(e) => c.redirect(&here, Err(e)),
                },
            )
        }
        "key-enable" | "key-disable" => {
            let status = if f.get("op") == "key-enable" {
                "Active"
            } else {
                "Inactive"
            };
            c.admin(
                "UpdateAccessKey",
                json!({ "AccessKeyId": key, "Status": status, "TargetUin": uin }),
            )
            .await
            .map(|_| format!("API key {key} is now {status}."))
        }
        "key-delete" => c
            .admin(
                "DeleteAccessKey",
                json!({ "AccessKeyId": key, "TargetUin": uin }),
            )
            .await
            .map(|_| format!("API key {key} deleted.")),
        "attach" => c
            .admin(
                "AttachUserPolicy",
                json!({ "PolicyId": policy()?, "AttachUin": uin }),
            )
            .await
            .map(|_| "Policy attached.".into()),
        "detach" => c
            .admin(
                "DetachUserPolicy",
                json!({ "PolicyId": policy()?, "DetachUin": uin }),
            )
            .await
            .map(|_| "Policy detached.".into()),
        "delete-user" => {
            return Ok(match c.admin("DeleteUser", json!({ "Name": name })).await {
                Ok(_) => c.redirect("/console/access", Ok(format!("User {name} deleted."))),
                Err(e) => c.redirect(&here, Err(e)),
            })
        }
        other => return Err(Fail::BadForm(format!("unknown operation `{other}`"))),
    };
    Ok(c.redirect(&here, r))
}

/// Checks a policy document's JSON before it is sent; the API then checks its grammar.
/// Returns the reason with the line and column of the first error.
fn check_document(doc: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(doc) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err("a policy document is a JSON object".into()),
        Err(e) => Err(format!("the document is not valid JSON: {e}")),
    }
}

const EXAMPLE: &str = r#"{
  "version": "2.0",
  "statement": [
    {
      "effect": "allow",
      "action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:ListKeyDetail"],
      "resource": ["*"]
    }
  ]
}"#;

fn policy_form(
    c: &Console,
    action: &str,
    name: Option<&str>,
    description: &str,
    document: &str,
    error: Option<&str>,
) -> Markup {
    html! {
        @if let Some(e) = error { div.error role="alert" { strong.code { "InvalidParameter.PolicyDocumentError" } ": " (e) } }
        form.card method="post" action=(action) {
            (csrf(&c.cur.csrf))
            input type="hidden" name="op" value="save";
            @if let Some(n) = name {
                label for="policy-name" { "Name" }
                input #policy-name type="text" name="name" value=(n) required;
            }
            label for="policy-description" { "Description" }
            input #policy-description type="text" name="description" value=(description);
            label for="policy-document" { "Policy document (CAM syntax, JSON)" }
            textarea #policy-document name="document" rows="14" spellcheck="false" { (document) }
            p { button type="submit" { "Save policy" } }
        }
    }
}

async fn new_policy(c: Console) -> Response {
    let form = policy_form(
        &c,
        "/console/access/policies/new",
        Some(""),
        "",
        EXAMPLE,
        None,
    );
    c.page("Create policy", form)
}

async fn create_policy(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let (name, description, document) = (f.get("name"), f.get("description"), f.get("document"));
    let again = |error: &str| {
        let form = policy_form(
            &c,
            "/console/access/policies/new",
            Some(name),
            description,
            document,
            Some(error),
        );
        c.page("Create policy", form)
    };
    if let Err(why) = check_document(document) {
        return Ok(again(&why));
    }
    let params =
        json!({ "PolicyName": name, "Description": description, "PolicyDocument": document });
    match c.admin("CreatePolicy", params).await {
        Ok(r) => Ok(c.redirect(
            &format!("/console/access/policies/{}", num(&r, "PolicyId")),
            Ok(format!("Policy {name} created.")),
        )),
        Err(e) => Ok(again(&format!("{}: {}", error_code(&e), error_message(&e)))),
    }
}

async fn policy(c: Console, Path(id): Path<u64>) -> Response {
    let p = match c.admin("GetPolicy", json!({ "PolicyId": id })).await {
        Ok(p) => p,
        Err(e) => return c.refused("Policy", &e),
    };
    let action = format!("/console/access/policies/{id}");
    c.page(
        &format!("Policy {}", text(&p, "PolicyName")),
        html! {
            div.actions { a href="/console/access" { "‹ Access" } }
            p.muted { "Created " (when(num(&p, "AddTime"))) ", updated " (when(num(&p, "UpdateTime"))) "." }
            (policy_form(&c, &action, None, text(&p, "Description"), text(&p, "PolicyDocument"), None))
            form.card method="post" action=(action) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value="delete";
                button.danger type="submit" { "Delete policy" }
            }
        },
    )
}

async fn change_policy(c: Console, Path(id): Path<u64>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let here = format!("/console/access/policies/{id}");
    if f.get("op") == "delete" {
        let r = c.admin("DeletePolicy", json!({ "PolicyId": [id] })).await;
        return Ok(match r {
            Ok(_) => c.redirect("/console/access", Ok("Policy deleted.".into())),
            Err(e) => c.redirect(&here, Err(e)),
        });
    }
    let (description, document) = (f.get("description"), f.get("document"));
    let again = |error: &str| {
        c.page(
            "Policy",
            policy_form(&c, &here, None, description, document, Some(error)),
        )
    };
    if let Err(why) = check_document(document) {
        return Ok(again(&why));
    }
    let params = json!({ "PolicyId": id, "Description": description, "PolicyDocument": document });
    match c.admin("UpdatePolicy", params).await {
        Ok(_) => Ok(c.redirect(&here, Ok("Policy saved.".into()))),
        Err(e) => Ok(again(&format!("{}: {}", error_code(&e), error_message(&e)))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_documents_are_checked_as_json_objects() {
        assert!(super::check_document(super::EXAMPLE).is_ok());
        let e = super::check_document("{\"version\": \"2.0\",}").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(super::check_document("[]").is_err());
    }
}
