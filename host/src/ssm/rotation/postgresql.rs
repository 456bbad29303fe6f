//! PostgreSQL roles (product `PostgreSQL`): a LOGIN role with grants on databases, schemas
//! and tables. Passwords are sent as SCRAM-SHA-256 verifiers computed here, so the server
//! (and its statement log) never sees them in clear. `Domains` are not enforced by the
//! server's roles: pg_hba.conf decides where logins come from.

use super::target::{check_object, failed, host_port, timeout, AccountSpec, Grant, Login, Target};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use std::collections::HashMap;

const DEFAULT_DATABASE: &str = "postgres";

/// The privileges a grant may name, by its `PrivilegeName`.
fn allowed(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "DatabasePrivileges" => Some(&["CONNECT", "CREATE", "TEMPORARY"]),
        "SchemaPrivileges" => Some(&["USAGE", "CREATE"]),
        "TablePrivileges" => Some(&[
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
        ]),
        _ => None,
    }
}

/// The database a grant is made in, and its statement (without the grantee).
fn statement(g: &Grant, default_db: &str) -> Result<(String, String)> {
    let allowed = allowed(&g.privilege_name).ok_or_else(|| {
        Error::InvalidValue(format!(
            "PrivilegeName `{}` is not offered for PostgreSQL: use DatabasePrivileges, \
             SchemaPrivileges or TablePrivileges",
            g.privilege_name
        ))
    })?;
    if g.privileges.is_empty() {
        return Err(Error::InvalidValue(
            "every PrivilegesList entry needs at least one privilege".into(),
        ));
    }
    for p in &g.privileges {
        if !allowed.contains(&p.as_str()) {
            return Err(Error::InvalidValue(format!(
                "privilege `{p}` is not offered for {} (one of {})",
                g.privilege_name,
                allowed.join(", ")
            )));
        }
    }
    let db = g.database.as_deref().unwrap_or(default_db).to_string();
    check_object("Database", &db)?;
    let schema = g.schema_name.as_deref().unwrap_or("public");
    check_object("SchemaName", schema)?;
    let privs = g.privileges.join(", ");
    let on = match g.privilege_name.as_str() {
        "DatabasePrivileges" => format!("DATABASE \"{db}\""),
        "SchemaPrivileges" => format!("SCHEMA \"{schema}\""),
        _ => {
            let t = g.table_name.as_deref().unwrap_or_default();
            check_object("TableName", t)?;
            format!("TABLE \"{schema}\".\"{t}\"")
        }
    };
    Ok((db, format!("GRANT {privs} ON {on} TO")))
}

pub fn check_grants(grants: &[Grant]) -> Result<()> {
    for g in grants {
        statement(g, DEFAULT_DATABASE)?;
    }
    Ok(())
}

fn config(db: &DatabaseConfig, login: &Login, dbname: &str) -> Result<postgres::Config> {
    let mut c = postgres::Config::new();
    c.user(&login.user)
        .password(login.password.as_bytes())
        .dbname(dbname)
        .connect_timeout(timeout(db));
    match &db.socket {
        Some(dir) => {
            c.host_path(dir);
        }
        None => {
            let (host, port) = host_port(db, 5432)?;
            c.host(&host).port(port);
        }
    }
    Ok(c)
}

fn verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// Connects with `config`: over TLS (required, the server verified against `tls_ca`) when
/// the database has one, else plain.
fn open(
    db: &DatabaseConfig,
    config: &mut postgres::Config,
) -> std::result::Result<postgres::Client, String> {
    match super::target::tls_roots(db).map_err(|e| e.to_string())? {
        Some(roots) => {
            let tls = crate::ca::client_config(roots).map_err(|e| e.to_string())?;
            config.ssl_mode(postgres::config::SslMode::Require);
            config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .map_err(|e| e.to_string())
        }
        None => config.connect(postgres::NoTls).map_err(|e| e.to_string()),
    }
}

pub struct Postgres {
    db: DatabaseConfig,
    admin: Login,
    /// Administrative sessions by database (grants on tables are made inside theirs).
    sessions: HashMap<String, postgres::Client>,
}

