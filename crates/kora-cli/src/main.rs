//! `kora`: run Kailash-style workflows, embedded in one process or on a fleet.
//!
//! This file parses the command line and dispatches; `args` declares the commands, `commands/`
//! holds one module per command, and `render` prints their records as tables or JSON.

mod args;
mod commands;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// Exit code for a run that finished but failed (or a role that failed).
const EXIT_FAILED: u8 = 1;
/// Exit code for unusable input: a missing file, a malformed or invalid workflow, bad flags.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    // Crash tests name failpoints in FAILPOINTS; only builds with the feature have any.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let cli = Cli::parse();
    let serving = matches!(cli.command, Command::Serve { .. });
    let log_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    let level = match (cli.verbose, serving) {
        (0, true) | (1, _) => "info",
        (0, false) => "warn",
        _ => "debug",
    };
    kora_runtime::telemetry::init(level, log_json);
    // A server uses every core; one-shot commands need one thread.
    let mut builder = if serving {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match rt.block_on(commands::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
