//! Secrets Manager pages: list (search, state filter, paging), create (text, a key/value
//! editor that stores JSON, or base64 binary), details with versions, reveal on request,
//! new versions, enable/disable, deletion with a recovery window, and restore.
//!
//! A value reaches the page only as the answer to the reveal form (a POST with the CSRF
//! token): no page that lists or describes secrets carries a value.

use super::form::Params;
use super::layout::{csrf, pager, query, select};
use super::{num, text, when, Console, ConsoleState, Fail};
use crate::error::Error;
use axum::body::Bytes;
use axum::extract::{Multipart, Path};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use maud::{html, Markup};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

pub fn routes() -> Router<Arc<ConsoleState>> {
    Router::new()
        .route("/secrets", get(list))
        .route("/secrets/new", get(new_form).post(create))
        .route("/secrets/{name}", get(details).post(change))
        .route("/secrets/{name}/reveal", post(reveal))
        .route("/secrets/{name}/versions", post(put_version))
        .route("/secrets/new-ssh", get(new_ssh_form).post(create_ssh))
        .route("/secrets/{name}/ssh-private-key", post(ssh_private_key))
}

const PER_PAGE: u64 = 20;

struct ListQuery {
    q: String,
    state: String,
    page: u64,
}

fn href(name: &str) -> String {
    format!(
        "/console/secrets/{}",
        percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
    )
}

async fn list(c: Console, p: Params) -> Response {
    let q = ListQuery {
        q: p.get("q").into(),
        state: p.get("state").into(),
        page: p.get("page").parse().unwrap_or(1),
    };
    let page = q.page.max(1);
    let params = json!({
        "Offset": (page - 1) * PER_PAGE,
        "Limit": PER_PAGE,
        "State": q.state.parse::<u64>().unwrap_or(0),
        "SearchSecretName": q.q.trim(),
    });
    let (total, secrets) = match c.ssm("ListSecrets", params).await {
        Ok(f) => (
            f["TotalCount"].as_u64().unwrap_or(0),
            f["SecretMetadatas"].as_array().cloned().unwrap_or_default(),
        ),
        Err(e) => return c.refused("Secrets", &e),
    };
    let filters = query(&[("q", &q.q), ("state", &q.state)]);
    c.page(
        "Secrets",
        html! {
            div.actions {
                a href="/console/secrets/new" { "Create secret" }
                a href="/console/secrets/new-ssh" { "Create SSH key pair secret" }
            }
            form.card.row method="get" action="/console/secrets" role="search" {
                div { label for="q" { "Name (partial)" } input #q type="search" name="q" value=(q.q); }
                div { label for="state" { "State" }
                      (select("state", "state", &[("0", "Any state"), ("1", "Enabled"), ("2", "Disabled"), ("3", "PendingDelete")], &q.state)) }
                div { button type="submit" { "Search" } }
            }
            table {
                thead { tr { th { "Name" } th { "Description" } th { "Status" } th { "Type" } th { "KMS key" } th { "Created" } } }
                tbody {
                    @for s in &secrets {
                        tr {
                            td { a href=(href(text(s, "SecretName"))) { (text(s, "SecretName")) } }
                            td { (text(s, "Description")) }
                            td { span class={"badge " (text(s, "Status"))} { (text(s, "Status")) } }
                            td { @if num(s, "SecretType") == 2 { "SSH key pair" } @else { "Custom" } }
                            td.wrap { code { (text(s, "KmsKeyId")) } }
                            td { (when(num(s, "CreateTime"))) }
                        }
                    }
                    @if secrets.is_empty() { tr { td colspan="6" .muted { "No secrets match." } } }
                }
            }
            (pager("/console/secrets", &filters, page, PER_PAGE, total))
        },
    )
}

/// The value fields: text, a key/value editor (stored as a JSON object), or base64 binary.
fn value_fields() -> Markup {
    html! {
        fieldset.card {
            legend { "Value" }
            label for="kind" { "Kind" }
            (select("kind", "kind", &[("text", "Text"), ("kv", "Key/value pairs (stored as JSON)"), ("binary", "Binary (a file, or base64 below)")], "text"))
            label for="value" { "Text, or base64 of a binary value" }
            textarea #value name="value" rows="4" {}
            label for="file" { "Binary value from a file (at most 32 KiB)" }
            input #file type="file" name="file";
            label { "Key/value pairs" }
            div #kv-rows {
                @for i in 0..3 {
                    div.kv-row {
                        input type="text" name="kv_key" aria-label={"Key " (i + 1)} placeholder="key";
                        input type="text" name="kv_value" aria-label={"Value " (i + 1)} placeholder="value";
                    }
                }
            }
            button.secondary type="button" data-add-row="kv-rows" hidden { "Add pair" }
        }
    }
}

