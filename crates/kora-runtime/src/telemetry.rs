//! Tracing set-up: human-readable or JSON lines on stderr, filtered by `KORA_LOG` (or
//! `RUST_LOG`), so stdout stays clean for command output.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops.
pub fn init(default_level: &str, json: bool) {
    let filter = std::env::var("KORA_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .map_or_else(|| EnvFilter::new(default_level), EnvFilter::new);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.compact().try_init()
    };
}
