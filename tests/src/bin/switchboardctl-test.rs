//! `switchboardctl` as a binary of this package, so the cli tests find it
//! through `CARGO_BIN_EXE_switchboardctl-test` and it is always built from the
//! current source (a test cannot depend on another package's binary).

fn main() -> std::process::ExitCode {
    switchboardctl::main()
}
