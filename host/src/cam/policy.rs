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

// ---------------------------------------------------------------------------------------------
// Actions

#[derive(Debug, Clone)]
enum ActionPattern {
    /// `*`: every action of every service.
    Any,
    /// `service:pattern`, both lowercased; the pattern may hold `*` wildcards.
    Service { service: String, action: String },
}

impl ActionPattern {
    fn parse(raw: &str) -> Result<ActionPattern, String> {
        let text = raw.trim();
        if text == "*" {
            return Ok(ActionPattern::Any);
        }
        let (service, action) = split_action(text).ok_or_else(|| {
            format!("action \"{raw}\" must be \"*\" or [name/]service:ActionName")
        })?;
        let service_ok = !service.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let action_ok = !action.is_empty()
            && action
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'*');
        if !service_ok || !action_ok {
            return Err(format!(
                "action \"{raw}\" must be \"*\" or [name/]service:ActionName"
            ));
        }
        Ok(ActionPattern::Service {
            service: service.to_ascii_lowercase(),
            action: action.to_ascii_lowercase(),
        })
    }

    fn matches(&self, requested: &str) -> bool {
        match self {
            ActionPattern::Any => true,
            ActionPattern::Service { service, action } => split_action(requested.trim())
                .is_some_and(|(s, a)| {
                    s.eq_ignore_ascii_case(service) && glob_match(action, a, true)
                }),
        }
    }
}

/// Splits `[name/]service:action`; `None` for any other prefix (e.g. `permid/`, which names a
/// CAM feature set Keyward does not know) or a missing `:`.
fn split_action(text: &str) -> Option<(&str, &str)> {
    let text = match text.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("name/") => &text[5..],
        _ => text,
    };
    if text.contains('/') {
        return None;
    }
    text.split_once(':')
}

// ---------------------------------------------------------------------------------------------
// Resources

/// Segment positions in `qcs:project:service:region:account:resource`.
const PROJECT: usize = 1;
const SERVICE: usize = 2;
const REGION: usize = 3;
const ACCOUNT: usize = 4;
const RESOURCE: usize = 5;

#[derive(Debug, Clone)]
enum ResourcePattern {
    /// `*`: every resource, including the `*` of actions that touch none.
    Any,
    /// A six-segment pattern; `*` globs within a segment (the last segment may hold `:` and `/`).
    Qcs(Vec<String>),
}

impl ResourcePattern {
    fn parse(raw: &str) -> Result<ResourcePattern, String> {
        let text = raw.trim();
        if text == "*" {
            return Ok(ResourcePattern::Any);
        }
        let segments: Vec<&str> = text.splitn(6, ':').collect();
        let well_formed = segments.len() == 6
            && segments[0].eq_ignore_ascii_case("qcs")
            && !segments[SERVICE].is_empty()
            && !segments[RESOURCE].is_empty();
        if !well_formed {
            return Err(format!(
                "resource \"{raw}\" must be \"*\" or qcs:project:service:region:account:resource"
            ));
        }
        Ok(ResourcePattern::Qcs(
            segments.into_iter().map(str::to_owned).collect(),
        ))
    }

