//! The `CiphertextBlob` parser (shared/src/blob.rs): any bytes a client sends to Decrypt or
//! ReEncrypt. The format has exactly one encoding per value (fixed-width fields, the nonce
//! length must equal the algorithm's, the ciphertext runs to the end), so whatever parses
//! must encode back to the very same bytes, through both encoders.
#![no_main]

use keyward_shared::blob::{Blob, BOUND_PREFIX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(blob) = Blob::parse(data) else {
        return;
    };
    assert_eq!(blob.encoded_len(), data.len());
    assert_eq!(&blob.header.bound_prefix()[..], &data[..BOUND_PREFIX_LEN]);
    assert!(blob.header.algorithm.is_symmetric());
    assert_eq!(blob.nonce.len(), blob.header.algorithm.nonce_len());
    assert!(blob.ciphertext.len() >= blob.header.algorithm.tag_len());

    let encoded = blob.to_vec().expect("a parsed blob encodes");
    assert_eq!(encoded, data, "parse/encode round trip changed the bytes");

    // The no-alloc encoder, into a buffer with room to spare and into one a byte short.
    let mut out = vec![0xAAu8; data.len() + 7];
    let n = blob.encode_into(&mut out).expect("a parsed blob encodes");
    assert_eq!(&out[..n], data);
    assert!(out[n..].iter().all(|&b| b == 0xAA), "wrote past the blob");
    assert!(blob.encode_into(&mut out[..data.len() - 1]).is_err());

    assert_eq!(Blob::parse(&encoded), Ok(blob));
});
