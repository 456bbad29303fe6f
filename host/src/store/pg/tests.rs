//! The PostgreSQL store against a real server (a throw-away cluster, `tests/e2e/common/pg.rs`):
//! the SQLite store's unit tests, plus races between two stores on one database, as two
//! daemons would run them.

#[path = "../../../../tests/e2e/common/pg.rs"]
mod cluster;

use super::*;
use crate::store::audit::record::{chain_hash, AuditRecord, GENESIS};
use crate::store::*;
use sha2::{Digest, Sha256};

fn open(db: &str) -> PgStore {
    let c = cluster::cluster();
    PgStore::open(
        Endpoint::new(&c.url(db), Some(&c.password), None).unwrap(),
        4,
    )
    .unwrap()
}

fn fresh() -> (String, PgStore) {
    let name = cluster::cluster().create_database();
    let s = open(&name);
    (name, s)
}

use crate::store::conformance::key;

#[test]
fn product_secrets_claims_and_flows() {
    crate::store::conformance::product_secrets_claims_and_flows(&fresh().1);
}

#[test]
fn alias_unique_quota_and_failed_update_leaves_record() {
    crate::store::conformance::alias_unique_quota_and_failed_update_leaves_record(&fresh().1);
}

#[test]
fn query_filters_and_pages() {
    crate::store::conformance::query_filters_and_pages(&fresh().1);
}

#[test]
fn secret_reads_follow_every_write() {
    crate::store::conformance::secret_reads_follow_every_write(&fresh().1);
}

#[test]
fn reopen_keeps_data_and_schema() {
    let (name, s) = fresh();
    s.insert_key(&Trail::off(), &key("a", "x", 1), None, 10)
        .unwrap();
    drop(s);
    let s = open(&name);
    assert!(s.get_key("r", 1, "a").unwrap().is_some());
}

fn record(action: &str) -> AuditRecord {
    AuditRecord {
        action: action.into(),
        resources: vec!["qcs::kms:r:uin/1:key/k1".into()],
        ..Default::default()
    }
}

/// Two stores (two daemons) append to one chain at once: no sequence number twice, every
/// link right.
#[test]
fn concurrent_appenders_keep_one_chain() {
    let (name, a) = fresh();
    let b = open(&name);
    std::thread::scope(|t| {
        for s in [&a, &b] {
            t.spawn(move || {
                for i in 0..40 {
                    let batch = vec![record(&format!("A{i}")), record(&format!("B{i}"))];
                    s.append_audit(&batch).unwrap();
                    // And audited changes, whose records join the same chain.
                    let trail = Trail::new(Some(record("Write")));
                    s.set_meta("x", &[i as u8]).unwrap();
                    s.bind(&trail, "nokey", "p", &format!("r{i}"), 0).ok();
                }
            });
        }
    });
    let rows = a.audit_after(0, 10_000).unwrap();
    assert_eq!(rows.len(), 160);
    let mut prev = GENESIS;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, chain_hash(&prev, r.seq, &r.record));
        prev = r.hash;
    }
    assert_eq!(a.audit_head().unwrap(), Some((160, prev)));
    let q = AuditQuery {
        start_time: 0,
        end_time: 0,
        attributes: vec![vec![AuditAttribute::ResourceName("k1".into())]],
        before_seq: Some(11),
        limit: 5,
    };
    let page = b.query_audit(&q).unwrap();
    assert_eq!(
        page.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [10, 9, 8, 7, 6]
    );
    assert_eq!(b.count_audit(&q).unwrap(), 160);
}