    fn matches(&self, requested: &str) -> bool {
        let ResourcePattern::Qcs(pattern) = self else {
            return true;
        };
        let requested: Vec<&str> = requested.splitn(6, ':').collect();
        if requested.len() != 6 {
            // Includes the "*" of actions that touch no particular resource.
            return false;
        }
        pattern
            .iter()
            .zip(&requested)
            .enumerate()
            .all(|(i, (p, r))| {
                // CAM: an empty project, region or account means "any" (the account one resolves to
                // the policy owner's root account, which is the only account whose resources a
                // Keyward caller can name).
                (p.is_empty() && matches!(i, PROJECT | REGION | ACCOUNT))
                    || glob_match(p, r, i != RESOURCE)
            })
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters (possibly
/// empty) and everything else is literal; ASCII case is folded when `fold_case`.
///
/// Iterative with a single backtrack point, so it runs in O(|pattern| · |text|) at worst, never
/// exponentially (a later `*` makes every earlier backtrack point redundant).
fn glob_match(pattern: &str, text: &str, fold_case: bool) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let same = |a: u8, b: u8| a == b || (fold_case && a.eq_ignore_ascii_case(&b));
    let (mut pi, mut ti) = (0, 0);
    // Position after the most recent `*`, and the text position it is currently matched up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            backtrack = Some((pi, ti));
        } else if pi < p.len() && same(p[pi], t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((star_pi, star_ti)) = backtrack {
            // Let the last `*` swallow one more character and retry from there.
            pi = star_pi;
            ti = star_ti + 1;
            backtrack = Some((star_pi, star_ti + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

// ---------------------------------------------------------------------------------------------
// Conditions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConditionKey {
    Ip,
    CurrentTime,
    ResourceTag,
    RequestTag,
}

impl ConditionKey {
    fn parse(raw: &str) -> Option<ConditionKey> {
        // CAM condition keys are case-sensitive.
        match raw.trim() {
            "qcs:ip" => Some(ConditionKey::Ip),
            "qcs:current_time" => Some(ConditionKey::CurrentTime),
            "qcs:resource_tag" => Some(ConditionKey::ResourceTag),
            "qcs:request_tag" => Some(ConditionKey::RequestTag),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ConditionKey::Ip => "qcs:ip",
            ConditionKey::CurrentTime => "qcs:current_time",
            ConditionKey::ResourceTag => "qcs:resource_tag",
            ConditionKey::RequestTag => "qcs:request_tag",
        }
    }
}

/// How the values of a multi-valued request key are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Qualifier {
    /// `for_any_value:`, and the default: some request value satisfies the operator.
    ForAny,
    /// `for_all_value:`: every request value satisfies the operator (vacuously true for none).
    ForAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringOp {
    Equal,
    EqualIgnoreCase,
    Like,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateOp {
    Equal,
    NotEqual,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
}

/// An operator (without qualifier or `_if_exist`) with its parsed policy values.
#[derive(Debug, Clone)]
enum Test {
    /// The request value matches one of `values`, or with `negate`, none of them.
    String {
        op: StringOp,
        negate: bool,
        values: Vec<String>,
    },
    /// The request address is in one of `nets`, or with `negate`, in none of them.
    Ip { negate: bool, nets: Vec<IpNet> },
    /// The request time compares as `op` with one of `values` (for `date_not_equal`: equals none).
    Date { op: DateOp, values: Vec<i64> },
}

#[derive(Debug, Clone)]
struct Condition {
    key: ConditionKey,
    qualifier: Qualifier,
    if_exist: bool,
    test: Test,
}

/// The operator names this module knows, without qualifier or `_if_exist` suffix.
#[derive(Debug, Clone, Copy)]
enum OperatorKind {
    String(StringOp, bool),
    Ip(bool),
    Date(DateOp),
}

fn operator_kind(base: &str) -> Option<OperatorKind> {
    Some(match base {
        "string_equal" => OperatorKind::String(StringOp::Equal, false),
        "string_not_equal" => OperatorKind::String(StringOp::Equal, true),
        "string_equal_ignore_case" => OperatorKind::String(StringOp::EqualIgnoreCase, false),
        "string_not_equal_ignore_case" => OperatorKind::String(StringOp::EqualIgnoreCase, true),
        "string_like" => OperatorKind::String(StringOp::Like, false),
        "string_not_like" => OperatorKind::String(StringOp::Like, true),
        "ip_equal" => OperatorKind::Ip(false),
        "ip_not_equal" => OperatorKind::Ip(true),
        "date_equal" => OperatorKind::Date(DateOp::Equal),
        "date_not_equal" => OperatorKind::Date(DateOp::NotEqual),
        "date_greater_than" => OperatorKind::Date(DateOp::GreaterThan),
        "date_greater_than_equal" => OperatorKind::Date(DateOp::GreaterThanEqual),
        "date_less_than" => OperatorKind::Date(DateOp::LessThan),
        "date_less_than_equal" => OperatorKind::Date(DateOp::LessThanEqual),
        _ => return None,
    })
}

fn parse_conditions(operators: &Map<String, Value>) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::new();
    for (raw_operator, keys) in operators {
        let operator = raw_operator.trim().to_ascii_lowercase();
        let (qualifier, rest) = if let Some(rest) = operator.strip_prefix("for_any_value:") {
            (Some(Qualifier::ForAny), rest)
        } else if let Some(rest) = operator.strip_prefix("for_all_value:") {
            (Some(Qualifier::ForAll), rest)
        } else {
            (None, operator.as_str())
        };
        let (if_exist, base) = match rest.strip_suffix("_if_exist") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let kind = operator_kind(base)
            .ok_or_else(|| format!("unknown condition operator \"{raw_operator}\""))?;
        let Value::Object(keys) = keys else {
            return Err(format!(
                "condition {raw_operator}: must map condition keys to values"
            ));
        };
        if keys.is_empty() {
            return Err(format!("condition {raw_operator}: names no condition key"));
        }
        for (raw_key, values) in keys {
            let context = format!("condition {raw_operator} {raw_key}");
            let key = ConditionKey::parse(raw_key).ok_or_else(|| {
                format!("condition {raw_operator}: unknown condition key \"{raw_key}\"")
            })?;
            let multi_valued = matches!(key, ConditionKey::ResourceTag | ConditionKey::RequestTag);
            if qualifier.is_some() && !multi_valued {
                return Err(format!(
                    "{context}: for_any_value/for_all_value apply only to \
                     qcs:resource_tag and qcs:request_tag"
                ));
            }
            let values = condition_values(values).map_err(|e| format!("{context}: {e}"))?;
            let test = match (kind, key) {
                (OperatorKind::String(op, negate), ConditionKey::ResourceTag)
                | (OperatorKind::String(op, negate), ConditionKey::RequestTag) => Test::String {
                    op,
                    negate,
                    values: tag_values(op, &values).map_err(|e| format!("{context}: {e}"))?,
                },
                (OperatorKind::Ip(negate), ConditionKey::Ip) => Test::Ip {
                    negate,
                    nets: values
                        .iter()
                        .map(|v| IpNet::parse(v))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{context}: {e}"))?,
                },
                (OperatorKind::Date(op), ConditionKey::CurrentTime) => Test::Date {
                    op,
                    values: values
                        .iter()
                        .map(|v| parse_date(v))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("{context}: {e}"))?,
                },
                _ => {
                    return Err(format!(
                        "condition operator \"{raw_operator}\" cannot be used with condition \
                         key {}",
                        key.name()
                    ));
                }
            };
            conditions.push(Condition {
                key,
                qualifier: qualifier.unwrap_or(Qualifier::ForAny),
                if_exist,
                test,
            });
        }
    }
    Ok(conditions)
}

/// A condition value: a string, a number, or a non-empty list of those (numbers are kept as
/// their JSON text, which only the date parser accepts).
fn condition_values(value: &Value) -> Result<Vec<String>, String> {
    fn scalar(value: &Value) -> Result<String, String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("values must be strings or numbers".into()),
        }
    }
    match value {
        Value::Array(items) if items.is_empty() => Err("lists no values".into()),
        Value::Array(items) => items.iter().map(scalar).collect(),
        other => Ok(vec![scalar(other)?]),
    }
}

/// Checks tag condition values (`tagKey&tagValue`; a `*` pattern of the `like` operators may
/// stand for the whole pair) and lowercases them for the ignore-case operators.
fn tag_values(op: StringOp, values: &[String]) -> Result<Vec<String>, String> {
    values
        .iter()
        .map(|v| {
            let whole_pair_pattern = op == StringOp::Like && v.contains('*');
            if !(v.contains('&') || whole_pair_pattern) {
                return Err(format!("tag value \"{v}\" must be tagKey&tagValue"));
            }
            Ok(if op == StringOp::EqualIgnoreCase {
                v.to_lowercase()
            } else {
                v.clone()
            })
        })
        .collect()
}

impl Condition {
    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        match self.key {
            ConditionKey::Ip => match ctx.source_ip {
                Some(ip) => self.test.holds_for_ip(ip),
                None => self.if_exist,
            },
            ConditionKey::CurrentTime => self.test.holds_for_time(ctx.now),
            ConditionKey::ResourceTag => self.holds_for_tags(ctx.resource_tags),
            ConditionKey::RequestTag => self.holds_for_tags(ctx.request_tags),
        }
    }

    fn holds_for_tags(&self, tags: &[(String, String)]) -> bool {
        if tags.is_empty() {
            // The key is absent from the request. `for_all_value` is vacuously true over no
            // values (CAM: the request's set must be a subset of the policy's).
            return self.if_exist || self.qualifier == Qualifier::ForAll;
        }
        let mut pairs = tags.iter().map(|(k, v)| format!("{k}&{v}"));
        match self.qualifier {
            Qualifier::ForAny => pairs.any(|pair| self.test.holds_for_string(&pair)),
            Qualifier::ForAll => pairs.all(|pair| self.test.holds_for_string(&pair)),
        }
    }
}

impl Test {
    fn holds_for_string(&self, actual: &str) -> bool {
        let Test::String { op, negate, values } = self else {
            return false;
        };
        let matched = match op {
            StringOp::Equal => values.iter().any(|v| v == actual),
            StringOp::EqualIgnoreCase => {
                let actual = actual.to_lowercase();
                values.contains(&actual)
            }
            StringOp::Like => values.iter().any(|v| glob_match(v, actual, false)),
        };
        matched != *negate
    }

