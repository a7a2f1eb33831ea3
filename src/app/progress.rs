//! How the orchestration's progress is shown: one indicatif bar per resource on a
//! terminal, plain lines otherwise: compact ones (what finished, and every retry and
//! failure in full) unless `-v` asks for every step.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::cli::OutputFormat;
use crate::orchestrator::Progress;

/// How progress is shown for an output format: JSON keeps stdout for the result, so
/// progress goes to stderr as lines; text gets bars on a terminal, lines otherwise;
/// lines are compact unless `verbose`; `--quiet` shows none.
pub fn for_output(output: OutputFormat, quiet: bool, verbose: bool) -> Box<dyn Progress> {
    if quiet {
        return Box::new(crate::orchestrator::Silent);
    }
    match output {
        OutputFormat::Json => Box::new(Lines::new(true, !verbose)),
        OutputFormat::Text if std::io::stdout().is_terminal() => Box::new(Bars::default()),
        OutputFormat::Text => Box::new(Lines::new(false, !verbose)),
    }
}

/// Plain lines, to stdout (text output that is not a terminal) or stderr (JSON output).
/// Compact lines leave out the start of each step and its waits: a log or a pipe gets one
/// line per resource or phase as it ends, and every retry and failure in full.
pub struct Lines {
    to_stderr: bool,
    compact: bool,
    last: Mutex<BTreeMap<String, String>>,
}

impl Lines {
    pub fn new(to_stderr: bool, compact: bool) -> Self {
        Lines { to_stderr, compact, last: Mutex::new(BTreeMap::new()) }
    }

    fn line(&self, key: &str, text: &str) {
        // Repeated identical updates (a wait polled many times) are shown once.
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.get(key).map(String::as_str) == Some(text) {
            return;
        }
        last.insert(key.to_string(), text.to_string());
        let line = format!("  {key:<24} {text}\n");
        let _ = if self.to_stderr { std::io::stderr().write_all(line.as_bytes()) } else { std::io::stdout().write_all(line.as_bytes()) };
    }
}

impl Progress for Lines {
    fn begin(&self, key: &str, what: &str, action: &str) {
        if !self.compact {
            self.line(key, &format!("{action} {what}"));
        }
    }
    fn update(&self, key: &str, message: &str) {
        if !(self.compact && message.starts_with("waiting")) {
            self.line(key, message);
        }
    }
    fn finish(&self, key: &str, message: &str) {
        self.line(key, message);
    }
}

/// One bar per resource, on a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()), bars: Mutex::new(BTreeMap::new()) }
    }
}

impl Bars {
    fn bar(&self, key: &str) -> ProgressBar {
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        bars.entry(key.to_string())
            .or_insert_with(|| {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {spinner} {prefix:<24} {wide_msg}").expect("valid template"));
                bar.set_prefix(key.to_string());
                bar
            })
            .clone()
    }
}

impl Progress for Bars {
    fn begin(&self, key: &str, what: &str, action: &str) {
        self.bar(key).set_message(format!("{action} {what}"));
    }
    fn update(&self, key: &str, message: &str) {
        let bar = self.bar(key);
        bar.set_message(message.to_string());
        bar.tick();
    }
    fn finish(&self, key: &str, message: &str) {
        let bar = self.bar(key);
        bar.set_style(ProgressStyle::with_template("  ✓ {prefix:<24} {wide_msg}").expect("valid template"));
        bar.finish_with_message(message.to_string());
    }
}
