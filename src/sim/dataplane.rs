//! The simulated data plane: traffic on the target, security groups with connection
//! tracking, flow-log windows, delivery to CloudWatch Logs, the subscription to the
//! detector, EventBridge and the containment function.
//!
//! Everything is an [`Event`] due at a virtual instant, processed in (time, sequence)
//! order, so one seed gives one history. Connection tracking follows the EC2 guide: a
//! connection the groups allowed stays allowed after a rule change while it is tracked;
//! a flow is untracked when the interface's groups allow all traffic both ways from
//! anywhere, and an untracked flow is judged by the rules on every packet. That is why
//! AWS's runbook (`--isolation two-step`) moves interfaces to an allow-all group before
//! the isolation group; the default cut, a deny in the subnet's network ACL, is stateless
//! and stops tracked connections at once.

use std::net::IpAddr;

use super::faults::Injector;
use super::latency::{Delay, LatencyModel};
use super::traffic::*;
use super::world::{Detail, EndpointStatus, InstanceState, World};
use crate::base::clock::Timestamp;
use crate::base::net::{cidr_contains, protocol_name};
use crate::formats::flowlog::{self, FlowRecord, LogFormat, LogStatus};
use crate::functions::containment::ContainmentConfig;
use crate::functions::detector::DetectorConfig;
use crate::model::events::{DetectionEvent, Transfer};
use crate::model::lab::{FunctionCode, ResourceKind, Rule};
use crate::model::scenario::{Arrival, WorkloadProfile, Direction, Stream};

/// Long connections move their bytes in chunks this far apart.
const CHUNK_S: f64 = 5.0;
/// Bytes of payload per packet, and of headers per packet.
const MSS: u64 = 1448;
const HEADER: u64 = 52;

/// What the data plane needs besides the world.
pub struct Context<'a> {
    pub latency: &'a LatencyModel,
    pub workloads: &'a [WorkloadProfile],
    pub faults: &'a std::sync::Mutex<Injector>,
}

impl Context<'_> {
    fn faults(&self) -> std::sync::MutexGuard<'_, Injector> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How an invocation the duplicates profile fails ends: before the handler ran.
const INJECTED_INVOCATION_ERROR: &str = "Runtime exited before completing the request (injected)";

/// When Lambda retries a failed asynchronous invocation: one and then two minutes later
/// (it retries `lab::LAMBDA_ASYNC_RETRIES` times).
pub fn lambda_retry_delay(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_secs(60 * u64::from(attempt + 1))
}

/// A function invocation for the caller to run as a task: the functions are the same
/// async code the Lambdas run, over the simulator's side of their small traits.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// `event` is the EventBridge event as Lambda receives it.
    Containment {
        at: Timestamp,
        function: String,
        config: ContainmentConfig,
        event: serde_json::Value,
        attempt: u32,
    },
    Detector {
        at: Timestamp,
        function: String,
        config: DetectorConfig,
        lines: Vec<String>,
        attempt: u32,
    },
    /// The lab's janitor: `down` by tag, run in the cloud.
    Janitor {
        at: Timestamp,
        lab: String,
    },
}

fn rule_matches(rule: &Rule, remote: IpAddr, port: u16, protocol: u8) -> bool {
    let proto_ok = rule.protocol == "-1"
        || rule.protocol.parse::<u8>().ok() == Some(protocol)
        || protocol_name(protocol) == Some(rule.protocol.as_str());
    let port_ok = rule.protocol == "-1" || (rule.from_port <= port as i32 && port as i32 <= rule.to_port);
    proto_ok && port_ok && cidr_contains(&rule.cidr, remote)
}

fn is_all_from_anywhere(rules: &[Rule]) -> bool {
    rules.iter().any(|r| r.protocol == "-1" && r.cidr == "0.0.0.0/0")
}

impl World {
    fn group_rules(&self, groups: &[String]) -> (Vec<Rule>, Vec<Rule>) {
        let (mut ingress, mut egress) = (Vec::new(), Vec::new());
        for g in groups {
            if let Some(Detail::SecurityGroup { ingress: i, egress: e, .. }) = self.get(g).map(|r| &r.detail) {
                ingress.extend(i.iter().cloned());
                egress.extend(e.iter().cloned());
            }
        }
        (ingress, egress)
    }

    /// Whether flows on an interface with these groups are untracked.
    pub fn untracked(&self, groups: &[String]) -> bool {
        let (ingress, egress) = self.group_rules(groups);
        is_all_from_anywhere(&ingress) && is_all_from_anywhere(&egress)
    }

