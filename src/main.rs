//! The `nats-oidc-callout` binary; everything it does lives in the library's
//! `cli` module.

fn main() -> std::process::ExitCode {
    nats_oidc_callout::cli::main()
}
