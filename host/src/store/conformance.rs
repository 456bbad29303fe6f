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
