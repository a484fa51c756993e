//! The node reference (`docs/nodes.md`, `kora nodes --markdown`), generated from the same
//! metadata validation uses, so the two cannot disagree.

use kora_model::catalog::ParamKind;

use crate::Registry;

/// The whole reference as Markdown.
pub fn markdown(registry: &Registry) -> String {
    let mut out = String::from(
        "# Node reference\n\n\
         Generated from the node registry by `kora nodes --markdown`; a test fails when this file\n\
         is stale. Parameters come from the node's `config`, from incoming connections, or at run\n\
         time (`--params`); config values are checked against their type when a workflow is\n\
         validated. Any config value may be a secret reference, `{\"$secret\": \"NAME\"}` or\n\
         `${secret:NAME}` inside a string, resolved on the worker from `KORA_SECRET_<NAME>`.\n\n",
    );
    let infos = registry.infos();
    out.push_str("| type | outputs |\n|---|---|\n");
    for t in &infos {
        out.push_str(&format!(
            "| [`{}`](#{}) | {}{} |\n",
            t.name,
            t.name.to_ascii_lowercase(),
            t.outputs
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if t.open_outputs { " (and others)" } else { "" }
        ));
    }
    for t in &infos {
        out.push_str(&format!("\n## {}\n\n{}\n\n", t.name, t.description));
        if t.stop_on_error {
            out.push_str("A failure of this node fails the run even when it is a leaf.\n\n");
        }
        if t.params.is_empty() {
            out.push_str("No parameters.\n");
        } else {
            out.push_str(
                "| parameter | type | required | default | description |\n|---|---|---|---|---|\n",
            );
            for p in &t.params {
                let name = if p.aliases.is_empty() {
                    format!("`{}`", p.name)
                } else {
                    format!(
                        "`{}` (alias {})",
                        p.name,
                        p.aliases
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let kind = match p.kind {
                    ParamKind::OneOf(a) | ParamKind::Expect(a) => a
                        .iter()
                        .map(|x| format!("`{x}`"))
                        .collect::<Vec<_>>()
                        .join(" \\| "),
                    k => k.describe(),
                };
                out.push_str(&format!(
                    "| {name} | {kind} | {} | {} | {} |\n",
                    if p.required { "yes" } else { "" },
                    p.default.map(|d| format!("`{d}`")).unwrap_or_default(),
                    p.description.replace('|', "\\|"),
                ));
            }
        }
        if t.open_inputs {
            out.push_str("\nEvery other input is accepted too.\n");
        }
        out.push_str(&format!(
            "\nOutputs: {}{}.\n",
            t.outputs
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", "),
            if t.open_outputs { ", and others" } else { "" }
        ));
    }
    out
}
