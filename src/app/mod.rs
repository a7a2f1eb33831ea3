//! Runs the verbs: builds the cloud and the runtime, calls the orchestration, prints.
//! The only place that uses `anyhow`; bad input exits with status 2, other failures 1.

use std::fmt::Write as _;
use std::io::Write;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, Parser};

// The command line as types: every flag parsed once, here.
pub mod cli;
// How progress is shown: bars on a terminal, lines otherwise.
mod progress;
// cis triage and cis rca.
mod analysis;
// Classrooms: a lab per trainee.
mod classroom;
// cis flows, train, detect: the detector on flow-log files.
mod detection;
// cis sim sweep.
mod sweep;
// cis sim export: a labelled flow-log data set.
mod export;

use crate::app::cli::{Args, Command, LabArgs, OutputFormat, ScenariosAction, ScenariosArgs};
use crate::backends::sim::SimCloud;
use crate::base::error::Error;
use crate::cloud::{Cloud, CloudKind};
use crate::model::lab::pricing::PriceTable;
use crate::model::lab::{LabGraph, LabOptions};
use crate::model::scenario::{self, Scenario};
use crate::orchestrator::measure::load_runs;
use crate::orchestrator::{DownReport, Orchestrator, StatusReport, UpReport};
use crate::report::Report;
use crate::sim::faults::FaultProfile;
use crate::store::ledger::Ledger;

/// Under `--faults crashes`, the command is killed at a random instant of its first this-many
/// minutes of virtual time (`up` takes about a quarter of an hour, `down` a few minutes).
const KILL_WITHIN: std::time::Duration = std::time::Duration::from_secs(20 * 60);
use crate::store::state::{default_state_dir, StateDir};

/// Which clock a command's runtime keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Time {
    /// The simulator's: paused, so that time jumps to the next due event.
    Virtual,
    /// The wall clock, with network I/O: AWS and the language-model servers.
    Real,
}

/// The one runtime builder: every command runs on one thread.
pub(crate) fn runtime(time: Time) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    match time {
        // Signals (Ctrl-C during an attack) need the I/O driver; time stays virtual.
        Time::Virtual => builder.enable_time().enable_io().start_paused(true),
        Time::Real => builder.enable_all(),
    };
    builder.build().map_err(|e| Error::Internal(format!("starting the runtime: {e}")))
}

/// Parses the command line, runs it, and returns the process exit status.
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => return clap_error(e),
    };
    init_tracing(args.verbose);
    match run(&args) {
        Ok(()) => 0,
        Err(e) if e.chain().any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Interrupted(_)))) => {
            eprintln!("cis: {e}");
            130
        }
        Err(e) => {
            let bad_input = e.chain().any(|c| c.downcast_ref::<Error>().is_some_and(Error::is_bad_input));
            // A cause that its wrapper already printed (an I/O error after its path) once.
            let mut msg: Vec<String> = Vec::new();
            for c in e.chain().map(|c| c.to_string()) {
                if !msg.last().is_some_and(|m| m.ends_with(&c)) {
                    msg.push(c);
                }
            }
            eprintln!("cis: error: {}", msg.join(": ").replace('\n', " "));
            if let Some(hint) = e.chain().find_map(|c| c.downcast_ref::<Error>().and_then(Error::hint)) {
                eprintln!("cis: {hint}");
            }
            if bad_input {
                2
            } else {
                1
            }
        }
    }
}

/// clap's errors, on one line, naming the flag and the values it takes.
fn clap_error(e: clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            return 0;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return 2;
        }
        _ => {}
    }
    let rendered = e.render().to_string();
    let mut msg = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ").to_string();
    if let Some(ContextValue::Strings(values)) = e.get(ContextKind::ValidValue) {
        let _ = write!(msg, " (possible values: {})", values.join(", "));
    }
    if let Some(ContextValue::Strings(s)) = e.get(ContextKind::SuggestedSubcommand) {
        let _ = write!(msg, " (did you mean '{}'?)", s.join("', '"));
    }
    eprintln!("cis: error: {msg}; see `cis --help`");
    2
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        // The SDK warns about every credential source it tries; cis says what matters in
        // one line of its own.
        0 => "warn,aws_config=error,aws_smithy_runtime=error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CIS_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).without_time().try_init();
}

fn verb(c: &Command) -> &'static str {
    match c {
        Command::Up(_) => "up",
        Command::Plan(_) => "plan",
        Command::Status(_) => "status",
        Command::Attack(_) => "attack",
        Command::Report(_) => "report",
        Command::Train(_) => "train",
        Command::Detect(_) => "detect",
        Command::Flows(_) => "flows",
        Command::Release => "release",
        Command::Down(_) => "down",
        Command::Scenarios(_) => "scenarios",
        Command::Demo(_) => "demo",
        Command::Sim(_) => "sim",
        Command::Triage(_) => "triage",
        Command::Rca(_) => "rca",
        Command::Completions { .. } => "completions",
        Command::Policy(_) => "policy",
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("results serialize")
}

