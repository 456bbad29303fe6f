/// mimalloc instead of glibc malloc: measured ~10% of the daemon's Encrypt CPU was spent in
/// glibc's allocator under two worker threads (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keyward::cli::main()
}
