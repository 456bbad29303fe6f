//! PostgreSQL: accounts, API keys, groups, policies and attachments. Each write is one
//! transaction that also carries the request's audit record. Writes to the authorization
//! state take the `authz` advisory lock first, so two daemons' changes (and their seals)
//! happen one after the other; API-key quotas lock their account's row.

use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel, Row, Transaction};

const ACCOUNT_COLS: &str = "uin, name, kind, remark, create_time";

const API_KEY_COLS: &str = "secret_id, uin, sealed_secret, status, create_time, last_used";

const POLICY_COLS: &str = "p.policy_id, p.name, p.description, p.document, p.create_time, \
                           p.update_time";

const GROUP_COLS: &str = "g.group_id, g.name, g.remark, g.create_time";

fn account_row(r: &Row) -> Result<AccountRecord> {
    Ok(AccountRecord {
        uin: u64_at(r, 0)?,
        name: r.try_get(1)?,
        kind: r.try_get(2)?,
        remark: r.try_get(3)?,
        create_time: r.try_get(4)?,
    })
}

fn api_key_row(r: &Row) -> Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        secret_id: r.try_get(0)?,
        uin: u64_at(r, 1)?,
        sealed_secret: r.try_get(2)?,
        enabled: r.try_get::<_, String>(3)? == "Enabled",
        create_time: r.try_get(4)?,
        last_used: r.try_get(5)?,
    })
}

fn group_row(r: &Row) -> Result<GroupRecord> {
    Ok(GroupRecord {
        group_id: u64_at(r, 0)?,
        name: r.try_get(1)?,
        remark: r.try_get(2)?,
        create_time: r.try_get(3)?,
    })
}

fn policy_row(r: &Row) -> Result<PolicyRecord> {
    Ok(PolicyRecord {
        policy_id: u64_at(r, 0)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        document: r.try_get(3)?,
        create_time: r.try_get(4)?,
        update_time: r.try_get(5)?,
    })
}

fn rows<T>(
    c: &mut impl GenericClient,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
    row: fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    c.query(sql, p)?.iter().map(row).collect()
}

fn one<T>(
    c: &mut impl GenericClient,
    sql: &str,
    p: &[&(dyn ToSql + Sync)],
    row: fn(&Row) -> Result<T>,
) -> Result<Option<T>> {
    c.query_opt(sql, p)?.as_ref().map(row).transpose()
}

/// A duplicate name, as the access-management error `what` names.
fn conflict(e: postgres::Error, what: &str, name: &str) -> Error {
    if is_unique_violation(&e) {
        Error::IamConflict(format!("a {what} named `{name}` already exists"))
    } else {
        e.into()
    }
}

/// The next identifier of sequence `name`, inside the caller's transaction: never one that
/// was handed out before, even if its row was deleted (a reused uin would inherit the rights
/// that policies grant to the deleted account's uin). The sequence row is updated in place,
/// so concurrent transactions take turns on it; `floor` (the table's MAX+1) keeps ids above
/// rows written without the sequence (the root account's fixed uin).
fn next_id(tx: &mut Transaction<'_>, name: &str, floor: &str) -> Result<i64> {
    let floor: i64 = tx.query_one(floor, &[])?.try_get(0)?;
    let next: i64 = tx
        .query_one(
            "INSERT INTO id_sequences (name, next) VALUES ($1, GREATEST($2::BIGINT, 1) + 1) \
             ON CONFLICT (name) DO UPDATE \
             SET next = GREATEST(id_sequences.next, $2::BIGINT) + 1 RETURNING next",
            &[&name, &floor],
        )?
        .try_get(0)?;
    Ok(next - 1)
}

fn api_key_count(c: &mut impl GenericClient, uin: u64) -> Result<u64> {
    u64_at(
        &c.query_one(
            "SELECT COUNT(*) FROM api_keys WHERE uin = $1",
            &[&(uin as i64)],
        )?,
        0,
    )
}

/// Locks an account's row (API-key quotas and the last-key rule are decided under it).
fn lock_account(tx: &mut Transaction<'_>, uin: u64) -> Result<()> {
    tx.query_opt(
        "SELECT 1 FROM accounts WHERE uin = $1 FOR UPDATE",
        &[&(uin as i64)],
    )?;
    Ok(())
}

const AUTHZ_SEAL_META: &str = "authz_seal";

