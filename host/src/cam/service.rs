//! The access-management service: the rules for users, API keys, groups and policies that
//! the extension API (and, later, the console) exposes. Every change runs in the caller's
//! unit of work, so it is audited with the request; quota and last-key rules are checked
//! inside the store transaction that makes the change.

use super::accounts::{Accounts, IssuedCredential, ROOT_UIN};
use super::policy::{cam_resource, CamKind, Policy};
use super::Caller;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::integrity::{Subject, SystemKey};
use crate::store::{
    AccountRecord, AccountStore, ApiKeyRecord, GroupRecord, MetaStore, PolicyRecord, Target,
};
use std::sync::Arc;

/// API keys per account, as in CAM.
pub const MAX_KEYS_PER_ACCOUNT: usize = 10;
/// Set once the authorization tables of an older store have their seal.
const AUTHZ_SEALED_META: &str = "authz_sealed_v1";
/// CAM's limit on a policy document.
const MAX_POLICY_BYTES: usize = 6144;
/// Bound on sub-accounts whose parsed policies are cached.
const POLICY_CACHE_MAX: usize = 10_000;

pub struct Cam {
    pub accounts: Accounts,
    /// Every action's CAM name (`kms:Encrypt`), given by the front's action table, so policy
    /// documents naming none of them are refused.
    known_actions: Vec<String>,
    store: Arc<dyn AccountStore>,
    system: Arc<SystemKey>,
    clock: Arc<dyn Clock>,
    /// Parsed effective policies per sub-account; any change to users, groups, policies or
    /// attachments clears it.
    policies: Cache<u64, Arc<Vec<Policy>>>,
}

/// An API key with the time it was last used (which the daemon flushes periodically).
pub struct ApiKeyView {
    pub key: ApiKeyRecord,
    pub last_used: i64,
}

/// A change to a policy: the fields present are replaced.
pub struct PolicyChange<'a> {
    pub description: Option<&'a str>,
    pub document: Option<&'a str>,
}

impl Cam {
    pub fn new(
        accounts: Accounts,
        store: Arc<dyn AccountStore>,
        system: Arc<SystemKey>,
        clock: Arc<dyn Clock>,
        known_actions: Vec<String>,
    ) -> Self {
        Cam {
            accounts,
            known_actions,
            store,
            system,
            clock,
            policies: Cache::new(POLICY_CACHE_MAX),
        }
    }

    /// Seals the authorization tables of a store written before they had a seal, once per
    /// data directory; afterwards every change through Keyward seals them again, and a
    /// state whose seal does not match is refused.
    pub fn seal_legacy_authorization(
        store: &dyn AccountStore,
        meta: &dyn MetaStore,
        system: Arc<SystemKey>,
    ) -> Result<()> {
        store.install_authz_sealer(system);
        if meta.get_meta(AUTHZ_SEALED_META)?.is_none() {
            store.reseal_authz()?;
            meta.set_meta(AUTHZ_SEALED_META, b"1")?;
        }
        Ok(())
    }

    /// The policies that apply to a sub-account, from an authorization state whose seal
    /// matches: a policy, attachment or membership written into the database by hand grants
    /// nothing, and neither does any other change made with it.
    pub fn policies_for(&self, uin: u64) -> Result<Arc<Vec<Policy>>> {
        if let Some(p) = self.policies.get(&uin) {
            return Ok(p);
        }
        let generation = self.policies.generation();
        let state = self.store.authz_state()?;
        self.system.check(
            &Subject::Authorization {
                digest: state.digest(),
            },
            &state.seal,
        )?;
        let mut parsed = Vec::new();
        for rec in state.effective_policies(uin) {
            match Policy::parse(&rec.document) {
                Ok(p) => parsed.push(p),
                // Documents are validated when stored; one that no longer parses (a newer
                // grammar, a damaged row) grants nothing rather than failing every request.
                Err(e) => tracing::error!(policy_id = rec.policy_id, error = %e,
                    "stored policy does not parse; ignoring it"),
            }
        }
        let parsed = Arc::new(parsed);
        self.policies.insert(generation, uin, parsed.clone());
        Ok(parsed)
    }

    /// Every change to users, groups or policies: parsed policies are dropped, so the change
    /// takes effect with the next request.
    fn changed(&self) {
        self.policies.clear();
    }

