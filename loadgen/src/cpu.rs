//! CPU time accounting: loadgen's own (getrusage, all threads) and, optionally, the
//! server's (from /proc; several processes, such as an ensemble's members, summed), so
//! a report can show CPU per request for both and a reader can see the load generator
//! was not the bottleneck. Called on the main thread at the edges of the measurement
//! window only.

use std::time::Duration;

/// User and system CPU time consumed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub sys: Duration,
}

impl CpuTimes {
    pub fn total(&self) -> Duration {
        self.user + self.sys
    }

    /// `self - earlier`, saturating at zero.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// This process's CPU time (every thread), from getrusage(RUSAGE_SELF).
pub fn self_times() -> CpuTimes {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return CpuTimes::default();
    }
    CpuTimes {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
    }
}

/// Another process's CPU time (utime, stime of /proc/PID/stat), or `None` if it
/// cannot be read (process gone, not Linux).
pub fn process_times(pid: u32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&stat)
}

/// The summed CPU time of several processes (an ensemble's members), or `None` when
/// the list is empty or any of them cannot be read.
pub fn processes_times(pids: &[u32]) -> Option<CpuTimes> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(CpuTimes::default(), |sum, &pid| {
        let t = process_times(pid)?;
        Some(CpuTimes {
            user: sum.user + t.user,
            sys: sum.sys + t.sys,
        })
    })
}

fn parse_proc_stat(stat: &str) -> Option<CpuTimes> {
    // The command name (field 2) may contain spaces: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    let ticks = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Some(CpuTimes {
        user: ticks(utime),
        sys: ticks(stime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_name() {
        let s = "42 (java main) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let t = parse_proc_stat(s).unwrap();
        assert!(t.user > t.sys);
        assert_eq!(t.user * 50, t.sys * 250);
    }

    #[test]
    fn own_times_are_readable() {
        let a = self_times();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = self_times();
        assert!(b.total() >= a.total());
        assert!(process_times(std::process::id()).is_some());
    }

    #[test]
    fn several_processes_are_summed() {
        let me = std::process::id();
        let one = processes_times(&[me]).unwrap();
        let two = processes_times(&[me, me]).unwrap();
        assert!(two.total() >= one.total() * 2);
        assert!(processes_times(&[]).is_none());
        assert!(processes_times(&[me, u32::MAX]).is_none());
    }
}
