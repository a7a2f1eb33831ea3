//! The command line as plain data: what the user typed, parsed by clap, nothing more.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};

use crate::cloud::CloudKind;
use crate::model::lab::{DetectorMode, IsolationSteps, LabName, SshSource};

#[derive(Debug, Parser)]
#[command(
    name = "cis",
    version,
    about = "Cloud Immune System lab: stand up a detect-and-contain lab, attack it, measure detection and isolation, tear it down.",
    long_about = "Cloud Immune System lab: stand up a detect-and-contain lab on AWS or on the embedded simulator, \
attack it with scripted exfiltration, measure how fast it detects and isolates, and tear it all down.\n\n\
Start with `cis demo`: up, attack, report and down on the simulator in one command."
)]
pub struct Args {
    /// Which cloud to act on: the embedded simulator or real AWS.
    #[arg(long, global = true, value_enum, default_value = "sim", env = "CIS_CLOUD")]
    pub cloud: CloudKind,

    /// The lab's name: resources are named cis-<lab>-<role> and tagged cis:lab=<lab>.
    #[arg(long, global = true, default_value = "default", env = "CIS_LAB")]
    pub lab: LabName,

    /// Where ledgers, runs and the simulated account live [default: $XDG_STATE_HOME/cis or ~/.local/state/cis].
    #[arg(long, global = true, env = "CIS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Output format of the command's result.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,

    /// Seed of the simulator's random draws: one seed, one history.
    #[arg(long, global = true, allow_hyphen_values = true, value_parser = parse_seed)]
    pub seed: Option<u64>,

    /// Inject the faults of PROFILE into the simulated AWS: none, throttling, server-errors,
    /// consistency, detaching, deliveries, duplicates, crashes (this process killed
    /// mid-command, as SIGKILL would), chaos (all of them), or denied (containment's EC2
    /// changes refused: Lambda gives up and tells the lab's topic). Drawn from --seed.
    #[arg(long, global = true, value_name = "PROFILE", default_value = "none")]
    pub faults: crate::sim::faults::FaultProfile,

    /// The simulator's delays: a file of tables that replace the shipped ones, as `cis sim
    /// calibrate` writes it (assets/latency.toml's format; only the delays it names).
    #[arg(long, global = true, value_name = "FILE")]
    pub latency: Option<std::path::PathBuf>,

    /// AWS region (the simulator's account is created in it).
    #[arg(long, global = true, env = "AWS_REGION", default_value = "us-east-1", value_parser = parse_region)]
    pub region: String,
    /// Whether `--region` or `AWS_REGION` set the region (not the default): an existing
    /// simulated account in another region is then refused, not silently used.
    #[arg(skip)]
    pub region_given: bool,

    /// AWS named profile, from the shared config and credentials files (--cloud aws).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// One endpoint for every AWS service, such as a moto or LocalStack server (--cloud aws;
    /// the SDK also reads AWS_ENDPOINT_URL).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// More detail on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// No progress: only the command's result, and errors (for scripts and pipes).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// A flow log's aggregation window (`--window`), in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WindowArg {
    #[value(name = "60")]
    OneMinute,
    #[value(name = "600")]
    TenMinutes,
}

impl WindowArg {
    pub fn seconds(self) -> u32 {
        match self {
            WindowArg::OneMinute => 60,
            WindowArg::TenMinutes => 600,
        }
    }
}

/// An on/off flag value (`--forensics on`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Provision the lab (resumes after a crash; a no-op when it is complete).
    Up(UpArgs),
    /// Print the lab's resources in creation order with their hourly cost; creates nothing.
    Plan(LabArgs),
    /// List the lab's resources with their live state, drift from the ledger and cost.
    Status(StatusArgs),
    /// Train a learning lab (AWS) on its own flow logs, then give it what needed the
    /// model: the detector function's model, the Random Cut Forest endpoint, the egress
    /// alarm. Until then the lab isolates nothing.
    Arm(ArmArgs),
    /// Train the anomaly model on flow logs of benign traffic.
    Train(TrainArgs),
    /// Score flow logs with the anomaly model and print the anomalous windows; or evaluate
    /// the isolation forest on a labelled CSV table.
    Detect(DetectArgs),
    /// Read flow logs and summarise them: records, malformed lines (with their numbers),
    /// time span, interfaces, accepted and rejected traffic. Checks files before `cis train`.
    Flows(FlowsArgs),
    /// Run a scenario against the lab and record its timeline.
    Attack(AttackArgs),
    /// Latencies, bytes lost and detection rate over the lab's runs.
    Report(ReportArgs),
    /// Undo containment: put the target's interfaces back in the groups they had before
    /// isolation (forensic snapshots stay until `down`).
    Release,
    /// Delete every resource of the lab, even without a ledger.
    Down(DownArgs),
    /// List the scenario catalogue, or explain one scenario.
    Scenarios(ScenariosArgs),
    /// up -> attack -> report -> down in one command (on the simulator: a fresh account).
    Demo(DemoArgs),
    /// What-if studies on the simulator.
    Sim(SimArgs),
    /// Rank a batch of alerts: which are critical, why, and what to do.
    Triage(TriageArgs),
    /// Root-cause analysis of security logs against the firewall rules: the issue, its
    /// cause, and a narrower rule set.
    Rca(RcaArgs),
    /// Print the IAM policy the operator running `cis --cloud aws` needs (least privilege:
    /// the lab's own names and tags), to attach to the user or role that runs cis.
    Policy(PolicyArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, ClapArgs)]