    fn holds_for_ip(&self, ip: IpAddr) -> bool {
        let Test::Ip { negate, nets } = self else {
            return false;
        };
        nets.iter().any(|net| net.contains(ip)) != *negate
    }

    fn holds_for_time(&self, now: i64) -> bool {
        let Test::Date { op, values } = self else {
            return false;
        };
        match op {
            DateOp::Equal => values.contains(&now),
            DateOp::NotEqual => values.iter().all(|&t| now != t),
            DateOp::GreaterThan => values.iter().any(|&t| now > t),
            DateOp::GreaterThanEqual => values.iter().any(|&t| now >= t),
            DateOp::LessThan => values.iter().any(|&t| now < t),
            DateOp::LessThanEqual => values.iter().any(|&t| now <= t),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses

/// An address block; a bare address is a block of its full length. Host bits may be set
/// (`10.121.2.10/24`, as in CAM's own examples): they are ignored.
#[derive(Debug, Clone, Copy)]
struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    fn parse(raw: &str) -> Result<IpNet, String> {
        let text = raw.trim();
        let invalid = || format!("invalid IP address or CIDR block \"{raw}\"");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(invalid)?,
            Some(_) => return Err(invalid()),
        };
        Ok(IpNet { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        fn same_prefix(a: u128, b: u128, prefix: u8, width: u8) -> bool {
            let shift = width - prefix;
            shift >= width || (a >> shift) == (b >> shift)
        }
        // Dual-stack listeners report IPv4 callers as IPv4-mapped IPv6 addresses.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(net.into(), ip.into(), self.prefix, 128)
            }
            (IpAddr::V6(net), IpAddr::V4(ip)) => {
                same_prefix(net.into(), ip.to_ipv6_mapped().into(), self.prefix, 128)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Parses a `qcs:current_time` value into unix seconds: integer unix seconds, or an ISO 8601
/// date-time `YYYY-MM-DD[(T| )hh:mm:ss[.fraction]][Z|±hh:mm]` (no offset means UTC, which CAM
/// requires; fractions of a second are dropped).
fn parse_date(raw: &str) -> Result<i64, String> {
    let text = raw.trim();
    let invalid = || {
        format!(
            "invalid date \"{raw}\": expected RFC 3339 like 2026-11-23T12:00:00Z or unix seconds"
        )
    };
    let integer = text.strip_prefix('-').unwrap_or(text);
    if !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().map_err(|_| invalid());
    }

    let mut rest = text.as_bytes();
    let year = take_digits(&mut rest, 4).ok_or_else(invalid)?;
    let month = take_sep(&mut rest, b'-')
        .and_then(|_| take_digits(&mut rest, 2))
        .ok_or_else(invalid)?;
    let day = take_sep(&mut rest, b'-')
        .and_then(|_| take_digits(&mut rest, 2))
        .ok_or_else(invalid)?;
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut offset_seconds: i64 = 0;
    if let Some((&sep, tail)) = rest.split_first() {
        if !matches!(sep, b'T' | b't' | b' ') {
            return Err(invalid());
        }
        rest = tail;
        // Tolerate stray blanks after the separator (CAM's own examples have them).
        while rest.first() == Some(&b' ') {
            rest = &rest[1..];
        }
        hour = take_digits(&mut rest, 2).ok_or_else(invalid)?;
        minute = take_sep(&mut rest, b':')
            .and_then(|_| take_digits(&mut rest, 2))
            .ok_or_else(invalid)?;
        second = take_sep(&mut rest, b':')
            .and_then(|_| take_digits(&mut rest, 2))
            .ok_or_else(invalid)?;
        if rest.first() == Some(&b'.') {
            rest = &rest[1..];
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(invalid());
            }
            rest = &rest[digits..];
        }
        match rest {
            [] | [b'Z'] | [b'z'] => {}
            [sign @ (b'+' | b'-'), tail @ ..] => {
                let mut tail = tail;
                let oh = take_digits(&mut tail, 2).ok_or_else(invalid)?;
                take_sep(&mut tail, b':');
                let om = take_digits(&mut tail, 2).ok_or_else(invalid)?;
                if !tail.is_empty() || oh > 23 || om > 59 {
                    return Err(invalid());
                }
                let magnitude = i64::from(oh) * 3600 + i64::from(om) * 60;
                offset_seconds = if *sign == b'-' { -magnitude } else { magnitude };
            }
            _ => return Err(invalid()),
        }
    }

    let month = u8::try_from(month)
        .ok()
        .and_then(|m| time::Month::try_from(m).ok())
        .ok_or_else(invalid)?;
    let date =
        time::Date::from_calendar_date(year as i32, month, day as u8).map_err(|_| invalid())?;
    let clock =
        time::Time::from_hms(hour as u8, minute as u8, second as u8).map_err(|_| invalid())?;
    let local = time::PrimitiveDateTime::new(date, clock)
        .assume_utc()
        .unix_timestamp();
    Ok(local - offset_seconds)
}

/// Takes exactly `count` ASCII digits from the front of `rest`.
fn take_digits(rest: &mut &[u8], count: usize) -> Option<u32> {
    let digits = rest.get(..count)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *rest = &rest[count..];
    Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// Takes the byte `sep` from the front of `rest`.
fn take_sep(rest: &mut &[u8], sep: u8) -> Option<()> {
    let (&first, tail) = rest.split_first()?;
    (first == sep).then(|| *rest = tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "ap-guangzhou";
    const OWNER: u64 = 100000000001;
    /// 2026-11-23T12:00:00Z
    const NOON: i64 = 1_795_435_200;

    fn key(id: &str) -> String {
        kms_key_resource(REGION, OWNER, id)
    }

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One request of the table, owning what `RequestContext` borrows.
    #[derive(Clone)]
    struct Req {
        action: String,
        resource: String,
        ip: Option<IpAddr>,
        now: i64,
        resource_tags: Vec<(String, String)>,
        request_tags: Vec<(String, String)>,
    }

    fn req(action: &str, resource: &str) -> Req {
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
        fn ctx(&self) -> RequestContext<'_> {
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
    fn stmt(effect: &str, action: &str, resource: &str, condition: &str) -> String {
        let condition = if condition.is_empty() {
            String::new()
        } else {
            format!(r#","condition":{condition}"#)
        };
        format!(
            r#"{{"version":"2.0","statement":[{{"effect":"{effect}","action":{action},"resource":{resource}{condition}}}]}}"#
        )
    }

    fn allow(action: &str, resource: &str, condition: &str) -> String {
        stmt("allow", action, resource, condition)
    }

    fn deny(action: &str, resource: &str, condition: &str) -> String {
        stmt("deny", action, resource, condition)
    }

    fn q(s: &str) -> String {
        format!("\"{s}\"")
    }

    use Decision::{Allow, ExplicitDeny, ImplicitDeny};

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

    fn parse_err(document: &str) -> String {
        match Policy::parse(document) {
            Ok(p) => panic!("parsed unexpectedly: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parse_errors() {
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "not valid JSON"),
            ("[]".into(), "must be a JSON object"),
            (r#"{"statement":[{"effect":"allow","action":"*","resource":"*"}]}"#.into(), "missing version"),
            (r#"{"version":"1.0","statement":[{"effect":"allow","action":"*","resource":"*"}]}"#.into(), "version must be \"2.0\""),
            (r#"{"version":2.0,"statement":[{"effect":"allow","action":"*","resource":"*"}]}"#.into(), "version must be \"2.0\""),
            (r#"{"version":"2.0"}"#.into(), "missing statement"),
            (r#"{"version":"2.0","statement":[]}"#.into(), "statement must not be empty"),
            (r#"{"version":"2.0","statement":"x"}"#.into(), "statement must be an object"),
            (r#"{"version":"2.0","statement":[],"extra":1}"#.into(), "unknown top-level key \"extra\""),
            (r#"{"version":"2.0","Version":"2.0","statement":[]}"#.into(), "duplicate key"),
            (
                r#"{"version":"2.0","statement":[{"effect":"allow","action":"*","resource":"*"},{"effect":"permit","action":"*","resource":"*"}]}"#.into(),
                "statement 2: effect must be allow or deny",
            ),
            (r#"{"version":"2.0","statement":{"action":"*","resource":"*"}}"#.into(), "statement 1: missing effect"),
            (r#"{"version":"2.0","statement":{"effect":"allow","action":"*"}}"#.into(), "statement 1: missing resource"),
            (r#"{"version":"2.0","statement":{"effect":"allow","resource":"*"}}"#.into(), "statement 1: missing action"),
            (r#"{"version":"2.0","statement":{"effect":"allow","action":[],"resource":"*"}}"#.into(), "action must not be empty"),
            (r#"{"version":"2.0","statement":{"effect":"allow","action":"*","resource":[1]}}"#.into(), "resource must be a string or a list"),
            (r#"{"version":"2.0","statement":{"effect":"allow","action":"*","resource":"*","notaction":"x"}}"#.into(), "statement 1: unknown key \"notaction\""),
            (allow(r#""Encrypt""#, r#""*""#, ""), "action \"Encrypt\""),
            (allow(r#""permid/123""#, r#""*""#, ""), "action \"permid/123\""),
            (allow(r#""kms:""#, r#""*""#, ""), "action \"kms:\""),
            (allow(r#""*""#, r#""kms:key/abc""#, ""), "resource \"kms:key/abc\""),
            (allow(r#""*""#, r#""qcs::kms:ap-guangzhou:uin/1:""#, ""), "resource \"qcs::kms:ap-guangzhou:uin/1:\""),
            (allow(r#""*""#, r#""*""#, r#""ip""#), "condition must be a JSON object"),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equals":{"qcs:ip":"10.0.0.0/8"}}"#), "unknown condition operator \"ip_equals\""),
            (allow(r#""*""#, r#""*""#, r#"{"null_equal":{"qcs:ip":"true"}}"#), "unknown condition operator \"null_equal\""),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:source_ip":"10.0.0.0/8"}}"#), "unknown condition key \"qcs:source_ip\""),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"QCS:IP":"10.0.0.0/8"}}"#), "unknown condition key \"QCS:IP\""),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:resource_tag":"a&b"}}"#), "cannot be used with condition key qcs:resource_tag"),
            (allow(r#""*""#, r#""*""#, r#"{"for_all_value:ip_equal":{"qcs:ip":"10.0.0.0/8"}}"#), "apply only to"),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:ip":"10.0.0.0/33"}}"#), "invalid IP address or CIDR block \"10.0.0.0/33\""),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:ip":["10.0.0.1","10.0.0.300"]}}"#), "invalid IP address or CIDR block \"10.0.0.300\""),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:ip":"10.0.0.0/"}}"#), "invalid IP address"),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{"qcs:ip":[]}}"#), "lists no values"),
            (allow(r#""*""#, r#""*""#, r#"{"ip_equal":{}}"#), "names no condition key"),
            (allow(r#""*""#, r#""*""#, r#"{"date_less_than":{"qcs:current_time":"2026-13-01T00:00:00Z"}}"#), "invalid date \"2026-13-01T00:00:00Z\""),
            (allow(r#""*""#, r#""*""#, r#"{"date_less_than":{"qcs:current_time":"2026-02-30T00:00:00Z"}}"#), "invalid date"),
            (allow(r#""*""#, r#""*""#, r#"{"date_less_than":{"qcs:current_time":"tomorrow"}}"#), "invalid date \"tomorrow\""),
            (allow(r#""*""#, r#""*""#, r#"{"date_less_than":{"qcs:current_time":"2026-01-01T00:00:00Q"}}"#), "invalid date"),
            (allow(r#""*""#, r#""*""#, r#"{"date_less_than":{"qcs:current_time":1.5}}"#), "invalid date \"1.5\""),
            (allow(r#""*""#, r#""*""#, r#"{"string_equal":{"qcs:resource_tag":"env"}}"#), "must be tagKey&tagValue"),
            (allow(r#""*""#, r#""*""#, r#"{"string_equal":{"qcs:resource_tag":true}}"#), "values must be strings or numbers"),
        ];
        for (document, expected) in cases {
            let error = parse_err(&document);
            assert!(
                error.contains(expected),
                "error for {document}\n  was: {error}\n  expected to contain: {expected}"
            );
        }
    }

    #[test]
    fn accepted_forms() {
        // Principal and sid are accepted; statement may be a single object; CAM's own examples
        // put blanks around operator and key names.
        let document = r#"{"version":"2.0","statement":{"sid":"s1","principal":{"qcs":["qcs::cam::uin/1:uin/2"]},
            "effect":"deny","action":"kms:Encrypt","resource":"*",
            "condition":{" date_greater_than ":{"qcs:ip ":"x"}}}}"#;
        // ...but the key must still be right for the operator.
        assert!(parse_err(document).contains("cannot be used with condition key qcs:ip"));
        let document = r#"{"version":"2.0","statement":{"sid":"s1","principal":{"qcs":["qcs::cam::uin/1:uin/2"]},
            "effect":"deny","action":"kms:Encrypt","resource":"*",
            "condition":{" ip_equal ":{"qcs:ip ":"10.0.0.0/8"}, "string_like":{"qcs:request_tag":"*"}}}}"#;
        Policy::parse(document).unwrap();
    }

    #[test]
    fn may_allow() {
        let policy = Policy::parse(&format!(
            r#"{{"version":"2.0","statement":[
                {{"effect":"allow","action":["kms:List*","name/kms:Describe*"],"resource":{},
                  "condition":{{"ip_equal":{{"qcs:ip":"192.0.2.0/24"}}}}}},
                {{"effect":"deny","action":"kms:Encrypt","resource":"*"}}]}}"#,
            q(&key("key-a"))
        ))
        .unwrap();
        assert!(policy.may_allow("kms:ListKeys"));
        assert!(policy.may_allow("kms:listkeys"));
        assert!(policy.may_allow("kms:DescribeKeys"));
        assert!(!policy.may_allow("kms:Encrypt"));
        assert!(!policy.may_allow("kms:GenerateRandom"));
        assert!(!policy.may_allow("ssm:ListSecrets"));
        let everything = Policy::parse(&allow(r#""*""#, r#""*""#, "")).unwrap();
        assert!(everything.may_allow("ssm:ListSecrets"));
        let deny_only = Policy::parse(&deny(r#""*""#, r#""*""#, "")).unwrap();
        assert!(!deny_only.may_allow("kms:ListKeys"));
    }

    #[test]
    fn glob() {
        assert!(glob_match("", "", false));
        assert!(!glob_match("", "a", false));
        assert!(glob_match("*", "", false));
        assert!(glob_match("a*b*c", "aXXbYYc", false));
        assert!(glob_match("a*b*c", "abc", false));
        assert!(!glob_match("a*b*c", "acb", false));
        assert!(glob_match("*ab", "aab", false));
        assert!(glob_match("key/*", "key/a/b:c", false));
        assert!(glob_match("Describe*", "describekey", true));
        assert!(!glob_match("Describe*", "describekey", false));
        assert!(glob_match("名*", "名字", false));
    }

    #[test]
    fn pathological_glob_finishes() {
        let text = "a".repeat(200_000);
        assert!(!glob_match("a*a*a*a*a*a*a*a*a*a*b", &text, false));
        assert!(glob_match("*a*a*a*a*a*a*a*a*a*a", &text, false));
        let policy = Policy::parse(&allow(
            r#""kms:*""#,
            r#""qcs::kms:*:*:key/a*a*a*a*a*a*a*a*b""#,
            "",
        ))
        .unwrap();
        let long = kms_key_resource(REGION, OWNER, &text);
        assert_eq!(
            evaluate([&policy], &req("kms:Encrypt", &long).ctx()),
            ImplicitDeny
        );
    }

    #[test]
    fn dates() {
        let noon = time::macros::datetime!(2026-11-23 12:00 UTC).unix_timestamp();
        assert_eq!(noon, NOON);
        for text in [
            "2026-11-23T12:00:00Z",
            "2026-11-23t12:00:00z",
            "2026-11-23T12:00:00.999Z",
            "2026-11-23 12:00:00",
            "2026-11-23T 12:00:00Z",
            "2026-11-23T20:00:00+08:00",
            "2026-11-23T20:00:00+0800",
            "2026-11-23T07:30:00-04:30",
            "1795435200",
        ] {
            assert_eq!(parse_date(text), Ok(NOON), "{text}");
        }
        assert_eq!(parse_date("2026-11-23"), Ok(NOON - 12 * 3600));
        assert_eq!(parse_date("-1"), Ok(-1));
        for bad in [
            "",
            "2026-11-23T12:00Z",
            "2026-11-23T24:00:00Z",
            "2026-11-23T12:00:60Z",
            "2026-11-23T12:00:00+25:00",
            "2026-11-23T12:00:00.Z",
            "26-11-23T12:00:00Z",
            "2026-11-23X12:00:00Z",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_nets() {
        let net = |s: &str| IpNet::parse(s).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(net("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(net("::/0").contains(ip("2001:db8::1")));
        assert!(net("::/0").contains(ip("203.0.113.9")));
        assert!(net("::ffff:0:0/96").contains(ip("203.0.113.9")));
        assert!(net("10.0.0.1/32").contains(ip("10.0.0.1")));
        assert!(!net("10.0.0.1/32").contains(ip("10.0.0.2")));
        assert!(net("2001:db8::1").contains(ip("2001:db8::1")));
        assert!(!net("2001:db8::1").contains(ip("2001:db8::2")));
        assert!(IpNet::parse("2001:db8::/129").is_err());
        assert!(IpNet::parse("10.0.0.0/+8").is_err());
        assert!(IpNet::parse("10.0.0.0/8/8").is_err());
    }

    #[test]
    fn resource_names() {
        assert_eq!(
            kms_key_resource("ap-guangzhou", 100000000001, "abc-123"),
            "qcs::kms:ap-guangzhou:uin/100000000001:key/abc-123"
        );
        assert_eq!(
            ssm_secret_resource("ap-guangzhou", 100000000001, 100000000002, "my-secret"),
            "qcs::ssm:ap-guangzhou:uin/100000000001:secret/creatorUin/100000000002/my-secret"
        );
    }

    #[test]
    fn error_is_std_error() {
        let error: Box<dyn std::error::Error> = Box::new(PolicyError("x".into()));
        assert_eq!(error.to_string(), "x");
    }
}
