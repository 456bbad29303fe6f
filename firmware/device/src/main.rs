//! Keyward firmware as a freestanding program: `#![no_std]`, `#![no_main]`, its own panic
//! handler and allocator. On a board the platform layer supplies the UART and the TRNG; on the
//! host (this build) the "UART" is stdin/stdout and the TRNG is getrandom(2), both through
//! `libc` without `std`. Any dependency that needs `std` breaks this build.
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use keyward_firmware::KeyService;
use keyward_shared::frame::{decode_frame, encode_frame, Feed, FrameReader};
use keyward_shared::wire::{DeviceError, Request, Response};

// ---- platform layer: the only `unsafe` in the firmware ------------------------------------

/// A bump allocator over a static arena that starts over whenever every allocation has been
/// freed — which happens after each request, since the core keeps nothing between requests.
struct Arena {
    heap: UnsafeCell<[u8; ARENA]>,
    next: UnsafeCell<usize>,
    live: UnsafeCell<usize>,
}

const ARENA: usize = 512 * 1024;

// SAFETY: the firmware is single-threaded.
unsafe impl Sync for Arena {}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let next = &mut *self.next.get();
        let start = (*next + layout.align() - 1) & !(layout.align() - 1);
        if start + layout.size() > ARENA {
            return core::ptr::null_mut();
        }
        *next = start + layout.size();
        *self.live.get() += 1;
        (self.heap.get() as *mut u8).add(start)
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {
        let live = &mut *self.live.get();
        *live -= 1;
        if *live == 0 {
            *self.next.get() = 0;
        }
    }
}

#[global_allocator]
static ALLOCATOR: Arena = Arena {
    heap: UnsafeCell::new([0; ARENA]),
    next: UnsafeCell::new(0),
    live: UnsafeCell::new(0),
};

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

static mut FRAME_IN: [u8; 80 * 1024] = [0; 80 * 1024];
static mut FRAME_OUT: [u8; 80 * 1024] = [0; 80 * 1024];
static mut SCRATCH: [u8; 80 * 1024] = [0; 80 * 1024];

#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    // A board derives this from its fused secret; the host build draws a fresh one.
    let mut device_key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut Trng, &mut device_key);
    let mut service = KeyService::new(device_key, Trng);
    // SAFETY: single-threaded; these buffers are used only here.
    let (frame_in, frame_out, scratch) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(FRAME_IN),
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
                    Ok(env) => (env.seq, service.handle(env.body)),
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
