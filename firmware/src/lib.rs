//! The Keyward HSM firmware core: a `Request -> Response` key service that holds one device key
//! and hands out key material only sealed under it.
//!
//! `no_std` + `alloc`: the same code runs on a microcontroller, in the simulator and linked into
//! the host as the `embedded` backend.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod aead;
pub mod asym;
pub mod service;

pub use service::KeyService;
