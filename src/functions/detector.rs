//! The detector function: a batch of flow-log records from the subscription filter in,
//! detection events on EventBridge out.
//!
//! A plain async function over a small trait ([`DetectorApi`]) for the two calls it makes
//! (SageMaker InvokeEndpoint, EventBridge PutEvents), so the Lambda (`lambda/`, with the
//! AWS SDK) and the simulator run the same code. It decodes the CloudWatch Logs envelope,
//! cuts the records into per-interface windows with the detector library, scores them
//! with the lab's model (in the function with `--detector lambda`; on the SageMaker
//! endpoint when the lab has one) and puts one `cis.detector` event per anomalous window.
//!
//! Between invocations it keeps the model's memory across windows (which never-seen
//! networks the interface keeps going back to), one small object per log stream, loaded
//! before scoring and saved after. A memory that cannot be read is not overwritten: the
//! batch is scored without it, and the report says so.

use async_trait::async_trait;
use serde::Serialize;

use crate::base::clock::Timestamp;
use crate::base::error::CloudError;
use crate::detect::anomaly::{rcf_csv, rcf_scores, Model};
use crate::detect::features::windows_of_lines;
use crate::detect::memory::Memory;
use crate::formats::flowlog::envelope::{decode_lambda_event, EnvelopeError};
use crate::formats::flowlog::LogFormat;
use crate::model::events::DetectionEvent;

/// The calls the detector function makes.
#[async_trait]
pub trait DetectorApi: Send + Sync {
    fn now(&self) -> Timestamp;
    /// SageMaker InvokeEndpoint with `text/csv` rows; returns the answer's body.
    async fn invoke_endpoint(&self, endpoint: &str, csv: &str) -> Result<Vec<u8>, CloudError>;
    /// EventBridge PutEvents on the default bus, one entry per detection, with the
    /// lab's source and detail type.
    async fn put_detections(&self, detections: &[DetectionEvent]) -> Result<(), CloudError>;
    /// The memory saved under `key` (a log stream's name), if any was.
    async fn load_memory(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError>;
    /// Saves the memory under `key`, replacing what was there.
    async fn save_memory(&self, key: &str, memory: &[u8]) -> Result<(), CloudError>;
}

/// The function's configuration (its environment on Lambda).
#[derive(Clone, Debug)]
pub struct DetectorConfig {
    pub lab: String,
    pub window_s: u32,
    pub format: LogFormat,
    /// The SageMaker endpoint that scores windows, when the lab has one.
    pub endpoint: Option<String>,
    /// The endpoint's score above which a window is anomalous; the model's own
    /// threshold when unset (right when the endpoint serves the model, as the simulated
    /// one does).
    pub endpoint_threshold: Option<f64>,
    /// The workload the lab's model was trained on (`CIS_BASELINE`; the simulator picks
    /// the model by it).
    pub baseline: String,
    /// The model's calibration target (`CIS_TARGET_FPR`), when the lab sets one.
    pub target_fpr: Option<f64>,
    /// The lab's bucket, where the memory across windows is kept (`CIS_MEMORY_BUCKET`).
    pub memory_bucket: Option<String>,
    /// The model's key in the lab's bucket (`CIS_MODEL_KEY`), once `cis arm` trained it on
    /// the lab's own flow logs; without one the function is learning.
    pub model_key: Option<String>,
}

impl DetectorConfig {
    /// From `CIS_LAB`, `CIS_WINDOW_S` (60 or 600), `CIS_LOG_FORMAT` (the flow log's
    /// format; v2 when unset), and optionally `CIS_ENDPOINT`, `CIS_ENDPOINT_THRESHOLD` and
    /// `CIS_MEMORY_BUCKET`.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let lab = get("CIS_LAB").filter(|v| !v.is_empty()).ok_or("environment variable CIS_LAB is not set")?;
        let window_s = match get("CIS_WINDOW_S").as_deref() {
            None | Some("") => 60,
            Some(w) => w.parse().ok().filter(|w| [60, 600].contains(w)).ok_or(format!("CIS_WINDOW_S={w}: expected 60 or 600"))?,
        };
        let format = match get("CIS_LOG_FORMAT").filter(|f| !f.is_empty()) {
            None => LogFormat::default_v2(),
            Some(f) => LogFormat::parse(&f).map_err(|e| format!("CIS_LOG_FORMAT: {e}"))?,
        };
        let endpoint_threshold = match get("CIS_ENDPOINT_THRESHOLD").filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                Some(t.parse::<f64>().ok().filter(|t| t.is_finite()).ok_or(format!("CIS_ENDPOINT_THRESHOLD={t}: expected a number"))?)
            }
        };
        let baseline = get("CIS_BASELINE").filter(|b| !b.is_empty()).unwrap_or_else(crate::model::lab::default_workload);
        let target_fpr = get("CIS_TARGET_FPR").and_then(|f| f.parse().ok());
        Ok(DetectorConfig {
            lab,
            window_s,
            format,
            endpoint: get("CIS_ENDPOINT").filter(|e| !e.is_empty()),
            endpoint_threshold,
            baseline,
            target_fpr,
            memory_bucket: get("CIS_MEMORY_BUCKET").filter(|b| !b.is_empty()),
            model_key: get(crate::model::lab::MODEL_KEY_ENV).filter(|k| !k.is_empty()),
        })
    }
}

