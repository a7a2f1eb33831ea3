//! `cis scenarios`: the catalogue of attacks and benign controls.

use std::fmt::Write as _;

use anyhow::Result;

use super::cli::{OutputFormat, ScenariosAction, ScenariosArgs};
use super::output::{json, print};
use crate::model::scenario::{self, Scenario};

pub(super) fn scenarios(s: &ScenariosArgs, output: OutputFormat) -> Result<()> {
    match &s.action {
        None | Some(ScenariosAction::List) => {
            let all = scenario::catalogue();
            print(&match output {
                OutputFormat::Json => json(&all),
                OutputFormat::Text => {
                    let mut o = String::new();
                    let (id_w, title_w) = (
                        all.iter().map(|s| s.id.chars().count()).max().unwrap_or(0),
                        all.iter().map(|s| s.title.chars().count()).max().unwrap_or(0),
                    );
                    for sc in &all {
                        let _ = writeln!(o, "{:<id_w$}  {:<title_w$}  {}", sc.id, sc.title, sc.mitre.join(", "));
                    }
                    o
                }
            });
        }
        Some(ScenariosAction::Show { id }) => {
            let sc = scenario::find(id)?;
            print(&match output {
                OutputFormat::Json => json(&sc),
                OutputFormat::Text => scenario_text(&sc),
            });
        }
    }
    Ok(())
}

fn scenario_text(s: &Scenario) -> String {
    let mut o = format!("{} — {}\nMITRE ATT&CK: {}\n\n{}\n", s.id, s.title, s.mitre.join(", "), s.description.trim());
    let _ = writeln!(o, "\ntraffic (what the simulator generates):");
    for t in &s.streams {
        let _ = writeln!(
            o,
            "  {:?} {} to {} port {}: {} connection(s) every {} s (±{} s), {} bytes out / {} in each, {} s long",
            t.direction,
            t.protocol.name(),
            t.remotes.join(", "),
            t.ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
            t.connections,
            t.interval_s,
            t.jitter_s,
            t.bytes_out,
            t.bytes_in,
            t.duration_s
        );
    }
    let e = &s.expect;
    let _ = writeln!(
        o,
        "\nexpected: {}, {}{}",
        if e.detected { "detected" } else { "not detected" },
        if e.isolated { "isolated" } else { "not isolated" },
        if e.visible_in_flow_logs { "" } else { " (invisible to flow logs)" }
    );
    if !e.note.is_empty() {
        let _ = writeln!(o, "  {}", e.note);
    }
    let _ = write!(o, "\nscript (run on the target through SSM on AWS):\n{}", s.script.trim_end());
    o
}
