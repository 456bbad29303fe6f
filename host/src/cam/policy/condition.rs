//! Policy conditions: operators, condition keys, IP networks and dates.

use super::*;

// ---------------------------------------------------------------------------------------------
// Conditions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConditionKey {
    Ip,
    CurrentTime,
    ResourceTag,
    RequestTag,
}

impl ConditionKey {
    pub(super) fn parse(raw: &str) -> Option<ConditionKey> {
        // CAM condition keys are case-sensitive.
        match raw.trim() {
            "qcs:ip" => Some(ConditionKey::Ip),
            "qcs:current_time" => Some(ConditionKey::CurrentTime),
            "qcs:resource_tag" => Some(ConditionKey::ResourceTag),
            "qcs:request_tag" => Some(ConditionKey::RequestTag),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
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
pub(super) enum Qualifier {
    /// `for_any_value:`, and the default: some request value satisfies the operator.
    ForAny,
    /// `for_all_value:`: every request value satisfies the operator (vacuously true for none).
    ForAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StringOp {
    Equal,
    EqualIgnoreCase,
    Like,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DateOp {
    Equal,
    NotEqual,
    GreaterThan,
    GreaterThanEqual,
    LessThan,
    LessThanEqual,
}

/// An operator (without qualifier or `_if_exist`) with its parsed policy values.
#[derive(Debug, Clone)]
pub(super) enum Test {
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
pub(super) struct Condition {
    pub(super) key: ConditionKey,
    pub(super) qualifier: Qualifier,
    pub(super) if_exist: bool,
    pub(super) test: Test,
}

/// The operator names this module knows, without qualifier or `_if_exist` suffix.
#[derive(Debug, Clone, Copy)]
pub(super) enum OperatorKind {
    String(StringOp, bool),
    Ip(bool),
    Date(DateOp),
}

pub(super) fn operator_kind(base: &str) -> Option<OperatorKind> {
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

pub(super) fn parse_conditions(operators: &Map<String, Value>) -> Result<Vec<Condition>, String> {
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
pub(super) fn condition_values(value: &Value) -> Result<Vec<String>, String> {
    pub(super) fn scalar(value: &Value) -> Result<String, String> {
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
pub(super) fn tag_values(op: StringOp, values: &[String]) -> Result<Vec<String>, String> {
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
    pub(super) fn holds(&self, ctx: &RequestContext<'_>) -> bool {
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

    pub(super) fn holds_for_tags(&self, tags: &[(String, String)]) -> bool {
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
    pub(super) fn holds_for_string(&self, actual: &str) -> bool {
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

    pub(super) fn holds_for_ip(&self, ip: IpAddr) -> bool {
        let Test::Ip { negate, nets } = self else {
            return false;
        };
        nets.iter().any(|net| net.contains(ip)) != *negate
    }

    pub(super) fn holds_for_time(&self, now: i64) -> bool {
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
pub(super) struct IpNet {
    pub(super) addr: IpAddr,
    pub(super) prefix: u8,
}

impl IpNet {
    pub(super) fn parse(raw: &str) -> Result<IpNet, String> {
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

    pub(super) fn contains(&self, ip: IpAddr) -> bool {
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
pub(super) fn parse_date(raw: &str) -> Result<i64, String> {
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
pub(super) fn take_digits(rest: &mut &[u8], count: usize) -> Option<u32> {
    let digits = rest.get(..count)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *rest = &rest[count..];
    Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
}

/// Takes the byte `sep` from the front of `rest`.
pub(super) fn take_sep(rest: &mut &[u8], sep: u8) -> Option<()> {
    let (&first, tail) = rest.split_first()?;
    (first == sep).then(|| *rest = tail)
}
