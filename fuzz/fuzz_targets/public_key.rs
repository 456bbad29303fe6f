//! Caller-supplied and stored public keys (host/src/pubkey.rs): `encrypt_to_public_key` on
//! arbitrary PEM text (the `EncryptionPublicKey` field of Decrypt, GenerateDataKey and
//! GetDataKeyPlaintext) and `verify` on arbitrary SubjectPublicKeyInfo DER and signatures.
//!
//! Input layout (fuzz/corpus/public_key holds real keys and signatures in it):
//!
//! ```text
//! sel  u8        bits 0-2 key algorithm, bits 3-4 signature scheme, bit 5 is_digest
//! enc  u8        bits 0-2 EncryptionAlgorithm name, bit 7: the key is DER, wrap it in PEM
//! klen u16 BE    key (DER, or PEM text)
//! slen u16 BE    signature
//! rest           message / plaintext
//! ```
#![no_main]

use keyward::pubkey::{self, SignScheme};
use keyward_shared::Algorithm;
use libfuzzer_sys::fuzz_target;

const ALGS: [Algorithm; 8] = [
    Algorithm::Rsa2048,
    Algorithm::EccP256,
    Algorithm::EccP384,
    Algorithm::Sm2,
    Algorithm::Aes256Gcm,
    Algorithm::Sm4Gcm,
    Algorithm::Rsa2048,
    Algorithm::Sm2,
];
const SCHEMES: [SignScheme; 4] = [
    SignScheme::RsaPkcs1Sha256,
    SignScheme::RsaPssSha256,
    SignScheme::Ecdsa,
    SignScheme::Sm2,
];
const ENC: [&str; 8] = [
    "",
    "SM2",
    "SM2_C1C3C2_ASN1",
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSAES_OAEP_SHA_512",
    "sm2",
];

fn take<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let len = match data {
        [hi, lo, ..] => usize::from(u16::from_be_bytes([*hi, *lo])),
        _ => {
            let all: &'a [u8] = data;
            *data = &[];
            return all;
        }
    };
    let rest = &data[2..];
    let (taken, rest) = rest.split_at(len.min(rest.len()));
    *data = rest;
    taken
}

fuzz_target!(|data: &[u8]| {
    let [sel, enc, ref rest @ ..] = *data else {
        return;
    };
    let mut rest = rest;
    let key = take(&mut rest);
    let signature = take(&mut rest);
    let message = rest;

    let alg = ALGS[usize::from(sel & 7)];
    let scheme = SCHEMES[usize::from((sel >> 3) & 3)];
    let is_digest = sel & 0x20 != 0;
    let _ = pubkey::verify(alg, key, scheme, message, is_digest, signature);
    let _ = pubkey::sha256_input(message, is_digest);

    let algorithm = ENC[usize::from(enc & 7)];
    let pem = if enc & 0x80 != 0 {
        pubkey::spki_pem(key)
    } else {
        String::from_utf8_lossy(key).into_owned()
    };
    // Keep the plaintext to what the API ever encrypts (a data key, a decrypted plaintext).
    let plaintext = &message[..message.len().min(4096)];
    if let Ok(ct) = pubkey::encrypt_to_public_key(&pem, algorithm, plaintext) {
        assert!(!ct.is_empty());
    }
});
