//! `cis arm`: a learning lab trains on its own flow logs, then gets what needed a model.
//!
//! The lab's log group is read a page at a time (bounded memory: each page goes into the
//! window tallies and the per-minute egress sums, then is dropped). The model is trained
//! as `cis train` trains one; the detector function's model and the Random Cut Forest's
//! rows go to the lab's bucket, the egress alarm's threshold into the ledger. The ledger
//! then says armed, and `up`'s walk makes what the graph left out while the lab learned
//! and converges the detector function onto its model. A crash before the ledger says
//! armed leaves the lab learning (a rerun trains again); after, a rerun finishes the walk.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::{Orchestrator, UpReport, CREATE_RETRY_FOR};
use crate::base::clock::Timestamp;
use crate::base::error::{Error, Result};
use crate::detect::anomaly::{rcf_csv, Model, ModelError, TrainOptions};
use crate::detect::features::WindowAggregator;
use crate::formats::flowlog::LogFormat;
use crate::formats::metric::{egress_pattern, period_sums, FilterPattern};
use crate::model::lab::{
    egress_transformation, Arming, DetectorMode, LabName, Role, Trained, LAB_LOG_FORMAT, LAB_VPC_PREFIX, MODEL_PREFIX, TRAINING_KEY,
};
use crate::store::ledger::{EntryState, LedgerFile};

/// How much of its own traffic a lab learns before it arms, unless told otherwise: a day,
/// the cycle of the workloads' diurnal load.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(24 * 3600);

/// The warm-up the lab was made with (`up --warmup`), else [`DEFAULT_WARMUP`].
pub fn warmup_of(options: &crate::model::lab::LabOptions) -> Duration {
    options.warmup_s.map_or(DEFAULT_WARMUP, Duration::from_secs)
}

/// What `cis arm` did.
#[derive(Clone, Debug, Serialize)]
pub struct ArmReport {
    pub lab: String,
    pub arming: Arming,
    /// The walk that made what needed the model.
    pub up: UpReport,
}

/// What the lab's group held, read page by page.
struct Learned {
    windows: Vec<crate::detect::features::WindowFeatures>,
    /// Bytes out of the VPC per minute, summed over the target's interfaces.
    egress_by_minute: BTreeMap<Timestamp, f64>,
    records: u64,
    from: Option<Timestamp>,
    to: Option<Timestamp>,
}

