//! End-to-end tests of the whole engine: one test binary (`#[cfg(test)] mod e2e`), plus the
//! benchmark harness in `benches/`. Helpers here are shared by both.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every directory holding a `workflow.*` and an `expected.json` produced by Kailash
/// (`examples/kailash_reference.py`): the examples and `tests/conformance/*`.
pub fn reference_cases() -> Vec<PathBuf> {
    let root = repo_root();
    let mut out = Vec::new();
    for base in [root.join("examples"), root.join("tests/conformance")] {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.join("expected.json").exists() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

pub fn workflow_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("workflow."))
        })
}

pub use kora_cli::conformance::compare;

#[cfg(test)]
mod e2e;
#[cfg(test)]
mod ops_files;
#[cfg(test)]
mod tidy;
