//! Product secrets against real servers (docs/rotation.md): MariaDB, PostgreSQL and Redis
//! accounts created through the API, used with the credential GetSecretValue returns,
//! rotated by hand and by the scheduler (test clock), the previous credential working
//! through the overlap and refused after it, a rotation against a stopped server failing
//! cleanly and retried once it is back, and the history listing every version.

mod common;

use common::dbservers::{Certs, MariaDb, PgServer, RedisServer};
use common::iam::{allow, grant, kw, look_up, secret_res};
use common::{ok, unique, Daemon};
use keyward::client::TcClient;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const OVERLAP: i64 = 3600;
const RETRY: i64 = 60;
const DAY: i64 = 86_400;

/// A kind of database under test: how to declare it, grant on it and log in to it.
trait Target {
    fn product(&self) -> &'static str;
    /// The `[[databases]]` entry for instance `id`, whose admin secret is `admin_secret`.
    fn database_toml(&self, id: &str, admin_secret: &str) -> String;
    /// The admin login, as the admin secret stores it.
    fn admin_login(&self) -> Value;
    /// `Domains` and `PrivilegesList` of CreateProductSecret.
    fn grants(&self) -> Value;
    /// Logs in and uses a granted privilege; `Err` with the server's words otherwise.
    fn use_granted(&self, user: &str, password: &str) -> Result<(), String>;
    /// Logs in and tries an ungranted privilege: `Ok` when the server refuses it.
    fn refused_ungranted(&self, user: &str, password: &str) -> Result<(), String>;
    /// Logs in and keeps the session open.
    fn hold_session(&self, user: &str, password: &str) -> Box<dyn Session>;
    /// Stops the server, and starts it again on the same data.
    fn stop(&mut self);
    fn start(&mut self);
}

/// An open session: does it still answer?
trait Session {
    fn still_works(&mut self) -> bool;
}

impl Session for mysql::Conn {
    fn still_works(&mut self) -> bool {
        use mysql::prelude::Queryable;
        self.query_drop("SELECT 1").is_ok()
    }
}

impl Session for redis::Connection {
    fn still_works(&mut self) -> bool {
        redis::cmd("GET")
            .arg("app:x")
            .query::<Option<String>>(self)
            .is_ok()
    }
}

/// The synchronous client owns a runtime: used and dropped off the test's worker thread.
struct PgSession(Option<postgres::Client>);

impl Session for PgSession {
    fn still_works(&mut self) -> bool {
        let c = self.0.as_mut().unwrap();
        tokio::task::block_in_place(|| c.batch_execute("SELECT 1").is_ok())
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        let c = self.0.take();
        tokio::task::block_in_place(|| drop(c));
    }
}

struct Maria(MariaDb);

impl Target for Maria {
    fn product(&self) -> &'static str {
        "Mysql"
    }
    fn database_toml(&self, id: &str, admin_secret: &str) -> String {
        format!(
            "[[databases]]\nid = \"{id}\"\nkind = \"mysql\"\nsocket = \"{}\"\nadmin_secret = \"{admin_secret}\"\ntimeout_secs = 3\n",
            self.0.socket().display()
        )
    }
    fn admin_login(&self) -> Value {
        json!({"UserName": "root", "Password": self.0.admin_password})
    }
    fn grants(&self) -> Value {
        self.0.sql(
            "CREATE DATABASE IF NOT EXISTS app; \
             CREATE TABLE IF NOT EXISTS app.t (x INT); \
             CREATE TABLE IF NOT EXISTS app.hidden (x INT)",
        );
        json!({
            "Domains": ["127.0.0.1", "localhost"],
            "PrivilegesList": [{"PrivilegeName": "TablePrivileges", "Privileges": ["SELECT", "INSERT"],
                                "Database": "app", "TableName": "t"}],
        })
    }
    fn use_granted(&self, user: &str, password: &str) -> Result<(), String> {
        use mysql::prelude::Queryable;
        // Over TCP on 127.0.0.1, the host pattern the account was created for.
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.0.port)
            .prefer_socket(false)
            .user(Some(user))
            .pass(Some(password));
        let mut c = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
        c.query_drop("INSERT INTO app.t VALUES (1)")
            .map_err(|e| e.to_string())?;
        c.query_first::<i64, _>("SELECT COUNT(*) FROM app.t")
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn refused_ungranted(&self, user: &str, password: &str) -> Result<(), String> {
        use mysql::prelude::Queryable;
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.0.port)
            .prefer_socket(false)
            .user(Some(user))
            .pass(Some(password));
        let mut c = mysql::Conn::new(opts).map_err(|e| e.to_string())?;
        for sql in ["SELECT * FROM app.hidden", "DELETE FROM app.t"] {
            match c.query_drop(sql) {
                Err(e) if e.to_string().contains("denied") => {}
                other => return Err(format!("{sql}: expected a refusal, got {other:?}")),
            }
        }
        Ok(())
    }
    fn hold_session(&self, user: &str, password: &str) -> Box<dyn Session> {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(self.0.port)
            .prefer_socket(false)
            .user(Some(user))
            .pass(Some(password));
        Box::new(mysql::Conn::new(opts).unwrap())
    }
    fn stop(&mut self) {
        self.0.stop();
    }
    fn start(&mut self) {
        self.0.run();
    }
}