fn run(args: &Args) -> Result<()> {
    let state = StateDir::new(args.state_dir.clone().unwrap_or_else(default_state_dir));
    // Every layout below the root assumes a directory: say so once, naming the flag.
    if state.root().exists() && !state.root().is_dir() {
        return Err(Error::Usage(format!(
            "--state-dir {}: this is a file, not a directory: give a directory (cis creates it when missing), or move the file away",
            state.root().display()
        ))
        .into());
    }
    match &args.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Args::command(), "cis", &mut std::io::stdout());
            return Ok(());
        }
        Command::Scenarios(s) => return scenarios(s, args.output),
        Command::Policy(p) => {
            // The document is JSON whatever --output says: it goes to IAM as it is.
            let region = (!p.any_region).then_some(args.region.as_str());
            println!("{}", json(&crate::model::lab::operator::policy(p.account.as_deref(), region)));
            return Ok(());
        }
        // Files in, results out: no cloud.
        Command::Train(t) => return detection::train(args, t, &state),
        Command::Detect(d) => return detection::detect(args, d, &state),
        Command::Flows(f) => return detection::flows(args, f),
        Command::Triage(t) => return Ok(analysis::triage(args, t)?),
        Command::Rca(r) => return Ok(analysis::rca(args, r, &state)?),
        _ => {}
    }
    eprintln!("cis {} · cloud: {} · lab: {}", verb(&args.command), args.cloud.name(), args.lab);
    // Plan and report need no cloud: the graph, the ledger and the run files are local.
    match &args.command {
        Command::Plan(l) => return plan(args, l, &state),
        Command::Report(r) => return report(args, r, &state),
        Command::Sim(s) => return sim(args, s, &state),
        _ => {}
    }
    if args.cloud == CloudKind::Aws && args.faults != FaultProfile::None {
        return Err(Error::Usage(format!(
            "--faults {}: faults are injected into the simulator only; drop --faults, or use --cloud sim (nothing was done)",
            args.faults
        ))
        .into());
    }
    if args.cloud == CloudKind::Aws {
        #[cfg(feature = "aws")]
        return aws(args, &state);
        #[cfg(not(feature = "aws"))]
        return Err(Error::Usage(
            "--cloud aws: this cis was built without the AWS backend (the `aws` feature): build it with `cargo build --release --features aws`; the simulator needs nothing".into(),
        )
        .into());
    }

    // The demo gets a fresh simulated account of its own, so one seed gives one report.
    let state = if matches!(args.command, Command::Demo(_)) {
        let dir = state.root().join("demo");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, e)).context("clearing the demo's simulated account"),
        }
        StateDir::new(dir)
    } else {
        state
    };

    let runtime = runtime(Time::Virtual)?;
    runtime.block_on(async {
        let cloud = SimCloud::open_with_faults(&state.sim_account_dir(), args.seed, &args.region, args.faults)?;
        let account = cloud.account().await?;
        eprintln!("cis: acting on the {}", account.description);
        if args.faults != FaultProfile::None {
            eprintln!("cis: injecting the faults of profile '{}'", args.faults);
        }
        let kill_after = cloud.kill_after(KILL_WITHIN);
        let progress = progress::for_output(args.output, args.quiet, args.verbose > 0);
        let orch = Orchestrator::new(&cloud, progress.as_ref(), &state);
        let result = match kill_after {
            None => dispatch(args, &orch).await,
            Some(after) => {
                tokio::select! {
                    r = dispatch(args, &orch) => r,
                    () = tokio::time::sleep(after) => {
                        drop(progress);
                        eprintln!(
                            "cis: --faults {}: killed after {:.1} s of virtual time, as SIGKILL would; run the command again to resume, or `cis down` to remove what exists",
                            args.faults,
                            after.as_secs_f64()
                        );
                        std::process::abort();
                    }
                }
            }
        };
        drop(progress);
        cloud.checkpoint().await?;
        result
    })
}