/// What one invocation did, for the function's log and the tests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchReport {
    pub log_stream: String,
    pub records: usize,
    pub windows: usize,
    /// `model` (in the function), `endpoint NAME`, or the model after the endpoint failed.
    pub scored_by: String,
    /// What happened to the memory across windows, when not loaded and saved as usual.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_trouble: Option<String>,
    pub detections: Vec<DetectionEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// A payload that is not a subscription event: retrying cannot help.
    #[error("not a CloudWatch Logs subscription event: {0}")]
    Envelope(#[from] EnvelopeError),
    /// PutEvents failed: the invocation fails, so Lambda retries it.
    #[error("the detections could not be put on EventBridge: {0}")]
    Put(CloudError),
}

/// Handles one subscription-filter delivery (`{"awslogs": {"data": ...}}`).
pub async fn handle(api: &dyn DetectorApi, config: &DetectorConfig, model: &Model, event: &[u8]) -> Result<BatchReport, DetectorError> {
    let data = decode_lambda_event(event)?;
    let lines: Vec<&str> = data.messages().collect();
    let mut report = score_lines(api, config, model, &data.log_stream, &lines).await?;
    report.log_stream = data.log_stream;
    Ok(report)
}

/// What a batch was scored by while the lab learns.
pub const LEARNING: &str = "nothing: learning until `cis arm`";

/// Handles one delivery while the lab learns (the function has no model yet): reads it
/// and scores nothing, so nothing is announced or isolated. Its records stay in the
/// lab's log group, which `cis arm` trains on.
pub fn learn(event: &[u8]) -> Result<BatchReport, DetectorError> {
    let data = decode_lambda_event(event)?;
    let records = data.messages().count();
    Ok(BatchReport { log_stream: data.log_stream, records, scored_by: LEARNING.into(), ..Default::default() })
}

