//! Wall time for the whole program, read through one clock.
//!
//! Shared code never asks the operating system for the time: it asks a [`Clock`], which
//! adds the elapsed `tokio::time` to a base timestamp. On AWS the base is read from the
//! system once, here; the simulator sets it from its persisted virtual time and runs on a
//! paused runtime, so the same orchestration sees virtual minutes pass in wall milliseconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// 2026-01-01T00:00:00Z, where every new simulated account's clock starts.
    pub const SIM_EPOCH: Timestamp = Timestamp(1_767_225_600_000);

    pub fn millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, as flow-log records carry them.
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn from_unix_seconds(s: i64) -> Self {
        Timestamp(s * 1000)
    }

    pub fn plus(self, d: Duration) -> Self {
        Timestamp(self.0 + d.as_millis() as i64)
    }

    pub fn plus_secs_f64(self, s: f64) -> Self {
        Timestamp(self.0 + (s * 1000.0).round() as i64)
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn seconds_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1000.0
    }

    /// Duration from `earlier` to `self`, zero when `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis((self.0 - earlier.0).max(0) as u64)
    }

    /// Parses `2026-01-01T00:05:12.345Z`, `...+0000` or `...+00:00` (what CloudWatch and
    /// EventBridge write); other offsets are applied. RFC 3339 by `jiff`.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let t: jiff::Timestamp = text.parse().ok()?;
        Some(Timestamp(t.as_millisecond()))
    }

    /// Compact UTC form used in identifiers: `20260101T000000Z`.
    pub fn compact(self) -> String {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => t.strftime("%Y%m%dT%H%M%SZ").to_string(),
            Err(_) => format!("{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 with milliseconds: `2026-01-01T00:05:12.345Z`. An instant beyond what a
    /// calendar date can name (years past 9999, from hostile input) shows its milliseconds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match jiff::Timestamp::from_millisecond(self.0) {
            Ok(t) => write!(f, "{}", t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ")),
            Err(_) => write!(f, "{}ms since the epoch", self.0),
        }
    }
}

/// A time of day in UTC, to the minute (`02:10`): when a run should start, so that an
/// attack can meet the hour a workload is busy or quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeOfDay {
    minute_of_day: u32,
}

impl TimeOfDay {
    const DAY_MS: i64 = 86_400_000;

    /// The first instant at or after `t` whose UTC time of day is this one.
    pub fn next_at_or_after(self, t: Timestamp) -> Timestamp {
        let day_start = t.0.div_euclid(Self::DAY_MS) * Self::DAY_MS;
        let at = day_start + i64::from(self.minute_of_day) * 60_000;
        Timestamp(if at >= t.0 { at } else { at + Self::DAY_MS })
    }
}

impl std::str::FromStr for TimeOfDay {
    type Err = String;

    /// `HH:MM`, 24-hour, UTC.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a time of day: give HH:MM in UTC, 00:00 to 23:59 (for example 02:10)");
        let (h, m) = text.split_once(':').ok_or_else(bad)?;
        let digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || !digits(m) {
            return Err(bad());
        }
        let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay { minute_of_day: h * 60 + m })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02} UTC", self.minute_of_day / 60, self.minute_of_day % 60)
    }
}

/// The program's one source of wall time.
#[derive(Clone, Debug)]
pub struct Clock {
    base: Timestamp,
    origin: Instant,
    virtual_time: bool,
}

impl Clock {
    /// A clock that reads `base` now and advances with `tokio::time`. On the simulator's
    /// paused runtime that advance is virtual. Call it inside the runtime.
    pub fn virtual_from(base: Timestamp) -> Self {
        Clock { base, origin: Instant::now(), virtual_time: true }
    }

    /// A clock that follows the system's wall time: the only read of it in the program.
    pub fn system() -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Clock { base: Timestamp(now), origin: Instant::now(), virtual_time: false }
    }

    pub fn now(&self) -> Timestamp {
        self.base.plus(self.origin.elapsed())
    }

    /// Whether this clock runs on simulated time.
    pub fn is_virtual(&self) -> bool {
        self.virtual_time
    }

    /// The `tokio` instant at which this clock will read `t` (now, if `t` is past).
    pub fn instant_at(&self, t: Timestamp) -> Instant {
        let offset = (t.0 - self.base.0).max(0) as u64;
        let at = self.origin + Duration::from_millis(offset);
        at.max(Instant::now())
    }

    /// Sleeps until the clock reads `t`.
    pub async fn sleep_until(&self, t: Timestamp) {
        tokio::time::sleep_until(self.instant_at(t)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes_and_cloudwatch_offsets() {
        for t in [Timestamp::SIM_EPOCH, Timestamp(1_767_225_600_123 + 86_400_000 * 400), Timestamp(951_782_400_000)] {
            assert_eq!(Timestamp::parse_rfc3339(&t.to_string()), Some(t));
        }
        assert_eq!(Timestamp::parse_rfc3339("2026-01-01T00:00:00.000+0000"), Some(Timestamp::SIM_EPOCH));
        assert_eq!(Timestamp::parse_rfc3339("2026-01-01T01:00:00+01:00"), Some(Timestamp::SIM_EPOCH));
        assert_eq!(Timestamp::parse_rfc3339("2026-01-01T00:00:00.5Z"), Some(Timestamp(Timestamp::SIM_EPOCH.0 + 500)));
        for bad in ["", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+1"] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp::SIM_EPOCH.to_string(), "2026-01-01T00:00:00.000Z");
        assert_eq!(Timestamp(951_782_400_123).to_string(), "2000-02-29T00:00:00.123Z");
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(Timestamp::SIM_EPOCH.compact(), "20260101T000000Z");
    }

    #[test]
    fn a_time_of_day_is_met_at_or_after_now_and_refused_when_malformed() {
        let at: TimeOfDay = "02:10".parse().unwrap();
        let epoch = Timestamp::SIM_EPOCH;
        assert_eq!(at.next_at_or_after(epoch).to_string(), "2026-01-01T02:10:00.000Z");
        assert_eq!(at.next_at_or_after(epoch.plus(Duration::from_secs(2 * 3600 + 600))).to_string(), "2026-01-01T02:10:00.000Z");
        assert_eq!(at.next_at_or_after(epoch.plus(Duration::from_secs(2 * 3600 + 601))).to_string(), "2026-01-02T02:10:00.000Z");
        assert_eq!("00:00".parse::<TimeOfDay>().unwrap().next_at_or_after(epoch.plus(Duration::from_secs(1))).to_string(), "2026-01-02T00:00:00.000Z");
        assert_eq!(at.to_string(), "02:10 UTC");
        for bad in ["", "2:10", "24:00", "12:60", "12", "12:5", "+1:10", "12:10:00", "ab:cd"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_advances_with_tokio_time() {
        let clock = Clock::virtual_from(Timestamp::SIM_EPOCH);
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(clock.now(), Timestamp::SIM_EPOCH.plus(Duration::from_secs(300)));
        clock.sleep_until(Timestamp::SIM_EPOCH.plus(Duration::from_secs(360))).await;
        assert_eq!(clock.now().seconds_since(Timestamp::SIM_EPOCH), 360.0);
    }
}
