fn main() -> std::process::ExitCode {
    nats_oidc_callout::cli::main()
}
