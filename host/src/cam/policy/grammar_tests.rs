//! Policy grammar: parse errors, accepted forms, globs, dates, IP networks, names.

use super::tests::*;
use super::*;

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
