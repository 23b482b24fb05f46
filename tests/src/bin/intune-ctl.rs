//! `intune-ctl` itself, built here so the tests of this package can run the real command.

fn main() -> std::process::ExitCode {
    intune_ctl::cli::main()
}