fn authz_state_in(c: &mut impl GenericClient) -> Result<AuthzState> {
    let accounts = rows(c, "SELECT uin, kind FROM accounts", &[], |r| {
        Ok((u64_at(r, 0)?, r.try_get(1)?))
    })?;
    let policies = rows(
        c,
        &format!("SELECT {POLICY_COLS} FROM policies p ORDER BY p.policy_id"),
        &[],
        policy_row,
    )?;
    let attachments = rows(
        c,
        "SELECT policy_id, target_kind, target_id FROM policy_attachments",
        &[],
        |r| {
            let id = u64_at(r, 2)?;
            let target = match r.try_get::<_, String>(1)?.as_str() {
                "user" => Target::User(id),
                _ => Target::Group(id),
            };
            Ok((u64_at(r, 0)?, target))
        },
    )?;
    let memberships = rows(c, "SELECT group_id, uin FROM group_members", &[], |r| {
        Ok((u64_at(r, 0)?, u64_at(r, 1)?))
    })?;
    let seal = one(
        c,
        "SELECT value FROM meta WHERE name = $1",
        &[&AUTHZ_SEAL_META],
        |r| Ok(r.try_get(0)?),
    )?
    .unwrap_or_default();
    Ok(AuthzState {
        accounts,
        policies,
        attachments,
        memberships,
        seal,
    })
}

impl PgStore {
    /// A write that changes who may do what: the state it starts from must carry a valid
    /// seal (so a change through Keyward never blesses rows written by hand), and the new
    /// state is sealed in the same transaction, so the change and its seal commit together.
    fn authz_write<T>(
        &self,
        trail: &Trail,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.sealed_write(trail, true, f)
    }

    fn sealed_write<T>(
        &self,
        trail: &Trail,
        check_before: bool,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let sealer = self
            .authz_sealer
            .get()
            .ok_or_else(|| Error::Internal("no authorization sealer installed".into()))?;
        self.write(trail, |tx| {
            // One authorization change at a time, across daemons: the state read before and
            // after is this transaction's own, and no other change slips in between.
            lock(tx, "authz")?;
            if check_before {
                let before = authz_state_in(tx)?;
                sealer.check_authz(&before.digest(), &before.seal)?;
            }
            let out = f(tx)?;
            let seal = sealer.seal_authz(&authz_state_in(tx)?.digest())?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&AUTHZ_SEAL_META, &seal],
            )?;
            Ok(out)
        })
    }
}

impl AccountStore for PgStore {
    fn install_authz_sealer(&self, sealer: Arc<dyn AuthzSealer>) {
        let _ = self.authz_sealer.set(sealer);
    }

