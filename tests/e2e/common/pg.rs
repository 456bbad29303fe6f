//! A real PostgreSQL server for tests: Debian's `postgresql` binaries
//! (`/usr/lib/postgresql/<version>/bin`, or `KEYWARD_PG_BIN`), one throw-away cluster per
//! test process in a temporary directory, listening only on a unix socket there, with
//! password (SCRAM) authentication. Each test daemon gets a database of its own.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI), initdb and the server
//! run as the `postgres` system user the Debian package creates. The server is stopped and
//! its directory removed when the test process exits (an `atexit` handler), and it also
//! stops by itself if the process dies without exiting (parent-death signal).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The cluster's superuser, whose password the daemons read from `PASSWORD_ENV`.
pub const USER: &str = "keyward_test";
pub const PASSWORD_ENV: &str = "KEYWARD_TEST_PG_PASSWORD";
const PORT: u16 = 5432;

pub struct Cluster {
    /// Holds the data directory, the socket and the password file.
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub password: String,
    pid: u32,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The process's cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(start)
}

/// The directory of the PostgreSQL server binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYWARD_PG_BIN") {
        return p.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run \
             scripts/test.sh, which installs it, or set KEYWARD_PG_BIN"
        )
    })
}

/// The uid and gid to run the server as: `postgres` when we are root, else ourselves.
pub fn server_user() -> Option<(u32, u32)> {
    // SAFETY: getuid and getpwnam only read process and system state; the returned record
    // is copied out before any other call.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root, but there is no `postgres` user to run PostgreSQL as \
             (install Debian's postgresql package)"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

pub fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    cmd
}

pub fn chown(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
}

fn start() -> Cluster {
    let bin = bin_dir();
    let user = server_user();
    let dir = tempfile::Builder::new()
        .prefix("kwpg")
        .tempdir()
        .unwrap()
        .keep();
    chown(&dir, user);
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    initdb(&bin, &dir, USER, &password);
    let data = dir.join("data");
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    chown(&dir.join("server.log"), user);
    let mut server = Command::new(bin.join("postgres"));
    as_server_user(&mut server, user)
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&dir)
        .args(["-p", &PORT.to_string(), "-c", "listen_addresses="])
        // Throw-away data: durability is not what these tests measure.
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only asks the kernel for a signal when the
    // spawning thread exits (the thread below lives as long as the process).
    unsafe {
        server.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    // Spawned from a thread that never ends: the parent-death signal follows the thread.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let child = server.spawn();
        let ok = child.is_ok();
        let _ = tx.send(child.map(|c| c.id()));
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    let pid = rx.recv().unwrap().expect("postgres starts");
    let c = Cluster {
        dir,
        bin,
        password,
        pid,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.psql("postgres", "SELECT 1").status.success() {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL did not start: {}",
            std::fs::read_to_string(c.dir.join("server.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: registers a plain function to run at exit.
    unsafe {
        libc::atexit(stop_at_exit);
    }
    c
}

extern "C" fn stop_at_exit() {
    if let Some(c) = CLUSTER.get() {
        // SAFETY: signals the server we started (immediate shutdown) and reaps it.
        unsafe {
            libc::kill(c.pid as i32, libc::SIGQUIT);
            let deadline = Instant::now() + Duration::from_secs(5);
            while libc::waitpid(c.pid as i32, std::ptr::null_mut(), libc::WNOHANG) == 0
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

impl Cluster {
    /// Runs one SQL command with psql as the superuser.
    pub fn psql(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &PORT.to_string(), "-U", USER, "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("psql runs")
    }

    /// A new, empty database; returns its name.
    pub fn create_database(&self) -> String {
        let name = format!("kw_{}", uuid::Uuid::new_v4().simple());
        let out = self.psql("postgres", &format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// The single value a query answers.
    pub fn value(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &PORT.to_string(), "-U", USER, "-d", db, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Every byte the server has written for `db`: its table files and the write-ahead log
    /// (after a checkpoint, so nothing waits in memory only). What "the database file and
    /// its WAL" is for SQLite.
    pub fn database_bytes(&self, db: &str) -> Vec<u8> {
        let oid = self.value(
            "postgres",
            &format!("SELECT oid FROM pg_database WHERE datname = '{db}'"),
        );
        self.value("postgres", "CHECKPOINT");
        let data = self.dir.join("data");
        let mut bytes = Vec::new();
        for sub in [data.join("base").join(oid), data.join("pg_wal")] {
            for e in std::fs::read_dir(&sub).unwrap().flatten() {
                if e.path().is_file() {
                    bytes.extend(std::fs::read(e.path()).unwrap_or_default());
                }
            }
        }
        bytes
    }

    /// A copy of database `from` (which nobody may be connected to), as a new database.
    pub fn create_database_from(&self, from: &str) -> String {
        let name = format!("kw_{}", uuid::Uuid::new_v4().simple());
        let out = self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {from}"),
        );
        assert!(
            out.status.success(),
            "CREATE DATABASE ... TEMPLATE failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    }

    /// A connection string for `db` (no password: the daemon reads it from `PASSWORD_ENV`).
    pub fn url(&self, db: &str) -> String {
        format!(
            "host={} port={PORT} user={USER} dbname={db}",
            self.dir.display()
        )
    }
}

/// Initialises a cluster in `<dir>/data` (as the server user) whose superuser `superuser`
/// logs in with `password` (SCRAM); `dir` must already belong to the server user.
pub fn initdb(bin: &Path, dir: &Path, superuser: &str, password: &str) {
    let user = server_user();
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, password).unwrap();
    chown(&pwfile, user);
    let out = as_server_user(&mut Command::new(bin.join("initdb")), user)
        .arg("-D")
        .arg(dir.join("data"))
        .args([
            "-U",
            superuser,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .args(["--no-sync", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .expect("initdb runs");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
