//! The lab's life on a cloud: `plan`, `up`, `status`, `attack`, `release`, `down` and
//! `demo`, with their text renderers.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};

use super::classroom;
use super::cli::{Args, Command, LabArgs, OutputFormat};
use super::output::{json, print};
use crate::base::error::Error;
use crate::cloud::CloudKind;
use crate::model::lab::pricing::PriceTable;
use crate::model::lab::{LabGraph, LabOptions};
use crate::model::scenario;
use crate::orchestrator::{DownReport, Orchestrator, StatusReport, UpReport};
use crate::report::Report;
use crate::store::ledger::Ledger;
use crate::store::state::StateDir;

/// Runs a verb that acts on a cloud, through the orchestration.
pub(super) async fn dispatch(args: &Args, orch: &Orchestrator<'_>) -> Result<()> {
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
        Command::Arm(a) => {
            let report = orch.arm(lab, a.warmup).await?;
            print(&match args.output {
                OutputFormat::Json => json(&report),
                OutputFormat::Text => format!("lab '{lab}' is {}\n{}", report.arming.describe(), up_text(&report.up)),
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
pub(super) fn lab_options(args: &Args, l: &LabArgs, existing: Option<&LabOptions>) -> Result<LabOptions, Error> {
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
    if let Some(w) = l.warmup {
        if args.cloud == crate::cloud::CloudKind::Sim {
            return Err(Error::Usage(
                "--warmup: a simulated lab is armed at `up` on its workload's simulated baseline; --warmup is for --cloud aws labs, which learn their own traffic"
                    .into(),
            ));
        }
        o.warmup_s = Some(w.as_secs());
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
    if let Some(b) = &l.workload {
        let known: Vec<String> = crate::model::scenario::workloads().into_iter().map(|p| p.id).collect();
        if !known.contains(b) {
            return Err(Error::Usage(format!("--workload {b}: no such profile; assets/workloads.toml has {}", known.join(", "))));
        }
        o.workload = b.clone();
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
pub(super) fn attack_scenarios(a: &crate::app::cli::AttackArgs) -> Result<Vec<crate::model::scenario::Scenario>> {
    Ok(if a.all { scenario::catalogue() } else { vec![scenario::find(&a.scenario)?] })
}

pub(super) fn plan(args: &Args, l: &LabArgs, state: &StateDir) -> Result<()> {
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
    match &r.arming {
        Some(crate::model::lab::Arming::Learning { since }) => {
            let ready = since.plus(r.warmup);
            let _ = writeln!(
                o,
                "detector: learning its own traffic for {:.0} min, since {since}; nothing is isolated until `cis arm`, which it may run from {ready} (its warm-up of {:.0} h)",
                r.now.seconds_since(*since) / 60.0,
                r.warmup.as_secs_f64() / 3600.0
            );
        }
        Some(a) => {
            let _ = writeln!(o, "detector: {}", a.describe());
        }
        None => {}
    }
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
