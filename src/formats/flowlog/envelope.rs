//! What CloudWatch Logs wraps flow-log records in: the subscription payload a Lambda
//! receives (`{"awslogs": {"data": base64(gzip(JSON))}}`), the decoded `DATA_MESSAGE` /
//! `CONTROL_MESSAGE` document, and the JSON that `aws logs filter-log-events` and
//! `get-log-events` print. Decoding is bounded: a payload that inflates past
//! [`MAX_INFLATED`] is refused rather than allowed to exhaust memory.
//!
//! Format: docs.aws.amazon.com/AmazonCloudWatch/latest/logs/SubscriptionFilters.html.

use std::io::Read;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The most a compressed payload may inflate to. CloudWatch Logs sends at most about 1 MB
/// of events per invocation; anything far beyond that is not a real subscription payload.
pub const MAX_INFLATED: u64 = 64 << 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("awslogs.data is not base64: {0}")]
    Base64(String),
    #[error("awslogs.data is not gzip: {0}")]
    Gzip(String),
    #[error("the payload inflates past {} MiB: not a CloudWatch Logs payload", MAX_INFLATED >> 20)]
    TooLarge,
    #[error("not a CloudWatch Logs document: {0}")]
    Json(String),
}

/// One log event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    #[serde(default)]
    pub id: String,
    /// Milliseconds since the epoch, when CloudWatch Logs received it.
    pub timestamp: i64,
    pub message: String,
}

/// The decoded subscription document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsData {
    /// `DATA_MESSAGE`, or `CONTROL_MESSAGE` for the reachability check CloudWatch Logs
    /// sends when a subscription is created (it carries no records).
    pub message_type: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub log_group: String,
    #[serde(default)]
    pub log_stream: String,
    #[serde(default)]
    pub subscription_filters: Vec<String>,
    #[serde(default)]
    pub log_events: Vec<LogEvent>,
}

impl LogsData {
    /// The record lines it carries (none for a control message).
    pub fn messages(&self) -> impl Iterator<Item = &str> {
        let data = self.message_type != "CONTROL_MESSAGE";
        self.log_events.iter().filter(move |_| data).map(|e| e.message.as_str())
    }
}

#[derive(Deserialize)]
struct SubscriptionEvent {
    awslogs: AwsLogs,
}

#[derive(Deserialize)]
struct AwsLogs {
    data: String,
}

/// The Lambda event of a subscription filter -> the document it carries.
pub fn decode_lambda_event(json: &[u8]) -> Result<LogsData, EnvelopeError> {
    let event: SubscriptionEvent = serde_json::from_slice(json).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    decode_data(&event.awslogs.data)
}

/// `awslogs.data` -> the document.
pub fn decode_data(data: &str) -> Result<LogsData, EnvelopeError> {
    let gz = base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| EnvelopeError::Base64(e.to_string()))?;
    let json = gunzip(&gz)?;
    serde_json::from_slice(&json).map_err(|e| EnvelopeError::Json(e.to_string()))
}

/// Inflates gzip data, refusing more than [`MAX_INFLATED`] bytes.
pub fn gunzip(gz: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(gz).take(MAX_INFLATED + 1);
    decoder.read_to_end(&mut out).map_err(|e| EnvelopeError::Gzip(e.to_string()))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(EnvelopeError::TooLarge);
    }
    Ok(out)
}

/// The document -> `awslogs.data`, as CloudWatch Logs encodes it.
pub fn encode_data(data: &LogsData) -> String {
    use std::io::Write as _;
    let json = serde_json::to_vec(data).expect("log documents serialize");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("writing to memory"))
}

/// The document -> the Lambda event CloudWatch Logs invokes the function with.
pub fn encode_lambda_event(data: &LogsData) -> String {
    serde_json::json!({"awslogs": {"data": encode_data(data)}}).to_string()
}

/// The record lines in any JSON a user may hold flow logs in: a subscription Lambda event,
/// a decoded subscription document, `filter-log-events` / `get-log-events` output
/// (`{"events": [...]}`), or a bare array of events.
pub fn messages_from_json(json: &[u8]) -> Result<Vec<String>, EnvelopeError> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    if let Some(data) = value.get("awslogs").and_then(|a| a.get("data")).and_then(|d| d.as_str()) {
        return Ok(decode_data(data)?.messages().map(str::to_string).collect());
    }
    if value.get("messageType").is_some() {
        let doc: LogsData = serde_json::from_value(value).map_err(|e| EnvelopeError::Json(e.to_string()))?;
        return Ok(doc.messages().map(str::to_string).collect());
    }
    let events = value.get("events").or_else(|| value.get("logEvents")).unwrap_or(&value);
    let events = events.as_array().ok_or_else(|| {
        EnvelopeError::Json("expected awslogs.data, a subscription document, {\"events\": [...]} or an array of events".into())
    })?;
    events
        .iter()
        .map(|e| {
            e.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .ok_or_else(|| EnvelopeError::Json("a log event without a \"message\" string".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(kind: &str) -> LogsData {
        LogsData {
            message_type: kind.into(),
            owner: "123456789012".into(),
            log_group: "/cis/lab/flow-logs".into(),
            log_stream: "eni-0abc-all".into(),
            subscription_filters: vec!["cis-lab-detector-subscription".into()],
            log_events: vec![LogEvent {
                id: "1".into(),
                timestamp: 1_767_225_660_000,
                message: "2 123 eni-1 - - - - - - - 1 2 - NODATA".into(),
            }],
        }
    }

    #[test]
    fn round_trips_a_subscription_event() {
        let event = encode_lambda_event(&doc("DATA_MESSAGE"));
        let back = decode_lambda_event(event.as_bytes()).unwrap();
        assert_eq!(back, doc("DATA_MESSAGE"));
        assert_eq!(messages_from_json(event.as_bytes()).unwrap().len(), 1);
        // A control message carries no records.
        let control = encode_lambda_event(&doc("CONTROL_MESSAGE"));
        assert!(messages_from_json(control.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn reads_cli_output_and_refuses_garbage() {
        let cli = r#"{"events": [{"logStreamName": "s", "timestamp": 1, "message": "a b", "ingestionTime": 2, "eventId": "3"}]}"#;
        assert_eq!(messages_from_json(cli.as_bytes()).unwrap(), vec!["a b"]);
        assert!(matches!(decode_data("%%%"), Err(EnvelopeError::Base64(_))));
        assert!(matches!(decode_data("aGVsbG8="), Err(EnvelopeError::Gzip(_))));
        assert!(matches!(messages_from_json(b"{\"events\": [{}]}"), Err(EnvelopeError::Json(_))));
        assert!(matches!(messages_from_json(b"[1"), Err(EnvelopeError::Json(_))));
    }

    #[test]
    fn refuses_a_gzip_bomb() {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..65 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(gunzip(&bomb), Err(EnvelopeError::TooLarge));
    }
}
