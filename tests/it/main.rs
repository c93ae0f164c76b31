//! Cross-crate integration tests: one binary.

mod cli;
mod run;
mod zoneinfo;

/// Runs `mmsim ARGS` in-process through `mm_cli::main_with`, returning (exit code, stdout,
/// stderr).
fn mmsim(args: &[&str]) -> (u8, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("mmsim")
        .chain(args.iter().copied())
        .map(std::ffi::OsString::from);
    let code = mm_cli::main_with(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}
