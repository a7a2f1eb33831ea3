//! The detector function: `bootstrap` of the lab's detector Lambda, subscribed to the
//! flow-log group.

use cis::anomaly::Model;
use cis::detector::{handle, learn, DetectorConfig, DetectorError};
use cis_lambda::aws::AwsDetector;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    cis_lambda::init_logging();
    let get = |k: &str| std::env::var(k).ok();
    let config = DetectorConfig::from_env(get)?;
    let sdk = cis::backends::aws::sdk_loader().load().await;
    let api = AwsDetector::new(&sdk, config.memory_bucket.clone());
    // No model until `cis arm` trained one on the lab's own flow logs: until then the
    // function is learning. A model named but unreadable fails the start, loudly.
    let model: Option<Model> = match &config.model_key {
        Some(key) => Some(api.load_model(key).await.map_err(|e| format!("the lab's model: {e}"))?),
        None => None,
    };
    let (api, config, model) = (&api, &config, &model);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let payload = serde_json::to_vec(&event.payload)?;
        let scored = match model {
            Some(model) => handle(api, config, model, &payload).await,
            None => learn(&payload),
        };
        match scored {
            Ok(report) => {
                tracing::info!(stream = %report.log_stream, records = report.records, windows = report.windows, scored_by = %report.scored_by, detections = report.detections.len(), memory_trouble = report.memory_trouble.as_deref().unwrap_or("none"), "batch");
                // The records `cis attack` reads back from this function's log group.
                for d in &report.detections {
                    println!("{}", cis::events::log_line(cis::events::DETECTION_LOG_MARKER, d));
                }
                Ok::<_, Error>(serde_json::to_value(&report)?)
            }
            // Not a subscription payload: retrying the same bytes cannot help.
            Err(e @ DetectorError::Envelope(_)) => {
                tracing::warn!(error = %e, "refused");
                Ok(serde_json::json!({"refused": e.to_string()}))
            }
            Err(e) => Err(Error::from(e.to_string())),
        }
    }))
    .await
}
