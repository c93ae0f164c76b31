//! The `mmsim` binary: [`mm_cli::main_with`] on the process's arguments and streams.

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = mm_cli::main_with(
        std::env::args_os(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}
