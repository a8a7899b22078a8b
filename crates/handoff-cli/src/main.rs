//! The `handoff` binary: parses arguments and hands over to the library.

/// mimalloc instead of the system allocator: an exchange makes many small short-lived
/// allocations (ids, claims, the Cedar context, JSON), and glibc's malloc and free were about
/// 12% of its CPU (docs/benchmarks.md has the before and after).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    handoff_cli::main()
}
