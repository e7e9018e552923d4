//! The `switchboardctl` binary; the program is the library ([`switchboardctl::main`]).

fn main() -> std::process::ExitCode {
    switchboardctl::main()
}
