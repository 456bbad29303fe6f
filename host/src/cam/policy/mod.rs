//! CAM policy documents (syntax version 2.0): parsing and evaluation.
//!
//! A policy is the JSON document Tencent Cloud CAM accepts:
//!
//! ```json
//! {"version": "2.0",
//!  "statement": [{"effect": "allow",
//!                 "action": ["name/kms:Encrypt", "kms:Decrypt"],
//!                 "resource": ["qcs::kms:ap-guangzhou:uin/100000000001:key/abc-123"],
//!                 "condition": {"ip_equal": {"qcs:ip": ["10.0.0.0/8"]}}}]}
//! ```
//!
//! [`Policy::parse`] refuses anything it would not evaluate faithfully (unknown element, operator
//! or condition key, malformed action, resource, address or date), so that a mistyped policy is
//! rejected when it is stored instead of silently never matching. [`evaluate`] combines any number
//! of policies: an explicit deny anywhere wins, then any allow, else the request is implicitly
//! denied.
//!
//! Supported condition operators (each also with the `_if_exist` suffix, which makes the
//! condition hold when the key is absent from the request):
//!
//! * `qcs:ip`: `ip_equal`, `ip_not_equal` (IPv4/IPv6 addresses or CIDR blocks);
//! * `qcs:current_time`: `date_equal`, `date_not_equal`, `date_greater_than`,
//!   `date_greater_than_equal`, `date_less_than`, `date_less_than_equal` (ISO 8601 / RFC 3339 in
//!   UTC or with an offset, or integer unix seconds);
//! * `qcs:resource_tag`, `qcs:request_tag` (values `tagKey&tagValue`): `string_equal`,
//!   `string_not_equal`, `string_equal_ignore_case`, `string_not_equal_ignore_case`,
//!   `string_like`, `string_not_like`, optionally qualified `for_any_value:` or `for_all_value:`.
//!
//! This module depends only on `std`, `serde_json` and `time` (no optional `time` features).

use std::fmt;
use std::net::IpAddr;

mod condition;
#[cfg(test)]
mod grammar_tests;
mod patterns;
#[cfg(test)]
mod tests;

use condition::*;
use patterns::*;

use serde_json::{Map, Value};

/// A policy document that could not be parsed; the message names what is wrong and where.
#[derive(Debug)]
pub struct PolicyError(pub String);

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PolicyError {}

/// A parsed CAM policy document.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

/// What a request is, for evaluation against policies.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The action, e.g. `"kms:Encrypt"`.
    pub action: &'a str,
    /// The full six-segment `qcs:` resource name, or `"*"` for actions that touch no particular
    /// resource.
    pub resource: &'a str,
    /// The caller's address (`qcs:ip`), if known.
    pub source_ip: Option<IpAddr>,
    /// The time of the request (`qcs:current_time`), in unix seconds.
    pub now: i64,
    /// The tags on the resource (`qcs:resource_tag`).
    pub resource_tags: &'a [(String, String)],
    /// The tags the request carries (`qcs:request_tag`).
    pub request_tags: &'a [(String, String)],
}

/// The outcome of evaluating a request against a set of policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Some statement allows the request and none denies it.
    Allow,
    /// Some statement explicitly denies the request.
    ExplicitDeny,
    /// No statement applies.
    ImplicitDeny,
}

