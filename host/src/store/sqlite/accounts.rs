//! SQLite: accounts, API keys, groups, policies and attachments. Each write is one
//! transaction that also carries the request's audit record.

use super::*;
use crate::error::{Error, Result};
use crate::store::audit::Trail;
use crate::store::*;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

const ACCOUNT_COLS: &str = "uin, name, kind, remark, create_time";

const API_KEY_COLS: &str = "secret_id, uin, sealed_secret, status, create_time, last_used";

const POLICY_COLS: &str = "p.policy_id, p.name, p.description, p.document, p.create_time, \
                           p.update_time";

fn account_row(r: &Row<'_>) -> rusqlite::Result<AccountRecord> {
    Ok(AccountRecord {
        uin: r.get::<_, i64>(0)? as u64,
        name: r.get(1)?,
        kind: r.get(2)?,
        remark: r.get(3)?,
        create_time: r.get(4)?,
    })
}

pub(super) fn api_key_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        secret_id: r.get(0)?,
        uin: r.get::<_, i64>(1)? as u64,
        sealed_secret: r.get(2)?,
        enabled: r.get::<_, String>(3)? == "Enabled",
        create_time: r.get(4)?,
        last_used: r.get(5)?,
    })
}

fn group_row(r: &Row<'_>) -> rusqlite::Result<GroupRecord> {
    Ok(GroupRecord {
        group_id: r.get::<_, i64>(0)? as u64,
        name: r.get(1)?,
        remark: r.get(2)?,
        create_time: r.get(3)?,
    })
}

fn policy_row(r: &Row<'_>) -> rusqlite::Result<PolicyRecord> {
    Ok(PolicyRecord {
        policy_id: r.get::<_, i64>(0)? as u64,
        name: r.get(1)?,
        description: r.get(2)?,
        document: r.get(3)?,
        create_time: r.get(4)?,
        update_time: r.get(5)?,
    })
}

fn rows<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    p: P,
    row: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let out = stmt
        .query_map(p, row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(out)
}

fn is_conflict(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The next identifier of sequence `name`, inside the caller's transaction: never one that
/// was handed out before, even if its row was deleted (a reused uin would inherit the rights
/// that policies grant to the deleted account's uin). `floor` is the table's MAX+1, so ids
/// also stay above rows written without the sequence (the root account's fixed uin).
fn next_id(tx: &Connection, name: &str, floor: &str) -> Result<i64> {
    let floor: i64 = tx.query_row(floor, [], |r| r.get(0))?;
    let next: Option<i64> = tx
        .query_row(
            "SELECT next FROM id_sequences WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    let id = next.unwrap_or(1).max(floor);
    tx.execute(
        "INSERT INTO id_sequences (name, next) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET next = excluded.next",
        params![name, id + 1],
    )?;
    Ok(id)
}

fn api_key_count(conn: &Connection, uin: u64) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM api_keys WHERE uin = ?1",
        [uin as i64],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

const AUTHZ_SEAL_META: &str = "authz_seal";

fn authz_state_tx(tx: &Connection) -> Result<AuthzState> {
    let accounts = rows(tx, "SELECT uin, kind FROM accounts", [], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })?;
    let policies = rows(
        tx,
        &format!("SELECT {POLICY_COLS} FROM policies p ORDER BY p.policy_id"),
        [],
        policy_row,
    )?;
    let attachments = rows(
        tx,
        "SELECT policy_id, target_kind, target_id FROM policy_attachments",
        [],
        |r| {
            let id = r.get::<_, i64>(2)? as u64;
            let target = match r.get::<_, String>(1)?.as_str() {
                "user" => Target::User(id),
                _ => Target::Group(id),
            };
            Ok((r.get::<_, i64>(0)? as u64, target))
        },
    )?;
    let memberships = rows(tx, "SELECT group_id, uin FROM group_members", [], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
    })?;
    let seal = tx
        .query_row(
            "SELECT value FROM meta WHERE name = ?1",
            [AUTHZ_SEAL_META],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    Ok(AuthzState {
        accounts,
        policies,
        attachments,
        memberships,
        seal,
    })
}

impl SqliteStore {
    /// A write that changes who may do what: the state it starts from must carry a valid
    /// seal (so a change through Keyward never blesses rows written by hand), and the new
    /// state is sealed in the same transaction, so the change and its seal commit together.
    fn authz_write<T>(&self, trail: &Trail, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.sealed_write(trail, true, f)
    }

    fn sealed_write<T>(
        &self,
        trail: &Trail,
        check_before: bool,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let sealer = self
            .authz_sealer
            .get()
            .ok_or_else(|| Error::Internal("no authorization sealer installed".into()))?;
        self.audited_write(trail, |tx| {
            if check_before {
                let before = authz_state_tx(tx)?;
                sealer.check_authz(&before.digest(), &before.seal)?;
            }
            let out = f(tx)?;
            let seal = sealer.seal_authz(&authz_state_tx(tx)?.digest())?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?1, ?2)",
                params![AUTHZ_SEAL_META, seal],
            )?;
            Ok(out)
        })
    }
}

