//! VPC Flow Log records in the AWS text format: the default v2 fields and custom formats
//! with v3-v5 fields, written by the simulator and read by the detector.
//!
//! Field names and meanings: docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html.
//! A field the record lacks is written `-`, as AWS does.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The default (version 2) format.
pub const DEFAULT_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    FlowDirection,
    TrafficPath,
}

impl Field {
    const NAMES: [(&'static str, Field); 23] = [
        ("version", Field::Version),
        ("account-id", Field::AccountId),
        ("interface-id", Field::InterfaceId),
        ("srcaddr", Field::SrcAddr),
        ("dstaddr", Field::DstAddr),
        ("srcport", Field::SrcPort),
        ("dstport", Field::DstPort),
        ("protocol", Field::Protocol),
        ("packets", Field::Packets),
        ("bytes", Field::Bytes),
        ("start", Field::Start),
        ("end", Field::End),
        ("action", Field::Action),
        ("log-status", Field::LogStatus),
        ("vpc-id", Field::VpcId),
        ("subnet-id", Field::SubnetId),
        ("instance-id", Field::InstanceId),
        ("tcp-flags", Field::TcpFlags),
        ("type", Field::Type),
        ("pkt-srcaddr", Field::PktSrcAddr),
        ("pkt-dstaddr", Field::PktDstAddr),
        ("flow-direction", Field::FlowDirection),
        ("traffic-path", Field::TrafficPath),
    ];

    pub fn from_name(name: &str) -> Option<Field> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }
}

/// An ordered list of fields, as given to CreateFlowLogs' `LogFormat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFormat {
    fields: Vec<Field>,
}