/// Evaluates `ctx` against `policies`: an explicit deny in any policy wins, then any allow,
/// else implicit deny.
pub fn evaluate<'p>(
    policies: impl IntoIterator<Item = &'p Policy>,
    ctx: &RequestContext<'_>,
) -> Decision {
    let mut allowed = false;
    for policy in policies {
        for statement in &policy.statements {
            if statement.applies(ctx) {
                match statement.effect {
                    Effect::Deny => return Decision::ExplicitDeny,
                    Effect::Allow => allowed = true,
                }
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// The CAM resource name of a KMS key: `qcs::kms:{region}:uin/{owner}:key/{key_id}`.
pub fn kms_key_resource(region: &str, owner_uin: u64, key_id: &str) -> String {
    format!("qcs::kms:{region}:uin/{owner_uin}:key/{key_id}")
}

/// CAM's resource names for access management, in Tencent CAM's forms, so the management
/// actions can be granted on particular users, groups and policies:
/// `qcs::cam::uin/{owner}:uin/{uin}`, `…:group/{id}`, `…:policyid/{id}` (`*` for new ones).
pub fn cam_resource(owner_uin: u64, kind: CamKind, id: &str) -> String {
    let kind = match kind {
        CamKind::User => "uin",
        CamKind::Group => "group",
        CamKind::Policy => "policyid",
    };
    format!("qcs::cam::uin/{owner_uin}:{kind}/{id}")
}

/// What a management action acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamKind {
    User,
    Group,
    Policy,
}

impl CamKind {
    /// The audit log's resource type.
    pub fn resource_type(self) -> &'static str {
        match self {
            CamKind::User => "cam_user",
            CamKind::Group => "cam_group",
            CamKind::Policy => "cam_policy",
        }
    }
}

/// The CAM resource name of an SSM secret:
/// `qcs::ssm:{region}:uin/{owner}:secret/creatorUin/{creator}/{name}`.
pub fn ssm_secret_resource(region: &str, owner_uin: u64, creator_uin: u64, name: &str) -> String {
    format!("qcs::ssm:{region}:uin/{owner_uin}:secret/creatorUin/{creator_uin}/{name}")
}

impl Policy {
    /// Parses a CAM policy document (version 2.0).
    pub fn parse(document: &str) -> Result<Policy, PolicyError> {
        let value: Value = serde_json::from_str(document)
            .map_err(|e| PolicyError(format!("policy document is not valid JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(PolicyError("policy document must be a JSON object".into()));
        };
        let mut version = None;
        let mut statement = None;
        for (key, value) in &top {
            match key.to_ascii_lowercase().as_str() {
                "version" => set_once(&mut version, value, "version")?,
                "statement" => set_once(&mut statement, value, "statement")?,
                _ => return Err(PolicyError(format!("unknown top-level key \"{key}\""))),
            }
        }
        match version {
            None => return Err(PolicyError("missing version".into())),
            Some(Value::String(v)) if v == "2.0" => {}
            Some(other) => {
                return Err(PolicyError(format!("version must be \"2.0\", not {other}")));
            }
        }
        let raw_statements: Vec<&Value> = match statement {
            None => return Err(PolicyError("missing statement".into())),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            Some(_) => {
                return Err(PolicyError(
                    "statement must be an object or a list of objects".into(),
                ));
            }
        };
        if raw_statements.is_empty() {
            return Err(PolicyError("statement must not be empty".into()));
        }
        let statements = raw_statements
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                Statement::parse(raw).map_err(|e| PolicyError(format!("statement {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Policy { statements })
    }

    /// The action patterns that name none of the `known` actions (a typo in a deny would
    /// otherwise never match, and the deny would silently protect nothing).
    pub fn unknown_actions(&self, known: &[String]) -> Vec<String> {
        let mut unknown = Vec::new();
        for pattern in self.statements.iter().flat_map(|s| &s.actions) {
            if !known.iter().any(|a| pattern.matches(a)) {
                unknown.push(pattern.to_string());
            }
        }
        unknown
    }

    /// Whether some allow statement names `action` (any resource, conditions ignored). Used to
    /// decide whether a list action may run at all before its results are filtered per item.
    pub fn may_allow(&self, action: &str) -> bool {
        self.statements.iter().any(|s| {
            s.effect == Effect::Allow && s.actions.iter().any(|pattern| pattern.matches(action))
        })
    }
}

/// Stores `value` in `slot`, refusing a second occurrence of the same key (keys are
/// case-insensitive, so `"Effect"` and `"effect"` together are a duplicate).
fn set_once<'v>(
    slot: &mut Option<&'v Value>,
    value: &'v Value,
    name: &str,
) -> Result<(), PolicyError> {
    if slot.replace(value).is_some() {
        return Err(PolicyError(format!("duplicate key \"{name}\"")));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    actions: Vec<ActionPattern>,
    resources: Vec<ResourcePattern>,
    conditions: Vec<Condition>,
}

impl Statement {
    /// Parses one statement; errors are returned without the "statement N: " prefix.
    fn parse(raw: &Value) -> Result<Statement, String> {
        let Value::Object(fields) = raw else {
            return Err("must be a JSON object".into());
        };
        let (mut effect, mut action, mut resource, mut condition) = (None, None, None, None);
        let (mut principal, mut sid) = (None, None);
        for (key, value) in fields {
            let slot = match key.to_ascii_lowercase().as_str() {
                "effect" => &mut effect,
                "action" => &mut action,
                "resource" => &mut resource,
                "condition" => &mut condition,
                "principal" => &mut principal,
                "sid" => &mut sid,
                _ => return Err(format!("unknown key \"{key}\"")),
            };
            set_once(slot, value, &key.to_ascii_lowercase()).map_err(|e| e.0)?;
        }

        let effect = match effect {
            None => return Err("missing effect".into()),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("allow") => Effect::Allow,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("deny") => Effect::Deny,
            Some(_) => return Err("effect must be allow or deny".into()),
        };
        let actions = string_list(action, "action")?
            .into_iter()
            .map(ActionPattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let resources = string_list(resource, "resource")?
            .into_iter()
            .map(ResourcePattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let conditions = match condition {
            None => Vec::new(),
            Some(Value::Object(operators)) => parse_conditions(operators)?,
            Some(_) => return Err("condition must be a JSON object".into()),
        };
        if let Some(sid) = sid {
            if !sid.is_string() {
                return Err("sid must be a string".into());
            }
        }
        // `principal` is accepted (CAM allows it in some policy types) and ignored: Keyward
        // evaluates the policies attached to the caller.
        let _ = principal;
        Ok(Statement {
            effect,
            actions,
            resources,
            conditions,
        })
    }

    fn applies(&self, ctx: &RequestContext<'_>) -> bool {
        self.actions.iter().any(|a| a.matches(ctx.action))
            && self.resources.iter().any(|r| r.matches(ctx.resource))
            && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

/// A required element that is a string or a non-empty list of strings.
fn string_list<'v>(value: Option<&'v Value>, name: &str) -> Result<Vec<&'v str>, String> {
    match value {
        None => Err(format!("missing {name}")),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if items.is_empty() => Err(format!("{name} must not be empty")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| format!("{name} must be a string or a list of strings"))
            })
            .collect(),
        Some(_) => Err(format!("{name} must be a string or a list of strings")),
    }
}
