//! How the store reaches its database: the client configuration from `[store]`, and TLS.
//!
//! Without `tls_ca` the connection is plain (`sslmode=disable`), as it was before TLS was
//! offered: a server with TLS switched on (Debian's default, with a self-signed "snakeoil"
//! certificate) must not turn `prefer`, libpq's default, into a handshake that no CA can
//! verify. With `tls_ca` it is TLS or nothing (`require`), and rustls verifies the server's
//! certificate against that bundle for the host named (libpq's `verify-full`).

use super::*;
use postgres::config::SslMode;
use postgres::tls::{MakeTlsConnect, TlsConnect};
use postgres::Socket;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where the store's database is, with the password and TLS settings to reach it.
#[derive(Clone)]
pub struct Endpoint {
    pub(super) url: String,
    pub(super) config: postgres::Config,
    pub(super) tls: StoreTls,
    tls_ca: Option<PathBuf>,
}

impl Endpoint {
    /// `url` (a libpq connection string or URL, which must not carry a password) with
    /// `password`; with `tls`, over TLS with that client configuration, which trusts the CA
    /// bundle at the path given (the path is for PostgreSQL's own tools).
    pub fn new(
        url: &str,
        password: Option<&str>,
        tls: Option<(PathBuf, rustls::ClientConfig)>,
    ) -> Result<Endpoint> {
        let mut config = connection_config(url, password)?;
        let (tls, tls_ca) = match tls {
            Some((path, client)) => {
                config.ssl_mode(SslMode::Require);
                (StoreTls(Some(MakeRustlsConnect::new(client))), Some(path))
            }
            None if config.get_ssl_mode() == SslMode::Require => {
                return Err(Error::Config(
                    "store: sslmode=require needs tls_ca, the CA bundle that verifies the \
                     server"
                        .into(),
                ))
            }
            None => {
                config.ssl_mode(SslMode::Disable);
                (StoreTls(None), None)
            }
        };
        Ok(Endpoint {
            url: url.to_string(),
            config,
            tls,
            tls_ca,
        })
    }

    /// A new connection (outside the pool). The error names its causes too: "error
    /// performing TLS handshake" alone does not tell an operator the CA is wrong.
    pub fn connect(&self) -> Result<postgres::Client> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            let mut text = format!("cannot connect to PostgreSQL: {e}");
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            Error::Store(text)
        })
    }

    /// PostgreSQL's own client tools (`pg_dump`, `pg_restore`) set up to reach the same
    /// database the same way: the password in their environment (never on the command line),
    /// and with `tls_ca`, `verify-full` against it.
    pub(super) fn tool(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        // Only what this command says: no password, service or TLS settings of the caller's.
        for var in ["PGPASSWORD", "PGSERVICE", "PGSSLMODE", "PGSSLROOTCERT"] {
            c.env_remove(var);
        }
        if let Some(p) = self.config.get_password() {
            c.env("PGPASSWORD", String::from_utf8_lossy(p).as_ref());
        }
        match &self.tls_ca {
            Some(ca) => c.env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", ca),
            None => c.env("PGSSLMODE", "disable"),
        };
        c
    }
}

/// The client configuration for `url` (which must not carry a password) and `password`.
fn connection_config(url: &str, password: Option<&str>) -> Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| Error::Config(format!("store.url: {e}")))?;
    if config.get_password().is_some() {
        return Err(Error::Config(
            "store.url must not carry a password: use password_env or password_file".into(),
        ));
    }
    if let Some(p) = password {
        config.password(p);
    }
    if config.get_application_name().is_none() {
        config.application_name("keyward");
    }
    config.connect_timeout(Duration::from_secs(10));
    Ok(config)
}

/// The pool's one connector type, with or without TLS. Without, it must still hand the
/// client something: the client asks for a connector for the host before it looks at the
/// mode, and rustls refuses a unix socket's path as a server name.
#[derive(Clone)]
pub struct StoreTls(Option<MakeRustlsConnect>);

type RustlsConnect = <MakeRustlsConnect as MakeTlsConnect<Socket>>::TlsConnect;
type RustlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

impl MakeTlsConnect<Socket> for StoreTls {
    type Stream = RustlsStream;
    type TlsConnect = StoreTlsConnect;
    type Error = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Error;

    fn make_tls_connect(
        &mut self,
        host: &str,
    ) -> std::result::Result<StoreTlsConnect, Self::Error> {
        match &mut self.0 {
            Some(m) => MakeTlsConnect::<Socket>::make_tls_connect(m, host)
                .map(|c| StoreTlsConnect(Some(c))),
            None => Ok(StoreTlsConnect(None)),
        }
    }
}

pub struct StoreTlsConnect(Option<RustlsConnect>);

impl TlsConnect<Socket> for StoreTlsConnect {
    type Stream = RustlsStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        match self.0 {
            Some(c) => Box::pin(c.connect(stream)),
            // Unreachable while the mode is `disable`, which is the only way to get here.
            None => Box::pin(std::future::ready(Err(std::io::Error::other(
                "TLS to the store needs store.tls_ca",
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(r: Result<Endpoint>) -> String {
        match r {
            Err(Error::Config(m)) => m,
            Err(e) => panic!("not a configuration error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn require_without_a_ca_and_a_password_in_the_url_are_refused() {
        let m = config_error(Endpoint::new("host=db sslmode=require", None, None));
        assert!(m.contains("needs tls_ca"), "{m}");
        let m = config_error(Endpoint::new("postgresql://u:secret@db/k", None, None));
        assert!(m.contains("must not carry a password"), "{m}");
    }

    #[test]
    fn without_a_ca_the_connection_is_plain() {
        let e = Endpoint::new("host=db sslmode=prefer", Some("pw"), None).unwrap();
        assert_eq!(e.config.get_ssl_mode(), SslMode::Disable);
        assert!(e.tls_ca.is_none());
    }
}
