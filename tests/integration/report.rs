//! Reports over a whole catalogue run on the simulator: the aggregates, every format, and
//! the HTML page rendered by a real browser (Debian's Chromium, headless, which `.ci/run`
//! installs) with every chart drawn.

use std::process::Command;

use crate::Lab;

fn chromium() -> std::path::PathBuf {
    let path = std::env::var_os("CIS_CHROMIUM").map(std::path::PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(path.exists(), "{} is missing: run .ci/run once (it installs Debian's chromium), or set CIS_CHROMIUM", path.display());
    path
}

/// The PNG's width, height and how many distinct byte values its pixel data holds (a
/// blank page holds one or two).
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let (mut at, mut idat) = (8, Vec::new());
    let (mut width, mut height) = (0, 0);
    while at + 8 <= png.len() {
        let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        if kind == b"IHDR" {
            width = u32::from_be_bytes(data[0..4].try_into().unwrap());
            height = u32::from_be_bytes(data[4..8].try_into().unwrap());
        }
        if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        at += 12 + len;
    }
    let mut pixels = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&idat[..]), &mut pixels).unwrap();
    let mut seen = [false; 256];
    pixels.iter().for_each(|b| seen[*b as usize] = true);
    (width, height, seen.iter().filter(|s| **s).count())
}

fn attribute<'a>(dom: &'a str, chart: &str) -> &'a str {
    let at = dom.find(&format!("data-chart=\"{chart}\"")).unwrap_or_else(|| panic!("no {chart} chart in the page"));
    let tag = &dom[dom[..at].rfind('<').unwrap()..at + dom[at..].find('>').unwrap()];
    let drawn = tag.find("data-drawn=\"").unwrap_or_else(|| panic!("the {chart} chart was not drawn: {tag}"));
    let rest = &tag[drawn + 12..];
    &rest[..rest.find('"').unwrap()]
}

#[test]
fn attack_all_then_an_html_report_that_chromium_draws_with_every_chart() {
    let lab = Lab::new();
    lab.ok(&["up"]);
    lab.ok(&["attack", "--all"]);
    let scenarios = cis::scenario::catalogue();

    let report: serde_json::Value = serde_json::from_str(&lab.ok(&["report", "--format", "json"])).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), scenarios.len());
    let per: Vec<&serde_json::Value> = report["scenarios"].as_array().unwrap().iter().collect();
    assert_eq!(per.len(), scenarios.len());
    for s in &per {
        let (id, sum) = (s["scenario"].as_str().unwrap(), &s["summary"]);
        let expected = scenarios.iter().find(|x| x.id == id).unwrap();
        if expected.expect.isolated {
            assert_eq!(sum["isolated"], 1, "{id}: {s}");
            assert_eq!(sum["detection_rate"], 1.0, "{id}: {s}");
        } else if id == "benign-backup-burst" {
            // The idle server never uploads to S3: its backup run by hand is exfil-s3-upload's
            // twin in flow logs, isolated as that upload is, and counted a false isolation.
            assert_eq!(sum["isolated"], 1, "{id} is the twin of exfil-s3-upload here: {s}");
        } else {
            assert_eq!(sum["isolated"], 0, "{id} must not be isolated: {s}");
        }
    }
    assert_eq!(report["summary"]["false_isolations"], 1, "the hand-run backup alone: {}", report["summary"]);
    assert!(report["summary"]["alerts_per_hour"].as_f64().unwrap() > 0.0);
    let markdown = lab.ok(&["report", "--format", "markdown"]);
    assert!(
        markdown.contains("| scenario | runs | detection rate |") && markdown.contains("| exfil-dns-tunnel | 1 | invisible to flow logs |"),
        "{markdown}"
    );

    let html = lab.state().join("report.html");
    lab.ok(&["report", "--format", "html", "--out", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    // Nothing fetched: no linked stylesheet, no script or image by address, no import.
    for fetch in ["<link", " src=", "href=\"http", "@import", "url("] {
        assert!(!page.contains(fetch), "the page fetches something ({fetch}): it must open offline");
    }

    let browser = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(chromium())
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=10000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    // The DOM after the page's script ran: every chart drawn, a mark per run or scenario.
    let dom = String::from_utf8(browser(&["--dump-dom"]).stdout).unwrap();
    assert!(dom.contains("data-charts=\"drawn\""), "the charts' script did not finish");
    assert_eq!(attribute(&dom, "timeline"), scenarios.len().to_string());
    assert_eq!(dom.matches("data-mark=\"attack\"").count(), scenarios.len());
    let detected = report["runs"].as_array().unwrap().iter().filter(|r| r["metrics"]["detection_latency_s"].is_number()).count();
    assert_eq!(attribute(&dom, "latency"), detected.to_string());
    assert_eq!(attribute(&dom, "detection-rate"), scenarios.len().to_string());

    // And the pixels: a screenshot of the page is not blank.
    let shot = lab.state().join("report.png");
    browser(&[&format!("--screenshot={}", shot.display()), "--window-size=1200,2200"]);
    let (w, h, values) = png_facts(&std::fs::read(&shot).unwrap());
    assert_eq!((w, h), (1200, 2200));
    assert!(values > 50, "the screenshot is nearly uniform ({values} distinct byte values)");
}
