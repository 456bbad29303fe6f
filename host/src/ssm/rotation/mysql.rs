//! MySQL and MariaDB accounts (product `Mysql`): one account per host pattern in
//! `Domains`, grants on `*.*`, a database or a table. Passwords are sent as their
//! `mysql_native_password` hash (`IDENTIFIED BY PASSWORD '*…'`), never in clear.

use super::target::{check_object, failed, host_port, timeout, AccountSpec, Grant, Login, Target};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use mysql::prelude::Queryable;
use sha1::{Digest, Sha1};

/// Privileges an account may be given. Administrative ones (SUPER, FILE, CREATE USER,
/// GRANT OPTION, ALL) are left out: a product secret is an application's login.
const PRIVILEGES: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "REFERENCES",
    "CREATE VIEW",
    "SHOW VIEW",
    "TRIGGER",
    "EXECUTE",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "LOCK TABLES",
    "CREATE TEMPORARY TABLES",
    "PROCESS",
    "SHOW DATABASES",
    "REPLICATION CLIENT",
];

/// The `ON` clause of a grant, after validating it.
fn scope(g: &Grant) -> Result<String> {
    let db = || -> Result<&str> {
        let d = g.database.as_deref().unwrap_or_default();
        check_object("Database", d)?;
        Ok(d)
    };
    match g.privilege_name.as_str() {
        "GlobalPrivileges" => Ok("*.*".into()),
        "DatabasePrivileges" => Ok(format!("`{}`.*", db()?)),
        "TablePrivileges" => {
            let t = g.table_name.as_deref().unwrap_or_default();
            check_object("TableName", t)?;
            Ok(format!("`{}`.`{t}`", db()?))
        }
        other => Err(Error::InvalidValue(format!(
            "PrivilegeName `{other}` is not offered for Mysql: use GlobalPrivileges, \
             DatabasePrivileges or TablePrivileges"
        ))),
    }
}

fn privileges(g: &Grant) -> Result<String> {
    if g.privileges.is_empty() {
        return Err(Error::InvalidValue(
            "every PrivilegesList entry needs at least one privilege".into(),
        ));
    }
    for p in &g.privileges {
        if !PRIVILEGES.contains(&p.as_str()) {
            return Err(Error::InvalidValue(format!(
                "privilege `{p}` is not offered for Mysql (one of {})",
                PRIVILEGES.join(", ")
            )));
        }
    }
    Ok(g.privileges.join(", "))
}

pub fn check_grants(grants: &[Grant]) -> Result<()> {
    for g in grants {
        scope(g)?;
        privileges(g)?;
    }
    Ok(())
}

/// `*` and the upper-case hex of SHA1(SHA1(password)).
fn native_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    format!("*{}", hex::encode_upper(Sha1::digest(inner)))
}

fn opts(db: &DatabaseConfig, login: &Login) -> Result<mysql::Opts> {
    let t = timeout(db);
    let b = mysql::OptsBuilder::new()
        .user(Some(&login.user))
        .pass(Some(login.password.as_str()))
        .tcp_connect_timeout(Some(t))
        .read_timeout(Some(t))
        .write_timeout(Some(t))
        .prefer_socket(false);
    let b = match &db.socket {
        Some(s) => b.socket(Some(s.to_string_lossy())),
        None => {
            let (host, port) = host_port(db, 3306)?;
            b.ip_or_hostname(Some(host)).tcp_port(port)
        }
    };
    // TLS with the server's certificate checked against tls_ca for the address's host.
    let b = match &db.tls_ca {
        Some(ca) => b.ssl_opts(Some(
            mysql::SslOpts::default().with_root_cert_path(Some(ca.clone())),
        )),
        None => b,
    };
    Ok(b.into())
}

pub struct Mysql {
    db: DatabaseConfig,
    conn: mysql::Conn,
}

impl Mysql {
    pub fn connect(db: &DatabaseConfig, admin: &Login) -> Result<Self> {
        let conn = mysql::Conn::new(opts(db, admin)?)
            .map_err(|e| failed(db, "administrative login", e))?;
        Ok(Mysql {
            db: db.clone(),
            conn,
        })
    }