    /// ModifyNetworkInterfaceAttribute(Groups).
    pub fn set_interface_groups(&mut self, eni: &str, groups: &[String]) -> Result<(), crate::cloud::CloudError> {
        use crate::cloud::CloudError;
        if groups.is_empty() {
            return Err(CloudError::Invalid("at least one security group is required".into()));
        }
        let owner = self
            .resources
            .values()
            .find(|r| matches!(&r.detail, Detail::Instance { interfaces, state, .. } if *state != InstanceState::Terminated && interfaces.iter().any(|i| i.id == eni)))
            .map(|r| r.id.clone())
            .ok_or_else(|| CloudError::NotFound { kind: crate::model::lab::ResourceKind::Instance.name(), id: eni.to_string() })?;
        let vpc = match &self.resources[&owner].detail {
            Detail::Instance { vpc, .. } => vpc.clone(),
            _ => unreachable!(),
        };
        for g in groups {
            match self.get(g).map(|r| &r.detail) {
                Some(Detail::SecurityGroup { vpc: v, .. }) if *v == vpc => {}
                _ => return Err(CloudError::Invalid(format!("The security group '{g}' does not exist in {vpc}"))),
            }
        }
        let untracked = self.untracked(groups);
        if let Some(Detail::Instance { interfaces, .. }) = self.resources.get_mut(&owner).map(|r| &mut r.detail) {
            if let Some(i) = interfaces.iter_mut().find(|i| i.id == eni) {
                i.groups = groups.to_vec();
            }
        }
        if untracked {
            for c in self.net.conns.values_mut().filter(|c| c.eni == eni) {
                c.tracked = false;
            }
        }
        Ok(())
    }

    /// Processes every event due at or before `now`, in order; returns the containment
    /// invocations to run.
    pub fn advance(&mut self, now: Timestamp, ctx: &Context) -> Vec<Invocation> {
        let mut invocations = Vec::new();
        while self.queue.front().is_some_and(|s| s.at <= now) {
            let s = self.queue.pop_front().expect("checked");
            self.process(s.at, s.event, ctx, &mut invocations);
        }
        self.now = self.now.max(now);
        invocations
    }