#[cfg(feature = "aws")]
/// `--cloud aws`: connects and checks the credentials first, so a machine without them is
/// told how to configure them before anything happens; then, before anything is created
/// or run, refuses what AWS cannot do (`demo`, an attack without a sink, an endpoint in a
/// region without the built-in algorithm) and checks the function packages `up` deploys.
fn aws(args: &Args, state: &StateDir) -> Result<()> {
    let runtime = runtime(Time::Real)?;
    runtime.block_on(async {
        let options = crate::backends::aws::AwsOptions {
            profile: args.profile.clone(),
            region: Some(args.region.clone()),
            endpoint_url: args.endpoint_url.clone(),
        };
        let session = crate::backends::aws::connect(&options).await.map_err(Error::Cloud)?;
        eprintln!("cis: acting on the {}", session.account.description);
        let packages = crate::model::lab::package::default_search_dirs();
        match &args.command {
            Command::Demo(_) => {
                return Err(Error::Usage(
                    "--cloud aws: `cis demo` runs on the simulator only; on AWS run `cis up`, `cis attack`, `cis report` and `cis down` (nothing was created)".into(),
                )
                .into())
            }
            Command::Attack(a) => {
                // Checked before anything runs on the target.
                let scenarios = attack_scenarios(a)?;
                let needs_sink = scenarios.iter().find(|s| s.script.contains(crate::backends::aws::attack::EXFIL_HOST_VARIABLE));
                match (&a.exfil_host, needs_sink) {
                    (Some(h), _) => crate::backends::aws::attack::check_exfil_host(h).map_err(Error::Usage)?,
                    (None, Some(scenario)) => {
                        return Err(Error::Usage(format!(
                            "--cloud aws: scenario {} sends its data to ${}: pass --exfil-host HOST, a host you control that accepts it (never someone else's); nothing was run",
                            scenario.id,
                            crate::backends::aws::attack::EXFIL_HOST_VARIABLE
                        ))
                        .into())
                    }
                    (None, None) => {}
                }
            }
            Command::Up(u) => {
                let l = &u.lab;
                let options = lab_options(args, l, Ledger::load(&state.ledger(args.cloud, &args.lab))?.map(|l| l.options).as_ref())?;
                if options.detector == crate::model::lab::DetectorMode::Endpoint {
                    // A region without the built-in algorithm fails here, before anything exists.
                    if let Err(crate::cloud::CloudError::Invalid(why)) =
                        crate::backends::aws::sagemaker::algorithm_image("randomcutforest", &session.account.region)
                    {
                        return Err(Error::Usage(format!("{why}; nothing was created")).into());
                    }
                }
                let graph = LabGraph::build(&args.lab, &options, "preflight");
                for code in graph.function_codes() {
                    crate::model::lab::package::locate(code, &packages)?;
                }
            }
            _ => {}
        }
        let exfil_host = match &args.command {
            Command::Attack(a) => a.exfil_host.clone(),
            _ => None,
        };
        let cloud = crate::backends::aws::cloud::AwsCloud::new(session, packages).with_exfil_host(exfil_host).map_err(Error::Cloud)?;
        let progress = progress::for_output(args.output, args.quiet, args.verbose > 0);
        let orch = Orchestrator::new(&cloud, progress.as_ref(), state);
        dispatch(args, &orch).await
    })
}

