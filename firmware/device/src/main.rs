//! Keyward firmware as a freestanding program: `#![no_std]`, `#![no_main]`, its own panic
//! handler and NO allocator. On a board the platform layer supplies the UART and the TRNG; on
//! the host (this build) the "UART" is stdin/stdout and the TRNG is getrandom(2), both through
//! `libc` without `std`. Any dependency that needs `std` breaks this build, and so does any
//! that links the `alloc` crate: rustc refuses to link `alloc` without a `#[global_allocator]`,
//! and there is none here. That is the proof that the request path never allocates; every
//! buffer is one of the constant-size statics below.
#![no_std]
#![no_main]

use keyward_firmware::{KeyService, OUTPUT_LEN};
use keyward_shared::frame::{
    decode_frame, encode_frame, Feed, FrameReader, MAX_FRAME, MAX_PAYLOAD,
};
use keyward_shared::wire::{DeviceError, Request, Response};

// ---- platform layer: the only `unsafe` in the firmware ------------------------------------

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // A device resets; the host build exits.
    unsafe { libc::_exit(70) }
}

/// The platform's true random number generator.
struct Trng;

impl rand_core::RngCore for Trng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let mut done = 0;
        while done < dest.len() {
            let n =
                unsafe { libc::getrandom(dest[done..].as_mut_ptr().cast(), dest.len() - done, 0) };
            if n <= 0 {
                unsafe { libc::_exit(71) }
            }
            done += n as usize;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Trng {}

fn uart_read(buf: &mut [u8]) -> usize {
    let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        0
    } else {
        n as usize
    }
}

fn uart_write(mut data: &[u8]) {
    while !data.is_empty() {
        let n = unsafe { libc::write(1, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

// ---- the device ----------------------------------------------------------------------------

/// The received frame, decoded in place (a request borrows its byte fields from it).
static mut FRAME_IN: [u8; MAX_FRAME] = [0; MAX_FRAME];
/// The response's data, written by the key service (a response borrows from it).
static mut OUTPUT: [u8; OUTPUT_LEN] = [0; OUTPUT_LEN];
/// The response's postcard bytes and their CRC.
static mut SCRATCH: [u8; MAX_PAYLOAD + 4] = [0; MAX_PAYLOAD + 4];
/// The COBS-encoded response frame sent back.
static mut FRAME_OUT: [u8; MAX_FRAME] = [0; MAX_FRAME];

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    // A board derives this from its fused secret; the host build draws a fresh one.
    let mut device_key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut Trng, &mut device_key);
    let mut service = KeyService::new(device_key, Trng);
    // SAFETY: single-threaded; these buffers are used only here.
    let (frame_in, output, frame_out, scratch) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(FRAME_IN),
            &mut *core::ptr::addr_of_mut!(OUTPUT),
            &mut *core::ptr::addr_of_mut!(FRAME_OUT),
            &mut *core::ptr::addr_of_mut!(SCRATCH),
        )
    };
    let mut reader = FrameReader::new(frame_in);
    let mut chunk = [0u8; 256];
    loop {
        let n = uart_read(&mut chunk);
        if n == 0 {
            return 0;
        }
        for &b in &chunk[..n] {
            if let Feed::Frame(len) = reader.feed(b) {
                let (seq, response) = match decode_frame::<Request<'_>>(reader.frame(len)) {
                    Ok(env) => (env.seq, service.handle(env.body, &mut output[..])),
                    Err(_) => continue,
                };
                let response = match encode_frame(seq, &response, scratch, frame_out) {
                    Ok(len) => len,
                    Err(_) => encode_frame(
                        seq,
                        &Response::Error(DeviceError::BadLength),
                        scratch,
                        frame_out,
                    )
                    .unwrap_or(0),
                };
                uart_write(&frame_out[..response]);
            }
        }
    }
}
