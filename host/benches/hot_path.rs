//! Criterion benches for the per-request work that is not I/O: TC3 signature verification,
//! EncryptionContext canonicalisation and blob parsing.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keyward::api::tc3;
use keyward::kms::context;
use keyward_shared::blob::Blob;

fn tc3_verify(c: &mut Criterion) {
    let body = br#"{"KeyId": "11111111-2222-3333-4444-555555555555", "Plaintext": "aGVsbG8=", "EncryptionContext": "{\"app\": \"demo\"}"}"#;
    let header = "TC3-HMAC-SHA256 Credential=AKIDKEYWARDTEST0000000000000000000/2026-11-22/kms/tc3_request, SignedHeaders=content-type;host, Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d";
    // The server's path (`api::authenticate`): the canonical request and the string to sign
    // streamed into SHA-256 and the HMAC. The signing key is derived here each time; the
    // daemon keeps it per credential, date and service (`ApiCredential::signing_key`).
    let verify = |derive: bool, key: &[u8; 32]| {
        let auth = tc3::parse_authorization(black_box(header)).unwrap();
        let digest = tc3::canonical_request_digest(
            "POST",
            "/",
            "",
            &auth.signed_headers,
            |n| match n {
                "content-type" => Some("application/json"),
                "host" => Some("127.0.0.1:8080"),
                _ => None,
            },
            &tc3::sha256_hex(black_box(body)),
        )
        .unwrap();
        let derived;
        let key = match derive {
            true => {
                derived = tc3::signing_key(
                    "KeywardTestSecretKey0000000000000",
                    &auth.date,
                    &auth.service,
                );
                &*derived
            }
            false => key,
        };
        assert!(tc3::signature_matches(
            key,
            1795359828,
            "2026-11-22/kms/tc3_request",
            &digest,
            &auth.signature
        ));
    };
    let key = *tc3::signing_key("KeywardTestSecretKey0000000000000", "2026-11-22", "kms");
    c.bench_function("tc3_verify_encrypt_request", |b| {
        b.iter(|| verify(true, &key))
    });
    c.bench_function("tc3_verify_encrypt_request_known_key", |b| {
        b.iter(|| verify(false, &key))
    });
}

fn context_and_blob(c: &mut Criterion) {
    c.bench_function("encryption_context_canonical", |b| {
        b.iter(|| {
            context::canonical(black_box(Some(r#"{"app": "demo", "tenant": "t-42"}"#))).unwrap()
        })
    });
    let mut blob = vec![1u8];
    blob.extend_from_slice(&[7u8; 16]);
    blob.extend_from_slice(&1u32.to_be_bytes());
    blob.extend_from_slice(&[1, 12]);
    blob.extend_from_slice(&[0u8; 12 + 48]);
    c.bench_function("blob_parse", |b| {
        b.iter(|| Blob::parse(black_box(&blob)).unwrap())
    });
}

/// The audit log's per-record costs: the chain hash, and appending a batch the way the writer
/// thread does (one transaction, fsync on commit) to a real SQLite file.
fn audit(c: &mut Criterion) {
    use keyward::audit::record::{chain_hash, AuditRecord, GENESIS};
    use keyward::store::{AuditStore, SqliteStore};
    let record = AuditRecord {
        event_id: "3ea6e1a6-e8b5-473d-a42d-d5ca1d5fefc2".into(),
        event_time: 1_795_450_138,
        region: "ap-guangzhou".into(),
        service: "kms".into(),
        action: "Encrypt".into(),
        read_only: true,
        owner_uin: 100_000_000_001,
        uin: 100_000_000_001,
        username: "root".into(),
        secret_id: "AKIDSLmDXIhXBua9udLfHFhCqN7AwZHUPbL4".into(),
        source_ip: "127.0.0.1".into(),
        user_agent: "TencentCloudSDK/Python 3.1.192".into(),
        resource_type: "kms_key".into(),
        resources: vec![
            "qcs::kms:ap-guangzhou:uin/100000000001:key/5c1a0d6e-8a57-4c0c-9e57-1f0a4e1d2c3b"
                .into(),
        ],
        request_id: "e19cc78f-9b48-4fdd-b24e-ca55338fe91b".into(),
        result_code: "Success".into(),
        key_id: "5c1a0d6e-8a57-4c0c-9e57-1f0a4e1d2c3b".into(),
        key_version: 1,
    };
    c.bench_function("audit_chain_hash", |b| {
        b.iter(|| chain_hash(black_box(&GENESIS), 7, black_box(&record)))
    });
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db")).unwrap();
    let batch = vec![record; 256];
    let mut g = c.benchmark_group("audit_append");
    g.sample_size(20);
    g.throughput(criterion::Throughput::Elements(batch.len() as u64));
    g.bench_function("batch_256", |b| {
        b.iter(|| store.append_audit(black_box(&batch)).unwrap())
    });
    // The floor any store of this log pays, for comparison with the SQLite row above: each
    // record's chain hash and canonical JSON, appended to a plain file, one fdatasync per
    // batch (docs/benchmarks.md Run 12: what a segment-file audit store could save at most).
    let mut file = std::fs::File::create(dir.path().join("floor.log")).unwrap();
    let mut out = Vec::new();
    let mut prev = GENESIS;
    g.bench_function("file_floor_256", |b| {
        b.iter(|| {
            use std::io::Write;
            out.clear();
            for r in &batch {
                prev = chain_hash(&prev, 7, r);
                serde_json::to_writer(&mut out, r).unwrap();
                out.push(b'\n');
            }
            file.write_all(&out).unwrap();
            file.sync_data().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, tc3_verify, context_and_blob, audit);
criterion_main!(benches);
