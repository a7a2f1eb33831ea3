//! The containment function: `bootstrap` of the lab's containment Lambda.

use cis::containment::{handle, ContainmentConfig};
use cis_lambda::aws::AwsContainment;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    cis_lambda::init_logging();
    let config = ContainmentConfig::from_env(|k| std::env::var(k).ok())?;
    let sdk = cis::backends::aws::sdk_loader().load().await;
    let api = AwsContainment::new(&sdk);
    let (api, config) = (&api, &config);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let outcome = handle(api, config, &event.payload).await;
        tracing::info!(outcome = %outcome.outcome, instance = %outcome.instance_id, detail = %outcome.detail, "containment");
        // The record `cis attack` reads back from this function's log group.
        println!("{}", cis::events::log_line(cis::events::CONTAINMENT_LOG_MARKER, &outcome));
        // A failure (the groups restored) is worth Lambda's retry; a refusal is final.
        if outcome.outcome == cis::events::Outcome::Failed {
            return Err(Error::from(format!("containment of {} failed: {}", outcome.instance_id, outcome.detail)));
        }
        Ok::<_, Error>(serde_json::to_value(&outcome)?)
    }))
    .await
}
