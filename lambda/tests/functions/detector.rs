//! The detector bootstrap, run as Lambda runs it, against EventBridge in moto. Armed (its
//! model in the lab's bucket, named by `CIS_MODEL_KEY`): a subscription batch holding an
//! exfiltration window becomes one
//! `cis.detector` event, which a rule routes to an SQS queue the test reads (moto's
//! PutEvents fails with HTTP 500 when a rule targets Lambda); a control message puts
//! nothing. This is `--detector lambda`: no SageMaker. The function keeps its memory
//! across windows in the lab's bucket (moto's S3): absent on the first batch, written
//! after it. Learning (no model named): the same batch puts nothing.

use std::process::{Command, Stdio};

use cis::anomaly::{Model, TrainOptions};
use cis::flowlog::envelope::{encode_lambda_event, LogEvent, LogsData};
use cis::flowlog::{FlowRecord, LogFormat};
use cis::lab::LAB_LOG_FORMAT;

use crate::moto::Moto;
use crate::runtime_api::RuntimeApi;

const BASE: i64 = 1_767_225_600;

fn record(start: i64, dst: &str, bytes: u64) -> FlowRecord {
    crate::flows::egress(start, dst, bytes, "i-0a1b2c3d4e5f60718")
}

fn subscription(message_type: &str, lines: Vec<String>) -> serde_json::Value {
    let event = encode_lambda_event(&LogsData {
        message_type: message_type.into(),
        owner: "123456789012".into(),
        log_group: "cis-lab-flow-logs".into(),
        log_stream: "eni-0aa-all".into(),
        subscription_filters: vec!["cis-lab-detector-subscription".into()],
        log_events: lines
            .into_iter()
            .enumerate()
            .map(|(i, message)| LogEvent { id: i.to_string(), timestamp: BASE * 1000, message })
            .collect(),
    });
    serde_json::from_str(&event).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn the_bootstrap_turns_an_exfiltration_batch_into_one_detection_on_eventbridge() {
    // The model `cis arm` put in the lab's bucket: twelve quiet hours of one agent.
    let quiet: Vec<FlowRecord> = (0..12 * 60).map(|m| record(BASE + m * 60, "52.46.141.10", 2_000 + (m as u64 * 37) % 900)).collect();
    let model = Model::train(cis::features::windows(&quiet, 60), &TrainOptions::default(), "functions test").unwrap();

    let moto = Moto::start();
    let config = moto.sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let s3 = aws_sdk_s3::Client::new(&config);
    let bucket = "cis-lab-model-data-123456789012";
    s3.create_bucket().bucket(bucket).send().await.unwrap();
    let model_key = format!("{}20260101T130000Z.json", cis::lab::MODEL_PREFIX);
    s3.put_object().bucket(bucket).key(&model_key).body(model.to_json().into_bytes().into()).send().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let queue = sqs.create_queue().queue_name("detections").send().await.unwrap().queue_url.unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .name("cis-lab-detection-rule")
        .event_pattern(r#"{"source":["cis.detector"],"detail-type":["cis detection"],"detail":{"lab":["lab"]}}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("cis-lab-detection-rule")
        .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(queue_arn).build().unwrap())
        .send()
        .await
        .unwrap();

    let format = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
    let attack_at = BASE + 13 * 3600;
    let attack =
        vec![format.write(&record(attack_at, "52.46.141.10", 2_400)), format.write(&record(attack_at + 5, "203.0.113.50", 1 << 30))];
    let control = vec!["CWL CONTROL MESSAGE: Checking health of destination Lambda.".to_string()];
    let bootstrap = |api: &RuntimeApi, model_key: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cis-detector"));
        c.envs(moto.env())
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "cis-lab-detector-function")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("CIS_LAB", "lab")
            .env("CIS_WINDOW_S", "60")
            .env("CIS_LOG_FORMAT", LAB_LOG_FORMAT)
            .env("CIS_MEMORY_BUCKET", bucket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(key) = model_key {
            c.env("CIS_MODEL_KEY", key);
        }
        c.spawn().expect("the bootstrap starts")
    };

    // Learning: the batch is read, nothing is scored, put or remembered.
    let api = RuntimeApi::serve(vec![subscription("DATA_MESSAGE", attack.clone())]);
    let learning = api.collect(1, bootstrap(&api, None));
    assert_eq!(learning[0].kind, "response", "{learning:#?}");
    let batch = &learning[0].body;
    assert_eq!((batch["records"].as_u64(), batch["scored_by"].as_str()), (Some(2), Some(cis::detector::LEARNING)), "{batch}");
    assert_eq!(batch["detections"].as_array().map(Vec::len), Some(0), "{batch}");
    let remembered = s3.list_objects_v2().bucket(bucket).prefix("detector-memory/").send().await.unwrap();
    assert_eq!(remembered.key_count(), Some(0), "a learning function keeps no memory");

    let api = RuntimeApi::serve(vec![subscription("DATA_MESSAGE", attack), subscription("CONTROL_MESSAGE", control)]);
    let answers = api.collect(2, bootstrap(&api, Some(&model_key)));

    assert!(answers.iter().all(|a| a.kind == "response"), "{answers:#?}");
    let batch = &answers[0].body;
    assert_eq!(
        (batch["records"].as_u64(), batch["windows"].as_u64(), batch["scored_by"].as_str()),
        (Some(2), Some(1), Some("model")),
        "{batch}"
    );
    assert_eq!(batch["detections"].as_array().unwrap().len(), 1, "{batch}");
    assert!(batch.get("memory_trouble").is_none(), "no memory yet is no trouble: {batch}");
    let memory = s3.get_object().bucket(bucket).key("detector-memory/eni-0aa-all.json").send().await.expect("the memory was saved");
    let memory = memory.body.collect().await.unwrap().into_bytes();
    let memory: serde_json::Value = serde_json::from_slice(&memory).unwrap();
    assert!(memory["interfaces"]["eni-0aa"]["203.0.113.0/24"].is_array(), "the never-seen network is remembered: {memory}");
    assert_eq!(answers[1].body["windows"], 0, "a control message carries no records: {}", answers[1].body);

    // From outside: the event EventBridge routed, as the containment function receives it.
    let received = sqs.receive_message().queue_url(&queue).max_number_of_messages(10).send().await.unwrap();
    let bodies: Vec<serde_json::Value> = received.messages().iter().map(|m| serde_json::from_str(m.body().unwrap()).unwrap()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let detection = cis::containment::parse_event(&bodies[0]).unwrap_or_else(|e| panic!("{e}: {}", bodies[0]));
    assert_eq!((detection.lab.as_str(), detection.instance_id.as_str()), ("lab", "i-0a1b2c3d4e5f60718"));
    assert_eq!(detection.window_start.unix_seconds(), attack_at - attack_at % 60);
    assert!(detection.reason.contains("203.0.113.50") || detection.reason.contains("bytes"), "{}", detection.reason);
}