/// A PostgreSQL server of the test's own, so it can be stopped (`PgServer`).
struct Postgres {
    server: PgServer,
    db: String,
}

impl Postgres {
    fn start() -> Postgres {
        let server = PgServer::start();
        server.psql("postgres", "CREATE DATABASE app");
        Postgres {
            server,
            db: "app".into(),
        }
    }

    fn connect(&self, user: &str, password: &str) -> Result<postgres::Client, String> {
        postgres::Config::new()
            .host_path(&self.server.dir)
            .port(5432)
            .user(user)
            .password(password)
            .dbname(&self.db)
            .connect(postgres::NoTls)
            .map_err(|e| format!("{e:?}"))
    }
}

impl Target for Postgres {
    fn product(&self) -> &'static str {
        "PostgreSQL"
    }
    fn database_toml(&self, id: &str, admin_secret: &str) -> String {
        format!(
            "[[databases]]\nid = \"{id}\"\nkind = \"postgresql\"\nsocket = \"{}\"\ndatabase = \"{}\"\nadmin_secret = \"{admin_secret}\"\ntimeout_secs = 3\n",
            self.server.dir.display(),
            self.db
        )
    }
    fn admin_login(&self) -> Value {
        json!({"UserName": "admin", "Password": self.server.admin_password})
    }
    fn grants(&self) -> Value {
        self.server.psql(
            &self.db,
            "CREATE TABLE t (x INT); CREATE TABLE hidden (x INT)",
        );
        json!({
            "Domains": [],
            "PrivilegesList": [
                {"PrivilegeName": "DatabasePrivileges", "Privileges": ["CONNECT"], "Database": self.db},
                {"PrivilegeName": "TablePrivileges", "Privileges": ["SELECT", "INSERT"],
                 "Database": self.db, "SchemaName": "public", "TableName": "t"},
            ],
        })
    }
    // The synchronous client runs its own runtime: off the test's worker thread.
    fn use_granted(&self, user: &str, password: &str) -> Result<(), String> {
        tokio::task::block_in_place(|| {
            let mut c = self.connect(user, password)?;
            c.batch_execute("INSERT INTO t VALUES (1); SELECT count(*) FROM t")
                .map_err(|e| format!("{e:?}"))
        })
    }
    fn refused_ungranted(&self, user: &str, password: &str) -> Result<(), String> {
        tokio::task::block_in_place(|| {
            let mut c = self.connect(user, password)?;
            for sql in ["SELECT * FROM hidden", "DELETE FROM t"] {
                match c.batch_execute(sql) {
                    Err(e) if format!("{e:?}").contains("permission denied") => {}
                    other => return Err(format!("{sql}: expected a refusal, got {other:?}")),
                }
            }
            Ok(())
        })
    }
    fn hold_session(&self, user: &str, password: &str) -> Box<dyn Session> {
        let c = tokio::task::block_in_place(|| self.connect(user, password)).unwrap();
        Box::new(PgSession(Some(c)))
    }
    fn stop(&mut self) {
        self.server.stop();
    }
    fn start(&mut self) {
        self.server.run();
    }
}

struct Redis(RedisServer);

impl Redis {
    fn connect(&self, user: &str, password: &str) -> Result<redis::Connection, String> {
        let info = redis::ConnectionInfo {
            addr: redis::ConnectionAddr::Tcp("127.0.0.1".into(), self.0.port),
            redis: redis::RedisConnectionInfo {
                db: 0,
                username: Some(user.into()),
                password: Some(password.into()),
                protocol: Default::default(),
            },
        };
        redis::Client::open(info)
            .and_then(|c| c.get_connection())
            .map_err(|e| e.to_string())
    }
}

