//! `Debug` for the messages, written by hand: requests and responses carry plaintexts, key
//! material to import and random bytes, and a derived `Debug` would print them into any log
//! line, panic message or error that formats one. These print the variant, the scalar fields
//! (algorithm, lengths, flags, the device's self-description) and only the length of every
//! byte field.

#[cfg(feature = "alloc")]
use super::OwnedResponse;
use super::{Request, Response};
use core::fmt;

/// Stands in for a byte field: prints its length only.
struct Len(usize);

impl fmt::Debug for Len {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct(self.kind().name());
        match self {
            Request::Hello { protocol } => d.field("protocol", protocol),
            Request::GenerateKey { algorithm } | Request::GenerateKeyPair { algorithm } => {
                d.field("algorithm", algorithm)
            }
            Request::ImportKey {
                algorithm,
                material,
            } => d
                .field("algorithm", algorithm)
                .field("material", &Len(material.len())),
            Request::Encrypt {
                algorithm,
                sealed,
                aad,
                plaintext,
            } => d
                .field("algorithm", algorithm)
                .field("sealed", &Len(sealed.len()))
                .field("aad", &Len(aad.len()))
                .field("plaintext", &Len(plaintext.len())),
            Request::Decrypt {
                algorithm,
                sealed,
                aad,
                nonce,
                ciphertext,
            } => d
                .field("algorithm", algorithm)
                .field("sealed", &Len(sealed.len()))
                .field("aad", &Len(aad.len()))
                .field("nonce", &Len(nonce.len()))
                .field("ciphertext", &Len(ciphertext.len())),
            Request::Random { len } => d.field("len", len),
            Request::Sign {
                algorithm,
                sealed,
                message,
                is_digest,
            } => d
                .field("algorithm", algorithm)
                .field("sealed", &Len(sealed.len()))
                .field("message", &Len(message.len()))
                .field("is_digest", is_digest),
            Request::AsymDecrypt {
                algorithm,
                sealed,
                ciphertext,
            } => d
                .field("algorithm", algorithm)
                .field("sealed", &Len(sealed.len()))
                .field("ciphertext", &Len(ciphertext.len())),
            Request::Attest { challenge } => d.field("challenge", &Len(challenge.len())),
            Request::Pair {
                ephemeral,
                wrapped_key,
            } => d
                .field("ephemeral", &Len(ephemeral.len()))
                .field("wrapped_key", &Len(wrapped_key.len())),
            Request::BeginSession => &mut d,
            Request::Authenticated {
                counter,
                tag,
                request,
            } => d
                .field("counter", counter)
                .field("tag", &Len(tag.len()))
                .field("request", &Len(request.len())),
            Request::GeneratePrime { algorithm } => d.field("algorithm", algorithm),
            Request::AssembleKeyPair {
                algorithm,
                first,
                second,
            } => d
                .field("algorithm", algorithm)
                .field("first", &Len(first.len()))
                .field("second", &Len(second.len())),
            Request::SignRsa {
                algorithm,
                padding,
                sealed,
                message,
                is_digest,
            } => d
                .field("algorithm", algorithm)
                .field("padding", padding)
                .field("sealed", &Len(sealed.len()))
                .field("message", &Len(message.len()))
                .field("is_digest", is_digest),
            Request::DecryptRsa {
                algorithm,
                padding,
                sealed,
                ciphertext,
            } => d
                .field("algorithm", algorithm)
                .field("padding", padding)
                .field("sealed", &Len(sealed.len()))
                .field("ciphertext", &Len(ciphertext.len())),
            Request::ImportWrapped {
                algorithm,
                padding,
                wrapping,
                encrypted,
            } => d
                .field("algorithm", algorithm)
                .field("padding", padding)
                .field("wrapping", &Len(wrapping.len()))
                .field("encrypted", &Len(encrypted.len())),
        };
        d.finish()
    }
}

/// One `Debug` for both response forms: their variants and field names are the same, and
/// `&[u8]`/`Vec<u8>` and `&str`/`String` both have `len` and deref to `str`.
macro_rules! response_debug {
    ($self_ty:ty, $ty:ident) => {
        impl fmt::Debug for $self_ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let name = self.kind().name();
                match self {
                    $ty::Hello(info) => f.debug_tuple(name).field(info).finish(),
                    $ty::Error(e) => f.debug_tuple(name).field(e).finish(),
                    $ty::Sealed(b) | $ty::Plaintext(b) | $ty::Random(b) | $ty::Signature(b) => {
                        f.debug_tuple(name).field(&Len(b.len())).finish()
                    }
                    $ty::Encrypted { nonce, ciphertext } => f
                        .debug_struct(name)
                        .field("nonce", &Len(nonce.len()))
                        .field("ciphertext", &Len(ciphertext.len()))
                        .finish(),
                    $ty::KeyPair { sealed, public_key } => f
                        .debug_struct(name)
                        .field("sealed", &Len(sealed.len()))
                        .field("public_key", &Len(public_key.len()))
                        .finish(),
                    // The serial is the device's public name: printed so logs tell devices apart.
                    $ty::Attestation {
                        serial,
                        public_key,
                        signature,
                    } => f
                        .debug_struct(name)
                        .field("serial", &&**serial)
                        .field("public_key", &Len(public_key.len()))
                        .field("signature", &Len(signature.len()))
                        .finish(),
                    $ty::Paired => f.write_str(name),
                    $ty::Session { nonce } => f
                        .debug_struct(name)
                        .field("nonce", &Len(nonce.len()))
                        .finish(),
                    $ty::Authenticated {
                        counter,
                        tag,
                        response,
                    } => f
                        .debug_struct(name)
                        .field("counter", counter)
                        .field("tag", &Len(tag.len()))
                        .field("response", &Len(response.len()))
                        .finish(),
                    $ty::Imported {
                        sealed,
                        check_value,
                    } => f
                        .debug_struct(name)
                        .field("sealed", &Len(sealed.len()))
                        .field("check_value", &Len(check_value.len()))
                        .finish(),
                }
            }
        }
    };
}

response_debug!(Response<'_>, Response);
#[cfg(feature = "alloc")]
response_debug!(OwnedResponse, OwnedResponse);
