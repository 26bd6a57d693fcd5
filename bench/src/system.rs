//! The machine and its processes: open-file limits, CPU pinning, `/proc`
//! sampling of a server's CPU time and memory, and the machine description
//! printed with every result.

use std::{
    fs,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use nix::{
    sched::{sched_setaffinity, CpuSet},
    unistd::{sysconf, Pid, SysconfVar},
};
use rlimit::Resource;
use serde::Serialize;

/// Raises this process's open-files limit to at least `wanted` (soft and, as
/// root, hard). Returns the soft limit in force afterwards, which may be
/// lower when the hard limit cannot be raised.
pub fn raise_nofile(wanted: u64) -> anyhow::Result<u64> {
    let (soft, hard) =
        rlimit::getrlimit(Resource::NOFILE).context("while reading RLIMIT_NOFILE")?;
    if soft >= wanted {
        return Ok(soft);
    }
    if hard < wanted && rlimit::setrlimit(Resource::NOFILE, wanted, wanted).is_ok() {
        return Ok(wanted);
    }
    let soft = wanted.min(hard);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).context("while raising RLIMIT_NOFILE")?;
    Ok(soft)
}

/// Raises another process's open-files limit (the server's, so it can
/// accept as many connections as the scenario opens). Needs root or the
/// same user with a high enough hard limit. Returns the soft limit after.
pub fn raise_nofile_of(pid: i32, wanted: u64) -> anyhow::Result<u64> {
    let (mut soft, mut hard) = (0, 0);
    rlimit::prlimit(pid, Resource::NOFILE, None, Some((&mut soft, &mut hard)))
        .with_context(|| format!("while reading the open-files limit of pid {pid}"))?;
    if soft >= wanted {
        return Ok(soft);
    }
    let hard = hard.max(wanted);
    rlimit::prlimit(pid, Resource::NOFILE, Some((wanted, hard)), None)
        .with_context(|| format!("while raising the open-files limit of pid {pid} to {wanted}"))?;
    Ok(wanted)
}

/// Another process's open-files soft limit.
pub fn nofile_of(pid: i32) -> anyhow::Result<u64> {
    let (mut soft, mut hard) = (0, 0);
    rlimit::prlimit(pid, Resource::NOFILE, None, Some((&mut soft, &mut hard)))
        .with_context(|| format!("while reading the open-files limit of pid {pid}"))?;
    Ok(soft)
}

/// Pins the calling thread, and every thread it creates afterwards, to one
/// CPU. Call before the async runtime starts so its workers inherit it.
pub fn pin_to_cpu(cpu: usize) -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)
        .with_context(|| format!("CPU {cpu} is out of range"))?;
    sched_setaffinity(Pid::from_raw(0), &set)
        .with_context(|| format!("while pinning to CPU {cpu}"))?;
    Ok(())
}

/// Lets the calling thread run on every online CPU again.
pub fn unpin() -> anyhow::Result<()> {
    let mut set = CpuSet::new();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // available_parallelism honours the current mask, so read the machine's count.
    let online = fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list_max(s.trim()))
        .map_or(cpus, |max| max + 1);
    for cpu in 0..online {
        set.set(cpu)
            .with_context(|| format!("CPU {cpu} is out of range"))?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).context("while unpinning")?;
    Ok(())
}

/// The highest CPU number in a list like `0-3,6`.
fn parse_cpu_list_max(list: &str) -> Option<usize> {
    list.split(',')
        .filter_map(|part| part.rsplit('-').next()?.trim().parse().ok())
        .max()
}

/// Clock ticks per second of `/proc/<pid>/stat` times (almost always 100).
pub fn clock_ticks_per_sec() -> u64 {
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks as u64,
        _ => 100,
    }
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    pub at: Instant,
    /// User plus system CPU time of all its threads, in µs.
    pub cpu_us: u64,
    /// Resident memory, in KiB.
    pub rss_kib: u64,
}