/// The API's SecretString or SecretBinary from the value fields (and the uploaded file).
fn value_params(
    f: &super::form::Form,
    file: Option<&[u8]>,
) -> Result<(&'static str, Zeroizing<String>), Fail> {
    match f.get("kind") {
        "kv" => {
            let mut obj = Map::new();
            for (k, v) in f.all("kv_key").into_iter().zip(f.all("kv_value")) {
                if k.trim().is_empty() {
                    continue;
                }
                obj.insert(k.trim().to_string(), Value::String(v.to_string()));
            }
            if obj.is_empty() {
                return Err(Fail::BadForm("give at least one key/value pair".into()));
            }
            Ok((
                "SecretString",
                Zeroizing::new(Value::Object(obj).to_string()),
            ))
        }
        "binary" => {
            if let Some(bytes) = file {
                return Ok(("SecretBinary", Zeroizing::new(B64.encode(bytes))));
            }
            let b = f.get("value").split_whitespace().collect::<String>();
            B64.decode(&b).map_err(|_| {
                Fail::BadForm("choose a file, or give the binary value in base64".into())
            })?;
            Ok(("SecretBinary", Zeroizing::new(b)))
        }
        _ => Ok(("SecretString", Zeroizing::new(f.get("value").to_string()))),
    }
}

