//! Store conformance: the behaviour every `KeyStore` must show, run by the SQLite and the
//! PostgreSQL adapters' tests against their own stores (one body, two backends).

use crate::error::Error;
use crate::store::{KeyQuery, KeyRecord, KeyState, KeyStore, Tag, TagFilter, Trail};
use keyward_shared::Algorithm;

pub fn key(id: &str, alias: &str, t: i64) -> KeyRecord {
    KeyRecord {
        key_id: id.into(),
        region: "r".into(),
        owner_uin: 1,
        creator_uin: 1,
        alias: alias.into(),
        description: String::new(),
        key_usage: "ENCRYPT_DECRYPT".into(),
        origin: "TENCENT_KMS".into(),
        owner: "user".into(),
        algorithm: Algorithm::Aes256Gcm,
        state: KeyState::Enabled,
        create_time: t,
        deletion_date: 0,
        rotation_enabled: false,
        rotate_days: 0,
        next_rotate_time: 0,
        last_rotate_time: 0,
        current_version: 1,
        tags: vec![Tag {
            key: "env".into(),
            value: alias.into(),
        }],
        last_manual_rotate: 0,
        last_alarm_time: 0,
        valid_to: 0,
        material_kcv: vec![],
    }
}

pub fn alias_unique_quota_and_failed_update_leaves_record(s: &dyn KeyStore) {
    s.insert_key(&Trail::off(), &key("a", "one", 1), None, 2)
        .unwrap();
    assert!(matches!(
        s.insert_key(&Trail::off(), &key("b", "one", 2), None, 2),
        Err(Error::AliasExists(_))
    ));
    s.insert_key(&Trail::off(), &key("b", "two", 2), None, 2)
        .unwrap();
    assert!(matches!(
        s.insert_key(&Trail::off(), &key("c", "three", 3), None, 2),
        Err(Error::CmkLimitExceeded(2))
    ));
    // A duplicate id is not an alias conflict.
    assert!(matches!(
        s.insert_key(&Trail::off(), &key("a", "four", 4), None, 10),
        Err(Error::Store(_))
    ));
    let r = s.update_key(&Trail::off(), "r", 1, "a", &mut |k| {
        k.description = "changed".into();
        Err(Error::CmkDisabled("a".into()))
    });
    assert!(r.is_err());
    assert_eq!(s.get_key("r", 1, "a").unwrap().unwrap().description, "");
    let r = s.update_key(&Trail::off(), "r", 1, "a", &mut |k| {
        k.alias = "two".into();
        Ok(())
    });
    assert!(matches!(r, Err(Error::AliasExists(_))));
    assert!(
        s.get_key("r", 2, "a").unwrap().is_none(),
        "another owner's key"
    );
}

pub fn query_filters_and_pages(s: &dyn KeyStore) {
    for i in 0..5 {
        s.insert_key(
            &Trail::off(),
            &key(&format!("id{i}"), &format!("al_{i}"), i),
            None,
            100,
        )
        .unwrap();
    }
    let mut q = KeyQuery {
        region: "r".into(),
        owner_uin: 1,
        states: None,
        origin: None,
        key_usage: None,
        search: None,
        tag_filters: vec![],
        user_created: None,
        newest_first: true,
        offset: 1,
        limit: 2,
    };
    let (total, page) = s.query_keys(&q).unwrap();
    assert_eq!(total, 5);
    assert_eq!(
        page.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
        ["id3", "id2"]
    );
    q.search = Some("L_3".into());
    assert_eq!(
        s.query_keys(&q).unwrap().0,
        1,
        "ASCII case ignored, as in SQLite"
    );
    q.search = Some("%".into());
    assert_eq!(s.query_keys(&q).unwrap().0, 0);
    q.search = None;
    q.tag_filters = vec![TagFilter {
        key: "env".into(),
        values: vec!["al_1".into(), "al_4".into()],
    }];
    assert_eq!(s.query_keys(&q).unwrap().0, 2);
    q.tag_filters = vec![];
    q.states = Some(vec![KeyState::Disabled, KeyState::Archived]);
    assert_eq!(s.query_keys(&q).unwrap().0, 0);
}

/// A secret `db` (owner 1, region `r`) and its product record, not yet inserted.
fn product_fixture(s: &dyn crate::store::Store) -> crate::store::ProductSecretRecord {
    use crate::store::{ProductSecretRecord, SecretRecord, SecretStatus, SecretVersion};
    let secret = SecretRecord {
        region: "r".into(),
        owner_uin: 1,
        name: "db".into(),
        create_uin: 1,
        description: String::new(),
        kms_key_id: "k".into(),
        kms_key_type: "DEFAULT".into(),
        status: SecretStatus::Enabled,
        secret_type: 1,
        create_time: 1,
        delete_time: 0,
        tags: vec![],
        ssh_key_id: String::new(),
        ssh_key_name: String::new(),
        project_id: 0,
    };
    let version = SecretVersion {
        version_id: "SSM_Current".into(),
        create_time: 1,
        is_binary: false,
        key_blob: vec![1],
        nonce: vec![2],
        ciphertext: vec![3],
    };
    s.insert_secret(&Trail::off(), &secret, &version, 10)
        .unwrap();
    ProductSecretRecord {
        region: "r".into(),
        owner_uin: 1,
        name: "db".into(),
        product: "Mysql".into(),
        instance_id: "m1".into(),
        user_prefix: "app".into(),
        domains: vec!["%".into(), "10.0.0.%".into()],
        privileges: "[]".into(),
        rotation_enabled: true,
        frequency_days: 30,
        next_rotation: 100,
        last_rotation: 1,
        retire_account: String::new(),
        retire_at: 0,
        failures: 0,
        retry_at: 0,
    }
}