    fn process(&mut self, at: Timestamp, event: Event, ctx: &Context, out: &mut Vec<Invocation>) {
        match event {
            Event::InstanceRunning { instance } => {
                let workload = match self.get(&instance).map(|r| &r.detail) {
                    Some(Detail::Instance { state: InstanceState::Pending, workload, .. }) => workload.clone(),
                    _ => return,
                };
                self.set_instance_state(&instance, InstanceState::Running);
                // Benign background from the first second the server runs.
                for profile in ctx.workloads.iter().filter(|p| p.id == workload) {
                    for (i, s) in profile.streams.iter().enumerate() {
                        let phase = match (s.arrival, &s.daily_at) {
                            (Arrival::Periodic, Some(_)) => self.rng.range_f64(0.0, s.jitter_s),
                            (Arrival::Periodic, None) => self.rng.range_f64(0.0, s.interval_s.max(1.0)),
                            (Arrival::Poisson, _) => self.rng.exponential(s.interval_s),
                        };
                        let source = Source::Workload { profile: profile.id.clone(), stream: i };
                        self.schedule(
                            at.plus_secs_f64(s.first_in_s(at.unix_seconds()) + phase),
                            Event::OpenConnection { instance: instance.clone(), source, index: 0 },
                        );
                    }
                }
            }
            Event::InstanceTerminated { instance } => {
                self.set_instance_state(&instance, InstanceState::Terminated);
                self.net.conns.retain(|_, c| c.instance != instance);
            }
            Event::EndpointInService { endpoint } => {
                if let Some(Detail::Endpoint { status, .. }) = self.resources.get_mut(&endpoint).map(|r| &mut r.detail) {
                    if *status == EndpointStatus::Creating {
                        *status = EndpointStatus::InService;
                    }
                }
            }
            Event::EndpointGone { endpoint } => {
                self.remove_with_children(&endpoint);
            }
            Event::CaptureStart { flow_log } => {
                let interval = match self.resources.get_mut(&flow_log).map(|r| &mut r.detail) {
                    Some(Detail::FlowLog { capturing, interval_s, .. }) => {
                        *capturing = true;
                        *interval_s
                    }
                    _ => return,
                };
                self.net.windows.insert(flow_log.clone(), Window { start: Some(at), flows: vec![] });
                self.schedule(at.plus_secs_f64(interval as f64), Event::WindowClose { flow_log });
            }
            Event::WindowClose { flow_log } => self.close_window(at, &flow_log, ctx),
            Event::Deliver { log_group, lines, attack_runs, labels } => {
                let Some(Detail::LogGroup { records, first_delivery_at, .. }) = self.resources.get_mut(&log_group).map(|r| &mut r.detail)
                else {
                    return;
                };
                *records += lines.len() as u64;
                first_delivery_at.get_or_insert(at);
                if let Some(capture) = &mut self.capture {
                    capture.extend(lines.iter().enumerate().map(|(i, l)| (l.clone(), labels.get(i).cloned().flatten())));
                }
                for run in attack_runs {
                    if let Some(a) = self.attacks.get_mut(&run) {
                        a.first_records_delivered_at.get_or_insert(at);
                    }
                }
                let functions: Vec<String> = self
                    .live_resources()
                    .into_iter()
                    .filter_map(|r| match &r.detail {
                        Detail::SubscriptionFilter { log_group: lg, function, .. } if *lg == log_group => Some(function.clone()),
                        _ => None,
                    })
                    .collect();
                for function in functions {
                    let copies = 1 + u32::from(ctx.faults().duplicate());
                    for _ in 0..copies {
                        let delay = ctx.latency.draw(Delay::SubscriptionToLambda, &mut self.rng)
                            + ctx.latency.draw(Delay::LambdaStart, &mut self.rng);
                        self.schedule(
                            at.plus(delay),
                            Event::InvokeDetector { function: function.clone(), lines: lines.clone(), attempt: 0 },
                        );
                    }
                }
                self.apply_metric_filters(at, &log_group, &lines, ctx);
            }
            Event::InvokeDetector { function, lines, attempt } => {
                let Some(Detail::Function { code: FunctionCode::Detector, environment, .. }) = self.get(&function).map(|r| &r.detail)
                else {
                    self.pipeline.failures.push(format!("{at}: flow-log batch not processed: detector {function} is gone"));
                    return;
                };
                let config = DetectorConfig::from_env(|k| environment.get(k).cloned());
                if ctx.faults().function_error() {
                    self.retry_invocation(
                        at,
                        attempt,
                        &function,
                        Event::InvokeDetector { function: function.clone(), lines, attempt: attempt + 1 },
                        INJECTED_INVOCATION_ERROR,
                    );
                    return;
                }
                match config {
                    Ok(config) => out.push(Invocation::Detector { at, function, config, lines, attempt }),
                    Err(e) => self.pipeline.failures.push(format!("{at}: detector function misconfigured: {e}")),
                }
            }
            Event::DeliverDetection { function, detection } => {
                let Some(Detail::Function { code: FunctionCode::Containment, environment, .. }) = self.get(&function).map(|r| &r.detail)
                else {
                    self.pipeline.failures.push(format!("{at}: detection for {} not delivered: {function} is gone", detection.instance_id));
                    return;
                };
                let event = crate::functions::containment::eventbridge_event(&detection, &self.account_id, &self.region);
                match ContainmentConfig::from_env(|k| environment.get(k).cloned()) {
                    Ok(config) => out.push(Invocation::Containment { at, function, config, event, attempt: 0 }),
                    Err(e) => self.pipeline.failures.push(format!("{at}: containment function misconfigured: {e}")),
                }
            }
            Event::DeliverEvent { function, event, attempt, delivery } => {
                let Some(Detail::Function { code: FunctionCode::Containment, environment, .. }) = self.get(&function).map(|r| &r.detail)
                else {
                    self.pipeline.failures.push(format!("{at}: event {} not delivered: {function} is gone", event["id"]));
                    return;
                };
                let config = ContainmentConfig::from_env(|k| environment.get(k).cloned());
                let (failed_delivery, failed_invocation) = {
                    let mut f = ctx.faults();
                    let d = f.delivery_failure();
                    (d, !d && f.function_error())
                };
                if failed_delivery {
                    // EventBridge retries a failed delivery with exponential backoff and
                    // jitter for up to 24 hours (185 attempts).
                    let backoff = 10.0 * 2f64.powi(delivery.min(10) as i32) * (0.5 + ctx.faults().uniform());
                    self.schedule(at.plus_secs_f64(backoff), Event::DeliverEvent { function, event, attempt, delivery: delivery + 1 });
                    return;
                }
                if failed_invocation {
                    self.retry_invocation(
                        at,
                        attempt,
                        &function,
                        Event::DeliverEvent { function: function.clone(), event, attempt: attempt + 1, delivery },
                        INJECTED_INVOCATION_ERROR,
                    );
                    return;
                }
                match config {
                    Ok(config) => out.push(Invocation::Containment { at, function, config, event, attempt }),
                    Err(e) => self.pipeline.failures.push(format!("{at}: containment function misconfigured: {e}")),
                }
            }
            Event::ScheduleFires { schedule } => {
                let Some(Detail::Schedule { function, .. }) = self.get(&schedule).map(|r| r.detail.clone()) else { return };
                // A one-time schedule with ActionAfterCompletion DELETE: gone once it fired.
                self.remove_with_children(&schedule);
                match self.get(&function).map(|r| &r.detail) {
                    Some(Detail::Function { code: FunctionCode::Janitor, environment, .. }) => match environment.get("CIS_LAB") {
                        Some(lab) => out.push(Invocation::Janitor { at, lab: lab.clone() }),
                        None => self.pipeline.failures.push(format!("{at}: janitor {function} has no CIS_LAB")),
                    },
                    _ => self.pipeline.failures.push(format!("{at}: schedule {schedule} fired but {function} is gone")),
                }
            }
            Event::EvaluateAlarm { alarm } => self.evaluate_alarm(at, &alarm, ctx),
            Event::OpenConnection { instance, source, index } => self.open_connection(at, &instance, source, index, ctx.workloads),
            Event::Chunk { conn } => self.chunk(at, conn),
        }
    }

    fn stream(&self, source: &Source, workloads: &[WorkloadProfile]) -> Option<Stream> {
        match source {
            Source::Workload { profile, stream } => workloads.iter().find(|p| p.id == *profile)?.streams.get(*stream).cloned(),
            Source::Attack { run, stream } => self.attacks.get(run)?.scenario.streams.get(*stream).cloned(),
        }
    }

