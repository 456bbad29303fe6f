/// mimalloc instead of glibc malloc: measured ~10% of the daemon's Encrypt CPU was spent in
/// glibc's allocator under two worker threads (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Everything the daemon writes (the database and its journal, key files, exports) is for
    // its own user only; set before any thread starts, as umask is process-wide.
    #[cfg(unix)]
    // SAFETY: umask only replaces the process's file-creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    keyward::cli::main()
}