impl Postgres {
    pub fn connect(db: &DatabaseConfig, admin: &Login) -> Result<Self> {
        let mut p = Postgres {
            db: db.clone(),
            admin: admin.clone(),
            sessions: HashMap::new(),
        };
        p.session(&p.default_db())?;
        Ok(p)
    }

    fn default_db(&self) -> String {
        self.db
            .database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.into())
    }

    fn session(&mut self, dbname: &str) -> Result<&mut postgres::Client> {
        if !self.sessions.contains_key(dbname) {
            let c = open(&self.db, &mut config(&self.db, &self.admin, dbname)?)
                .map_err(|e| failed(&self.db, "administrative login", e))?;
            self.sessions.insert(dbname.to_string(), c);
        }
        Ok(self.sessions.get_mut(dbname).expect("inserted above"))
    }

    fn run(&mut self, dbname: &str, doing: &str, sql: &str) -> Result<()> {
        let db = self.db.clone();
        self.session(dbname)?
            .batch_execute(sql)
            .map_err(|e| failed(&db, doing, e))
    }

    /// The databases the account's grants touch, the default one first.
    fn databases(&self, spec: &AccountSpec<'_>) -> Result<Vec<String>> {
        let mut out = vec![self.default_db()];
        for g in spec.grants {
            let (d, _) = statement(g, &self.default_db())?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

impl Target for Postgres {
    fn exists(&mut self, name: &str) -> Result<bool> {
        let default = self.default_db();
        let db = self.db.clone();
        Ok(self
            .session(&default)?
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
            .map_err(|e| failed(&db, "looking up roles", e))?
            .is_some())
    }

    fn create_account(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let default = self.default_db();
        self.run(
            &default,
            "creating the role",
            &format!(
                "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
                spec.name,
                verifier(password)
            ),
        )?;
        let granted = spec.grants.iter().try_for_each(|g| {
            let (dbname, grant) = statement(g, &default)?;
            self.run(
                &dbname,
                "granting privileges",
                &format!("{grant} \"{}\"", spec.name),
            )
        });
        if granted.is_err() {
            // The role is this call's own (CREATE ROLE succeeded): nothing half-made stays.
            let _ = self.drop_account(spec);
        }
        granted
    }

    fn set_password(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let default = self.default_db();
        self.run(
            &default,
            "setting the password",
            &format!(
                "ALTER ROLE \"{}\" LOGIN PASSWORD '{}'",
                spec.name,
                verifier(password)
            ),
        )
    }

    fn lock(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        let default = self.default_db();
        self.run(
            &default,
            "locking the role",
            &format!("ALTER ROLE \"{}\" NOLOGIN PASSWORD NULL", spec.name),
        )
    }

    fn end_sessions(&mut self, name: &str) -> Result<u64> {
        let default = self.default_db();
        let db = self.db.clone();
        let rows = self
            .session(&default)?
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                &[&name],
            )
            .map_err(|e| failed(&db, "ending sessions", e))?;
        Ok(rows.len() as u64)
    }

    fn drop_account(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        let default = self.default_db();
        let exists = self.exists(spec.name)?;
        if !exists {
            return Ok(());
        }
        // A role with privileges cannot be dropped: revoke them in every database first.
        for d in self.databases(spec)? {
            self.run(
                &d,
                "revoking privileges",
                &format!("DROP OWNED BY \"{}\"", spec.name),
            )?;
        }
        self.run(
            &default,
            "dropping the role",
            &format!("DROP ROLE IF EXISTS \"{}\"", spec.name),
        )
    }
}

pub fn check_login(db: &DatabaseConfig, login: &Login) -> Result<()> {
    let dbname = db.database.as_deref().unwrap_or(DEFAULT_DATABASE);
    let mut c = open(db, &mut config(db, login, dbname)?)
        .map_err(|e| failed(db, "checking the new login", e))?;
    c.batch_execute("SELECT 1")
        .map_err(|e| failed(db, "checking the new login", e))
}