    fn open_connection(&mut self, at: Timestamp, instance: &str, source: Source, index: u32, workloads: &[WorkloadProfile]) {
        let Some(stream) = self.stream(&source, workloads) else { return };
        let (eni, local) = match self.get(instance).map(|r| &r.detail) {
            Some(Detail::Instance { state: InstanceState::Running, interfaces, .. }) => match interfaces.first() {
                Some(i) => (i.id.clone(), i.private_ip.parse::<IpAddr>().expect("simulated addresses parse")),
                None => return,
            },
            _ => {
                // The target is gone: its streams end.
                if let Source::Attack { run, .. } = &source {
                    self.stream_finished(at, run);
                }
                return;
            }
        };
        let remote = stream.remote(index, &self.region, &mut self.rng);
        let port = stream.ports[index as usize % stream.ports.len()];
        let ephemeral = 32768 + self.rng.below(28_000) as u16;
        let outbound = stream.direction == Direction::Outbound;
        let (local_port, remote_port) = if outbound { (ephemeral, port) } else { (port, ephemeral) };
        let chunks = ((stream.duration_s / CHUNK_S).ceil() as u32).max(1);
        let (bytes_out, bytes_in) = stream.connection_bytes(&mut self.rng);
        let attack = match &source {
            Source::Attack { run, .. } => Some(run.clone()),
            Source::Workload { .. } => None,
        };
        let id = self.net.next_conn;
        self.net.next_conn += 1;
        self.net.conns.insert(
            id,
            Conn {
                instance: instance.to_string(),
                eni,
                local,
                local_port,
                remote,
                remote_port,
                protocol: stream.protocol.number(),
                outbound,
                established: false,
                tracked: true,
                attack: attack.clone(),
                chunks_left: chunks,
                out_per_chunk: bytes_out.div_ceil(chunks as u64),
                in_per_chunk: bytes_in.div_ceil(chunks as u64),
                gap_ms: ((stream.duration_s / chunks as f64) * 1000.0) as i64,
            },
        );
        if let Some(run) = &attack {
            if let Some(a) = self.attacks.get_mut(run) {
                a.open_conns += 1;
            }
        }
        self.schedule(at, Event::Chunk { conn: id });

        let last = stream.connections != 0 && index + 1 >= stream.connections;
        if last {
            if let Some(run) = &attack {
                self.stream_finished(at, run);
            }
            return;
        }
        let gap = match stream.arrival {
            Arrival::Periodic => stream.interval_s + self.rng.range_f64(-stream.jitter_s, stream.jitter_s),
            Arrival::Poisson => self.rng.exponential(stream.interval_s / stream.rate_factor(at.unix_seconds() as f64)),
        };
        self.schedule(at.plus_secs_f64(gap.max(0.001)), Event::OpenConnection { instance: instance.to_string(), source, index: index + 1 });
    }

    fn stream_finished(&mut self, at: Timestamp, run: &str) {
        if let Some(a) = self.attacks.get_mut(run) {
            a.streams_left = a.streams_left.saturating_sub(1);
            if a.streams_left == 0 && a.open_conns == 0 && a.finished_at.is_none() {
                a.finished_at = Some(at);
            }
        }
    }

    fn conn_closed(&mut self, at: Timestamp, conn: &Conn) {
        if let Some(run) = &conn.attack {
            if let Some(a) = self.attacks.get_mut(run) {
                a.open_conns = a.open_conns.saturating_sub(1);
                if a.streams_left == 0 && a.open_conns == 0 && a.finished_at.is_none() {
                    a.finished_at = Some(at);
                }
            }
        }
    }

    fn chunk(&mut self, at: Timestamp, id: u64) {
        let Some(mut conn) = self.net.conns.get(&id).cloned() else { return };
        let (groups, subnet) = match self.get(&conn.instance).map(|r| &r.detail) {
            Some(Detail::Instance { state: InstanceState::Running, interfaces, subnet, .. }) => {
                (interfaces.iter().find(|i| i.id == conn.eni).map(|i| i.groups.clone()).unwrap_or_default(), subnet.clone())
            }
            _ => {
                self.net.conns.remove(&id);
                self.conn_closed(at, &conn);
                return;
            }
        };
        let (ingress, egress) = self.group_rules(&groups);
        let permitted = if conn.outbound {
            egress.iter().any(|r| rule_matches(r, conn.remote, conn.remote_port, conn.protocol))
        } else {
            ingress.iter().any(|r| rule_matches(r, conn.remote, conn.local_port, conn.protocol))
        };
        // A network ACL is stateless and sits at the subnet's edge: its deny drops tracked
        // and untracked packets alike.
        let allowed = !self.subnet_cut(&subnet) && ((conn.established && conn.tracked) || permitted);
        let first = !conn.established;
        let (initiator_bytes, responder_bytes) =
            if conn.outbound { (conn.out_per_chunk, conn.in_per_chunk) } else { (conn.in_per_chunk, conn.out_per_chunk) };

        if allowed {
            conn.established = true;
            conn.tracked = conn.tracked && !self.untracked(&groups);
            let handshake = if first && conn.protocol == 6 { 2 } else { 0 };
            // As flow logs report them: the opener's record carries SYN, the answerer's
            // SYN-ACK; ACK alone is not reported.
            let tcp = conn.protocol == 6;
            let (opener_flags, answer_flags) = if first && tcp { (0x02, 0x12) } else { (0, 0) };
            self.record(at, &conn, true, true, initiator_bytes, handshake, opener_flags);
            if responder_bytes > 0 || handshake > 0 {
                self.record(at, &conn, false, true, responder_bytes, handshake, answer_flags);
            }
        } else {
            // Rejected: the SYN (or the data packets of a cut flow) is dropped; retries follow.
            let payload = if first { 0 } else { initiator_bytes };
            self.record(at, &conn, true, false, payload, if first { 3 } else { 0 }, if first && conn.protocol == 6 { 0x02 } else { 0 });
        }
        if let Some(run) = &conn.attack {
            if let Some(a) = self.attacks.get_mut(run) {
                a.transfers.push(Transfer { at, bytes_out: conn.out_per_chunk, accepted: allowed });
            }
        }
        conn.chunks_left -= 1;
        if !allowed || conn.chunks_left == 0 {
            self.net.conns.remove(&id);
            self.conn_closed(at, &conn);
            return;
        }
        let next = Timestamp(at.0 + conn.gap_ms.max(1));
        self.net.conns.insert(id, conn);
        self.schedule(next, Event::Chunk { conn: id });
    }

