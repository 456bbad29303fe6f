//! CreateProductSecret: both accounts made and checked on the server before the secret is
//! stored; whatever fails undoes what this request made.

use super::target::{
    self, check_domain, check_identifier, connect_admin, AccountSpec, Grant, Login, LoginValue,
};
use super::{accounts, parse_time, product_name, secret_type_of, DAY};
use crate::cam::{policy, Caller};
use crate::config::{DatabaseConfig, DatabaseKind};
use crate::error::{Error, Result};
use crate::ssm::{check_description, check_name, NewSecret, SecretValue, Ssm, DEFAULT_VERSION_ID};
use crate::store::{FlowRecord, ProductSecretRecord, SecretRecord, Tag, FLOW_SUCCEEDED};

/// What CreateProductSecret asks for.
pub struct NewProductSecret {
    pub name: String,
    pub description: String,
    pub kms_key_id: Option<String>,
    pub tags: Vec<Tag>,
    pub product: String,
    pub instance_id: String,
    pub user_prefix: String,
    pub domains: Vec<String>,
    pub grants: Vec<Grant>,
    pub enable_rotation: bool,
    pub frequency_days: Option<i64>,
    pub begin_time: Option<String>,
}

/// A request found valid: where the accounts go, and the schedule.
struct Plan {
    db: DatabaseConfig,
    domains: Vec<String>,
    frequency_days: i64,
    next_rotation: i64,
}

impl Ssm {
    /// CreateProductSecret: creates both accounts on the database, checks the first one's
    /// login, stores it as `SSM_Current` and its first `SSM_Rotate_` version. Completes
    /// before it answers (a few round trips to the database); the FlowID it returns names
    /// the finished request. Returns the secret and the FlowID.
    pub fn create_product_secret(
        &self,
        caller: &Caller,
        new: NewProductSecret,
    ) -> Result<(SecretRecord, i64)> {
        let plan = self.plan(caller, &new)?;
        let admin = self.admin_login(caller, &plan.db)?;
        let [a, b] = accounts(&new.user_prefix);
        let spec_a = AccountSpec {
            name: &a,
            domains: &plan.domains,
            grants: &new.grants,
        };
        let spec_b = AccountSpec { name: &b, ..spec_a };
        let login = Login {
            user: a.clone(),
            password: target::new_password(),
        };
        let mut t = connect_admin(&plan.db, &admin)?;
        for s in [&spec_a, &spec_b] {
            if t.exists(s.name)? {
                return Err(Error::TargetFailed(format!(
                    "database `{}`: account `{}` already exists; Keyward creates its own",
                    plan.db.id, s.name
                )));
            }
        }
        // The accounts this request created (each target undoes its own half-made one), so
        // a failure later drops only those: a request that lost a race for the names must
        // not drop the winner's accounts.
        let mut created: Vec<&AccountSpec<'_>> = Vec::new();
        let made = (|| {
            t.create_account(&spec_a, &login.password)?;
            created.push(&spec_a);
            t.create_account(&spec_b, &target::new_password())?;
            created.push(&spec_b);
            t.lock(&spec_b)?;
            target::check_login(&plan.db, &login)?;
            self.store_new(caller, &new, &plan, &login)
        })();
        let secret = match made {
            Ok(s) => s,
            Err(e) => {
                for s in created {
                    if let Err(e) = t.drop_account(s) {
                        tracing::warn!(database = %plan.db.id, account = s.name, error = %e,
                            "could not drop an account of a failed product secret");
                    }
                }
                return Err(e);
            }
        };
        let flow = self.rotation.insert_flow(
            &caller.trail,
            &FlowRecord {
                flow_id: 0,
                region: secret.region.clone(),
                owner_uin: secret.owner_uin,
                secret_name: secret.name.clone(),
                action: "CreateProductSecret".into(),
                status: FLOW_SUCCEEDED,
                description: format!("accounts {a} and {b} created on {}", plan.db.id),
                create_time: self.clock.now(),
            },
        )?;
        Ok((secret, flow))
    }