pub struct PolicyArgs {
    /// The AWS account id to write into the ARNs [default: any account, `*`].
    #[arg(long, value_name = "ID", value_parser = parse_account)]
    pub account: Option<String>,
    /// Leave the region out of the ARNs (`*`): one policy for every region.
    #[arg(long)]
    pub any_region: bool,
}

/// A time to live in seconds, from `30m`, `4h`, `2d`, `900s` or `1h 30m` (humantime's
/// format).
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let secs = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}): a number and a unit, such as 30m, 4h, 2d or 1h 30m"))?
        .as_secs();
    if !(15 * 60..=7 * 86_400).contains(&secs) {
        return Err(format!("'{s}': a lab's time to live is 15 minutes to 7 days"));
    }
    Ok(secs)
}

fn parse_account(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not an AWS account id: twelve digits, as `aws sts get-caller-identity` prints"))
    }
}

#[derive(Debug, ClapArgs)]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: LabArgs,
    /// A classroom: N labs, one per trainee, named <lab>-01 ... <lab>-N, stood up
    /// concurrently (the other verbs reach them with --all-labs or --lab <lab>-NN).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=200), conflicts_with = "roster")]
    pub labs: Option<u32>,
    /// A classroom from a roster: one trainee per line (a valid lab name; blank lines and
    /// `#` comments skipped), a lab each.
    #[arg(long, value_name = "FILE")]
    pub roster: Option<std::path::PathBuf>,
}

#[derive(Debug, ClapArgs)]
pub struct ArmArgs {
    /// How much of its own traffic the lab must have learned (the lab's `up --warmup`, 24h
    /// by default: the workloads' daily cycle; 1h for a quick lab, at the cost of false
    /// alarms at hours it has not seen).
    #[arg(long, value_name = "DURATION", value_parser = parse_warmup)]
    pub warmup: Option<std::time::Duration>,
}

/// A warm-up, from `1h`, `90m` or `2d` (humantime's format): at least an hour, the least
/// the model can start from.
pub fn parse_warmup(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}): a number and a unit, such as 1h, 90m or 2d"))?;
    if d < std::time::Duration::from_secs(3600) {
        return Err(format!("'{s}' is under an hour: the model needs at least an hour of 60-second windows to start"));
    }
    Ok(d)
}

#[derive(Debug, ClapArgs)]
pub struct DownArgs {
    /// Every lab of this cloud: those the state directory knows and those found by tag.
    #[arg(long)]
    pub all_labs: bool,
}

