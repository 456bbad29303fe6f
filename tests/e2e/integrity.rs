//! Issue 12, items 4 and 10: rows that grant something carry an HSM-computed integrity tag,
//! and a row written into the database by hand is refused when the daemon loads it. Each test
//! performs the attack on a stopped daemon's store, then restarts it.

mod common;

use common::db::Db;
use common::*;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use keyward::client::TcClient;
use serde_json::{json, Value};

async fn create_key(c: &TcClient) -> String {
    ok(c.kms("CreateKey", json!({"Alias": unique("tag")}))
        .await
        .unwrap())["KeyId"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn encrypt(c: &TcClient, key_id: &str, plain: &[u8]) -> Value {
    c.kms("Encrypt", json!({"KeyId": key_id, "Plaintext": b64(plain)}))
        .await
        .unwrap()
}

async fn decrypt(c: &TcClient, blob: &str) -> Value {
    c.kms("Decrypt", json!({"CiphertextBlob": blob}))
        .await
        .unwrap()
}

/// The daemon's store (SQLite or PostgreSQL, `KEYWARD_TEST_STORE`).
fn db(d: &Daemon) -> Db {
    d.db()
}

/// Inserts `sealed` (with `tag`) as the key's version 2 and makes it the current version.
fn plant_version(db: &Db, key_id: &str, backend: &str, sealed: &[u8], tag: &[u8]) {
    db.execute(
        "INSERT INTO key_versions (key_id, version, backend, sealed, create_time, public_key, tag) \
         VALUES (?1, 2, ?2, ?3, 0, x'', ?4)",
        &vals![key_id, backend, sealed, tag],
    );
    db.execute(
        "UPDATE keys SET current_version = 2 WHERE key_id = ?1",
        &vals![key_id],
    );
}

fn version_row(db: &Db, key_id: &str) -> (String, Vec<u8>, Vec<u8>) {
    let r = db.row(
        "SELECT backend, sealed, tag FROM key_versions WHERE key_id = ?1 AND version = 1",
        &vals![key_id],
    );
    (r[0].text(), r[1].blob(), r[2].blob())
}

/// Item 4: a PIN holder wraps a key of known value under the root key (a well-formed sealed
/// blob) and inserts it as a key's newest version, so every later ciphertext would be
/// readable offline. The daemon refuses the version; ciphertexts of the real versions still
/// decrypt. The one test in this binary that loads SoftHSM2 itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_key_version_is_refused() {
    let mut d = Daemon::softhsm();
    let c = d.client();
    let key_id = create_key(&c).await;
    let before = ok(encrypt(&c, &key_id, b"before the attack").await)["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    d.stop();

    std::env::set_var("SOFTHSM2_CONF", d.softhsm_conf.as_ref().unwrap());
    let p11 = Pkcs11::new(SOFTHSM_MODULE).unwrap();
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = p11
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| p11.get_token_info(*s).unwrap().label() == TOKEN_LABEL)
        .unwrap();
    let s = p11.open_rw_session(slot).unwrap();
    s.login(UserType::User, Some(&AuthPin::from(PIN))).unwrap();
    let root = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"keyward-root".to_vec()),
        ])
        .unwrap()[0];
    let known = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Value(vec![0x42; 32]),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ])
        .unwrap();
    let wrapped = s.wrap_key(&Mechanism::AesKeyWrapPad, root, known).unwrap();
    let mut forged = vec![0x02];
    forged.extend(wrapped);
    s.logout().unwrap();

    // With the real version's tag copied over, then with none. (The daemon opens its
    // database exclusively, so each change closes its connection before the start.)
    {
        let db = db(&d);
        let (backend, _, real_tag) = version_row(&db, &key_id);
        plant_version(&db, &key_id, &backend, &forged, &real_tag);
    }
    d.start();
    let c = d.client();
    err(
        &encrypt(&c, &key_id, b"after the attack").await,
        "InternalError",
    );
    let opened = ok(decrypt(&c, &before).await);
    assert_eq!(
        unb64(opened["Plaintext"].as_str().unwrap()),
        b"before the attack"
    );
    d.stop();
    db(&d).execute(
        "UPDATE key_versions SET tag = x'' WHERE key_id = ?1 AND version = 2",
        &vals![&key_id],
    );
    d.start();
    err(
        &encrypt(&d.client(), &key_id, b"after the attack").await,
        "InternalError",
    );
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    assert!(
        log.contains(&format!("version 2 of CMK {key_id}")) && log.contains("integrity"),
        "the refusal names the row in the log"
    );
}

