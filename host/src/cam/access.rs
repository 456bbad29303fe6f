//! One request's authority: its action, its caller's policies and the request context. KMS
//! and SSM code asks it about each resource they touch, so batch actions are checked per key
//! and nothing reaches a resource without a decision.

use super::policy::{self, Decision, Policy, RequestContext};
use crate::error::{Error, Result};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub struct Access {
    /// `kms:Encrypt`, `ssm:GetSecretValue`, `cam:AddUser`...
    pub action: String,
    /// `None` for the root account, which may do everything.
    policies: Option<Arc<Vec<Policy>>>,
    source_ip: Option<IpAddr>,
    now: i64,
    /// Whether any resource was decided on; a restricted action that ran without one is a
    /// bug the dispatcher refuses to hide.
    checked: AtomicBool,
}

pub type Tags<'a> = &'a [(String, String)];

impl Access {
    pub fn root(action: String, source_ip: Option<IpAddr>, now: i64) -> Self {
        Access {
            action,
            policies: None,
            source_ip,
            now,
            checked: AtomicBool::new(false),
        }
    }

    /// The same caller's authority for another action: a service that acts on a second
    /// resource on the caller's behalf asks the caller's policies about that action.
    pub fn for_action(&self, action: &str) -> Access {
        Access {
            action: action.to_string(),
            policies: self.policies.clone(),
            source_ip: self.source_ip,
            now: self.now,
            checked: AtomicBool::new(false),
        }
    }

    pub fn user(
        action: String,
        policies: Arc<Vec<Policy>>,
        source_ip: Option<IpAddr>,
        now: i64,
    ) -> Self {
        Access {
            action,
            policies: Some(policies),
            source_ip,
            now,
            checked: AtomicBool::new(false),
        }
    }

    pub fn is_restricted(&self) -> bool {
        self.policies.is_some()
    }

    pub fn was_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// The action-level gate, before the request body is read: some policy must name the
    /// action in an allow statement, or the request cannot succeed on any resource.
    pub fn may_run(&self) -> Result<()> {
        match &self.policies {
            None => Ok(()),
            Some(ps) if ps.iter().any(|p| p.may_allow(&self.action)) => Ok(()),
            Some(_) => Err(self.refusal("*")),
        }
    }

    fn decide(&self, resource: &str, resource_tags: Tags<'_>, request_tags: Tags<'_>) -> bool {
        self.decide_any(&[resource], resource_tags, request_tags)
    }

    /// One resource known under several names: a deny of any name wins, then an allow of
    /// any name.
    fn decide_any(&self, names: &[&str], resource_tags: Tags<'_>, request_tags: Tags<'_>) -> bool {
        self.checked.store(true, Ordering::Relaxed);
        let Some(ps) = &self.policies else {
            return true;
        };
        let mut allowed = false;
        for resource in names {
            let ctx = RequestContext {
                action: &self.action,
                resource,
                source_ip: self.source_ip,
                now: self.now,
                resource_tags,
                request_tags,
            };
            match policy::evaluate(ps.iter(), &ctx) {
                Decision::ExplicitDeny => return false,
                Decision::Allow => allowed = true,
                Decision::ImplicitDeny => {}
            }
        }
        allowed
    }

    fn refusal(&self, resource: &str) -> Error {
        Error::Unauthorized(format!(
            "you are not authorized to perform operation ({}) on resource ({resource})",
            self.action
        ))
    }

    /// Decides on an existing resource.
    pub fn check(&self, resource: &str, tags: Tags<'_>) -> Result<()> {
        if self.decide(resource, tags, &[]) {
            Ok(())
        } else {
            Err(self.refusal(resource))
        }
    }

    /// Decides on a resource that has other names besides `names[0]` (the one recorded).
    pub fn check_names(&self, names: &[&str], tags: Tags<'_>) -> Result<()> {
        if self.decide_any(names, tags, &[]) {
            Ok(())
        } else {
            Err(self.refusal(names[0]))
        }
    }

    /// Decides on a resource about to be created with `request_tags`.
    /// Nothing is noted: the creator notes the new resource's name once it has one.
    pub fn check_create(&self, resource: &str, request_tags: Tags<'_>) -> Result<()> {
        if self.decide(resource, &[], request_tags) {
            Ok(())
        } else {
            Err(self.refusal(resource))
        }
    }

    /// For actions that touch no particular resource (`*`).
    pub fn check_global(&self) -> Result<()> {
        if self.decide("*", &[], &[]) {
            Ok(())
        } else {
            Err(self.refusal("*"))
        }
    }

    /// Whether a list action may show this resource (nothing is noted in the audit record).
    pub fn visible(&self, resource: &str, tags: Tags<'_>) -> bool {
        self.decide(resource, tags, &[])
    }

    /// Whether a list action may show a resource known under several names.
    pub fn visible_any(&self, names: &[&str], tags: Tags<'_>) -> bool {
        self.decide_any(names, tags, &[])
    }
}

/// Tags in the form policies compare.
pub fn tag_pairs(tags: &[crate::store::Tag]) -> Vec<(String, String)> {
    tags.iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect()
}