/// Choices that shape the lab; recorded in its ledger. Unset ones keep the lab's (or the defaults).
#[derive(Clone, Debug, Default, ClapArgs)]
pub struct LabArgs {
    /// The lab's time to live from its creation (30m, 4h, 2d; 15 minutes to 7 days): then
    /// the lab deletes itself in the cloud (a schedule invokes its janitor function), even
    /// if this machine is gone. `cis status` shows the time left.
    #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
    pub ttl: Option<u64>,
    /// How much of its own traffic an AWS lab learns before `cis arm` may arm it (24h by
    /// default, the workloads' daily cycle; 1h for a quick lab). `cis status` shows when.
    #[arg(long, value_name = "DURATION", value_parser = parse_warmup)]
    pub warmup: Option<std::time::Duration>,
    /// Where the anomaly model is scored: a SageMaker endpoint, or in the detector Lambda.
    #[arg(long, value_enum)]
    pub detector: Option<DetectorMode>,
    /// EC2 instance type of the target.
    #[arg(long)]
    pub instance_type: Option<String>,
    /// Flow-log aggregation window in seconds.
    #[arg(long, value_enum)]
    pub window: Option<WindowArg>,
    /// Allow SSH to the target from this one address (a /32). Without it, no inbound rule at all.
    #[arg(long, value_name = "IP[/32]")]
    pub ssh_from: Option<SshSource>,
    /// E-mail address the alerts topic notifies.
    #[arg(long, value_name = "EMAIL")]
    pub notify: Option<String>,
    /// How containment isolates the target: network-acl (the default: a deny-all entry in
    /// the lab subnet's network ACL cuts even tracked connections, then the isolation
    /// group), two-step (AWS's runbook: an allow-all group, then isolation; it needs a
    /// group admitting all traffic from 0.0.0.0/0), or one-step, for training: it leaves
    /// tracked connections flowing.
    #[arg(long, value_enum)]
    pub isolation: Option<IsolationSteps>,
    /// The target's benign workload, a profile of assets/workloads.toml (idle-server,
    /// web-server, batch-job): the simulator runs its traffic and trains the lab's model on it.
    #[arg(long, value_name = "PROFILE", alias = "baseline")]
    pub workload: Option<String>,
    /// Forensic preservation before isolation: termination protection, volumes kept, snapshots.
    #[arg(long, value_enum)]
    pub forensics: Option<Switch>,
    /// Also deploy Foundation-Sec-8B-Instruct (DJL LMI on ml.g6e.2xlarge, about $2.80/h) for
    /// `cis triage` and `cis rca --analyser sagemaker`.
    #[arg(long)]
    pub llm: bool,
    /// The LLM endpoint's instance type (needs 24 GB of GPU memory or more; ml.g5.2xlarge
    /// where a quota for ml.g6e is missing).
    #[arg(long, value_name = "TYPE", requires = "llm")]
    pub llm_instance_type: Option<String>,
}

/// How the isolation forest is grown and calibrated.
#[derive(Clone, Debug, ClapArgs)]
pub struct ForestArgs {
    /// Trees in the forest.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub trees: u32,
    /// Rows each tree is grown on.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(2..=1_000_000))]
    pub sample_size: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// VPC Flow Logs: text (any log format, a header line, CloudWatch export lines), gzip, or CloudWatch Logs JSON.
    Flowlog,
    /// A CSV table with a header: numeric columns are features (evaluation of the forest on public data sets).
    Csv,
}

#[derive(Debug, ClapArgs)]
pub struct TrainArgs {
    /// Flow logs of benign traffic (files, or - for standard input).
    #[arg(long, required = true, num_args = 1.., value_name = "FLOWS")]
    pub baseline: Vec<String>,
    /// Where to write the model [default: <state-dir>/models/<lab>.json].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Aggregation window of the flow logs, in seconds (60 or 600 on AWS).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub window: i64,
    /// The share of baseline windows allowed to alert (each alert isolates a machine).
    #[arg(long, default_value_t = 1e-5)]
    pub target_fpr: f64,
    /// The records' format, as given to CreateFlowLogs [default: from a header line, else the default or the lab's format by field count].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Also write the baseline's window features as the CSV SageMaker's Random Cut Forest trains on.
    #[arg(long, value_name = "PATH")]
    pub rcf_csv: Option<PathBuf>,
    #[command(flatten)]
    pub forest: ForestArgs,
}

#[derive(Debug, ClapArgs)]
pub struct DetectArgs {
    /// Files to score, or - (the default) for standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
    /// The model: a file from `cis train`, or `sim` for the simulated lab's [default: <state-dir>/models/<lab>.json].
    #[arg(long, value_name = "PATH|sim")]
    pub model: Option<String>,
    #[arg(long, value_enum, default_value = "flowlog")]
    pub format: InputFormat,
    /// The records' format, as given to CreateFlowLogs [default: from a header line, else the default or the lab's format by field count].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Report ROC AUC, PR AUC and recall at 1% false positives. Flow logs: a file with one
    /// label (1/0, malicious/benign) per record line, in order. CSV: the label column.
    #[arg(long, value_name = "LABELS")]
    pub eval: Option<String>,
    /// Print every window, not only the anomalous ones.
    #[arg(long)]
    pub all: bool,
    /// CSV only: scale every column as the detector scales flow volumes, sign(x) ln(1 + |x|),
    /// before growing the forest (heavy-tailed counts and bytes then spread over their orders of magnitude).
    #[arg(long)]
    pub log_scale: bool,
    /// Rank single flow-log records instead of windows: a forest grown on the input's own
    /// records (no model needed), the most anomalous shown with their line numbers; with
    /// --eval, one label per record line is evaluated per record. Hunting, not isolation.
    #[arg(long)]
    pub per_flow: bool,
    /// With --per-flow: how many of the most anomalous records to show.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// CSV only: the forest grown on the table itself.
    #[command(flatten)]
    pub forest: ForestArgs,
}