    /// Adds packets of one direction of a connection to every capturing flow log's window.
    #[allow(clippy::too_many_arguments)]
    fn record(&mut self, at: Timestamp, conn: &Conn, from_initiator: bool, accept: bool, payload: u64, extra_packets: u64, flags: u16) {
        let vpc = match self.get(&conn.instance).map(|r| &r.detail) {
            Some(Detail::Instance { vpc, .. }) => vpc.clone(),
            _ => return,
        };
        let logs: Vec<String> = self
            .live_resources()
            .into_iter()
            .filter(|r| matches!(&r.detail, Detail::FlowLog { vpc: v, capturing: true, .. } if *v == vpc))
            .map(|r| r.id.clone())
            .collect();
        let packets = payload.div_ceil(MSS) + extra_packets;
        if packets == 0 {
            return;
        }
        let bytes = payload + packets * HEADER;
        // Initiator -> responder; the local side is the initiator on outbound connections.
        let local_sends = from_initiator == conn.outbound;
        let (src, dst, sp, dp) = if local_sends {
            (conn.local, conn.remote, conn.local_port, conn.remote_port)
        } else {
            (conn.remote, conn.local, conn.remote_port, conn.local_port)
        };
        let s = at.unix_seconds();
        for fl in logs {
            let w = self.net.windows.entry(fl).or_default();
            match w.flows.iter_mut().find(|f| {
                f.eni == conn.eni
                    && f.src == src
                    && f.dst == dst
                    && f.srcport == sp
                    && f.dstport == dp
                    && f.protocol == conn.protocol
                    && f.accept == accept
            }) {
                Some(f) => {
                    f.packets += packets;
                    f.bytes += bytes;
                    f.last_s = s;
                    f.tcp_flags |= flags;
                }
                None => w.flows.push(FlowAgg {
                    eni: conn.eni.clone(),
                    instance: conn.instance.clone(),
                    src,
                    dst,
                    srcport: sp,
                    dstport: dp,
                    protocol: conn.protocol,
                    accept,
                    egress: local_sends,
                    packets,
                    bytes,
                    first_s: s,
                    last_s: s,
                    tcp_flags: flags,
                    attack: conn.attack.clone(),
                }),
            }
        }
    }

