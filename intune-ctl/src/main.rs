//! The `intune-ctl` command.

fn main() -> std::process::ExitCode {
    intune_ctl::cli::main()
}