#[derive(Debug, ClapArgs)]
pub struct FlowsArgs {
    /// Files to read, or - (the default) for standard input.
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,
    /// The records' format, as given to CreateFlowLogs [default: from a header line, else the default or the lab's format by field count].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, ClapArgs)]
pub struct StatusArgs {
    /// Every lab in the account, by tag.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, ClapArgs)]
pub struct AttackArgs {
    /// Scenario id (see `cis scenarios`) or a path to a scenario .toml file.
    #[arg(default_value = crate::model::scenario::DEFAULT_SCENARIO)]
    pub scenario: String,
    /// Run every scenario of the catalogue, in id order (each --repeat times).
    #[arg(long, conflicts_with = "scenario")]
    pub all: bool,
    /// Run it this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    /// Where the scenario's script sends its data on AWS: a host you control that accepts
    /// it (the simulator models its own sink).
    #[arg(long, value_name = "HOST")]
    pub exfil_host: Option<String>,
    /// Attack every lab that is up (a classroom), concurrently.
    #[arg(long)]
    pub all_labs: bool,
    /// Start the first run at the next HH:MM (UTC) of the lab's clock, the lab's own
    /// traffic going on until then: to meet the hour a workload is busy (a nightly
    /// backup) or quiet. Virtual time on the simulator; on AWS, the command waits.
    #[arg(long, value_name = "HH:MM")]
    pub at: Option<crate::base::clock::TimeOfDay>,
}

#[derive(Debug, ClapArgs)]
pub struct SimArgs {
    #[command(subcommand)]
    pub action: SimAction,
}

#[derive(Debug, Subcommand)]
pub enum SimAction {
    /// Runs a scenario under several pipeline settings (flow-log window, the detector's
    /// threshold) in fresh simulated accounts and shows detection latency against false
    /// isolations.
    Sweep(SweepArgs),
    /// Writes a labelled flow-log data set: a target running a workload profile for some
    /// days, with scenarios run on it at spaced times; every record and every window
    /// labelled with the scenario whose traffic it holds. Read it back with
    /// `cis detect FLOWS --eval LABELS`.
    Export(ExportArgs),
    /// Fits the simulator's pipeline delays to runs recorded on AWS: flow-log delivery
    /// (detected window's end to detection) and EventBridge's hand-off (detection to the
    /// containment function). Prints the Kolmogorov-Smirnov distance per stage before and
    /// after, and writes the fitted tables for `--latency FILE`.
    Calibrate(CalibrateArgs),
    /// How faint an attack may be before the pipeline goes blind: for an attack family and
    /// each detector, bisects the family's knob (bytes a minute, a beacon's interval or
    /// jitter, how many destinations) on a fresh lab per seed, and prints the faintest
    /// setting caught within the budget in at least 90% of the seeds, with its interval
    /// over the seeds, and the false alerts per lab-day.
    Frontier(FrontierArgs),
}

#[derive(Debug, ClapArgs)]
pub struct FrontierArgs {
    /// The attack family: bulk (one upload, bytes a minute), drip (a piece every two
    /// minutes, bytes a minute), beacon (check-ins, their interval), jitter (check-ins
    /// every minute, how far each is jittered), spray (pieces to new networks, how many).
    #[arg(value_enum)]
    pub family: crate::model::evasion::Family,
    /// Detectors to find the frontier of.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SweepDetector::Model, SweepDetector::MetricFilter])]
    pub detectors: Vec<SweepDetector>,
    /// The target's benign workload (a profile of assets/workloads.toml).
    #[arg(long, value_name = "PROFILE", default_value = crate::model::scenario::DEFAULT_WORKLOAD)]
    pub workload: String,
    /// Seeds, from the global --seed (1 when unset) on: a lab each.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub seeds: u32,
    /// Attack runs a seed's search may take.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=30))]
    pub steps: u32,
    /// How long an attack may go on before it counts as missed (each attack lasts this
    /// long): `1h`, `30m`, `4h`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_budget)]
    pub budget: std::time::Duration,
    /// Benign hours each seed's lab runs before its search, its false alerts and
    /// isolations counted with the runs' (0: the runs' own benign windows only).
    #[arg(long, value_name = "H", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=240))]
    pub benign_hours: u32,
    /// Also write the frontier as a self-contained HTML page with its chart.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// A frontier's budget, from `1h`, `30m` or `4h` (humantime's format): 10 minutes to a day.
pub fn parse_budget(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}): a number and a unit, such as 30m, 1h or 4h"))?;
    if !(600..=86_400).contains(&d.as_secs()) {
        return Err(format!("'{s}': a budget is 10 minutes to a day"));
    }
    Ok(d)
}

#[derive(Debug, ClapArgs)]
pub struct CalibrateArgs {
    /// Run records (`runs/run-NNNN.json`) or directories of them (a lab's `runs/`).
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<std::path::PathBuf>,
    /// Where to write the fitted tables [default: print only].
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, ClapArgs)]
pub struct ExportArgs {
    /// The target's benign workload (a profile of assets/workloads.toml).
    #[arg(long, value_name = "PROFILE", default_value = crate::model::scenario::DEFAULT_WORKLOAD, alias = "baseline")]
    pub workload: String,
    /// Virtual days of traffic.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub days: u32,
    /// Scenarios to run, spaced evenly over the days (repeat the flag); every scenario of
    /// the catalogue when none is named.
    #[arg(long = "scenario", value_name = "ID")]
    pub scenarios: Vec<String>,
    /// The flow-log format to write: the lab's (version 5 fields) or the default version 2.
    #[arg(long, value_enum, default_value_t = ExportFormat::Lab)]
    pub format: ExportFormat,
    /// The directory to write flows.log, labels.txt, records.csv and windows.csv into
    /// (created; refused when it holds any of them).
    #[arg(long, value_name = "DIR")]
    pub out: std::path::PathBuf,
}

