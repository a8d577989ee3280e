//! Measuring helpers shared by every runtime: memory, timing, number
//! formatting, and the CPU work unit and lateness statistics of `fairness`
//! and `runaway`.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::Report;

/// Pause before reading memory, so that every process has run once and every
/// lazily allocated structure exists.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Pause between setting processes up and starting the clock, so that every
/// process has reached its first receive.
pub const WARMUP: Duration = Duration::from_millis(20);

/// Pause between starting the heartbeat and starting the runaway process.
pub const RUNAWAY_LEAD: Duration = Duration::from_millis(100);

/// `x` with no decimals.
pub fn f0(x: f64) -> String {
    format!("{x:.0}")
}

/// `x` with one decimal.
pub fn f1(x: f64) -> String {
    format!("{x:.1}")
}

/// Nanoseconds per item when `count` items took `elapsed`.
pub fn ns_per(elapsed: Duration, count: u64) -> f64 {
    elapsed.as_nanos() as f64 / count as f64
}

/// Resident set size of this process in bytes, as the OS reports it.
pub fn rss_bytes() -> Result<u64, String> {
    beamish::observe::os_rss()
        .ok_or_else(|| "cannot read this process's resident memory".to_string())
}

/// Nearest-rank percentile (`p` in 0..=100) of an ascending, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One unit of pure arithmetic: `iters` rounds of a dependent LCG/xorshift
/// chain (no memory traffic, no calls, cannot be vectorised or folded away).
#[inline(never)]
pub fn work_unit(iters: u64, seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..iters {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    black_box(x)
}

/// Iterations of [`work_unit`] that take about one microsecond here. The
/// fastest of several timed batches counts, so a noisy neighbour makes units
/// shorter, never longer.
pub fn calibrate_unit() -> u64 {
    const PROBE: u64 = 2_000_000;
    let mut best = Duration::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        black_box(work_unit(PROBE, 7));
        best = best.min(t.elapsed());
    }
    ((PROBE as f64 * 1000.0 / best.as_nanos().max(1) as f64).round() as u64).max(1)
}

/// How late a wake-up was, in µs: a sleep of `sleep` that began at `asleep`
/// and ended at `awake`.
pub fn lateness_us(asleep: Instant, awake: Instant, sleep: Duration) -> f64 {
    (awake - asleep).saturating_sub(sleep).as_nanos() as f64 / 1000.0
}

/// The window during which the runaway process of `runaway` spun, shared
/// with the heartbeat that measures lateness during it.
#[derive(Debug, Default)]
pub struct RunawayWindow {
    start: OnceLock<Instant>,
    end: OnceLock<Instant>,
}

impl RunawayWindow {
    /// The runaway process itself: a tight loop of work units with no yield
    /// point, for `dur` (the clock is read once per unit to stop).
    pub fn spin(&self, dur: Duration, iters: u64) {
        let start = Instant::now();
        let _ = self.start.set(start);
        let mut x = 1;
        while start.elapsed() < dur {
            x = work_unit(iters, x);
        }
        black_box(x);
        let _ = self.end.set(Instant::now());
    }

    /// Whether the runaway had already ended at `t`: the heartbeat stops
    /// after the first sleep that began after the end.
    pub fn ended_before(&self, t: Instant) -> bool {
        self.end.get().is_some_and(|&end| end < t)
    }

    /// The lateness (µs) of every heartbeat sleep `(asleep, awake)` that
    /// overlapped the window.
    pub fn lateness_during(
        &self,
        sleeps: &[(Instant, Instant)],
        sleep: Duration,
    ) -> Result<Vec<f64>, String> {
        let (Some(&start), Some(&end)) = (self.start.get(), self.end.get()) else {
            return Err("the runaway process has not run to its end".to_string());
        };
        Ok(sleeps
            .iter()
            .filter(|&&(asleep, awake)| asleep < end && awake > start)
            .map(|&(asleep, awake)| lateness_us(asleep, awake, sleep))
            .collect())
    }
}

/// `p50_us` (if `with_p50`), `p99_us`, `max_us` and `samples` of lateness
/// samples in µs.
pub fn lateness_keys(mut late: Vec<f64>, with_p50: bool) -> Result<Report, String> {
    if late.is_empty() {
        return Err("no heartbeat samples".to_string());
    }
    late.sort_by(f64::total_cmp);
    let mut report = Report::new();
    if with_p50 {
        report.push("p50_us", f1(percentile(&late, 50.0)));
    }
    report.push("p99_us", f1(percentile(&late, 99.0)));
    report.push("max_us", f1(late[late.len() - 1]));
    report.push("samples", late.len());
    Ok(report)
}

/// The sum skynet's root must see for leaves numbered `0..leaves`.
pub fn skynet_expected(leaves: u64) -> u64 {
    leaves * (leaves - 1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 99.0), 4.0);
    }

    #[test]
    fn lateness_report() {
        let r = lateness_keys(vec![3.0, 1.0, 2.0, 10.0], true).unwrap();
        let line = r.line("fairness", "x");
        assert_eq!(
            line,
            "bench=fairness runtime=x p50_us=2.0 p99_us=10.0 max_us=10.0 samples=4"
        );
        let r = lateness_keys(vec![5.0], false).unwrap();
        assert_eq!(
            r.line("runaway", "x"),
            "bench=runaway runtime=x p99_us=5.0 max_us=5.0 samples=1"
        );
        assert!(lateness_keys(vec![], true).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(f1(1.25), "1.2");
        assert_eq!(f1(1.26), "1.3");
        assert_eq!(f0(299.5), "300");
        assert_eq!(ns_per(Duration::from_micros(3), 2), 1500.0);
        let t = Instant::now();
        assert_eq!(
            lateness_us(t, t + Duration::from_micros(1500), Duration::from_millis(1)),
            500.0
        );
        assert_eq!(
            lateness_us(t, t + Duration::from_micros(900), Duration::from_millis(1)),
            0.0
        );
    }

    #[test]
    fn runaway_window() {
        let w = RunawayWindow::default();
        let before = Instant::now();
        assert!(!w.ended_before(before));
        assert!(w.lateness_during(&[], Duration::ZERO).is_err());
        w.spin(Duration::from_millis(2), 10);
        let after = Instant::now();
        assert!(w.ended_before(after));
        let ms = Duration::from_millis(1);
        let sleeps = [
            (before - ms * 10, before - ms * 5), // before the window
            (before, after),                     // overlapping
            (after, after + ms),                 // after it
        ];
        assert_eq!(w.lateness_during(&sleeps, ms).unwrap().len(), 1);
    }

    #[test]
    fn rss_and_units() {
        assert!(rss_bytes().unwrap() > 0);
        assert!(calibrate_unit() >= 1);
        assert_eq!(skynet_expected(1_000_000), 499_999_500_000);
        assert_eq!(skynet_expected(1), 0);
    }
}