    /// Checks everything that needs no server, the caller's right to create the secret
    /// included: a caller who may not create it creates no accounts either.
    fn plan(&self, caller: &Caller, new: &NewProductSecret) -> Result<Plan> {
        check_name(&new.name)?;
        check_description(&new.description)?;
        check_identifier("UserNamePrefix", &new.user_prefix, 8)?;
        let db = self.database(&new.product, &new.instance_id)?.clone();
        let domains = match (db.kind, new.domains.is_empty()) {
            (DatabaseKind::Mysql, true) => {
                return Err(Error::MissingParameter(
                    "Domains: at least one host the account may log in from".into(),
                ))
            }
            (_, true) => vec!["%".to_string()],
            (_, false) => new.domains.clone(),
        };
        for d in &domains {
            check_domain(d)?;
        }
        Self::check_grants(&db, &new.grants)?;
        let frequency_days = new.frequency_days.unwrap_or(1);
        if !(1..=365).contains(&frequency_days) {
            return Err(Error::InvalidValue(
                "RotationFrequency must be 1 to 365 days".into(),
            ));
        }
        let next_rotation = match (&new.begin_time, new.enable_rotation) {
            (Some(t), _) if !t.is_empty() => parse_time("RotationBeginTime", t)?,
            (_, true) => {
                return Err(Error::MissingParameter(
                    "RotationBeginTime is required when EnableRotation is true".into(),
                ))
            }
            _ => self.clock.now() + frequency_days * DAY,
        };
        let resource =
            policy::ssm_secret_resource(&caller.region, caller.owner_uin, caller.uin, &new.name);
        caller.check_new(&resource, &new.tags)?;
        if self
            .store
            .get_secret(&caller.region, caller.owner_uin, &new.name)?
            .is_some()
        {
            return Err(Error::SecretExists(new.name.clone()));
        }
        if self.rotation.product_secrets()?.iter().any(|p| {
            p.instance_id == new.instance_id && p.user_prefix.eq_ignore_ascii_case(&new.user_prefix)
        }) {
            return Err(Error::InvalidValue(format!(
                "UserNamePrefix `{}` is already used on {}",
                new.user_prefix, new.instance_id
            )));
        }
        Ok(Plan {
            db,
            domains,
            frequency_days,
            next_rotation,
        })
    }

    /// Stores the secret, its product record and first rotated version; removes the secret
    /// again if the latter two fail.
    fn store_new(
        &self,
        caller: &Caller,
        new: &NewProductSecret,
        plan: &Plan,
        login: &Login,
    ) -> Result<SecretRecord> {
        let now = self.clock.now();
        let secret = self.create(
            caller,
            NewSecret {
                secret_type: secret_type_of(plan.db.kind),
                ssh: Default::default(),
                name: new.name.clone(),
                version_id: DEFAULT_VERSION_ID.into(),
                description: new.description.clone(),
                kms_key_id: new.kms_key_id.clone(),
                value: SecretValue {
                    bytes: LoginValue::to_bytes(login),
                    is_binary: false,
                },
                tags: new.tags.clone(),
            },
        )?;
        let record = ProductSecretRecord {
            region: secret.region.clone(),
            owner_uin: secret.owner_uin,
            name: secret.name.clone(),
            product: product_name(plan.db.kind).into(),
            instance_id: plan.db.id.clone(),
            user_prefix: new.user_prefix.clone(),
            domains: plan.domains.clone(),
            privileges: serde_json::to_string(&new.grants)
                .map_err(|e| Error::Internal(e.to_string()))?,
            rotation_enabled: new.enable_rotation,
            frequency_days: plan.frequency_days,
            next_rotation: plan.next_rotation,
            last_rotation: now,
            retire_account: String::new(),
            retire_at: 0,
            failures: 0,
            retry_at: 0,
        };
        self.register_product_secret(caller, secret, &record, login, now)
    }
}
