//! A connect storm and its statistics, one table line per configuration.

use super::*;

pub(crate) struct Stats {
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) elapsed: Duration,
    pub(crate) lat: Vec<Duration>,
}

impl Stats {
    pub(crate) fn pct(&self, p: f64) -> f64 {
        if self.lat.is_empty() {
            return f64::NAN;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i].as_secs_f64() * 1000.0
    }

    pub(crate) fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn print(&self, label: &str) {
        println!(
            "{label:<28} {:>8.0} conn/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  ok {}  failed {}",
            self.rate(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0),
            self.ok,
            self.failed
        );
    }
}

pub(crate) async fn storm(url: &str, tokens: &[String], c: usize) -> Stats {
    let start = Instant::now();
    let results: Vec<Option<Duration>> = stream::iter(tokens.iter().cloned())
        .map(|t| {
            let url = url.to_owned();
            async move {
                let t0 = Instant::now();
                let r = async_nats::ConnectOptions::with_token(t)
                    .connection_timeout(Duration::from_secs(10))
                    .max_reconnects(Some(0))
                    .connect(url.as_str())
                    .await;
                let d = t0.elapsed();
                match r {
                    Ok(client) => {
                        drop(client);
                        Some(d)
                    }
                    Err(_) => None,
                }
            }
        })
        .buffer_unordered(c)
        .collect()
        .await;
    let elapsed = start.elapsed();
    let mut lat: Vec<Duration> = results.iter().flatten().copied().collect();
    lat.sort();
    Stats {
        ok: lat.len(),
        failed: results.len() - lat.len(),
        elapsed,
        lat,
    }
}

/// One line of the storm table: its runs and the CPU they cost.
pub(crate) struct Line {
    pub(crate) label: &'static str,
    pub(crate) runs: Vec<Stats>,
    /// CPU seconds per process index, summed over the runs.
    pub(crate) cpu: [Option<f64>; 6],
}

impl Line {
    pub(crate) fn new(label: &'static str) -> Self {
        Self {
            label,
            runs: Vec::new(),
            cpu: [Some(0.0); 6],
        }
    }

    pub(crate) fn add(
        &mut self,
        stats: Stats,
        before: &[Option<f64>; 6],
        after: &[Option<f64>; 6],
    ) {
        for i in 0..6 {
            self.cpu[i] = (|| Some(self.cpu[i]? + (after[i]? - before[i]?)))();
        }
        self.runs.push(stats);
    }

    pub(crate) fn median(&self, f: impl Fn(&Stats) -> f64) -> f64 {
        let mut v: Vec<f64> = self.runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// CPU per successful connect of one process over all runs, in µs.
    pub(crate) fn cpu_per_connect(&self, process: usize) -> Option<f64> {
        let ok: usize = self.runs.iter().map(|s| s.ok).sum();
        Some(self.cpu[process]? / ok.max(1) as f64 * 1e6)
    }
}
