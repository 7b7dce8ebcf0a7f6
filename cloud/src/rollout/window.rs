//! Per-site maintenance windows: when, in the site's own time zone, a node may flip to its new slot and reboot.
//!
//! A node may download an update at any time, but it may flip only inside its site's window.
//! The endpoint turns a site's [`Schedule`] into the next few UTC intervals with [`Schedule::intervals`] and sends
//! them to the node, which compares its own clock against them, so the node needs no time-zone database and keeps
//! working offline for as long as the intervals reach.
//! Zones come from the system's time-zone database (`/usr/share/zoneinfo`, Debian's `tzdata`), so a change in a
//! country's daylight-saving rules reaches the endpoint with an ordinary package update.
//! It is a module of its own so that the one definition of "inside a window" below lives in one place, pure apart
//! from the zone lookup in [`Schedule::new`], and the rollout decisions only ask it.
//!
//! # What a window means on the days the clocks change
//!
//! An instant is inside a window exactly when the site's wall clock, at that instant, shows a time inside the window
//! on one of its listed days.
//! `mon-fri 02:00-04:00` therefore holds the instants at which the local clock reads between 02:00 and 04:00 on a
//! weekday, and `sun 23:00-01:30` those at which it reads from 23:00 on a Sunday to 01:30 the next Monday.
//! This is the promise an operator can check against the site's own clocks and logs: no node flips while the local
//! clock shows a time outside its window.
//!
//! On an ordinary day a window lasts in real time exactly what its wall-clock span says.
//! On the day the clocks move forward, the skipped wall times are never shown, so the part of the gap that lies
//! inside the window is lost: in Berlin on 2026-03-29, `02:00-04:00` is 03:00 to 04:00 CEST, one hour.
//! A window edge inside the gap therefore falls on the instant of the change, the first instant at which the clock
//! shows a time at or after that edge.
//! On the day the clocks move back, the repeated wall times are shown twice, so the part of the overlap that lies
//! inside the window counts twice: in Berlin on 2026-10-25, `02:00-04:00` runs from 02:00 CEST to 04:00 CET, three
//! hours.
//! A start inside the overlap takes its earlier instant and an end inside the overlap its later one, except that
//! the stretch in between during which the clock shows times outside the window is left out, so a window that starts
//! or ends inside the overlap can become two intervals on that day (`01:15-01:45` in New York on 2026-11-01 is
//! 01:15 to 01:45 EDT and again 01:15 to 01:45 EST).
//!
//! Jiff's "compatible" disambiguation, which reads a time in a gap with the offset before the change and a time in an
//! overlap as its earlier instant, is not used for either edge:
//! - a start inside a gap would move later by the length of the gap, so `02:30-03:30` would vanish on the spring day
//!   in Berlin although the clock shows 03:00 to 03:30;
//! - an end inside a gap would move past the gap, so a node could flip while its clock already shows a time after the
//!   window;
//! - an end inside an overlap would take its earlier instant and so drop the second pass through times the window
//!   holds.
//!
//! [`Schedule::contains`] applies this definition to one instant directly, and [`Schedule::intervals`] computes the
//! same set as UTC intervals from the zone's offset transitions; the tests check that the two agree.

use std::fmt;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Seconds in a day of wall-clock time, which is what local days are counted in here.
const SECS_PER_DAY: i64 = 86_400;

/// Minutes in a day: the largest end time, `24:00`.
const MINS_PER_DAY: u16 = 1440;

/// How far beyond the asked-for span the zone's offsets are looked up.
/// The windows scanned for a span open and close within three days of it in local time, and two offsets of a zone
/// differ by less than 52 hours (jiff keeps each within 26 hours of UTC), so six days covers every instant at which
/// one of them can be open.
const OFFSET_COVER_SECS: i64 = 6 * SECS_PER_DAY;

// What the error for a malformed window says was expected.
const EXPECTED_SHAPE: &str = "expected `DAYS HH:MM-HH:MM`, such as `mon-fri 02:00-04:00`";
const EXPECTED_DAYS: &str = "expected days as `mon`..`sun`, ranges such as `mon-fri`, lists joined by `,`, or `daily`";
const EXPECTED_RANGE: &str = "expected a day range between two different days, such as `mon-fri` or `fri-mon`";
const EXPECTED_TIMES: &str = "expected times as `HH:MM-HH:MM`, each from 00:00 to 24:00";
const EXPECTED_START: &str = "expected a start time before 24:00";
const EXPECTED_LENGTH: &str = "expected different start and end times (an end before the start crosses midnight)";

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Day {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Day {
    /// The week in order, Monday first; `Day as usize` indexes it.
    const ALL: [Day; 7] = [Day::Mon, Day::Tue, Day::Wed, Day::Thu, Day::Fri, Day::Sat, Day::Sun];

    /// The name as written in a window.
    fn name(self) -> &'static str {
        match self {
            Day::Mon => "mon",
            Day::Tue => "tue",
            Day::Wed => "wed",
            Day::Thu => "thu",
            Day::Fri => "fri",
            Day::Sat => "sat",
            Day::Sun => "sun",
        }
    }

    /// The day a window names, in any ASCII case, since operators write `Mon` as often as `mon`.
    fn from_name(name: &str) -> Option<Day> {
        Day::ALL.into_iter().find(|day| day.name().eq_ignore_ascii_case(name))
    }

    /// The day `n` days after this one, wrapping around the week.
    fn after(self, n: usize) -> Day {
        Day::ALL[(self as usize + n) % 7]
    }

    /// The weekday of a local day counted from 1970-01-01, which was a Thursday.
    fn of_local_day(day: i64) -> Day {
        let thursday = Day::Thu as i64;
        match (day.rem_euclid(7) + thursday) % 7 {
            0 => Day::Mon,
            1 => Day::Tue,
            2 => Day::Wed,
            3 => Day::Thu,
            4 => Day::Fri,
            5 => Day::Sat,
            _ => Day::Sun,
        }
    }
}

