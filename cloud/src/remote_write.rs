//! Prometheus remote write 1.0 (docs/telemetry.md, "Remote write"): queued metric records turned into one
//! `WriteRequest` (protobuf), compressed with snappy's block format, as the protocol requires.
//!
//! The protobuf is written here by hand, four messages and five field kinds, rather than by a code generator: the
//! format is fixed by the protocol, a golden vector pins the bytes, and the real TSDBs of the tests read them. Each
//! series carries its labels sorted by name (the node's own, the endpoint's `node`, `site` and `region`, and
//! `__name__`) and its samples in time order; a sample not after the one before it in its series is left out and
//! counted, since a TSDB would refuse the whole request for it.

use std::collections::BTreeMap;

use crate::store::telemetry_sql::QueuedMetrics;

/// One series of a request: its labels, sorted by name, and its samples (ms, value) in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Label pairs, sorted by name, `__name__` among them.
    pub labels: Vec<(String, String)>,
    /// (timestamp in ms, value), strictly increasing in time.
    pub samples: Vec<(i64, f64)>,
}

/// A series' labels (sorted by name).
type Labels = Vec<(String, String)>;

/// A request's series, and how many samples went in and were left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Built {
    /// The series.
    pub series: Vec<Series>,
    /// Samples in them.
    pub n_samples: usize,
    /// Samples left out (not after the one before in their series).
    pub n_skipped: usize,
}

/// The series of `rows`, in the order the rows came.
pub fn build(rows: &[QueuedMetrics]) -> Built {
    let mut map: BTreeMap<Labels, Vec<(i64, f64)>> = BTreeMap::new();
    let mut built = Built::default();
    for row in rows {
        for s in &row.samples {
            let mut labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            // The endpoint's labels replace any of the same name (the protocol refuses them from a node anyway).
            labels.retain(|(k, _)| !row.labels.contains_key(k) && k != "__name__");
            labels.extend(row.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            labels.push(("__name__".to_owned(), s.name.clone()));
            labels.sort();
            let samples = map.entry(labels).or_default();
            if samples.last().is_some_and(|(t, _)| *t >= row.time_ms) {
                built.n_skipped += 1;
                continue;
            }
            samples.push((row.time_ms, s.value));
            built.n_samples += 1;
        }
    }
    built.series = map.into_iter().map(|(labels, samples)| Series { labels, samples }).collect();
    built
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: its tag, its length, its bytes.
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The `WriteRequest` of `series` (prompb: `timeseries` = 1; `TimeSeries`: `labels` = 1, `samples` = 2; `Label`:
/// `name` = 1, `value` = 2; `Sample`: `value` = 1 (double), `timestamp` = 2 (int64, ms)).
pub fn encode(series: &[Series]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ts = Vec::new();
    let mut item = Vec::new();
    for s in series {
        ts.clear();
        for (name, value) in &s.labels {
            item.clear();
            bytes_field(&mut item, 1, name.as_bytes());
            bytes_field(&mut item, 2, value.as_bytes());
            bytes_field(&mut ts, 1, &item);
        }
        for (time_ms, value) in &s.samples {
            item.clear();
            varint(&mut item, 1 << 3 | 1);
            item.extend_from_slice(&value.to_le_bytes());
            varint(&mut item, 2 << 3);
            varint(&mut item, *time_ms as u64);
            bytes_field(&mut ts, 2, &item);
        }
        bytes_field(&mut out, 1, &ts);
    }
    out
}

/// The request's body: [`encode`] compressed with snappy's block format (not its framing format).
pub fn body(series: &[Series]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&encode(series)).expect("snappy compresses any buffer in memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleet_wire::telemetry::Sample;

    /// A sample as a test writes it: name, labels, value.
    type TestSample<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn row(id: i64, node: &str, time_ms: i64, samples: &[TestSample<'_>]) -> QueuedMetrics {
        QueuedMetrics {
            id,
            node: node.into(),
            time_ms,
            labels: [("node".to_owned(), node.to_owned()), ("site".to_owned(), "s1".to_owned())].into(),
            samples: samples
                .iter()
                .map(|(n, l, v)| Sample {
                    name: (*n).into(),
                    labels: l.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn series_gather_samples_in_time_order_with_sorted_labels() {
        let rows = [
            row(1, "n-a", 1000, &[("up", &[], 1.0), ("net_total", &[("device", "eth0")], 5.0)]),
            row(2, "n-b", 1000, &[("up", &[], 0.0)]),
            row(3, "n-a", 2000, &[("up", &[], 1.0)]),
            row(4, "n-a", 2000, &[("up", &[], 1.0)]),
        ];
        let b = build(&rows);
        assert_eq!((b.n_samples, b.n_skipped, b.series.len()), (4, 1, 3));
        let up_a = b
            .series
            .iter()
            .find(|s| {
                s.labels.contains(&("node".into(), "n-a".into()))
                    && s.labels.contains(&("__name__".into(), "up".into()))
            })
            .expect("up of n-a");
        assert_eq!(up_a.samples, vec![(1000, 1.0), (2000, 1.0)]);
        for s in &b.series {
            let names: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
        }
    }

    #[test]
    fn the_protobuf_has_the_documented_bytes() {
        let series = [Series { labels: vec![("__name__".into(), "up".into())], samples: vec![(1000, 1.0)] }];
        let want: Vec<u8> = [
            &[0x0a, 0x1e][..], // timeseries, 30 bytes
            &[0x0a, 0x0e],     //   labels, 14 bytes
            &[0x0a, 0x08],     //     name, 8 bytes
            b"__name__",
            &[0x12, 0x02], //     value, 2 bytes
            b"up",
            &[0x12, 0x0c],                         //   samples, 12 bytes
            &[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f], //     value 1.0
            &[0x10, 0xe8, 0x07],                   //     timestamp 1000
        ]
        .concat();
        assert_eq!(encode(&series), want);
        let compressed = body(&series);
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&compressed).expect("snappy"), want);
        // A negative time (before 1970) is a ten-byte varint, as protobuf writes an int64.
        let before = encode(&[Series { labels: vec![], samples: vec![(-1, 0.0)] }]);
        assert_eq!(&before[before.len() - 11..], &[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }
}
