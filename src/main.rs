use std::process::ExitCode;

fn main() -> ExitCode {
    let code = runbook::cli::main();
    ExitCode::from(u8::try_from(code).unwrap_or(70))
}