/// Two stores race for the last places of a quota and for one alias: the limit holds and
/// exactly one alias wins.
#[test]
fn concurrent_inserts_respect_quota_and_alias() {
    let (name, a) = fresh();
    let b = open(&name);
    let results: Vec<Result<()>> = std::thread::scope(|t| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let s = if i % 2 == 0 { &a } else { &b };
                t.spawn(move || {
                    s.insert_key(
                        &Trail::off(),
                        &key(&format!("q{i}"), &format!("q{i}"), i),
                        None,
                        5,
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, Error::CmkLimitExceeded(5))));
    assert_eq!(a.count_keys("r", 1).unwrap(), 5);

    let results: Vec<Result<()>> = std::thread::scope(|t| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let s = if i % 2 == 0 { &a } else { &b };
                t.spawn(move || {
                    s.insert_key(&Trail::off(), &key(&format!("s{i}"), "same", i), None, 100)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, Error::AliasExists(_))));
}

/// Versions added from two stores at once get consecutive numbers, none twice.
#[test]
fn concurrent_versions_are_numbered_once() {
    let (name, a) = fresh();
    let b = open(&name);
    a.insert_key(&Trail::off(), &key("k", "k", 1), None, 10)
        .unwrap();
    std::thread::scope(|t| {
        for s in [&a, &b] {
            t.spawn(move || {
                for _ in 0..10 {
                    s.add_version(&Trail::off(), "r", 1, "k", &mut |_| Ok(()), &mut |k| {
                        Ok(KeyVersion {
                            key_id: k.key_id.clone(),
                            version: k.current_version,
                            backend: "embedded".into(),
                            sealed: vec![1, 2, 3],
                            create_time: 0,
                            public_key: vec![],
                            tag: vec![9],
                        })
                    })
                    .unwrap();
                }
            });
        }
    });
    assert_eq!(a.get_key("r", 1, "k").unwrap().unwrap().current_version, 21);
    for v in 2..=21 {
        assert!(b.get_version("k", v).unwrap().is_some());
    }
}

/// Secrets, data keys, alarms and meta round-trip, with the SQLite store's refusals.
#[test]
fn secrets_data_keys_alarms_and_meta() {
    let (_, s) = fresh();
    let sec = SecretRecord {
        region: "r".into(),
        owner_uin: 1,
        name: "db".into(),
        create_uin: 1,
        description: "d".into(),
        kms_key_id: "k".into(),
        kms_key_type: "DEFAULT".into(),
        status: SecretStatus::Enabled,
        secret_type: 0,
        create_time: 5,
        delete_time: 0,
        tags: vec![],
        ssh_key_id: String::new(),
        ssh_key_name: String::new(),
        project_id: 0,
    };
    let v = |id: &str| SecretVersion {
        version_id: id.into(),
        create_time: 5,
        is_binary: false,
        key_blob: vec![1],
        nonce: vec![2],
        ciphertext: vec![3],
    };
    s.insert_secret(&Trail::off(), &sec, &v("v1"), 10).unwrap();
    assert!(matches!(
        s.insert_secret(&Trail::off(), &sec, &v("v1"), 10),
        Err(Error::SecretExists(_))
    ));
    let add = VersionWrite::Add { max_versions: 2 };
    let ok = &mut |_: &mut SecretRecord| Ok(());
    assert!(matches!(
        s.put_secret_version(&Trail::off(), "r", 1, "db", &v("v1"), add, ok),
        Err(Error::VersionIdExists(_))
    ));
    s.put_secret_version(&Trail::off(), "r", 1, "db", &v("v2"), add, ok)
        .unwrap();
    assert!(matches!(
        s.put_secret_version(&Trail::off(), "r", 1, "db", &v("v3"), add, ok),
        Err(Error::SecretVersionLimit(2))
    ));
    assert!(matches!(
        s.put_secret_version(
            &Trail::off(),
            "r",
            1,
            "db",
            &v("v9"),
            VersionWrite::Replace,
            ok
        ),
        Err(Error::SecretVersionNotFound(_))
    ));
    let versions = s.list_secret_versions("r", 1, "db").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    assert!(s.delete_secret(&Trail::off(), "r", 1, "db").unwrap());
    assert!(s.get_secret_version("r", 1, "db", "v1").unwrap().is_none());

    let id = s
        .insert_alarm(&Alarm {
            id: 0,
            time: 1,
            region: "r".into(),
            key_id: "k".into(),
            kind: "PendingDeleteKeyUsed".into(),
            message: "m".into(),
        })
        .unwrap();
    assert_eq!(s.undelivered_alarms(10).unwrap().len(), 1);
    s.mark_alarm_delivered(id).unwrap();
    assert!(s.undelivered_alarms(10).unwrap().is_empty());
    assert_eq!(s.alarms_for_key("k").unwrap()[0].id, id);

    assert!(s.insert_meta("m", b"1").unwrap());
    assert!(!s.insert_meta("m", b"2").unwrap());
    s.set_meta("m", b"3").unwrap();
    assert_eq!(s.get_meta("m").unwrap().unwrap(), b"3");
}

/// Called from an async worker thread by mistake, the store still answers (through
/// `block_in_place`) instead of panicking.
#[test]
fn a_call_on_a_runtime_worker_does_not_panic() {
    let (_, s) = fresh();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let s = std::sync::Arc::new(s);
    let n = rt
        .block_on({
            let s = s.clone();
            async move { tokio::spawn(async move { s.count_keys("r", 1) }).await }
        })
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

/// Seals with a plain hash: enough to see that every change left a state whose seal matches.
struct HashSealer;

impl AuthzSealer for HashSealer {
    fn seal_authz(&self, digest: &[u8; 32]) -> Result<Vec<u8>> {
        Ok(Sha256::digest([b"test-seal".as_slice(), digest].concat()).to_vec())
    }

    fn check_authz(&self, digest: &[u8; 32], seal: &[u8]) -> Result<()> {
        if self.seal_authz(digest)? == seal {
            Ok(())
        } else {
            Err(Error::IntegrityFailure("the authorization tables".into()))
        }
    }
}

/// Authorization changes from two stores at once: each starts from a sealed state and leaves
/// one, ids are never handed out twice, and a row written by hand stops further changes.
#[test]
fn concurrent_authorization_changes_keep_the_seal() {
    let (name, a) = fresh();
    let b = open(&name);
    for s in [&a, &b] {
        s.install_authz_sealer(Arc::new(HashSealer));
    }
    a.reseal_authz().unwrap();
    let ids: Vec<(u64, u64)> = std::thread::scope(|t| {
        let hs: Vec<_> = (0..2)
            .map(|n| {
                let s = if n == 0 { &a } else { &b };
                t.spawn(move || {
                    (0..8)
                        .map(|i| {
                            let u = s
                                .create_sub_account(&Trail::off(), &format!("u{n}-{i}"), "", 0)
                                .unwrap();
                            let p = s
                                .create_policy(&Trail::off(), &format!("p{n}-{i}"), "", "{}", 0)
                                .unwrap();
                            s.attach_policy(&Trail::off(), p.policy_id, Target::User(u.uin), 0)
                                .unwrap();
                            (u.uin, p.policy_id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let uins: std::collections::BTreeSet<_> = ids.iter().map(|i| i.0).collect();
    let policies: std::collections::BTreeSet<_> = ids.iter().map(|i| i.1).collect();
    assert_eq!((uins.len(), policies.len()), (16, 16), "no id twice");
    let state = b.authz_state().unwrap();
    assert_eq!(state.attachments.len(), 16);
    HashSealer
        .check_authz(&state.digest(), &state.seal)
        .expect("the last change sealed the state it left");
    // A deleted account's uin is not handed out again.
    let last = *uins.iter().max().unwrap();
    assert!(a.delete_account(&Trail::off(), last).unwrap());
    let next = a.create_sub_account(&Trail::off(), "after", "", 0).unwrap();
    assert!(next.uin > last);
    // A policy attached by hand: the next change through the store is refused.
    a.with(|c| {
        c.execute(
            "INSERT INTO policy_attachments (policy_id, target_kind, target_id, create_time) \
             VALUES ($1, 'user', $2, 0)",
            &[
                &(*policies.iter().next().unwrap() as i64),
                &(next.uin as i64),
            ],
        )?;
        Ok(())
    })
    .unwrap();
    assert!(matches!(
        b.create_policy(&Trail::off(), "refused", "", "{}", 0),
        Err(Error::IntegrityFailure(_))
    ));
}

/// The jobs lease: one holder at a time, taken over only after its term, with a new token;
/// a write fenced with the old token commits nothing, one with the new token commits.
#[test]
fn a_lease_has_one_holder_and_a_lost_lease_commits_nothing() {
    let (name, a) = fresh();
    let b = open(&name);
    let term = Duration::from_millis(800);
    let t1 = a.acquire_lease(JOBS_LEASE, "A", term).unwrap().unwrap();
    assert_eq!(b.acquire_lease(JOBS_LEASE, "B", term).unwrap(), None);
    assert_eq!(a.acquire_lease(JOBS_LEASE, "A", term).unwrap(), Some(t1));
    a.insert_key(&Trail::off(), &key("k1", "one", 1), None, 10)
        .unwrap();
    std::thread::sleep(term + Duration::from_millis(300));
    // A stopped extending it (paused, cut off): B takes it with the next token.
    let t2 = b.acquire_lease(JOBS_LEASE, "B", term).unwrap().unwrap();
    assert_eq!(t2, t1 + 1);
    assert_eq!(a.acquire_lease(JOBS_LEASE, "A", term).unwrap(), None);
    let stale = Trail::new(Some(record("ScheduledKeyDeletion"))).fenced(Some(Fence {
        lease: JOBS_LEASE,
        token: t1,
    }));
    assert!(matches!(
        a.delete_key(&stale, "k1"),
        Err(Error::LeaseLost(_))
    ));
    assert!(
        a.get_key("r", 1, "k1").unwrap().is_some(),
        "nothing committed"
    );
    assert!(
        a.audit_after(0, 10).unwrap().is_empty(),
        "nor its audit record"
    );
    let current = Trail::new(Some(record("ScheduledKeyDeletion"))).fenced(Some(Fence {
        lease: JOBS_LEASE,
        token: t2,
    }));
    assert!(b.delete_key(&current, "k1").unwrap());
    assert_eq!(a.audit_after(0, 10).unwrap().len(), 1);
    // A clean stop hands it over at once.
    b.release_lease(JOBS_LEASE, "B").unwrap();
    assert_eq!(
        a.acquire_lease(JOBS_LEASE, "A", term).unwrap(),
        Some(t2 + 1)
    );
}

/// What one store changes reaches another store's change feed: key versions, API keys
/// (not their last-use times), accounts and the authorization seal.
#[test]
fn changes_reach_the_other_stores_feed() {
    let (name, a) = fresh();
    let b = open(&name);
    for s in [&a, &b] {
        s.install_authz_sealer(Arc::new(HashSealer));
    }
    a.reseal_authz().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<Change>>> = Arc::default();
    let sink = seen.clone();
    b.watch_changes(Arc::new(move |c| sink.lock().unwrap().push(c)))
        .unwrap();
    let wait_for = |want: Change| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !seen.lock().unwrap().contains(&want) {
            assert!(
                std::time::Instant::now() < deadline,
                "{want:?} never arrived; seen {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let v = KeyVersion {
        key_id: "k1".into(),
        version: 1,
        backend: "embedded".into(),
        sealed: vec![1; 8],
        create_time: 1,
        public_key: vec![],
        tag: vec![],
    };
    a.insert_key(&Trail::off(), &key("k1", "one", 1), Some(&v), 10)
        .unwrap();
    a.delete_key(&Trail::off(), "k1").unwrap();
    wait_for(Change::KeyVersions("k1".into()));
    let u = a
        .create_sub_account(&Trail::off(), "someone", "", 0)
        .unwrap();
    wait_for(Change::Authorization);
    a.insert_api_key(
        &Trail::off(),
        &ApiKeyRecord {
            secret_id: "AKID1".into(),
            uin: u.uin,
            sealed_secret: vec![2; 8],
            enabled: true,
            create_time: 0,
            last_used: 0,
        },
        5,
    )
    .unwrap();
    // Last-use bookkeeping changes nothing a cache holds: no announcement.
    seen.lock().unwrap().clear();
    a.touch_api_keys(&[("AKID1".into(), 99)]).unwrap();
    a.set_api_key_enabled(&Trail::off(), "AKID1", false, &[3; 8])
        .unwrap();
    wait_for(Change::Credentials);
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![Change::Credentials],
        "one change, one announcement"
    );
}