async fn dispatch(args: &Args, orch: &Orchestrator<'_>) -> Result<()> {
    let lab = &args.lab;
    let kind = orch.cloud.kind();
    match &args.command {
        Command::Up(u) => {
            let labs = match (u.labs, &u.roster) {
                (Some(n), _) => Some(classroom::numbered(lab, n)?),
                (None, Some(path)) => Some(classroom::roster(path)?),
                (None, None) => None,
            };
            match labs {
                None => {
                    let options = lab_options(args, &u.lab, orch.load_ledger(lab)?.map(|l| l.options).as_ref())?;
                    let report = orch.up(lab, &options).await?;
                    print(&match args.output {
                        OutputFormat::Json => json(&report),
                        OutputFormat::Text => up_text(&report),
                    });
                }
                Some(labs) => {
                    // Every option is checked for every lab before any is stood up.
                    let mut options = Vec::new();
                    for l in &labs {
                        options.push(lab_options(args, &u.lab, orch.load_ledger(l)?.map(|l| l.options).as_ref())?);
                    }
                    let quiet = Orchestrator { progress: &crate::orchestrator::Silent, ..*orch };
                    let quiet = &quiet;
                    let options = &options;
                    let labs_ref = &labs;
                    let reports = classroom::for_each(&labs, |l| async move {
                        let i = labs_ref.iter().position(|x| *x == l).expect("one of the labs");
                        quiet.up(&l, &options[i]).await
                    })
                    .await?;
                    print(&match args.output {
                        OutputFormat::Json => json(&reports.iter().map(|(_, r)| r).collect::<Vec<_>>()),
                        OutputFormat::Text => {
                            let cost: f64 = reports.iter().map(|(_, r)| r.usd_per_hour).sum();
                            let mut o =
                                format!("classroom of {} labs up on {}: about ${cost:.4}/hour on AWS\n", reports.len(), kind.name());
                            for (l, r) in &reports {
                                o.push_str(&format!("  {l}: {} resources\n", r.resources.len()));
                            }
                            o
                        }
                    });
                }
            }
        }
        Command::Status(s) => {
            if s.all {
                let labs = orch.cloud.list_labs().await?;
                print(&match args.output {
                    OutputFormat::Json => json(&serde_json::json!({"cloud": kind.name(), "labs": labs})),
                    OutputFormat::Text if labs.is_empty() => format!("no labs on {}", kind.name()),
                    OutputFormat::Text => labs.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n"),
                });
            } else {
                let report = orch.status(lab).await?;
                let others = if report.up { vec![] } else { other_labs(orch, lab).await? };
                print(&match args.output {
                    OutputFormat::Json => json(&report),
                    OutputFormat::Text => format!("{}{}", status_text(&report), others_line(&others, "status")),
                });
            }
        }
        Command::Attack(a) if a.all_labs => {
            let scenarios = attack_scenarios(a)?;
            let mut labs = Vec::new();
            for l in classroom::labs_in_state(orch.state, kind)? {
                if orch.load_ledger(&l)?.is_some_and(|ledger| ledger.complete) {
                    labs.push(l);
                }
            }
            if labs.is_empty() {
                return Err(Error::LabState(format!("no lab is up on {}: run `cis up --labs N` first", kind.name())).into());
            }
            let quiet = Orchestrator { progress: &crate::orchestrator::Silent, ..*orch };
            let (quiet, scenarios) = (&quiet, &scenarios);
            let work = classroom::for_each(&labs, |l| async move { attack_lab(quiet, &l, scenarios, a.repeat, a.at).await });
            let runs = until_interrupted(quiet, &labs, work).await?;
            print(&match args.output {
                OutputFormat::Json => json(&runs.iter().flat_map(|(_, r)| r).collect::<Vec<_>>()),
                OutputFormat::Text => {
                    let mut o = String::new();
                    for (l, records) in &runs {
                        let verdicts: Vec<String> =
                            records.iter().map(|r| format!("{} {} [{}]", r.run_id, r.scenario, r.verdict)).collect();
                        o.push_str(&format!("{l}: {}\n", verdicts.join(", ")));
                    }
                    o
                }
            });
        }
        Command::Attack(a) => {
            let scenarios = attack_scenarios(a)?;
            let records = until_interrupted(orch, std::slice::from_ref(lab), attack_lab(orch, lab, &scenarios, a.repeat, a.at)).await?;
            print(&match args.output {
                OutputFormat::Json => json(&records),
                OutputFormat::Text => Report::build(kind.name(), lab.as_str(), records).to_text(),
            });
        }
        Command::Release => {
            let report = orch.release(lab).await?;
            print(&match args.output {
                OutputFormat::Json => json(&report),
                OutputFormat::Text if report.restored.is_empty() => {
                    format!("{} was not isolated by containment: nothing to release", report.instance)
                }
                OutputFormat::Text => {
                    let lines: Vec<String> =
                        report.restored.iter().map(|r| format!("  {} -> {}", r.interface, r.groups.join(", "))).collect();
                    format!("released {}: interfaces back in their original groups\n{}", report.instance, lines.join("\n"))
                }
            });
        }
        Command::Down(d) if d.all_labs => {
            // The state's labs and the cloud's (by tag): a lost state file loses no lab.
            let labs = account_labs(orch, false).await?;
            let quiet = Orchestrator { progress: &crate::orchestrator::Silent, ..*orch };
            let quiet = &quiet;
            let reports = classroom::for_each(&labs, |l| async move { quiet.down(&l).await }).await?;
            print(&match args.output {
                OutputFormat::Json => json(&reports.iter().map(|(_, r)| r).collect::<Vec<_>>()),
                OutputFormat::Text if reports.is_empty() => format!("no labs on {}: nothing to delete", kind.name()),
                OutputFormat::Text => reports.iter().map(|(_, r)| down_text(r)).collect::<Vec<_>>().join("\n"),
            });
        }
        Command::Down(_) => {
            let report = orch.down(lab).await?;
            let others = if report.deleted.is_empty() { other_labs(orch, lab).await? } else { vec![] };
            print(&match args.output {
                OutputFormat::Json => json(&report),
                OutputFormat::Text => format!("{}{}", down_text(&report), others_line(&others, "down")),
            });
        }
        Command::Demo(d) => {
            let scenario = scenario::find(&d.scenario)?;
            let options = lab_options(args, &d.lab, None)?;
            let up = orch.up(lab, &options).await?;
            if args.output == OutputFormat::Text {
                print(&up_text(&up));
            }
            let record = orch.attack(lab, &scenario).await?;
            let down = orch.down(lab).await?;
            let report = Report::build(kind.name(), lab.as_str(), vec![record]);
            print(&match args.output {
                OutputFormat::Json => report.to_json(),
                OutputFormat::Text => format!("{}\n{}", report.to_text(), down_text(&down)),
            });
        }
        Command::Plan(_)
        | Command::Report(_)
        | Command::Sim(_)
        | Command::Scenarios(_)
        | Command::Train(_)
        | Command::Detect(_)
        | Command::Flows(_)
        | Command::Triage(_)
        | Command::Rca(_)
        | Command::Policy(_)
        | Command::Completions { .. } => {
            unreachable!("handled before the runtime")
        }
    }
    Ok(())
}

