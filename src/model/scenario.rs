//! Attack scenarios: one TOML file each under `scenarios/`, embedded in the binary.
//!
//! A scenario says what it does on a real instance (a shell script run through SSM) and
//! how its traffic looks to the simulator (streams of connections), and what a detector
//! should make of it. Baseline (benign) traffic profiles use the same stream model.

use std::path::Path;

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::base::error::{Error, Result};
use crate::base::rng::Rng;
use crate::detect::destinations::{aws_service, prefixes_of, AwsRegion, AwsService};
use crate::formats::flowlog::is_external;

/// The scenarios shipped with cis, as (file name, text).
pub const EMBEDDED: &[(&str, &str)] = &[
    ("benign-api-rotation.toml", include_str!("../../scenarios/benign-api-rotation.toml")),
    ("benign-backup-burst.toml", include_str!("../../scenarios/benign-backup-burst.toml")),
    ("benign-cdn-update.toml", include_str!("../../scenarios/benign-cdn-update.toml")),
    ("benign-flash-crowd.toml", include_str!("../../scenarios/benign-flash-crowd.toml")),
    ("benign-package-update.toml", include_str!("../../scenarios/benign-package-update.toml")),
    ("c2-beacon-jitter.toml", include_str!("../../scenarios/c2-beacon-jitter.toml")),
    ("exfil-dns-tunnel.toml", include_str!("../../scenarios/exfil-dns-tunnel.toml")),
    ("exfil-http-beacon.toml", include_str!("../../scenarios/exfil-http-beacon.toml")),
    ("exfil-https-bulk.toml", include_str!("../../scenarios/exfil-https-bulk.toml")),
    ("exfil-s3-upload.toml", include_str!("../../scenarios/exfil-s3-upload.toml")),
    ("exfil-long-stream.toml", include_str!("../../scenarios/exfil-long-stream.toml")),
    ("exfil-slow-drip.toml", include_str!("../../scenarios/exfil-slow-drip.toml")),
    ("exfil-spray.toml", include_str!("../../scenarios/exfil-spray.toml")),
    ("exfil-spray-wide.toml", include_str!("../../scenarios/exfil-spray-wide.toml")),
    ("exfil-unusual-port.toml", include_str!("../../scenarios/exfil-unusual-port.toml")),
    ("recon-port-scan.toml", include_str!("../../scenarios/recon-port-scan.toml")),
];

/// The scenario `cis attack` and `cis demo` run when none is named.
pub const DEFAULT_SCENARIO: &str = "exfil-http-beacon";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    pub title: String,
    /// MITRE ATT&CK technique ids.
    pub mitre: Vec<String>,
    pub description: String,
    /// What runs on a real target (bash, through SSM Run Command).
    pub script: String,
    pub expect: Expectation,
    #[serde(rename = "traffic")]
    pub streams: Vec<Stream>,
}

/// What a working pipeline should do with the scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub detected: bool,
    pub isolated: bool,
    /// False where flow logs cannot see the traffic at all (DNS to the VPC resolver).
    #[serde(default = "yes")]
    pub visible_in_flow_logs: bool,
    #[serde(default)]
    pub note: String,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

impl Protocol {
    /// The IANA protocol number flow logs carry.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The target opens the connections.
    Outbound,
    /// Remote hosts open connections to the target.
    Inbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Every `interval_s`, plus or minus `jitter_s`.
    Periodic,
    /// Poisson arrivals with mean gap `interval_s`.
    Poisson,
}

