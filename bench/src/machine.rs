//! What machine a run was on, read from `/proc` (Linux; fields are empty
//! elsewhere).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Facts about the machine and its state when the run started.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpus_online: usize,
    /// Core ids this process may run on (what the engine uses).
    pub usable_cores: Vec<usize>,
    /// Kernel release.
    pub kernel: String,
    /// 1, 5 and 15 minute load averages when the run started.
    pub load_avg_start: [f64; 3],
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
pub fn load_avg() -> [f64; 3] {
    let s = read("/proc/loadavg");
    let mut it = s
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

impl Machine {
    /// Reads the machine's facts; `usable_cores` as read by the caller.
    pub fn detect(usable_cores: Vec<usize>) -> Machine {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            cpu_model,
            cpus_online: std::thread::available_parallelism().map_or(0, |n| n.get()),
            usable_cores,
            kernel: read("/proc/sys/kernel/osrelease"),
            load_avg_start: load_avg(),
        }
    }
}

/// CPU time counters of the whole machine and of this process, to tell how
/// much of the machine something else used while a scenario ran (a noisy
/// neighbour or a build skews every figure; the perf gate can reject such
/// runs).
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    at: std::time::Instant,
    /// Busy ticks of all CPUs (user, nice, system, irq, softirq).
    busy: u64,
    /// Ticks stolen by the hypervisor.
    steal: u64,
    /// This process's user + system ticks.
    own: u64,
}

/// Clock ticks per second of `/proc` counters (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

impl CpuSample {
    /// Reads the counters now.
    pub fn now() -> CpuSample {
        let stat = read("/proc/stat");
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let f = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let own_stat = read("/proc/self/stat");
        // Fields after the parenthesised command name; utime and stime are
        // the 14th and 15th fields of the whole line.
        let own = own_stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                let v: Vec<u64> = rest
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                v.get(11).copied().unwrap_or(0) + v.get(12).copied().unwrap_or(0)
            })
            .unwrap_or(0);
        CpuSample {
            at: std::time::Instant::now(),
            busy: f(0) + f(1) + f(2) + f(5) + f(6),
            steal: f(7),
            own,
        }
    }

    /// Between `self` and `later`: the share of all CPUs' time that other
    /// processes used, and the share the hypervisor stole (0.0 to 1.0).
    pub fn background(&self, later: &CpuSample, cpus: usize) -> (f64, f64) {
        let capacity =
            later.at.duration_since(self.at).as_secs_f64() * TICKS_PER_SEC * cpus.max(1) as f64;
        if capacity <= 0.0 {
            return (0.0, 0.0);
        }
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let own = later.own.saturating_sub(self.own) as f64;
        let steal = later.steal.saturating_sub(self.steal) as f64;
        (
            ((busy - own) / capacity).clamp(0.0, 1.0),
            (steal / capacity).clamp(0.0, 1.0),
        )
    }
}

/// Waits (up to `max`) until other processes use at most `limit` of the
/// CPUs over a one-second window; returns the last window's share.
pub fn wait_quiet(limit: f64, cpus: usize, max: std::time::Duration) -> f64 {
    let deadline = std::time::Instant::now() + max;
    loop {
        let a = CpuSample::now();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let (share, _) = a.background(&CpuSample::now(), cpus);
        if share <= limit || std::time::Instant::now() >= deadline {
            return share;
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for `secs` since the epoch (UTC).
pub fn iso8601(secs: u64) -> String {
    let (y, m, d) = dataplane::event_time::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