    /// The parsed-policy cache, for the store's change feed (`coherence`).
    pub(crate) fn policy_cache(&self) -> &Cache<u64, Arc<Vec<Policy>>> {
        &self.policies
    }

    /// Decides on an existing user, group or policy (and notes it in the audit record).
    fn check(&self, caller: &Caller, kind: CamKind, id: u64) -> Result<()> {
        let name = cam_resource(caller.owner_uin, kind, &id.to_string());
        caller.check(kind.resource_type(), &name, &[])
    }

    /// Decides on one about to be created (its id is not known yet).
    fn check_new(&self, caller: &Caller, kind: CamKind) -> Result<()> {
        caller.check_new(&cam_resource(caller.owner_uin, kind, "*"), &[])
    }

    /// Notes a created user, group or policy in the audit record.
    fn note(&self, caller: &Caller, kind: CamKind, id: u64) {
        let name = cam_resource(caller.owner_uin, kind, &id.to_string());
        caller.trail.resource(kind.resource_type(), &name);
    }

    // ------------------------------------------------------------ users

    fn user(&self, name: &str) -> Result<AccountRecord> {
        self.store
            .account_by_name(name)?
            .ok_or_else(|| Error::UserNotFound(name.to_string()))
    }

    /// GetUser: the user, if the caller may see it.
    pub fn get_user(&self, caller: &Caller, name: &str) -> Result<AccountRecord> {
        let u = self.user(name)?;
        self.check(caller, CamKind::User, u.uin)?;
        Ok(u)
    }

    pub fn user_by_uin(&self, uin: u64) -> Result<AccountRecord> {
        self.store
            .get_account(uin)?
            .ok_or_else(|| Error::UserNotFound(uin.to_string()))
    }

    pub fn users(&self) -> Result<Vec<AccountRecord>> {
        self.store.list_accounts()
    }

    /// Creates a sub-account, with its first API key when `with_api_key`.
    pub fn add_user(
        &self,
        caller: &Caller,
        name: &str,
        remark: &str,
        with_api_key: bool,
    ) -> Result<(AccountRecord, Option<IssuedCredential>)> {
        self.check_new(caller, CamKind::User)?;
        check_name("Name", name)?;
        check_remark(remark)?;
        let rec = self
            .store
            .create_sub_account(&caller.trail, name, remark, self.clock.now())?;
        self.note(caller, CamKind::User, rec.uin);
        let cred = match with_api_key {
            true => Some(self.accounts.issue_api_key(
                &caller.trail,
                rec.uin,
                &caller.region,
                MAX_KEYS_PER_ACCOUNT,
            )?),
            false => None,
        };
        self.changed();
        Ok((rec, cred))
    }

    pub fn update_user(&self, caller: &Caller, name: &str, remark: Option<&str>) -> Result<()> {
        let u = self.get_user(caller, name)?;
        if let Some(remark) = remark {
            check_remark(remark)?;
            self.store
                .update_account_remark(&caller.trail, u.uin, remark)?;
        }
        Ok(())
    }

    pub fn delete_user(&self, caller: &Caller, name: &str) -> Result<()> {
        let u = self.get_user(caller, name)?;
        if u.kind == "root" {
            return Err(Error::OperationNotPermitted(
                "the root account cannot be deleted".into(),
            ));
        }
        self.store.delete_account(&caller.trail, u.uin)?;
        self.accounts.forget(|c| c.uin == u.uin);
        self.changed();
        Ok(())
    }

    // ------------------------------------------------------------ API keys

    /// The account whose keys a request manages: `target`, or the caller. Only the root
    /// account manages the root's keys, so no sub-account can mint itself root credentials.
    fn key_owner(&self, caller: &Caller, target: Option<u64>) -> Result<AccountRecord> {
        let owner = self.user_by_uin(target.unwrap_or(caller.uin))?;
        if owner.uin == ROOT_UIN && caller.uin != ROOT_UIN {
            return Err(Error::OperationNotPermitted(
                "only the root account manages the root account's API keys".into(),
            ));
        }
        // A grant names the users whose keys it covers (`…:uin/<uin>`).
        self.check(caller, CamKind::User, owner.uin)?;
        Ok(owner)
    }

