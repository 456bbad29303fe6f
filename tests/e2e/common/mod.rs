//! Test harness: a fresh SoftHSM2 token and data directory per daemon, the real `keyward`
//! binary started on an ephemeral port, and a TC3-signing client.
#![allow(dead_code)]

pub mod db;
pub mod dbservers;
pub mod iam;
pub mod pg;

use keyward::client::TcClient;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN_LABEL: &str = "keyward";
pub const PIN: &str = "keyward-test-pin-1234";
pub const REGION: &str = "ap-guangzhou";

#[derive(Clone)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: String,
}

/// Which HSM backend the backend-neutral suites run on: `KEYWARD_TEST_BACKEND` = `softhsm`
/// (default), `embedded` or `serial` (the firmware simulator on a pseudo-terminal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    SoftHsm,
    Embedded,
    Serial,
}

/// The `ProtectionLevel` the backend under test reports for keys it runs itself: the linked-in
/// firmware core (`embedded`) is software with its key in a file.
pub fn protection_level_under_test() -> &'static str {
    match backend_under_test() {
        Backend::Embedded => "SOFTWARE",
        Backend::SoftHsm | Backend::Serial => "HSM",
    }
}

pub fn backend_under_test() -> Backend {
    match std::env::var("KEYWARD_TEST_BACKEND").as_deref() {
        Ok("embedded") => Backend::Embedded,
        Ok("serial") => Backend::Serial,
        Ok("softhsm") | Err(_) => Backend::SoftHsm,
        Ok(other) => panic!("unknown KEYWARD_TEST_BACKEND {other}"),
    }
}

/// The PKCS#11 module the `softhsm` backend runs on: SoftHSM2, or the module named by
/// `KEYWARD_TEST_PKCS11_MODULE` (kryoptic; scripts/test.sh builds it). Tests that reach into
/// SoftHSM2 itself (its token directory, `softhsm2-util`) use [`SOFTHSM_MODULE`] directly.
pub fn pkcs11_module_under_test() -> String {
    std::env::var("KEYWARD_TEST_PKCS11_MODULE").unwrap_or_else(|_| SOFTHSM_MODULE.into())
}

/// Whether that module is kryoptic, whose tokens live in a SQLite file named by its own
/// configuration file (`KRYOPTIC_CONF`) rather than in a SoftHSM2 token directory.
fn kryoptic_under_test() -> bool {
    Path::new(&pkcs11_module_under_test())
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("kryoptic"))
}

/// The environment variable naming the token configuration file of the module under test.
pub fn token_conf_env() -> &'static str {
    if kryoptic_under_test() {
        "KRYOPTIC_CONF"
    } else {
        "SOFTHSM2_CONF"
    }
}

/// Which store the daemons use: `KEYWARD_TEST_STORE` = `sqlite` (default) or `postgres` (a
/// database of its own per daemon on the test process's cluster, `pg.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    /// The database's name.
    Postgres(String),
    /// A database server the test started itself (its `[store]` table says where).
    External,
}

pub fn postgres_under_test() -> bool {
    match std::env::var("KEYWARD_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("unknown KEYWARD_TEST_STORE {other}"),
    }
}

/// The `[store]` table of a new daemon's configuration, and the store it names.
fn store_section() -> (String, TestStore) {
    if !postgres_under_test() {
        return (String::new(), TestStore::Sqlite);
    }
    postgres_section()
}

/// A `[store]` table naming a new database of the test cluster.
fn postgres_section() -> (String, TestStore) {
    let cluster = pg::cluster();
    let name = cluster.create_database();
    let section = format!(
        "\n[store]\nkind = \"postgres\"\nurl = \"{}\"\npassword_env = \"{}\"\npool_size = 4\n",
        cluster.url(&name),
        pg::PASSWORD_ENV
    );
    (section, TestStore::Postgres(name))
}

