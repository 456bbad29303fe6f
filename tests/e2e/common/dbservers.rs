//! Real database servers for the rotation tests, from Debian's packages: MariaDB
//! (`mariadb-install-db` + `mariadbd`) and Redis (`redis-server` with an ACL file), each in a
//! temporary directory, listening on a unix socket there and on a free loopback port. Each
//! can be stopped and started again on the same data (a rotation against a stopped server),
//! and is stopped when dropped. PostgreSQL is the process's throw-away cluster (`pg.rs`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (the kernel's choice, released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn need(binary: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(binary);
        if p.exists() {
            return p;
        }
    }
    panic!("`{binary}` is not installed: run scripts/test.sh, which installs mariadb-server and redis-server")
}

/// `--user=root` when we are root (mariadbd refuses root unless told); nothing otherwise,
/// as the server then runs as whoever starts it.
fn mariadb_user() -> Option<&'static str> {
    // SAFETY: geteuid only reads process state.
    (unsafe { libc::geteuid() } == 0).then_some("--user=root")
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A MariaDB server whose `root@localhost` logs in with `admin_password` (socket).
pub struct MariaDb {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_password: String,
    /// Extra server options (TLS).
    extra: Vec<String>,
    child: Option<Child>,
}

impl MariaDb {
    pub fn start() -> MariaDb {
        Self::start_with(Vec::new())
    }

    /// A server that also speaks TLS with `certs`; its `admin@127.0.0.1` (password
    /// `admin_password`, every privilege) may log in over TLS only.
    pub fn start_tls(certs: &Certs) -> MariaDb {
        let m = Self::start_with(vec![
            format!("--ssl-ca={}", certs.ca.display()),
            format!("--ssl-cert={}", certs.cert.display()),
            format!("--ssl-key={}", certs.key.display()),
        ]);
        m.sql(&format!(
            "CREATE USER 'admin'@'127.0.0.1' IDENTIFIED BY '{pw}' REQUIRE SSL; \
             GRANT ALL PRIVILEGES ON *.* TO 'admin'@'127.0.0.1' WITH GRANT OPTION",
            pw = m.admin_password
        ));
        m
    }

