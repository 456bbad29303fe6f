//! Access management: accounts (root and sub-accounts), API keys, groups, policies and their
//! attachments, and the store operations on them.

use super::audit::Trail;
use crate::error::Result;
use sha2::{Digest, Sha256};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub uin: u64,
    pub name: String,
    pub kind: String,
    pub remark: String,
    pub create_time: i64,
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub secret_id: String,
    pub uin: u64,
    pub sealed_secret: Vec<u8>,
    pub enabled: bool,
    pub create_time: i64,
    /// Unix seconds of the last authenticated request (0: never), flushed periodically.
    pub last_used: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub group_id: u64,
    pub name: String,
    pub remark: String,
    pub create_time: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    pub policy_id: u64,
    pub name: String,
    pub description: String,
    pub document: String,
    pub create_time: i64,
    pub update_time: i64,
}

/// What a policy is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    User(u64),
    Group(u64),
}

impl Target {
    pub(crate) fn parts(self) -> (&'static str, i64) {
        match self {
            Target::User(u) => ("user", u as i64),
            Target::Group(g) => ("group", g as i64),
        }
    }
}

/// Everything that decides what a sub-account may do, read in one transaction, with the
/// seal the last change through Keyward left on it.
#[derive(Debug, Clone, Default)]
pub struct AuthzState {
    /// `(uin, kind)` of every account.
    pub accounts: Vec<(u64, String)>,
    pub policies: Vec<PolicyRecord>,
    /// `(policy_id, target)`.
    pub attachments: Vec<(u64, Target)>,
    /// `(group_id, uin)`.
    pub memberships: Vec<(u64, u64)>,
    /// The seal over `digest()` (empty in a store written before seals existed).
    pub seal: Vec<u8>,
}

impl AuthzState {
    /// A digest of the state in a canonical order (each list sorted), so two readings of
    /// the same rows agree whatever order the database returns them in.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"keyward/authorization/v1\0");
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_be_bytes());
            h.update(b);
        };
        let mut accounts = self.accounts.clone();
        accounts.sort();
        field(&(accounts.len() as u64).to_be_bytes());
        for (uin, kind) in &accounts {
            field(&uin.to_be_bytes());
            field(kind.as_bytes());
        }
        let mut policies: Vec<_> = self
            .policies
            .iter()
            .map(|p| (p.policy_id, p.document.as_str()))
            .collect();
        policies.sort();
        field(&(policies.len() as u64).to_be_bytes());
        for (id, document) in policies {
            field(&id.to_be_bytes());
            field(document.as_bytes());
        }
        let mut attachments: Vec<_> = self
            .attachments
            .iter()
            .map(|&(p, t)| (p, t.parts()))
            .collect();
        attachments.sort();
        field(&(attachments.len() as u64).to_be_bytes());
        for (policy, (kind, id)) in attachments {
            field(&policy.to_be_bytes());
            field(kind.as_bytes());
            field(&id.to_be_bytes());
        }
        let mut memberships = self.memberships.clone();
        memberships.sort();
        field(&(memberships.len() as u64).to_be_bytes());
        for (group, uin) in memberships {
            field(&group.to_be_bytes());
            field(&uin.to_be_bytes());
        }
        h.finalize().into()
    }

    /// The policies that apply to `uin`: attached to it or to one of its groups.
    pub fn effective_policies(&self, uin: u64) -> Vec<&PolicyRecord> {
        let groups: Vec<u64> = self
            .memberships
            .iter()
            .filter(|(_, u)| *u == uin)
            .map(|(g, _)| *g)
            .collect();
        let applies = |t: &Target| match *t {
            Target::User(u) => u == uin,
            Target::Group(g) => groups.contains(&g),
        };
        self.policies
            .iter()
            .filter(|p| {
                self.attachments
                    .iter()
                    .any(|(id, t)| *id == p.policy_id && applies(t))
            })
            .collect()
    }
}

/// Seals the authorization state inside each write that changes it. The seal is an
/// HSM-keyed tag the service layer makes; the store only asks for it, so a row changed by
/// writing to the database leaves a state whose seal no longer matches.
pub trait AuthzSealer: Send + Sync {
    fn seal_authz(&self, digest: &[u8; 32]) -> Result<Vec<u8>>;
    /// Fails (`IntegrityFailure`) unless `seal` was made for `digest`.
    fn check_authz(&self, digest: &[u8; 32], seal: &[u8]) -> Result<()>;
}