impl ProcSample {
    /// Several processes read together (a cluster's nodes) as one: CPU
    /// time and RSS added up, at the time of the last reading. None when
    /// there are none.
    pub fn sum(samples: &[ProcSample]) -> Option<ProcSample> {
        let last = samples.last()?;
        Some(ProcSample {
            at: last.at,
            cpu_us: samples.iter().map(|s| s.cpu_us).sum(),
            rss_kib: samples.iter().map(|s| s.rss_kib).sum(),
        })
    }
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status` (`pid` 0: this process).
pub fn sample(pid: i32) -> anyhow::Result<ProcSample> {
    let dir = if pid == 0 {
        "/proc/self".to_string()
    } else {
        format!("/proc/{pid}")
    };
    let stat = fs::read_to_string(format!("{dir}/stat"))
        .with_context(|| format!("while reading {dir}/stat: is the process running?"))?;
    let status = fs::read_to_string(format!("{dir}/status"))
        .with_context(|| format!("while reading {dir}/status"))?;
    let (utime, stime) =
        parse_stat_times(&stat).with_context(|| format!("{dir}/stat has an unexpected shape"))?;
    let rss_kib =
        parse_vm_rss_kib(&status).with_context(|| format!("{dir}/status has no VmRSS"))?;
    Ok(ProcSample {
        at: Instant::now(),
        cpu_us: (utime + stime) * 1_000_000 / clock_ticks_per_sec(),
        rss_kib,
    })
}

/// `utime` and `stime` (fields 14 and 15, in clock ticks) from the text of
/// `/proc/<pid>/stat`. Field 2, the command name, is in parentheses and may
/// itself hold spaces and parentheses, so the count starts after the last `)`.
pub fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    // After the name: field 3 (state) is index 0, so field 14 is index 11.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` in KiB from the text of `/proc/<pid>/status`.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some("mB") => Some(value * 1024),
        _ => None,
    }
}

/// CPU time the whole machine spent busy (every state but idle and
/// iowait), in µs, from the first line of `/proc/stat`.
pub fn machine_busy_us() -> Option<u64> {
    let text = fs::read_to_string("/proc/stat").ok()?;
    parse_proc_stat_busy(&text).map(|ticks| ticks * 1_000_000 / clock_ticks_per_sec())
}

/// Busy ticks from the `cpu` line of `/proc/stat`: user, nice, system,
/// irq, softirq and steal (idle and iowait are fields 4 and 5; guest time
/// is already inside user).
pub fn parse_proc_stat_busy(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let get = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// The usage of a process between two samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// CPU time used, in µs.
    pub cpu_us: u64,
    /// CPU time over wall time: 1.0 is one core busy.
    pub cores: f64,
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
}

impl Usage {
    pub fn between(start: &ProcSample, end: &ProcSample) -> Usage {
        let wall = end.at.saturating_duration_since(start.at).as_secs_f64();
        let cpu_us = end.cpu_us.saturating_sub(start.cpu_us);
        Usage {
            cpu_us,
            cores: if wall > 0.0 {
                cpu_us as f64 / 1e6 / wall
            } else {
                0.0
            },
            rss_start_kib: start.rss_kib,
            rss_end_kib: end.rss_kib,
        }
    }

    /// Several processes over the same window as one: CPU time, cores and
    /// RSS added up. None when there are none.
    pub fn sum(each: &[Usage]) -> Option<Usage> {
        (!each.is_empty()).then(|| Usage {
            cpu_us: each.iter().map(|u| u.cpu_us).sum(),
            cores: each.iter().map(|u| u.cores).sum(),
            rss_start_kib: each.iter().map(|u| u.rss_start_kib).sum(),
            rss_end_kib: each.iter().map(|u| u.rss_end_kib).sum(),
        })
    }

    /// CPU µs per unit of work (delivery, committed event).
    pub fn cpu_us_per(&self, work: u64) -> Option<f64> {
        (work > 0).then(|| self.cpu_us as f64 / work as f64)
    }
}

/// The machine, for the header of every result.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub model: String,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let (cores, model) = parse_cpuinfo(&cpuinfo);
        let memory_gib = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_ascii_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        Machine {
            cores: if cores > 0 {
                cores
            } else {
                std::thread::available_parallelism().map_or(0, |n| n.get())
            },
            model,
            memory_gib,
            kernel: kernel.trim().to_string(),
        }
    }
}

/// The processor count and the model name from `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> (usize, String) {
    let cores = text.lines().filter(|l| l.starts_with("processor")).count();
    let model = text
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    (cores, model)
}

/// A server the tool watches: one it was given by pid, or one it started
/// (and stops when dropped).
pub struct ServerProcess {
    pub pid: i32,
    child: Option<std::process::Child>,
}

