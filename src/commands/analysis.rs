//! `cis triage` and `cis rca`: read the files (naming the one and the line that is wrong),
//! run the analyser, write the answer.

use std::io::Read as _;
use std::path::Path;

use super::print;
use crate::analysis::{self, InputError, RcaInput};
use crate::cli::{AnalysisFormat, Args, RcaArgs, TriageArgs};
use crate::error::{Error, Result};
use crate::state::StateDir;

fn read(path: Option<&Path>) -> Result<(String, std::path::PathBuf)> {
    match path {
        None => read_stdin(),
        Some(p) if p == Path::new("-") => read_stdin(),
        Some(p) => Ok((std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?, p.to_path_buf())),
    }
}

fn read_stdin() -> Result<(String, std::path::PathBuf)> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| Error::io("<stdin>", e))?;
    Ok((text, "<stdin>".into()))
}

fn bad_file(path: &Path, e: InputError) -> Error {
    Error::BadFile { path: path.to_path_buf(), line: if e.what == "line" { e.position } else { 0 }, message: e.to_string() }
}

pub fn triage(t: &TriageArgs) -> Result<()> {
    let (text, path) = read(t.file.as_deref())?;
    let alerts = analysis::parse_alerts(&text).map_err(|e| bad_file(&path, e))?;
    let report = analysis::builtin::triage(&alerts);
    print(&match t.format {
        AnalysisFormat::Markdown => report.to_markdown(),
        AnalysisFormat::Text => report.to_text(),
        AnalysisFormat::Json => super::json(&report),
    });
    Ok(())
}

pub fn rca(args: &Args, r: &RcaArgs, state: &StateDir) -> Result<()> {
    let mut input = RcaInput::default();
    if let Some(p) = &r.logs {
        let (text, path) = read(Some(p))?;
        input.logs = analysis::parse_logs(&text).map_err(|e| bad_file(&path, e))?;
    }
    match &r.rules {
        Some(p) => {
            let (text, path) = read(Some(p))?;
            input.rules = analysis::parse_rules(&text).map_err(|e| bad_file(&path, e))?;
        }
        None => {
            let path = state.ledger(args.cloud, &args.lab);
            let ledger = crate::ledger::Ledger::load(&path)?.ok_or_else(|| {
                Error::Usage(format!(
                    "no --rules given and lab '{}' has no ledger on {}: give the firewall rules with --rules FILE, or `cis up` the lab",
                    args.lab,
                    args.cloud.name()
                ))
            })?;
            let graph = crate::lab::LabGraph::build(&ledger.lab, &ledger.options, &ledger.run);
            input.rules = analysis::rules_of_lab(&graph);
        }
    }
    if input.logs.is_empty() && r.logs.is_none() && input.rules.is_empty() {
        return Err(Error::Usage("nothing to analyse: give --logs FILE and --rules FILE".into()));
    }
    let report = analysis::builtin::rca(&input);
    print(&match r.format {
        AnalysisFormat::Markdown => report.to_markdown(),
        AnalysisFormat::Text => report.to_text(),
        AnalysisFormat::Json => super::json(&report),
    });
    Ok(())
}
