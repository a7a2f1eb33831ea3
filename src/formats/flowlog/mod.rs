//! VPC Flow Log records in the AWS text format: the default v2 fields and custom formats
//! with v3-v5 fields, written by the simulator and read by the detector.
//!
//! Field names and meanings: docs.aws.amazon.com/vpc/latest/userguide/flow-log-records.html.
//! A field the record lacks is written `-`, as AWS does. Fields of later versions (the ECS
//! fields of v7, `reject-reason`) are accepted in a format and skipped, so newer logs still
//! read. Reading streams: [`FlowLogReader`] takes any `BufRead`, holds one line at a time,
//! follows a header line to the format it names, and reports a malformed line with its
//! number instead of failing the whole input. [`envelope`] opens what CloudWatch Logs
//! wraps records in.

use std::fmt::Write as _;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

// What CloudWatch Logs wraps records in (subscription events, exports).
pub mod envelope;
// Flow-log files as people hand them over: plain, gzip, CloudWatch exports.
pub mod input;

/// The log format every lab's flow log uses: the v2 default fields, then the v3-v5 fields
/// the detector and the report read.
pub const LAB_LOG_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status} ${vpc-id} ${subnet-id} ${instance-id} ${tcp-flags} ${type} ${pkt-srcaddr} ${pkt-dstaddr} ${flow-direction} ${traffic-path}";

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
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    /// A well-formed field this version does not interpret (the v7 ECS fields,
    /// `reject-reason`): read and skipped, written `-`.
    Skipped,
}

impl Field {
    const NAMES: [(&'static str, Field); 29] = [
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
        ("region", Field::Region),
        ("az-id", Field::AzId),
        ("sublocation-type", Field::SublocationType),
        ("sublocation-id", Field::SublocationId),
        ("pkt-src-aws-service", Field::PktSrcAwsService),
        ("pkt-dst-aws-service", Field::PktDstAwsService),
    ];

    /// Fields of later versions than this reader interprets: known by name, skipped.
    const SKIPPED: [&'static str; 11] = [
        "ecs-cluster-arn",
        "ecs-cluster-name",
        "ecs-container-instance-arn",
        "ecs-container-instance-id",
        "ecs-container-id",
        "ecs-second-container-id",
        "ecs-service-name",
        "ecs-task-definition-arn",
        "ecs-task-arn",
        "ecs-task-id",
        "reject-reason",
    ];

    pub fn from_name(name: &str) -> Option<Field> {
        Self::NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).or_else(|| Self::SKIPPED.contains(&name).then_some(Field::Skipped))
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

    pub fn write<S: std::fmt::Display>(&self, r: &FlowRecordOf<S>) -> String {
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
        self.read_as(line)
    }

    /// [`LogFormat::read`] into a record with text of type `S` (`&str` borrows the line).
    pub fn read_as<'a, S: From<&'a str> + Default>(&self, line: &'a str) -> Result<Option<FlowRecordOf<S>>, String> {
        if is_header(line) {
            return Ok(None);
        }
        let mut r = FlowRecordOf::<S>::default();
        let mut tokens = line.split_ascii_whitespace();
        for (i, f) in self.fields.iter().enumerate() {
            let tok = tokens.next().ok_or_else(|| format!("expected {} fields, found {i}", self.fields.len()))?;
            r.read_field(*f, tok)?;
        }
        if tokens.next().is_some() {
            let n = self.fields.len() + 1 + tokens.count();
            return Err(format!("expected {} fields, found {n}", self.fields.len()));
        }
        Ok(Some(r))
    }
}

/// Fields in the lab's own format.
const LAB_FIELDS: usize = 23;

/// Whether a line is a header: the names of the fields rather than values.
fn is_header(line: &str) -> bool {
    // Records start with a number or `-`: the common case costs one comparison.
    if !line.as_bytes().first().is_some_and(u8::is_ascii_lowercase) {
        return false;
    }
    line.split_ascii_whitespace().next().is_some_and(|t| t.as_bytes()[0].is_ascii_lowercase() && Field::from_name(t).is_some())
}

/// A line that could not be read, with its 1-based number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

impl LineError {
    /// The error, its message clipped to [`MAX_ECHO`] bytes: a message quotes what it
    /// could not read, and one huge field must not become a huge error.
    pub fn new(line: usize, message: String) -> LineError {
        LineError { line, message: clip(message) }
    }
}

/// The most of a line's text an error quotes.
pub const MAX_ECHO: usize = 200;

/// The longest line read as a record; the rest of a longer one is skipped unread. A
/// flow-log record is a few hundred bytes.
pub const MAX_LINE: usize = 64 << 10;

/// `message`, cut to [`MAX_ECHO`] bytes at a character boundary, saying how long it was.
fn clip(message: String) -> String {
    if message.len() <= MAX_ECHO {
        return message;
    }
    let mut end = MAX_ECHO;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &message[..end], message.len())
}

