//! The Keyward HSM firmware core: a `Request -> Response` key service that holds one device key
//! and hands out key material only sealed under it.
//!
//! `no_std` and heap-free: `KeyService::handle` writes every response into a caller-supplied,
//! constant-size output buffer (`service::OUTPUT_LEN`), and keys live in fixed zeroizing arrays.
//! The freestanding device build (firmware/device) links this crate with no global allocator
//! and no `alloc` crate, so an allocation on the request path does not build. The optional
//! `alloc` feature only adds `Vec` conveniences for std users (the simulator, the host).
//! `link` is the serial frame loop both the device build and the simulator run; `pairing`
//! is its gate, which serves key operations only to the paired host.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(any(feature = "alloc", test))]
extern crate alloc;

pub mod aead;
pub mod asym;
pub mod link;
pub mod pairing;
pub mod rsa;
pub mod service;

pub use link::{Buffers, FrameLoop, Handler, Port};
pub use pairing::{Gate, PairingStore};
pub use service::{KeyService, OUTPUT_LEN};
