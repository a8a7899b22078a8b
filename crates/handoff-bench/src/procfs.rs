//! A process's CPU time and memory, from /proc (Linux).

use anyhow::{Context as _, Result};
use std::process::Command;
use std::sync::OnceLock;

/// CPU time used so far and memory, of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size now (VmRSS).
    pub rss_kib: u64,
    /// Peak resident set size (VmHWM).
    pub peak_kib: u64,
}

/// Reads `/proc/<pid>` (or `/proc/self` without a pid).
pub fn sample(pid: Option<u32>) -> Result<Sample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |pid| format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("cannot read `{dir}/stat` (is the process running?)"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("cannot read `{dir}/status`"))?;
    Ok(Sample {
        cpu_seconds: cpu_ticks(&stat).context("unexpected /proc stat format")? as f64
            / clock_ticks(),
        rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
        peak_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
    })
}

/// Busy CPU seconds of the whole machine so far, over all cores (from `/proc/stat`): with the
/// server's and the client's own time, what is left is other work that shared the machine.
pub fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let line = stat
        .lines()
        .find(|line| line.starts_with("cpu "))
        .context("/proc/stat has no cpu line")?;
    // user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, ticks)| ticks)
        .sum();
    Ok(busy as f64 / clock_ticks())
}

/// utime + stime (fields 14 and 15); counted after the `)` that ends the command name, which may
/// itself hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user.saturating_add(system))
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every common Linux).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::{cpu_ticks, sample, status_kib};

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0 7 0 0";
        assert_eq!(cpu_ticks(stat), Some(300));
    }

    #[test]
    fn memory_lines_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn the_machine_has_been_busy() {
        assert!(super::machine_busy_seconds().expect("/proc/stat") > 0.0);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let now = sample(None).expect("/proc/self");
        assert!(now.rss_kib > 0 && now.peak_kib >= now.rss_kib);
    }
}