/// Scores a batch of flow-log lines from `stream` and puts a detection per anomalous
/// window.
pub async fn score_lines(
    api: &dyn DetectorApi,
    config: &DetectorConfig,
    model: &Model,
    stream: &str,
    lines: &[&str],
) -> Result<BatchReport, DetectorError> {
    let mut report = BatchReport { records: lines.len(), ..Default::default() };
    if lines.is_empty() {
        report.scored_by = "nothing to score".into();
        return Ok(report);
    }
    let key = memory_key(stream);
    // `None`: the memory could not be read, and must not be overwritten by this batch's.
    let loaded = match api.load_memory(&key).await {
        Ok(None) => Some(Memory::default()),
        Ok(Some(bytes)) => Some(Memory::from_json(&bytes).unwrap_or_else(|e| {
            report.memory_trouble = Some(format!("memory {key} unreadable, started afresh: {e}"));
            Memory::default()
        })),
        Err(e) => {
            report.memory_trouble = Some(format!("memory {key} not loaded, scored without it: {e}"));
            None
        }
    };
    let keep = loaded.is_some();
    let mut memory = loaded.unwrap_or_default();
    // Each window whole: with the lines earlier deliveries brought for it.
    let assembled = memory.assemble(lines, &config.format, i64::from(config.window_s));
    let mut windows = windows_of_lines(assembled.iter().map(String::as_str), &config.format, i64::from(config.window_s));
    report.windows = windows.len();
    if windows.is_empty() {
        report.scored_by = "nothing to score".into();
        return Ok(report);
    }
    model.prepare(&mut windows, &mut memory);
    if keep {
        if let Err(e) = api.save_memory(&key, &memory.to_json()).await {
            report.memory_trouble = Some(format!("memory {key} not saved: {e}"));
        }
    }
    let local =
        |windows: &[crate::detect::features::WindowFeatures]| model.judge(windows, &model.forest_scores(windows), model.threshold, false);
    let verdicts = match &config.endpoint {
        None => {
            report.scored_by = "model".into();
            local(&windows)
        }
        // An immune system that goes blind when its endpoint hiccups is no use: the model
        // the function carries scores the batch instead, and the report says so.
        Some(endpoint) => match endpoint_scores(api, endpoint, &windows).await {
            Ok(scores) => {
                report.scored_by = format!("endpoint {endpoint}");
                model.judge(&windows, &scores, config.endpoint_threshold.unwrap_or(model.threshold), false)
            }
            Err(e) => {
                report.scored_by = format!("model (endpoint {endpoint} failed: {e})");
                local(&windows)
            }
        },
    };
    let at = api.now();
    // One announcement a window: a window rescored whole after its first part was
    // announced is not announced again.
    let fresh: Vec<_> = verdicts.into_iter().filter(|v| !memory.alerted(&v.interface_id, v.window_start)).collect();
    let announced: Vec<(String, i64)> =
        fresh.iter().filter(|v| v.decided_by.is_some() && v.instance_id.is_some()).map(|v| (v.interface_id.clone(), v.window_start)).collect();
    report.detections = fresh
        .into_iter()
        .filter_map(|v| {
            Some(DetectionEvent {
                at,
                lab: config.lab.clone(),
                instance_id: v.instance_id.clone()?,
                detector: v.decided_by?.into(),
                window_start: Timestamp::from_unix_seconds(v.window_start),
                window_s: config.window_s,
                reason: v.summary(),
                evidence: v.reasons.first().cloned(),
            })
        })
        .collect();
    if !report.detections.is_empty() {
        api.put_detections(&report.detections).await.map_err(DetectorError::Put)?;
        // Marked only once they are out: a batch whose PutEvents failed is retried by
        // Lambda, and must announce them then.
        if keep {
            for (interface, window) in &announced {
                memory.mark_alerted(interface, *window);
            }
            if let Err(e) = api.save_memory(&key, &memory.to_json()).await {
                report.memory_trouble = Some(format!("memory {key} not saved after the detections were put: {e}"));
            }
        }
    }
    Ok(report)
}

/// Where in the lab's bucket the function keeps its memory, one object per log stream.
pub const MEMORY_PREFIX: &str = "detector-memory/";

/// The memory's name for a log stream: the stream's name (an interface's, `eni-...-all`),
/// kept to the characters an object key or a file name takes without quoting.
pub fn memory_key(stream: &str) -> String {
    let clean: String = stream.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(128).collect();
    if clean.is_empty() {
        "unnamed-stream".into()
    } else {
        clean
    }
}