/// The CMKs a secret may be protected by (enabled symmetric keys the caller may list).
async fn cmk_choice(c: &Console) -> Markup {
    let keys = c
        .kms(
            "ListKeyDetail",
            json!({ "Limit": 200, "KeyState": 1, "KeyUsage": "ENCRYPT_DECRYPT" }),
        )
        .await
        .map(|f| f["KeyMetadatas"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    html! {
        label for="kms-key" { "KMS key that protects it" }
        select #kms-key name="kms_key" {
            option value="" { "The region's service-managed key" }
            @for k in &keys { option value=(text(k, "KeyId")) { (text(k, "Alias")) " (" (text(k, "KeyId")) ")" } }
        }
    }
}

async fn new_form(c: Console) -> Response {
    let cmks = cmk_choice(&c).await;
    c.page(
        "Create secret",
        html! {
            p { a href="/console/secrets/new-ssh" { "Create an SSH key pair secret instead" } }
            form.card method="post" action="/console/secrets/new" enctype="multipart/form-data" {
                (csrf(&c.cur.csrf))
                label for="name" { "Name" }
                input #name type="text" name="name" required maxlength="128";
                label for="description" { "Description" }
                input #description type="text" name="description" maxlength="2048";
                (cmks)
                label for="version" { "First version ID" }
                input #version type="text" name="version" value="v1" required;
                (value_fields())
                p { button type="submit" { "Create" } " " a href="/console/secrets" { "Cancel" } }
            }
        },
    )
}

async fn create(c: Console, mp: Multipart) -> Result<Response, Fail> {
    let (f, file) = c.upload(mp).await?;
    let (field, value) = value_params(&f, file.as_deref().map(Vec::as_slice))?;
    let name = f.get("name").trim().to_string();
    let mut params = json!({
        "SecretName": name,
        "VersionId": f.get("version"),
        "Description": f.get("description"),
    });
    params[field] = Value::String(value.to_string());
    if !f.get("kms_key").is_empty() {
        params["KmsKeyId"] = json!(f.get("kms_key"));
    }
    let r = c.ssm("CreateSecret", params).await;
    match r {
        Ok(_) => Ok(c.redirect(&href(&name), Ok(format!("Secret {name} created.")))),
        Err(e) => Ok(c.refused("Create secret", &e)),
    }
}

/// The versions, each with its reveal button (the value itself is on the reveal page only).
fn versions_table(t: &str, name: &str, versions: &[Value]) -> Markup {
    html! {
        h2 { "Versions" }
        table #versions {
            thead { tr { th { "Version" } th { "Created" } th { "Value" } } }
            tbody {
                @for v in versions {
                    tr {
                        td { code { (text(v, "VersionId")) } }
                        td { (when(num(v, "CreateTime"))) }
                        td {
                            form.inline method="post" action={(href(name)) "/reveal"} {
                                (csrf(t))
                                input type="hidden" name="version" value=(text(v, "VersionId"));
                                button.secondary type="submit" { "Reveal value" }
                            }
                            @if versions.len() > 1 {
                                " "
                                form.inline method="post" action=(href(name)) {
                                    (csrf(t))
                                    input type="hidden" name="op" value="delete-version";
                                    input type="hidden" name="version" value=(text(v, "VersionId"));
                                    button.secondary type="submit" { "Delete version" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// New values, description and deletion, as the secret's state allows.
fn edit_sections(t: &str, name: &str, s: &Value) -> Markup {
    let status = text(s, "Status");
    let ssh = num(s, "SecretType") == 2;
    html! {
        @if !ssh && status != "PendingDelete" {
            h2 { "New version or new value" }
            form.card method="post" action={(href(name)) "/versions"} enctype="multipart/form-data" {
                (csrf(t))
                label for="mode" { "Store the value as" }
                (select("mode", "mode", &[("new", "A new version (PutSecretValue)"), ("replace", "The value of an existing version (UpdateSecret)")], "new"))
                label for="version" { "Version ID" }
                input #version type="text" name="version" required;
                (value_fields())
                p { button type="submit" { "Save value" } }
            }
            h2 { "Description" }
            form.card method="post" action=(href(name)) {
                (csrf(t))
                input type="hidden" name="op" value="description";
                label for="new-description" { "Description" }
                div.row { input #new-description type="text" name="description" value=(text(s, "Description")); button type="submit" { "Save description" } }
            }
        }
        @if status != "PendingDelete" {
            h2 { "Deletion" }
            form.card method="post" action=(href(name)) {
                (csrf(t))
                input type="hidden" name="op" value="delete";
                p.muted { "A secret must be disabled first. During the recovery window it can be restored; 0 deletes it at once." }
                div.row {
                    div { label for="window" { "Recovery window (days, 0-30)" }
                          input #window type="number" name="days" min="0" max="30" value="7"; }
                    button.danger type="submit" { "Delete secret" }
                }
            }
        }
    }
}

async fn details(c: Console, Path(name): Path<String>) -> Response {
    let s = match c.ssm("DescribeSecret", json!({ "SecretName": name })).await {
        Ok(f) => Value::Object(f),
        Err(e) => return c.refused("Secret", &e),
    };
    let versions = c
        .ssm("ListSecretVersionIds", json!({ "SecretName": name }))
        .await
        .map(|f| f["Versions"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default();
    let t = c.cur.csrf.as_str();
    let op = |op: &str, label: &str, class: &str| -> Markup {
        html! {
            form.inline method="post" action=(href(&name)) {
                (csrf(t)) input type="hidden" name="op" value=(op);
                button class=(class) type="submit" { (label) }
            }
        }
    };
    c.page(
        &format!("Secret {name}"),
        html! {
            div.actions { a href="/console/secrets" { "‹ All secrets" } }
            dl.fields #secret-fields {
                @for (k, v) in s.as_object().into_iter().flatten() {
                    @if k != "RequestId" {
                        dt { (k) }
                        dd data-field=(k) {
                            @if k.ends_with("Time") { (when(v.as_i64().unwrap_or(0))) }
                            @else if let Some(t) = v.as_str() { (t) } @else { (v.to_string()) }
                        }
                    }
                }
            }
            div.actions {
                @match text(&s, "Status") {
                    "Enabled" => { (op("disable", "Disable", "secondary")) },
                    "Disabled" => { (op("enable", "Enable", "")) },
                    "PendingDelete" => { (op("restore", "Restore", "")) },
                    _ => {},
                }
            }
            @if num(&s, "SecretType") == 2 {
                h2 { "SSH key pair" }
                form.card method="post" action={(href(&name)) "/ssh-private-key"} {
                    (csrf(t))
                    p.muted { "The private key is decrypted for this download only." }
                    button type="submit" #download-private-key { "Download private key" }
                }
            }
            (versions_table(t, &name, &versions))
            (edit_sections(t, &name, &s))
        },
    )
}

async fn change(c: Console, Path(name): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let back = href(&name);
    let r: Result<String, Error> = match f.get("op") {
        "enable" => c
            .ssm("EnableSecret", json!({ "SecretName": name }))
            .await
            .map(|_| "Secret enabled.".into()),
        "disable" => c
            .ssm("DisableSecret", json!({ "SecretName": name }))
            .await
            .map(|_| "Secret disabled.".into()),
        "delete-version" => c
            .ssm(
                "DeleteSecretVersion",
                json!({ "SecretName": name, "VersionId": f.get("version") }),
            )
            .await
            .map(|_| format!("Version {} deleted.", f.get("version"))),
        "restore" => c
            .ssm("RestoreSecret", json!({ "SecretName": name }))
            .await
            .map(|_| "Secret restored.".into()),
        "description" => c
            .ssm(
                "UpdateDescription",
                json!({ "SecretName": name, "Description": f.get("description") }),
            )
            .await
            .map(|_| "Description saved.".into()),
        "delete" => {
            let days: u64 = f.get("days").trim().parse().map_err(|_| {
                Fail::BadForm("the recovery window must be a number of days".into())
            })?;
            match c
                .ssm(
                    "DeleteSecret",
                    json!({ "SecretName": name, "RecoveryWindowInDays": days }),
                )
                .await
            {
                Ok(_) if days == 0 => {
                    return Ok(c.redirect("/console/secrets", Ok(format!("Secret {name} deleted."))))
                }
                Ok(r) => Ok(format!(
                    "Deletion scheduled for {}.",
                    when(r.get("DeleteTime").and_then(Value::as_i64).unwrap_or(0))
                )),
                Err(e) => Err(e),
            }
        }
        other => return Err(Fail::BadForm(format!("unknown operation `{other}`"))),
    };
    Ok(c.redirect(&back, r))
}

async fn put_version(
    c: Console,
    Path(name): Path<String>,
    mp: Multipart,
) -> Result<Response, Fail> {
    let (f, file) = c.upload(mp).await?;
    let (field, value) = value_params(&f, file.as_deref().map(Vec::as_slice))?;
    let mut params = json!({ "SecretName": name, "VersionId": f.get("version") });
    params[field] = Value::String(value.to_string());
    let (action, done) = match f.get("mode") {
        "replace" => ("UpdateSecret", "Version's value replaced."),
        _ => ("PutSecretValue", "Version added."),
    };
    let r = c.ssm(action, params).await;
    Ok(c.redirect(&href(&name), r.map(|_| done.into())))
}

/// The one page that shows a value: the answer to the reveal button.
async fn reveal(c: Console, Path(name): Path<String>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let version = f.get("version").to_string();
    let r = match c
        .ssm(
            "GetSecretValue",
            json!({ "SecretName": name, "VersionId": version }),
        )
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(c.refused(&format!("Secret {name}"), &e)),
    };
    let string = Zeroizing::new(
        r.get("SecretString")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    );
    let binary = Zeroizing::new(
        r.get("SecretBinary")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    );
    let (label, value, file) = if binary.is_empty() {
        ("Text value", string, "secret.txt")
    } else {
        ("Binary value (base64)", binary, "secret.b64")
    };
    Ok(c.page(
        &format!("Secret {name}"),
        html! {
            div.actions { a href=(href(&name)) { "‹ Hide the value and go back" } }
            section.card #revealed {
                h2 { (label) ", version " code { (version) } }
                pre.value #secret-value { (value.as_str()) }
                form method="post" action="/console/download" {
                    (csrf(&c.cur.csrf))
                    input type="hidden" name="name" value=(file);
                    input type="hidden" name="content" value=(value.as_str());
                    button.secondary type="submit" { "Download" }
                }
            }
        },
    ))
}

async fn new_ssh_form(c: Console) -> Response {
    let cmks = cmk_choice(&c).await;
    c.page(
        "Create SSH key pair secret",
        html! {
            form.card method="post" action="/console/secrets/new-ssh" {
                (csrf(&c.cur.csrf))
                label for="name" { "Secret name" }
                input #name type="text" name="name" required maxlength="128";
                label for="ssh-name" { "SSH key name" }
                input #ssh-name type="text" name="ssh_name";
                label for="description" { "Description" }
                input #description type="text" name="description" maxlength="2048";
                (cmks)
                p.muted { "Keyward generates an Ed25519 key pair and keeps the private key encrypted under the KMS key." }
                p { button type="submit" { "Create key pair" } " " a href="/console/secrets" { "Cancel" } }
            }
        },
    )
}

async fn create_ssh(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let name = f.get("name").trim().to_string();
    let mut params =
        json!({ "SecretName": name, "ProjectId": 0, "Description": f.get("description") });
    if !f.get("ssh_name").trim().is_empty() {
        params["SSHKeyName"] = json!(f.get("ssh_name").trim());
    }
    if !f.get("kms_key").is_empty() {
        params["KmsKeyId"] = json!(f.get("kms_key"));
    }
    Ok(match c.ssm("CreateSSHKeyPairSecret", params).await {
        Ok(_) => c.redirect(
            &href(&name),
            Ok(format!(
                "SSH key pair secret {name} created: download its private key below."
            )),
        ),
        Err(e) => c.refused("Create SSH key pair secret", &e),
    })
}

/// The private key of an SSH key pair secret, as a file (a POST with the CSRF token, like
/// reveal).
async fn ssh_private_key(
    c: Console,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Fail> {
    c.form(&body)?;
    let r = match c
        .ssm("GetSSHKeyPairValue", json!({ "SecretName": name }))
        .await
    {
        Ok(r) => r,
        Err(e) => return Ok(c.refused(&format!("Secret {name}"), &e)),
    };
    let key = Zeroizing::new(
        r.get("PrivateKey")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    );
    Ok(axum::response::IntoResponse::into_response((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    super::keys::safe_name(&format!("{name}.pem"))
                ),
            ),
        ],
        key.to_string(),
    )))
}
