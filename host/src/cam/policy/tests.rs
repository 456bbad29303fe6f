//! The policy grammar and decision table, tested.

use super::*;

pub(super) const REGION: &str = "ap-guangzhou";
pub(super) const OWNER: u64 = 100000000001;
/// 2026-11-23T12:00:00Z
pub(super) const NOON: i64 = 1_795_435_200;

pub(super) fn key(id: &str) -> String {
    kms_key_resource(REGION, OWNER, id)
}

pub(super) fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One request of the table, owning what `RequestContext` borrows.
#[derive(Clone)]
pub(super) struct Req {
    action: String,
    resource: String,
    ip: Option<IpAddr>,
    now: i64,
    resource_tags: Vec<(String, String)>,
    request_tags: Vec<(String, String)>,
}

pub(super) fn req(action: &str, resource: &str) -> Req {
    Req {
        action: action.into(),
        resource: resource.into(),
        ip: Some("10.1.2.3".parse().unwrap()),
        now: NOON,
        resource_tags: Vec::new(),
        request_tags: Vec::new(),
    }
}

impl Req {
    fn ip(mut self, ip: &str) -> Req {
        self.ip = Some(ip.parse().unwrap());
        self
    }
    fn no_ip(mut self) -> Req {
        self.ip = None;
        self
    }
    fn at(mut self, now: i64) -> Req {
        self.now = now;
        self
    }
    fn resource_tags(mut self, pairs: &[(&str, &str)]) -> Req {
        self.resource_tags = tags(pairs);
        self
    }
    fn request_tags(mut self, pairs: &[(&str, &str)]) -> Req {
        self.request_tags = tags(pairs);
        self
    }
    pub(super) fn ctx(&self) -> RequestContext<'_> {
        RequestContext {
            action: &self.action,
            resource: &self.resource,
            source_ip: self.ip,
            now: self.now,
            resource_tags: &self.resource_tags,
            request_tags: &self.request_tags,
        }
    }
}