impl Orchestrator<'_> {
    /// Trains a learning lab on its own flow logs and arms it. Refuses a lab whose group
    /// holds less than `warmup` of traffic (the lab's own warm-up when None), saying how
    /// much it holds.
    pub async fn arm(&self, lab: &LabName, warmup: Option<Duration>) -> Result<ArmReport> {
        if self.load_ledger(lab)?.is_none() {
            // Before the lock, which would leave a folder for a lab that is not there.
            return Err(Error::Usage(format!("there is no lab '{lab}' here to arm: `cis up --lab {lab}` first")));
        }
        let account = self.cloud.account().await?;
        let options = {
            let _lock = self.lock_lab(lab)?;
            let Some(ledger) = self.ledger_here(lab, &account)? else {
                return Err(Error::Usage(format!("there is no lab '{lab}' here to arm: `cis up --lab {lab}` first")));
            };
            match &ledger.arming {
                Arming::SimulatedBaseline if !self.learns_own_traffic() => {
                    return Err(Error::Usage(format!(
                        "lab '{lab}' is simulated: it was armed at `up` on its workload's simulated baseline, and has nothing to arm"
                    )))
                }
                Arming::SimulatedBaseline => {
                    return Err(Error::Usage(format!(
                        "lab '{lab}' was made before labs learned their own traffic: it carries a model of the simulated baseline; `cis down --lab {lab}` then `cis up --lab {lab}` for one that learns"
                    )))
                }
                Arming::Armed(_) if ledger.complete => {
                    return Err(Error::Usage(format!(
                        "lab '{lab}' is already {}; `cis down --lab {lab}` then `cis up --lab {lab}` for a lab that learns afresh",
                        ledger.arming.describe()
                    )))
                }
                // A crash after the ledger said armed: the walk below finishes the job.
                Arming::Armed(_) => {}
                Arming::Learning { .. } if !ledger.complete => {
                    return Err(Error::Usage(format!("lab '{lab}' is not fully up: run `cis up --lab {lab}` first, then `cis arm`")))
                }
                Arming::Learning { .. } => {
                    let warmup = warmup.unwrap_or_else(|| warmup_of(&ledger.options));
                    let trained = self.learn(lab, &ledger, warmup).await?;
                    let mut file = LedgerFile { path: self.state.ledger(self.cloud.kind(), lab), ledger: ledger.clone() };
                    file.update(|l| {
                        l.arming = Arming::Armed(trained);
                        l.complete = false;
                        // Made while the lab learned: its configuration now names the model.
                        if let Some(e) = l.entries.iter_mut().find(|e| e.role == Role::DetectorFunction) {
                            e.state = EntryState::Created;
                        }
                    })?;
                }
            }
            ledger.options
        };
        // The lock goes first: `up` takes it.
        self.finish_arming(lab, &options).await
    }

    /// `up`'s walk over the armed graph (after the lab's lock is let go: `up` takes it).
    async fn finish_arming(&self, lab: &LabName, options: &crate::model::lab::LabOptions) -> Result<ArmReport> {
        let up = self.up(lab, options).await?;
        let arming = self.load_ledger(lab)?.map(|l| l.arming).unwrap_or_default();
        Ok(ArmReport { lab: lab.to_string(), arming, up })
    }

    /// Reads the lab's group and trains on it: the model and the forest's rows go to the
    /// lab's bucket; what the ledger keeps is returned.
    async fn learn(&self, lab: &LabName, ledger: &crate::store::ledger::Ledger, warmup: Duration) -> Result<Trained> {
        let options = &ledger.options;
        let id = |role: Role| ledger.entry(role).and_then(|e| e.id.clone());
        let group = id(Role::LogGroup).ok_or_else(|| Error::LabState(format!("lab '{lab}' has no flow-log group in its ledger")))?;
        let learned = self.read_group(&group, options.window_s).await?;
        let (Some(from), Some(to)) = (learned.from, learned.to) else {
            return Err(Error::Usage(format!(
                "lab '{lab}' has learned nothing yet: its flow-log group holds no records (flow logs reach it within about 10 minutes of traffic); run `cis arm` again later"
            )));
        };
        let span = to.duration_since(from);
        if span < warmup {
            return Err(Error::Usage(format!(
                "lab '{lab}' has learned {:.1} h of its own traffic ({} flow-log records, {} windows, {from} to {to}); arming needs {:.1} h (its warm-up): run `cis arm` again in {:.1} h, or `cis arm --warmup` with less for a quick lab",
                span.as_secs_f64() / 3600.0,
                learned.records,
                learned.windows.len(),
                warmup.as_secs_f64() / 3600.0,
                (warmup - span).as_secs_f64() / 3600.0,
            )));
        }
        let armed_at = self.cloud.clock().now();
        let windows = learned.windows.len();
        let rows = (options.detector == DetectorMode::Endpoint).then(|| rcf_csv(&learned.windows));
        let train = TrainOptions {
            window_s: i64::from(options.window_s),
            target_fpr: options.target_fpr.unwrap_or(TrainOptions::default().target_fpr),
            ..Default::default()
        };
        let described = format!(
            "lab {lab}'s own flow logs: {} records, {from} to {to}, {}-second windows",
            learned.records, options.window_s
        );
        let model = match Model::train(learned.windows, &train, &described) {
            Ok(m) => m,
            Err(ModelError::TooLittleBaseline(busy)) => {
                return Err(Error::Usage(format!(
                    "lab '{lab}' learned only {busy} window(s) with traffic from {from} to {to}; the model needs at least 32: let the target work a while, then `cis arm` again"
                )))
            }
            Err(e) => return Err(Error::Internal(format!("training lab '{lab}' on its own flow logs: {e}"))),
        };

        let mut trained = Trained {
            from,
            to,
            records: learned.records,
            windows,
            armed_at,
            model_key: None,
            training_key: None,
            egress_threshold: None,
        };
        if options.detector.has_function() {
            let bucket = id(Role::ModelData).ok_or_else(|| Error::LabState(format!("lab '{lab}' has no bucket in its ledger")))?;
            let key = format!("{MODEL_PREFIX}{}.json", armed_at.compact());
            let body = model.to_json().into_bytes();
            self.retrying("arm", CREATE_RETRY_FOR, || self.cloud.put_lab_object(&bucket, &key, body.clone())).await?;
            trained.model_key = Some(key);
            if let Some(rows) = rows {
                let body = rows.into_bytes();
                self.retrying("arm", CREATE_RETRY_FOR, || self.cloud.put_lab_object(&bucket, TRAINING_KEY, body.clone())).await?;
                trained.training_key = Some(TRAINING_KEY.to_string());
            }
        } else {
            // Every minute of the span, the quiet ones as zero, as the alarm sees them.
            let minutes = (span.as_secs() / 60).max(1) as usize;
            let mut values: Vec<f64> = learned.egress_by_minute.values().copied().collect();
            values.resize(values.len().max(minutes), 0.0);
            values.sort_by(f64::total_cmp);
            trained.egress_threshold = Some(crate::training::threshold_of_minutes(&values, options.target_fpr));
        }
        Ok(trained)
    }

    /// Every page of the group, each retried on its own, folded into window tallies and
    /// egress per minute as it comes.
    async fn read_group(&self, group: &str, window_s: u32) -> Result<Learned> {
        let format = LogFormat::parse(LAB_LOG_FORMAT).expect("the lab's format parses");
        let pattern = FilterPattern::parse(&egress_pattern(LAB_VPC_PREFIX)).map_err(Error::Internal)?;
        let transformation = egress_transformation();
        let mut aggregator = WindowAggregator::new(i64::from(window_s));
        let mut learned = Learned { windows: Vec::new(), egress_by_minute: BTreeMap::new(), records: 0, from: None, to: None };
        let mut token: Option<String> = None;
        loop {
            let page = self.retrying("arm", CREATE_RETRY_FOR, || self.cloud.flow_log_page(group, token.as_deref())).await?;
            for line in &page.lines {
                let Ok(Some(record)) = format.read(line) else { continue };
                let (Some(start), Some(end)) = (record.start, record.end) else { continue };
                learned.records += 1;
                let (start, end) = (Timestamp::from_unix_seconds(start), Timestamp::from_unix_seconds(end));
                learned.from = Some(learned.from.map_or(start, |f| f.min(start)));
                learned.to = Some(learned.to.map_or(end, |t| t.max(end)));
                aggregator.add(&record, false);
            }
            for minutes in period_sums(&pattern, &transformation, page.lines.iter().map(String::as_str), 60).into_values() {
                for (minute, bytes) in minutes {
                    *learned.egress_by_minute.entry(minute).or_default() += bytes;
                }
            }
            self.progress.update("arm", &format!("read {} flow-log records", learned.records));
            match page.next {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => break,
            }
        }
        learned.windows = aggregator.finish();
        Ok(learned)
    }
}