impl Target for Redis {
    fn product(&self) -> &'static str {
        "Redis"
    }
    fn database_toml(&self, id: &str, admin_secret: &str) -> String {
        format!(
            "[[databases]]\nid = \"{id}\"\nkind = \"redis\"\naddress = \"127.0.0.1:{}\"\nadmin_secret = \"{admin_secret}\"\ntimeout_secs = 3\n",
            self.0.port
        )
    }
    fn admin_login(&self) -> Value {
        json!({"UserName": "admin", "Password": self.0.admin_password})
    }
    fn grants(&self) -> Value {
        json!({
            "Domains": [],
            "PrivilegesList": [{"PrivilegeName": "GlobalPrivileges",
                                "Privileges": ["~app:*", "+get", "+set"]}],
        })
    }
    fn use_granted(&self, user: &str, password: &str) -> Result<(), String> {
        let mut c = self.connect(user, password)?;
        redis::cmd("SET")
            .arg("app:x")
            .arg("1")
            .query::<()>(&mut c)
            .map_err(|e| e.to_string())?;
        redis::cmd("GET")
            .arg("app:x")
            .query::<String>(&mut c)
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn refused_ungranted(&self, user: &str, password: &str) -> Result<(), String> {
        let mut c = self.connect(user, password)?;
        for (cmd, args) in [("SET", vec!["other:x", "1"]), ("FLUSHALL", vec![])] {
            let mut q = redis::cmd(cmd);
            for a in args {
                q.arg(a);
            }
            match q.query::<redis::Value>(&mut c) {
                Err(e) if e.to_string().contains("NOPERM") => {}
                other => return Err(format!("{cmd}: expected a refusal, got {other:?}")),
            }
        }
        Ok(())
    }
    fn hold_session(&self, user: &str, password: &str) -> Box<dyn Session> {
        Box::new(self.connect(user, password).unwrap())
    }
    fn stop(&mut self) {
        self.0.stop();
    }
    fn start(&mut self) {
        self.0.run();
    }
}

async fn admin(c: &TcClient, action: &str, body: Value) -> Value {
    ok(c.call("2026-11-01", "keyward", action, body).await.unwrap())
}

