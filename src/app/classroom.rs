//! Classrooms: many labs, one per trainee, driven together. `up --labs N` (or `--roster`)
//! stands them up concurrently, `attack --all-labs` attacks each, `report --all-labs`
//! compares them, `down --all-labs` removes every lab of the cloud. The labs are ordinary
//! labs; this module only fans the orchestration out over them.

use std::fmt::Write as _;
use std::path::Path;

use futures_util::future::join_all;
use serde::Serialize;

use crate::base::error::{Error, Result};
use crate::base::units::human_bytes;
use crate::model::lab::LabName;
use crate::orchestrator::measure::load_runs;
use crate::report::{Report, Summary};
use crate::store::state::StateDir;

/// The labs of a classroom: `<prefix>-01` ... `<prefix>-N`.
pub fn numbered(prefix: &LabName, n: u32) -> Result<Vec<LabName>> {
    let width = n.to_string().len().max(2);
    (1..=n)
        .map(|i| {
            format!("{prefix}-{i:0width$}").parse::<LabName>().map_err(|e| {
                Error::Usage(format!("--labs {n} with --lab {prefix}: {e} (choose a shorter --lab for a classroom of this size)"))
            })
        })
        .collect()
}

/// The labs of a roster file: one trainee per line, blank lines and `#` comments skipped.
pub fn roster(path: &Path) -> Result<Vec<LabName>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut labs: Vec<LabName> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name = line.split('#').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        let lab: LabName = name.parse().map_err(|e: String| Error::BadFile { path: path.to_path_buf(), line: i + 1, message: e })?;
        if labs.contains(&lab) {
            return Err(Error::BadFile { path: path.to_path_buf(), line: i + 1, message: format!("trainee '{lab}' is listed twice") });
        }
        labs.push(lab);
    }
    if labs.is_empty() {
        return Err(Error::BadFile { path: path.to_path_buf(), line: 1, message: "the roster names no trainee".into() });
    }
    Ok(labs)
}

/// Labs the state directory holds a ledger or runs for, by name.
pub fn labs_in_state(state: &StateDir, cloud: crate::cloud::CloudKind) -> Result<Vec<LabName>> {
    let dir = state.labs_dir(cloud);
    let mut labs: Vec<LabName> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.parse().ok()).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
        Err(e) => return Err(Error::io(&dir, e)),
    };
    labs.sort();
    Ok(labs)
}

/// Runs `each` for every lab concurrently; every lab is attempted, and the first error
/// (with its lab) is returned after all have finished.
pub async fn for_each<T, F, Fut>(labs: &[LabName], each: F) -> Result<Vec<(LabName, T)>>
where
    F: Fn(LabName) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let results = join_all(labs.iter().cloned().map(|lab| {
        let fut = each(lab.clone());
        async move { (lab, fut.await) }
    }))
    .await;
    let mut ok = Vec::new();
    let mut first_error = None;
    for (lab, r) in results {
        match r {
            Ok(v) => ok.push((lab, v)),
            Err(e) if first_error.is_none() => first_error = Some(Error::LabState(format!("lab '{lab}': {e}"))),
            Err(_) => {}
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(ok),
    }
}

/// One lab's line in the comparison.
#[derive(Debug, Serialize)]
pub struct LabRow {
    pub lab: String,
    pub summary: Summary,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub format: &'static str,
    pub version: u32,
    pub cloud: String,
    pub labs: Vec<LabRow>,
    /// Every lab's runs together.
    pub overall: Summary,
}

/// The labs' runs, compared.
pub fn compare(state: &StateDir, cloud: crate::cloud::CloudKind) -> Result<Comparison> {
    let mut rows = Vec::new();
    let mut all = Vec::new();
    for lab in labs_in_state(state, cloud)? {
        let runs = load_runs(&state.runs_dir(cloud, &lab))?;
        if runs.is_empty() {
            continue;
        }
        rows.push(LabRow { lab: lab.to_string(), summary: Report::build(cloud.name(), lab.as_str(), runs.clone()).summary });
        all.extend(runs);
    }
    if rows.is_empty() {
        return Err(Error::LabState(format!("no lab on {} has runs yet: run `cis attack --all-labs` first", cloud.name())));
    }
    let overall = Summary::of(&all.iter().collect::<Vec<_>>());
    Ok(Comparison { format: "cis-classroom-report", version: 1, cloud: cloud.name().into(), labs: rows, overall })
}

/// One lab's figures as the trainer's page shows them.
fn cells(s: &Summary) -> [String; 7] {
    let p50 = |st: &Option<crate::report::Stats>| st.as_ref().map(|st| format!("{:.1} s", st.p50)).unwrap_or_else(|| "-".into());
    [
        s.runs.to_string(),
        format!("{}/{}", s.detected, s.expected_detections),
        s.isolated.to_string(),
        p50(&s.detection_latency_s),
        p50(&s.isolation_latency_s),
        s.bytes_before_isolation.as_ref().map(|b| human_bytes(b.mean as u64)).unwrap_or_else(|| "-".into()),
        s.false_isolations.to_string(),
    ]
}

const HEADERS: [&str; 8] = ["lab", "runs", "detected", "isolated", "detection p50", "isolation p50", "lost (mean)", "false isolations"];

