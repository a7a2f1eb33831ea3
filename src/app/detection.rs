//! The detector's verbs on files: `cis train` writes a model from baseline flow logs,
//! `cis detect` scores flow logs with one (or evaluates the forest on a labelled table).
//! No cloud is opened.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::output::{json, print};
use crate::app::cli::{Args, DetectArgs, FlowsArgs, ForestArgs, InputFormat, OutputFormat, TrainArgs};
use crate::base::error::Error;
use crate::base::files::write_atomic;
use crate::detect::anomaly::{Model, TrainOptions, Verdict};
use crate::detect::features::{Flow, WindowAggregator};
use crate::detect::forest::{average_precision, recall_at_fpr, roc_auc, ForestParams, IsolationForest, Matrix};
use crate::formats::flowlog::input::Input;
use crate::formats::flowlog::LogFormat;
use crate::store::state::StateDir;

/// Malformed lines reported one by one before the rest are only counted.
const SHOWN_ERRORS: usize = 10;

/// Malformed lines: the first few named on stderr with their file and line, the rest counted.
#[derive(Default)]
struct Skipped {
    count: u64,
    /// The first malformed line, with its file.
    first: Option<(PathBuf, usize, String)>,
}

impl Skipped {
    fn line(&mut self, file: &std::path::Path, e: &crate::formats::flowlog::LineError) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some((file.to_path_buf(), e.line, e.message.clone()));
        }
        if self.count as usize <= SHOWN_ERRORS {
            eprintln!("cis: {}:{}: {} (skipped)", file.display(), e.line, e.message);
        }
    }

    /// Input in which no line is a record, but some are not: the wrong file or the wrong
    /// `--log-format`, not an empty capture. Refused (exit 2), naming the first bad line.
    fn require_records(&self, records: u64) -> Result<(), Error> {
        match (&self.first, records) {
            (Some((path, line, message)), 0) => Err(Error::BadFile {
                path: path.clone(),
                line: *line,
                message: format!(
                    "{message}; none of the {} non-blank line(s) is a flow-log record: check the file, or name its format with --log-format",
                    self.count
                ),
            }),
            _ => Ok(()),
        }
    }

    fn finish(&self) {
        if self.count as usize > SHOWN_ERRORS {
            eprintln!("cis: ... and {} more malformed lines skipped", self.count as usize - SHOWN_ERRORS);
        }
    }
}

/// `--eval` gives one label per record line.
fn check_labels(labels: Option<&[bool]>, lines: usize) -> Result<(), Error> {
    match labels {
        Some(l) if l.len() != lines => {
            Err(Error::Usage(format!("--eval: {} labels for {lines} record lines; give one label per record line, in order", l.len())))
        }
        _ => Ok(()),
    }
}

fn forest_params(f: &ForestArgs, seed: Option<u64>) -> ForestParams {
    ForestParams { trees: f.trees as usize, sample_size: f.sample_size as usize, seed: seed.unwrap_or(1) }
}

fn log_format(arg: &Option<String>) -> Result<Option<LogFormat>, Error> {
    arg.as_deref().map(|f| LogFormat::parse(f).map_err(|e| Error::Usage(format!("--log-format: {e}")))).transpose()
}

fn inputs(files: &[String]) -> Vec<Input> {
    if files.is_empty() {
        vec![Input::Stdin]
    } else {
        files.iter().map(|f| Input::parse(f)).collect()
    }
}

fn default_model_path(state: &StateDir, args: &Args) -> PathBuf {
    state.root().join("models").join(format!("{}.json", args.lab))
}

/// What reading the inputs came to.
struct Reading {
    records: u64,
    malformed: u64,
}

/// Records between looks for windows that time has closed.
const DRAIN_EVERY: u64 = 1 << 16;

/// Reads every input into per-window features, handing `sink` each batch of windows as
/// time closes them (so memory holds only the open ones) and the rest at the end.
/// Malformed lines go to stderr. `labels`, when given, label the record lines in order.
fn read_windows(
    inputs: &[Input],
    format: Option<&LogFormat>,
    window_s: i64,
    labels: Option<&[bool]>,
    mut sink: impl FnMut(Vec<crate::detect::features::WindowFeatures>),
) -> Result<Reading> {
    let mut agg = WindowAggregator::new(window_s);
    let (mut records, mut skipped, mut line_index) = (0u64, Skipped::default(), 0usize);
    for input in inputs {
        let name = input.name();
        input.for_each_flow(
            format,
            |r| Flow::of(&r),
            |r| {
                let positive = labels.and_then(|l| l.get(line_index)).copied().unwrap_or(false);
                line_index += 1;
                match r {
                    Ok((_, flow)) => {
                        records += 1;
                        if let Some(flow) = flow {
                            agg.add_flow(&flow, positive);
                        }
                        if records % DRAIN_EVERY == 0 {
                            sink(agg.drain_closed());
                        }
                    }
                    Err(e) => skipped.line(&name, &e),
                }
            },
        )?;
    }
    sink(agg.finish());
    skipped.finish();
    skipped.require_records(records)?;
    check_labels(labels, line_index)?;
    Ok(Reading { records, malformed: skipped.count })
}