/// The lab's options: the ledger's (or the defaults), with what the user set on top.
fn lab_options(args: &Args, l: &LabArgs, existing: Option<&LabOptions>) -> Result<LabOptions, Error> {
    let mut o = existing.cloned().unwrap_or_else(|| LabOptions { region: args.region.clone(), ..Default::default() });
    if let Some(d) = l.detector {
        o.detector = d;
    }
    if l.llm {
        o.llm = true;
    }
    if let Some(t) = &l.llm_instance_type {
        o.llm_instance_type = Some(t.clone());
    }
    if let Some(ttl) = l.ttl {
        o.ttl_s = Some(ttl);
    }
    if let Some(t) = &l.instance_type {
        o.instance_type = t.clone();
    }
    if let Some(w) = l.window {
        o.window_s = w.seconds();
    }
    if let Some(s) = &l.ssh_from {
        o.ssh_from = Some(s.clone());
    }
    if let Some(i) = l.isolation {
        o.isolation = i;
    }
    if let Some(f) = l.forensics {
        o.forensics = f == crate::app::cli::Switch::On;
    }
    if let Some(b) = &l.baseline {
        let known: Vec<String> = crate::model::scenario::baselines().into_iter().map(|p| p.id).collect();
        if !known.contains(b) {
            return Err(Error::Usage(format!("--baseline {b}: no such profile; assets/baselines.toml has {}", known.join(", "))));
        }
        o.baseline = b.clone();
    }
    if let Some(email) = &l.notify {
        let valid = email.split_once('@').is_some_and(|(u, d)| !u.is_empty() && d.contains('.') && !email.contains(char::is_whitespace));
        if !valid {
            return Err(Error::Usage(format!("--notify '{email}' is not an e-mail address")));
        }
        o.notify_email = Some(email.clone());
    }
    Ok(o)
}

/// `cis sim ...`: studies in fresh simulated accounts of their own, under the state
/// directory's `sweep/`.
fn sim(args: &Args, s: &crate::app::cli::SimArgs, state: &StateDir) -> Result<()> {
    if args.cloud != CloudKind::Sim {
        return Err(Error::Usage("`cis sim` runs on the simulator only: drop --cloud aws".into()).into());
    }
    let sweep_args = match &s.action {
        crate::app::cli::SimAction::Sweep(sweep_args) => sweep_args,
        crate::app::cli::SimAction::Export(e) => {
            let written = export::run(e, args.seed.unwrap_or(1))?;
            print(&match args.output {
                OutputFormat::Json => json(&written),
                OutputFormat::Text => written.to_text(),
            });
            return Ok(());
        }
    };
    let runtime = runtime(Time::Virtual)?;
    let result = runtime.block_on(sweep::run(sweep_args, args.seed.unwrap_or(1), &args.region, &state.root().join("sweep")))?;
    print(&match args.output {
        OutputFormat::Json => json(&result),
        OutputFormat::Text => result.to_text(),
    });
    Ok(())
}

/// The account's labs: the state's (with `only_up`, those with a ledger: a lab's
/// directory outlives `down`, its runs do) and the cloud's, by tag, so that a lost state
/// file loses no lab. Sorted, each once.
async fn account_labs(orch: &Orchestrator<'_>, only_up: bool) -> Result<Vec<crate::model::lab::LabName>> {
    let mut labs = Vec::new();
    for l in classroom::labs_in_state(orch.state, orch.cloud.kind())? {
        if !only_up || orch.load_ledger(&l)?.is_some() {
            labs.push(l);
        }
    }
    labs.extend(orch.cloud.list_labs().await?);
    labs.sort();
    labs.dedup();
    Ok(labs)
}