impl LogFormat {
    pub fn parse(format: &str) -> Result<LogFormat, String> {
        let fields = format
            .split_whitespace()
            .map(|tok| {
                let name = tok
                    .strip_prefix("${")
                    .and_then(|t| t.strip_suffix('}'))
                    .ok_or_else(|| format!("log format token '{tok}' is not of the form ${{field}}"))?;
                Field::from_name(name).ok_or_else(|| format!("log format field '{name}' is not a flow-log field this version knows"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if fields.is_empty() {
            return Err("log format is empty".into());
        }
        Ok(LogFormat { fields })
    }

    pub fn default_v2() -> LogFormat {
        LogFormat::parse(DEFAULT_FORMAT).expect("the default format parses")
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn write(&self, r: &FlowRecord) -> String {
        let mut out = String::with_capacity(160);
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            r.write_field(*f, &mut out);
        }
        out
    }

    /// Parses one record line. Header lines (the field names, as exports carry them) are
    /// `Ok(None)`.
    pub fn read(&self, line: &str) -> Result<Option<FlowRecord>, String> {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.first() == Some(&"version") || tokens.first().is_some_and(|t| Field::from_name(t).is_some() && t.contains('-')) {
            return Ok(None);
        }
        if tokens.len() != self.fields.len() {
            return Err(format!("expected {} fields, found {}", self.fields.len(), tokens.len()));
        }
        let mut r = FlowRecord::default();
        for (f, tok) in self.fields.iter().zip(tokens) {
            r.read_field(*f, tok)?;
        }
        Ok(Some(r))
    }
}

/// One flow-log record; `None` is AWS's `-`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub version: Option<u8>,
    pub account_id: Option<String>,
    pub interface_id: Option<String>,
    pub srcaddr: Option<IpAddr>,
    pub dstaddr: Option<IpAddr>,
    pub srcport: Option<u16>,
    pub dstport: Option<u16>,
    pub protocol: Option<u8>,
    pub packets: Option<u64>,
    pub bytes: Option<u64>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub action: Option<Action>,
    pub log_status: Option<LogStatus>,
    pub vpc_id: Option<String>,
    pub subnet_id: Option<String>,
    pub instance_id: Option<String>,
    pub tcp_flags: Option<u16>,
    pub traffic_type: Option<String>,
    pub pkt_srcaddr: Option<IpAddr>,
    pub pkt_dstaddr: Option<IpAddr>,
    pub flow_direction: Option<Direction>,
    pub traffic_path: Option<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Accept,
    Reject,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStatus {
    Ok,
    NoData,
    SkipData,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

fn opt<T: std::fmt::Display>(out: &mut String, v: &Option<T>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push('-'),
    }
}

fn parse_opt<T: std::str::FromStr>(tok: &str, what: &str) -> Result<Option<T>, String> {
    if tok == "-" {
        return Ok(None);
    }
    tok.parse().map(Some).map_err(|_| format!("{what} '{tok}' is not valid"))
}

impl FlowRecord {
    fn write_field(&self, f: Field, out: &mut String) {
        match f {
            Field::Version => opt(out, &self.version),
            Field::AccountId => opt(out, &self.account_id),
            Field::InterfaceId => opt(out, &self.interface_id),
            Field::SrcAddr => opt(out, &self.srcaddr),
            Field::DstAddr => opt(out, &self.dstaddr),
            Field::SrcPort => opt(out, &self.srcport),
            Field::DstPort => opt(out, &self.dstport),
            Field::Protocol => opt(out, &self.protocol),
            Field::Packets => opt(out, &self.packets),
            Field::Bytes => opt(out, &self.bytes),
            Field::Start => opt(out, &self.start),
            Field::End => opt(out, &self.end),
            Field::Action => out.push_str(match self.action {
                Some(Action::Accept) => "ACCEPT",
                Some(Action::Reject) => "REJECT",
                None => "-",
            }),
            Field::LogStatus => out.push_str(match self.log_status {
                Some(LogStatus::Ok) => "OK",
                Some(LogStatus::NoData) => "NODATA",
                Some(LogStatus::SkipData) => "SKIPDATA",
                None => "-",
            }),
            Field::VpcId => opt(out, &self.vpc_id),
            Field::SubnetId => opt(out, &self.subnet_id),
            Field::InstanceId => opt(out, &self.instance_id),
            Field::TcpFlags => opt(out, &self.tcp_flags),
            Field::Type => opt(out, &self.traffic_type),
            Field::PktSrcAddr => opt(out, &self.pkt_srcaddr),
            Field::PktDstAddr => opt(out, &self.pkt_dstaddr),
            Field::FlowDirection => out.push_str(match self.flow_direction {
                Some(Direction::Ingress) => "ingress",
                Some(Direction::Egress) => "egress",
                None => "-",
            }),
            Field::TrafficPath => opt(out, &self.traffic_path),
        }
    }

    fn read_field(&mut self, f: Field, tok: &str) -> Result<(), String> {
        let s = |tok: &str| (tok != "-").then(|| tok.to_string());
        match f {
            Field::Version => self.version = parse_opt(tok, "version")?,
            Field::AccountId => self.account_id = s(tok),
            Field::InterfaceId => self.interface_id = s(tok),
            Field::SrcAddr => self.srcaddr = parse_opt(tok, "srcaddr")?,
            Field::DstAddr => self.dstaddr = parse_opt(tok, "dstaddr")?,
            Field::SrcPort => self.srcport = parse_opt(tok, "srcport")?,
            Field::DstPort => self.dstport = parse_opt(tok, "dstport")?,
            Field::Protocol => self.protocol = parse_opt(tok, "protocol")?,
            Field::Packets => self.packets = parse_opt(tok, "packets")?,
            Field::Bytes => self.bytes = parse_opt(tok, "bytes")?,
            Field::Start => self.start = parse_opt(tok, "start")?,
            Field::End => self.end = parse_opt(tok, "end")?,
            Field::Action => {
                self.action = match tok {
                    "ACCEPT" => Some(Action::Accept),
                    "REJECT" => Some(Action::Reject),
                    "-" => None,
                    _ => return Err(format!("action '{tok}' is not ACCEPT or REJECT")),
                }
            }
            Field::LogStatus => {
                self.log_status = match tok {
                    "OK" => Some(LogStatus::Ok),
                    "NODATA" => Some(LogStatus::NoData),
                    "SKIPDATA" => Some(LogStatus::SkipData),
                    "-" => None,
                    _ => return Err(format!("log-status '{tok}' is not OK, NODATA or SKIPDATA")),
                }
            }
            Field::VpcId => self.vpc_id = s(tok),
            Field::SubnetId => self.subnet_id = s(tok),
            Field::InstanceId => self.instance_id = s(tok),
            Field::TcpFlags => self.tcp_flags = parse_opt(tok, "tcp-flags")?,
            Field::Type => self.traffic_type = s(tok),
            Field::PktSrcAddr => self.pkt_srcaddr = parse_opt(tok, "pkt-srcaddr")?,
            Field::PktDstAddr => self.pkt_dstaddr = parse_opt(tok, "pkt-dstaddr")?,
            Field::FlowDirection => {
                self.flow_direction = match tok {
                    "ingress" => Some(Direction::Ingress),
                    "egress" => Some(Direction::Egress),
                    "-" => None,
                    _ => return Err(format!("flow-direction '{tok}' is not ingress or egress")),
                }
            }
            Field::TrafficPath => self.traffic_path = parse_opt(tok, "traffic-path")?,
        }
        Ok(())
    }
}

/// Whether an address is outside every private, shared and loopback range: traffic to it
/// leaves the VPC.
pub fn is_external(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::LAB_LOG_FORMAT;

    #[test]
    fn default_format_round_trips_an_aws_example() {
        // The first example on the AWS flow-log-records page.
        let line = "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK";
        let f = LogFormat::default_v2();
        let r = f.read(line).unwrap().unwrap();
        assert_eq!(r.dstport, Some(22));
        assert_eq!(r.action, Some(Action::Accept));
        assert_eq!(f.write(&r), line);
        let nodata = "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1431280876 1431280934 - NODATA";
        let r = f.read(nodata).unwrap().unwrap();
        assert_eq!(r.log_status, Some(LogStatus::NoData));
        assert_eq!(f.write(&r), nodata);
    }

    #[test]
    fn lab_format_parses_and_rejects_bad_lines() {
        let f = LogFormat::parse(LAB_LOG_FORMAT).unwrap();
        assert_eq!(f.fields().len(), 23);
        assert!(f.read("2 1 eni-1 10.0.0.1").is_err());
        assert!(LogFormat::default_v2().read("2 1 eni-1 10.0.0.1 10.0.0.2 1 2 6 1 1 1 2 MAYBE OK").is_err());
        assert!(LogFormat::parse("${version} ${nonsense}").is_err());
        assert!(LogFormat::default_v2().read("version account-id interface-id").unwrap().is_none());
    }

    #[test]
    fn external_addresses() {
        assert!(is_external("203.0.113.50".parse().unwrap()));
        assert!(!is_external("10.42.1.7".parse().unwrap()));
        assert!(!is_external("100.64.0.1".parse().unwrap()));
        assert!(!is_external("fd00::1".parse().unwrap()));
        assert!(is_external("2600:1f18::1".parse().unwrap()));
    }
}
