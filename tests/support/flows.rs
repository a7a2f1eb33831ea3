//! Flow-log records as the lab's target writes them (its v5 format's fields), for the tests
//! on both sides of the functions: the cis integration tests and the functions' own
//! (`#[path]`-included by both).

use cis::flowlog::{Action, Direction, FlowRecord, LogStatus};

/// An accepted HTTPS flow the target at 10.42.1.10 (interface `eni-0aa`, instance
/// `instance`) opened to `dst` at `start` (epoch seconds), carrying `bytes` out.
pub fn egress(start: i64, dst: &str, bytes: u64, instance: &str) -> FlowRecord {
    FlowRecord {
        version: Some(5),
        account_id: Some("123456789012".into()),
        interface_id: Some("eni-0aa".into()),
        srcaddr: Some("10.42.1.10".parse().unwrap()),
        dstaddr: Some(dst.parse().unwrap()),
        srcport: Some(40_000 + (start % 20_000) as u16),
        dstport: Some(443),
        protocol: Some(6),
        packets: Some(bytes / 1400 + 1),
        bytes: Some(bytes),
        start: Some(start),
        end: Some(start + 2),
        action: Some(Action::Accept),
        log_status: Some(LogStatus::Ok),
        vpc_id: Some("vpc-0a".into()),
        subnet_id: Some("subnet-0a".into()),
        instance_id: Some(instance.into()),
        flow_direction: Some(Direction::Egress),
        ..Default::default()
    }
}