/// A stream of connections with one shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    #[serde(default = "outbound")]
    pub direction: Direction,
    /// Remote addresses, used in turn. Each is an address, or a pool a connection draws a
    /// fresh address from: a network (`"151.101.0.0/16"`), an AWS service's published
    /// prefixes (`"aws:S3"`, `"aws:AMAZON"`, `"aws:CLOUDFRONT"`), or `"internet"` (any
    /// public IPv4 address outside AWS's service ranges). See [`Remote`].
    pub remotes: Vec<String>,
    /// Remote (outbound) or local (inbound) ports, used in turn.
    pub ports: Vec<u16>,
    #[serde(default = "tcp")]
    pub protocol: Protocol,
    /// Seconds after the scenario starts when the first connection opens.
    #[serde(default)]
    pub start_s: f64,
    /// A daily job's time, `"HH:MM"` UTC: the first connection opens at the next such
    /// time (plus `start_s`), and `interval_s` must be a day. For a baseline's schedule,
    /// which the detector learns by the hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_at: Option<String>,
    /// How many connections; 0 in a baseline profile means forever.
    pub connections: u32,
    #[serde(default = "periodic")]
    pub arrival: Arrival,
    #[serde(default)]
    pub interval_s: f64,
    #[serde(default)]
    pub jitter_s: f64,
    /// Bytes the target sends on each connection.
    pub bytes_out: u64,
    /// Bytes the target receives on each connection.
    #[serde(default)]
    pub bytes_in: u64,
    /// How long each connection stays open.
    #[serde(default = "short")]
    pub duration_s: f64,
    /// How much a Poisson stream's rate swings over the day (UTC): 0 flat; 0.6 from 0.4
    /// times the mean at 03:00 to 1.6 times at 15:00, as a site's visitors come and go.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub diurnal: f64,
    /// The spread of each connection's bytes, as the sigma of a log-normal factor with mean
    /// 1: 0 every connection the same; 1 a heavy tail (one in a hundred over 7 times the mean).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size_spread: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn outbound() -> Direction {
    Direction::Outbound
}
fn tcp() -> Protocol {
    Protocol::Tcp
}
fn periodic() -> Arrival {
    Arrival::Periodic
}
fn short() -> f64 {
    0.5
}

/// Where a stream's connections go: one address, or a pool drawn from per connection, as
/// real peers churn (clients from everywhere, service endpoints that rotate, CDN edges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Remote {
    Address(IpAddr),
    /// Any address of an IPv4 network.
    Network(Ipv4Addr, u8),
    /// Any address in an AWS service's shipped prefixes.
    Aws(AwsService),
    /// Any public IPv4 address outside AWS's service ranges.
    Internet,
}

impl Remote {
    pub fn parse(text: &str) -> Result<Remote, String> {
        let bad =
            || format!("remote '{text}' is not an IP address, an IPv4 network (a.b.c.d/n), aws:S3, aws:AMAZON, aws:CLOUDFRONT or internet");
        if text == "internet" {
            return Ok(Remote::Internet);
        }
        if let Some(name) = text.strip_prefix("aws:") {
            return AwsService::parse(name).map(Remote::Aws).ok_or_else(bad);
        }
        if let Some((net, len)) = text.split_once('/') {
            let (net, len): (Ipv4Addr, u8) = (net.parse().map_err(|_| bad())?, len.parse().map_err(|_| bad())?);
            if !(8..=32).contains(&len) {
                return Err(format!("remote '{text}': a network's prefix length must be 8 to 32"));
            }
            return Ok(Remote::Network(net, len));
        }
        text.parse().map(Remote::Address).map_err(|_| bad())
    }

    /// An address of this remote: itself, or a fresh draw from the pool; an AWS
    /// service's, from its prefixes that serve a lab in `region`.
    pub fn pick(&self, region: &str, rng: &mut Rng) -> IpAddr {
        let in_network = |rng: &mut Rng, net: Ipv4Addr, len: u8| {
            let size = 1u64 << (32 - u32::from(len));
            IpAddr::V4(Ipv4Addr::from(u32::from(net) & crate::base::net::ipv4_mask(len) | rng.below(size) as u32))
        };
        match *self {
            Remote::Address(ip) => ip,
            Remote::Network(net, len) => in_network(rng, net, len),
            Remote::Aws(service) => {
                // The simulator's accounts live only in regions the table holds.
                let region = AwsRegion::serving(service, region).expect("the simulator's region has published prefixes");
                let prefixes = prefixes_of(service, region);
                loop {
                    let (net, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
                    let ip = in_network(rng, net, len);
                    // Other customers' holes inside a service's prefix are not the service.
                    if aws_service(ip) == Some((service, region)) {
                        return ip;
                    }
                }
            }
            Remote::Internet => loop {
                let ip = IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32));
                let IpAddr::V4(v4) = ip else { unreachable!() };
                if is_external(ip) && !v4.is_multicast() && v4.octets()[0] < 224 && v4.octets()[0] != 0 && aws_service(ip).is_none() {
                    return ip;
                }
            },
        }
    }
}