/// The flow-log format `cis sim export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// The lab's format: version 5 fields, TCP flags and direction included.
    Lab,
    /// The default format (version 2): no flags, no direction.
    V2,
}

#[derive(Debug, ClapArgs)]
pub struct SweepArgs {
    /// The scenario to run under each setting.
    #[arg(default_value = crate::model::scenario::DEFAULT_SCENARIO)]
    pub scenario: String,
    /// Attack runs per setting.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Virtual hours of benign traffic per setting, over which false isolations are counted.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=720))]
    pub hours: u32,
    /// Flow-log windows to try, in seconds.
    #[arg(long, value_delimiter = ',', default_values_t = [60u32, 600])]
    pub windows: Vec<u32>,
    /// The target's benign workload (a profile of assets/workloads.toml).
    #[arg(long, value_name = "PROFILE", default_value = crate::model::scenario::DEFAULT_WORKLOAD, alias = "baseline")]
    pub workload: String,
    /// The detector's threshold, as the share of benign windows (for the metric filter,
    /// of benign minutes) allowed to alert.
    #[arg(long = "target-fpr", value_delimiter = ',', default_values_t = [1e-5f64, 1e-3, 1e-2])]
    pub target_fprs: Vec<f64>,
    /// Detectors to compare: the anomaly model, and a CloudWatch metric filter on the bytes
    /// the target sends out with an alarm on it.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [SweepDetector::Model, SweepDetector::MetricFilter])]
    pub detectors: Vec<SweepDetector>,
}

/// How `cis triage` and `cis rca` write their answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AnalysisFormat {
    Markdown,
    Text,
    /// The report as JSON (`cis-triage` or `cis-rca`, version 1).
    Json,
}

#[derive(Debug, ClapArgs)]
pub struct TriageArgs {
    /// Alerts: a JSON array or JSON lines (the lab's detection and containment records
    /// too); `-` or nothing reads standard input.
    #[arg(value_name = "FILE|-")]
    pub file: Option<std::path::PathBuf>,
    /// markdown, text or json [default: markdown, or json with --output json].
    #[arg(long, value_enum)]
    pub format: Option<AnalysisFormat>,
    #[command(flatten)]
    pub analyser: AnalyserArgs,
}

/// Who answers `cis triage` and `cis rca`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AnalyserKind {
    /// The offline rules engine: deterministic, explains itself with the evidence it used.
    Builtin,
    /// Foundation-Sec-8B-Instruct on a SageMaker endpoint (`cis up --llm`, or --endpoint).
    Sagemaker,
    /// Any OpenAI-compatible chat-completions server (vLLM, llama.cpp, Ollama) by --url
    /// and --model.
    Openai,
}