/// A one-statement policy document.
pub(super) fn stmt(effect: &str, action: &str, resource: &str, condition: &str) -> String {
    let condition = if condition.is_empty() {
        String::new()
    } else {
        format!(r#","condition":{condition}"#)
    };
    format!(
        r#"{{"version":"2.0","statement":[{{"effect":"{effect}","action":{action},"resource":{resource}{condition}}}]}}"#
    )
}

pub(super) fn allow(action: &str, resource: &str, condition: &str) -> String {
    stmt("allow", action, resource, condition)
}

pub(super) fn deny(action: &str, resource: &str, condition: &str) -> String {
    stmt("deny", action, resource, condition)
}

pub(super) fn q(s: &str) -> String {
    format!("\"{s}\"")
}

pub(super) use Decision::{Allow, ExplicitDeny, ImplicitDeny};

// Long function: one line per case of the decision table, read as a table.
#[test]
fn decision_table() {
    let key_a = key("key-a");
    let key_b = key("key-b");
    let key_c = key("key-c");
    let key_sh = kms_key_resource("ap-shanghai", OWNER, "key-a");
    let key_other = kms_key_resource(REGION, 100000000002, "key-a");
    let all_keys = q(&format!("qcs::kms:{REGION}:uin/{OWNER}:key/*"));
    let secret = ssm_secret_resource(REGION, OWNER, 100000000005, "prod-db");
    let secret2 = ssm_secret_resource(REGION, OWNER, 100000000005, "dev-db");

    let encrypt_a = allow(r#"["kms:Encrypt"]"#, &q(&key_a), "");
    let ip_allow = |values: &str| {
        allow(
            r#""kms:*""#,
            r#""*""#,
            &format!(r#"{{"ip_equal":{{"qcs:ip":{values}}}}}"#),
        )
    };
    let window = allow(
        r#""kms:*""#,
        r#""*""#,
        r#"{"date_greater_than":{"qcs:current_time":"2026-11-23T00:00:00Z"},
            "date_less_than":{"qcs:current_time":"2026-11-24T00:00:00+00:00"}}"#,
    );
    let tag_any = allow(
        r#""kms:*""#,
        r#""*""#,
        r#"{"for_any_value:string_equal":{"qcs:resource_tag":["env&prod","env&staging"]}}"#,
    );
    let tag_all = allow(
        r#""kms:*""#,
        r#""*""#,
        r#"{"for_all_value:string_equal":{"qcs:resource_tag":["env&prod","team&pay"]}}"#,
    );
    let batch = format!(
        r#"{{"version":"2.0","statement":[
            {{"effect":"allow","action":"kms:Encrypt","resource":[{a},{c}]}},
            {{"effect":"deny","action":"kms:*","resource":{c}}}]}}"#,
        a = q(&key_a),
        c = q(&key_c)
    );

    type Row = (&'static str, Vec<String>, Req, Decision);
    let rows: Vec<Row> = vec![
        // Actions.
        (
            "exact action",
            vec![encrypt_a.clone()],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "exact action, other action",
            vec![encrypt_a.clone()],
            req("kms:Decrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "kms:*",
            vec![allow(r#""kms:*""#, r#""*""#, "")],
            req("kms:Decrypt", &key_a),
            Allow,
        ),
        (
            "* action and resource",
            vec![allow(r#""*""#, r#""*""#, "")],
            req("ssm:GetSecretValue", &secret),
            Allow,
        ),
        (
            "kms:Describe*",
            vec![allow(r#""kms:Describe*""#, r#""*""#, "")],
            req("kms:DescribeKey", &key_a),
            Allow,
        ),
        (
            "kms:Describe* vs Encrypt",
            vec![allow(r#""kms:Describe*""#, r#""*""#, "")],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "name/ prefix",
            vec![allow(r#"["name/kms:Encrypt"]"#, &q(&key_a), "")],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "case-insensitive keys, effect, action",
            vec![format!(
                r#"{{"Version":"2.0","Statement":{{"Effect":"ALLOW","Action":"NAME/KMS:encrypt","Resource":{}}}}}"#,
                q(&key_a)
            )],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "wrong service",
            vec![allow(r#""ssm:*""#, r#""*""#, "")],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "wildcard in the middle",
            vec![allow(r#""kms:*Data*""#, r#""*""#, "")],
            req("kms:GenerateDataKey", "*"),
            Allow,
        ),
        // Resources.
        (
            "resource exact, other key",
            vec![encrypt_a.clone()],
            req("kms:Encrypt", &key_b),
            ImplicitDeny,
        ),
        (
            "resource key/*",
            vec![allow(r#""kms:Encrypt""#, &all_keys, "")],
            req("kms:Encrypt", &key_b),
            Allow,
        ),
        (
            "resource key/* other region",
            vec![allow(r#""kms:Encrypt""#, &all_keys, "")],
            req("kms:Encrypt", &key_sh),
            ImplicitDeny,
        ),
        (
            "empty region matches any region",
            vec![allow(
                r#""kms:Encrypt""#,
                &q(&format!("qcs::kms::uin/{OWNER}:key/*")),
                "",
            )],
            req("kms:Encrypt", &key_sh),
            Allow,
        ),
        (
            "other account's uin",
            vec![allow(r#""kms:Encrypt""#, &all_keys, "")],
            req("kms:Encrypt", &key_other),
            ImplicitDeny,
        ),
        (
            "resource * request vs key/*",
            vec![allow(r#""kms:*""#, &all_keys, "")],
            req("kms:CreateKey", "*"),
            ImplicitDeny,
        ),
        (
            "resource * request vs *",
            vec![allow(r#""kms:*""#, r#""*""#, "")],
            req("kms:CreateKey", "*"),
            Allow,
        ),
        (
            "secret glob across /",
            vec![allow(
                r#""ssm:GetSecretValue""#,
                &q(&format!(
                    "qcs::ssm:{REGION}:uin/{OWNER}:secret/creatorUin/*/prod-*"
                )),
                "",
            )],
            req("ssm:GetSecretValue", &secret),
            Allow,
        ),
        (
            "secret glob, other name",
            vec![allow(
                r#""ssm:GetSecretValue""#,
                &q(&format!(
                    "qcs::ssm:{REGION}:uin/{OWNER}:secret/creatorUin/*/prod-*"
                )),
                "",
            )],
            req("ssm:GetSecretValue", &secret2),
            ImplicitDeny,
        ),
        // Deny and allow.
        (
            "no policies",
            vec![],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "deny over allow across policies",
            vec![
                allow(r#""kms:*""#, r#""*""#, ""),
                deny(r#""kms:Encrypt""#, &q(&key_a), ""),
            ],
            req("kms:Encrypt", &key_a),
            ExplicitDeny,
        ),
        (
            "deny over allow within one policy",
            vec![format!(
                r#"{{"version":"2.0","statement":[{{"effect":"deny","action":"kms:Encrypt","resource":"*"}},{{"effect":"allow","action":"kms:*","resource":"*"}}]}}"#
            )],
            req("kms:Encrypt", &key_a),
            ExplicitDeny,
        ),
        (
            "deny with unmet condition does not deny",
            vec![
                allow(r#""kms:*""#, r#""*""#, ""),
                deny(
                    r#""kms:*""#,
                    r#""*""#,
                    r#"{"ip_not_equal":{"qcs:ip":"10.0.0.0/8"}}"#,
                ),
            ],
            req("kms:Encrypt", &key_a).ip("10.9.9.9"),
            Allow,
        ),
        (
            "deny with met condition denies",
            vec![
                allow(r#""kms:*""#, r#""*""#, ""),
                deny(
                    r#""kms:*""#,
                    r#""*""#,
                    r#"{"ip_not_equal":{"qcs:ip":"10.0.0.0/8"}}"#,
                ),
            ],
            req("kms:Encrypt", &key_a).ip("192.0.2.1"),
            ExplicitDeny,
        ),
        // Addresses.
        (
            "ip_equal v4 CIDR in",
            vec![ip_allow(r#"["10.0.0.0/8","192.168.1.5"]"#)],
            req("kms:Encrypt", &key_a).ip("10.200.0.1"),
            Allow,
        ),
        (
            "ip_equal v4 CIDR out",
            vec![ip_allow(r#"["10.0.0.0/8","192.168.1.5"]"#)],
            req("kms:Encrypt", &key_a).ip("11.0.0.1"),
            ImplicitDeny,
        ),
        (
            "ip_equal single IP",
            vec![ip_allow(r#"["10.0.0.0/8","192.168.1.5"]"#)],
            req("kms:Encrypt", &key_a).ip("192.168.1.5"),
            Allow,
        ),
        (
            "ip_equal single IP neighbour",
            vec![ip_allow(r#"["10.0.0.0/8","192.168.1.5"]"#)],
            req("kms:Encrypt", &key_a).ip("192.168.1.6"),
            ImplicitDeny,
        ),
        (
            "ip_equal host bits set",
            vec![ip_allow(r#""10.121.2.10/24""#)],
            req("kms:Encrypt", &key_a).ip("10.121.2.200"),
            Allow,
        ),
        (
            "ip_equal v6 CIDR in",
            vec![ip_allow(r#""2001:db8::/32""#)],
            req("kms:Encrypt", &key_a).ip("2001:db8:1::5"),
            Allow,
        ),
        (
            "ip_equal v6 CIDR out",
            vec![ip_allow(r#""2001:db8::/32""#)],
            req("kms:Encrypt", &key_a).ip("2001:db9::5"),
            ImplicitDeny,
        ),
        (
            "ip_equal v4-mapped caller",
            vec![ip_allow(r#""10.0.0.0/8""#)],
            req("kms:Encrypt", &key_a).ip("::ffff:10.1.1.1"),
            Allow,
        ),
        (
            "ip_equal v4 net, v6 caller",
            vec![ip_allow(r#""0.0.0.0/0""#)],
            req("kms:Encrypt", &key_a).ip("2001:db8::1"),
            ImplicitDeny,
        ),
        (
            "ip_not_equal outside",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"ip_not_equal":{"qcs:ip":["10.0.0.0/8","172.16.0.0/12"]}}"#,
            )],
            req("kms:Encrypt", &key_a).ip("192.0.2.1"),
            Allow,
        ),
        (
            "ip_not_equal inside one",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"ip_not_equal":{"qcs:ip":["10.0.0.0/8","172.16.0.0/12"]}}"#,
            )],
            req("kms:Encrypt", &key_a).ip("172.16.3.4"),
            ImplicitDeny,
        ),
        (
            "missing IP",
            vec![ip_allow(r#""10.0.0.0/8""#)],
            req("kms:Encrypt", &key_a).no_ip(),
            ImplicitDeny,
        ),
        (
            "missing IP, _if_exist",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"ip_equal_if_exist":{"qcs:ip":"10.0.0.0/8"}}"#,
            )],
            req("kms:Encrypt", &key_a).no_ip(),
            Allow,
        ),
        (
            "present IP, _if_exist, out",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"ip_equal_if_exist":{"qcs:ip":"10.0.0.0/8"}}"#,
            )],
            req("kms:Encrypt", &key_a).ip("192.0.2.1"),
            ImplicitDeny,
        ),
        // Dates.
        (
            "date window, inside",
            vec![window.clone()],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "date window, before",
            vec![window.clone()],
            req("kms:Encrypt", &key_a).at(NOON - 13 * 3600),
            ImplicitDeny,
        ),
        (
            "date window, after",
            vec![window.clone()],
            req("kms:Encrypt", &key_a).at(NOON + 12 * 3600),
            ImplicitDeny,
        ),
        (
            "date_greater_than_equal boundary, unix seconds",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                &format!(r#"{{"date_greater_than_equal":{{"qcs:current_time":{NOON}}}}}"#),
            )],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "date_greater_than boundary",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"date_greater_than":{"qcs:current_time":"2026-11-23T12:00:00Z"}}"#,
            )],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "date_less_than CAM example format",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"date_less_than":{"qcs:current_time":"2026-11-23 12:00:01"}}"#,
            )],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "date with offset",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"date_equal":{"qcs:current_time":"2026-11-23T20:00:00+08:00"}}"#,
            )],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "two operators AND, one fails",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"ip_equal":{"qcs:ip":"10.0.0.0/8"},"date_less_than":{"qcs:current_time":"2026-01-01T00:00:00Z"}}"#,
            )],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        // Tags.
        (
            "tag any, match",
            vec![tag_any.clone()],
            req("kms:Encrypt", &key_a).resource_tags(&[("team", "pay"), ("env", "prod")]),
            Allow,
        ),
        (
            "tag any, no match",
            vec![tag_any.clone()],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "dev")]),
            ImplicitDeny,
        ),
        (
            "tag any, value case differs",
            vec![tag_any.clone()],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "Prod")]),
            ImplicitDeny,
        ),
        (
            "tag any, untagged",
            vec![tag_any.clone()],
            req("kms:Encrypt", &key_a),
            ImplicitDeny,
        ),
        (
            "tag any, untagged, _if_exist",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"for_any_value:string_equal_if_exist":{"qcs:resource_tag":"env&prod"}}"#,
            )],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "tag, no qualifier = any",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"string_equal":{"qcs:resource_tag":"env&prod"}}"#,
            )],
            req("kms:Encrypt", &key_a).resource_tags(&[("a", "b"), ("env", "prod")]),
            Allow,
        ),
        (
            "tag string_like",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"string_like":{"qcs:resource_tag":"env&prod-*"}}"#,
            )],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "prod-eu")]),
            Allow,
        ),
        (
            "tag string_equal_ignore_case",
            vec![allow(
                r#""kms:*""#,
                r#""*""#,
                r#"{"string_equal_ignore_case":{"qcs:resource_tag":"ENV&Prod"}}"#,
            )],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "prod")]),
            Allow,
        ),
        (
            "tag all, subset",
            vec![tag_all.clone()],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "prod"), ("team", "pay")]),
            Allow,
        ),
        (
            "tag all, one outside",
            vec![tag_all.clone()],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "prod"), ("team", "ops")]),
            ImplicitDeny,
        ),
        (
            "tag all, untagged (vacuous)",
            vec![tag_all.clone()],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "deny string_not_equal tag",
            vec![
                allow(r#""kms:*""#, r#""*""#, ""),
                deny(
                    r#""kms:*""#,
                    r#""*""#,
                    r#"{"for_all_value:string_not_equal":{"qcs:resource_tag":"env&prod"}}"#,
                ),
            ],
            req("kms:Encrypt", &key_a).resource_tags(&[("env", "dev")]),
            ExplicitDeny,
        ),
        (
            "request_tag match",
            vec![allow(
                r#""kms:CreateKey""#,
                r#""*""#,
                r#"{"for_any_value:string_equal":{"qcs:request_tag":"owner&alice"}}"#,
            )],
            req("kms:CreateKey", "*").request_tags(&[("owner", "alice")]),
            Allow,
        ),
        (
            "request_tag no match",
            vec![allow(
                r#""kms:CreateKey""#,
                r#""*""#,
                r#"{"for_any_value:string_equal":{"qcs:request_tag":"owner&alice"}}"#,
            )],
            req("kms:CreateKey", "*")
                .request_tags(&[("owner", "bob")])
                .resource_tags(&[("owner", "alice")]),
            ImplicitDeny,
        ),
        // Batch: one policy, three keys.
        (
            "batch key-a",
            vec![batch.clone()],
            req("kms:Encrypt", &key_a),
            Allow,
        ),
        (
            "batch key-b",
            vec![batch.clone()],
            req("kms:Encrypt", &key_b),
            ImplicitDeny,
        ),
        (
            "batch key-c",
            vec![batch.clone()],
            req("kms:Encrypt", &key_c),
            ExplicitDeny,
        ),
    ];
    assert!(rows.len() >= 30);

    let mut failures = Vec::new();
    for (name, documents, request, expected) in &rows {
        let policies: Vec<Policy> = documents
            .iter()
            .map(|d| Policy::parse(d).unwrap_or_else(|e| panic!("{name}: {e}\n{d}")))
            .collect();
        let got = evaluate(&policies, &request.ctx());
        if got != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

pub(super) fn parse_err(document: &str) -> String {
    match Policy::parse(document) {
        Ok(p) => panic!("parsed unexpectedly: {p:?}"),
        Err(e) => e.to_string(),
    }
}
