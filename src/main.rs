//! The `byollm` command: everything it does is in the library (`byollm::cli` for the command
//! line, `byollm::app` for the servers).

fn main() -> std::process::ExitCode {
    byollm::cli::main()
}
