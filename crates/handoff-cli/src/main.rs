//! The `handoff` binary: parses arguments and hands over to the library.

fn main() -> std::process::ExitCode {
    handoff_cli::main()
}