/// One recurring window as an operator writes it: `"mon-fri 02:00-04:00"`, `"sat,sun 00:00-24:00"`,
/// `"daily 23:00-01:30"`.
///
/// The fields hold what [`WindowSpec::parse`] guarantees.
/// A value built by hand that breaks those rules panics nowhere, but neither its text form nor its intervals are then
/// promised anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    /// The days on which the window opens, sorted and without duplicates.
    pub days: Vec<Day>,
    /// When the window opens, in minutes after local midnight, `0..1440`.
    pub start_min: u16,
    /// When the window closes, in minutes after local midnight, `1..=1440`.
    /// An end at or before the start is on the next day.
    pub end_min: u16,
}

impl WindowSpec {
    /// Parses the text form.
    ///
    /// Days are `mon`..`sun`, ranges such as `mon-fri` (a range may wrap around the week: `fri-mon`), lists of either
    /// joined by `,`, or `daily`, in any ASCII case.
    /// Times are `HH:MM`, from 00:00 to 24:00.
    /// An end at or before the start crosses midnight into the next day: `23:00-01:30` is 2.5 hours starting on each
    /// listed day, and `22:00-00:00` is the same window as `22:00-24:00`.
    /// A start equal to the end is refused, since it could mean an empty window or a whole day, and so is anything
    /// malformed; the error names the text and what was expected.
    pub fn parse(text: &str) -> Result<WindowSpec, WindowError> {
        let refuse = |expected| WindowError::Parse { text: text.to_owned(), expected };
        let mut parts = text.split_whitespace();
        let (Some(days), Some(times), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse(EXPECTED_SHAPE));
        };
        let days = parse_days(days).map_err(refuse)?;
        let (start, end) = times.split_once('-').ok_or_else(|| refuse(EXPECTED_TIMES))?;
        let start_min = parse_time(start).ok_or_else(|| refuse(EXPECTED_TIMES))?;
        let end_min = parse_time(end).ok_or_else(|| refuse(EXPECTED_TIMES))?;
        if start_min == MINS_PER_DAY {
            return Err(refuse(EXPECTED_START));
        }
        if start_min == end_min {
            return Err(refuse(EXPECTED_LENGTH));
        }
        // An end of 00:00 after a later start is midnight at the end of the start's day, which `end_min` spells 1440.
        let end_min = if end_min == 0 { MINS_PER_DAY } else { end_min };
        Ok(WindowSpec { days, start_min, end_min })
    }

    /// Whether the window opens on the given local day (counted from 1970-01-01).
    fn opens_on(&self, day: i64) -> bool {
        self.days.contains(&Day::of_local_day(day))
    }

    /// The wall-clock span `[start, end)` of the window opening on the given local day, in local seconds: seconds
    /// since 1970-01-01T00:00 as the site's wall clock counts them.
    fn local_span(&self, day: i64) -> (i64, i64) {
        let midnight = day * SECS_PER_DAY;
        let start = midnight + i64::from(self.start_min) * 60;
        let end_day = if self.end_min > self.start_min { midnight } else { midnight + SECS_PER_DAY };
        (start, end_day + i64::from(self.end_min) * 60)
    }
}

/// Days as a window writes them: `daily`, or comma-joined days and ranges.
fn parse_days(text: &str) -> Result<Vec<Day>, &'static str> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(Day::ALL.to_vec());
    }
    let mut days = Vec::new();
    for item in text.split(',') {
        match item.split_once('-') {
            Some((first, last)) => {
                let first = Day::from_name(first).ok_or(EXPECTED_DAYS)?;
                let last = Day::from_name(last).ok_or(EXPECTED_DAYS)?;
                // `mon-mon` could mean one day or the whole week, so neither is guessed.
                if first == last {
                    return Err(EXPECTED_RANGE);
                }
                let len = (last as usize + 7 - first as usize) % 7 + 1;
                days.extend((0..len).map(|n| first.after(n)));
            }
            None => days.push(Day::from_name(item).ok_or(EXPECTED_DAYS)?),
        }
    }
    days.sort_unstable();
    days.dedup();
    Ok(days)
}

