//! CAM policy documents (host/src/cam/policy): `Policy::parse` on arbitrary text, and for a
//! document that parses, `may_allow`, `unknown_actions` and `evaluate` against a fixed set of
//! requests that reach every condition key (IPv4, IPv6 and IPv4-mapped callers, no caller
//! address, times around the epoch and now, resource and request tags, `*` resources).
#![no_main]

use keyward::cam::policy::{self, Decision, Policy, RequestContext};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

const ACTIONS: &[&str] = &[
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:CreateKey",
    "kms:ListKeys",
    "ssm:GetSecretValue",
    "cam:CreateUser",
    "keyward:CreateApiKey",
    "name/kms:Encrypt",
    "",
    "*",
    ":",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse(text) else {
        return;
    };
    for action in ACTIONS {
        let _ = policy.may_allow(action);
    }
    let known: Vec<String> = ACTIONS.iter().map(|a| a.to_string()).collect();
    let _ = policy.unknown_actions(&known);

    let resources = [
        policy::kms_key_resource(
            "ap-guangzhou",
            100000000001,
            "11111111-2222-3333-4444-555555555555",
        ),
        policy::ssm_secret_resource("ap-guangzhou", 100000000001, 100000000002, "db/password"),
        policy::cam_resource(100000000001, policy::CamKind::User, "100000000002"),
        policy::cam_resource(100000000001, policy::CamKind::Policy, "*"),
        "*".to_string(),
        "qcs::kms::::".to_string(),
    ];
    let ips: [Option<IpAddr>; 5] = [
        None,
        Some("10.121.2.10".parse().unwrap()),
        Some("::ffff:192.168.0.1".parse().unwrap()),
        Some("2001:db8::1".parse().unwrap()),
        Some("0.0.0.0".parse().unwrap()),
    ];
    let tags = [
        ("team".to_string(), "payments".to_string()),
        ("env".to_string(), "PROD".to_string()),
        ("".to_string(), "&*".to_string()),
    ];
    let times = [0i64, 1_795_359_828, -1, i64::MAX, i64::MIN];
    for (i, action) in ACTIONS.iter().enumerate() {
        for (j, resource) in resources.iter().enumerate() {
            let ctx = RequestContext {
                action,
                resource,
                source_ip: ips[(i + j) % ips.len()],
                now: times[(i * 3 + j) % times.len()],
                resource_tags: &tags[..(i % 4).min(tags.len())],
                request_tags: &tags[(j % 4).min(tags.len())..],
            };
            let decision = policy::evaluate([&policy], &ctx);
            // Policies only ever add to the decision: two copies decide the same as one.
            assert_eq!(decision, policy::evaluate([&policy, &policy], &ctx));
            if decision == Decision::Allow {
                // An allow names the action in some allow statement.
                assert!(
                    policy.may_allow(action),
                    "allowed {action} without may_allow"
                );
            }
        }
    }
});