/// The account's labs that are up, but for `lab`: what a command on a lab that is not
/// there should point to, a classroom's above all.
async fn other_labs(orch: &Orchestrator<'_>, lab: &crate::model::lab::LabName) -> Result<Vec<crate::model::lab::LabName>> {
    let mut labs = account_labs(orch, true).await?;
    labs.retain(|l| l != lab);
    Ok(labs)
}

/// A line naming the other labs, and how to reach them, for `verb`.
fn others_line(others: &[crate::model::lab::LabName], verb: &str) -> String {
    if others.is_empty() {
        return String::new();
    }
    let names: Vec<String> = others.iter().map(|l| l.to_string()).collect();
    let all = if verb == "down" { "`cis down --all-labs` removes them all" } else { "`cis status --all` lists them" };
    format!("\nother labs exist in this account: {}; {all}, or `cis {verb} --lab NAME` acts on one", names.join(", "))
}

/// Runs an attack verb until it ends or the user presses Ctrl-C. On Ctrl-C the run in
/// progress is dropped where it stood and closed as the next command would close it: its
/// script stopped, the target released, the run recorded as `interrupted`. The command
/// then says what it did and what to run next, and exits with status 130.
async fn until_interrupted<T>(
    orch: &Orchestrator<'_>,
    labs: &[crate::model::lab::LabName],
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T> {
    tokio::select! {
        r = work => return Ok(r?),
        r = tokio::signal::ctrl_c() => r.map_err(|e| Error::Internal(format!("listening for Ctrl-C: {e}")))?,
    }
    eprintln!("cis: Ctrl-C: stopping the attack, releasing the target, recording the run as interrupted (Ctrl-C again kills cis; the next `cis attack` then does this)");
    let mut closed = Vec::new();
    for lab in labs {
        closed.extend(
            orch.close_interrupted(lab, "stopped by Ctrl-C").await.with_context(|| format!("closing lab '{lab}''s interrupted run"))?,
        );
    }
    orch.cloud.checkpoint().await?;
    let runs: Vec<String> = closed.iter().map(|r| format!("{} ({}) in lab '{}'", r.run_id, r.scenario, r.lab)).collect();
    let done = if runs.is_empty() { "no run had started".to_string() } else { format!("recorded {} as interrupted", runs.join(", ")) };
    Err(Error::Interrupted(format!(
        "interrupted: {done}; scripts stopped, targets released. Run `cis attack` to start again; `cis report` lists the runs (interrupted ones are left out of the figures)"
    ))
    .into())
}

/// Runs the scenarios on one lab in order, each `repeat` times, kept apart by
/// [`Orchestrator::settle`], the first at the time of day `at` if one is given.
async fn attack_lab(
    orch: &Orchestrator<'_>,
    lab: &crate::model::lab::LabName,
    scenarios: &[crate::model::scenario::Scenario],
    repeat: u32,
    at: Option<crate::base::clock::TimeOfDay>,
) -> Result<Vec<crate::orchestrator::measure::RunRecord>, Error> {
    if let Some(at) = at {
        orch.wait_for_time_of_day(lab, at).await?;
    }
    let mut records: Vec<crate::orchestrator::measure::RunRecord> = Vec::new();
    let mut previous: Option<&crate::model::scenario::Scenario> = None;
    for scenario in scenarios {
        for _ in 0..repeat {
            if let (Some(record), Some(before)) = (records.last(), previous) {
                orch.settle(lab, record, before).await?;
            }
            records.push(orch.attack(lab, scenario).await?);
            previous = Some(scenario);
        }
    }
    Ok(records)
}

/// The scenarios `cis attack` runs: the one named, or with `--all` the whole catalogue.
fn attack_scenarios(a: &crate::app::cli::AttackArgs) -> Result<Vec<crate::model::scenario::Scenario>> {
    Ok(if a.all { scenario::catalogue() } else { vec![scenario::find(&a.scenario)?] })
}

/// `--out FILE` must name a file in a directory that exists: a typo in the directory is
/// refused, not created.
fn check_out(path: &std::path::Path) -> Result<(), Error> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(Error::Usage(format!(
            "--out {}: the directory {} does not exist: create it first, or give a path in an existing one",
            path.display(),
            parent.display()
        )));
    }
    if path.is_dir() {
        return Err(Error::Usage(format!("--out {}: is a directory: give a file's path", path.display())));
    }
    Ok(())
}