async fn current(c: &TcClient, name: &str) -> (String, String) {
    let v = ok(c
        .ssm(
            "GetSecretValue",
            json!({"SecretName": name, "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap());
    let login: Value = serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap();
    (
        login["UserName"].as_str().unwrap().to_string(),
        login["Password"].as_str().unwrap().to_string(),
    )
}

/// The outcome of an asynchronous request, once it has one (TaskStatus 0 means running:
/// RotateProductSecret answers before its rotation ends).
async fn flow_status(c: &TcClient, flow: &Value) -> (i64, String) {
    for _ in 0..600 {
        let f = ok(c
            .ssm("DescribeAsyncRequestInfo", json!({"FlowID": flow}))
            .await
            .unwrap());
        let status = f["TaskStatus"].as_i64().unwrap();
        if status != 0 {
            return (status, f["Description"].as_str().unwrap().to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("request {flow} still running after 30 s");
}

/// The whole life of one product secret on `t`.
async fn lifecycle(mut t: impl Target) {
    let instance = "db-under-test";
    let admin_secret = unique("admin");
    let (webhook_url, alarms) = webhook().await;
    let started = common::iam::now();
    let config = format!(
        "[testing]\nadjustable_clock = true\n[scheduler]\ninterval_secs = 86400\n\
         [alarms]\nwebhook = \"{webhook_url}\"\n\
         [rotation]\noverlap_secs = {OVERLAP}\nretry_initial_secs = {RETRY}\nretry_max_secs = 600\n{}",
        t.database_toml(instance, &admin_secret)
    );
    let mut d = Daemon::under_test_with(&config);
    let mut c = d.client();
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": admin_secret, "SecretString": t.admin_login().to_string()}),
    )
    .await
    .unwrap());
    let products = ok(c.ssm("DescribeSupportedProducts", json!({})).await.unwrap());
    assert_eq!(
        products["Products"],
        json!([t.product(), "Cam"]),
        "{products}"
    );

    // Create: two accounts, the first published.
    let name = unique("app-cred");
    let mut req = t.grants();
    req["SecretName"] = json!(name);
    req["UserNamePrefix"] = json!("app");
    req["ProductName"] = json!(t.product());
    req["InstanceID"] = json!(instance);
    let created = ok(c.ssm("CreateProductSecret", req).await.unwrap());
    assert_eq!(flow_status(&c, &created["FlowID"]).await.0, 1);
    let first = current(&c, &name).await;
    assert_eq!(first.0, "app_a");
    t.use_granted(&first.0, &first.1).unwrap();
    t.refused_ungranted(&first.0, &first.1).unwrap();
    // The other account exists but nobody knows a password that opens it.
    assert!(t.use_granted("app_b", &first.1).is_err());

    // Manual rotation: the other account, a fresh password; the first one still works.
    let r = ok(c
        .ssm("RotateProductSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(flow_status(&c, &r["FlowID"]).await, (1, "rotated".into()));
    let second = current(&c, &name).await;
    assert_eq!(second.0, "app_b");
    assert_ne!(second.1, first.1);
    t.use_granted(&second.0, &second.1).unwrap();
    t.refused_ungranted(&second.0, &second.1).unwrap();
    t.use_granted(&first.0, &first.1)
        .expect("the previous credential works during the overlap");
    let mut session = t.hold_session(&first.0, &first.1);
    assert!(session.still_works());

    // After the overlap the previous credential stops working, its open sessions too; the
    // current one does not.
    let now = admin(&c, "AdvanceClock", json!({"Seconds": OVERLAP + 1})).await["Now"]
        .as_i64()
        .unwrap();
    assert!(
        t.use_granted(&first.0, &first.1).is_err(),
        "the previous credential must stop after the overlap"
    );
    assert!(
        !session.still_works(),
        "the previous account's open session ends with its overlap"
    );
    drop(session);
    t.use_granted(&second.0, &second.1).unwrap();

    // Automatic rotation at its time (RotationBeginTime is Beijing time, UTC+8).
    let begin = now + DAY;
    let begin_text = time::OffsetDateTime::from_unix_timestamp(begin + 8 * 3600)
        .unwrap()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap();
    ok(c.ssm(
        "UpdateRotationStatus",
        json!({"SecretName": name, "EnableRotation": true, "Frequency": 30, "RotationBeginTime": begin_text}),
    )
    .await
    .unwrap());
    let detail = ok(c
        .ssm("DescribeRotationDetail", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(detail["EnableRotation"], true);
    assert_eq!(detail["Frequency"], 30);
    assert_eq!(detail["NextRotateBeginTime"], begin_text);
    let desc = ok(c
        .ssm("DescribeSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(desc["ProductName"], t.product(), "{desc}");
    assert_eq!(desc["ResourceID"], instance, "{desc}");
    assert_eq!(desc["RotationStatus"], true, "{desc}");
    assert_eq!(desc["RotationFrequency"], 30, "{desc}");
    let secret_type = if t.product() == "Redis" { 4 } else { 1 };
    assert_eq!(desc["SecretType"], secret_type, "{desc}");
    for (product, n) in [(t.product(), 1), ("Tdsql-mysql", 0)] {
        let listed = ok(c
            .ssm(
                "ListSecrets",
                json!({"SecretType": secret_type, "ProductName": product}),
            )
            .await
            .unwrap());
        assert_eq!(listed["TotalCount"], n, "{listed}");
    }
    // The schedule and the product record survive a restart (the test clock's offset too).
    d.restart();
    c = d.client();
    let early = admin(&c, "AdvanceClock", json!({"Seconds": DAY - 60})).await;
    assert_eq!(early["SecretsRotated"], 0, "{early}");
    assert_eq!(current(&c, &name).await, second);
    let due = admin(&c, "AdvanceClock", json!({"Seconds": 120})).await;
    assert_eq!(due["SecretsRotated"], 1, "{due}");
    let third = current(&c, &name).await;
    assert_eq!(third.0, "app_a");
    assert_ne!(third.1, first.1);
    t.use_granted(&third.0, &third.1).unwrap();
    t.use_granted(&second.0, &second.1)
        .expect("the previous credential works during the overlap");
    let next = ok(c
        .ssm("DescribeRotationDetail", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_ne!(next["NextRotateBeginTime"], begin_text, "{next}");

    // A rotation against a stopped server fails cleanly: the current credential stays.
    t.stop();
    let r = ok(c
        .ssm("RotateProductSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    let (status, why) = flow_status(&c, &r["FlowID"]).await;
    assert_eq!(status, 2, "{why}");
    assert!(why.contains(instance), "{why}");
    assert_eq!(current(&c, &name).await, third);
    // An alarm to the webhook, and an audit record of the failure.
    let kinds = alarms_for(&alarms, &name).await;
    assert!(
        kinds.iter().any(|k| k == "SecretRotationFailed"),
        "{kinds:?}"
    );
    let events = ok(look_up(
        &c,
        json!({"StartTime": started - 60, "EndTime": common::iam::now() + 60, "MaxResults": 50,
               "LookupAttributes": [{"AttributeKey": "EventName",
                                     "AttributeValue": "ProductSecretRotationFailed"}]}),
    )
    .await);
    assert_eq!(events["Events"].as_array().unwrap().len(), 1, "{events}");
    let ev = &events["Events"][0];
    assert_eq!(ev["ErrorCode"], 1, "{events}");
    let detail: Value = serde_json::from_str(ev["CloudAuditEvent"].as_str().unwrap()).unwrap();
    assert_eq!(detail["apiErrorCode"], "FailedOperation", "{detail}");
    t.start();
    t.use_granted(&third.0, &third.1)
        .expect("a failed rotation leaves the current credential working");
    // The scheduler retries after the backoff, and succeeds now the server is back.
    let retried = admin(&c, "AdvanceClock", json!({"Seconds": RETRY + 1})).await;
    assert_eq!(retried["SecretsRotated"], 1, "{retried}");
    let fourth = current(&c, &name).await;
    assert_eq!(fourth.0, "app_b");
    t.use_granted(&fourth.0, &fourth.1).unwrap();
    t.use_granted(&third.0, &third.1).unwrap();

    // The history lists every published version, each with its account.
    let h = ok(c
        .ssm("DescribeRotationHistory", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(h["TotalCount"], 4, "{h}");
    let ids = h["VersionIDs"].as_array().unwrap();
    assert!(
        ids.iter()
            .all(|v| v.as_str().unwrap().starts_with("SSM_Rotate_")),
        "{h}"
    );
    let accounts: Vec<&str> = h["AccountInfoList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AccountName"].as_str().unwrap())
        .collect();
    assert_eq!(&accounts[..3], ["app_a", "app_b", "app_a"]);

    // /metrics counts the rotations since the restart: the scheduled one, the failed manual
    // one and its retry.
    let out = std::process::Command::new("curl")
        .args(["-sS", &format!("{}/metrics", d.endpoint())])
        .output()
        .expect("curl runs");
    let metrics = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        metrics.contains("keyward_secret_rotations_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keyward_secret_rotation_failures_total 1\n"),
        "{metrics}"
    );

    // DeleteMode 1: the accounts go with the secret (at once, not after a recovery window).
    let last = current(&c, &name).await;
    ok(c.ssm("DisableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    common::err(
        &c.ssm(
            "DeleteSecret",
            json!({"SecretName": name, "DeleteMode": 1, "RecoveryWindowInDays": 7}),
        )
        .await
        .unwrap(),
        "InvalidParameterValue",
    );
    ok(c.ssm(
        "DeleteSecret",
        json!({"SecretName": name, "DeleteMode": 1, "RecoveryWindowInDays": 0}),
    )
    .await
    .unwrap());
    assert!(
        t.use_granted(&last.0, &last.1).is_err(),
        "the accounts are dropped with the secret"
    );

    // No password in the daemon's log (the audit log holds no values at all).
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    for pw in [&first.1, &second.1, &third.1] {
        assert!(!log.contains(pw.as_str()), "a password reached the log");
    }
    assert!(!log.contains(t.admin_login()["Password"].as_str().unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_credentials_rotate_without_downtime() {
    lifecycle(Maria(MariaDb::start())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgresql_credentials_rotate_without_downtime() {
    lifecycle(Postgres::start()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_credentials_rotate_without_downtime() {
    lifecycle(Redis(RedisServer::start())).await;
}

/// Refusals that touch no server: unknown instance, wrong product, bad grants.
#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_before_any_account_is_made() {
    let maria = MariaDb::start();
    let t = Maria(maria);
    let d = Daemon::under_test_with(&format!(
        "{}grant_databases = [\"app\"]\n",
        t.database_toml("m1", "nope")
    ));
    let c = d.client();
    let base = json!({"SecretName": unique("x"), "UserNamePrefix": "app", "ProductName": "Mysql",
                      "InstanceID": "m1", "Domains": ["localhost"],
                      "PrivilegesList": [{"PrivilegeName": "DatabasePrivileges", "Privileges": ["SELECT"], "Database": "app"}]});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, code) in [
        (with("InstanceID", json!("other")), "InvalidParameterValue"),
        (with("ProductName", json!("Redis")), "InvalidParameterValue"),
        (
            with("UserNamePrefix", json!("1bad")),
            "InvalidParameterValue",
        ),
        (
            with("UserNamePrefix", json!("waytoolongprefix")),
            "InvalidParameterValue",
        ),
        (
            with(
                "PrivilegesList",
                json!([{"PrivilegeName": "GlobalPrivileges", "Privileges": ["SUPER"]}]),
            ),
            "InvalidParameterValue",
        ),
        (
            with(
                "PrivilegesList",
                json!([{"PrivilegeName": "DatabasePrivileges", "Privileges": ["SELECT"], "Database": "a`b"}]),
            ),
            "InvalidParameterValue",
        ),
        // Only the databases grant_databases names, and nothing global.
        (
            with(
                "PrivilegesList",
                json!([{"PrivilegeName": "DatabasePrivileges", "Privileges": ["SELECT"], "Database": "other"}]),
            ),
            "InvalidParameterValue",
        ),
        (
            with(
                "PrivilegesList",
                json!([{"PrivilegeName": "GlobalPrivileges", "Privileges": ["SELECT"]}]),
            ),
            "InvalidParameterValue",
        ),
        // MySQL's own schemas are never granted (password hashes).
        (
            with(
                "PrivilegesList",
                json!([{"PrivilegeName": "TablePrivileges", "Privileges": ["SELECT"], "Database": "mysql", "TableName": "user"}]),
            ),
            "InvalidParameterValue",
        ),
        // The admin secret does not exist: nothing is created.
        (base.clone(), "FailedOperation"),
    ] {
        let r = c.ssm("CreateProductSecret", body.clone()).await.unwrap();
        common::err(&r, code);
    }
    assert_eq!(
        c.ssm("DescribeSecret", json!({"SecretName": base["SecretName"]}))
            .await
            .unwrap()["Error"]["Code"],
        "ResourceNotFound.SecretNotExist"
    );
    common::err(
        &c.ssm("DescribeAsyncRequestInfo", json!({"FlowID": 999}))
            .await
            .unwrap(),
        "ResourceNotFound",
    );
}

/// What the application holding an API-key secret's credential does: read the secret with
/// the key it holds (a signed request), and use what it read from then on.
async fn refresh(root: &TcClient, held: &(String, String), name: &str) -> (String, String) {
    let app = root.with_credentials(&held.0, &held.1);
    let v = ok(app
        .ssm(
            "GetSecretValue",
            json!({"SecretName": name, "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap());
    let k: Value = serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap();
    (
        k["SecretId"].as_str().unwrap().to_string(),
        k["SecretKey"].as_str().unwrap().to_string(),
    )
}

async fn key_ids(root: &TcClient, uin: u64) -> Vec<(String, String)> {
    let r = ok(kw(root, "ListAccessKeys", json!({"TargetUin": uin})).await);
    r["AccessKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AccessKeyId"].as_str().unwrap().to_string(),
                k["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// API-key secrets: a sub-account that reads its own credential from Keyward signs every
/// request with a working key across two rotations; each previous key is disabled after the
/// overlap and deleted one overlap later.
#[tokio::test(flavor = "multi_thread")]
async fn api_key_secret_keeps_its_reader_signing_across_rotations() {
    let d = Daemon::under_test_with(&format!(
        "[testing]\nadjustable_clock = true\n[scheduler]\ninterval_secs = 86400\n\
         [rotation]\noverlap_secs = {OVERLAP}\n"
    ));
    let root = d.client();
    let status = ok(root.ssm("GetServiceStatus", json!({})).await.unwrap());
    assert_eq!(status["AccessKeyEscrowEnabled"], true, "{status}");
    let app = common::iam::add_user(&root, "app").await;
    let name = unique("app-key");
    ok(root
        .ssm(
            "CreateSecret",
            json!({"SecretName": name, "SecretType": 3,
                   "AdditionalConfig": json!({"TargetUin": app.uin}).to_string()}),
        )
        .await
        .unwrap());
    grant(
        &root,
        app.uin,
        &allow(&["ssm:GetSecretValue"], &[secret_res(&name)]),
    )
    .await;
    // The application is handed the secret's first key once; from then on it reads its own.
    let mut held = current_api_key(&root, &name).await;
    assert_ne!(held.0, app.secret_id);
    held = refresh(&root, &held, &name).await;
    for _ in 0..2 {
        let r = ok(root
            .ssm("RotateProductSecret", json!({"SecretName": name}))
            .await
            .unwrap());
        assert_eq!(flow_status(&root, &r["FlowID"]).await.0, 1);
        // Within the overlap the key it holds still signs, and brings the new one.
        let fresh = refresh(&root, &held, &name).await;
        assert_ne!(fresh.0, held.0);
        let previous = std::mem::replace(&mut held, refresh(&root, &fresh, &name).await);
        assert_eq!(held, fresh);
        // After the overlap the previous key is disabled; the application never noticed.
        admin(&root, "AdvanceClock", json!({"Seconds": OVERLAP + 1})).await;
        held = refresh(&root, &held, &name).await;
        let refused = root
            .with_credentials(&previous.0, &previous.1)
            .ssm(
                "GetSecretValue",
                json!({"SecretName": name, "VersionId": "SSM_Current"}),
            )
            .await
            .unwrap();
        common::err(&refused, "AuthFailure.SecretIdNotFound");
        let keys = key_ids(&root, app.uin).await;
        assert!(
            keys.contains(&(previous.0.clone(), "Inactive".into())),
            "{keys:?}"
        );
        // One overlap later it is gone.
        admin(&root, "AdvanceClock", json!({"Seconds": OVERLAP + 1})).await;
        held = refresh(&root, &held, &name).await;
        let keys = key_ids(&root, app.uin).await;
        assert!(!keys.iter().any(|(id, _)| *id == previous.0), "{keys:?}");
    }
    let h = ok(root
        .ssm("DescribeRotationHistory", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(h["TotalCount"], 3, "{h}");
    // DeleteMode 1 deletes the secret's keys with it; the user's own key stays.
    ok(root
        .ssm("DisableSecret", json!({"SecretName": name}))
        .await
        .unwrap());
    ok(root
        .ssm(
            "DeleteSecret",
            json!({"SecretName": name, "DeleteMode": 1, "RecoveryWindowInDays": 0}),
        )
        .await
        .unwrap());
    let keys = key_ids(&root, app.uin).await;
    assert_eq!(keys, vec![(app.secret_id.clone(), "Active".to_string())]);
}

async fn current_api_key(c: &TcClient, name: &str) -> (String, String) {
    let v = ok(c
        .ssm(
            "GetSecretValue",
            json!({"SecretName": name, "VersionId": "SSM_Current"}),
        )
        .await
        .unwrap());
    let k: Value = serde_json::from_str(v["SecretString"].as_str().unwrap()).unwrap();
    (
        k["SecretId"].as_str().unwrap().to_string(),
        k["SecretKey"].as_str().unwrap().to_string(),
    )
}

/// A webhook receiver for the daemon's alarms: every JSON body POSTed to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/alarms",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alarms", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// The kinds of the alarms about secret `name`, once there is one (bounded wait).
async fn alarms_for(got: &Arc<Mutex<Vec<Value>>>, name: &str) -> Vec<String> {
    for _ in 0..200 {
        let kinds: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .filter(|a| a["Alarm"]["KeyId"] == name)
            .map(|a| a["Alarm"]["Kind"].as_str().unwrap().to_string())
            .collect();
        if !kinds.is_empty() {
            return kinds;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no alarm about {name}: {:?}", got.lock().unwrap());
}

/// TLS to each kind of server (`tls_ca`). These servers take logins over TLS only, so a
/// product secret created and rotated proves every connection (administrative and the
/// login check) spoke TLS with the certificate verified; the same servers declared without
/// `tls_ca` are refused.
#[tokio::test(flavor = "multi_thread")]
async fn tls_connections_to_every_kind_of_server() {
    let certs = Certs::new();
    let maria = MariaDb::start_tls(&certs);
    maria.sql("CREATE DATABASE app");
    let pg = PgServer::start_tls(&certs);
    pg.psql("postgres", "CREATE DATABASE app");
    let redis = RedisServer::start_tls(&certs);
    let kinds = [
        (
            "maria",
            "mysql",
            "Mysql",
            maria.port,
            maria.admin_password.clone(),
            json!([{"PrivilegeName": "DatabasePrivileges", "Privileges": ["SELECT"], "Database": "app"}]),
        ),
        (
            "pg",
            "postgresql",
            "PostgreSQL",
            pg.port,
            pg.admin_password.clone(),
            json!([{"PrivilegeName": "DatabasePrivileges", "Privileges": ["CONNECT"], "Database": "app"}]),
        ),
        (
            "cache",
            "redis",
            "Redis",
            redis.port,
            redis.admin_password.clone(),
            json!([{"PrivilegeName": "GlobalPrivileges", "Privileges": ["~app:*", "+get"]}]),
        ),
    ];
    let mut config = String::new();
    for (id, kind, _, port, _, _) in &kinds {
        for (suffix, tls) in [
            ("", format!("tls_ca = \"{}\"\n", certs.ca.display())),
            ("-plain", String::new()),
        ] {
            config += &format!(
                "[[databases]]\nid = \"{id}{suffix}\"\nkind = \"{kind}\"\naddress = \"127.0.0.1:{port}\"\n\
                 admin_secret = \"{id}-admin\"\ndatabase = \"app\"\ntimeout_secs = 3\n{tls}"
            );
        }
    }
    let d = Daemon::under_test_with(&config);
    let c = d.client();
    for (id, _, product, _, password, grants) in kinds {
        ok(c.ssm(
            "CreateSecret",
            json!({"SecretName": format!("{id}-admin"),
                   "SecretString": json!({"UserName": "admin", "Password": password}).to_string()}),
        )
        .await
        .unwrap());
        let create = |instance: &str, prefix: &str| {
            json!({"SecretName": unique(id), "UserNamePrefix": prefix, "ProductName": product,
                   "InstanceID": instance, "Domains": ["127.0.0.1"], "PrivilegesList": grants})
        };
        let made = ok(c
            .ssm("CreateProductSecret", create(id, "tls"))
            .await
            .unwrap());
        assert_eq!(flow_status(&c, &made["FlowID"]).await.0, 1, "{product}");
        let r = ok(c
            .ssm(
                "RotateProductSecret",
                json!({"SecretName": made["SecretName"]}),
            )
            .await
            .unwrap());
        assert_eq!(
            flow_status(&c, &r["FlowID"]).await,
            (1, "rotated".into()),
            "{product}"
        );
        let plain = c
            .ssm(
                "CreateProductSecret",
                create(&format!("{id}-plain"), "plain"),
            )
            .await
            .unwrap();
        common::err(&plain, "FailedOperation");
    }
}

/// A grant the server refuses (a table that does not exist) fails the creation cleanly: no
/// secret, and no account left behind, so the same prefix works once the grant is right.
#[tokio::test(flavor = "multi_thread")]
async fn refused_grant_leaves_no_account_behind() {
    let maria = Maria(MariaDb::start());
    let pg = Postgres::start();
    let targets: [&dyn Target; 2] = [&maria, &pg];
    let mut config = String::new();
    for (i, t) in targets.iter().enumerate() {
        config += &t.database_toml(&format!("db{i}"), &format!("db{i}-admin"));
    }
    let d = Daemon::under_test_with(&config);
    let c = d.client();
    for (i, t) in targets.iter().enumerate() {
        ok(c.ssm(
            "CreateSecret",
            json!({"SecretName": format!("db{i}-admin"), "SecretString": t.admin_login().to_string()}),
        )
        .await
        .unwrap());
        let mut req = t.grants();
        let name = unique("grant");
        req["SecretName"] = json!(name);
        req["UserNamePrefix"] = json!("gr");
        req["ProductName"] = json!(t.product());
        req["InstanceID"] = json!(format!("db{i}"));
        let mut wrong = req.clone();
        let last = wrong["PrivilegesList"].as_array().unwrap().len() - 1;
        wrong["PrivilegesList"][last]["TableName"] = json!("no_such_table");
        common::err(
            &c.ssm("CreateProductSecret", wrong).await.unwrap(),
            "FailedOperation",
        );
        common::err(
            &c.ssm("DescribeSecret", json!({"SecretName": name}))
                .await
                .unwrap(),
            "ResourceNotFound.SecretNotExist",
        );
        ok(c.ssm("CreateProductSecret", req).await.unwrap());
        let (user, password) = current(&c, &name).await;
        t.use_granted(&user, &password).unwrap();
    }
}

/// Rotations started together never interleave: each takes the secret's claim or reports it
/// busy, and whatever the interleaving, the published credential is one the server knows.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_rotations_never_publish_an_unknown_password() {
    let t = Maria(MariaDb::start());
    let d = Daemon::under_test_with(&t.database_toml("m1", "m1-admin"));
    let c = d.client();
    ok(c.ssm(
        "CreateSecret",
        json!({"SecretName": "m1-admin", "SecretString": t.admin_login().to_string()}),
    )
    .await
    .unwrap());
    let mut req = t.grants();
    let name = unique("busy");
    req["SecretName"] = json!(name);
    req["UserNamePrefix"] = json!("busy");
    req["ProductName"] = json!("Mysql");
    req["InstanceID"] = json!("m1");
    ok(c.ssm("CreateProductSecret", req).await.unwrap());
    let mut flows = Vec::new();
    for _ in 0..4 {
        let r = ok(c
            .ssm("RotateProductSecret", json!({"SecretName": name}))
            .await
            .unwrap());
        flows.push(r["FlowID"].clone());
    }
    let mut rotated = 0;
    for f in &flows {
        match flow_status(&c, f).await {
            (1, _) => rotated += 1,
            (2, why) => assert!(why.contains("being rotated"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(rotated >= 1);
    let (user, password) = current(&c, &name).await;
    t.use_granted(&user, &password).unwrap();
    let h = ok(c
        .ssm("DescribeRotationHistory", json!({"SecretName": name}))
        .await
        .unwrap());
    assert_eq!(h["TotalCount"], 1 + rotated, "{h}");
}
