//! Real time-series databases for tests and benchmarks, from Debian's packages, started here on a loopback port and
//! stopped on drop: VictoriaMetrics (`victoria-metrics`) and Prometheus (`prometheus`, with its remote-write receiver
//! on). Both take Prometheus remote write on `/api/v1/write` and answer PromQL on `/api/v1/query`, which is how the
//! tests check what arrived.
//!
//! Either can be stopped and started again on the same port and data (an outage of the TSDB). VictoriaMetrics runs
//! with `-dedup.minScrapeInterval=1ms`, as docs/telemetry.md tells an operator to run it: a batch the endpoint sent
//! again after a restart (the TSDB had it, the answer was lost) then counts once, as it does in Prometheus, which
//! takes a sample it already holds as a no-op.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// VictoriaMetrics, single node.
    VictoriaMetrics,
    /// Prometheus with `--web.enable-remote-write-receiver`.
    Prometheus,
}

/// A running (or stopped) TSDB; stopped and its directory removed on drop.
#[derive(Debug)]
pub struct Tsdb {
    kind: Kind,
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(30))).build(),
    )
}

impl Tsdb {
    /// Starts `kind` on a fresh directory; panics with its log when it does not come up (it is a test's fixture).
    pub fn start(kind: Kind) -> Tsdb {
        let dir = tempfile::tempdir().expect("a directory for the TSDB");
        let mut t = Tsdb { kind, dir, port: free_port(), server: None };
        t.resume();
        t
    }

    /// Whether the package's program is on this machine.
    pub fn installed(kind: Kind) -> bool {
        let program = match kind {
            Kind::VictoriaMetrics => "victoria-metrics",
            Kind::Prometheus => "prometheus",
        };
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the server (again) on its port and data.
    pub fn resume(&mut self) {
        assert!(self.server.is_none(), "the TSDB runs already");
        let data = self.dir.path().join("data");
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = match self.kind {
            Kind::VictoriaMetrics => {
                let mut c = Command::new("victoria-metrics");
                c.arg(format!("-httpListenAddr={listen}"))
                    .arg(format!("-storageDataPath={}", data.display()))
                    .arg("-retentionPeriod=100y")
                    .arg("-dedup.minScrapeInterval=1ms")
                    .arg("-search.latencyOffset=0s")
                    .arg("-search.disableCache");
                c
            }
            Kind::Prometheus => {
                let config = self.dir.path().join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1h\nscrape_configs: []\n").expect("config");
                let mut c = Command::new("prometheus");
                c.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", data.display()))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--storage.tsdb.retention.time=100y");
                c
            }
        };
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("log")).stderr(log);
        self.server = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.kind)));
        let ready = match self.kind {
            Kind::VictoriaMetrics => "/health",
            Kind::Prometheus => "/-/ready",
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!("{:?} exited ({status}); its log:\n{}", self.kind, self.log());
            }
            let url = format!("{}{ready}", self.url());
            if agent().get(&url).call().is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "{:?} did not come up in a minute; its log:\n{}", self.kind, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown), keeping its data and port.
    pub fn pause(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where remote write goes.
    pub fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url())
    }

    /// Makes everything written so far searchable (VictoriaMetrics buffers for a second or so; Prometheus needs
    /// nothing).
    pub fn flush(&self) {
        if self.kind == Kind::VictoriaMetrics {
            let r = agent().get(&format!("{}/internal/force_flush", self.url())).call().expect("force_flush");
            assert_eq!(r.status(), 200, "force_flush");
        }
    }

    /// An instant PromQL query at `time` (Unix seconds): the `data.result` array of its answer.
    pub fn query(&self, promql: &str, time: f64) -> Vec<serde_json::Value> {
        self.flush();
        let url = format!("{}/api/v1/query", self.url());
        let mut r = agent()
            .get(&url)
            .query("query", promql)
            .query("time", format!("{time:.3}"))
            .call()
            .unwrap_or_else(|e| panic!("query {promql}: {e}"));
        let text = r.body_mut().read_to_string().expect("an answer");
        let body: serde_json::Value = serde_json::from_str(&text).expect("a JSON answer");
        assert_eq!(body["status"], "success", "query {promql}: {body}");
        body["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The value of each series a query returns, by the value of label `by`.
    pub fn values_by(&self, promql: &str, time: f64, by: &str) -> std::collections::BTreeMap<String, f64> {
        self.query(promql, time)
            .iter()
            .map(|s| {
                let key = s["metric"][by].as_str().unwrap_or("").to_owned();
                let value = s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                (key, value)
            })
            .collect()
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        self.pause();
    }
}