/// How long a spawned server gets to stop on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl ServerProcess {
    /// A server that is already running.
    pub fn existing(pid: i32) -> anyhow::Result<ServerProcess> {
        sample(pid)?;
        Ok(ServerProcess { pid, child: None })
    }

    /// Starts `command` (split on whitespace: program then arguments),
    /// pinned to `cpu` when given. The child inherits this process's
    /// environment and its (raised) open-files limit. Pinning works by
    /// pinning this thread first (a child inherits the mask), so call this
    /// before [`pin_to_cpu`] for the tool itself.
    pub fn spawn(command: &str, cpu: Option<usize>) -> anyhow::Result<ServerProcess> {
        let mut words = command.split_ascii_whitespace();
        let Some(program) = words.next() else {
            bail!("--spawn needs a command");
        };
        if let Some(cpu) = cpu {
            pin_to_cpu(cpu)?;
        }
        let child = std::process::Command::new(program)
            .args(words)
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("while starting `{command}`"))?;
        Ok(ServerProcess {
            pid: child.id() as i32,
            child: Some(child),
        })
    }

    /// Whether the tool started this server.
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// Stops a server the tool started: SIGTERM, then SIGKILL after a grace
    /// period. A server given by pid is left alone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = nix::sys::signal::kill(Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("switchboard-bench: the server did not stop on SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_times_are_read_after_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    731 262 0 0 20 0 9 0 12345 987654321 4321 18446744073709551615";
        assert_eq!(parse_stat_times(stat), Some((731, 262)));
        assert_eq!(parse_stat_times("no name here"), None);
        assert_eq!(parse_stat_times("1 (x) S 1 2"), None);
    }

    #[test]
    fn our_own_stat_parses() {
        let own = sample(0).unwrap();
        assert!(own.rss_kib > 0);
    }

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tswitchboard\nVmPeak:\t  999 kB\nVmRSS:\t   52344 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status), Some(52_344));
        assert_eq!(parse_vm_rss_kib("Name:\tkthread\n"), None);
    }

    #[test]
    fn cpuinfo_gives_count_and_model() {
        let text = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpuinfo(text), (2, "AMD EPYC 7B13".to_string()));
        assert_eq!(parse_cpuinfo(""), (0, "unknown".to_string()));
    }

    #[test]
    fn machine_busy_time_skips_idle_and_iowait() {
        let text = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_proc_stat_busy(text), Some(100 + 20 + 30 + 6 + 7 + 8));
        assert_eq!(parse_proc_stat_busy("intr 1 2\n"), None);
    }

    #[test]
    fn cpu_lists_give_their_highest_cpu() {
        assert_eq!(parse_cpu_list_max("0-1"), Some(1));
        assert_eq!(parse_cpu_list_max("0-3,6"), Some(6));
        assert_eq!(parse_cpu_list_max("0"), Some(0));
        assert_eq!(parse_cpu_list_max(""), None);
    }

    #[test]
    fn usage_per_unit_of_work() {
        let start = Instant::now();
        let a = ProcSample {
            at: start,
            cpu_us: 1_000_000,
            rss_kib: 100,
        };
        let b = ProcSample {
            at: start + Duration::from_secs(2),
            cpu_us: 2_000_000,
            rss_kib: 300,
        };
        let usage = Usage::between(&a, &b);
        assert_eq!(usage.cpu_us, 1_000_000);
        assert!((usage.cores - 0.5).abs() < 1e-9);
        assert_eq!(usage.cpu_us_per(100_000), Some(10.0));
        assert_eq!(usage.cpu_us_per(0), None);
    }

    #[test]
    fn several_processes_add_up() {
        let start = Instant::now();
        let at = |s: u64, cpu_us, rss_kib| ProcSample {
            at: start + Duration::from_secs(s),
            cpu_us,
            rss_kib,
        };
        let node_a = Usage::between(&at(0, 0, 100), &at(2, 1_000_000, 100));
        let node_b = Usage::between(&at(0, 500_000, 50), &at(2, 1_500_000, 70));
        let both = Usage::sum(&[node_a, node_b]).unwrap();
        assert_eq!(both.cpu_us, 2_000_000);
        assert!((both.cores - 1.0).abs() < 1e-9);
        assert_eq!((both.rss_start_kib, both.rss_end_kib), (150, 170));
        assert!(Usage::sum(&[]).is_none());
        let read = ProcSample::sum(&[at(0, 10, 1), at(1, 20, 2)]).unwrap();
        assert_eq!((read.cpu_us, read.rss_kib), (30, 3));
        assert!(ProcSample::sum(&[]).is_none());
    }
}
