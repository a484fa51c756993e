//! `kora`: run Kailash-style workflows, embedded in one process or on a fleet.
//!
//! This file parses the command line and dispatches; `args` declares the commands, `commands/`
//! holds one module per command, and `render` prints their records as tables or JSON.

mod args;
mod commands;
mod render;
mod services;

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
    let serving = matches!(cli.command, Command::Serve { .. } | Command::Dev { .. });
    let log_json = matches!(cli.command, Command::Serve { log_json: true, .. });
    // `kora dev` keeps its terminal for the banner and warnings; -v shows the roles' logs.
    let quiet = matches!(cli.command, Command::Dev { .. });
    let level = match (cli.verbose, serving && !quiet) {
        (0, true) | (1, _) => "info",
        // What node code prints (target kora::python) shows in `kora run` and `kora dev` too.
        (0, false) => "warn,kora::python=info",
        _ => "debug",
    };
    // Traces name the process by its roles (`kora-scheduler,coordinator`).
    let service = match &cli.command {
        Command::Serve { role, .. } => format!("kora-{role}"),
        _ => "kora".to_string(),
    };
    // Before the runtime: the span exporter's HTTP client must not be made inside it, and is
    // flushed after it ends.
    let telemetry = kora_runtime::telemetry::init(level, log_json, &service);
    if telemetry.exporting() {
        kora_broker::trace::enable();
    }
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
        Ok(_) if render::output_failed() => ExitCode::from(EXIT_FAILED),
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", causes(&e));
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// An error and its causes, each said once: a cause whose text the message already holds (an
/// error that prints its source) is not repeated.
fn causes(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_cause_is_said_once() {
        /// Prints its source and also gives it as `source()`, as thiserror's errors do.
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot open the ledger: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Outer(std::io::Error::other("no such database")))
            .context("starting the coordinator");
        assert_eq!(
            super::causes(&e),
            "starting the coordinator: cannot open the ledger: no such database"
        );
    }
}
