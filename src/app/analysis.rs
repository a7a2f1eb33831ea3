//! `cis triage` and `cis rca`: read the files (naming the one and the line that is wrong),
//! run the analyser, write the answer.

use std::io::Read as _;
use std::path::Path;

use super::output::print;
use crate::analysis::llm::{Analyser, Builtin, ModelAnalyser, OpenAi, Sampling};
use crate::analysis::{self, InputError, RcaInput};
use crate::app::cli::{AnalyserArgs, AnalyserKind, AnalysisFormat, Args, RcaArgs, TriageArgs};
use crate::base::error::{Error, Result};
use crate::store::state::StateDir;

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

/// The file and line in front, as the other bad-file errors have them; an element of a
/// JSON array is named by its place in the array.
fn bad_file(path: &Path, e: InputError) -> Error {
    match e.what {
        "line" => Error::BadFile { path: path.to_path_buf(), line: e.position, message: e.message },
        _ => Error::Usage(format!("{}: {e}", path.display())),
    }
}

/// The format asked for, else JSON under `--output json`, else Markdown.
fn format(args: &Args, asked: Option<AnalysisFormat>) -> AnalysisFormat {
    asked.unwrap_or(if args.output == crate::app::cli::OutputFormat::Json { AnalysisFormat::Json } else { AnalysisFormat::Markdown })
}

/// The analyser the flags name, checked before any input is sent anywhere.
async fn analyser(args: &Args, a: &AnalyserArgs) -> Result<Box<dyn Analyser>> {
    let sampling = Sampling { max_new_tokens: a.max_tokens, ..Default::default() };
    let timeout = std::time::Duration::from_secs(a.timeout);
    match a.analyser {
        AnalyserKind::Builtin => Ok(Box::new(Builtin)),
        AnalyserKind::Openai => {
            let url =
                a.url.clone().ok_or_else(|| Error::Usage("--analyser openai needs --url http[s]://HOST[:PORT] of the server".into()))?;
            match reqwest::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => return Err(Error::Usage(format!("--url {url}: give the server as http://HOST[:PORT] or https://HOST[:PORT]"))),
            }
            let model =
                a.model.clone().ok_or_else(|| Error::Usage("--analyser openai needs --model NAME (the model the server serves)".into()))?;
            let client = OpenAi { url, model, api_key: std::env::var("OPENAI_API_KEY").ok().filter(|k| !k.is_empty()), sampling };
            Ok(Box::new(ModelAnalyser { client, timeout }))
        }
        AnalyserKind::Sagemaker => sagemaker(args, a, sampling, timeout).await,
    }
}

#[cfg(feature = "aws-functions")]
async fn sagemaker(args: &Args, a: &AnalyserArgs, sampling: Sampling, timeout: std::time::Duration) -> Result<Box<dyn Analyser>> {
    let endpoint = a.endpoint.clone().unwrap_or_else(|| crate::model::lab::llm_endpoint_name(&args.lab));
    let mut loader = crate::backends::aws::sdk_loader().region(aws_config::Region::new(args.region.clone()));
    if let Some(url) = &args.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(p) = &args.profile {
        loader = loader.profile_name(p);
    }
    let sdk = loader.load().await;
    let client = crate::analysis::llm::SageMaker { runtime: aws_sdk_sagemakerruntime::Client::new(&sdk), endpoint, sampling };
    Ok(Box::new(ModelAnalyser { client, timeout }))
}

#[cfg(not(feature = "aws-functions"))]
async fn sagemaker(_: &Args, _: &AnalyserArgs, _: Sampling, _: std::time::Duration) -> Result<Box<dyn Analyser>> {
    Err(Error::Usage("--analyser sagemaker needs the AWS backend: build cis with `--features aws`".into()))
}

pub fn triage(args: &Args, t: &TriageArgs) -> Result<()> {
    let (text, path) = read(t.file.as_deref())?;
    let (alerts, warnings) = analysis::parse_alerts(&text).map_err(|e| bad_file(&path, e))?;
    for w in warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    let report = super::runtime::runtime(super::runtime::Time::Real)?.block_on(async {
        let analyser = analyser(args, &t.analyser).await?;
        Ok::<_, Error>(analyser.triage(&alerts, &text).await?)
    })?;
    print(&match format(args, t.format) {
        AnalysisFormat::Markdown => report.to_markdown(),
        AnalysisFormat::Text => report.to_text(),
        AnalysisFormat::Json => super::output::json(&report),
    });
    Ok(())
}

pub fn rca(args: &Args, r: &RcaArgs, state: &StateDir) -> Result<()> {
    let mut input = RcaInput::default();
    let mut raw_logs = String::new();
    if let Some(p) = &r.logs {
        let (text, path) = read(Some(p))?;
        let (rows, warnings) = analysis::parse_logs(&text).map_err(|e| bad_file(&path, e))?;
        for w in warnings {
            eprintln!("warning: {}: {w}", path.display());
        }
        input.logs = rows;
        raw_logs = text;
    }
    match &r.rules {
        Some(p) => {
            let (text, path) = read(Some(p))?;
            input.rules = analysis::parse_rules(&text).map_err(|e| bad_file(&path, e))?;
        }
        None if r.run.is_some() => input.rules = analysis::rules_of_lab(&super::reporting::lab_graph_for_rules(state, args.cloud, &args.lab)?),
        None => {
            let path = state.ledger(args.cloud, &args.lab);
            let ledger = crate::store::ledger::Ledger::load(&path)?.ok_or_else(|| {
                Error::Usage(format!(
                    "no --rules given and lab '{}' has no ledger on {}: give the firewall rules with --rules FILE, or `cis up` the lab",
                    args.lab,
                    args.cloud.name()
                ))
            })?;
            let graph = crate::model::lab::LabGraph::build(&ledger.lab, &ledger.options, &ledger.run);
            input.rules = analysis::rules_of_lab(&graph);
        }
    }
    if let Some(run) = &r.run {
        let dir = state.runs_dir(args.cloud, &args.lab);
        let path = dir.join(format!("{run}.json"));
        if !path.exists() {
            return Err(Error::Usage(format!(
                "--run {run}: no such run of lab '{}' in {}: `cis report` lists the runs",
                args.lab,
                dir.display()
            )));
        }
        let record = crate::orchestrator::measure::RunRecord::load(&path)?;
        let from_run = analysis::run_input(&record, std::mem::take(&mut input.rules));
        input.rules = from_run.rules;
        input.detections = from_run.detections;
        if r.logs.is_none() {
            raw_logs = from_run.logs.iter().map(|l| format!("{}\n", l.raw)).collect();
            input.logs = from_run.logs;
        }
    }
    if input.logs.is_empty() && r.logs.is_none() && input.rules.is_empty() {
        return Err(Error::Usage("nothing to analyse: give --logs FILE and --rules FILE".into()));
    }
    let report = super::runtime::runtime(super::runtime::Time::Real)?.block_on(async {
        let analyser = analyser(args, &r.analyser).await?;
        Ok::<_, Error>(analyser.rca(&input, &raw_logs).await?)
    })?;
    print(&match format(args, r.format) {
        AnalysisFormat::Markdown => report.to_markdown(),
        AnalysisFormat::Text => report.to_text(),
        AnalysisFormat::Json => super::output::json(&report),
    });
    Ok(())
}