#[derive(Debug, ClapArgs)]
pub struct AnalyserArgs {
    #[arg(long, value_enum, default_value = "builtin")]
    pub analyser: AnalyserKind,
    /// The OpenAI-compatible server: `http[s]://host[:port]`, with or without `/v1`.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// The model name the OpenAI-compatible server serves.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// The SageMaker endpoint; by default the lab's `cis-<lab>-llm-endpoint`.
    #[arg(long, value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Seconds to wait for the model's answer.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// The longest answer to ask for, in tokens.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(16..=16_384))]
    pub max_tokens: u32,
}

#[derive(Debug, ClapArgs)]
pub struct RcaArgs {
    /// Security logs: a Markdown or CSV table (time, source, destination, port, protocol,
    /// action, rule, message) or flow-log lines.
    #[arg(long, value_name = "FILE")]
    pub logs: Option<std::path::PathBuf>,
    /// Firewall rules: a Markdown or CSV table (id, priority, direction, action, source,
    /// destination, ports, protocol). Without it: the lab's security groups, from its ledger.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<std::path::PathBuf>,
    /// A run of the lab (`run-0003`, as `cis report` lists them): its detection and the
    /// attack's traffic, against the lab's security groups.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
    /// markdown, text or json [default: markdown, or json with --output json].
    #[arg(long, value_enum)]
    pub format: Option<AnalysisFormat>,
    #[command(flatten)]
    pub analyser: AnalyserArgs,
}

/// A detector `cis sim sweep` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SweepDetector {
    /// The anomaly model (scored in the detector function).
    Model,
    /// A metric filter on egress bytes and an alarm (M of N, missing data not breaching).
    MetricFilter,
}

impl SweepDetector {
    pub fn name(self) -> &'static str {
        match self {
            SweepDetector::Model => "model",
            SweepDetector::MetricFilter => "metric-filter",
        }
    }

    pub fn mode(self) -> DetectorMode {
        match self {
            SweepDetector::Model => DetectorMode::Lambda,
            SweepDetector::MetricFilter => DetectorMode::MetricFilter,
        }
    }
}

/// How `cis report` writes the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    /// The stable schema of README's "Report JSON".
    Json,
    Markdown,
    /// One self-contained page with charts that opens offline.
    Html,
}

impl ReportFormat {
    /// The name the flag takes.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Text => "text",
            ReportFormat::Json => "json",
            ReportFormat::Markdown => "markdown",
            ReportFormat::Html => "html",
        }
    }
}

#[derive(Debug, ClapArgs)]
pub struct ReportArgs {
    /// text, json, markdown or html (default: text, or json with --output json).
    #[arg(long, value_enum)]
    pub format: Option<ReportFormat>,
    /// Write the report to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Compare every lab with runs (a classroom), one row each.
    #[arg(long)]
    pub all_labs: bool,
}

#[derive(Debug, ClapArgs)]
pub struct ScenariosArgs {
    #[command(subcommand)]
    pub action: Option<ScenariosAction>,
}

#[derive(Debug, Subcommand)]
pub enum ScenariosAction {
    /// List every scenario.
    List,
    /// Explain one scenario: what it does, its traffic, what a detector should see.
    Show { id: String },
}

#[derive(Debug, ClapArgs)]
pub struct DemoArgs {
    /// Scenario to run.
    #[arg(long, default_value = crate::model::scenario::DEFAULT_SCENARIO)]
    pub scenario: String,
    #[command(flatten)]
    pub lab: LabArgs,
}

/// `--seed`: a whole number from 0 to 2^64 - 1 (a negative one is named as such, not taken
/// for a flag).
fn parse_seed(text: &str) -> Result<u64, String> {
    text.parse().map_err(|_| format!("'{text}' is not a seed: give a whole number from 0 to {}", u64::MAX))
}

/// `--region`: the shape of an AWS region name (`us-east-1`, `ap-southeast-2`,
/// `us-gov-west-1`), so that a typo does not create a simulated account in no region.
fn parse_region(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| (1..=20).contains(&n))
        && ["af", "ap", "ca", "cn", "eu", "il", "me", "mx", "sa", "us"].contains(&parts[0]);
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!("'{text}' is not an AWS region name: give one such as us-east-1 or eu-west-1"))
    }
}