/// Item 4 on every backend: a genuine sealed blob, tag and all, moved to another key (or
/// version) is refused, so one key's material cannot be given to another.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_version_moved_to_another_key_is_refused() {
    let mut d = Daemon::under_test();
    let c = d.client();
    let (a, b) = (create_key(&c).await, create_key(&c).await);
    let old = ok(encrypt(&c, &b, b"under b").await)["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    d.stop();
    let (backend, sealed, tag) = version_row(&db(&d), &a);
    plant_version(&db(&d), &b, &backend, &sealed, &tag);
    d.start();
    let c = d.client();
    err(&encrypt(&c, &b, b"x").await, "InternalError");
    // The key's own version is untouched and still decrypts.
    let opened = ok(decrypt(&c, &old).await);
    assert_eq!(unb64(opened["Plaintext"].as_str().unwrap()), b"under b");
    // Key A is unaffected.
    ok(encrypt(&c, &a, b"x").await);

    // Its own first version replaced by A's: refused rather than a decryption failure.
    d.stop();
    db(&d).execute(
        "UPDATE key_versions SET sealed = ?2, tag = ?3 WHERE key_id = ?1 AND version = 1",
        &vals![&b, sealed, tag],
    );
    d.start();
    err(&decrypt(&d.client(), &old).await, "InternalError");
}

/// A store from before integrity tags: its versions are tagged at the first start, once;
/// afterwards an untagged version is refused rather than adopted.
#[tokio::test(flavor = "multi_thread")]
async fn versions_of_an_older_store_are_tagged_once() {
    let mut d = Daemon::under_test();
    let key_id = create_key(&d.client()).await;
    let old = ok(encrypt(&d.client(), &key_id, b"old").await)["CiphertextBlob"]
        .as_str()
        .unwrap()
        .to_string();
    d.stop();
    {
        // What the schema migration leaves: every tag empty, no marker.
        let db = db(&d);
        db.execute("UPDATE key_versions SET tag = x''", &[]);
        db.execute(
            "DELETE FROM meta WHERE name = 'key_versions_tagged_v1'",
            &[],
        );
    }
    d.start();
    let opened = ok(decrypt(&d.client(), &old).await);
    assert_eq!(unb64(opened["Plaintext"].as_str().unwrap()), b"old");
    d.stop();
    let tag = version_row(&db(&d), &key_id).2;
    assert!(!tag.is_empty(), "the version was tagged at start-up");
    db(&d).execute("UPDATE key_versions SET tag = x''", &[]);
    d.start();
    err(&decrypt(&d.client(), &old).await, "InternalError");
}

/// Item 10: whoever can write the database cannot grant themselves rights. A policy allowing
/// everything, inserted and attached to a sub-account by hand, grants nothing: the
/// authorization tables no longer match their seal, so sub-accounts are refused (fail
/// closed) and no change through Keyward re-seals the tampered state, until the rows are
/// put back.
#[tokio::test(flavor = "multi_thread")]
async fn authorization_rows_written_by_hand_grant_nothing() {
    use common::iam::{add_user, allow, create_policy, key_res, kw};
    let mut d = Daemon::under_test();
    let root = d.client();
    let user = add_user(&root, "tamper").await;
    err(
        &user.client.kms("ListKeys", json!({})).await.unwrap(),
        "AuthFailure.UnauthorizedOperation",
    );
    d.stop();
    {
        let db = db(&d);
        db.execute(
            "INSERT INTO policies (policy_id, name, description, document, create_time, \
             update_time) VALUES (9999, 'evil', '', ?1, 0, 0)",
            &vals![r#"{"version":"2.0","statement":[{"effect":"allow","action":["*"],"resource":["*"]}]}"#],
        );
        db.execute(
            "INSERT INTO policy_attachments (policy_id, target_kind, target_id, create_time) \
             VALUES (9999, 'user', ?1, 0)",
            &vals![user.uin as i64],
        );
    }
    d.start();
    let root = d.client();
    let sub = root.with_credentials(&user.secret_id, &user.secret_key);
    err(
        &sub.kms("CreateKey", json!({"Alias": unique("evil")}))
            .await
            .unwrap(),
        "InternalError",
    );
    // The root account is not governed by policies and keeps working ...
    let key_id = create_key(&root).await;
    // ... but its changes to the authorization tables are refused rather than sealing the
    // attacker's rows.
    let doc = allow(&["kms:ListKeys"], &[key_res(&key_id)]);
    let r = kw(
        &root,
        "CreatePolicy",
        json!({"PolicyName": unique("p"), "PolicyDocument": doc.to_string()}),
    )
    .await;
    err(&r, "InternalError");
    let log = String::from_utf8_lossy(&d.log_text()).to_string();
    assert!(log.contains("the authorization tables"), "named in the log");

    // The rows removed, the old seal matches again: the sub-account is refused as before
    // and the root's changes go through.
    d.stop();
    {
        let db = db(&d);
        db.execute("DELETE FROM policy_attachments WHERE policy_id = 9999", &[]);
        db.execute("DELETE FROM policies WHERE policy_id = 9999", &[]);
    }
    d.start();
    let root = d.client();
    let sub = root.with_credentials(&user.secret_id, &user.secret_key);
    err(
        &sub.kms("ListKeys", json!({})).await.unwrap(),
        "AuthFailure.UnauthorizedOperation",
    );
    create_policy(&root, &allow(&["kms:ListKeys"], &[key_res(&key_id)])).await;
}