pub(super) fn train(args: &Args, t: &TrainArgs, state: &StateDir) -> Result<()> {
    if !(t.target_fpr > 0.0 && t.target_fpr < 1.0) {
        return Err(Error::Usage(format!("--target-fpr {}: give a share between 0 and 1, such as 0.00001", t.target_fpr)).into());
    }
    let format = log_format(&t.log_format)?;
    let inputs = inputs(&t.baseline);
    let mut windows = Vec::new();
    let reading = read_windows(&inputs, format.as_ref(), t.window, None, |w| windows.extend(w))?;
    let options = TrainOptions { forest: forest_params(&t.forest, args.seed), target_fpr: t.target_fpr, window_s: t.window };
    let names: Vec<String> = inputs.iter().map(|i| i.name().display().to_string()).collect();
    // Written only once the model trains: a baseline too small for one is too small for both.
    let rcf_csv = t.rcf_csv.as_ref().map(|path| (path, crate::detect::anomaly::rcf_csv(&windows)));
    let model =
        Model::train(windows, &options, &names.join(", ")).map_err(|e| Error::Usage(format!("--baseline {}: {e}", names.join(" "))))?;
    if let Some((path, csv)) = rcf_csv {
        write_atomic(path, csv.as_bytes()).context("writing --rcf-csv")?;
    }
    let out = t.out.clone().unwrap_or_else(|| default_model_path(state, args));
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e)).context("creating the model's folder")?;
    }
    write_atomic(&out, model.to_json().as_bytes()).context("writing the model")?;
    let summary = serde_json::json!({
        "model": out, "records": reading.records, "malformed_lines": reading.malformed, "windows": model.baseline.windows,
        "threshold": model.threshold, "target_fpr": t.target_fpr, "baseline_fpr": model.baseline.achieved_fpr,
        "known_destinations": model.known_destinations.len(), "trees": options.forest.trees, "sample_size": options.forest.sample_size,
    });
    print(&match args.output {
        OutputFormat::Json => json(&summary),
        OutputFormat::Text => format!(
            "model written to {}: {} windows of {} s from {} records ({} malformed lines skipped), {} known destination group(s); forest threshold {:.4} for a target false-positive rate of {} (baseline windows over it: {:.4}%)",
            out.display(),
            model.baseline.windows,
            t.window,
            reading.records,
            reading.malformed,
            model.known_destinations.len(),
            model.threshold,
            t.target_fpr,
            model.baseline.achieved_fpr * 100.0
        ),
    });
    Ok(())
}

#[derive(Serialize)]
struct Evaluation {
    positives: usize,
    negatives: usize,
    roc_auc: Option<f64>,
    pr_auc: Option<f64>,
    recall_at_1pct_fpr: Option<f64>,
}

fn evaluate(scores: &[f64], labels: &[bool]) -> Evaluation {
    let positives = labels.iter().filter(|&&l| l).count();
    Evaluation {
        positives,
        negatives: labels.len() - positives,
        roc_auc: roc_auc(scores, labels),
        pr_auc: average_precision(scores, labels),
        recall_at_1pct_fpr: recall_at_fpr(scores, labels, 0.01),
    }
}

fn evaluation_text(e: &Evaluation) -> String {
    let f = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a (one class is empty)".into());
    format!(
        "evaluation over {} positive and {} negative: ROC AUC {}, PR AUC {}, recall at 1% false positives {}",
        e.positives,
        e.negatives,
        f(e.roc_auc),
        f(e.pr_auc),
        f(e.recall_at_1pct_fpr)
    )
}

fn read_labels(path: &str) -> Result<Vec<bool>> {
    let path = PathBuf::from(path);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e)).context("reading --eval labels")?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            crate::base::table::label(l.trim()).ok_or_else(|| {
                Error::BadFile {
                    path: path.clone(),
                    line: i + 1,
                    message: format!("'{}' is not a label: use 1/0, malicious/benign", l.trim()),
                }
                .into()
            })
        })
        .collect()
}