pub trait AccountStore: Send + Sync {
    /// Installs the sealer every change to the authorization state uses (once, at start).
    fn install_authz_sealer(&self, sealer: Arc<dyn AuthzSealer>);
    /// The authorization state and its seal, read in one transaction.
    fn authz_state(&self) -> Result<AuthzState>;
    /// Seals the current state (start-up of a store written before seals existed).
    fn reseal_authz(&self) -> Result<()>;
    fn insert_account(&self, a: &AccountRecord) -> Result<()>;
    /// Inserts an API key, refusing (`InvalidValue`) when its account already holds
    /// `max_per_account`: counted in the inserting transaction, so two requests cannot both
    /// take the last place.
    fn insert_api_key(&self, trail: &Trail, k: &ApiKeyRecord, max_per_account: usize)
        -> Result<()>;
    fn get_api_key(&self, secret_id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Creates a sub-account with the next free uin; refuses a duplicate name.
    fn create_sub_account(
        &self,
        trail: &Trail,
        name: &str,
        remark: &str,
        now: i64,
    ) -> Result<AccountRecord>;
    fn get_account(&self, uin: u64) -> Result<Option<AccountRecord>>;
    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>>;
    fn list_accounts(&self) -> Result<Vec<AccountRecord>>;
    fn update_account_remark(&self, trail: &Trail, uin: u64, remark: &str) -> Result<bool>;
    /// Deletes a sub-account with its API keys, memberships and attachments.
    fn delete_account(&self, trail: &Trail, uin: u64) -> Result<bool>;

    fn list_api_keys(&self, uin: u64) -> Result<Vec<ApiKeyRecord>>;
    /// Sets a key's status together with its secret, re-sealed for the new status (the
    /// sealing binds the status, so the two change together or not at all).
    fn set_api_key_enabled(
        &self,
        trail: &Trail,
        secret_id: &str,
        enabled: bool,
        sealed_secret: &[u8],
    ) -> Result<bool>;
    /// Deletes an API key. With `keep_last_of`, refuses (`OperationNotPermitted`) to delete
    /// the last key of that account, decided in the deleting transaction.
    fn delete_api_key(
        &self,
        trail: &Trail,
        secret_id: &str,
        keep_last_of: Option<u64>,
    ) -> Result<bool>;
    /// Records last-use times (batched by the caller; not audited).
    fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()>;

    fn create_group(
        &self,
        trail: &Trail,
        name: &str,
        remark: &str,
        now: i64,
    ) -> Result<GroupRecord>;
    fn get_group(&self, group_id: u64) -> Result<Option<GroupRecord>>;
    fn list_groups(&self) -> Result<Vec<GroupRecord>>;
    fn delete_group(&self, trail: &Trail, group_id: u64) -> Result<bool>;
    /// Returns false if the user already was a member.
    fn add_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool>;
    fn remove_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool>;
    fn group_members(&self, group_id: u64) -> Result<Vec<u64>>;
    fn groups_of(&self, uin: u64) -> Result<Vec<GroupRecord>>;

    fn create_policy(
        &self,
        trail: &Trail,
        name: &str,
        description: &str,
        document: &str,
        now: i64,
    ) -> Result<PolicyRecord>;
    fn get_policy(&self, policy_id: u64) -> Result<Option<PolicyRecord>>;
    fn list_policies(&self) -> Result<Vec<PolicyRecord>>;
    /// Replaces the given fields; `None` keeps the stored value.
    fn update_policy(
        &self,
        trail: &Trail,
        policy_id: u64,
        description: Option<&str>,
        document: Option<&str>,
        now: i64,
    ) -> Result<bool>;
    fn delete_policy(&self, trail: &Trail, policy_id: u64) -> Result<bool>;
    /// Returns false if the policy was already attached there.
    fn attach_policy(
        &self,
        trail: &Trail,
        policy_id: u64,
        target: Target,
        now: i64,
    ) -> Result<bool>;
    fn detach_policy(&self, trail: &Trail, policy_id: u64, target: Target) -> Result<bool>;
    fn attached_policies(&self, target: Target) -> Result<Vec<PolicyRecord>>;
}
