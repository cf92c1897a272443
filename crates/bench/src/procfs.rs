//! CPU time and memory of a process (or one of its threads), read from `/proc` (Linux only).

use std::path::{Path, PathBuf};

/// Clock ticks per second in `/proc/PID/stat`. The kernel reports in USER_HZ, which is 100 on every
/// architecture Linux exports to user space; asking `sysconf` would need `unsafe`.
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ProcSample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size now, KiB.
    pub rss_kib: u64,
    /// Peak resident set size (since start, or since the last peak reset), KiB.
    pub hwm_kib: u64,
}

impl ProcSample {
    /// CPU seconds between `self` (earlier) and `later`.
    pub fn cpu_seconds_until(&self, later: &ProcSample) -> f64 {
        later.cpu_ticks.saturating_sub(self.cpu_ticks) as f64 / CLOCK_TICKS_PER_SEC
    }
}

/// A process that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file is missing or unreadable (the process may have exited).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file's format is not what Linux writes.
    #[error("unexpected format in {0}")]
    Format(&'static str),
}

/// `utime + stime` from the contents of `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Result<u64, ProcError> {
    // The command name (field 2) is in parentheses and may hold spaces or ')', so count fields from
    // the last ')'. After it come field 3 (state) onwards; utime and stime are fields 14 and 15.
    let after = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or(ProcError::Format("/proc/PID/stat"))?;
    let mut fields = after.split_ascii_whitespace().skip(11);
    let mut next = || -> Result<u64, ProcError> {
        fields.next().and_then(|f| f.parse().ok()).ok_or(ProcError::Format("/proc/PID/stat"))
    };
    let utime = next()?;
    let stime = next()?;
    Ok(utime + stime)
}

/// The `processor` field (39: the CPU the task last ran on) from the contents of a `stat` file.
pub fn parse_stat_processor(stat: &str) -> Option<u32> {
    // Field 3 is the first after the last ')', so field 39 is the 37th.
    stat.rfind(')').and_then(|i| stat[i + 1..].split_ascii_whitespace().nth(36)?.parse().ok())
}

/// Nanoseconds on the CPU (the first field) from the contents of `/proc/.../schedstat`.
pub fn parse_schedstat_ns(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// Clock ticks per second from the output of `getconf CLK_TCK`.
pub fn parse_clock_ticks(text: &str) -> Option<f64> {
    text.trim().parse::<u64>().ok().filter(|&t| t > 0).map(|t| t as f64)
}

/// The clock ticks per second of `stat` files, from `getconf CLK_TCK` (calling `sysconf` directly
/// would need `unsafe`); [`CLOCK_TICKS_PER_SEC`] when getconf is missing or says nothing useful.
pub fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| parse_clock_ticks(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(CLOCK_TICKS_PER_SEC)
}

/// The thread id from the target of the `/proc/thread-self` link (`<pid>/task/<tid>`).
pub fn parse_thread_self_link(target: &Path) -> Option<u32> {
    let parent = target.parent()?;
    if parent.file_name()? != "task" {
        return None;
    }
    target.file_name()?.to_str()?.parse().ok()
}

/// The calling thread's id (what `taskset -p` takes), when `/proc/thread-self` is readable.
pub fn current_tid() -> Option<u32> {
    parse_thread_self_link(&std::fs::read_link("/proc/thread-self").ok()?)
}

/// One reading of a thread.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ThreadSample {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// The CPU it last ran on.
    pub processor: Option<u32>,
    /// Nanoseconds on the CPU from `schedstat` (finer than the ticks), when the kernel has it.
    pub sched_ns: Option<u64>,
}

/// Reads `/proc/thread-self/` (`tid` None: the calling thread) or `/proc/self/task/<tid>/`.
pub fn thread_sample(tid: Option<u32>) -> Result<ThreadSample, ProcError> {
    let dir = tid.map_or_else(|| PathBuf::from("/proc/thread-self"), |t| PathBuf::from(format!("/proc/self/task/{t}")));
    let stat = read(dir.join("stat"))?;
    Ok(ThreadSample {
        cpu_ticks: parse_stat_cpu_ticks(&stat)?,
        processor: parse_stat_processor(&stat),
        sched_ns: std::fs::read_to_string(dir.join("schedstat")).ok().and_then(|t| parse_schedstat_ns(&t)),
    })
}