/// `HH:MM` from 00:00 to 24:00 as minutes after midnight; exactly two digits each, so `2:00` and `10` are refused.
fn parse_time(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let two_digits = |part: &str| -> Option<u16> {
        if part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (hours, minutes) = (two_digits(hours)?, two_digits(minutes)?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= MINS_PER_DAY).then_some(total)
}

impl fmt::Display for WindowSpec {
    /// The canonical text form, which parses back to the same value: `mon-fri 02:00-04:00`, `daily 23:00-01:30`,
    /// `mon,wed,fri 10:00-11:00`.
    /// Runs of three or more days in a row are written as ranges, wrapping around the week if they do (`fri-mon`),
    /// shorter runs day by day, all in week order of their first day, and all seven days as `daily`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut present = [false; 7];
        for day in &self.days {
            present[*day as usize] = true;
        }
        if present.iter().all(|p| *p) {
            f.write_str("daily")?;
        } else {
            // Each item is the index of its first day and its text; runs are followed from just after a missing
            // day, so that one wrapping around Sunday stays whole.
            let mut items: Vec<(usize, String)> = Vec::new();
            let missing = present.iter().position(|p| !*p).unwrap_or(0);
            let mut run: Vec<Day> = Vec::new();
            for n in 1..=7 {
                let day = Day::ALL[missing].after(n);
                if present[day as usize] {
                    run.push(day);
                    continue;
                }
                match run.as_slice() {
                    [first, .., last] if run.len() >= 3 => {
                        items.push((*first as usize, format!("{}-{}", first.name(), last.name())));
                    }
                    short => items.extend(short.iter().map(|day| (*day as usize, day.name().to_owned()))),
                }
                run.clear();
            }
            items.sort();
            for (n, (_, item)) in items.iter().enumerate() {
                if n > 0 {
                    f.write_str(",")?;
                }
                f.write_str(item)?;
            }
        }
        write!(
            f,
            " {:02}:{:02}-{:02}:{:02}",
            self.start_min / 60,
            self.start_min % 60,
            self.end_min / 60,
            self.end_min % 60
        )
    }
}

/// A site's schedule: its IANA time zone and its windows.
/// No windows means "any time".
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The zone's canonical IANA name, as the database spells it.
    zone: String,
    tz: TimeZone,
    windows: Vec<WindowSpec>,
}

impl Schedule {
    /// Looks up `time_zone` (such as `Europe/Berlin`, `America/New_York` or `UTC`) in the system's time-zone
    /// database, ignoring ASCII case as the database does.
    /// An unknown zone is an error naming it; so is `Etc/Unknown`, which names no place.
    pub fn new(time_zone: &str, windows: Vec<WindowSpec>) -> Result<Schedule, WindowError> {
        let unknown = || WindowError::UnknownZone { zone: time_zone.to_owned() };
        let tz = TimeZone::get(time_zone).map_err(|_| unknown())?;
        if tz.is_unknown() {
            return Err(unknown());
        }
        let zone = tz.iana_name().unwrap_or(time_zone).to_owned();
        Ok(Schedule { zone, tz, windows })
    }

    /// The zone's IANA name, as the database spells it (`europe/berlin` is looked up as `Europe/Berlin`).
    pub fn time_zone(&self) -> &str {
        &self.zone
    }

    /// The windows, as given.
    pub fn windows(&self) -> &[WindowSpec] {
        &self.windows
    }

    /// Whether `at` (seconds since the Unix epoch, UTC) is inside a window: whether the site's wall clock then shows
    /// a time inside one of them.
    ///
    /// With no windows this is always true.
    /// Otherwise it is true exactly when `at` lies in one of the intervals of `self.intervals(at, 1)`.
    /// An instant outside the range jiff can represent (years -9999 to 9999) is never inside a window.
    pub fn contains(&self, at: i64) -> bool {
        if self.windows.is_empty() {
            return true;
        }
        let Ok(timestamp) = Timestamp::from_second(at) else {
            return false;
        };
        let local = at + i64::from(self.tz.to_offset(timestamp).seconds());
        let today = local.div_euclid(SECS_PER_DAY);
        // A window spans at most 24 hours of wall-clock time from its own day, so the one whose span holds the
        // reading now, if any, opened today or yesterday.
        self.windows.iter().any(|window| {
            [today - 1, today].into_iter().any(|day| {
                let (start, end) = window.local_span(day);
                window.opens_on(day) && start <= local && local < end
            })
        })
    }

    /// The windows as UTC intervals `[start, end)`, in seconds since the Unix epoch, that overlap
    /// `[from, from + horizon_secs)`: sorted, with overlapping or touching intervals merged.
    ///
    /// Intervals are whole rather than clipped to the span: one already open at `from` comes with its real start, and
    /// the last one with its real end even past the span.
    /// The only exception is a run of windows that follow each other without a break (such as `daily 00:00-24:00`):
    /// it is followed back only to the window opening two local days before the one `from` falls on, and forward
    /// only to the window opening the local day after the span ends.
    /// On the days the clocks change, a window can be shorter or longer than its wall-clock span, or split in two;
    /// the module documentation says how.
    ///
    /// With no windows this is empty, and the caller must read that as "any time", as [`Schedule::contains`] does.
    /// It is also empty for a horizon of zero or less, and the span is cut off where jiff's range ends (years -9999
    /// to 9999).
    /// The work grows with the number of days in the horizon times the number of windows.
    pub fn intervals(&self, from: i64, horizon_secs: i64) -> Vec<(i64, i64)> {
        let (first_secs, last_secs) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        if self.windows.is_empty() || horizon_secs <= 0 || from < first_secs || from > last_secs {
            return Vec::new();
        }
        let to = from.saturating_add(horizon_secs).min(last_secs + 1);
        let offsets = Offsets::between(
            &self.tz,
            from.saturating_sub(OFFSET_COVER_SECS).max(first_secs),
            to.saturating_add(OFFSET_COVER_SECS).min(last_secs + 1),
        );

        // An instant `t` in the span is inside the window opening on local day D only if D is the local day of `t`
        // or the day before; the offsets in force during the span bound the local days `t` can fall on.
        // One more day on each side finds windows that touch those and so extend an interval's real start or end.
        let (least, most) = offsets.extremes_within(from, to);
        let first_day = (from + least).div_euclid(SECS_PER_DAY) - 2;
        let last_day = (to - 1 + most).div_euclid(SECS_PER_DAY) + 1;

        let mut found = Vec::new();
        for day in first_day..=last_day {
            for window in self.windows.iter().filter(|window| window.opens_on(day)) {
                let (start, end) = window.local_span(day);
                offsets.instants_showing(start, end, &mut found);
            }
        }
        found.sort_unstable();

        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged.retain(|&(start, end)| start < to && end > from);
        merged
    }
}