    fn close_window(&mut self, at: Timestamp, flow_log: &str, ctx: &Context) {
        let Some(Detail::FlowLog { vpc, log_group, interval_s, log_format, capturing: true, .. }) =
            self.get(flow_log).map(|r| r.detail.clone())
        else {
            self.net.windows.remove(flow_log);
            return;
        };
        let format = LogFormat::parse(&log_format).expect("checked at CreateFlowLogs");
        let window = std::mem::take(self.net.windows.entry(flow_log.to_string()).or_default());
        let start = window.start.unwrap_or(Timestamp(at.0 - interval_s as i64 * 1000));
        // Interfaces in the VPC that were up during the window.
        let interfaces: Vec<(String, String, String)> =
            self.live_resources()
                .into_iter()
                .filter_map(|r| match &r.detail {
                    Detail::Instance {
                        vpc: v, interfaces, state: InstanceState::Running | InstanceState::ShuttingDown, subnet, ..
                    } if *v == vpc => Some(interfaces.iter().map(|i| (i.id.clone(), r.id.clone(), subnet.clone())).collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .collect();
        let resolver = match self.get(&vpc).map(|r| &r.detail) {
            Some(Detail::Vpc { cidr }) => flowlog::amazon_dns_address(cidr),
            _ => None,
        };
        for (eni, instance, subnet) in interfaces {
            // What flow logs never record (the VPC's resolver, the link-local services)
            // is left out here too: a DNS tunnel leaves no record.
            let logged = |f: &&FlowAgg| !flowlog::unlogged_destination(f.dst, resolver) && !flowlog::unlogged_destination(f.src, resolver);
            let flows: Vec<&FlowAgg> = window.flows.iter().filter(|f| f.eni == eni).filter(logged).collect();
            let base = FlowRecord {
                version: Some(5),
                account_id: Some(self.account_id.clone()),
                interface_id: Some(eni.clone()),
                vpc_id: Some(vpc.clone()),
                subnet_id: Some(subnet.clone()),
                instance_id: Some(instance.clone()),
                ..Default::default()
            };
            let records: Vec<FlowRecord> = if flows.is_empty() {
                vec![FlowRecord {
                    start: Some(start.unix_seconds()),
                    end: Some(at.unix_seconds()),
                    log_status: Some(LogStatus::NoData),
                    ..base.clone()
                }]
            } else {
                flows
                    .iter()
                    .map(|f| FlowRecord {
                        srcaddr: Some(f.src),
                        dstaddr: Some(f.dst),
                        srcport: Some(f.srcport),
                        dstport: Some(f.dstport),
                        protocol: Some(f.protocol),
                        packets: Some(f.packets),
                        bytes: Some(f.bytes),
                        start: Some(f.first_s),
                        end: Some(f.last_s.max(f.first_s)),
                        action: Some(if f.accept { flowlog::Action::Accept } else { flowlog::Action::Reject }),
                        log_status: Some(LogStatus::Ok),
                        tcp_flags: (f.protocol == 6).then_some(f.tcp_flags),
                        traffic_type: Some(if f.src.is_ipv4() { "IPv4" } else { "IPv6" }.into()),
                        pkt_srcaddr: Some(f.src),
                        pkt_dstaddr: Some(f.dst),
                        flow_direction: Some(if f.egress { flowlog::Direction::Egress } else { flowlog::Direction::Ingress }),
                        // 8: through an internet gateway (the flow-log-records page's codes).
                        traffic_path: (f.egress && flowlog::is_external(f.dst)).then_some(8),
                        ..base.clone()
                    })
                    .collect()
            };
            let lines: Vec<String> = records.iter().map(|r| format.write(r)).collect();
            // Only a capture reads them: an account's queue stays as small as before.
            let labels: Vec<Option<String>> =
                if self.capture.is_some() && !flows.is_empty() { flows.iter().map(|f| f.attack.clone()).collect() } else { vec![] };
            let mut attack_runs: Vec<String> = flows.iter().filter_map(|f| f.attack.clone()).collect();
            attack_runs.sort();
            attack_runs.dedup();
            let delay = ctx.latency.draw(Delay::FlowLogDelivery, &mut self.rng);
            self.schedule(at.plus(delay), Event::Deliver { log_group: log_group.clone(), lines, attack_runs, labels });
        }
        self.net.windows.insert(flow_log.to_string(), Window { start: Some(at), flows: vec![] });
        self.schedule(at.plus_secs_f64(interval_s as f64), Event::WindowClose { flow_log: flow_log.to_string() });
    }

    /// PutEvents from the detector function: recorded, then routed by the rules.
    pub fn put_detections(&mut self, at: Timestamp, detections: &[DetectionEvent], ctx: &Context) {
        for d in detections {
            self.pipeline.detections.push(d.clone());
            let event = crate::functions::containment::eventbridge_event(d, &self.account_id, &self.region);
            self.put_event(at, event, ctx);
        }
    }

    /// What CloudWatch Logs does with a delivered batch for each metric filter on the
    /// group: matching events add to their metric, in the period of their timestamp (a
    /// flow record's start), visible to alarms after the metric's publication delay.
    fn apply_metric_filters(&mut self, at: Timestamp, log_group: &str, lines: &[String], ctx: &Context) {
        let filters: Vec<(String, crate::formats::metric::MetricTransformation)> = self
            .live_resources()
            .into_iter()
            .filter_map(|r| match &r.detail {
                Detail::MetricFilter { log_group: lg, pattern, transformation } if lg == log_group => {
                    Some((pattern.clone(), transformation.clone()))
                }
                _ => None,
            })
            .collect();
        for (pattern, transformation) in filters {
            let Ok(pattern) = crate::formats::metric::FilterPattern::parse(&pattern) else { continue };
            let sums = crate::formats::metric::period_sums(&pattern, &transformation, lines.iter().map(String::as_str), 60);
            for (key, periods) in sums {
                let visible_at = at.plus(ctx.latency.draw(Delay::MetricPublication, &mut self.rng));
                let series = self.metrics.entry(metric_id(&key)).or_default();
                series.extend(periods.into_iter().map(|(period, value)| Contribution { period, value, visible_at }));
                // A day is more than any alarm of the lab looks back.
                series.retain(|c| at.0 - c.period.0 <= 86_400_000);
            }
        }
    }

    /// One evaluation of an alarm: its state from the datapoints visible now; a move into
    /// ALARM is an EventBridge event (and, for the report, the detection).
    fn evaluate_alarm(&mut self, at: Timestamp, alarm: &str, ctx: &Context) {
        let Some(Detail::Alarm { metric, rule, state }) = self.get(alarm).map(|r| r.detail.clone()) else {
            return;
        };
        let mut sums = std::collections::BTreeMap::new();
        for c in self.metrics.get(&metric_id(&metric)).into_iter().flatten().filter(|c| c.visible_at <= at) {
            *sums.entry(c.period).or_insert(0.0) += c.value;
        }
        let evaluation = rule.evaluate(&sums, at);
        self.schedule(at.plus(std::time::Duration::from_secs(u64::from(rule.period_s))), Event::EvaluateAlarm { alarm: alarm.to_string() });
        if evaluation.state == state {
            return;
        }
        if let Some(Detail::Alarm { state, .. }) = self.resources.get_mut(alarm).map(|r| &mut r.detail) {
            *state = evaluation.state;
        }
        let name = self.get(alarm).map(|r| r.name.clone()).unwrap_or_default();
        let event = crate::formats::metric::state_change_event(&crate::formats::metric::StateChange {
            alarm_name: &name,
            alarm_arn: alarm,
            account: &self.account_id,
            region: &self.region,
            metric: &metric,
            rule: &rule,
            previous: state,
            evaluation: &evaluation,
            at,
        });
        if evaluation.state == crate::formats::metric::AlarmState::Alarm {
            if let Ok(detection) = crate::functions::containment::parse_event(&event) {
                self.pipeline.detections.push(detection);
            }
        }
        self.put_event(at, event, ctx);
    }

    /// InvokeEndpoint: the simulated Random Cut Forest endpoint serves the lab's model.
    pub fn invoke_endpoint(
        &self,
        name: &str,
        csv: &str,
        model: &crate::detect::anomaly::Model,
    ) -> Result<Vec<u8>, crate::cloud::CloudError> {
        use crate::cloud::CloudError;
        let endpoint = self
            .live_resources()
            .into_iter()
            .find(|r| r.kind == crate::model::lab::ResourceKind::SageMakerEndpoint && r.name == name)
            .map(|r| r.detail.clone());
        match endpoint {
            Some(Detail::Endpoint { status: EndpointStatus::InService, .. }) => {}
            Some(_) => return Err(CloudError::Invalid(format!("ValidationError: Endpoint {name} is not in service"))),
            None => {
                return Err(CloudError::NotFound { kind: crate::model::lab::ResourceKind::SageMakerEndpoint.name(), id: name.to_string() })
            }
        }
        let scores = model.score_csv(csv).map_err(|e| CloudError::Invalid(format!("ModelError: {e}")))?;
        Ok(serde_json::json!({"scores": scores.iter().map(|s| serde_json::json!({"score": s})).collect::<Vec<_>>()})
            .to_string()
            .into_bytes())
    }

    /// PutEvents: every rule whose pattern matches sends the event to its targets, if the
    /// target function lets EventBridge invoke it (else delivery fails silently, as on AWS).
    fn put_event(&mut self, at: Timestamp, event: serde_json::Value, ctx: &Context) {
        let live = self.live_resources();
        let rules: Vec<String> = live
            .iter()
            .filter(|r| matches!(&r.detail, Detail::EventRule { pattern } if pattern_matches(pattern, &event)))
            .map(|r| r.id.clone())
            .collect();
        let mut deliveries = Vec::new();
        let mut failures = Vec::new();
        for rule in rules {
            for t in live.iter().filter(|r| matches!(&r.detail, Detail::EventTarget { rule: rr, .. } if *rr == rule)) {
                let Detail::EventTarget { function, .. } = &t.detail else { continue };
                let permitted = live.iter().any(|p| {
                    matches!(&p.detail, Detail::Permission { function: f, principal, source_arn } if f == function && principal == "events.amazonaws.com" && *source_arn == rule)
                });
                if permitted {
                    deliveries.push(function.clone());
                } else {
                    failures.push(format!("{at}: {rule} could not invoke {function}: no permission for events.amazonaws.com"));
                }
            }
        }
        self.pipeline.failures.extend(failures);
        for function in deliveries {
            let copies = 1 + u32::from(ctx.faults().duplicate());
            for _ in 0..copies {
                let delay =
                    ctx.latency.draw(Delay::EventBridgeToLambda, &mut self.rng) + ctx.latency.draw(Delay::LambdaStart, &mut self.rng);
                self.schedule(
                    at.plus(delay),
                    Event::DeliverEvent { function: function.clone(), event: event.clone(), attempt: 0, delivery: 0 },
                );
            }
        }
    }

    /// Lambda's asynchronous queue after a failed invocation (`error` says why): `retry`
    /// again later, or, after the last retry, the event to the function's on-failure
    /// destination as Lambda's invocation record, published to the topic; dropped (and
    /// said so) where the function has none.
    pub fn retry_invocation(&mut self, at: Timestamp, attempt: u32, function: &str, retry: Event, error: &str) {
        if attempt < crate::model::lab::LAMBDA_ASYNC_RETRIES {
            self.schedule(at.plus(lambda_retry_delay(attempt)), retry);
            return;
        }
        let attempts = attempt + 1;
        let destination = match self.get(function).map(|r| &r.detail) {
            Some(Detail::Function { on_failure, .. }) => on_failure.clone(),
            _ => None,
        };
        let Some(topic) = destination else {
            self.pipeline.failures.push(format!("{at}: {function} failed {attempts} times: the event was dropped"));
            return;
        };
        let payload = match &retry {
            Event::DeliverEvent { event, .. } => event.clone(),
            Event::InvokeDetector { lines, .. } => {
                serde_json::from_str(&subscription_event(self, function, lines)).unwrap_or(serde_json::Value::Null)
            }
            _ => serde_json::Value::Null,
        };
        if self.get(&topic).is_none_or(|r| r.kind != ResourceKind::SnsTopic) {
            self.pipeline.failures.push(format!(
                "{at}: {function} failed {attempts} times and its on-failure destination {topic} is gone: the event was dropped"
            ));
            return;
        }
        let record = invocation_record(at, function, attempts, payload, error);
        // Lambda publishes the record as it is, with no subject: an email subscriber sees
        // SNS's default one.
        self.pipeline.notifications.push(SimNotification {
            at,
            topic,
            subject: LAMBDA_DESTINATION_SUBJECT.to_string(),
            message: record.to_string(),
        });
    }
}

/// The subject an email subscriber sees on a message published without one, as Lambda
/// publishes its invocation records.
pub const LAMBDA_DESTINATION_SUBJECT: &str = "AWS Notification Message";

/// The record Lambda sends an on-failure destination once it gave up on an asynchronous
/// event (AWS Lambda Developer Guide, "Capturing records of asynchronous invocations"):
/// the event as it was sent and the function's last error.
pub fn invocation_record(at: Timestamp, function_arn: &str, attempts: u32, payload: serde_json::Value, error: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "1.0",
        "timestamp": at.to_string(),
        "requestContext": {
            "requestId": format!("{}-{}", function_arn.rsplit(':').next().unwrap_or(function_arn), at.millis()),
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": payload,
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "responsePayload": { "errorMessage": error },
    })
}

/// EventBridge pattern matching for the subset the lab uses: objects nest, arrays list
/// accepted values.
pub fn pattern_matches(pattern: &str, event: &serde_json::Value) -> bool {
    fn matches(p: &serde_json::Value, e: &serde_json::Value) -> bool {
        match p {
            serde_json::Value::Object(map) => map.iter().all(|(k, sub)| e.get(k).is_some_and(|ev| matches(sub, ev))),
            serde_json::Value::Array(options) => options.iter().any(|o| o == e),
            other => other == e,
        }
    }
    serde_json::from_str::<serde_json::Value>(pattern).is_ok_and(|p| matches(&p, event))
}

/// The Lambda event CloudWatch Logs sends a subscribed function, for these lines.
pub fn subscription_event(w: &World, function: &str, lines: &[String]) -> String {
    use crate::formats::flowlog::envelope::{encode_lambda_event, LogEvent, LogsData};
    let filter = w.live_resources().into_iter().find_map(|r| match &r.detail {
        Detail::SubscriptionFilter { log_group, function: f, .. } if f == function => Some((log_group.clone(), r.name.clone())),
        _ => None,
    });
    let (log_group, filter) = filter.unwrap_or_default();
    let stream =
        lines.first().and_then(|l| l.split(' ').find(|f| f.starts_with("eni-"))).map(|eni| format!("{eni}-all")).unwrap_or_default();
    encode_lambda_event(&LogsData {
        message_type: "DATA_MESSAGE".into(),
        owner: w.account_id.clone(),
        log_group: log_group.rsplit(':').next().unwrap_or_default().to_string(),
        log_stream: stream,
        subscription_filters: vec![filter],
        log_events: lines
            .iter()
            .enumerate()
            .map(|(i, message)| LogEvent { id: i.to_string(), timestamp: w.now.millis(), message: message.clone() })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_and_rules() {
        assert!(cidr_contains("0.0.0.0/0", "203.0.113.5".parse().unwrap()));
        assert!(cidr_contains("198.51.100.7/32", "198.51.100.7".parse().unwrap()));
        assert!(!cidr_contains("198.51.100.7/32", "198.51.100.8".parse().unwrap()));
        let ssh = Rule { protocol: "tcp".into(), from_port: 22, to_port: 22, cidr: "198.51.100.7/32".into() };
        assert!(rule_matches(&ssh, "198.51.100.7".parse().unwrap(), 22, 6));
        assert!(!rule_matches(&ssh, "198.51.100.7".parse().unwrap(), 23, 6));
        assert!(rule_matches(&Rule::all_traffic("0.0.0.0/0"), "192.0.2.1".parse().unwrap(), 8443, 17));
    }

    #[test]
    fn event_patterns() {
        let e = serde_json::json!({"source": "cis.detector", "detail-type": "x", "detail": {"lab": "a"}});
        assert!(pattern_matches(r#"{"source":["cis.detector"],"detail":{"lab":["a","b"]}}"#, &e));
        assert!(!pattern_matches(r#"{"source":["cis.detector"],"detail":{"lab":["b"]}}"#, &e));
        assert!(!pattern_matches(r#"{"source":["aws.ec2"]}"#, &e));
    }
}
