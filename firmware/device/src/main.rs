//! Keyward firmware as a freestanding program: `#![no_std]`, `#![no_main]`, its own panic
//! handler and NO allocator. On a board the platform layer supplies the UART and the TRNG; on
//! the host (this build) the "UART" is stdin/stdout and the TRNG is getrandom(2), both through
//! `libc` without `std`. Any dependency that needs `std` breaks this build, and so does any
//! that links the `alloc` crate: rustc refuses to link `alloc` without a `#[global_allocator]`,
//! and there is none here. That is the proof that the request path never allocates; every
//! buffer is one of the constant-size statics below.
#![no_std]
#![no_main]

use keyward_firmware::pairing::Volatile;
use keyward_firmware::{Buffers, FrameLoop, Gate, KeyService, Port, OUTPUT_LEN};
use keyward_shared::frame::{MAX_FRAME, SCRATCH_LEN};

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

/// The UART. Reads block; a failed or closed read ends the program (a board would reset).
struct Uart;

impl Port for Uart {
    type Error = core::convert::Infallible;

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        Ok(if n <= 0 { 0 } else { n as usize })
    }

    fn write_frame(&mut self, mut data: &[u8]) -> Result<(), Self::Error> {
        // A write the line refuses is a lost answer, which the host's retry covers.
        while !data.is_empty() {
            // SAFETY: `data` is valid for reads of `data.len()` bytes.
            let n = unsafe { libc::write(1, data.as_ptr().cast(), data.len()) };
            if n <= 0 {
                break;
            }
            data = &data[n as usize..];
        }
        Ok(())
    }
}

// ---- the device ----------------------------------------------------------------------------

/// The received frame, decoded in place (a request borrows its byte fields from it).
static mut FRAME_IN: [u8; MAX_FRAME] = [0; MAX_FRAME];
/// The response's data, written by the key service (a response borrows from it).
static mut OUTPUT: [u8; OUTPUT_LEN] = [0; OUTPUT_LEN];
/// The response's postcard bytes and their CRC.
static mut SCRATCH: [u8; SCRATCH_LEN] = [0; SCRATCH_LEN];
/// The COBS-encoded response frame sent back.
static mut FRAME_OUT: [u8; MAX_FRAME] = [0; MAX_FRAME];

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    // A board derives this from its fused secret; the host build draws a fresh one.
    let mut device_key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut Trng, &mut device_key);
    let service = KeyService::new(device_key, Trng);
    // A board keeps the pairing key in flash next to its fused secret (a `PairingStore` over
    // its flash driver). This build's device secret dies with the process, and so may the
    // pairing key: every start is a new, unpaired device.
    let gate = Gate::new(Volatile, Trng);
    // SAFETY: single-threaded, and `main` runs once; these buffers are used only here.
    let buffers = unsafe {
        Buffers {
            frame_in: &mut *core::ptr::addr_of_mut!(FRAME_IN),
            output: &mut *core::ptr::addr_of_mut!(OUTPUT),
            scratch: &mut *core::ptr::addr_of_mut!(SCRATCH),
            frame_out: &mut *core::ptr::addr_of_mut!(FRAME_OUT),
        }
    };
    // The same frame loop the simulator runs (keyward_firmware::link), bad frames included.
    let Ok(()) = FrameLoop::new(service, gate, buffers).serve(&mut Uart);
    0
}
