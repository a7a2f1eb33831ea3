//! The report as one self-contained HTML page that opens offline: the tables written
//! here, the charts (a timeline of each run, the latency distributions, the detection rate
//! per scenario) drawn as SVG in the page by a small script from the report's JSON, which
//! the page carries. No external file, font or script.

use std::fmt::Write as _;

use super::{secs, Report};
use crate::base::units::human_bytes;

/// Text safe inside HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #1d2430; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0; }
th, td { border-bottom: 1px solid #d8dde6; padding: .3em .5em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.summary { background: #f3f5f9; padding: .8em 1em; border-radius: 6px; }
svg { display: block; margin: .5em 0; background: #fbfcfe; border: 1px solid #e3e7ef; border-radius: 4px; }
svg text { font: 11px system-ui, sans-serif; fill: #3b4454; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .3em; vertical-align: -0.1em; }
.verdict-ok { color: #1a7f37; } .verdict-bad { color: #b42318; }
"#;

/// Draws the three charts into the `svg[data-chart]` elements from the embedded JSON and
/// marks each with how many data marks it drew (`data-drawn`).
const SCRIPT: &str = r#"
(function () {
  var report = JSON.parse(document.getElementById('report-data').textContent);
  var NS = 'http://www.w3.org/2000/svg';
  function el(parent, name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }
  function axis(svg, x0, x1, y, max, unit) {
    el(svg, 'line', {x1: x0, x2: x1, y1: y, y2: y, stroke: '#9aa3b2'});
    for (var i = 0; i <= 5; i++) {
      var v = max * i / 5, x = x0 + (x1 - x0) * i / 5;
      el(svg, 'line', {x1: x, x2: x, y1: y, y2: y + 4, stroke: '#9aa3b2'});
      el(svg, 'text', {x: x, y: y + 16, 'text-anchor': 'middle'}, (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + unit);
    }
  }
  var COLORS = {exfil: '#f4a261', detected: '#e63946', isolated: '#2a9d8f', delivered: '#457b9d'};

  // 1. One lane per run: the attack from its start, and when records arrived, the
  //    detection and the isolation happened.
  (function timeline() {
    var svg = document.querySelector('svg[data-chart="timeline"]');
    var runs = report.runs, left = 230, right = 1040, lane = 22, top = 10;
    var rel = function (r, t) { return t === null || t === undefined ? null : (t - r.timeline.attack_start) / 1000; };
    var max = 1;
    runs.forEach(function (r) {
      ['attack_end', 'records_delivered', 'detected', 'isolated', 'last_exfil_byte'].forEach(function (k) {
        var v = rel(r, r.timeline[k]); if (v !== null && v > max) max = v;
      });
    });
    var h = top + runs.length * lane + 30;
    svg.setAttribute('height', h);
    var sx = function (s) { return left + (right - left) * s / max; };
    var drawn = 0;
    runs.forEach(function (r, i) {
      var y = top + i * lane;
      el(svg, 'text', {x: 6, y: y + 14}, r.run_id + ' ' + r.scenario);
      var end = rel(r, r.timeline.attack_end);
      if (end === null) end = rel(r, r.timeline.last_exfil_byte) || 0;
      el(svg, 'rect', {x: sx(0), y: y + 5, width: Math.max(2, sx(end) - sx(0)), height: 10, fill: COLORS.exfil, 'data-mark': 'attack'});
      [['records_delivered', 'delivered'], ['detected', 'detected'], ['isolated', 'isolated']].forEach(function (p) {
        var v = rel(r, r.timeline[p[0]]);
        if (v !== null) el(svg, 'circle', {cx: sx(v), cy: y + 10, r: 5, fill: COLORS[p[1]], 'data-mark': p[1]});
      });
      drawn++;
    });
    axis(svg, left, right, top + runs.length * lane + 4, max, ' s');
    svg.setAttribute('data-drawn', drawn);
  })();

  // 2. Detection and isolation latency of every run, one row per scenario.
  (function latencies() {
    var svg = document.querySelector('svg[data-chart="latency"]');
    var scen = report.scenarios, left = 230, right = 1040, row = 26, top = 10, max = 1, drawn = 0;
    report.runs.forEach(function (r) {
      var m = r.metrics;
      if (m.detection_latency_s !== null && m.detection_latency_s > max) max = m.detection_latency_s;
    });
    svg.setAttribute('height', top + scen.length * row + 30);
    var sx = function (s) { return left + (right - left) * s / max; };
    scen.forEach(function (s, i) {
      var y = top + i * row;
      el(svg, 'text', {x: 6, y: y + 15}, s.scenario);
      el(svg, 'line', {x1: left, x2: right, y1: y + 11, y2: y + 11, stroke: '#eef1f6'});
      report.runs.filter(function (r) { return r.scenario === s.scenario; }).forEach(function (r) {
        var m = r.metrics;
        if (m.detection_latency_s !== null) {
          el(svg, 'circle', {cx: sx(m.detection_latency_s), cy: y + 11, r: 5, fill: COLORS.detected, 'fill-opacity': 0.7, 'data-mark': 'detection'});
          drawn++;
        }
        if (m.end_to_end_s !== null) {
          el(svg, 'rect', {x: sx(m.end_to_end_s) - 1, y: y + 3, width: 3, height: 16, fill: COLORS.isolated, 'data-mark': 'end-to-end'});
        }
      });
      var st = s.summary.detection_latency_s;
      if (st) el(svg, 'line', {x1: sx(st.p50), x2: sx(st.p50), y1: y + 1, y2: y + 21, stroke: '#1d2430', 'stroke-width': 2, 'data-mark': 'p50'});
    });
    axis(svg, left, right, top + scen.length * row + 4, max, ' s');
    svg.setAttribute('data-drawn', drawn);
  })();

  // 3. Detection rate per scenario (scenarios that should be detected), and isolations
  //    of those that should not.
  (function rates() {
    var svg = document.querySelector('svg[data-chart="detection-rate"]');
    var scen = report.scenarios, left = 230, right = 1040, row = 24, top = 10, drawn = 0;
    svg.setAttribute('height', top + scen.length * row + 30);
    scen.forEach(function (s, i) {
      var y = top + i * row, m = s.summary;
      el(svg, 'text', {x: 6, y: y + 14}, s.scenario);
      el(svg, 'rect', {x: left, y: y + 3, width: right - left, height: 14, fill: '#eef1f6'});
      var label;
      if (s.expected_detected) {
        var rate = m.detection_rate === null ? 0 : m.detection_rate;
        el(svg, 'rect', {x: left, y: y + 3, width: Math.max(1, (right - left) * rate), height: 14, fill: COLORS.isolated, 'data-mark': 'rate'});
        label = (rate * 100).toFixed(0) + '% detected';
      } else {
        var bad = m.runs ? m.false_isolations / m.runs : 0;
        el(svg, 'rect', {x: left, y: y + 3, width: Math.max(1, (right - left) * bad), height: 14, fill: COLORS.detected, 'data-mark': 'false-isolation'});
        label = s.visible_in_flow_logs ? m.false_isolations + ' false isolation(s) of ' + m.runs : 'invisible to flow logs';
      }
      el(svg, 'text', {x: left + 6, y: y + 14}, label);
      drawn++;
    });
    axis(svg, left, right, top + scen.length * row + 4, 100, '%');
    svg.setAttribute('data-drawn', drawn);
  })();
  document.body.setAttribute('data-charts', 'drawn');
})();
"#;

/// A self-contained page in the report's style around `body` (HTML already escaped).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{}</title><style>{STYLE}</style></head><body>\n{body}</body></html>\n",
        esc(title)
    )
}

/// A horizontal bar chart drawn as static SVG: one labelled bar per row, a row without a
/// value drawn as "-". `data-drawn` counts the bars, as the report's scripted charts do.
pub fn bars(name: &str, rows: &[(String, Option<f64>)], unit: &str) -> String {
    let (left, right, lane) = (230.0, 1040.0, 22.0);
    let max = rows.iter().filter_map(|r| r.1).fold(0.0_f64, f64::max).max(f64::MIN_POSITIVE);
    let height = lane * rows.len() as f64 + 16.0;
    let drawn = rows.iter().filter(|r| r.1.is_some()).count();
    let mut o = format!(
        "<svg data-chart=\"{}\" data-drawn=\"{drawn}\" width=\"1060\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        esc(name),
        esc(name)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = 8.0 + lane * i as f64;
        let _ = write!(o, "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", left - 8.0, y + 13.0, esc(label));
        match value {
            Some(v) => {
                let w = ((right - left - 80.0) * v / max).max(1.0);
                let _ = write!(
                    o,
                    "<rect x=\"{left}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" fill=\"#e63946\"/><text x=\"{:.1}\" y=\"{}\">{}</text>",
                    y + 2.0,
                    lane - 6.0,
                    left + w + 6.0,
                    y + 13.0,
                    esc(&format!("{} {unit}", trim_number(*v)))
                );
            }
            None => {
                let _ = write!(o, "<text x=\"{left}\" y=\"{}\">-</text>", y + 13.0);
            }
        }
    }
    o.push_str("</svg>");
    o
}

fn trim_number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The report's page; `sections` (HTML already escaped, such as evasion frontiers kept in
/// the state directory) follow the runs.
pub fn render(report: &Report, sections: &[String]) -> String {
    let s = &report.summary;
    let mut o = String::new();
    let _ = writeln!(o, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = writeln!(o, "<title>cis report: {} on {}</title><style>{STYLE}</style></head><body>", esc(&report.lab), esc(&report.cloud));
    let _ = writeln!(o, "<h1>cis report: lab <code>{}</code> on {}</h1>", esc(&report.lab), esc(&report.cloud));
    let _ = writeln!(
        o,
        "<p class=\"summary\">{} Detection latency p50 {}, p95 {}; isolation latency p50 {}.</p>",
        esc(&s.headline()),
        esc(&secs(s.detection_latency_s.as_ref().map(|x| x.p50))),
        esc(&secs(s.detection_latency_s.as_ref().map(|x| x.p95))),
        esc(&secs(s.isolation_latency_s.as_ref().map(|x| x.p50))),
    );
    let legend = "<p class=\"legend\"><span><i style=\"background:#f4a261\"></i>attack</span><span><i style=\"background:#457b9d\"></i>records delivered</span><span><i style=\"background:#e63946\"></i>detected</span><span><i style=\"background:#2a9d8f\"></i>isolated</span></p>";
    let _ = writeln!(o, "<h2>Timeline of each run</h2>{legend}<svg data-chart=\"timeline\" width=\"1060\" height=\"60\" role=\"img\" aria-label=\"timeline of each run\"></svg>");
    let _ = writeln!(
        o,
        "<h2>Latency distributions</h2><p class=\"legend\"><span><i style=\"background:#e63946\"></i>detection latency of a run</span><span><i style=\"background:#2a9d8f\"></i>end-to-end (to isolation)</span><span><i style=\"background:#1d2430\"></i>median detection latency</span></p><svg data-chart=\"latency\" width=\"1060\" height=\"60\" role=\"img\" aria-label=\"latency distributions\"></svg>"
    );
    let _ = writeln!(o, "<h2>Detection rate per scenario</h2><svg data-chart=\"detection-rate\" width=\"1060\" height=\"60\" role=\"img\" aria-label=\"detection rate per scenario\"></svg>");

    let _ = writeln!(o, "<h2>Per scenario</h2><table><tr><th>scenario</th><th class=\"n\">runs</th><th class=\"n\">detection rate</th><th class=\"n\">detection p50</th><th class=\"n\">detection p95</th><th class=\"n\">isolation p50</th><th class=\"n\">bytes before isolation (mean)</th><th class=\"n\">false isolations</th></tr>");
    for row in report.scenario_rows() {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 0 { format!("<td>{}</td>", esc(c)) } else { format!("<td class=\"n\">{}</td>", esc(c)) })
            .collect();
        let _ = writeln!(o, "<tr>{}</tr>", cells.join(""));
    }
    let _ = writeln!(o, "</table>");
    let _ = writeln!(o, "<h2>Runs</h2><table><tr><th>run</th><th>scenario</th><th>verdict</th><th class=\"n\">detection</th><th class=\"n\">isolation</th><th class=\"n\">end-to-end</th><th class=\"n\">exfiltrated</th><th class=\"n\">before isolation</th></tr>");
    for r in &report.runs {
        let m = &r.metrics;
        let class = if r.verdict == crate::orchestrator::measure::Verdict::AsExpected { "verdict-ok" } else { "verdict-bad" };
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.run_id),
            esc(&r.scenario),
            esc(r.verdict.name()),
            esc(&secs(m.detection_latency_s)),
            esc(&secs(m.isolation_latency_s)),
            esc(&secs(m.end_to_end_s)),
            esc(&human_bytes(m.bytes_exfiltrated)),
            esc(&human_bytes(m.bytes_before_isolation)),
        );
    }
    let _ = writeln!(o, "</table>");
    let notes: Vec<String> =
        report.runs.iter().flat_map(|r| r.notes.iter().map(move |n| format!("<li>{}: {}</li>", esc(&r.run_id), esc(n)))).collect();
    if !notes.is_empty() {
        let _ = writeln!(o, "<h2>Notes</h2><ul>{}</ul>", notes.join(""));
    }
    if !report.root_causes.is_empty() {
        let _ =
            writeln!(o, "<h2>Root causes</h2><table><tr><th>run</th><th>scenario</th><th>issue</th><th>root cause</th><th>rule</th></tr>");
        for rc in &report.root_causes {
            for i in &rc.issues {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&rc.run_id),
                    esc(&rc.scenario),
                    esc(&i.issue),
                    esc(&i.root_cause),
                    esc(i.rule.as_deref().unwrap_or("-"))
                );
            }
        }
        let _ = writeln!(o, "</table>");
    }
    for section in sections {
        let _ = writeln!(o, "{section}");
    }
    // The data the charts are drawn from; `</` is escaped so no string can end the script.
    let data = serde_json::to_string(report).expect("reports serialize").replace("</", "<\\/");
    let _ = writeln!(o, "<script type=\"application/json\" id=\"report-data\">{data}</script>");
    let _ = writeln!(o, "<script>{SCRIPT}</script>\n</body></html>");
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_escaped() {
        assert_eq!(super::esc("<a href=\"x\">&</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;");
    }
}