/// Reads one line of at most [`MAX_LINE`] bytes into `buf` (newline included). The rest
/// of a longer line is consumed without being kept; the answer is then
/// `Err(its length)`, `Ok(bytes kept)` otherwise (0 at the end of the input).
pub fn read_line_capped(input: &mut impl std::io::BufRead, buf: &mut Vec<u8>) -> std::io::Result<Result<usize, u64>> {
    let start = buf.len();
    let kept = std::io::BufRead::read_until(&mut std::io::Read::take(&mut *input, MAX_LINE as u64 + 1), b'\n', buf)?;
    if kept <= MAX_LINE || buf.ends_with(b"\n") {
        return Ok(Ok(kept));
    }
    // Too long: skip to the end of the line, counting.
    let mut length = kept as u64;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                length += i as u64;
                input.consume(i + 1);
                break;
            }
            None => {
                let n = chunk.len();
                length += n as u64;
                input.consume(n);
            }
        }
    }
    buf.truncate(start);
    Ok(Err(length))
}

/// What a block reader puts in place of a line over [`MAX_LINE`] bytes, followed by its
/// length: the parser reports it as such without the line ever being held.
pub const TOO_LONG_MARK: &str = "\u{0}cis:too-long:";

/// The error for a line over [`MAX_LINE`] bytes.
fn too_long(line: usize, length: u64) -> LineError {
    LineError::new(line, format!("a line of {length} bytes, over the {} KiB a flow-log record can be: skipped unread", MAX_LINE >> 10))
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads records one line at a time from any buffered input, in constant memory.
///
/// A header line switches the reader to the format it names (exported logs carry one). A
/// line prefixed with the ISO-8601 timestamp CloudWatch Logs adds on export to S3 is read
/// without it. Blank lines are skipped; a malformed line is an `Err` with its number, and
/// reading goes on with the next.
pub struct FlowLogReader<R> {
    input: R,
    format: LogFormat,
    line: String,
    /// Where the current record's text is in `line`.
    text: std::ops::Range<usize>,
    number: usize,
}

impl<R: std::io::BufRead> FlowLogReader<R> {
    pub fn new(input: R, format: LogFormat) -> Self {
        FlowLogReader { input, format, line: String::with_capacity(256), text: 0..0, number: 0 }
    }

    /// The format in force (a header may have changed it).
    pub fn format(&self) -> &LogFormat {
        &self.format
    }

    /// Reads up to the next line holding a record, switching formats at header lines;
    /// the record's text is then `self.line[self.text]`. `None` at the end of the input.
    fn next_line(&mut self) -> Option<Result<(), LineError>> {
        loop {
            self.line.clear();
            self.number += 1;
            // The line's buffer is reused from one line to the next, as bytes while read.
            let mut bytes = std::mem::take(&mut self.line).into_bytes();
            let read = read_line_capped(&mut self.input, &mut bytes);
            let utf8 = match String::from_utf8(bytes) {
                Ok(text) => {
                    self.line = text;
                    true
                }
                Err(e) => {
                    let mut bytes = e.into_bytes();
                    bytes.clear();
                    self.line = String::from_utf8(bytes).expect("empty is UTF-8");
                    false
                }
            };
            // A bad line is consumed either way, so reading goes on with the next.
            match read {
                Ok(Ok(0)) => return None,
                Ok(Ok(_)) if !utf8 => return Some(Err(LineError::new(self.number, "not UTF-8 text".into()))),
                Ok(Ok(_)) => {}
                Ok(Err(length)) => return Some(Err(too_long(self.number, length))),
                Err(e) => return Some(Err(LineError::new(self.number, e.to_string()))),
            }
            if let Some(length) = self.line.strip_prefix(TOO_LONG_MARK).and_then(|l| l.trim().parse::<u64>().ok()) {
                return Some(Err(too_long(self.number, length)));
            }
            let text = strip_export_timestamp(self.line.trim());
            if text.is_empty() {
                continue;
            }
            if is_header(text) {
                match LogFormat::from_header(text) {
                    Ok(f) => self.format = f,
                    Err(message) => return Some(Err(LineError::new(self.number, message))),
                }
                continue;
            }
            let start = text.as_ptr() as usize - self.line.as_ptr() as usize;
            self.text = start..start + text.len();
            return Some(Ok(()));
        }
    }

    /// The next record or malformed line; `None` at the end of the input. An I/O error
    /// (including bytes that are not UTF-8) is a line error too.
    pub fn next_record(&mut self) -> Option<Result<FlowRecord, LineError>> {
        loop {
            if let Err(e) = self.next_line()? {
                return Some(Err(e));
            }
            match self.format.read(&self.line[self.text.clone()]) {
                Ok(Some(r)) => return Some(Ok(r)),
                Ok(None) => continue,
                Err(message) => return Some(Err(LineError::new(self.number, message))),
            }
        }
    }

    /// Calls `each` with every record and its line number, its text borrowed from the
    /// line (no allocation), or with a malformed line.
    pub fn for_each_borrowed(&mut self, mut each: impl FnMut(Result<(usize, FlowRecordOf<&str>), LineError>)) {
        while let Some(line) = self.next_line() {
            match line {
                Err(e) => each(Err(e)),
                Ok(()) => match self.format.read_as::<&str>(&self.line[self.text.clone()]) {
                    Ok(Some(r)) => each(Ok((self.number, r))),
                    Ok(None) => {}
                    Err(message) => each(Err(LineError::new(self.number, message))),
                },
            }
        }
    }
}

impl<R: std::io::BufRead> Iterator for FlowLogReader<R> {
    type Item = Result<FlowRecord, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

/// `2026-01-01T00:00:00.000Z 2 123456789010 eni-...` (CloudWatch Logs' export to S3) ->
/// the record after the timestamp.
fn strip_export_timestamp(line: &str) -> &str {
    let b = line.as_bytes();
    if b.len() > 21 && b[4] == b'-' && b[10] == b'T' && b[0].is_ascii_digit() {
        if let Some((first, rest)) = line.split_once(' ') {
            if first.ends_with('Z') {
                return rest.trim_start();
            }
        }
    }
    line
}

impl LogFormat {
    /// The format a file's first line implies: the one a header line names, the lab's for a
    /// record of its 23 fields, else the default v2 format.
    pub fn guess(first_line: &str) -> LogFormat {
        if is_header(first_line) {
            if let Ok(f) = LogFormat::from_header(first_line) {
                return f;
            }
        }
        if first_line.split_ascii_whitespace().count() == LAB_FIELDS {
            // Parsed once: callers guess per record line (pasted logs in `cis rca`).
            static LAB: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();
            return LAB.get_or_init(|| LogFormat::parse(LAB_LOG_FORMAT).expect("the lab's format parses")).clone();
        }
        LogFormat::default_v2()
    }

    /// The header line of this format (`version account-id ...`), as flow logs delivered to
    /// S3 begin; [`LogFormat::from_header`] reads it back.
    pub fn header(&self) -> String {
        let name = |f: &Field| Field::NAMES.iter().find(|(_, g)| g == f).map_or("-", |(n, _)| *n);
        self.fields.iter().map(name).collect::<Vec<_>>().join(" ")
    }

    /// The format a header line names (`version account-id ...`).
    pub fn from_header(line: &str) -> Result<LogFormat, String> {
        let spec: Vec<String> = line.split_ascii_whitespace().map(|n| format!("${{{n}}}")).collect();
        LogFormat::parse(&spec.join(" ")).map_err(|e| format!("header line: {e}"))
    }
}

/// One flow-log record; `None` is AWS's `-`. Text fields are `S`: owned `String`s in a
/// [`FlowRecord`], or `&str` borrowed from the line while a hot loop reads it (no
/// allocation per record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecordOf<S> {
    pub version: Option<u8>,
    pub account_id: Option<S>,
    pub interface_id: Option<S>,
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
    pub vpc_id: Option<S>,
    pub subnet_id: Option<S>,
    pub instance_id: Option<S>,
    pub tcp_flags: Option<u16>,
    pub traffic_type: Option<S>,
    pub pkt_srcaddr: Option<IpAddr>,
    pub pkt_dstaddr: Option<IpAddr>,
    pub flow_direction: Option<Direction>,
    pub traffic_path: Option<u8>,
    pub region: Option<S>,
    pub az_id: Option<S>,
    pub sublocation_type: Option<S>,
    pub sublocation_id: Option<S>,
    pub pkt_src_aws_service: Option<S>,
    pub pkt_dst_aws_service: Option<S>,
}

/// A record that owns its text.
pub type FlowRecord = FlowRecordOf<String>;

impl FlowRecordOf<&str> {
    /// The record with its text copied out of the line.
    pub fn to_owned_record(&self) -> FlowRecord {
        let o = |v: &Option<&str>| v.map(str::to_string);
        FlowRecordOf {
            version: self.version,
            account_id: o(&self.account_id),
            interface_id: o(&self.interface_id),
            srcaddr: self.srcaddr,
            dstaddr: self.dstaddr,
            srcport: self.srcport,
            dstport: self.dstport,
            protocol: self.protocol,
            packets: self.packets,
            bytes: self.bytes,
            start: self.start,
            end: self.end,
            action: self.action,
            log_status: self.log_status,
            vpc_id: o(&self.vpc_id),
            subnet_id: o(&self.subnet_id),
            instance_id: o(&self.instance_id),
            tcp_flags: self.tcp_flags,
            traffic_type: o(&self.traffic_type),
            pkt_srcaddr: self.pkt_srcaddr,
            pkt_dstaddr: self.pkt_dstaddr,
            flow_direction: self.flow_direction,
            traffic_path: self.traffic_path,
            region: o(&self.region),
            az_id: o(&self.az_id),
            sublocation_type: o(&self.sublocation_type),
            sublocation_id: o(&self.sublocation_id),
            pkt_src_aws_service: o(&self.pkt_src_aws_service),
            pkt_dst_aws_service: o(&self.pkt_dst_aws_service),
        }
    }
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

impl<S: std::fmt::Display> FlowRecordOf<S> {
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
            Field::Region => opt(out, &self.region),
            Field::AzId => opt(out, &self.az_id),
            Field::SublocationType => opt(out, &self.sublocation_type),
            Field::SublocationId => opt(out, &self.sublocation_id),
            Field::PktSrcAwsService => opt(out, &self.pkt_src_aws_service),
            Field::PktDstAwsService => opt(out, &self.pkt_dst_aws_service),
            Field::Skipped => out.push('-'),
        }
    }
}