/// A stretch of instants `[start, end)` during which a zone's offset from UTC stays `offset_secs`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    start: i64,
    end: i64,
    offset_secs: i64,
}

/// A zone's offsets over a span of instants, as consecutive segments split at its transitions.
struct Offsets {
    segments: Vec<Segment>,
    least_secs: i64,
    most_secs: i64,
}

impl Offsets {
    /// The offsets of `tz` over `[start, end)`, both within jiff's range.
    fn between(tz: &TimeZone, start: i64, end: i64) -> Offsets {
        let mut segments = Vec::new();
        if let Ok(first) = Timestamp::from_second(start) {
            let mut segment = Segment { start, end, offset_secs: i64::from(tz.to_offset(first).seconds()) };
            // A transition at instant T gives T the new offset, as `TimeZone::to_offset` does, so `contains` and the
            // segments agree on the instants of the changes themselves.
            for transition in tz.following(first) {
                let at = transition.timestamp().as_second();
                if at >= end {
                    break;
                }
                segments.push(Segment { end: at, ..segment });
                segment = Segment { start: at, end, offset_secs: i64::from(transition.offset().seconds()) };
            }
            segments.push(segment);
        }
        let least_secs = segments.iter().map(|s| s.offset_secs).min().unwrap_or(0);
        let most_secs = segments.iter().map(|s| s.offset_secs).max().unwrap_or(0);
        Offsets { segments, least_secs, most_secs }
    }

    /// The least and the greatest offset in force at some instant of `[from, to)`.
    fn extremes_within(&self, from: i64, to: i64) -> (i64, i64) {
        let within = || self.segments.iter().filter(|s| s.start < to && s.end > from).map(|s| s.offset_secs);
        (within().min().unwrap_or(0), within().max().unwrap_or(0))
    }

    /// Pushes onto `found` the intervals of instants at which the wall clock shows a local second in
    /// `[local_start, local_end)`: in each segment, the instants whose local reading under that segment's offset
    /// falls in the span.
    /// A skipped stretch of wall time thus yields nothing, and a repeated one yields an interval on each side of the
    /// change.
    fn instants_showing(&self, local_start: i64, local_end: i64, found: &mut Vec<(i64, i64)>) {
        let earliest = local_start - self.most_secs;
        let latest = local_end - self.least_secs;
        let first = self.segments.partition_point(|s| s.end <= earliest);
        for segment in self.segments.iter().skip(first).take_while(|s| s.start < latest) {
            let start = segment.start.max(local_start - segment.offset_secs);
            let end = segment.end.min(local_end - segment.offset_secs);
            if start < end {
                found.push((start, end));
            }
        }
    }
}