impl AccountStore for SqliteStore {
    fn install_authz_sealer(&self, sealer: Arc<dyn AuthzSealer>) {
        let _ = self.authz_sealer.set(sealer);
    }

    fn authz_state(&self) -> Result<AuthzState> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let state = authz_state_tx(&tx)?;
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
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![a.uin as i64, a.name, a.kind, a.remark, a.create_time],
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
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if api_key_count(&tx, k.uin)? >= max_per_account as u64 {
                return Err(Error::InvalidValue(format!(
                    "an account may hold at most {max_per_account} API keys"
                )));
            }
            tx.execute(
                "INSERT INTO api_keys (secret_id, uin, sealed_secret, status, create_time) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    k.secret_id,
                    k.uin as i64,
                    k.sealed_secret,
                    if k.enabled { "Enabled" } else { "Disabled" },
                    k.create_time
                ],
            )?;
            self.commit(tx, trail)?;
            Ok(())
        })
    }

    fn get_api_key(&self, secret_id: &str) -> Result<Option<ApiKeyRecord>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT secret_id, uin, sealed_secret, status, create_time, last_used \
                     FROM api_keys WHERE secret_id = ?1",
                )?
                .query_row(params![secret_id], api_key_row)
                .optional()?)
        })
    }

    fn create_sub_account(
        &self,
        trail: &Trail,
        name: &str,
        remark: &str,
        now: i64,
    ) -> Result<AccountRecord> {
        self.authz_write(trail, |tx| {
            let next = next_id(tx, "uin", "SELECT COALESCE(MAX(uin), 0) + 1 FROM accounts")?;
            let rec = AccountRecord {
                uin: next as u64,
                name: name.to_string(),
                kind: "sub".into(),
                remark: remark.to_string(),
                create_time: now,
            };
            tx.execute(
                "INSERT INTO accounts (uin, name, kind, remark, create_time) \
                 VALUES (?1, ?2, 'sub', ?3, ?4)",
                params![next, name, remark, now],
            )
            .map_err(|e| {
                if is_conflict(&e) {
                    Error::IamConflict(format!("a user named `{name}` already exists"))
                } else {
                    e.into()
                }
            })?;
            Ok(rec)
        })
    }

    fn get_account(&self, uin: u64) -> Result<Option<AccountRecord>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts WHERE uin = ?1"
                ))?
                .query_row([uin as i64], account_row)
                .optional()?)
        })
    }

    fn account_by_name(&self, name: &str) -> Result<Option<AccountRecord>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?1"
                ))?
                .query_row([name], account_row)
                .optional()?)
        })
    }

    fn list_accounts(&self) -> Result<Vec<AccountRecord>> {
        self.with(|conn| {
            rows(
                conn,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY uin"),
                [],
                account_row,
            )
        })
    }

    fn update_account_remark(&self, trail: &Trail, uin: u64, remark: &str) -> Result<bool> {
        self.audited_write(trail, |tx| {
            Ok(tx.execute(
                "UPDATE accounts SET remark = ?2 WHERE uin = ?1",
                params![uin as i64, remark],
            )? > 0)
        })
    }

    fn delete_account(&self, trail: &Trail, uin: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            tx.execute("DELETE FROM api_keys WHERE uin = ?1", [uin as i64])?;
            tx.execute(
                "DELETE FROM policy_attachments WHERE target_kind = 'user' AND target_id = ?1",
                [uin as i64],
            )?;
            Ok(tx.execute(
                "DELETE FROM accounts WHERE uin = ?1 AND kind = 'sub'",
                [uin as i64],
            )? > 0)
        })
    }

    fn list_api_keys(&self, uin: u64) -> Result<Vec<ApiKeyRecord>> {
        self.with(|conn| {
            rows(
                conn,
                &format!(
                    "SELECT {API_KEY_COLS} FROM api_keys WHERE uin = ?1 ORDER BY create_time, \
                     secret_id"
                ),
                [uin as i64],
                api_key_row,
            )
        })
    }

    fn set_api_key_enabled(
        &self,
        trail: &Trail,
        secret_id: &str,
        enabled: bool,
        sealed_secret: &[u8],
    ) -> Result<bool> {
        self.audited_write(trail, |tx| {
            Ok(tx.execute(
                "UPDATE api_keys SET status = ?2, sealed_secret = ?3 WHERE secret_id = ?1",
                params![
                    secret_id,
                    if enabled { "Enabled" } else { "Disabled" },
                    sealed_secret
                ],
            )? > 0)
        })
    }

    fn delete_api_key(
        &self,
        trail: &Trail,
        secret_id: &str,
        keep_last_of: Option<u64>,
    ) -> Result<bool> {
        self.audited_write(trail, |tx| {
            let owner: Option<i64> = tx
                .query_row(
                    "SELECT uin FROM api_keys WHERE secret_id = ?1",
                    [secret_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let (Some(owner), Some(keep)) = (owner, keep_last_of) {
                if owner as u64 == keep && api_key_count(tx, keep)? == 1 {
                    return Err(Error::OperationNotPermitted(
                        "the root account's last API key cannot be deleted".into(),
                    ));
                }
            }
            Ok(tx.execute("DELETE FROM api_keys WHERE secret_id = ?1", [secret_id])? > 0)
        })
    }

    fn touch_api_keys(&self, used: &[(String, i64)]) -> Result<()> {
        if used.is_empty() {
            return Ok(());
        }
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE api_keys SET last_used = MAX(last_used, ?2) WHERE secret_id = ?1",
                )?;
                for (id, t) in used {
                    stmt.execute(params![id, t])?;
                }
            }
            // Bookkeeping, not a request's change: committed without an audit record.
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
        self.audited_write(trail, |tx| {
            let id = next_id(
                tx,
                "group_id",
                "SELECT COALESCE(MAX(group_id), 0) + 1 FROM groups",
            )?;
            tx.execute(
                "INSERT INTO groups (group_id, name, remark, create_time) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, remark, now],
            )
            .map_err(|e| {
                if is_conflict(&e) {
                    Error::IamConflict(format!("a group named `{name}` already exists"))
                } else {
                    e.into()
                }
            })?;
            Ok(GroupRecord {
                group_id: id as u64,
                name: name.into(),
                remark: remark.into(),
                create_time: now,
            })
        })
    }

    fn get_group(&self, group_id: u64) -> Result<Option<GroupRecord>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT group_id, name, remark, create_time FROM groups WHERE group_id = ?1",
                )?
                .query_row([group_id as i64], group_row)
                .optional()?)
        })
    }

    fn list_groups(&self) -> Result<Vec<GroupRecord>> {
        self.with(|conn| {
            rows(
                conn,
                "SELECT group_id, name, remark, create_time FROM groups ORDER BY group_id",
                [],
                group_row,
            )
        })
    }

    fn delete_group(&self, trail: &Trail, group_id: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            tx.execute(
                "DELETE FROM policy_attachments WHERE target_kind = 'group' AND target_id = ?1",
                [group_id as i64],
            )?;
            Ok(tx.execute("DELETE FROM groups WHERE group_id = ?1", [group_id as i64])? > 0)
        })
    }

    fn add_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "INSERT OR IGNORE INTO group_members (group_id, uin) VALUES (?1, ?2)",
                params![group_id as i64, uin as i64],
            )? > 0)
        })
    }

    fn remove_group_member(&self, trail: &Trail, group_id: u64, uin: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM group_members WHERE group_id = ?1 AND uin = ?2",
                params![group_id as i64, uin as i64],
            )? > 0)
        })
    }

    fn group_members(&self, group_id: u64) -> Result<Vec<u64>> {
        self.with(|conn| {
            rows(
                conn,
                "SELECT uin FROM group_members WHERE group_id = ?1 ORDER BY uin",
                [group_id as i64],
                |r| Ok(r.get::<_, i64>(0)? as u64),
            )
        })
    }

    fn groups_of(&self, uin: u64) -> Result<Vec<GroupRecord>> {
        self.with(|conn| {
            rows(
                conn,
                "SELECT g.group_id, g.name, g.remark, g.create_time FROM groups g \
                 JOIN group_members m ON m.group_id = g.group_id WHERE m.uin = ?1 \
                 ORDER BY g.group_id",
                [uin as i64],
                group_row,
            )
        })
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
                 update_time) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![id, name, description, document, now],
            )
            .map_err(|e| {
                if is_conflict(&e) {
                    Error::IamConflict(format!("a policy named `{name}` already exists"))
                } else {
                    e.into()
                }
            })?;
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
        self.with(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {POLICY_COLS} FROM policies p WHERE p.policy_id = ?1"
                ))?
                .query_row([policy_id as i64], policy_row)
                .optional()?)
        })
    }

    fn list_policies(&self) -> Result<Vec<PolicyRecord>> {
        self.with(|conn| {
            rows(
                conn,
                &format!("SELECT {POLICY_COLS} FROM policies p ORDER BY p.policy_id"),
                [],
                policy_row,
            )
        })
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
                "UPDATE policies SET description = COALESCE(?2, description), \
                 document = COALESCE(?3, document), update_time = ?4 WHERE policy_id = ?1",
                params![policy_id as i64, description, document, now],
            )? > 0)
        })
    }

    fn delete_policy(&self, trail: &Trail, policy_id: u64) -> Result<bool> {
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM policies WHERE policy_id = ?1",
                [policy_id as i64],
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
                "INSERT OR IGNORE INTO policy_attachments (policy_id, target_kind, target_id, \
                 create_time) VALUES (?1, ?2, ?3, ?4)",
                params![policy_id as i64, kind, id, now],
            )? > 0)
        })
    }

    fn detach_policy(&self, trail: &Trail, policy_id: u64, target: Target) -> Result<bool> {
        let (kind, id) = target.parts();
        self.authz_write(trail, |tx| {
            Ok(tx.execute(
                "DELETE FROM policy_attachments WHERE policy_id = ?1 AND target_kind = ?2 AND \
                 target_id = ?3",
                params![policy_id as i64, kind, id],
            )? > 0)
        })
    }

    fn attached_policies(&self, target: Target) -> Result<Vec<PolicyRecord>> {
        let (kind, id) = target.parts();
        self.with(|conn| {
            rows(
                conn,
                &format!(
                    "SELECT {POLICY_COLS} FROM policies p JOIN policy_attachments a ON \
                     a.policy_id = p.policy_id WHERE a.target_kind = ?1 AND a.target_id = ?2 \
                     ORDER BY p.policy_id"
                ),
                params![kind, id],
                policy_row,
            )
        })
    }
}