/// A day, in seconds: the longest interval, jitter or connection.
const DAY_S: f64 = 86_400.0;
/// The latest a stream may start: a week.
const MAX_START_S: f64 = 7.0 * DAY_S;
/// The longest a scenario may run: a week.
const MAX_SPAN_S: f64 = 7.0 * DAY_S;
/// Bytes one connection may carry each way: 1 TiB.
pub const MAX_CONNECTION_BYTES: u64 = 1 << 40;
/// Connections one stream may open.
const MAX_CONNECTIONS: u32 = 1_000_000;
/// Streams one scenario may have. With the limits above a run's bytes cannot overflow a
/// u64: 16 streams x 10^6 connections x 2^40 bytes is 1.76e19, under 2^64 (1.84e19).
const MAX_STREAMS: usize = 16;

impl Stream {
    /// The remote of the stream's `index`th connection, from a target in `region`.
    pub fn remote(&self, index: u32, region: &str, rng: &mut Rng) -> IpAddr {
        Remote::parse(&self.remotes[index as usize % self.remotes.len()]).expect("streams are validated").pick(region, rng)
    }

    /// Checks the stream; an error names the offending key (for its line) and says why.
    fn check(&self, i: usize) -> Result<(), (&'static str, String)> {
        let at = format!("[[traffic]] #{}", i + 1);
        // Every number finite and in a range whose arithmetic cannot overflow: seconds
        // become durations and timestamps, bytes are summed over every connection.
        let times = [
            ("start_s", self.start_s, MAX_START_S),
            ("interval_s", self.interval_s, DAY_S),
            ("jitter_s", self.jitter_s, DAY_S),
            ("duration_s", self.duration_s, DAY_S),
        ];
        for (key, value, max) in times {
            if !(value.is_finite() && (0.0..=max).contains(&value)) {
                return Err((key, format!("{at}: {key} = {value} must be a number of seconds from 0 to {max}")));
            }
        }
        for (key, value) in [("bytes_out", self.bytes_out), ("bytes_in", self.bytes_in)] {
            if value > MAX_CONNECTION_BYTES {
                return Err((key, format!("{at}: {key} = {value} is over {MAX_CONNECTION_BYTES} (1 TiB on one connection)")));
            }
        }
        if self.connections > MAX_CONNECTIONS {
            return Err(("connections", format!("{at}: connections = {} is over {MAX_CONNECTIONS}", self.connections)));
        }
        self.check_shape(&at).map_err(|m| ("", m))
    }

    fn check_shape(&self, at: &str) -> Result<(), String> {
        if self.remotes.is_empty() {
            return Err(format!("{at}: 'remotes' needs at least one address"));
        }
        for r in &self.remotes {
            Remote::parse(r).map_err(|e| format!("{at}: {e}"))?;
        }
        if self.ports.is_empty() {
            return Err(format!("{at}: 'ports' needs at least one port"));
        }
        if !(self.start_s >= 0.0 && self.interval_s >= 0.0 && self.jitter_s >= 0.0 && self.duration_s > 0.0) {
            return Err(format!("{at}: times must be non-negative and duration_s positive"));
        }
        if self.connections != 1 && self.interval_s <= 0.0 {
            return Err(format!("{at}: more than one connection needs interval_s > 0"));
        }
        if self.jitter_s > self.interval_s {
            return Err(format!("{at}: jitter_s must not exceed interval_s"));
        }
        if !(0.0..1.0).contains(&self.diurnal) {
            return Err(format!("{at}: diurnal must be at least 0 and below 1 (the rate's swing over the day)"));
        }
        if self.diurnal > 0.0 && self.arrival != Arrival::Poisson {
            return Err(format!("{at}: diurnal applies to arrival = \"poisson\" streams"));
        }
        if !(0.0..=3.0).contains(&self.size_spread) {
            return Err(format!("{at}: size_spread must be from 0 to 3 (a log-normal sigma)"));
        }
        if let Some(daily) = &self.daily_at {
            self.daily_at_s().ok_or_else(|| format!("{at}: daily_at '{daily}' is not a time of day HH:MM"))?;
            if self.interval_s != 86_400.0 {
                return Err(format!("{at}: a daily_at stream repeats daily: set interval_s = 86400.0"));
            }
        }
        Ok(())
    }

