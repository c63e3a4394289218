fn main() -> std::process::ExitCode {
    foyer::cli::run()
}