impl<'a, S: From<&'a str>> FlowRecordOf<S> {
    fn read_field(&mut self, f: Field, tok: &'a str) -> Result<(), String> {
        let s = |tok: &'a str| (tok != "-").then(|| S::from(tok));
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
            Field::Region => self.region = s(tok),
            Field::AzId => self.az_id = s(tok),
            Field::SublocationType => self.sublocation_type = s(tok),
            Field::SublocationId => self.sublocation_id = s(tok),
            Field::PktSrcAwsService => self.pkt_src_aws_service = s(tok),
            Field::PktDstAwsService => self.pkt_dst_aws_service = s(tok),
            Field::Skipped => {}
        }
        Ok(())
    }
}

/// Whether an address is outside every private, shared and loopback range: traffic to it
/// leaves the VPC.
/// The VPC's Amazon DNS server: the base of its primary IPv4 block plus two.
pub fn amazon_dns_address(vpc_cidr: &str) -> Option<IpAddr> {
    let base: std::net::Ipv4Addr = vpc_cidr.split('/').next()?.parse().ok()?;
    Some(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(base).checked_add(2)?)))
}

/// Traffic VPC Flow Logs do not record (AWS's flow-log limitations): to the Amazon DNS
/// server (the VPC's `resolver`, or 169.254.169.253), the instance metadata service, the
/// Amazon Time Sync Service, and the Windows license activation address.
pub fn unlogged_destination(ip: IpAddr, resolver: Option<IpAddr>) -> bool {
    const LINK_LOCAL: [[u8; 4]; 4] = [[169, 254, 169, 253], [169, 254, 169, 254], [169, 254, 169, 123], [169, 254, 169, 250]];
    Some(ip) == resolver || matches!(ip, IpAddr::V4(v4) if LINK_LOCAL.contains(&v4.octets()))
}

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
    use super::LAB_LOG_FORMAT;
    use super::*;

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
    fn reader_follows_headers_skips_bad_lines_and_reads_exports() {
        let input = b"version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n\
2 123456789010 eni-1 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK\n\
\n\
2 123456789010 eni-1 172.31.16.139 truncated\n\
2026-01-01T00:01:00.000Z 2 123456789010 eni-1 2001:db8::1 2600:1f18::5 443 50000 6 3 180 1418530010 1418530070 REJECT OK\n\
2 123456789010 eni-1 - - - - - - - 1431280876 1431280934 - SKIPDATA\n\
2 123456789010 eni-1 \xff\xfe - - - - - - 1431280876 1431280934 - NODATA\n\
interface-id flow-direction traffic-path pkt-dst-aws-service ecs-task-id\n\
eni-9 egress 8 S3 -\n";
        let mut reader = FlowLogReader::new(&input[..], LogFormat::parse(LAB_LOG_FORMAT).unwrap());
        let items: Vec<_> = reader.by_ref().collect();
        let ok: Vec<&FlowRecord> = items.iter().filter_map(|i| i.as_ref().ok()).collect();
        let bad: Vec<usize> = items.iter().filter_map(|i| i.as_ref().err().map(|e| e.line)).collect();
        assert_eq!(bad, vec![4, 7], "{items:?}");
        assert_eq!(ok.len(), 4);
        assert_eq!(ok[1].srcaddr, Some("2001:db8::1".parse().unwrap()));
        assert_eq!(ok[1].action, Some(Action::Reject));
        assert_eq!(ok[2].log_status, Some(LogStatus::SkipData));
        assert_eq!(ok[3].flow_direction, Some(Direction::Egress));
        assert_eq!(ok[3].pkt_dst_aws_service.as_deref(), Some("S3"));
        assert_eq!(reader.format().fields().len(), 5);
    }

    #[test]
    fn v4_and_v5_fields_round_trip() {
        let f = LogFormat::parse(
            "${region} ${az-id} ${sublocation-type} ${sublocation-id} ${pkt-src-aws-service} ${pkt-dst-aws-service} ${reject-reason}",
        )
        .unwrap();
        let line = "us-east-1 use1-az1 outpost op-123 AMAZON - -";
        let r = f.read(line).unwrap().unwrap();
        assert_eq!(r.az_id.as_deref(), Some("use1-az1"));
        assert_eq!(f.write(&r), line);
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