    /// The stream's rate at `unix_s`, relative to its mean: `1 + diurnal cos(2 pi (h - 15) / 24)`
    /// for the hour of the day `h` (UTC).
    pub fn rate_factor(&self, unix_s: f64) -> f64 {
        let hour = unix_s.rem_euclid(86_400.0) / 3600.0;
        1.0 + self.diurnal * (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos()
    }

    /// One connection's bytes out and in: the stream's, times a log-normal factor of mean 1
    /// when `size_spread` says so.
    pub fn connection_bytes(&self, rng: &mut Rng) -> (u64, u64) {
        if self.size_spread == 0.0 {
            return (self.bytes_out, self.bytes_in);
        }
        let factor = (self.size_spread * rng.normal() - self.size_spread * self.size_spread / 2.0).exp();
        // A draw far in the tail is held to the per-connection limit, so sums stay exact.
        let scaled = |b: u64| ((b as f64 * factor).round() as u64).min(MAX_CONNECTION_BYTES);
        (scaled(self.bytes_out), scaled(self.bytes_in))
    }

    /// `daily_at` as seconds after midnight UTC.
    pub fn daily_at_s(&self) -> Option<i64> {
        let (h, m) = self.daily_at.as_deref()?.split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        ((0..24).contains(&h) && (0..60).contains(&m)).then_some(h * 3600 + m * 60)
    }

    /// Seconds from `now` (seconds since the epoch) to this stream's first connection,
    /// before any random phase.
    pub fn first_in_s(&self, now: i64) -> f64 {
        match self.daily_at_s() {
            Some(at) => (at - now.rem_euclid(86_400)).rem_euclid(86_400) as f64 + self.start_s,
            None => self.start_s,
        }
    }

    /// Seconds from the scenario's start until this stream's last connection closes.
    pub fn span_s(&self) -> f64 {
        self.start_s + self.interval_s * self.connections.saturating_sub(1) as f64 + self.jitter_s + self.duration_s
    }
}

impl Scenario {
    /// Parses a scenario file; errors name the file and line.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| Error::BadFile {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().to_string(),
        })?;
        let bad = |line: usize, message: String| Error::BadFile { path: path.to_path_buf(), line, message };
        if scenario.id.is_empty() || !scenario.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad(find_line(text, "id"), format!("id '{}' must be lowercase letters, digits and hyphens", scenario.id)));
        }
        if scenario.streams.is_empty() {
            return Err(bad(1, "a scenario needs at least one [[traffic]] stream".into()));
        }
        if scenario.streams.len() > MAX_STREAMS {
            return Err(bad(nth_table_line(text, MAX_STREAMS), format!("a scenario has at most {MAX_STREAMS} [[traffic]] streams")));
        }
        for (i, s) in scenario.streams.iter().enumerate() {
            if s.connections == 0 {
                return Err(bad(
                    key_line(text, i, "connections"),
                    format!("[[traffic]] #{}: a scenario's stream needs connections >= 1", i + 1),
                ));
            }
            s.check(i).map_err(|(key, m)| bad(key_line(text, i, key), m))?;
        }
        if scenario.span_s() > MAX_SPAN_S {
            return Err(bad(1, format!("the scenario runs {:.0} s, over the {MAX_SPAN_S} s (a week) a run may take", scenario.span_s())));
        }
        Ok(scenario)
    }

    /// Seconds from start until the last connection closes.
    pub fn span_s(&self) -> f64 {
        self.streams.iter().map(Stream::span_s).fold(0.0, f64::max)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn find_line(text: &str, key: &str) -> usize {
    text.lines().position(|l| l.trim_start().starts_with(key)).map_or(1, |i| i + 1)
}

/// The line of `key` in the `n`th `[[traffic]]` table, or of the table's header when the
/// key is not written there (a default) or not named.
fn key_line(text: &str, n: usize, key: &str) -> usize {
    let header = nth_table_line(text, n);
    if key.is_empty() {
        return header;
    }
    text.lines()
        .enumerate()
        .skip(header)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| l.trim_start().strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')))
        .map_or(header, |(i, _)| i + 1)
}

fn nth_table_line(text: &str, n: usize) -> usize {
    text.lines().enumerate().filter(|(_, l)| l.trim() == "[[traffic]]").nth(n).map_or(1, |(i, _)| i + 1)
}

/// The embedded catalogue, in id order.
pub fn catalogue() -> Vec<Scenario> {
    let mut all: Vec<Scenario> = EMBEDDED
        .iter()
        .map(|(file, text)| {
            Scenario::parse(text, &Path::new("scenarios").join(file)).expect("embedded scenarios are checked by the test suite")
        })
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// Looks a scenario up by id in the catalogue, or loads it from a `.toml` path.
pub fn find(id_or_path: &str) -> Result<Scenario> {
    if id_or_path.ends_with(".toml") {
        let path = Path::new(id_or_path);
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            // The user named it: a path that is not there, or not text, is bad input.
            std::io::ErrorKind::NotFound => Error::Usage(format!("{id_or_path}: no such scenario file: check the path")),
            std::io::ErrorKind::InvalidData => {
                Error::BadFile { path: path.to_path_buf(), line: 1, message: "not UTF-8 text: a scenario is a TOML file".into() }
            }
            _ => Error::io(path, e),
        })?;
        let scenario = Scenario::parse(&text, path)?;
        // Runs are grouped by scenario id: a file of its own must not pass for a
        // catalogue scenario and merge into its figures.
        if let Some(same_id) = catalogue().into_iter().find(|s| s.id == scenario.id) {
            if same_id != scenario {
                return Err(Error::BadFile {
                    path: path.to_path_buf(),
                    line: find_line(&text, "id"),
                    message: format!(
                        "id '{}' is a catalogue scenario's, and this file differs from it: give your scenario an id of its own, so that reports keep its runs apart",
                        scenario.id
                    ),
                });
            }
        }
        return Ok(scenario);
    }
    catalogue().into_iter().find(|s| s.id == id_or_path).ok_or_else(|| Error::UnknownScenario(id_or_path.to_string()))
}