/// `(VmRSS, VmHWM)` in KiB from the contents of `/proc/PID/status`.
pub fn parse_status_memory(status: &str) -> Result<(u64, u64), ProcError> {
    let field = |name: &str| -> Option<u64> {
        status.lines().find_map(|line| line.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => Err(ProcError::Format("/proc/PID/status")),
    }
}

fn read(path: PathBuf) -> Result<String, ProcError> {
    std::fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
}

/// Reads `/proc/<pid>/` (`pid` None: this process).
pub fn sample(pid: Option<u32>) -> Result<ProcSample, ProcError> {
    let dir = pid.map_or_else(|| PathBuf::from("/proc/self"), |p| PathBuf::from(format!("/proc/{p}")));
    let cpu_ticks = parse_stat_cpu_ticks(&read(dir.join("stat"))?)?;
    let (rss_kib, hwm_kib) = parse_status_memory(&read(dir.join("status"))?)?;
    Ok(ProcSample { cpu_ticks, rss_kib, hwm_kib })
}

/// Resets the process's peak RSS (VmHWM) to its current RSS, so that a later VmHWM covers only the
/// window from now on. Needs permission to write `/proc/PID/clear_refs`; false when refused.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// The 1-minute load average from the contents of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// This machine's 1-minute load average, when readable.
pub fn loadavg_1min() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (node server.js) S 1 4242 4242 0 -1 4194560 6131 0 0 0 1234 567 0 0 20 0 11 0 \
        99 1254567936 12345 18446744073709551615 1 1 0 0 0 0 0 16781312 134235650 0 0 0 17 0 0 0 0 0 0";

    #[test]
    fn stat_cpu_is_utime_plus_stime() {
        assert_eq!(parse_stat_cpu_ticks(STAT).ok(), Some(1234 + 567));
        // A command name with ") " inside must not shift the fields.
        let tricky = STAT.replace("(node server.js)", "(a) b (c))");
        assert_eq!(parse_stat_cpu_ticks(&tricky).ok(), Some(1801));
        assert!(parse_stat_cpu_ticks("garbage").is_err());
    }

    #[test]
    fn thread_stat_fields_count_from_the_last_parenthesis() {
        // A thread's stat line as Linux writes it, its name holding spaces and a ')'.
        let stat = "90210 (dw (floor) w) R 90200 90200 1 34816 90200 4194368 1520 0 0 0 \
            731 412 0 0 20 0 3 0 5512 203587584 2361 18446744073709551615 1 1 0 0 0 0 0 0 \
            1073743103 0 0 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat).ok(), Some(731 + 412));
        assert_eq!(parse_stat_processor(stat), Some(0));
        assert_eq!(parse_stat_processor(&stat.replace(" -1 0 0 0 0", " -1 1 0 0 0")), Some(1));
        assert_eq!(parse_stat_processor(STAT), Some(0));
        assert_eq!(parse_stat_processor("1 (x) S 1 2 3"), None);
    }

    #[test]
    fn schedstat_clock_ticks_and_thread_links() {
        assert_eq!(parse_schedstat_ns("1428339012 20731 25011\n"), Some(1_428_339_012));
        assert_eq!(parse_schedstat_ns(""), None);
        assert_eq!(parse_clock_ticks("100\n"), Some(100.0));
        assert_eq!(parse_clock_ticks("0"), None);
        assert_eq!(parse_clock_ticks("undefined"), None);
        assert_eq!(parse_thread_self_link(Path::new("4242/task/4250")), Some(4250));
        assert_eq!(parse_thread_self_link(Path::new("4242/fd/4250")), None);
        assert_eq!(parse_thread_self_link(Path::new("4242")), None);
    }

    #[test]
    fn this_thread_can_be_sampled() {
        let tid = current_tid();
        assert!(tid.is_some_and(|t| t > 0));
        let mine = thread_sample(None).map_err(|e| e.to_string());
        let by_tid = thread_sample(tid).map_err(|e| e.to_string());
        assert!(mine.is_ok() && by_tid.is_ok(), "{mine:?} {by_tid:?}");
        assert!(clock_ticks_per_sec() > 0.0);
    }

    #[test]
    fn status_memory_fields() {
        let status = "Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t   52000 kB\nVmRSS:\t   48000 kB\nThreads:\t11\n";
        assert_eq!(parse_status_memory(status).ok(), Some((48_000, 52_000)));
        assert!(parse_status_memory("Name:\tkthread\n").is_err());
    }

    #[test]
    fn loadavg_first_field() {
        assert_eq!(parse_loadavg("5.74 6.65 5.28 2/100 1234\n"), Some(5.74));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = match sample(None) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
        let later = ProcSample { cpu_ticks: s.cpu_ticks + 250, ..s };
        assert!((s.cpu_seconds_until(&later) - 2.5).abs() < 1e-9);
    }
}
