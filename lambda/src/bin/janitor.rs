//! The janitor function: `bootstrap` of the lab's janitor Lambda, which the lab's TTL
//! schedule invokes once its time is up. It deletes everything tagged with its lab, with
//! the orchestration's own `down` (no ledger here: the sweep by tag), itself included.

use cis::backends::aws::cloud::AwsCloud;
use cis::lab::LabName;
use cis::orchestrator::Orchestrator;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    cis_lambda::init_logging();
    let lab: LabName = std::env::var("CIS_LAB").map_err(|_| Error::from("environment variable CIS_LAB is not set"))?.parse()?;
    let session = cis::backends::aws::connect(&cis::backends::aws::AwsOptions::default()).await?;
    let cloud = AwsCloud::new(session, vec![]);
    let (cloud, lab) = (&cloud, &lab);
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| async move {
        let scratch = std::env::temp_dir().join("cis-janitor");
        let report = Orchestrator::janitor(cloud, lab, &scratch).await?;
        tracing::info!(lab = %lab, deleted = report.deleted.len(), "janitor");
        Ok::<_, Error>(serde_json::to_value(&report)?)
    }))
    .await
}
