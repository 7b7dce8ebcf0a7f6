//! Rollouts, pure: selectors over nodes' labels and inventory (`selector`), policies and their decisions
//! (`policy`), and sites' maintenance windows in their own time zones (`window`). The store applies them inside its
//! transactions (docs/rollouts.md).

pub mod policy;
pub mod selector;
pub mod window;

use fleet_wire::node::Window;

use crate::error::{Refusal, Result};
use window::{Schedule, WindowSpec};

/// A site's windows as given, checked against the time-zone database and put in canonical form; the refusal names
/// the zone or the window that is wrong.
pub fn canonical_windows(time_zone: &str, windows: &[String]) -> Result<Vec<String>> {
    let specs = windows
        .iter()
        .map(|w| WindowSpec::parse(w).map_err(|e| Refusal::Invalid { field: "windows", reason: e.to_string() }))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let schedule =
        Schedule::new(time_zone, specs).map_err(|e| Refusal::Invalid { field: "time_zone", reason: e.to_string() })?;
    Ok(schedule.windows().iter().map(ToString::to_string).collect())
}

fn schedule(time_zone: &str, windows: &[String]) -> Option<Schedule> {
    let specs = windows.iter().map(|w| WindowSpec::parse(w).ok()).collect::<Option<Vec<_>>>()?;
    Schedule::new(time_zone, specs).ok()
}

/// The windows of a site (as stored: canonical) over `[now, now + horizon_secs)` as UTC spans for a node. A site
/// without windows gives none (the node flips at any time). A stored schedule that no longer reads (a zone gone
/// from the database) gives a window that has already ended, so the node holds rather than flips at any hour.
pub fn flip_windows(time_zone: &str, windows: &[String], now: i64, horizon_secs: i64) -> Vec<Window> {
    if windows.is_empty() {
        return Vec::new();
    }
    let spans = match schedule(time_zone, windows) {
        Some(s) => s.intervals(now, horizon_secs),
        None => {
            log::warn!("site windows {windows:?} in {time_zone} no longer read: nodes there hold their flips");
            vec![(0, 1)]
        }
    };
    spans
        .into_iter()
        .map(|(start, end)| Window { start: crate::clock::rfc3339(start), end: crate::clock::rfc3339(end) })
        .collect()
}

/// Whether a site with these windows is inside one at `now` (always, without windows).
pub fn open_at(time_zone: &str, windows: &[String], now: i64) -> bool {
    windows.is_empty() || schedule(time_zone, windows).is_some_and(|s| s.contains(now))
}
