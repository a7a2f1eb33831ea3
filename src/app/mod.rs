//! Runs the verbs: builds the cloud and the runtime, calls the orchestration, prints.
//! The only place that uses `anyhow`; bad input exits with status 2, other failures 1.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use clap::{CommandFactory, FromArgMatches};

// The command line as types: every flag parsed once, here.
pub mod cli;
// The one runtime builder, on the clock the cloud keeps.
mod runtime;
// Printing a verb's result, as it is or as JSON.
mod output;
// How progress is shown: bars on a terminal, lines otherwise.
mod progress;
// Classrooms: a lab per trainee.
mod classroom;
// cis report.
mod reporting;
// cis triage and cis rca.
mod analysis;
// cis flows, train, detect: the detector on flow-log files.
mod detection;
// cis sim sweep.
mod sweep;
// cis sim export: a labelled flow-log data set.
mod export;
// cis sim calibrate, and the --latency file it writes.
mod calibrate;
// cis sim frontier: the faintest attack each detector still catches.
mod frontier;
// cis plan, up, status, attack, release, down and demo.
mod lifecycle;
// cis scenarios.
mod scenarios;

use self::cli::{Args, Command, OutputFormat};
use self::lifecycle::{dispatch, plan};
use self::output::{json, print};
use self::reporting::report;
use self::runtime::{runtime, Time};
use self::scenarios::scenarios;
use crate::backends::sim::SimCloud;
use crate::base::error::Error;
use crate::cloud::{Cloud, CloudKind};
use crate::orchestrator::Orchestrator;
use crate::sim::faults::FaultProfile;

/// Under `--faults crashes`, the command is killed at a random instant of its first this-many
/// minutes of virtual time (`up` takes about a quarter of an hour, `down` a few minutes).
const KILL_WITHIN: std::time::Duration = std::time::Duration::from_secs(20 * 60);
use crate::store::state::{default_state_dir, StateDir};

/// Parses the command line, runs it, and returns the process exit status.
pub fn main() -> i32 {
    let matches = match Args::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => return clap_error(e),
    };
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => return clap_error(e),
    };
    args.region_given = matches.value_source("region").is_some_and(|s| s != clap::parser::ValueSource::DefaultValue);
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
        Command::Arm(_) => "arm",
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
    if args.cloud == CloudKind::Aws && args.latency.is_some() {
        // Refused before anything is done, as --faults is: it says how.
        calibrate::latency_model(args)?;
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
        crate::base::files::remove_dir_if_present(&dir).context("clearing the demo's simulated account")?;
        StateDir::new(dir)
    } else {
        state
    };

    let latency = calibrate::latency_model(args)?;
    let runtime = runtime(Time::Virtual)?;
    runtime.block_on(async {
        let cloud = SimCloud::open_with(&state.sim_account_dir(), args.seed, &args.region, args.faults, latency)?;
        let account = cloud.account().await?;
        // An account lives in one region. Acting on it when another was asked for would
        // report the other region's labs as this one's, as `--region` did before.
        if args.region_given && account.region != args.region {
            return Err(Error::Usage(format!(
                "--region {}: the simulated account under {} is in {}; give --region {} (or leave it out), or another --state-dir for an account in {}",
                args.region,
                state.sim_account_dir().display(),
                account.region,
                account.region,
                args.region
            ))
            .into());
        }
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
                let scenarios = lifecycle::attack_scenarios(a)?;
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
                let options = lifecycle::lab_options(args, l, crate::store::ledger::Ledger::load(&state.ledger(args.cloud, &args.lab))?.map(|l| l.options).as_ref())?;
                if options.detector == crate::model::lab::DetectorMode::Endpoint {
                    // A region without the built-in algorithm fails here, before anything exists.
                    if let Err(crate::cloud::CloudError::Invalid(why)) =
                        crate::backends::aws::sagemaker::algorithm_image("randomcutforest", &session.account.region)
                    {
                        return Err(Error::Usage(format!("{why}; nothing was created")).into());
                    }
                }
                let graph = crate::model::lab::LabGraph::build(&args.lab, &options, "preflight");
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

/// `cis sim ...`: studies in fresh simulated accounts of their own, under the state
/// directory's `sweep/`.
fn sim(args: &Args, s: &crate::app::cli::SimArgs, state: &StateDir) -> Result<()> {
    if args.cloud != CloudKind::Sim {
        return Err(Error::Usage("`cis sim` runs on the simulator only: drop --cloud aws".into()).into());
    }
    let sweep_args = match &s.action {
        crate::app::cli::SimAction::Sweep(sweep_args) => sweep_args,
        crate::app::cli::SimAction::Calibrate(c) => return Ok(calibrate::run(args, c)?),
        crate::app::cli::SimAction::Frontier(f) => {
            if let Some(path) = &f.html {
                reporting::check_out("--html", path)?;
            }
            let latency = calibrate::latency_model(args)?;
            let result = frontier::run(f, args.seed.unwrap_or(1), &args.region, &latency, &state.root().join("frontier"))?;
            // Kept for `cis report --format html`, which draws every study kept.
            let kept = state.frontiers_dir().join(crate::report::frontier::Frontier::file_name(f.family, &f.workload));
            crate::base::files::write_atomic(&kept, json(&result).as_bytes())?;
            if let Some(path) = &f.html {
                crate::base::files::write_atomic(path, result.to_html().as_bytes())?;
            }
            print(&match args.output {
                OutputFormat::Json => json(&result),
                OutputFormat::Text => result.to_text(),
            });
            return Ok(());
        }
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
    let latency = calibrate::latency_model(args)?;
    let result = runtime.block_on(sweep::run(sweep_args, args.seed.unwrap_or(1), &args.region, &latency, &state.root().join("sweep")))?;
    print(&match args.output {
        OutputFormat::Json => json(&result),
        OutputFormat::Text => result.to_text(),
    });
    Ok(())
}

