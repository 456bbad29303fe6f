//! Types shared by the Keyward host and the HSM firmware.
//!
//! `no_std` by default so the firmware can use it; the `alloc` feature adds the owned wire
//! responses the host decodes and blob encoding helpers, `std` adds `std::error::Error` impls.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod alg;
pub mod blob;
pub mod frame;
pub mod wire;

pub use alg::Algorithm;