fn report(args: &Args, r: &crate::app::cli::ReportArgs, state: &StateDir) -> Result<()> {
    use crate::app::cli::ReportFormat as F;
    let (kind, lab) = (args.cloud, &args.lab);
    if let Some(path) = &r.out {
        check_out(path)?;
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
        return Err(Error::LabState(format!("lab '{lab}' on {} has no runs yet: run `cis attack --lab {lab}` first", kind.name())).into());
    }
    let rules = crate::analysis::rules_of_lab(&lab_graph_for_rules(state, kind, lab)?);
    let report = Report::build(kind.name(), lab.as_str(), runs).with_root_causes(&rules);
    let format = r.format.unwrap_or(if args.output == OutputFormat::Json { F::Json } else { F::Text });
    let text = match format {
        F::Json => report.to_json(),
        F::Text => report.to_text(),
        F::Markdown => report.to_markdown(),
        F::Html => crate::report::html::render(&report),
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

fn plan(args: &Args, l: &LabArgs, state: &StateDir) -> Result<()> {
    let existing = Ledger::load(&state.ledger(args.cloud, &args.lab))?;
    let options = lab_options(args, l, existing.as_ref().map(|l| &l.options))?;
    let run = existing.as_ref().map(|l| l.run.clone()).unwrap_or_else(|| "planned".into());
    let graph = LabGraph::build(&args.lab, &options, &run);
    let prices = PriceTable::embedded();
    let costs = prices.lab_costs(&graph);
    let total: f64 = costs.iter().map(|(_, c)| c.usd_per_hour).sum();
    if args.output == OutputFormat::Json {
        let resources: Vec<serde_json::Value> = graph
            .resources
            .iter()
            .zip(&costs)
            .enumerate()
            .map(|(i, (r, (_, c)))| {
                serde_json::json!({"order": i + 1, "role": r.role, "kind": r.kind, "name": r.name, "depends_on": r.depends_on, "usd_per_hour": c.usd_per_hour, "price_items": c.items, "unknown_prices": c.unknown})
            })
            .collect();
        print(&json(&serde_json::json!({
            "cloud": args.cloud.name(), "lab": args.lab.as_str(), "options": options, "resources": resources,
            "usd_per_hour": total, "usd_per_day": total * 24.0, "usage_prices": prices.usage,
            "prices": {"region": prices.region, "read_on": prices.read_on, "source": prices.source},
        })));
        return Ok(());
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "plan for lab '{}' ({} region {}, detector {:?}, window {} s): {} resources in creation order",
        args.lab,
        args.cloud.name(),
        options.region,
        options.detector.name(),
        options.window_s,
        graph.resources.len()
    );
    let width = graph.resources.iter().map(|r| r.name.len()).max().unwrap_or(0).max(40);
    let _ = writeln!(o, "{:>3}  {:<26} {:<26} {:<width$} {:>9}", "#", "role", "kind", "name", "$/hour");
    for (i, (r, (_, c))) in graph.resources.iter().zip(&costs).enumerate() {
        let cost = if !c.unknown.is_empty() {
            "unknown".to_string()
        } else if c.usd_per_hour > 0.0 {
            format!("{:.4}", c.usd_per_hour)
        } else {
            "-".to_string()
        };
        let _ = writeln!(o, "{:>3}  {:<26} {:<26} {:<width$} {:>9}", i + 1, r.role.name(), r.kind.name(), r.name, cost);
        if !r.depends_on.is_empty() {
            let deps: Vec<&str> = r.depends_on.iter().map(|d| d.name()).collect();
            let _ = writeln!(o, "{:>5}{:<26} after {}", "", "", deps.join(", "));
        }
    }
    for (role, c) in &costs {
        if !c.items.is_empty() {
            let _ = writeln!(o, "  {}: {}", role.name(), c.items.join(" + "));
        }
        if !c.unknown.is_empty() {
            let _ = writeln!(o, "  {}: no price in assets/prices.toml for {}", role.name(), c.unknown.join(", "));
        }
    }
    let _ = writeln!(o, "estimated fixed cost: ${total:.4}/hour, ${:.2}/day, ${:.2}/30 days", total * 24.0, total * 24.0 * 30.0);
    if let Some(crate::model::lab::ResourceConfig::SageMakerTrainingJob { instance_type, .. }) =
        graph.get(crate::model::lab::Role::TrainingJob).map(|s| &s.config)
    {
        let price = prices.price(&format!("sagemaker:{instance_type}"));
        let price = price.map(|p| format!("${p}/h")).unwrap_or_else(|| "price unknown".into());
        let _ = writeln!(o, "plus once per up: the training job on one {instance_type} ({price}) for the minutes it runs, about 5");
    }
    let usage: Vec<String> = prices.usage.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(o, "plus usage: {}", usage.join("; "));
    let _ = writeln!(o, "prices: assets/prices.toml ({}, read {}; {})", prices.region, prices.read_on, prices.source);
    if args.cloud == CloudKind::Sim {
        let _ = writeln!(o, "on the simulator nothing is billed: these are what the same lab costs on AWS");
    } else {
        // The functions' code is uploaded by `up`: say now whether it is there.
        let dirs = crate::model::lab::package::default_search_dirs();
        for code in [crate::model::lab::FunctionCode::Detector, crate::model::lab::FunctionCode::Containment] {
            match crate::model::lab::package::locate(code, &dirs) {
                Ok(p) => {
                    let _ = writeln!(o, "function package: {} ({:.1} MiB)", p.path.display(), p.bytes as f64 / 1_048_576.0);
                }
                Err(e) => {
                    let _ = writeln!(o, "function package: {e}");
                }
            }
        }
    }
    print(&o);
    Ok(())
}

fn up_text(r: &UpReport) -> String {
    let created = r.resources.iter().filter(|a| a.action == crate::orchestrator::Action::Created).count();
    let adopted = r.resources.iter().filter(|a| a.action == crate::orchestrator::Action::Adopted).count();
    let resumed = r.resources.iter().filter(|a| a.action == crate::orchestrator::Action::Resumed).count();
    let unchanged = r.resources.iter().filter(|a| a.action == crate::orchestrator::Action::Unchanged).count();
    format!(
        "lab '{}' is up on {}: {} resources ({created} created, {adopted} adopted after a crash, {resumed} resumed, {unchanged} unchanged) in {:.1} s{}; about ${:.4}/hour on AWS",
        r.lab,
        r.cloud,
        r.resources.len(),
        r.seconds,
        if r.cloud == "sim" { " of virtual time" } else { "" },
        r.usd_per_hour
    )
}

fn down_text(r: &DownReport) -> String {
    if r.deleted.is_empty() {
        return format!(
            "nothing to delete: lab '{}' has {} and no tagged resources on {}",
            r.lab,
            if r.had_ledger { "an empty ledger" } else { "no ledger" },
            r.cloud
        );
    }
    let swept = r.deleted.iter().filter(|d| d.via == crate::orchestrator::FoundBy::Sweep).count();
    let mut o = format!(
        "lab '{}' is down on {}: deleted {} resource(s) ({} found only by the tag sweep) in {:.1} s{}",
        r.lab,
        r.cloud,
        r.deleted.len(),
        swept,
        r.seconds,
        if r.cloud == "sim" { " of virtual time" } else { "" }
    );
    for d in &r.deleted {
        let _ = write!(o, "\n  deleted {:<26} {} {}", d.role.map(|r| r.name()).unwrap_or("-"), d.kind, d.id);
    }
    o
}

fn status_text(r: &StatusReport) -> String {
    let mut o = String::new();
    if !r.up && r.resources.is_empty() {
        return format!("lab '{}' is not up on {} (no ledger, no tagged resources)", r.lab, r.cloud);
    }
    let expired = r.seconds_left.is_some_and(|left| left <= 0.0);
    let state = match (r.up, r.complete) {
        (true, _) if expired => {
            "expired (its time to live is over and its janitor removes it; `cis down` removes what is left and the ledger)"
        }
        (true, true) => "up",
        (true, false) => "partly created (run `cis up` to finish, or `cis down`)",
        (false, _) => "not in any ledger, but tagged resources exist (run `cis down` to remove them)",
    };
    let _ = writeln!(o, "lab '{}' on {}: {state}; now {}", r.lab, r.cloud, r.now);
    for e in &r.resources {
        let _ = writeln!(
            o,
            "  {:<26} {:<26} {:<22} {}{}",
            e.role.map(|r| r.name()).unwrap_or("-"),
            e.kind.name(),
            e.state,
            e.id.as_deref().unwrap_or("-"),
            if e.drift { "  (drift)" } else { "" }
        );
    }
    if let (Some(at), Some(left)) = (r.expires_at, r.seconds_left) {
        let _ = if left > 0.0 {
            writeln!(
                o,
                "time to live: {} left; at {at} the lab deletes itself (its janitor function, invoked by its schedule)",
                duration_text(left)
            )
        } else {
            writeln!(
                o,
                "time to live: over since {at} ({} ago): its janitor deletes it; `cis down` removes whatever is left and the ledger",
                duration_text(-left)
            )
        };
    }
    // `+ 0.0` turns a -0.0 (nothing live, over a negative span) into 0.
    let _ = write!(o, "cost: ${:.4}/hour, about ${:.4} so far", r.usd_per_hour + 0.0, r.usd_so_far.max(0.0) + 0.0);
    o
}

/// `3 h 59 min`, `12 min`, `40 s`.
fn duration_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn scenarios(s: &ScenariosArgs, output: OutputFormat) -> Result<()> {
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