/// The firmware simulator binary (built by scripts/test.sh); KEYWARD_FW_SIM overrides it.
pub fn sim_binary() -> PathBuf {
    let path: PathBuf = std::env::var_os("KEYWARD_FW_SIM")
        .map(Into::into)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/keyward-fw-sim")
        });
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p keyward-firmware --features sim`",
        path.display()
    );
    path
}

/// Starts the simulator with its state in `state`; returns the process and its device path.
pub fn start_sim(state: &Path, extra: &[&str]) -> (Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(sim_binary())
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulator starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let device = line
        .trim()
        .strip_prefix("keyward-fw-sim: device ")
        .unwrap_or_else(|| panic!("unexpected simulator banner {line:?}"))
        .to_string();
    (child, device)
}

pub struct Daemon {
    /// The firmware simulator behind a serial-backend daemon (stopped after the daemon).
    pub sim: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub softhsm_conf: Option<PathBuf>,
    pub log: PathBuf,
    pub cred: Credentials,
    pub port: u16,
    /// Where its store lives (`KEYWARD_TEST_STORE`).
    pub store: TestStore,
    /// Extra environment for `keyward` (e.g. `KEYWARD_LOG_FORMAT`), applied from the next start.
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

/// The `[hsm]` table of a daemon on the test token, after `extra` top-level configuration.
fn softhsm_section(extra: &str) -> String {
    format!(
        "{extra}\n[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{TOKEN_LABEL}\"\npin_env = \"KEYWARD_TEST_PIN\"\npool_size = 4\n",
        pkcs11_module_under_test()
    )
}

/// Creates `<dir>/softhsm2.conf` and an initialised token in `<dir>/tokens` (or, when the
/// module under test is kryoptic, `<dir>/kryoptic.conf` and a token in `<dir>/kryoptic.sql`).
/// Returns the configuration file, which daemons get through [`token_conf_env`].
pub fn make_token(dir: &Path) -> PathBuf {
    if kryoptic_under_test() {
        return make_kryoptic_token(dir);
    }
    assert!(
        Path::new(SOFTHSM_MODULE).exists(),
        "SoftHSM2 is not installed ({SOFTHSM_MODULE} missing): run scripts/test.sh, which installs it"
    );
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let st = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            PIN,
            "--so-pin",
            "5678",
        ])
        .stdout(Stdio::null())
        .status()
        .expect("softhsm2-util runs");
    assert!(st.success(), "softhsm2-util --init-token failed");
    conf
}

/// A kryoptic token labelled [`TOKEN_LABEL`] with the user PIN [`PIN`], initialised with
/// OpenSC's `pkcs11-tool` as an operator would.
fn make_kryoptic_token(dir: &Path) -> PathBuf {
    let module = pkcs11_module_under_test();
    let conf = dir.join("kryoptic.conf");
    std::fs::write(
        &conf,
        format!(
            "[[slots]]\nslot = 1\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.join("kryoptic.sql").display()
        ),
    )
    .unwrap();
    let tool = |args: &[&str]| {
        let out = Command::new("pkcs11-tool")
            .env("KRYOPTIC_CONF", &conf)
            .args(["--module", &module])
            .args(args)
            .output()
            .expect("pkcs11-tool runs (apt-get install opensc)");
        assert!(
            out.status.success(),
            "pkcs11-tool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    tool(&["--init-token", "--label", TOKEN_LABEL, "--so-pin", "5678"]);
    tool(&[
        "--init-pin",
        "--login",
        "--login-type",
        "so",
        "--so-pin",
        "5678",
        // Which of the two OpenSC versions take for the new user PIN differs; give both.
        "--new-pin",
        PIN,
        "--pin",
        PIN,
    ]);
    conf
}

impl Daemon {
    /// A daemon on a fresh SoftHSM2 token.
    pub fn softhsm() -> Daemon {
        Self::softhsm_with("")
    }

    /// A daemon on a fresh SoftHSM2 token, with extra top-level configuration (placed before
    /// the `[hsm]` table).
    pub fn softhsm_with(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let conf = make_token(dir.path());
        let hsm = softhsm_section(extra);
        Self::with_config(dir, Some(conf), &hsm)
    }

    /// A daemon on the embedded (in-process firmware) backend.
    pub fn embedded() -> Daemon {
        Self::embedded_with("")
    }

    /// A daemon on the backend chosen by `KEYWARD_TEST_BACKEND`.
    pub fn under_test() -> Daemon {
        Self::under_test_with("")
    }

    pub fn under_test_with(extra: &str) -> Daemon {
        match backend_under_test() {
            Backend::SoftHsm => Self::softhsm_with(extra),
            Backend::Embedded => Self::embedded_with(extra),
            Backend::Serial => {
                let dir = tempfile::tempdir().unwrap();
                let (sim, device) = start_sim(&dir.path().join("device"), &[]);
                let hsm = format!(
                    "{extra}\n[hsm]\nbackend = \"serial\"\npath = \"{device}\"\ntimeout_ms = 1000\n"
                );
                let mut d = Self::with_config(dir, None, &hsm);
                d.sim = Some(sim);
                d
            }
        }
    }

    /// A daemon with its own `[hsm]` section (e.g. the serial backend), in `dir`.
    pub fn with_hsm_section(dir: tempfile::TempDir, hsm: &str) -> Daemon {
        Self::with_config(dir, None, hsm)
    }

    pub fn embedded_with(extra: &str) -> Daemon {
        Self::with_config(tempfile::tempdir().unwrap(), None, extra)
    }

    /// An embedded-backend daemon on a store the test started itself: `store` is the whole
    /// `[store]` table.
    pub fn embedded_on_store(store: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        Self::with_store(dir, None, "", (store.to_string(), TestStore::External))
    }

    /// A daemon on a fresh SoftHSM2 token with its store in PostgreSQL, whatever
    /// `KEYWARD_TEST_STORE` says (several daemons need a shared store).
    pub fn softhsm_on_postgres(extra: &str) -> Daemon {
        Self::softhsm_on(extra, postgres_section())
    }

    /// A daemon on a fresh SoftHSM2 token with its store on a database server the test
    /// started itself: `store` is the whole `[store]` table.
    pub fn softhsm_on_store(store: &str) -> Daemon {
        Self::softhsm_on("", (store.to_string(), TestStore::External))
    }

    fn softhsm_on(extra: &str, store: (String, TestStore)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let conf = make_token(dir.path());
        let hsm = softhsm_section(extra);
        Self::with_store(dir, Some(conf), &hsm, store)
    }

    /// Another daemon of this one's deployment: the same configuration and store, a data
    /// directory of its own and, on SoftHSM2, a clone of this daemon's token made with
    /// `scripts/clone-softhsm-token.sh` (docs/postgres.md). Started; no `keyward init`.
    pub fn another_node(&self) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let text = std::fs::read_to_string(&self.config).unwrap().replace(
            &self.data_dir().display().to_string(),
            &data.display().to_string(),
        );
        let config = dir.path().join("keyward.toml");
        std::fs::write(&config, text).unwrap();
        let softhsm_conf = self.softhsm_conf.as_ref().map(|from| {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/clone-softhsm-token.sh");
            let out = Command::new("bash")
                .arg(script)
                .arg(from)
                .arg(dir.path())
                .output()
                .expect("the clone script runs");
            assert!(
                out.status.success(),
                "clone-softhsm-token.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            dir.path().join("softhsm2.conf")
        });
        let mut d = Self::unstarted(
            dir,
            config,
            softhsm_conf,
            self.cred.clone(),
            self.store.clone(),
        );
        d.env = self.env.clone();
        d.start();
        d
    }

    /// Runs `keyward serve` expecting it to refuse to start; returns what it logged.
    pub fn refused_start(&mut self) -> String {
        let out = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&self.config)
            .output()
            .expect("keyward serve runs");
        assert!(!out.status.success(), "keyward serve started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The process id of the running daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn with_config(dir: tempfile::TempDir, softhsm_conf: Option<PathBuf>, extra: &str) -> Daemon {
        Self::with_store(dir, softhsm_conf, extra, store_section())
    }

    fn with_store(
        dir: tempfile::TempDir,
        softhsm_conf: Option<PathBuf>,
        extra: &str,
        store: (String, TestStore),
    ) -> Daemon {
        Self::with_store_and_env(dir, softhsm_conf, extra, store, Vec::new())
    }

    /// A daemon on the SoftHSM2 token configured by `softhsm_conf` with its own `[hsm]`
    /// section and environment variables of its own (`keyward init` gets them too), so that
    /// tests running side by side in one binary never share them through the process's.
    pub fn with_token_hsm_section_and_env(
        dir: tempfile::TempDir,
        softhsm_conf: PathBuf,
        hsm: &str,
        env: Vec<(String, String)>,
    ) -> Daemon {
        Self::with_store_and_env(dir, Some(softhsm_conf), hsm, store_section(), env)
    }

    fn with_store_and_env(
        dir: tempfile::TempDir,
        softhsm_conf: Option<PathBuf>,
        extra: &str,
        (store_section, store): (String, TestStore),
        env: Vec<(String, String)>,
    ) -> Daemon {
        let config = dir.path().join("keyward.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n{extra}\n[limits]\nmax_body_bytes = 65536\n{store_section}",
                data.display()
            ),
        )
        .unwrap();
        let no_cred = Credentials {
            secret_id: String::new(),
            secret_key: String::new(),
        };
        let mut d = Self::unstarted(dir, config, softhsm_conf, no_cred, store);
        d.env = env;
        let out = d
            .command()
            .arg("init")
            .arg("--config")
            .arg(&d.config)
            .output()
            .expect("keyward init runs");
        assert!(
            out.status.success(),
            "keyward init failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("init prints JSON");
        d.cred = Credentials {
            secret_id: v["SecretId"].as_str().unwrap().into(),
            secret_key: v["SecretKey"].as_str().unwrap().into(),
        };
        assert_eq!(v["Region"], REGION);
        d.start();
        d
    }

    /// A daemon not yet started, logging to `<dir>/daemon.log`.
    fn unstarted(
        dir: tempfile::TempDir,
        config: PathBuf,
        softhsm_conf: Option<PathBuf>,
        cred: Credentials,
        store: TestStore,
    ) -> Daemon {
        let log = dir.path().join("daemon.log");
        Daemon {
            sim: None,
            dir,
            config,
            softhsm_conf,
            log,
            cred,
            port: 0,
            store,
            env: Vec::new(),
            child: None,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keyward"));
        c.env("KEYWARD_TEST_PIN", PIN)
            .env("KEYWARD_LOG", "debug,tokio_postgres=info")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy");
        if let Some(conf) = &self.softhsm_conf {
            c.env(token_conf_env(), conf);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let TestStore::Postgres(_) = self.store {
            c.env(pg::PASSWORD_ENV, &pg::cluster().password);
        }
        c
    }

    /// Every byte the store holds on disk: the SQLite file and its WAL, or the PostgreSQL
    /// database's files and the server's WAL. Tests look for plaintext in it.
    pub fn stored_bytes(&self) -> Vec<u8> {
        match &self.store {
            TestStore::Sqlite => {
                let mut bytes = std::fs::read(self.data_dir().join("keyward.db")).unwrap();
                bytes.extend(
                    std::fs::read(self.data_dir().join("keyward.db-wal")).unwrap_or_default(),
                );
                bytes
            }
            TestStore::Postgres(name) => pg::cluster().database_bytes(name),
            TestStore::External => panic!("a test's own database server: read it there"),
        }
    }

    /// The daemon's store, for tests that change rows by hand (`db.rs`).
    pub fn db(&self) -> db::Db {
        db::Db::open(&self.store, &self.data_dir())
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let start_len = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = self
            .command()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keyward serve starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut text = String::new();
            std::fs::File::open(&self.log)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            let fresh = &text[start_len as usize..];
            if let Some(pos) = fresh.find("listening on http://127.0.0.1:") {
                let rest = &fresh[pos + "listening on http://127.0.0.1:".len()..];
                let port: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                self.port = port.parse().unwrap();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("keyward serve exited with {status}:\n{fresh}");
            }
            assert!(Instant::now() < deadline, "daemon did not start:\n{fresh}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the daemon with SIGKILL (no shutdown work at all) and waits for it.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> TcClient {
        TcClient::new(
            &self.endpoint(),
            &self.cred.secret_id,
            &self.cred.secret_key,
            REGION,
        )
        .unwrap()
    }

    pub fn log_text(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut sim) = self.sim.take() {
            let _ = sim.kill();
            let _ = sim.wait();
        }
    }
}

/// The error code of a `Response` object, if it is an error.
pub fn code(resp: &Value) -> Option<&str> {
    resp.get("Error").and_then(|e| e["Code"].as_str())
}

/// Asserts success and returns the response.
#[track_caller]
pub fn ok(resp: Value) -> Value {
    assert!(code(&resp).is_none(), "expected success, got {resp}");
    assert!(resp["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
    resp
}

#[track_caller]
pub fn err(resp: &Value, expected: &str) {
    assert_eq!(code(resp), Some(expected), "unexpected response {resp}");
    assert!(resp["RequestId"].as_str().is_some_and(|r| !r.is_empty()));
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A key's KeyState, as DescribeKey reports it.
pub async fn key_state(c: &TcClient, key_id: &str) -> String {
    ok(c.kms("DescribeKey", serde_json::json!({"KeyId": key_id}))
        .await
        .unwrap())["KeyMetadata"]["KeyState"]
        .as_str()
        .unwrap()
        .to_string()
}
