//! The node page's small charts (docs/cloud.md, "The web view"): a node's key metrics over the last day, drawn here
//! as inline SVG, with no script and nothing fetched from outside the endpoint. The points come from the store's
//! chart points (`Telemetry::chart_points`); a counter (bytes received, sent) is drawn as its rate between points.

use std::fmt::Write as _;

use super::html::esc;

/// What to draw of a metric: its name, title, unit, and whether it is a counter (drawn as a rate per second).
struct Chart {
    metric: &'static str,
    title: &'static str,
    unit: Unit,
    counter: bool,
}

#[derive(Clone, Copy)]
enum Unit {
    Ratio,
    Plain,
    Bytes,
    BytesPerSec,
}

const CHARTS: [Chart; 6] = [
    Chart { metric: "edge_node_cpu_busy_ratio", title: "CPU busy", unit: Unit::Ratio, counter: false },
    Chart { metric: "edge_node_load1", title: "Load (1 min)", unit: Unit::Plain, counter: false },
    Chart { metric: "edge_node_memory_available_bytes", title: "Memory available", unit: Unit::Bytes, counter: false },
    Chart { metric: "edge_node_data_free_bytes", title: "Data partition free", unit: Unit::Bytes, counter: false },
    Chart {
        metric: "edge_node_network_receive_bytes_total",
        title: "Network in",
        unit: Unit::BytesPerSec,
        counter: true,
    },
    Chart {
        metric: "edge_node_network_transmit_bytes_total",
        title: "Network out",
        unit: Unit::BytesPerSec,
        counter: true,
    },
];

/// A value in its unit, short.
fn human(v: f64, unit: Unit) -> String {
    let bytes = |v: f64, suffix: &str| {
        let (mut v, mut i) = (v, 0);
        let units = ["B", "KiB", "MiB", "GiB", "TiB"];
        while v.abs() >= 1024.0 && i < units.len() - 1 {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}{suffix}", units[i])
    };
    match unit {
        Unit::Ratio => format!("{:.0}%", v * 100.0),
        Unit::Plain => format!("{v:.2}"),
        Unit::Bytes => bytes(v, ""),
        Unit::BytesPerSec => bytes(v, "/s"),
    }
}

/// The rate per second between consecutive points of a counter; a drop (the node rebooted) starts over.
fn rates(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let (dt, dv) = (w[1].0 - w[0].0, w[1].1 - w[0].1);
            (dt > 0 && dv >= 0.0).then(|| (w[1].0, dv * 1000.0 / dt as f64))
        })
        .collect()
}

/// One chart: a line over its points, its last value and range written beside it.
fn svg(title: &str, unit: Unit, points: &[(i64, f64)]) -> String {
    const W: f64 = 280.0;
    const H: f64 = 70.0;
    let mut s = format!("<figure class=\"chart\"><figcaption>{}", esc(title));
    let Some(&(_, last)) = points.last() else {
        s.push_str(" <span class=\"figures\">no data yet</span></figcaption></figure>");
        return s;
    };
    let (t0, t1) = (points[0].0, points[points.len() - 1].0);
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min).min(0.0);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let _ = write!(
        s,
        " <span class=\"figures\">{} (max {})</span></figcaption>",
        esc(&human(last, unit)),
        esc(&human(hi, unit))
    );
    let _ = write!(
        s,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let x = |t: i64| if t1 > t0 { (t - t0) as f64 / (t1 - t0) as f64 * (W - 2.0) + 1.0 } else { W / 2.0 };
    let y = |v: f64| H - 1.0 - (v - lo) / (hi - lo) * (H - 2.0);
    let line: Vec<String> = points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect();
    let _ = write!(s, "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" class=\"frame\"/>");
    let _ = write!(s, "<polyline points=\"{}\" class=\"line\"/></svg></figure>", line.join(" "));
    s
}

/// The charts of a node's points: (metric, time in ms, value), by metric and time.
pub fn charts(points: &[(String, i64, f64)]) -> String {
    let mut s = String::from("<div id=\"charts\" class=\"charts\">");
    for c in &CHARTS {
        let of_it: Vec<(i64, f64)> = points.iter().filter(|p| p.0 == c.metric).map(|p| (p.1, p.2)).collect();
        let drawn = if c.counter { rates(&of_it) } else { of_it };
        s.push_str(&svg(c.title, c.unit, &drawn));
    }
    s.push_str("</div>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_draw_lines_and_rates() {
        let points = vec![
            ("edge_node_load1".to_owned(), 0, 0.5),
            ("edge_node_load1".to_owned(), 60_000, 1.5),
            ("edge_node_network_receive_bytes_total".to_owned(), 0, 1000.0),
            ("edge_node_network_receive_bytes_total".to_owned(), 10_000, 21_480.0),
            ("edge_node_network_receive_bytes_total".to_owned(), 20_000, 10.0),
        ];
        let html = charts(&points);
        assert_eq!(html.matches("<figure").count(), 6);
        assert!(html.contains("Load (1 min) <span class=\"figures\">1.50 (max 1.50)"), "{html}");
        assert!(html.contains("Network in <span class=\"figures\">2.0 KiB/s"), "{html}");
        assert!(html.contains("CPU busy <span class=\"figures\">no data yet"), "{html}");
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(!html.contains("<script") && !html.contains("http"), "nothing from outside");
    }
}