    fn start_with(extra: Vec<String>) -> MariaDb {
        let dir = tempfile::Builder::new()
            .prefix("kwmaria")
            .tempdir()
            .unwrap();
        // Its own temporary directory: installs running side by side in the shared /tmp
        // failed now and then ("Error on delete of '/tmp/#sql-temptable-…'").
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let out = Command::new(need("mariadb-install-db"))
            .args(["--no-defaults", "--skip-test-db"])
            .args(mariadb_user())
            .arg(format!("--tmpdir={}", tmp.display()))
            .env("TMPDIR", &tmp)
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .output()
            .expect("mariadb-install-db runs");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut m = MariaDb {
            dir,
            port: free_port(),
            admin_password: format!("adm{}", uuid::Uuid::new_v4().simple()),
            extra,
            child: None,
        };
        m.run();
        // A fresh install's root has no password; give it one, as an operator would.
        m.sql_as(
            "",
            &format!(
                "ALTER USER root@localhost IDENTIFIED BY '{}'",
                m.admin_password
            ),
        );
        m
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// Starts the server on its data directory and waits until it answers.
    pub fn run(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::create(d.join("server.out")).unwrap();
        let child = Command::new(need("mariadbd"))
            .args(["--no-defaults", "--skip-name-resolve", "--skip-log-bin"])
            .args(mariadb_user())
            .args(["--bind-address=127.0.0.1", "--innodb-buffer-pool-size=16M"])
            .arg("--innodb-log-file-size=8M")
            .arg(format!("--port={}", self.port))
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", d.join("error.log").display()))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .env("TMPDIR", d.join("tmp"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(self.socket().exists()
            && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start: {}",
                std::fs::read_to_string(d.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }

    fn sql_as(&self, password: &str, sql: &str) {
        let out = Command::new(need("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-u", "root", "-e", sql])
            .env("MYSQL_PWD", password)
            .output()
            .expect("mariadb runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs SQL as the administrator.
    pub fn sql(&self, sql: &str) {
        self.sql_as(&self.admin_password, sql)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis server whose ACL user `admin` may do everything; the default user is off.
pub struct RedisServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_password: String,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(None)
    }

    /// A server that speaks TLS only (with `certs`) on `port`.
    pub fn start_tls(certs: &Certs) -> RedisServer {
        Self::start_with(Some(certs))
    }

    fn start_with(certs: Option<&Certs>) -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("kwredis")
            .tempdir()
            .unwrap();
        let admin_password = format!("adm{}", uuid::Uuid::new_v4().simple());
        let port = free_port();
        std::fs::write(
            dir.path().join("users.acl"),
            format!("user default off\nuser admin on >{admin_password} ~* &* +@all\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("redis.conf"),
            format!(
                "bind 127.0.0.1\nunixsocket {sock}\nunixsocketperm 700\n\
                 dir {dir}\nsave \"\"\nappendonly no\naclfile {dir}/users.acl\n\
                 daemonize no\nlogfile {dir}/redis.log\n{listen}",
                sock = dir.path().join("redis.sock").display(),
                dir = dir.path().display(),
                listen = match certs {
                    None => format!("port {port}\n"),
                    Some(c) => format!(
                        "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-ca-cert-file {}\ntls-auth-clients no\n",
                        c.cert.display(),
                        c.key.display(),
                        c.ca.display()
                    ),
                },
            ),
        )
        .unwrap();
        let mut r = RedisServer {
            dir,
            port,
            admin_password,
            child: None,
        };
        r.run();
        r
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    pub fn run(&mut self) {
        let child = Command::new(need("redis-server"))
            .arg(self.dir.path().join("redis.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start: {}",
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        stop_child(&mut self.child);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of its own (the process's shared cluster cannot be stopped): a
/// cluster in a temporary directory whose superuser `admin` logs in with `admin_password`,
/// on a unix socket in that directory only. Run as the `postgres` user when we are root.
pub struct PgServer {
    pub dir: PathBuf,
    pub admin_password: String,
    /// With TLS: the loopback port of its TCP listener (TLS only), else 0.
    pub port: u16,
    child: Option<Child>,
}

impl PgServer {
    pub fn start() -> PgServer {
        use super::pg::{bin_dir, chown, server_user};
        let user = server_user();
        let dir = tempfile::Builder::new()
            .prefix("kwpgsrv")
            .tempdir()
            .unwrap()
            .keep();
        chown(&dir, user);
        let admin_password = format!("adm{}", uuid::Uuid::new_v4().simple());
        super::pg::initdb(&bin_dir(), &dir, "admin", &admin_password);
        let mut s = PgServer {
            dir,
            admin_password,
            port: 0,
            child: None,
        };
        s.run();
        s
    }

    /// A server that also listens on a loopback port, where it takes TLS logins only.
    pub fn start_tls(certs: &Certs) -> PgServer {
        use super::pg::{chown, server_user};
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let mut s = Self::start();
        s.stop();
        let user = server_user();
        let data = s.dir.join("data");
        for (from, to) in [(&certs.cert, "server.crt"), (&certs.key, "server.key")] {
            std::fs::copy(from, data.join(to)).unwrap();
            chown(&data.join(to), user);
        }
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        s.port = free_port();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        writeln!(conf, "ssl = on\nport = {}", s.port).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all scram-sha-256\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        s.run();
        s
    }

    /// Starts the server on its data directory and waits until it answers.
    pub fn run(&mut self) {
        use super::pg::{as_server_user, bin_dir, chown, server_user};
        let user = server_user();
        let log_path = self.dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        chown(&log_path, user);
        let mut cmd = Command::new(bin_dir().join("postgres"));
        as_server_user(&mut cmd, user)
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-c", "fsync=off", "-c"])
            .arg(match self.port {
                0 => "listen_addresses=",
                _ => "listen_addresses=127.0.0.1",
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("postgres starts"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.psql_ok("postgres", "SELECT 1") {
            assert!(
                Instant::now() < deadline,
                "postgres did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: SIGINT) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    fn psql_ok(&self, db: &str, sql: &str) -> bool {
        Command::new(super::pg::bin_dir().join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.socket_port().to_string()])
            .args(["-U", "admin", "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.admin_password)
            .env("PGCONNECT_TIMEOUT", "5")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// The port number in the socket's name (the TCP port, when there is one).
    pub fn socket_port(&self) -> u16 {
        match self.port {
            0 => 5432,
            p => p,
        }
    }

    /// Writes the administrator's password to `<dir>/pg-password` (mode 0600, as a
    /// `[store] password_file` must be) and returns its path.
    pub fn password_file(&self, dir: &Path) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("pg-password");
        std::io::Write::write_all(
            &mut std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap(),
            self.admin_password.as_bytes(),
        )
        .unwrap();
        path
    }

    /// Runs SQL in `db` as the administrator.
    pub fn psql(&self, db: &str, sql: &str) {
        assert!(self.psql_ok(db, sql), "{sql} failed in {db}");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority and a server certificate it signed for 127.0.0.1 and localhost
/// (openssl), in a temporary directory.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("kwcerts")
            .tempdir()
            .unwrap();
        let p = |n: &str| dir.path().join(n);
        let openssl = |args: &str| {
            let out = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir.path())
                .output()
                .expect("openssl runs");
            assert!(
                out.status.success(),
                "openssl {args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        openssl(&format!(
            "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=keyward-test-ca"
        ));
        openssl(&format!(
            "req {ec} -keyout server.key -out server.csr -subj /CN=localhost"
        ));
        std::fs::write(
            p("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
             -out server.pem -days 2 -extfile san.ext",
        );
        // The servers run as other users (postgres): they must be able to read these.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in ["ca.pem", "server.pem", "server.key"] {
            std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        Certs {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            dir,
        }
    }
}
