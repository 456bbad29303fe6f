//! Redis ACL users (product `Redis`, Redis 6 or later). `PrivilegesList` holds ACL rules:
//! one entry with `PrivilegeName` `GlobalPrivileges` whose `Privileges` are key patterns
//! (`~cache:*`), channel patterns (`&news`), and command rules (`+@read`, `-flushall`).
//! Passwords are set by their SHA-256 (`#…`), never in clear. `Domains` do not apply.

use super::target::{failed, host_port, timeout, AccountSpec, Grant, Login, Target};
use crate::config::DatabaseConfig;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};

/// Rules an account may carry: patterns and command permissions, never anything that
/// touches passwords or switches the user on or off (Keyward does those).
fn check_rule(r: &str) -> Result<()> {
    let first = r.as_bytes().first().copied().unwrap_or(b' ');
    let ok = matches!(first, b'~' | b'%' | b'&' | b'+' | b'-')
        || matches!(r, "allkeys" | "allchannels" | "allcommands" | "nocommands")
        || r.starts_with("%R~")
        || r.starts_with("%W~")
        || r.starts_with("%RW~");
    let chars = r.len() <= 256
        && r.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'>' && b != b'<' && b != b'#');
    if !ok || !chars {
        return Err(Error::InvalidValue(format!(
            "Redis rule `{r}` is not offered: key (`~`), channel (`&`) and command (`+`/`-`) rules only"
        )));
    }
    Ok(())
}

pub fn check_grants(grants: &[Grant]) -> Result<()> {
    for g in grants {
        if g.privilege_name != "GlobalPrivileges" {
            return Err(Error::InvalidValue(format!(
                "PrivilegeName `{}` is not offered for Redis: give ACL rules as GlobalPrivileges",
                g.privilege_name
            )));
        }
        for r in &g.privileges {
            check_rule(r)?;
        }
    }
    Ok(())
}

fn hashed(password: &str) -> String {
    format!("#{}", hex::encode(Sha256::digest(password.as_bytes())))
}

fn client(db: &DatabaseConfig, login: &Login) -> Result<redis::Connection> {
    let addr = match (&db.socket, &db.tls_ca) {
        (Some(s), _) => redis::ConnectionAddr::Unix(s.clone()),
        (None, None) => {
            let (host, port) = host_port(db, 6379)?;
            redis::ConnectionAddr::Tcp(host, port)
        }
        (None, Some(_)) => {
            let (host, port) = host_port(db, 6379)?;
            redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            }
        }
    };
    let info = redis::ConnectionInfo {
        addr,
        redis: redis::RedisConnectionInfo {
            db: 0,
            username: Some(login.user.clone()),
            password: Some(login.password.to_string()),
            protocol: Default::default(),
        },
    };
    let c = match &db.tls_ca {
        // The server's certificate is checked against tls_ca only (not the system's roots).
        Some(ca) => {
            let pem = std::fs::read(ca).map_err(|e| {
                Error::Config(format!(
                    "databases `{}`: tls_ca {}: {e}",
                    db.id,
                    ca.display()
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(info, certs)
        }
        None => redis::Client::open(info),
    }
    .map_err(|e| failed(db, "connecting", e))?;
    let conn = c
        .get_connection_with_timeout(timeout(db))
        .map_err(|e| failed(db, "logging in", e))?;
    conn.set_read_timeout(Some(timeout(db)))
        .and_then(|_| conn.set_write_timeout(Some(timeout(db))))
        .map_err(|e| failed(db, "connecting", e))?;
    Ok(conn)
}

pub struct Redis {
    db: DatabaseConfig,
    conn: redis::Connection,
}

impl Redis {
    pub fn connect(db: &DatabaseConfig, admin: &Login) -> Result<Self> {
        Ok(Redis {
            db: db.clone(),
            conn: client(db, admin)?,
        })
    }

    fn setuser(&mut self, doing: &str, name: &str, rules: &[String]) -> Result<()> {
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER").arg(name);
        for r in rules {
            cmd.arg(r);
        }
        cmd.query::<()>(&mut self.conn)
            .map_err(|e| failed(&self.db, doing, e))?;
        self.save();
        Ok(())
    }

    /// Persists the ACL when the server keeps it in an aclfile (otherwise the server says
    /// so, and the users live as long as the server's configuration does).
    fn save(&mut self) {
        let _ = redis::cmd("ACL").arg("SAVE").query::<()>(&mut self.conn);
    }
}

impl Target for Redis {
    fn exists(&mut self, name: &str) -> Result<bool> {
        let existing: Option<redis::Value> = redis::cmd("ACL")
            .arg("GETUSER")
            .arg(name)
            .query(&mut self.conn)
            .map_err(|e| failed(&self.db, "looking up users", e))?;
        Ok(!matches!(existing, None | Some(redis::Value::Nil)))
    }

    fn create_account(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let mut rules = vec!["reset".to_string(), "on".into(), hashed(password)];
        for g in spec.grants {
            rules.extend(g.privileges.iter().cloned());
        }
        self.setuser("creating the user", spec.name, &rules)
    }

    fn set_password(&mut self, spec: &AccountSpec<'_>, password: &str) -> Result<()> {
        let rules = ["resetpass".to_string(), hashed(password), "on".into()];
        self.setuser("setting the password", spec.name, &rules)
    }

    fn lock(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        let rules = ["off".to_string(), "resetpass".into()];
        self.setuser("locking the user", spec.name, &rules)
    }

    fn end_sessions(&mut self, name: &str) -> Result<u64> {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(name)
            .query::<u64>(&mut self.conn)
            .map_err(|e| failed(&self.db, "ending sessions", e))
    }

    fn drop_account(&mut self, spec: &AccountSpec<'_>) -> Result<()> {
        redis::cmd("ACL")
            .arg("DELUSER")
            .arg(spec.name)
            .query::<i64>(&mut self.conn)
            .map_err(|e| failed(&self.db, "deleting the user", e))?;
        self.save();
        Ok(())
    }
}

pub fn check_login(db: &DatabaseConfig, login: &Login) -> Result<()> {
    // The connection authenticates (AUTH user password) before it is handed out: that is
    // the proof. No command is run, as the account may be granted none that always works.
    client(db, login).map(drop)
}