    /// The key `id`, after checking it belongs to the target account.
    fn owned_key(&self, caller: &Caller, id: &str, target: Option<u64>) -> Result<ApiKeyRecord> {
        let key = self
            .store
            .get_api_key(id)?
            .ok_or_else(|| Error::AccessKeyNotFound(id.to_string()))?;
        let owner = self.key_owner(caller, Some(target.unwrap_or(key.uin)))?;
        if owner.uin != key.uin {
            return Err(Error::AccessKeyNotFound(id.to_string()));
        }
        Ok(key)
    }

    pub fn create_access_key(
        &self,
        caller: &Caller,
        target: Option<u64>,
    ) -> Result<IssuedCredential> {
        let owner = self.key_owner(caller, target)?;
        self.accounts.issue_api_key(
            &caller.trail,
            owner.uin,
            &caller.region,
            MAX_KEYS_PER_ACCOUNT,
        )
    }

    pub fn set_access_key_enabled(
        &self,
        caller: &Caller,
        id: &str,
        target: Option<u64>,
        enabled: bool,
    ) -> Result<()> {
        let key = self.owned_key(caller, id, target)?;
        self.accounts.set_enabled(&caller.trail, &key, enabled)
    }

    pub fn delete_access_key(&self, caller: &Caller, id: &str, target: Option<u64>) -> Result<()> {
        let key = self.owned_key(caller, id, target)?;
        // The root account keeps at least one key, decided in the deleting transaction.
        self.store
            .delete_api_key(&caller.trail, &key.secret_id, Some(ROOT_UIN))?;
        self.accounts.forget(|c| c.secret_id == key.secret_id);
        Ok(())
    }

    pub fn access_keys(&self, caller: &Caller, target: Option<u64>) -> Result<Vec<ApiKeyView>> {
        let owner = self.key_owner(caller, target)?;
        Ok(self
            .store
            .list_api_keys(owner.uin)?
            .into_iter()
            .map(|key| ApiKeyView {
                last_used: self.accounts.last_used(&key),
                key,
            })
            .collect())
    }

    // ------------------------------------------------------------ groups

    pub fn create_group(&self, caller: &Caller, name: &str, remark: &str) -> Result<GroupRecord> {
        self.check_new(caller, CamKind::Group)?;
        check_name("GroupName", name)?;
        check_remark(remark)?;
        let g = self
            .store
            .create_group(&caller.trail, name, remark, self.clock.now())?;
        self.note(caller, CamKind::Group, g.group_id);
        Ok(g)
    }

