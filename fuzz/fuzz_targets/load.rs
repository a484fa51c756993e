//! The workflow loader, as the CLI and the gateway call it: the text's limits, then each
//! syntax (JSON, YAML, either), then validation and compilation against a small catalog.
//! Any input may be refused; none may panic, hang or take unbounded memory.
#![no_main]

use kora_model::load::{Syntax, load_str};
use kora_model::validate::{self, Severity};
use kora_model::Limits;
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/kora-model/tests/common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits::default();
    if limits.check_text(text).is_err() {
        return;
    }
    let catalog = common::catalog();
    for syntax in [Syntax::Json, Syntax::Yaml, Syntax::Auto] {
        if let Ok((spec, _shape)) = load_str(text, syntax) {
            let problems = validate::validate_within(&spec, &catalog, None, &limits);
            if problems.iter().all(|p| p.severity == Severity::Warning) {
                let _ = validate::compile(&spec, &catalog, None);
            }
        }
    }
});
