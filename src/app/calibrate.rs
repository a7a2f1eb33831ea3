//! `cis sim calibrate`: the simulator's delays fitted to runs recorded elsewhere, and
//! `--latency FILE`, which loads such a fit.

use super::cli::{Args, CalibrateArgs, OutputFormat};
use super::output::{json, print};
use crate::base::error::Error;
use crate::calibration::calibrate;
use crate::cloud::CloudKind;
use crate::orchestrator::measure::{load_runs, RunRecord};
use crate::sim::latency::LatencyModel;

/// The simulator's latency model: the shipped one, with `--latency FILE`'s tables in place.
pub(super) fn latency_model(args: &Args) -> Result<LatencyModel, Error> {
    let shipped = LatencyModel::embedded();
    let Some(path) = &args.latency else { return Ok(shipped) };
    if args.cloud == CloudKind::Aws {
        return Err(Error::Usage(format!(
            "--latency {}: the delays are the simulator's; AWS has its own: drop --latency, or use --cloud sim (nothing was done)",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Usage(format!("--latency {}: {e}", path.display())))?;
    shipped.with_overrides(&text).map_err(|e| {
        Error::Usage(format!("--latency {}: {e}; write it as assets/latency.toml is written, or with `cis sim calibrate --out`", path.display()))
    })
}

/// Reads the runs, fits, writes the fit where `--out` says, and prints what it found.
pub(super) fn run(args: &Args, c: &CalibrateArgs) -> Result<(), Error> {
    let mut runs: Vec<RunRecord> = Vec::new();
    for path in &c.runs {
        if path.is_dir() {
            runs.extend(load_runs(path)?);
        } else if path.exists() {
            runs.push(RunRecord::load(path)?);
        } else {
            return Err(Error::Usage(format!("{}: no such run record or directory of them", path.display())));
        }
    }
    if runs.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no run records found: give a lab's runs/ directory or its run-NNNN.json files",
            c.runs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
        )));
    }
    if let Some(out) = &c.out {
        super::reporting::check_out("--out", out)?;
    }
    let fit = calibrate(&runs, &latency_model(args)?, args.seed.unwrap_or(1))?;
    if let Some(out) = &c.out {
        crate::base::files::write_atomic(out, fit.overrides.as_bytes())?;
    }
    print(&match args.output {
        OutputFormat::Json => json(&fit),
        OutputFormat::Text => {
            let mut text = fit.to_text();
            if let Some(out) = &c.out {
                text.push_str(&format!("fitted tables written to {}: load them with `cis --latency {} ...`\n", out.display(), out.display()));
            }
            text
        }
    });
    Ok(())
}