    fn authz_state(&self) -> Result<AuthzState> {
        // One snapshot for all five reads.
        self.with(|c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let state = authz_state_in(&mut tx)?;
            tx.commit()?;
            Ok(state)
        })
    }

    fn reseal_authz(&self) -> Result<()> {
        self.sealed_write(&Trail::off(), false, |_| Ok(()))
    }

    fn insert_account(&self, a: &AccountRecord) -> Result<()> {
        // Start-up (the root account), not a request: no record.
        self.authz_write(&Trail::off(), |tx| {
            tx.execute(
                "INSERT INTO accounts (uin, name, kind, remark, create_time) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&(a.uin as i64), &a.name, &a.kind, &a.remark, &a.create_time],
            )?;
            Ok(())
        })
    }

    fn insert_api_key(
        &self,
        trail: &Trail,
        k: &ApiKeyRecord,
        max_per_account: usize,
    ) -> Result<()> {
        self.write(trail, |tx| {
            lock_account(tx, k.uin)?;
            if api_key_count(tx, k.uin)? >= max_per_account as u64 {
                return Err(Error::InvalidValue(format!(
                    "an account may hold at most {max_per_account} API keys"
                )));
            }
            tx.execute(
                "INSERT INTO api_keys (secret_id, uin, sealed_secret, status, create_time) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &k.secret_id,
                    &(k.uin as i64),
                    &k.sealed_secret,
                    &(if k.enabled { "Enabled" } else { "Disabled" }),
                    &k.create_time,
                ],
            )?;
            Ok(())
        })
    }

    fn get_api_key(&self, secret_id: &str) -> Result<Option<ApiKeyRecord>> {
        let sql = format!("SELECT {API_KEY_COLS} FROM api_keys WHERE secret_id = $1");
        self.with(|c| one(c, &sql, &[&secret_id], api_key_row))
    }

    fn create_sub_account(
        &self,
        trail: &Trail,
        name: &str,
        remark: &str,
        now: i64,
    ) -> Result<AccountRecord> {
        self.authz_write(trail, |tx| {
            let uin = next_id(tx, "uin", "SELECT COALESCE(MAX(uin), 0) + 1 FROM accounts")?;
            tx.execute(
                "INSERT INTO accounts (uin, name, kind, remark, create_time) \
                 VALUES ($1, $2, 'sub', $3, $4)",
                &[&uin, &name, &remark, &now],
            )
            .map_err(|e| conflict(e, "user", name))?;
            Ok(AccountRecord {
                uin: uin as u64,
                name: name.to_string(),
                kind: "sub".into(),
                remark: remark.to_string(),
                create_time: now,
            })
        })
    }

    fn get_account(&self, uin: u64) -> Result<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE uin = $1");
        self.with(|c| one(c, &sql, &[&(uin as i64)], account_row))
    }

    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE name = $1");
        self.with(|c| one(c, &sql, &[&name], account_row))
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY uin");
        self.with(|c| rows(c, &sql, &[], account_row))
    }

    fn update_account_remark(&self, trail: &Trail, uin: u64, remark: &str) -> Result<bool> {
        self.write(trail, |tx| {
            Ok(tx.execute(
                "UPDATE accounts SET remark = $2 WHERE uin = $1",
                &[&(uin as i64), &remark],
            )? > 0)
        })
    }

    fn delete_account(&self, trail: &Trail, uin: u64) -> Result<bool> {
        let uin = uin as i64;
        self.authz_write(trail, |tx| {
            tx.execute("DELETE FROM api_keys WHERE uin = $1", &[&uin])?;
            tx.execute(
                "DELETE FROM policy_attachments WHERE target_kind = 'user' AND target_id = $1",
                &[&uin],
            )?;
            Ok(tx.execute(
                "DELETE FROM accounts WHERE uin = $1 AND kind = 'sub'",
                &[&uin],
            )? > 0)
        })
    }

    fn list_api_keys(&self, uin: u64) -> Result<Vec<ApiKeyRecord>> {
        let sql = format!(
            "SELECT {API_KEY_COLS} FROM api_keys WHERE uin = $1 ORDER BY create_time, secret_id"
        );
        self.with(|c| rows(c, &sql, &[&(uin as i64)], api_key_row))
    }

    fn set_api_key_enabled(
        &self,
        trail: &Trail,
        secret_id: &str,
        enabled: bool,
        sealed_secret: &[u8],
    ) -> Result<bool> {
        let status = if enabled { "Enabled" } else { "Disabled" };
        self.write(trail, |tx| {
            Ok(tx.execute(
                "UPDATE api_keys SET status = $2, sealed_secret = $3 WHERE secret_id = $1",
                &[&secret_id, &status, &sealed_secret],
            )? > 0)
        })
    }

    fn delete_api_key(
        &self,
        trail: &Trail,
        secret_id: &str,
        keep_last_of: Option<u64>,
    ) -> Result<bool> {
        self.write(trail, |tx| {
            if let Some(keep) = keep_last_of {
                lock_account(tx, keep)?;
            }
            let owner = one(
                tx,
                "SELECT uin FROM api_keys WHERE secret_id = $1",
                &[&secret_id],
                |r| u64_at(r, 0),
            )?;
            if let (Some(owner), Some(keep)) = (owner, keep_last_of) {
                if owner == keep && api_key_count(tx, keep)? == 1 {
                    return Err(Error::OperationNotPermitted(
                        "the root account's last API key cannot be deleted".into(),
                    ));
                }
            }
            Ok(tx.execute("DELETE FROM api_keys WHERE secret_id = $1", &[&secret_id])? > 0)
        })
    }

    fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            // Bookkeeping, not a request's change: committed without an audit record.
            let mut tx = c.transaction()?;
            let stmt = tx.prepare(
                "UPDATE api_keys SET last_used = GREATEST(last_used, $2) WHERE secret_id = $1",
            )?;
            for (id, t) in used {
                tx.execute(&stmt, &[id, t])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn create_group(
        &self,
        trail: &Trail,
        name: &str,
        remark: &str,
        now: i64,
    ) -> Result<GroupRecord> {
        self.write(trail, |tx| {
            let id = next_id(
                tx,
                "group_id",
                "SELECT COALESCE(MAX(group_id), 0) + 1 FROM groups",
            )?;
            tx.execute(
                "INSERT INTO groups (group_id, name, remark, create_time) VALUES ($1, $2, $3, $4)",
                &[&id, &name, &remark, &now],
            )
            .map_err(|e| conflict(e, "group", name))?;
            Ok(GroupRecord {
                group_id: id as u64,
                name: name.into(),
                remark: remark.into(),
                create_time: now,
            })
        })
    }

    fn get_group(&self, group_id: u64) -> Result<Option<GroupRecord>> {
        let sql = format!("SELECT {GROUP_COLS} FROM groups g WHERE g.group_id = $1");
        self.with(|c| one(c, &sql, &[&(group_id as i64)], group_row))
    }

    fn list_groups(&self) -> Result<Vec<GroupRecord>> {
        let sql = format!("SELECT {GROUP_COLS} FROM groups g ORDER BY g.group_id");
        self.with(|c| rows(c, &sql, &[], group_row))
    }

    fn delete_group(&self, trail: &Trail, group_id: u64) -> Result<bool> {
        let id = group_id as i64;
        self.authz_write(trail, |tx| {
            tx.execute(
                "DELETE FROM policy_attachments WHERE target_kind = 'group' AND target_id = $1",
                &[&id],
            )?;
            Ok(tx.execute("DELETE FROM groups WHERE group_id = $1", &[&id])? > 0)
        })
    }

    fn add_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "INSERT INTO group_members (group_id, uin) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&(group_id as i64), &(uin as i64)],
            )? > 0)
        })
    }

    fn remove_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM group_members WHERE group_id = $1 AND uin = $2",
                &[&(group_id as i64), &(uin as i64)],
            )? > 0)
        })
    }

    fn group_members(&self, group_id: u64) -> Result<Vec<u64>> {
        self.with(|c| {
            rows(
                c,
                "SELECT uin FROM group_members WHERE group_id = $1 ORDER BY uin",
                &[&(group_id as i64)],
                |r| u64_at(r, 0),
            )
        })
    }

    fn groups_of(&self, uin: u64) -> Result<Vec<GroupRecord>> {
        let sql = format!(
            "SELECT {GROUP_COLS} FROM groups g JOIN group_members m ON m.group_id = g.group_id \
             WHERE m.uin = $1 ORDER BY g.group_id"
        );
        self.with(|c| rows(c, &sql, &[&(uin as i64)], group_row))
    }

    fn create_policy(
        &self,
        trail: &Trail,
        name: &str,
        description: &str,
        document: &str,
        now: i64,
    ) -> Result<PolicyRecord> {
        self.authz_write(trail, |tx| {
            let id = next_id(
                tx,
                "policy_id",
                "SELECT COALESCE(MAX(policy_id), 0) + 1 FROM policies",
            )?;
            tx.execute(
                "INSERT INTO policies (policy_id, name, description, document, create_time, \
                 update_time) VALUES ($1, $2, $3, $4, $5, $5)",
                &[&id, &name, &description, &document, &now],
            )
            .map_err(|e| conflict(e, "policy", name))?;
            Ok(PolicyRecord {
                policy_id: id as u64,
                name: name.into(),
                description: description.into(),
                document: document.into(),
                create_time: now,
                update_time: now,
            })
        })
    }

    fn get_policy(&self, policy_id: u64) -> Result<Option<PolicyRecord>> {
        let sql = format!("SELECT {POLICY_COLS} FROM policies p WHERE p.policy_id = $1");
        self.with(|c| one(c, &sql, &[&(policy_id as i64)], policy_row))
    }

    fn list_policies(&self) -> Result<Vec<PolicyRecord>> {
        let sql = format!("SELECT {POLICY_COLS} FROM policies p ORDER BY p.policy_id");
        self.with(|c| rows(c, &sql, &[], policy_row))
    }

    fn update_policy(
        &self,
        trail: &Trail,
        policy_id: u64,
        description: Option<&str>,
        document: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "UPDATE policies SET description = COALESCE($2, description), \
                 document = COALESCE($3, document), update_time = $4 WHERE policy_id = $1",
                &[&(policy_id as i64), &description, &document, &now],
            )? > 0)
        })
    }

    fn delete_policy(&self, trail: &Trail, policy_id: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM policies WHERE policy_id = $1",
                &[&(policy_id as i64)],
            )? > 0)
        })
    }

    fn attach_policy(
        &self,
        trail: &Trail,
        policy_id: u64,
        target: Target,
        now: i64,
    ) -> Result<bool> {
        let (kind, id) = target.parts();
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "INSERT INTO policy_attachments (policy_id, target_kind, target_id, \
                 create_time) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                &[&(policy_id as i64), &kind, &id, &now],
            )? > 0)
        })
    }

    fn detach_policy(&self, trail: &Trail, policy_id: u64, target: Target) -> Result<bool> {
        let (kind, id) = target.parts();
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM policy_attachments WHERE policy_id = $1 AND target_kind = $2 \
                 AND target_id = $3",
                &[&(policy_id as i64), &kind, &id],
            )? > 0)
        })
    }

    fn attached_policies(&self, target: Target) -> Result<Vec<PolicyRecord>> {
        let (kind, id) = target.parts();
        let sql = format!(
            "SELECT {POLICY_COLS} FROM policies p JOIN policy_attachments a ON \
             a.policy_id = p.policy_id WHERE a.target_kind = $1 AND a.target_id = $2 \
             ORDER BY p.policy_id"
        );
        self.with(|c| rows(c, &sql, &[&kind, &id], policy_row))
    }
}