pub(super) fn detect(args: &Args, d: &DetectArgs, state: &StateDir) -> Result<()> {
    if d.format == InputFormat::Csv {
        return detect_table(args, d);
    }
    if d.per_flow {
        return detect_flows(args, d);
    }
    let model = match d.model.as_deref() {
        Some("sim") => {
            let m = crate::training::LabModels::shared()
                .get(
                    60,
                    crate::model::scenario::DEFAULT_WORKLOAD,
                    &crate::sim::latency::LatencyModel::embedded(),
                    &crate::model::scenario::workloads(),
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
            (*m).clone()
        }
        Some(path) => Model::load(&PathBuf::from(path))?,
        None => {
            let path = default_model_path(state, args);
            if !path.exists() {
                return Err(Error::Usage(format!(
                    "no model at {}: train one with `cis train --baseline FLOWS`, or use the simulated lab's with --model sim",
                    path.display()
                ))
                .into());
            }
            Model::load(&path)?
        }
    };
    let labels = d.eval.as_deref().map(read_labels).transpose()?;
    let format = log_format(&d.log_format)?;
    // Windows are scored as they close; only what is shown (and, to evaluate, each
    // window's score and label) is kept.
    let (mut shown, mut scores, mut window_labels, mut windows, mut anomalous) = (Vec::<Verdict>::new(), vec![], vec![], 0usize, 0usize);
    // One memory across the whole input, as the lab's detector keeps one across its
    // invocations: windows close in time order.
    let mut memory = crate::detect::memory::Memory::default();
    let reading = read_windows(&inputs(&d.files), format.as_ref(), model.options.window_s, labels.as_deref(), |mut batch| {
        if labels.is_some() {
            window_labels.extend(batch.iter().map(|w| w.labelled_positive));
        }
        for v in model.score(&mut batch, &mut memory, d.all) {
            windows += 1;
            anomalous += usize::from(v.anomalous);
            if labels.is_some() {
                scores.push(v.rank());
            }
            if d.all || v.anomalous {
                shown.push(v);
            }
        }
    })?;
    let evaluation = labels.as_ref().map(|_| evaluate(&scores, &window_labels));
    match args.output {
        OutputFormat::Json => print(&json(&serde_json::json!({
            "format": "cis-detections", "version": 1, "detector": "isolation forest and feature tails (per-window flow features, frozen baseline model)", "model": model.trained_on,
            "records": reading.records, "malformed_lines": reading.malformed, "windows": windows, "anomalous": anomalous,
            "verdicts": shown, "evaluation": evaluation,
        }))),
        OutputFormat::Text => {
            let mut o = String::new();
            for v in &shown {
                let _ = writeln!(
                    o,
                    "{} {} {} ({}): {}",
                    if v.anomalous { "ALERT" } else { "ok   " },
                    crate::base::clock::Timestamp::from_unix_seconds(v.window_start),
                    v.interface_id,
                    v.instance_id.as_deref().unwrap_or("-"),
                    v.summary()
                );
            }
            let _ = write!(
                o,
                "{} records ({} malformed lines skipped), {} windows, {} anomalous",
                reading.records, reading.malformed, windows, anomalous
            );
            if let Some(e) = &evaluation {
                let _ = write!(o, "\n{} (per window)", evaluation_text(e));
            }
            print(&o);
        }
    }
    Ok(())
}

/// Fits a forest on the table itself and scores it: how isolation forests are evaluated
/// on public data sets, and what the benchmark compares with scikit-learn.
fn detect_table(args: &Args, d: &DetectArgs) -> Result<()> {
    let [file] = d.files.as_slice() else {
        return Err(Error::Usage("--format csv takes exactly one FILE".into()).into());
    };
    let path = PathBuf::from(file);
    let mut table = crate::base::table::read_csv(&path, d.eval.as_deref())?;
    if d.log_scale {
        table.data.iter_mut().for_each(|x| *x = x.signum() * x.abs().ln_1p());
    }
    if table.rows() == 0 {
        return Err(Error::BadFile { path, line: 2, message: "no rows to score".into() }.into());
    }
    let params = forest_params(&d.forest, args.seed);
    let x = Matrix::new(&table.data, table.columns.len());
    let started = tokio::time::Instant::now();
    let forest = IsolationForest::fit(x, &params);
    let fitted = tokio::time::Instant::now();
    let scores = forest.score(x);
    let scored = tokio::time::Instant::now();
    let (fit_s, score_s) = ((fitted - started).as_secs_f64(), (scored - fitted).as_secs_f64());
    let evaluation = table.labels.as_ref().map(|l| evaluate(&scores, l));
    let summary = serde_json::json!({
        "format": "cis-table-evaluation", "version": 1, "file": path, "rows": table.rows(), "features": table.columns,
        "ignored_columns": table.ignored, "skipped_rows": table.skipped_rows, "empty_cells": table.empty_cells,
        "trees": params.trees, "sample_size": params.sample_size, "seed": params.seed, "log_scale": d.log_scale,
        "fit_s": fit_s, "score_s": score_s, "rows_per_s": table.rows() as f64 / (fit_s + score_s).max(1e-9),
        "evaluation": evaluation,
    });
    print(&match args.output {
        OutputFormat::Json => json(&summary),
        OutputFormat::Text => {
            let mut o = format!(
                "{}: {} rows x {} features ({}){}; {} trees of {} samples: fit {:.3} s, score {:.3} s, {:.0} rows/s",
                path.display(),
                table.rows(),
                table.columns.len(),
                table.columns.join(", "),
                if table.skipped_rows > 0 { format!(", {} rows skipped for their label", table.skipped_rows) } else { String::new() },
                params.trees,
                params.sample_size,
                fit_s,
                score_s,
                table.rows() as f64 / (fit_s + score_s).max(1e-9)
            );
            if let Some(e) = &evaluation {
                let _ = write!(o, "\n{}", evaluation_text(e));
            }
            o
        }
    });
    Ok(())
}

/// What `cis flows` counts of one record: only what the summary needs, so reading stays
/// as fast as parsing.
struct Glance {
    start: Option<i64>,
    end: Option<i64>,
    interface: Option<crate::detect::features::Id>,
    bytes: u64,
    status: Option<crate::formats::flowlog::LogStatus>,
    action: Option<crate::formats::flowlog::Action>,
}

pub(super) fn flows(args: &Args, f: &FlowsArgs) -> Result<()> {
    use crate::formats::flowlog::{Action, LogStatus};
    let format = log_format(&f.log_format)?;
    let (mut records, mut skipped, mut bytes) = (0u64, Skipped::default(), 0u64);
    let (mut accepted, mut rejected, mut nodata, mut skipdata) = (0u64, 0u64, 0u64, 0u64);
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut interfaces: crate::detect::features::HashSet<Box<str>> = Default::default();
    // Records come in runs of one interface: only a new one is looked up.
    let mut previous: Option<crate::detect::features::Id> = None;
    for input in inputs(&f.files) {
        let name = input.name();
        let glance = |r: crate::formats::flowlog::FlowRecordOf<&str>| Glance {
            start: r.start,
            end: r.end,
            interface: r.interface_id.map(crate::detect::features::Id::new),
            bytes: r.bytes.unwrap_or(0),
            status: r.log_status,
            action: r.action,
        };
        input.for_each_flow(format.as_ref(), glance, |g| match g {
            Ok((_, g)) => {
                records += 1;
                bytes += g.bytes;
                first = first.min(g.start.unwrap_or(i64::MAX));
                last = last.max(g.end.or(g.start).unwrap_or(i64::MIN));
                if let Some(i) = g.interface {
                    if previous.as_ref() != Some(&i) {
                        if !interfaces.contains(i.as_str()) {
                            interfaces.insert(i.as_str().into());
                        }
                        previous = Some(i);
                    }
                }
                match (g.status, g.action) {
                    (Some(LogStatus::NoData), _) => nodata += 1,
                    (Some(LogStatus::SkipData), _) => skipdata += 1,
                    (_, Some(Action::Reject)) => rejected += 1,
                    _ => accepted += 1,
                }
            }
            Err(e) => skipped.line(&name, &e),
        })?;
    }
    skipped.finish();
    skipped.require_records(records)?;
    let span = (records > 0 && first <= last)
        .then(|| (crate::base::clock::Timestamp::from_unix_seconds(first), crate::base::clock::Timestamp::from_unix_seconds(last)));
    print(&match args.output {
        OutputFormat::Json => json(&serde_json::json!({
            "records": records, "malformed_lines": skipped.count, "interfaces": interfaces.len(), "bytes": bytes,
            "accepted": accepted, "rejected": rejected, "nodata": nodata, "skipdata": skipdata,
            "first": span.map(|s| s.0.to_string()), "last": span.map(|s| s.1.to_string()),
        })),
        OutputFormat::Text => format!(
            "{records} records ({} malformed lines skipped) from {} interfaces{}: {accepted} accepted, {rejected} rejected, {nodata} NODATA, {skipdata} SKIPDATA; {} recorded",
            skipped.count,
            interfaces.len(),
            span.map(|(a, b)| format!(", {a} to {b}")).unwrap_or_default(),
            crate::base::units::human_bytes(bytes)
        ),
    });
    Ok(())
}

/// One record as `--per-flow` shows it.
#[derive(Serialize)]
struct FlowLine {
    file: PathBuf,
    line: usize,
    interface_id: Option<String>,
    srcaddr: Option<std::net::IpAddr>,
    dstaddr: Option<std::net::IpAddr>,
    dstport: Option<u16>,
    bytes: Option<u64>,
    packets: Option<u64>,
    score: f64,
}

/// Ranks the input's records with a forest grown on them: which single flows stand out.
fn detect_flows(args: &Args, d: &DetectArgs) -> Result<()> {
    use crate::detect::features::{flow_vector, FLOW_FEATURES};
    let labels = d.eval.as_deref().map(read_labels).transpose()?;
    let format = log_format(&d.log_format)?;
    // Per record with traffic: its vector, where it came from and what it was.
    let (mut data, mut lines, mut kept_labels) = (Vec::new(), Vec::new(), Vec::new());
    let (mut records, mut skipped, mut line_index) = (0u64, Skipped::default(), 0usize);
    for input in inputs(&d.files) {
        let name = input.name();
        let convert = |r: crate::formats::flowlog::FlowRecordOf<&str>| {
            flow_vector(&r).map(|v| (v, r.interface_id.map(str::to_string), r.srcaddr, r.dstaddr, r.dstport, r.bytes, r.packets))
        };
        input.for_each_flow(format.as_ref(), convert, |r| {
            let label = labels.as_ref().and_then(|l| l.get(line_index)).copied();
            line_index += 1;
            match r {
                Ok((line, Some((v, interface_id, srcaddr, dstaddr, dstport, bytes, packets)))) => {
                    records += 1;
                    data.extend(v);
                    kept_labels.push(label.unwrap_or(false));
                    lines.push(FlowLine { file: name.clone(), line, interface_id, srcaddr, dstaddr, dstport, bytes, packets, score: 0.0 });
                }
                Ok((_, None)) => records += 1,
                Err(e) => skipped.line(&name, &e),
            }
        })?;
    }
    skipped.finish();
    skipped.require_records(records)?;
    check_labels(labels.as_deref(), line_index)?;
    if lines.is_empty() {
        return Err(Error::Usage("--per-flow: no record with traffic to rank".into()).into());
    }
    let x = Matrix::new(&data, FLOW_FEATURES.len());
    let forest = IsolationForest::fit(x, &forest_params(&d.forest, args.seed));
    for (l, s) in lines.iter_mut().zip(forest.score(x)) {
        l.score = s;
    }
    let evaluation = labels.as_ref().map(|_| evaluate(&lines.iter().map(|l| l.score).collect::<Vec<_>>(), &kept_labels));
    let mut order: Vec<usize> = (0..lines.len()).collect();
    order.sort_by(|&a, &b| lines[b].score.total_cmp(&lines[a].score).then(a.cmp(&b)));
    let top: Vec<&FlowLine> = order.iter().take(d.top).map(|&i| &lines[i]).collect();
    print(&match args.output {
        OutputFormat::Json => json(&serde_json::json!({
            "format": "cis-flow-ranking", "version": 1, "records": records, "malformed_lines": skipped.count, "scored": lines.len(),
            "features": FLOW_FEATURES.iter().map(|f| f.name).collect::<Vec<_>>(), "top": top, "evaluation": evaluation,
        })),
        OutputFormat::Text => {
            let mut o = String::new();
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            for l in &top {
                let _ = writeln!(
                    o,
                    "{:.3}  {}:{}  {} {} -> {}:{} {} bytes {} packets",
                    l.score,
                    l.file.display(),
                    l.line,
                    show(l.interface_id.clone()),
                    show(l.srcaddr.map(|a| a.to_string())),
                    show(l.dstaddr.map(|a| a.to_string())),
                    show(l.dstport.map(|p| p.to_string())),
                    show(l.bytes.map(|b| b.to_string())),
                    show(l.packets.map(|p| p.to_string()))
                );
            }
            let _ = write!(
                o,
                "{records} records ({} malformed lines skipped), {} with traffic ranked by a forest grown on them",
                skipped.count,
                lines.len()
            );
            if let Some(e) = &evaluation {
                let _ = write!(o, "\n{} (per record)", evaluation_text(e));
            }
            o
        }
    });
    Ok(())
}