/// Product secrets: the record round-trips, claims exclude each other until released or
/// lapsed, a failed update changes nothing, flows belong to their account, and deleting the
/// secret deletes its product record.
pub fn product_secrets_claims_and_flows(s: &dyn crate::store::Store) {
    use crate::store::{FlowRecord, FLOW_FAILED, FLOW_RUNNING};
    let p = product_fixture(s);
    s.insert_product_secret(&Trail::off(), &p).unwrap();
    assert_eq!(
        s.get_product_secret("r", 1, "db").unwrap().as_ref(),
        Some(&p)
    );
    assert!(s.get_product_secret("r", 2, "db").unwrap().is_none());
    assert_eq!(s.product_secrets().unwrap(), vec![p.clone()]);

    assert!(s.claim_product_secret("r", 1, "db", 100, 400).unwrap());
    assert!(
        !s.claim_product_secret("r", 1, "db", 200, 500).unwrap(),
        "held"
    );
    assert!(
        s.claim_product_secret("r", 1, "db", 401, 700).unwrap(),
        "lapsed"
    );
    s.release_product_secret("r", 1, "db").unwrap();
    assert!(
        s.claim_product_secret("r", 1, "db", 402, 800).unwrap(),
        "released"
    );

    let r = s.update_product_secret(&Trail::off(), "r", 1, "db", &mut |r| {
        r.failures = 9;
        Err(Error::TargetFailed("down".into()))
    });
    assert!(r.is_err());
    assert_eq!(
        s.get_product_secret("r", 1, "db")
            .unwrap()
            .unwrap()
            .failures,
        0
    );
    let updated = s
        .update_product_secret(&Trail::off(), "r", 1, "db", &mut |r| {
            r.failures = 2;
            r.retry_at = 160;
            r.retire_account = "app_a".into();
            r.retire_at = 3700;
            r.rotation_enabled = false;
            Ok(())
        })
        .unwrap()
        .unwrap();
    assert_eq!(
        s.get_product_secret("r", 1, "db").unwrap().unwrap(),
        updated
    );
    assert_eq!(
        (updated.failures, updated.retire_account.as_str()),
        (2, "app_a")
    );
    assert!(s
        .update_product_secret(&Trail::off(), "r", 1, "none", &mut |_| Ok(()))
        .unwrap()
        .is_none());

    let flow = FlowRecord {
        flow_id: 0,
        region: "r".into(),
        owner_uin: 1,
        secret_name: "db".into(),
        action: "RotateProductSecret".into(),
        status: FLOW_RUNNING,
        description: String::new(),
        create_time: 5,
    };
    let id = s.insert_flow(&Trail::off(), &flow).unwrap();
    let second = s.insert_flow(&Trail::off(), &flow).unwrap();
    assert!(id > 0 && second > id);
    assert!(
        s.get_flow("r", 2, id).unwrap().is_none(),
        "another account's"
    );
    s.finish_flow(&Trail::off(), id, FLOW_FAILED, "database m1 down")
        .unwrap();
    let got = s.get_flow("r", 1, id).unwrap().unwrap();
    assert_eq!(
        (got.status, got.description.as_str()),
        (FLOW_FAILED, "database m1 down")
    );

    s.delete_secret(&Trail::off(), "r", 1, "db").unwrap();
    assert!(s.get_product_secret("r", 1, "db").unwrap().is_none());
}

/// Every secret write is seen by the next read of the same secret, even after reads that a
/// store may remember (the SQLite store's secret cache): status, a replaced value, a deleted
/// version, a deleted secret; and a write refused half-way leaves what was read before.
pub fn secret_reads_follow_every_write(s: &dyn crate::store::Store) {
    use crate::store::{SecretStatus, VersionWrite};
    product_fixture(s);
    let read = |name: &str, version: &str| {
        (
            s.get_secret("r", 1, name).unwrap(),
            s.get_secret_version("r", 1, name, version).unwrap(),
        )
    };
    let (secret, first) = read("db", "SSM_Current");
    let (secret, first) = (secret.unwrap(), first.unwrap());
    assert_eq!(
        read("db", "SSM_Current"),
        (Some(secret.clone()), Some(first.clone()))
    );

    s.update_secret(&Trail::off(), "r", 1, "db", &mut |r| {
        r.status = SecretStatus::Disabled;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        read("db", "SSM_Current").0.unwrap().status,
        SecretStatus::Disabled
    );

    let refused = s.update_secret(&Trail::off(), "r", 1, "db", &mut |r| {
        r.status = SecretStatus::Enabled;
        Err(crate::error::Error::Internal("refused".into()))
    });
    assert!(refused.is_err());
    assert_eq!(
        read("db", "SSM_Current").0.unwrap().status,
        SecretStatus::Disabled
    );

    let mut replaced = first.clone();
    replaced.ciphertext = vec![9, 9, 9];
    s.put_secret_version(
        &Trail::off(),
        "r",
        1,
        "db",
        &replaced,
        VersionWrite::Replace,
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(read("db", "SSM_Current").1, Some(replaced));

    assert!(s
        .delete_secret_version(&Trail::off(), "r", 1, "db", "SSM_Current")
        .unwrap());
    assert_eq!(read("db", "SSM_Current").1, None);

    s.delete_secret(&Trail::off(), "r", 1, "db").unwrap();
    assert_eq!(read("db", "SSM_Current"), (None, None));
}