async fn endpoint_scores(
    api: &dyn DetectorApi,
    endpoint: &str,
    windows: &[crate::detect::features::WindowFeatures],
) -> Result<Vec<f64>, String> {
    let answer = api.invoke_endpoint(endpoint, &rcf_csv(windows)).await.map_err(|e| e.to_string())?;
    rcf_scores(&answer, windows.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::flowlog::envelope::{encode_lambda_event, LogEvent, LogsData};
    use crate::formats::flowlog::LAB_LOG_FORMAT;
    use crate::formats::flowlog::{Action, FlowRecord};
    use std::sync::Mutex;

    /// Records PutEvents; answers InvokeEndpoint with a canned body.
    struct Recorder {
        endpoint_answer: Result<Vec<u8>, CloudError>,
        csv_sent: Mutex<Vec<String>>,
        put: Mutex<Vec<DetectionEvent>>,
        memory: Mutex<std::collections::BTreeMap<String, Vec<u8>>>,
        /// PutEvents calls still to fail.
        failing_puts: Mutex<usize>,
    }

    #[async_trait]
    impl DetectorApi for Recorder {
        fn now(&self) -> Timestamp {
            Timestamp(1_767_230_000_000)
        }
        async fn invoke_endpoint(&self, _: &str, csv: &str) -> Result<Vec<u8>, CloudError> {
            self.csv_sent.lock().unwrap().push(csv.to_string());
            self.endpoint_answer.clone()
        }
        async fn put_detections(&self, d: &[DetectionEvent]) -> Result<(), CloudError> {
            let mut failing = self.failing_puts.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(CloudError::Unavailable("ThrottlingException".into()));
            }
            self.put.lock().unwrap().extend_from_slice(d);
            Ok(())
        }
        async fn load_memory(&self, key: &str) -> Result<Option<Vec<u8>>, CloudError> {
            match self.memory.lock().unwrap().get(key) {
                Some(b) if b == b"unreachable" => Err(CloudError::Unavailable("SlowDown".into())),
                other => Ok(other.cloned()),
            }
        }
        async fn save_memory(&self, key: &str, memory: &[u8]) -> Result<(), CloudError> {
            self.memory.lock().unwrap().insert(key.to_string(), memory.to_vec());
            Ok(())
        }
    }

    fn recorder(answer: Result<Vec<u8>, CloudError>) -> Recorder {
        Recorder {
            endpoint_answer: answer,
            csv_sent: Mutex::new(vec![]),
            put: Mutex::new(vec![]),
            memory: Mutex::new(Default::default()),
            failing_puts: Mutex::new(0),
        }
    }

    /// Twelve hours of a quiet agent, then one window that sends a gigabyte away.
    fn model_and_attack() -> (Model, Vec<String>) {
        let base = 1_767_225_600;
        let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        let rec = |start: i64, dst: &str, bytes: u64| FlowRecord {
            version: Some(2),
            account_id: Some("123456789012".into()),
            ..crate::detect::features::tests::out(start, 40_000 + (start % 20_000) as u16, dst, 443, bytes, Action::Accept)
        };
        let quiet: Vec<FlowRecord> = (0..12 * 60).map(|m| rec(base + m * 60, "52.46.141.10", 2_000 + (m as u64 * 37) % 900)).collect();
        let model = Model::train(crate::detect::features::windows(&quiet, 60), &Default::default(), "test").unwrap();
        let attack_at = base + 13 * 3600;
        let lines =
            [rec(attack_at, "52.46.141.10", 2_400), rec(attack_at + 5, "203.0.113.50", 1 << 30)].iter().map(|r| format.write(r)).collect();
        (model, lines)
    }

    fn config(endpoint: Option<&str>) -> DetectorConfig {
        DetectorConfig::from_env(|k| match k {
            "CIS_LAB" => Some("lab".into()),
            "CIS_LOG_FORMAT" => Some(LAB_LOG_FORMAT.into()),
            "CIS_ENDPOINT" => endpoint.map(String::from),
            _ => None,
        })
        .unwrap()
    }

    fn subscription_event(lines: &[String]) -> String {
        encode_lambda_event(&LogsData {
            message_type: "DATA_MESSAGE".into(),
            owner: "123456789012".into(),
            log_group: "/cis/lab/flow-logs".into(),
            log_stream: "eni-1-all".into(),
            subscription_filters: vec!["cis-lab-subscription".into()],
            log_events: lines.iter().enumerate().map(|(i, l)| LogEvent { id: i.to_string(), timestamp: 0, message: l.clone() }).collect(),
        })
    }

    #[tokio::test]
    async fn an_exfiltration_window_becomes_one_detection_for_its_instance() {
        let (model, lines) = model_and_attack();
        let r = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let report = handle(&r, &config(None), &model, subscription_event(&lines).as_bytes()).await.unwrap();
        assert_eq!((report.records, report.windows, report.scored_by.as_str()), (2, 1, "model"));
        assert_eq!(report.log_stream, "eni-1-all");
        let put = r.put.lock().unwrap().clone();
        assert_eq!(put.len(), 1);
        assert_eq!((put[0].lab.as_str(), put[0].instance_id.as_str()), ("lab", "i-1"));
        assert!(put[0].reason.contains("bytes"), "{}", put[0].reason);
        assert!(r.csv_sent.lock().unwrap().is_empty(), "no endpoint call without an endpoint");
    }

    #[tokio::test]
    async fn the_endpoint_scores_when_the_lab_has_one_and_the_model_when_it_fails() {
        let (model, lines) = model_and_attack();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        // The endpoint calls the window normal: no detection from the score (the guard's
        // learned limits still apply, so use a window under them).
        let quiet = &lines[..1];
        let r = recorder(Ok(br#"{"scores":[{"score":0.01}]}"#.to_vec()));
        let report = score_lines(&r, &config(Some("cis-lab-anomaly-endpoint")), &model, "eni-1-all", quiet).await.unwrap();
        assert_eq!(report.scored_by, "endpoint cis-lab-anomaly-endpoint");
        assert_eq!(r.csv_sent.lock().unwrap().len(), 1);
        assert_eq!(r.csv_sent.lock().unwrap()[0].lines().count(), 1, "one CSV row per window");
        assert!(report.detections.is_empty());

        let broken = recorder(Ok(b"<html>502</html>".to_vec()));
        let report = score_lines(&broken, &config(Some("cis-lab-anomaly-endpoint")), &model, "eni-1-all", &lines).await.unwrap();
        assert!(
            report.scored_by.starts_with("model (endpoint cis-lab-anomaly-endpoint failed: the anomaly endpoint answered"),
            "{}",
            report.scored_by
        );
        assert_eq!(report.detections.len(), 1, "the carried model still detects");
    }

    #[test]
    fn a_learning_function_reads_a_batch_and_scores_nothing() {
        let (_, lines) = model_and_attack();
        let report = learn(subscription_event(&lines).as_bytes()).unwrap();
        assert_eq!((report.records, report.windows, report.scored_by.as_str(), report.detections.len()), (2, 0, LEARNING, 0));
        assert!(matches!(learn(br#"{"source":"cis.detector"}"#), Err(DetectorError::Envelope(_))));
        let armed = DetectorConfig::from_env(|k| match k {
            "CIS_LAB" => Some("lab".into()),
            "CIS_MODEL_KEY" => Some("detector-model/x.json".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((armed.model_key.as_deref(), config(None).model_key), (Some("detector-model/x.json"), None));
    }

    #[tokio::test]
    async fn a_control_message_or_a_foreign_payload_puts_nothing() {
        let (model, _) = model_and_attack();
        let r = recorder(Err(CloudError::Invalid("unused".into())));
        let control = encode_lambda_event(&LogsData {
            message_type: "CONTROL_MESSAGE".into(),
            owner: "CloudwatchLogs".into(),
            log_group: String::new(),
            log_stream: String::new(),
            subscription_filters: vec![],
            log_events: vec![LogEvent {
                id: "0".into(),
                timestamp: 0,
                message: "CWL CONTROL MESSAGE: Checking health of destination Lambda.".into(),
            }],
        });
        let report = handle(&r, &config(None), &model, control.as_bytes()).await.unwrap();
        assert_eq!(report.windows, 0);
        let err = handle(&r, &config(None), &model, br#"{"source":"cis.detector"}"#).await.unwrap_err();
        assert!(err.to_string().starts_with("not a CloudWatch Logs subscription event"), "{err}");
        assert!(r.put.lock().unwrap().is_empty());
    }

    /// A beacon to one never-seen network, a batch a minute: each window alone is one
    /// small call, and only the memory the function keeps between batches shows that it
    /// is the same network again and again.
    #[tokio::test]
    async fn the_memory_between_batches_catches_what_no_single_batch_shows() {
        let base = 1_767_225_600;
        let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        let rec = |start: i64, dst: String, bytes: u64| FlowRecord {
            version: Some(2),
            ..crate::detect::features::tests::out(start, 40_000 + (start % 20_000) as u16, &dst, 443, bytes, Action::Accept)
        };
        // Twelve hours of calls to an API whose every call lands on another network.
        let api_call = |m: i64| rec(base + m * 60, format!("198.{}.{}.7", 18 + (m * 7919 % 2), (m * 104_729) % 256), 3_500);
        let quiet: Vec<FlowRecord> = (0..12 * 60).map(api_call).collect();
        let model = Model::train(crate::detect::features::windows(&quiet, 60), &Default::default(), "test").unwrap();
        let r = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let t0 = base + 13 * 3600;
        let mut first_alert = None;
        for i in 0..40i64 {
            let lines: Vec<String> =
                [api_call(13 * 60 + i), rec(t0 + i * 60 + 5, "203.0.113.200".into(), 1_536)].iter().map(|r| format.write(r)).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let report = score_lines(&r, &config(None), &model, "eni-1-all", &lines).await.unwrap();
            assert_eq!(report.memory_trouble, None);
            if !report.detections.is_empty() && first_alert.is_none() {
                first_alert = Some((i, report.detections[0].reason.clone()));
            }
        }
        let (i, reason) = first_alert.expect("the beacon is caught within 40 windows");
        assert!(i >= 1, "one call to a new network is no alert");
        assert!(reason.contains("most revisited never-seen destination group"), "{reason}");
        assert!(r.memory.lock().unwrap().contains_key("eni-1-all"));

        // A memory that cannot be read is left alone, and the batch is still scored.
        r.memory.lock().unwrap().insert("eni-1-all".into(), b"unreachable".to_vec());
        let line = format.write(&rec(t0 + 3600, "203.0.113.200".into(), 1_536));
        let report = score_lines(&r, &config(None), &model, "eni-1-all", &[line.as_str()]).await.unwrap();
        assert!(report.memory_trouble.as_deref().unwrap_or_default().contains("not loaded"), "{report:?}");
        assert_eq!(r.memory.lock().unwrap()["eni-1-all"], b"unreachable");
    }

    /// One window's posts to a never-seen host arrive in two deliveries, as a flow log
    /// whose intervals do not start on the minute delivers them: neither half is an
    /// alert, the window whole is, and a delivery retried counts each post once.
    #[tokio::test]
    async fn a_window_delivered_in_two_batches_is_scored_whole() {
        let base = 1_767_225_600;
        let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        let rec = |start: i64, dst: &str, bytes: u64| FlowRecord {
            version: Some(2),
            ..crate::detect::features::tests::out(start, 40_000 + (start % 20_000) as u16, dst, 443, bytes, Action::Accept)
        };
        // Twelve hours of an agent posting 8-16 KB to a partner's service outside AWS, four
        // times a minute: 32-64 KB a minute.
        let quiet: Vec<FlowRecord> =
            (0..12 * 60 * 4).map(|q| rec(base + q * 15, "93.184.216.34", 8_000 + (q as u64 * 3_761) % 8_000)).collect();
        let model = Model::train(crate::detect::features::windows(&quiet, 60), &Default::default(), "test").unwrap();
        let t0 = base + 13 * 3600;
        let lines = |range: std::ops::Range<i64>| -> Vec<String> {
            range.map(|i| format.write(&rec(t0 + i * 5, "203.0.113.50", 48_000))).collect::<Vec<_>>()
        };
        // Twelve posts of 48 KB in the minute, six in each delivery.
        let (first, second) = (lines(0..6), lines(6..12));
        fn refs(l: &[String]) -> Vec<&str> {
            l.iter().map(String::as_str).collect()
        }
        let alone = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let a = score_lines(&alone, &config(None), &model, "eni-1-all", &refs(&first)).await.unwrap();
        let b_alone = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let b = score_lines(&b_alone, &config(None), &model, "eni-1-all", &refs(&second)).await.unwrap();
        let whole = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let all: Vec<String> = first.iter().chain(&second).cloned().collect();
        let w = score_lines(&whole, &config(None), &model, "eni-1-all", &refs(&all)).await.unwrap();
        assert!(!w.detections.is_empty(), "the window whole is an alert");
        assert!(a.detections.is_empty() && b.detections.is_empty(), "half of it is not: {:?} {:?}", a.detections, b.detections);

        // The same deliveries to one function with its memory: the second rescores the
        // window with the first's lines.
        let r = recorder(Err(CloudError::Invalid("no endpoint".into())));
        let one = score_lines(&r, &config(None), &model, "eni-1-all", &refs(&first)).await.unwrap();
        assert!(one.detections.is_empty());
        let two = score_lines(&r, &config(None), &model, "eni-1-all", &refs(&second)).await.unwrap();
        assert_eq!(two.windows, 1);
        assert_eq!(two.detections.len(), 1, "the second delivery completes the window");
        assert_eq!(two.detections[0].reason, w.detections[0].reason, "scored as the window whole");
        // A retried delivery neither adds a post nor changes the memory, and the window,
        // announced already, is not announced again.
        let saved = r.memory.lock().unwrap()["eni-1-all"].clone();
        let again = score_lines(&r, &config(None), &model, "eni-1-all", &refs(&second)).await.unwrap();
        assert!(again.detections.is_empty(), "{:?}", again.detections);
        assert_eq!(r.memory.lock().unwrap()["eni-1-all"], saved);
        assert_eq!(r.put.lock().unwrap().len(), 1, "one announcement for the window");

        // When PutEvents fails, the batch fails (Lambda retries it) and the window is not
        // marked: the retry announces it.
        let failing = recorder(Err(CloudError::Invalid("no endpoint".into())));
        *failing.failing_puts.lock().unwrap() = 1;
        score_lines(&failing, &config(None), &model, "eni-1-all", &refs(&first)).await.unwrap();
        assert!(matches!(score_lines(&failing, &config(None), &model, "eni-1-all", &refs(&second)).await, Err(DetectorError::Put(_))));
        let retried = score_lines(&failing, &config(None), &model, "eni-1-all", &refs(&second)).await.unwrap();
        assert_eq!(retried.detections.len(), 1, "announced on the retry");
        assert_eq!(failing.put.lock().unwrap().len(), 1);
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        for (k, v, want) in [("CIS_WINDOW_S", "30", "CIS_WINDOW_S=30"), ("CIS_ENDPOINT_THRESHOLD", "high", "CIS_ENDPOINT_THRESHOLD=high")] {
            let e = DetectorConfig::from_env(|key| match key {
                "CIS_LAB" => Some("lab".into()),
                key if key == k => Some(v.into()),
                _ => None,
            })
            .unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        assert!(DetectorConfig::from_env(|_| None).unwrap_err().contains("CIS_LAB"));
    }
}
