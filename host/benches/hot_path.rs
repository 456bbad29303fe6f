//! Criterion benches for the per-request work that is not I/O: TC3 signature verification,
//! EncryptionContext canonicalisation and blob parsing.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keyward::kms::context;
use keyward::tc3;
use keyward_shared::blob::Blob;

fn tc3_verify(c: &mut Criterion) {
    let body = br#"{"KeyId": "11111111-2222-3333-4444-555555555555", "Plaintext": "aGVsbG8=", "EncryptionContext": "{\"app\": \"demo\"}"}"#;
    let header = "TC3-HMAC-SHA256 Credential=AKIDKEYWARDTEST0000000000000000000/2026-11-22/kms/tc3_request, SignedHeaders=content-type;host, Signature=540eb4fb0e22c52863062e4cdea0bb0231e68e7bd5b77c6bc017cdcaed401a7d";
    c.bench_function("tc3_verify_encrypt_request", |b| {
        b.iter(|| {
            let auth = tc3::parse_authorization(black_box(header)).unwrap();
            let (cr, _) = tc3::canonical_request(
                "POST",
                "/",
                "",
                &auth.signed_headers,
                |n| match n {
                    "content-type" => Some("application/json".into()),
                    "host" => Some("127.0.0.1:8080".into()),
                    _ => None,
                },
                &tc3::sha256_hex(black_box(body)),
            )
            .unwrap();
            let sts = tc3::string_to_sign(1795359828, "2026-11-22/kms/tc3_request", &cr);
            let key = tc3::signing_key(
                "KeywardTestSecretKey0000000000000",
                &auth.date,
                &auth.service,
            );
            assert!(tc3::signatures_equal(
                &tc3::signature(&key, &sts),
                &auth.signature
            ));
        })
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

criterion_group!(benches, tc3_verify, context_and_blob);
criterion_main!(benches);