/// Why a window or a schedule was refused.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The text of a window is malformed.
    #[error("window {text:?}: {expected}")]
    Parse {
        /// The window as written.
        text: String,
        /// What was expected instead.
        expected: &'static str,
    },
    /// The time zone is not in the system's time-zone database.
    #[error("unknown time zone {zone:?} (not in the system's time-zone database)")]
    UnknownZone {
        /// The zone as given.
        zone: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds since the epoch of an RFC 3339 instant such as `2026-03-29T01:00:00Z`.
    fn utc(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap_or_else(|e| panic!("{text}: {e}")).as_second()
    }

    fn schedule(zone: &str, windows: &[&str]) -> Schedule {
        let windows = windows.iter().map(|w| WindowSpec::parse(w).unwrap_or_else(|e| panic!("{e}"))).collect();
        Schedule::new(zone, windows).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_accepts_and_displays_canonically() {
        use Day::*;
        fn check(text: &str, days: &[Day], start_min: u16, end_min: u16, canonical: &str) {
            let spec = WindowSpec::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(spec, WindowSpec { days: days.to_vec(), start_min, end_min }, "{text}");
            assert_eq!(spec.to_string(), canonical, "{text}");
            assert_eq!(WindowSpec::parse(canonical).expect("the canonical form parses"), spec, "{canonical}");
        }
        check("mon-fri 02:00-04:00", &[Mon, Tue, Wed, Thu, Fri], 120, 240, "mon-fri 02:00-04:00");
        check("sat,sun 00:00-24:00", &[Sat, Sun], 0, 1440, "sat,sun 00:00-24:00");
        check("daily 23:00-01:30", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun], 1380, 90, "daily 23:00-01:30");
        check("mon-sun 10:00-11:00", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun], 600, 660, "daily 10:00-11:00");
        check("tue-mon 10:00-11:00", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun], 600, 660, "daily 10:00-11:00");
        check("fri,wed,mon 10:00-11:00", &[Mon, Wed, Fri], 600, 660, "mon,wed,fri 10:00-11:00");
        check("fri-mon 01:00-05:00", &[Mon, Fri, Sat, Sun], 60, 300, "fri-mon 01:00-05:00");
        check("sat-mon,wed 01:00-05:00", &[Mon, Wed, Sat, Sun], 60, 300, "wed,sat-mon 01:00-05:00");
        check("sun,mon 01:00-05:00", &[Mon, Sun], 60, 300, "mon,sun 01:00-05:00");
        check("mon,tue,wed 01:00-05:00", &[Mon, Tue, Wed], 60, 300, "mon-wed 01:00-05:00");
        check("mon-wed,tue-thu,thu 01:00-05:00", &[Mon, Tue, Wed, Thu], 60, 300, "mon-thu 01:00-05:00");
        check("mon,tue,thu,fri,sat 01:00-05:00", &[Mon, Tue, Thu, Fri, Sat], 60, 300, "mon,tue,thu-sat 01:00-05:00");
        check("Mon-FRI  02:00-04:00", &[Mon, Tue, Wed, Thu, Fri], 120, 240, "mon-fri 02:00-04:00");
        check(" Daily 00:00-24:00 ", &[Mon, Tue, Wed, Thu, Fri, Sat, Sun], 0, 1440, "daily 00:00-24:00");
        check("sun 22:00-00:00", &[Sun], 1320, 1440, "sun 22:00-24:00");
        check("sun 23:59-23:58", &[Sun], 1439, 1438, "sun 23:59-23:58");
        check("sun 00:00-00:01", &[Sun], 0, 1, "sun 00:00-00:01");
    }

    #[test]
    fn parse_refuses_malformed() {
        fn check(text: &str) {
            let err = WindowSpec::parse(text).expect_err("a malformed window");
            assert!(matches!(&err, WindowError::Parse { text: t, .. } if t == text), "{text:?}: {err:?}");
        }
        check("");
        check("   ");
        check("daily");
        check("10:00");
        check("mon 25:00-26:00");
        check("mon 10:00-25:00");
        check("mon 24:01-02:00");
        check("mon 10:00-24:01");
        check("mon 24:00-02:00");
        check("mon 10:60-11:00");
        check("mon 10:00-10:00");
        check("mon 00:00-00:00");
        check("mon 00:00-24:00-01:00");
        check("mon- 10:00-11:00");
        check("-mon 10:00-11:00");
        check("mon-mon 10:00-11:00");
        check("mon-tue-wed 10:00-11:00");
        check("funday 10:00-11:00");
        check("mon,,tue 10:00-11:00");
        check("mon, 10:00-11:00");
        check("daily,mon 10:00-11:00");
        check("monday 10:00-11:00");
        check("mon 10-11");
        check("mon 10:00");
        check("mon 2:00-04:00");
        check("mon 02:00-4:00");
        check("mon 02:00 04:00");
        check("mon 02:00-04:00 extra");
        check("mon +1:00-04:00");
        check("mon 10:00-11:00\u{0}");
    }

    #[test]
    fn display_of_constructed_values() {
        use Day::*;
        fn check(days: &[Day], start_min: u16, end_min: u16, expected: &str) {
            assert_eq!(WindowSpec { days: days.to_vec(), start_min, end_min }.to_string(), expected);
        }
        check(&[Sat, Sun, Mon], 0, 1440, "sat-mon 00:00-24:00");
        check(&[Sun], 1439, 1, "sun 23:59-00:01");
        check(&[Tue, Wed, Thu, Sat, Sun], 5, 10, "tue-thu,sat,sun 00:05-00:10");
        check(&[Mon, Tue, Wed, Thu, Fri, Sat], 60, 120, "mon-sat 01:00-02:00");
        check(&[Tue, Wed, Thu, Fri, Sat, Sun], 60, 120, "tue-sun 01:00-02:00");
        check(&[Wed, Thu, Fri, Sat, Sun, Mon], 60, 120, "wed-mon 01:00-02:00");
    }

    /// Checks the intervals of `windows` in `zone` over `hours` from `from`, all instants in RFC 3339 UTC.
    fn check(zone: &str, windows: &[&str], from: &str, hours: i64, expected: &[(&str, &str)]) {
        let got = schedule(zone, windows).intervals(utc(from), hours * 3600);
        let expected: Vec<(i64, i64)> = expected.iter().map(|(s, e)| (utc(s), utc(e))).collect();
        assert_eq!(got, expected, "{zone} {windows:?} from {from} for {hours} h");
    }

    #[test]
    fn berlin_ordinary_days() {
        let weekdays = &["mon-fri 02:00-04:00"];
        // Tuesday 2026-01-13 is in CET (UTC+1) and Tuesday 2026-07-14 in CEST (UTC+2).
        check(
            "Europe/Berlin",
            weekdays,
            "2026-01-12T23:00:00Z",
            24,
            &[("2026-01-13T01:00:00Z", "2026-01-13T03:00:00Z")],
        );
        check(
            "Europe/Berlin",
            weekdays,
            "2026-07-13T22:00:00Z",
            24,
            &[("2026-07-14T00:00:00Z", "2026-07-14T02:00:00Z")],
        );
        // Saturday 2026-01-17 has no window.
        check("Europe/Berlin", weekdays, "2026-01-16T23:00:00Z", 24, &[]);
        check(
            "Europe/Berlin",
            weekdays,
            "2026-01-16T23:00:00Z",
            72,
            &[("2026-01-19T01:00:00Z", "2026-01-19T03:00:00Z")],
        );
    }

    #[test]
    fn berlin_clock_changes() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00Z. From local midnight, 23 hours of real time.
        let spring = "2026-03-28T23:00:00Z";
        check("Europe/Berlin", &["daily 02:00-04:00"], spring, 23, &[("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z")]);
        check("Europe/Berlin", &["daily 01:00-03:00"], spring, 23, &[("2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z")]);
        check("Europe/Berlin", &["daily 01:00-02:30"], spring, 23, &[("2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z")]);
        check("Europe/Berlin", &["daily 02:30-04:00"], spring, 23, &[("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z")]);
        // A window wholly inside the skipped hour does not happen that day.
        check("Europe/Berlin", &["daily 02:15-02:45"], spring, 23, &[]);
        check("Europe/Berlin", &["daily 02:15-02:45"], spring, 48, &[("2026-03-30T00:15:00Z", "2026-03-30T00:45:00Z")]);
        // Saturday night across the change: 3.5 hours on the wall clock, 2.5 in real time.
        check(
            "Europe/Berlin",
            &["sat 23:00-03:30"],
            "2026-03-28T00:00:00Z",
            24,
            &[("2026-03-28T22:00:00Z", "2026-03-29T01:30:00Z")],
        );

        // 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00Z. From local midnight, 25 hours of real time.
        let autumn = "2026-10-24T22:00:00Z";
        check("Europe/Berlin", &["daily 02:00-04:00"], autumn, 25, &[("2026-10-25T00:00:00Z", "2026-10-25T03:00:00Z")]);
        check("Europe/Berlin", &["daily 02:00-03:00"], autumn, 25, &[("2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z")]);
        check("Europe/Berlin", &["daily 01:00-03:00"], autumn, 25, &[("2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z")]);
        // Windows starting or ending inside the repeated hour leave out the stretch the clock shows outside them.
        check(
            "Europe/Berlin",
            &["daily 01:00-02:30"],
            autumn,
            25,
            &[("2026-10-24T23:00:00Z", "2026-10-25T00:30:00Z"), ("2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z")],
        );
        check(
            "Europe/Berlin",
            &["daily 02:30-04:00"],
            autumn,
            25,
            &[("2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z"), ("2026-10-25T01:30:00Z", "2026-10-25T03:00:00Z")],
        );
        check(
            "Europe/Berlin",
            &["daily 02:15-02:45"],
            autumn,
            25,
            &[("2026-10-25T00:15:00Z", "2026-10-25T00:45:00Z"), ("2026-10-25T01:15:00Z", "2026-10-25T01:45:00Z")],
        );
    }

    #[test]
    fn new_york_clock_changes() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT at 07:00Z.
        let spring = "2026-03-08T05:00:00Z";
        check(
            "America/New_York",
            &["daily 01:00-03:00"],
            spring,
            23,
            &[("2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z")],
        );
        check(
            "America/New_York",
            &["daily 02:00-04:00"],
            spring,
            23,
            &[("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z")],
        );
        check("America/New_York", &["sun 02:15-02:45"], spring, 23, &[]);
        // 2026-11-01: 02:00 EDT becomes 01:00 EST at 06:00Z.
        let autumn = "2026-11-01T04:00:00Z";
        check(
            "America/New_York",
            &["daily 01:00-03:00"],
            autumn,
            25,
            &[("2026-11-01T05:00:00Z", "2026-11-01T08:00:00Z")],
        );
        check(
            "America/New_York",
            &["daily 01:15-01:45"],
            autumn,
            25,
            &[("2026-11-01T05:15:00Z", "2026-11-01T05:45:00Z"), ("2026-11-01T06:15:00Z", "2026-11-01T06:45:00Z")],
        );
        // Across both nights of the change, a window crossing midnight is one interval each.
        check(
            "America/New_York",
            &["sat 23:00-03:00"],
            "2026-03-07T05:00:00Z",
            48,
            &[("2026-03-08T04:00:00Z", "2026-03-08T07:00:00Z")],
        );
        check(
            "America/New_York",
            &["sat 23:00-03:00"],
            "2026-10-31T04:00:00Z",
            48,
            &[("2026-11-01T03:00:00Z", "2026-11-01T08:00:00Z")],
        );
    }

    #[test]
    fn new_york_windows_cross_midnight_and_the_week() {
        // Sunday 2026-01-04 23:00 EST to Monday 01:30 EST.
        check(
            "America/New_York",
            &["sun 23:00-01:30"],
            "2026-01-01T00:00:00Z",
            7 * 24,
            &[("2026-01-05T04:00:00Z", "2026-01-05T06:30:00Z")],
        );
        // Starting on Monday morning, the Sunday window still open is returned with its real start.
        check(
            "America/New_York",
            &["sun 23:00-01:30"],
            "2026-01-05T06:00:00Z",
            1,
            &[("2026-01-05T04:00:00Z", "2026-01-05T06:30:00Z")],
        );
        check(
            "America/New_York",
            &["daily 23:00-01:30"],
            "2026-01-04T05:00:00Z",
            48,
            &[
                ("2026-01-04T04:00:00Z", "2026-01-04T06:30:00Z"),
                ("2026-01-05T04:00:00Z", "2026-01-05T06:30:00Z"),
                ("2026-01-06T04:00:00Z", "2026-01-06T06:30:00Z"),
            ],
        );
    }

    #[test]
    fn intervals_are_whole_sorted_and_merged() {
        // Berlin in winter: 10:00 CET is 09:00Z.
        let from = "2026-02-10T10:00:00Z";
        check("Europe/Berlin", &["daily 10:00-12:00"], from, 1, &[("2026-02-10T09:00:00Z", "2026-02-10T11:00:00Z")]);
        check(
            "Europe/Berlin",
            &["daily 11:00-13:00", "daily 10:00-12:00"],
            from,
            24,
            &[("2026-02-10T09:00:00Z", "2026-02-10T12:00:00Z"), ("2026-02-11T09:00:00Z", "2026-02-11T12:00:00Z")],
        );
        check(
            "Europe/Berlin",
            &["daily 11:00-12:00", "daily 10:00-11:00"],
            from,
            1,
            &[("2026-02-10T09:00:00Z", "2026-02-10T11:00:00Z")],
        );
        // The last interval keeps its real end past the horizon.
        check(
            "Europe/Berlin",
            &["daily 10:00-12:00"],
            "2026-02-10T08:59:00Z",
            1,
            &[("2026-02-10T09:00:00Z", "2026-02-10T11:00:00Z")],
        );
        // An interval ending exactly at `from` is over, and one starting exactly at the horizon has not begun.
        check("Europe/Berlin", &["daily 10:00-12:00"], "2026-02-10T11:00:00Z", 22, &[]);
        // Back-to-back days merge into one interval, followed back to the window opening two local days before
        // Wednesday's and forward to Thursday's, although Friday's window continues the run.
        check(
            "Europe/Berlin",
            &["mon-fri 00:00-24:00"],
            "2026-02-11T12:00:00Z",
            1,
            &[("2026-02-08T23:00:00Z", "2026-02-12T23:00:00Z")],
        );
        check(
            "Europe/Berlin",
            &["daily 00:00-24:00"],
            "2026-02-11T12:00:00Z",
            1,
            &[("2026-02-08T23:00:00Z", "2026-02-12T23:00:00Z")],
        );
        // From Friday, the run that began on Monday night is followed back only to Wednesday's windows.
        check(
            "Europe/Berlin",
            &["mon-fri 22:00-02:00", "tue-sat 01:00-23:00"],
            "2026-02-13T12:00:00Z",
            1,
            &[("2026-02-11T00:00:00Z", "2026-02-14T22:00:00Z")],
        );
    }

    #[test]
    fn utc_zone() {
        let schedule = schedule("UTC", &["mon-fri 02:00-04:00"]);
        assert_eq!(schedule.time_zone(), "UTC");
        assert_eq!(schedule.windows().len(), 1);
        check(
            "UTC",
            &["mon-fri 02:00-04:00"],
            "2026-03-29T00:00:00Z",
            48,
            &[("2026-03-30T02:00:00Z", "2026-03-30T04:00:00Z")],
        );
        check(
            "utc",
            &["sun 23:00-01:00"],
            "2026-03-29T00:00:00Z",
            48,
            &[("2026-03-29T23:00:00Z", "2026-03-30T01:00:00Z")],
        );
    }

    #[test]
    fn zone_names() {
        fn check(name: &str, canonical: Option<&str>) {
            match (Schedule::new(name, Vec::new()), canonical) {
                (Ok(schedule), Some(canonical)) => assert_eq!(schedule.time_zone(), canonical),
                (Err(WindowError::UnknownZone { zone }), None) => assert_eq!(zone, name),
                (got, _) => panic!("{name:?}: {got:?}"),
            }
        }
        check("Europe/Berlin", Some("Europe/Berlin"));
        check("europe/berlin", Some("Europe/Berlin"));
        check("America/New_York", Some("America/New_York"));
        check("UTC", Some("UTC"));
        check("Mars/Olympus", None);
        check("Etc/Unknown", None);
        check("", None);
        check("../../etc/passwd", None);
    }

    #[test]
    fn no_windows_means_any_time() {
        let schedule = schedule("Europe/Berlin", &[]);
        for at in [i64::MIN, -1, 0, utc("2026-03-29T01:30:00Z"), i64::MAX] {
            assert!(schedule.contains(at));
            assert_eq!(schedule.intervals(at, 7 * 86_400), Vec::new());
        }
    }

    #[test]
    fn instants_beyond_jiffs_range() {
        let schedule = schedule("Europe/Berlin", &["daily 00:00-24:00"]);
        let (first, last) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        assert!(!schedule.contains(i64::MIN));
        assert!(!schedule.contains(i64::MAX));
        assert!(!schedule.contains(first - 1));
        assert_eq!(schedule.intervals(i64::MIN, i64::MAX), Vec::new());
        assert_eq!(schedule.intervals(last + 1, 10), Vec::new());
        assert_eq!(schedule.intervals(0, 0), Vec::new());
        assert_eq!(schedule.intervals(0, -5), Vec::new());
        // At the ends of the range the instants that can be represented are still answered, without panics.
        for (at, horizon_secs) in [(first, 86_400), (first + 1, 86_400), (last - 1, i64::MAX), (last, i64::MAX)] {
            assert!(schedule.contains(at), "{at}");
            let got = schedule.intervals(at, horizon_secs);
            assert!(got.iter().any(|&(start, end)| start <= at && at < end), "{at}: {got:?}");
        }
    }

    /// Schedules whose edges fall inside, at and around the clock changes, and across midnight and the week.
    const PROPERTY_WINDOWS: &[&[&str]] = &[
        &["mon-fri 02:00-04:00"],
        &["daily 02:00-04:00"],
        &["daily 01:00-02:30", "sun 02:15-02:45"],
        &["daily 02:30-03:30"],
        &["sat,sun 01:15-01:45", "sun 23:00-01:30"],
        &["daily 23:00-01:30", "fri-sun 12:00-20:00"],
        &["wed 12:00-11:00"],
    ];

    /// The zone's transitions from `start` up to `end`.
    fn transitions(zone: &str, start: &str, end: &str) -> Vec<i64> {
        let tz = TimeZone::get(zone).expect("a known zone");
        let (start, end) = (utc(start), utc(end));
        let first = Timestamp::from_second(start).expect("in jiff's range");
        tz.following(first).map(|t| t.timestamp().as_second()).take_while(|at| *at < end).collect()
    }

    /// Checks that `contains` agrees with `intervals` at each instant, for each of the property schedules.
    fn check_agreement(zone: &str, instants: &[i64]) {
        for windows in PROPERTY_WINDOWS {
            let schedule = schedule(zone, windows);
            for &at in instants {
                let by_intervals = schedule.intervals(at, 1).iter().any(|&(start, end)| start <= at && at < end);
                assert_eq!(schedule.contains(at), by_intervals, "{zone} {windows:?} at {at}");
            }
        }
    }

    #[test]
    fn contains_agrees_with_intervals() {
        // A fixed xorshift generator, so that a failure replays.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (year_start, year_end) = (utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"));
        for zone in ["Europe/Berlin", "America/New_York"] {
            let changes = transitions(zone, "2025-12-20T00:00:00Z", "2027-01-10T00:00:00Z");
            assert_eq!(changes.len(), 2, "{zone}: {changes:?}");
            let mut instants: Vec<i64> = (0..2000)
                .map(|_| year_start + i64::try_from(next() >> 1).expect("63 bits fit") % (year_end - year_start))
                .collect();
            // Every minute and the seconds either side of it, for five hours either side of each change.
            for change in &changes {
                for minute in -300..=300 {
                    let at = change + minute * 60;
                    instants.extend([at - 1, at, at + 1]);
                }
            }
            check_agreement(zone, &instants);
        }
    }

    #[test]
    fn contains_agrees_with_intervals_in_odd_zones() {
        // Samoa skipped 2011-12-30; Chile changes its clocks at midnight; Lord Howe shifts by half an hour; Sitka
        // went from Russian to American time in 1867, living one day twice; Kiritimati moved from -10:40 to +14.
        let zones = [
            ("Pacific/Apia", "2011-12-25T00:00:00Z", "2012-01-05T00:00:00Z"),
            ("America/Santiago", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("Australia/Lord_Howe", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("America/Sitka", "1867-01-01T00:00:00Z", "1868-01-01T00:00:00Z"),
            ("Pacific/Kiritimati", "1994-01-01T00:00:00Z", "1996-01-01T00:00:00Z"),
        ];
        for (zone, start, end) in zones {
            let changes = transitions(zone, start, end);
            assert!(!changes.is_empty(), "{zone}");
            // Every ten minutes and the seconds either side, for two days either side of each change.
            let instants: Vec<i64> = changes
                .iter()
                .flat_map(|change| (-288..=288).map(move |n| change + n * 600))
                .flat_map(|at| [at - 1, at, at + 1])
                .collect();
            check_agreement(zone, &instants);
        }
    }

    #[test]
    fn intervals_open_and_close_where_contains_changes() {
        for zone in ["Europe/Berlin", "America/New_York", "UTC"] {
            for windows in PROPERTY_WINDOWS {
                let schedule = schedule(zone, windows);
                for from in [utc("2026-03-01T00:00:00Z"), utc("2026-10-20T00:00:00Z")] {
                    let got = schedule.intervals(from, 20 * 86_400);
                    assert!(!got.is_empty(), "{zone} {windows:?}");
                    // Sorted, and apart: touching intervals would have been merged.
                    assert!(got.windows(2).all(|pair| pair[0].1 < pair[1].0), "{zone} {windows:?}: {got:?}");
                    for &(start, end) in &got {
                        assert!(start < end);
                        assert!(schedule.contains(start) && schedule.contains(end - 1), "{zone} {windows:?} {start}");
                        assert!(!schedule.contains(start - 1) && !schedule.contains(end), "{zone} {windows:?} {start}");
                        // Between samples, every minute inside is inside.
                        assert!((start..end).step_by(60).all(|at| schedule.contains(at)), "{zone} {windows:?} {start}");
                    }
                    // And every minute of the span outside them is outside.
                    for at in (from..from + 20 * 86_400).step_by(60) {
                        let inside = got.iter().any(|&(start, end)| start <= at && at < end);
                        assert_eq!(schedule.contains(at), inside, "{zone} {windows:?} at {at}");
                    }
                }
            }
        }
    }
}