    pub fn delete_group(&self, caller: &Caller, id: u64) -> Result<()> {
        self.group(id)?;
        self.check(caller, CamKind::Group, id)?;
        if !self.store.delete_group(&caller.trail, id)? {
            return Err(Error::GroupNotFound(id.to_string()));
        }
        self.changed();
        Ok(())
    }

    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        self.store.list_groups()
    }

    fn group(&self, id: u64) -> Result<GroupRecord> {
        self.store
            .get_group(id)?
            .ok_or_else(|| Error::GroupNotFound(id.to_string()))
    }

    /// Adds or removes (group, uin) memberships; every pair is validated first, so a bad
    /// entry changes nothing.
    pub fn set_memberships(&self, caller: &Caller, pairs: &[(u64, u64)], add: bool) -> Result<()> {
        for &(gid, uin) in pairs {
            self.user_by_uin(uin)?;
            self.group(gid)?;
            self.check(caller, CamKind::Group, gid)?;
            self.check(caller, CamKind::User, uin)?;
        }
        for &(gid, uin) in pairs {
            match add {
                true => self.store.add_group_member(&caller.trail, gid, uin)?,
                false => self.store.remove_group_member(&caller.trail, gid, uin)?,
            };
        }
        self.changed();
        Ok(())
    }

    pub fn group_members(&self, caller: &Caller, id: u64) -> Result<Vec<AccountRecord>> {
        self.group(id)?;
        self.check(caller, CamKind::Group, id)?;
        let mut users = Vec::new();
        for uin in self.store.group_members(id)? {
            users.extend(self.store.get_account(uin)?);
        }
        Ok(users)
    }

    // ------------------------------------------------------------ policies

    pub fn create_policy(
        &self,
        caller: &Caller,
        name: &str,
        description: &str,
        document: &str,
    ) -> Result<PolicyRecord> {
        self.check_new(caller, CamKind::Policy)?;
        check_name("PolicyName", name)?;
        check_remark(description)?;
        self.validate_document(document)?;
        let p = self.store.create_policy(
            &caller.trail,
            name,
            description,
            document,
            self.clock.now(),
        )?;
        self.note(caller, CamKind::Policy, p.policy_id);
        Ok(p)
    }

    pub fn update_policy(&self, caller: &Caller, id: u64, change: PolicyChange<'_>) -> Result<()> {
        self.policy(caller, id)?;
        if let Some(d) = change.document {
            self.validate_document(d)?;
        }
        if let Some(d) = change.description {
            check_remark(d)?;
        }
        let now = self.clock.now();
        if !self
            .store
            .update_policy(&caller.trail, id, change.description, change.document, now)?
        {
            return Err(Error::PolicyNotFound(id.to_string()));
        }
        self.changed();
        Ok(())
    }

    /// Deletes policies; every id is checked first, so an unknown one deletes nothing.
    pub fn delete_policies(&self, caller: &Caller, ids: &[u64]) -> Result<()> {
        for &id in ids {
            self.policy(caller, id)?;
        }
        for &id in ids {
            self.store.delete_policy(&caller.trail, id)?;
        }
        self.changed();
        Ok(())
    }

    /// A document is stored only if it parses and every action it names exists.
    fn validate_document(&self, doc: &str) -> Result<()> {
        if doc.len() > MAX_POLICY_BYTES {
            return Err(Error::InvalidPolicyDocument(format!(
                "a policy document may be at most {MAX_POLICY_BYTES} bytes"
            )));
        }
        let policy = Policy::parse(doc).map_err(|e| Error::InvalidPolicyDocument(e.to_string()))?;
        let unknown = policy.unknown_actions(&self.known_actions);
        if !unknown.is_empty() {
            return Err(Error::InvalidPolicyDocument(format!(
                "no action is named {} (actions are `service:Action` of kms, ssm, keyward or \
                 cloudaudit, with * wildcards)",
                unknown.join(", ")
            )));
        }
        Ok(())
    }

    /// A policy, if the caller may act on it.
    pub fn policy(&self, caller: &Caller, id: u64) -> Result<PolicyRecord> {
        let p = self
            .store
            .get_policy(id)?
            .ok_or_else(|| Error::PolicyNotFound(id.to_string()))?;
        self.check(caller, CamKind::Policy, id)?;
        Ok(p)
    }

    pub fn policies(&self) -> Result<Vec<PolicyRecord>> {
        self.store.list_policies()
    }

    /// Attaches or detaches a policy. Policies attach to sub-accounts and groups; the root
    /// account is always allowed.
    pub fn set_attachment(
        &self,
        caller: &Caller,
        policy_id: u64,
        target: Target,
        attach: bool,
    ) -> Result<()> {
        let p = self.policy(caller, policy_id)?;
        self.check_target(caller, target)?;
        if attach {
            let now = self.clock.now();
            self.store
                .attach_policy(&caller.trail, p.policy_id, target, now)?;
        } else {
            self.store
                .detach_policy(&caller.trail, p.policy_id, target)?;
        }
        self.changed();
        Ok(())
    }

    fn check_target(&self, caller: &Caller, target: Target) -> Result<()> {
        match target {
            Target::User(uin) if self.user_by_uin(uin)?.kind == "root" => {
                Err(Error::OperationNotPermitted(
                    "the root account is always allowed; policies attach to sub-accounts".into(),
                ))
            }
            Target::User(uin) => self.check(caller, CamKind::User, uin),
            Target::Group(gid) => {
                self.group(gid)?;
                self.check(caller, CamKind::Group, gid)
            }
        }
    }

    /// The policies attached to a user (who must exist) or a group.
    pub fn attached(&self, caller: &Caller, target: Target) -> Result<Vec<PolicyRecord>> {
        match target {
            Target::User(uin) => {
                self.user_by_uin(uin)?;
                self.check(caller, CamKind::User, uin)?;
            }
            Target::Group(gid) => self.check(caller, CamKind::Group, gid)?,
        }
        self.store.attached_policies(target)
    }
}

/// CAM's user, group and policy name rule.
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidValue(format!(
            "{what} must be 1 to 64 characters of letters, digits and _+=,.@-"
        )))
    }
}

fn check_remark(remark: &str) -> Result<()> {
    if remark.len() > 255 {
        return Err(Error::InvalidValue(
            "Remark may be at most 255 bytes".into(),
        ));
    }
    Ok(())
}