    fn run(&mut self, doing: &str, sql: &str) -> Result<()> {
        self.conn
            .query_drop(sql)
            .map_err(|e| failed(&self.db, doing, e))
    }
}

fn account(name: &str, host: &str) -> String {
    format!("'{name}'@'{host}'")
}

impl Target for Mysql {
    fn exists(&mut self, name: &str) -> Result<bool> {
        let n: Option<u64> = self
            .conn
            .exec_first("SELECT COUNT(*) FROM mysql.user WHERE User = ?", (name,))
            .map_err(|e| failed(&self.db, "looking up accounts", e))?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn create_account(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let hash = native_hash(password);
        let mut made = Vec::new();
        let outcome = (|| {
            for host in spec.domains {
                let who = account(spec.name, host);
                self.run(
                    "creating the account",
                    &format!("CREATE USER {who} IDENTIFIED BY PASSWORD '{hash}'"),
                )?;
                made.push(who.clone());
                for g in spec.grants {
                    let sql = format!("GRANT {} ON {} TO {who}", privileges(g)?, scope(g)?);
                    self.run("granting privileges", &sql)?;
                }
            }
            Ok(())
        })();
        if outcome.is_err() {
            // Only what this call created goes: an account that existed (another request
            // won a race for the name) is not ours to drop.
            for who in made {
                let _ = self.run(
                    "dropping the account",
                    &format!("DROP USER IF EXISTS {who}"),
                );
            }
        }
        outcome
    }

    fn set_password(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let hash = native_hash(password);
        for host in spec.domains {
            let who = account(spec.name, host);
            self.run(
                "setting the password",
                &format!("ALTER USER {who} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT UNLOCK"),
            )?;
        }
        Ok(())
    }

    fn lock(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        let hash = native_hash(&super::target::new_password());
        for host in spec.domains {
            let who = account(spec.name, host);
            self.run(
                "locking the account",
                &format!("ALTER USER {who} IDENTIFIED BY PASSWORD '{hash}' ACCOUNT LOCK"),
            )?;
        }
        Ok(())
    }

    fn end_sessions(&mut self, name: &str) -> Result<u64> {
        let ids: Vec<u64> = self
            .conn
            .exec(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?",
                (name,),
            )
            .map_err(|e| failed(&self.db, "listing sessions", e))?;
        for id in &ids {
            // A session that ended meanwhile is no failure.
            let _ = self.conn.query_drop(format!("KILL CONNECTION {id}"));
        }
        Ok(ids.len() as u64)
    }

    fn drop_account(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        for host in spec.domains {
            let who = account(spec.name, host);
            self.run(
                "dropping the account",
                &format!("DROP USER IF EXISTS {who}"),
            )?;
        }
        Ok(())
    }
}

pub fn check_login(db: &DatabaseConfig, login: &Login) -> Result<()> {
    let mut conn =
        mysql::Conn::new(opts(db, login)?).map_err(|e| failed(db, "checking the new login", e))?;
    conn.query_drop("SELECT 1")
        .map_err(|e| failed(db, "checking the new login", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_hash_matches_the_server_function() {
        // SELECT PASSWORD('secret') on MariaDB.
        assert_eq!(
            native_hash("secret"),
            "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
        );
    }

    #[test]
    fn grants_are_checked() {
        let g = |name: &str, p: &[&str], db: Option<&str>, t: Option<&str>| Grant {
            privilege_name: name.into(),
            privileges: p.iter().map(|s| s.to_string()).collect(),
            database: db.map(Into::into),
            table_name: t.map(Into::into),
            schema_name: None,
        };
        check_grants(&[g("DatabasePrivileges", &["SELECT"], Some("app"), None)]).unwrap();
        check_grants(&[g(
            "TablePrivileges",
            &["SELECT", "INSERT"],
            Some("app"),
            Some("t"),
        )])
        .unwrap();
        assert!(check_grants(&[g("DatabasePrivileges", &["SUPER"], Some("app"), None)]).is_err());
        assert!(check_grants(&[g("DatabasePrivileges", &["SELECT"], Some("a`b"), None)]).is_err());
        assert!(check_grants(&[g("TablePrivileges", &["SELECT"], Some("app"), None)]).is_err());
    }
}