impl Comparison {
    /// The trainer's page as Markdown: a row per trainee, then every lab together.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# cis classroom report\n\ncloud: {} · {} lab(s) with runs\n", self.cloud, self.labs.len());
        let _ = writeln!(o, "| {} |", HEADERS.join(" | "));
        let _ = writeln!(o, "|---|{}", "---:|".repeat(HEADERS.len() - 1));
        for (name, s) in self.labs.iter().map(|l| (l.lab.as_str(), &l.summary)).chain([("**all labs**", &self.overall)]) {
            let _ = writeln!(o, "| {} | {} |", crate::analysis::cell(name), cells(s).join(" | "));
        }
        o
    }

    /// The trainer's page as one offline HTML file: the table, and a chart per figure
    /// trainees compare (detection latency, isolation latency, bytes lost, detection rate).
    pub fn to_html(&self) -> String {
        use crate::report::html::{bars, esc, page};
        let mut o = String::new();
        let _ = writeln!(o, "<h1>cis classroom report on {}</h1>", esc(&self.cloud));
        let _ = writeln!(o, "<p class=\"summary\">{} lab(s) with runs. {}</p>", self.labs.len(), esc(&self.overall.headline()));
        let _ = writeln!(o, "<table><tr>{}</tr>", HEADERS.iter().enumerate().map(|(i, h)| if i == 0 { format!("<th>{h}</th>") } else { format!("<th class=\"n\">{h}</th>") }).collect::<String>());
        for (name, s) in self.labs.iter().map(|l| (l.lab.as_str(), &l.summary)).chain([("all labs", &self.overall)]) {
            let _ = writeln!(
                o,
                "<tr><td>{}</td>{}</tr>",
                esc(name),
                cells(s).iter().map(|c| format!("<td class=\"n\">{}</td>", esc(c))).collect::<String>()
            );
        }
        let _ = writeln!(o, "</table>");
        let per_lab = |f: &dyn Fn(&Summary) -> Option<f64>| -> Vec<(String, Option<f64>)> {
            self.labs.iter().map(|l| (l.lab.clone(), f(&l.summary))).collect()
        };
        let charts: [(&str, Vec<(String, Option<f64>)>, &str); 4] = [
            ("detection latency p50 per lab", per_lab(&|s| s.detection_latency_s.as_ref().map(|x| x.p50)), "s"),
            ("isolation latency p50 per lab", per_lab(&|s| s.isolation_latency_s.as_ref().map(|x| x.p50)), "s"),
            ("bytes lost before isolation (mean) per lab, MiB", per_lab(&|s| s.bytes_before_isolation.as_ref().map(|b| b.mean / 1_048_576.0)), "MiB"),
            (
                "detection rate per lab, %",
                per_lab(&|s| (s.expected_detections > 0).then(|| 100.0 * s.detected as f64 / s.expected_detections as f64)),
                "%",
            ),
        ];
        for (title, rows, unit) in &charts {
            let _ = writeln!(o, "<h2>{}</h2>{}", esc(title), bars(title, rows, unit));
        }
        page(&format!("cis classroom report on {}", self.cloud), &o)
    }

    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "cis classroom report · cloud: {} · {} lab(s) with runs", self.cloud, self.labs.len());
        let _ = writeln!(
            o,
            "{:<26} {:>5} {:>9} {:>9} {:>14} {:>14} {:>12} {:>10}",
            "lab", "runs", "detected", "isolated", "detection p50", "isolation p50", "lost (mean)", "false iso"
        );
        let row = |o: &mut String, name: &str, s: &Summary| {
            let p50 = |st: &Option<crate::report::Stats>| st.as_ref().map(|st| format!("{:.1} s", st.p50)).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                o,
                "{:<26} {:>5} {:>9} {:>9} {:>14} {:>14} {:>12} {:>10}",
                name,
                s.runs,
                format!("{}/{}", s.detected, s.expected_detections),
                s.isolated,
                p50(&s.detection_latency_s),
                p50(&s.isolation_latency_s),
                s.bytes_before_isolation.as_ref().map(|b| human_bytes(b.mean as u64)).unwrap_or_else(|| "-".into()),
                s.false_isolations
            );
        };
        for l in &self.labs {
            row(&mut o, &l.lab, &l.summary);
        }
        row(&mut o, "all labs", &self.overall);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classroom_names_and_rosters() {
        let names = numbered(&"class".parse().unwrap(), 30).unwrap();
        assert_eq!((names[0].as_str(), names[29].as_str()), ("class-01", "class-30"));
        assert!(numbered(&"a-very-long-lab-name-xx".parse().unwrap(), 30).unwrap_err().to_string().contains("shorter --lab"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.txt");
        std::fs::write(&path, "# morning group\nalice\n\nbob  # late\n").unwrap();
        assert_eq!(roster(&path).unwrap().iter().map(|l| l.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        std::fs::write(&path, "alice\nBob Smith\n").unwrap();
        let e = roster(&path).unwrap_err().to_string();
        assert!(e.contains("roster.txt:2"), "{e}");
        std::fs::write(&path, "alice\nalice\n").unwrap();
        assert!(roster(&path).unwrap_err().to_string().contains("listed twice"));
    }
}
