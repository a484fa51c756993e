//! `kora check`: the deployment checklist (`kora_server::check`), as a table or JSON; exit 1
//! when a check fails.

use std::process::ExitCode;

use kora_server::check::{self, Status};

use crate::args::{Conn, Format};
use crate::render;

pub(crate) async fn check(role: &str, format: Format, conn: Conn) -> anyhow::Result<ExitCode> {
    let roles = kora_server::parse_roles(role)?;
    let cfg = conn.load(serde_json::json!({}))?;
    let findings = check::run(&cfg, &roles).await;
    match format {
        Format::Json => render::json(&findings)?,
        Format::Table => {
            let mut t = render::table(&["check", "result", "found", "fix"]);
            for f in &findings {
                t.add_row(vec![
                    f.check.to_string(),
                    match f.status {
                        Status::Ok => "ok",
                        Status::Failed => "FAILED",
                        Status::Allowed => "allowed",
                        Status::Skipped => "-",
                    }
                    .to_string(),
                    f.detail.clone(),
                    f.fix.clone(),
                ]);
            }
            render::print_table(&t);
            let failed = findings
                .iter()
                .filter(|f| f.status == Status::Failed)
                .count();
            let allowed = findings
                .iter()
                .filter(|f| f.status == Status::Allowed)
                .count();
            eprintln!(
                "{failed} failed, {allowed} allowed by checks.allow (environment: {})",
                match cfg.environment {
                    check::Environment::Production =>
                        "production: kora serve refuses to start while one fails",
                    check::Environment::Development => "development: kora serve starts anyway",
                }
            );
        }
    }
    Ok(if check::failed(&findings) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