/// A benign traffic profile: streams that run as long as the target does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadProfile {
    pub id: String,
    pub description: String,
    /// TCP ports the workload serves to the internet: the target's security group admits
    /// them from anywhere (a web server's 443), or its clients would only be refused.
    #[serde(default)]
    pub serves: Vec<u16>,
    #[serde(rename = "traffic")]
    pub streams: Vec<Stream>,
}

#[derive(Deserialize)]
struct WorkloadFile {
    profile: Vec<WorkloadProfile>,
}

const WORKLOADS_TOML: &str = include_str!("../../assets/workloads.toml");

/// The benign background the simulator runs on every target.
pub fn workloads() -> Vec<WorkloadProfile> {
    let file: WorkloadFile = toml::from_str(WORKLOADS_TOML).expect("assets/workloads.toml is checked by the test suite");
    for p in &file.profile {
        for (i, s) in p.streams.iter().enumerate() {
            s.check(i).expect("assets/workloads.toml streams are valid");
        }
    }
    file.profile
}

pub const DEFAULT_WORKLOAD: &str = "idle-server";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_scenarios_is_embedded_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = EMBEDDED.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        let all = catalogue();
        for s in &all {
            assert_eq!(format!("{}.toml", s.id), EMBEDDED.iter().find(|(_, t)| t.contains(&format!("id = \"{}\"", s.id))).unwrap().0);
        }
        assert!(all.iter().any(|s| s.id == DEFAULT_SCENARIO));
        assert!(workloads().iter().any(|b| b.id == DEFAULT_WORKLOAD));
    }

    #[test]
    fn load_follows_the_day_and_sizes_have_heavy_tails() {
        let web = workloads().into_iter().find(|p| p.id == "web-server").unwrap();
        let clients = &web.streams[0];
        assert!(clients.diurnal > 0.0 && clients.size_spread > 0.0);
        // Busiest at 15:00 UTC, quietest at 03:00, the mean over the day unchanged.
        let day = 1_767_225_600.0;
        assert!((clients.rate_factor(day + 15.0 * 3600.0) - (1.0 + clients.diurnal)).abs() < 1e-9);
        assert!((clients.rate_factor(day + 3.0 * 3600.0) - (1.0 - clients.diurnal)).abs() < 1e-9);
        let mean = (0..24).map(|h| clients.rate_factor(day + f64::from(h) * 3600.0)).sum::<f64>() / 24.0;
        assert!((mean - 1.0).abs() < 1e-9);
        // Sizes: the mean kept, a long right tail.
        let mut rng = Rng::seeded(9);
        let sizes: Vec<f64> = (0..20_000).map(|_| clients.connection_bytes(&mut rng).0 as f64).collect();
        let mean = sizes.iter().sum::<f64>() / sizes.len() as f64;
        assert!((mean / clients.bytes_out as f64 - 1.0).abs() < 0.05, "{mean}");
        assert!(sizes.iter().filter(|&&s| s > 5.0 * clients.bytes_out as f64).count() > 100, "a heavy tail");
        let flat = Stream { size_spread: 0.0, ..clients.clone() };
        assert_eq!(flat.connection_bytes(&mut rng), (flat.bytes_out, flat.bytes_in));
        let mut bad = clients.clone();
        bad.arrival = Arrival::Periodic;
        bad.interval_s = 10.0;
        assert!(bad.check(0).unwrap_err().1.contains("diurnal applies to arrival"));
    }

    #[test]
    fn pools_draw_fresh_addresses_of_their_kind() {
        let mut rng = Rng::seeded(3);
        for (text, region, check) in [
            ("aws:S3", "eu-west-1", Some((AwsService::S3, "eu-west-1"))),
            ("aws:S3", "us-east-1", Some((AwsService::S3, "us-east-1"))),
            ("aws:AMAZON", "ap-southeast-2", Some((AwsService::Amazon, "ap-southeast-2"))),
            ("aws:CLOUDFRONT", "eu-west-1", Some((AwsService::CloudFront, "GLOBAL"))),
            ("internet", "us-east-1", None),
        ] {
            let pool = Remote::parse(text).unwrap();
            let drawn: std::collections::BTreeSet<IpAddr> = (0..50).map(|_| pool.pick(region, &mut rng)).collect();
            assert!(drawn.len() > 40, "{text}: addresses churn");
            let check = check.map(|(service, region)| (service, AwsRegion::named(region).unwrap()));
            assert!(drawn.iter().all(|ip| aws_service(*ip) == check && is_external(*ip)), "{text} in {region}: {drawn:?}");
        }
        let net = Remote::parse("151.101.0.0/16").unwrap();
        assert!((0..20).all(|_| matches!(net.pick("us-east-1", &mut rng), IpAddr::V4(v) if v.octets()[..2] == [151, 101])));
        assert_eq!(Remote::parse("10.42.1.200").unwrap().pick("us-east-1", &mut rng), "10.42.1.200".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn malformed_files_name_path_and_line() {
        let text = "id = \"x\"\ntitle = \"t\"\nmitre = []\ndescription = \"d\"\nscript = \"s\"\n[expect]\ndetected = maybe\n";
        let err = Scenario::parse(text, Path::new("scenarios/x.toml")).unwrap_err().to_string();
        assert!(err.starts_with("scenarios/x.toml:7:"), "{err}");
        let text = "id = \"x\"\ntitle = \"t\"\nmitre = []\ndescription = \"d\"\nscript = \"s\"\n[expect]\ndetected = true\nisolated = true\n\n[[traffic]]\nremotes = [\"nope\"]\nports = [80]\nconnections = 1\nbytes_out = 1\n";
        let err = Scenario::parse(text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:10:") && err.contains("nope"), "{err}");
        let err = Scenario::parse(&text.replace("nope", "aws:EC2"), Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.contains("aws:S3, aws:AMAZON"), "{err}");
        assert!(matches!(find("no-such-scenario"), Err(Error::UnknownScenario(_))));
    }

    #[test]
    fn extreme_numbers_are_refused_at_their_line() {
        let base = "id = \"x\"\ntitle = \"t\"\nmitre = []\ndescription = \"d\"\nscript = \"s\"\n[expect]\ndetected = true\nisolated = true\n\n[[traffic]]\nremotes = [\"203.0.113.9\"]\nports = [80]\nconnections = 20\ninterval_s = 5.0\nbytes_out = 16384\nduration_s = 1.0\n";
        assert!(Scenario::parse(base, Path::new("x.toml")).is_ok());
        for (key, value, line) in [
            ("interval_s", "inf", 14),
            ("interval_s", "nan", 14),
            ("interval_s", "1e300", 14),
            ("duration_s", "inf", 16),
            ("duration_s", "-1.0", 16),
            ("bytes_out", "1000000000000000000", 15),
            ("connections", "4294967295", 13),
        ] {
            let text = base
                .lines()
                .map(|l| if l.starts_with(key) { format!("{key} = {value}") } else { l.to_string() })
                .collect::<Vec<_>>()
                .join("\n");
            let err = Scenario::parse(&text, Path::new("x.toml")).unwrap_err().to_string();
            assert!(err.starts_with(&format!("x.toml:{line}:")) && err.contains(key), "{key} = {value}: {err}");
        }
        let text = format!("{base}start_s = inf\n");
        let err = Scenario::parse(&text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(err.starts_with("x.toml:17:") && err.contains("start_s"), "{err}");
    }
}
