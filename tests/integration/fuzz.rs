//! Hostile input: a seeded mutational fuzzer throws a million malformed variants of real
//! records at each decoder. None may panic, and whatever parses must write back and read
//! again to the same record. `CIS_FUZZ_INPUTS` changes the count (default 1,000,000).

use cis::flowlog::envelope::{self, LogEvent, LogsData};
use cis::flowlog::{FlowLogReader, LogFormat, DEFAULT_FORMAT};
use cis::lab::LAB_LOG_FORMAT;
use cis::rng::Rng;

fn inputs() -> usize {
    std::env::var("CIS_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000)
}

const SEEDS: &[&str] = &[
    "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK",
    "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA",
    "2 123456789010 eni-1 2001:db8::1 2600:1f18::5 443 50000 6 3 180 1418530010 1418530070 REJECT OK",
    "5 123456789012 eni-0a1b2c3d 10.42.1.10 203.0.113.50 40123 80 6 12 4800 1767225610 1767225660 ACCEPT OK vpc-1 subnet-2 i-0abc 19 IPv4 10.42.1.10 203.0.113.50 egress 8",
    "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
    "2026-01-01T00:01:00.000Z 2 1 eni-1 - - - - - - - 1 2 - SKIPDATA",
];

const TOKENS: &[&str] = &[
    "-",
    "",
    "0",
    "-1",
    "65536",
    "4294967296",
    "18446744073709551616",
    "::",
    "999.1.1.1",
    "1.2.3",
    "ACCEPT",
    "OK",
    "NODATA",
    "${x}",
    "egress",
    "\u{feff}",
    "é",
    "\t",
    "version",
    "1e9",
    "+5",
    "0x10",
];

/// One mutated copy of `seed`: a few byte- and token-level edits.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len().max(1);
        match rng.below(8) {
            0 => {
                let i = rng.below(len as u64) as usize;
                if i < b.len() {
                    b[i] ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = rng.below(len as u64 + 1) as usize;
                b.insert(i.min(b.len()), rng.below(256) as u8);
            }
            2 => {
                let i = rng.below(len as u64) as usize;
                let j = (i + 1 + rng.below(12) as usize).min(b.len());
                if i < j {
                    b.drain(i..j);
                }
            }
            3 => b.truncate(rng.below(len as u64) as usize),
            _ => {
                // Replace, duplicate or drop a whole token.
                let text = String::from_utf8_lossy(&b).into_owned();
                let mut toks: Vec<String> = text.split(' ').map(str::to_string).collect();
                let i = rng.below(toks.len() as u64) as usize;
                match rng.below(3) {
                    0 => toks[i] = TOKENS[rng.below(TOKENS.len() as u64) as usize].to_string(),
                    1 => {
                        let t = toks[i].clone();
                        toks.insert(i, t);
                    }
                    _ => {
                        toks.remove(i);
                    }
                }
                b = toks.join(" ").into_bytes();
            }
        }
    }
    b
}

#[test]
fn flow_log_parser_survives_a_million_mutated_lines() {
    let formats = [LogFormat::parse(DEFAULT_FORMAT).unwrap(), LogFormat::parse(LAB_LOG_FORMAT).unwrap()];
    let mut rng = Rng::seeded(0xF1_0E);
    let (mut parsed, mut rejected) = (0usize, 0usize);
    let n = inputs();
    // Many lines per reader, so header switches and errors carry over between lines.
    let mut batch = Vec::new();
    for i in 0..n {
        let seed = SEEDS[rng.below(SEEDS.len() as u64) as usize];
        let line = mutate(&mut rng, seed.as_bytes());
        let format = &formats[i % 2];
        let text = String::from_utf8_lossy(&line);
        match format.read(&text) {
            Ok(Some(record)) => {
                parsed += 1;
                let again = format.read(&format.write(&record)).expect("a written record reads back").expect("not a header");
                assert_eq!(again, record, "round trip of {text:?}");
            }
            Ok(None) => {}
            Err(_) => rejected += 1,
        }
        batch.extend_from_slice(&line);
        batch.push(b'\n');
        if batch.len() > 64 << 10 || i + 1 == n {
            let reader = FlowLogReader::new(&batch[..], formats[i % 2].clone());
            assert!(reader.count() > 0);
            batch.clear();
        }
    }
    println!("flow-log parser: {n} mutated inputs, {parsed} parsed and round-tripped, {rejected} rejected with a message, no panic");
    assert!(parsed > n / 100 && rejected > n / 2, "the mutations exercise both paths: {parsed} parsed, {rejected} rejected");
}

#[test]
fn subscription_decoder_survives_a_million_mutated_payloads() {
    let doc = LogsData {
        message_type: "DATA_MESSAGE".into(),
        owner: "123456789012".into(),
        log_group: "/cis/fuzz/flow-logs".into(),
        log_stream: "eni-1-all".into(),
        subscription_filters: vec!["f".into()],
        log_events: SEEDS.iter().enumerate().map(|(i, m)| LogEvent { id: i.to_string(), timestamp: 1, message: m.to_string() }).collect(),
    };
    let event = envelope::encode_lambda_event(&doc);
    let data = envelope::encode_data(&doc);
    let json = serde_json::to_string(&doc).unwrap();
    let gz = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&data).unwrap()
    };
    let mut rng = Rng::seeded(0xE7_E1);
    let (mut ok, mut refused) = (0usize, 0usize);
    let n = inputs();
    for i in 0..n {
        let result = match i % 4 {
            0 => envelope::decode_lambda_event(&mutate(&mut rng, event.as_bytes())).map(|d| d.log_events.len()),
            1 => envelope::decode_data(&String::from_utf8_lossy(&mutate(&mut rng, data.as_bytes()))).map(|d| d.log_events.len()),
            2 => envelope::messages_from_json(&mutate(&mut rng, json.as_bytes())).map(|m| m.len()),
            _ => envelope::gunzip(&mutate(&mut rng, &gz)).map(|b| b.len()),
        };
        match result {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1
            }
        }
    }
    println!("subscription decoder: {n} mutated payloads, {ok} decoded, {refused} refused with a message, no panic");
    assert!(ok > 0 && refused > n / 2, "{ok} decoded, {refused} refused");
}
