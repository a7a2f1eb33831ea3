//! `cis report`: the lab's runs as text, JSON, Markdown or HTML.

use anyhow::Result;

use super::cli::{Args, OutputFormat};
use super::classroom;
use super::output::{json, print};
use crate::base::error::Error;
use crate::cloud::CloudKind;
use crate::model::lab::LabOptions;
use crate::orchestrator::measure::load_runs;
use crate::report::Report;
use crate::store::ledger::Ledger;
use crate::store::state::StateDir;

/// An output file's flag (`--out FILE`) must name a file in a directory that exists: a
/// typo in the directory is refused, not created.
pub(super) fn check_out(flag: &str, path: &std::path::Path) -> Result<(), Error> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "{flag} {}: the directory {} does not exist: create it first, or give a path in an existing one",
            path.display(),
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Usage(format!("{flag} {}: is a directory: give a file's path", path.display())));
    }
    Ok(())
}

pub(super) fn report(args: &Args, r: &crate::app::cli::ReportArgs, state: &StateDir) -> Result<()> {
    use crate::app::cli::ReportFormat as F;
    let (kind, lab) = (args.cloud, &args.lab);
    if let Some(path) = &r.out {
        check_out("--out", path)?;
    }
    if r.all_labs {
        let format = r.format.unwrap_or(if args.output == OutputFormat::Json { F::Json } else { F::Text });
        let comparison = classroom::compare(state, kind)?;
        let text = match format {
            F::Json => json(&comparison),
            F::Text => comparison.to_text(),
            F::Markdown => comparison.to_markdown(),
            F::Html => comparison.to_html(),
        };
        match &r.out {
            Some(path) => crate::base::files::write_atomic(path, text.as_bytes())?,
            None => print(&text),
        }
        return Ok(());
    }
    let runs = load_runs(&state.runs_dir(kind, lab))?;
    if runs.is_empty() {
        // A classroom's runs are under its labs' names: say where they are.
        let mut others = Vec::new();
        for other in classroom::labs_in_state(state, kind)?.into_iter().filter(|l| l != lab) {
            if !load_runs(&state.runs_dir(kind, &other))?.is_empty() {
                others.push(other.to_string());
            }
        }
        let elsewhere = if others.is_empty() {
            String::new()
        } else {
            format!("; labs with runs: {} (`cis report --all-labs` compares them, `cis report --lab NAME` reports one)", others.join(", "))
        };
        return Err(Error::LabState(format!("lab '{lab}' on {} has no runs yet: run `cis attack --lab {lab}` first{elsewhere}", kind.name())).into());
    }
    let rules = crate::analysis::rules_of_lab(&lab_graph_for_rules(state, kind, lab)?);
    let report = Report::build(kind.name(), lab.as_str(), runs).with_root_causes(&rules);
    let format = r.format.unwrap_or(if args.output == OutputFormat::Json { F::Json } else { F::Text });
    let text = match format {
        F::Json => report.to_json(),
        F::Text => report.to_text(),
        F::Markdown => report.to_markdown(),
        F::Html => {
            // Evasion frontiers studied in this state directory (`cis sim frontier`).
            let frontiers = crate::report::frontier::Frontier::load_all(&state.frontiers_dir())?;
            crate::report::html::render(&report, &frontiers.iter().map(|f| f.section("h2")).collect::<Vec<_>>())
        }
    };
    match &r.out {
        Some(path) => {
            crate::base::files::write_atomic(path, text.as_bytes())?;
            eprintln!("cis: wrote {}", path.display());
        }
        None => print(&text),
    }
    Ok(())
}

/// The lab's graph from its ledger, or (once it is down) the default graph, whose
/// security groups differ only by an SSH source: the rules a run's analysis reads.
pub(crate) fn lab_graph_for_rules(
    state: &StateDir,
    kind: CloudKind,
    lab: &crate::model::lab::LabName,
) -> Result<crate::model::lab::LabGraph, Error> {
    Ok(match Ledger::load(&state.ledger(kind, lab))? {
        Some(l) => crate::model::lab::LabGraph::build(&l.lab, &l.options, &l.run),
        None => crate::model::lab::LabGraph::build(lab, &LabOptions::default(), "report"),
    })
}
