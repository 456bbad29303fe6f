//! User groups on the access pages: create and delete, members, and the policies attached to
//! a group (which apply to every member).

use super::access::{list, refused_part};
use super::layout::csrf;
use super::{num, text, when, Console, Fail};
use crate::error::Error;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

/// The groups table and the create form of the access overview.
pub fn section(c: &Console, groups: &Result<Value, Error>) -> Markup {
    html! {
        h2 { "Groups" }
        (refused_part(groups))
        table #groups {
            thead { tr { th { "Name" } th { "ID" } th { "Remark" } th { "Created" } } }
            tbody {
                @for g in list(groups, "GroupInfo") {
                    tr {
                        td { a href={"/console/access/groups/" (num(g, "GroupId"))} { (text(g, "GroupName")) } }
                        td { (num(g, "GroupId")) }
                        td { (text(g, "Remark")) }
                        td { (when(num(g, "CreateTime"))) }
                    }
                }
            }
        }
        form.card method="post" action="/console/access/groups" {
            (csrf(&c.cur.csrf))
            div.row {
                div { label for="group-name" { "New group" } input #group-name type="text" name="name" required; }
                div { label for="group-remark" { "Remark" } input #group-remark type="text" name="remark"; }
                button type="submit" { "Create group" }
            }
        }
    }
}

pub async fn create(c: Console, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let params = json!({ "GroupName": f.get("name"), "Remark": f.get("remark") });
    Ok(match c.admin("CreateGroup", params).await {
        Ok(r) => c.redirect(
            &format!("/console/access/groups/{}", num(&r, "GroupId")),
            Ok(format!("Group {} created.", f.get("name"))),
        ),
        Err(e) => c.redirect("/console/access", Err(e)),
    })
}

pub async fn page(c: Console, Path(id): Path<u64>) -> Response {
    let groups = c.admin("ListGroups", json!({})).await;
    let Some(group) = list(&groups, "GroupInfo")
        .iter()
        .find(|g| num(g, "GroupId") as u64 == id)
        .cloned()
    else {
        return match groups {
            Err(e) => c.refused("Group", &e),
            Ok(_) => c.refused("Group", &Error::GroupNotFound(id.to_string())),
        };
    };
    let members = c.admin("ListUsersForGroup", json!({ "GroupId": id })).await;
    let attached = c
        .admin("ListAttachedGroupPolicies", json!({ "TargetGroupId": id }))
        .await;
    let users = c.admin("ListUsers", json!({})).await;
    let policies = c.admin("ListPolicies", json!({})).await;
    let here = format!("/console/access/groups/{id}");
    let op = |op: &str, label: &str, class: &str, hidden: &[(&str, String)]| -> Markup {
        html! {
            form.inline method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value=(op);
                @for (k, v) in hidden { input type="hidden" name=(k) value=(v); }
                button class=(class) type="submit" { (label) }
            }
        }
    };
    let pick = |op: &str,
                field: &str,
                label: &str,
                button: &str,
                options: Vec<(i64, String)>|
     -> Markup {
        html! {
            form.card method="post" action=(here) {
                (csrf(&c.cur.csrf)) input type="hidden" name="op" value=(op);
                div.row {
                    div { label for=(op) { (label) }
                        select id=(op) name=(field) { @for (v, l) in &options { option value=(v) { (l) } } } }
                    button type="submit" { (button) }
                }
            }
        }
    };
    c.page(
        &format!("Group {}", text(&group, "GroupName")),
        html! {
            div.actions { a href="/console/access" { "‹ Access" } }
            p { (text(&group, "Remark")) }
            h2 { "Members" }
            (refused_part(&members))
            table #members {
                tbody {
                    @for u in list(&members, "UserInfo") {
                        tr { td { (text(u, "Name")) } td { (num(u, "Uin")) }
                             td { (op("remove", "Remove", "secondary", &[("uin", num(u, "Uin").to_string())])) } }
                    }
                }
            }
            (pick("add", "uin", "Add a user", "Add to group",
                list(&users, "Data").iter().map(|u| (num(u, "Uin"), text(u, "Name").to_string())).collect()))
            h2 { "Policies attached" }
            (refused_part(&attached))
            table #group-policies {
                tbody {
                    @for p in list(&attached, "List") {
                        tr { td { (text(p, "PolicyName")) }
                             td { (op("detach", "Detach", "secondary", &[("policy", num(p, "PolicyId").to_string())])) } }
                    }
                }
            }
            (pick("attach", "policy", "Attach a policy", "Attach",
                list(&policies, "List").iter().map(|p| (num(p, "PolicyId"), text(p, "PolicyName").to_string())).collect()))
            h2 { "Delete" }
            (op("delete", "Delete this group", "danger", &[]))
        },
    )
}

pub async fn change(c: Console, Path(id): Path<u64>, body: Bytes) -> Result<Response, Fail> {
    let f = c.form(&body)?;
    let here = format!("/console/access/groups/{id}");
    let number = |field: &str| {
        f.get(field)
            .parse::<u64>()
            .map_err(|_| Fail::BadForm(format!("{field} must be a number")))
    };
    let r: Result<String, Error> = match f.get("op") {
        "add" => c
            .admin(
                "AddUserToGroup",
                json!({ "Info": [{ "Uin": number("uin")?, "GroupId": id }] }),
            )
            .await
            .map(|_| "User added.".into()),
        "remove" => c
            .admin(
                "RemoveUserFromGroup",
                json!({ "Info": [{ "Uin": number("uin")?, "GroupId": id }] }),
            )
            .await
            .map(|_| "User removed.".into()),
        "attach" => c
            .admin(
                "AttachGroupPolicy",
                json!({ "PolicyId": number("policy")?, "AttachGroupId": id }),
            )
            .await
            .map(|_| "Policy attached.".into()),
        "detach" => c
            .admin(
                "DetachGroupPolicy",
                json!({ "PolicyId": number("policy")?, "DetachGroupId": id }),
            )
            .await
            .map(|_| "Policy detached.".into()),
        "delete" => {
            return Ok(
                match c.admin("DeleteGroup", json!({ "GroupId": id })).await {
                    Ok(_) => c.redirect("/console/access", Ok("Group deleted.".into())),
                    Err(e) => c.redirect(&here, Err(e)),
                },
            )
        }
        other => return Err(Fail::BadForm(format!("unknown operation `{other}`"))),
    };
    Ok(c.redirect(&here, r))
}
