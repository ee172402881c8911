//! Reads one [`Sample`] through `sysinfo`.
//!
//! Only this process and the RAM figures are refreshed — never the whole
//! process table, which costs milliseconds and megabytes on a busy host.
//! Every read is a few small `/proc` files on Linux, but it is still file
//! I/O, so it runs on the monitor's own thread, never on a tokio worker.
//!
//! The CPU share is this process's CPU time over wall time between two
//! samples, not sysinfo's `cpu_usage`: that one stays 0 until a process
//! has been seen with non-zero CPU ticks twice, which a freshly started,
//! idle kernel has not.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::Sample;

/// Keeps the `sysinfo` state between samples: the CPU share is the
/// difference between two readings.
pub(super) struct Sampler {
    system: System,
    pid: Pid,
    cores: usize,
    /// When the previous sample was taken and the process's CPU time then.
    previous_cpu: Option<(Instant, u64)>,
    /// The directory whose file system's free space is sampled.
    state_dir: Option<PathBuf>,
}

impl Sampler {
    pub(super) fn new(state_dir: Option<PathBuf>) -> Sampler {
        Sampler {
            system: System::new(),
            pid: Pid::from_u32(std::process::id()),
            // The cores this process may use (affinity, cgroup quota), which
            // is what the load competes for; cheap, unlike sysinfo's CPU list.
            cores: std::thread::available_parallelism()
                .map(NonZeroUsize::get)
                .unwrap_or(1),
            previous_cpu: None,
            state_dir,
        }
    }

    /// Takes a sample now.
    pub(super) fn sample(&mut self) -> Sample {
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[self.pid]),
            false,
            ProcessRefreshKind::nothing().with_memory().with_cpu(),
        );
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let now = Instant::now();
        let (rss_bytes, cpu_percent) = match self.system.process(self.pid) {
            Some(p) => {
                let cpu_ms = p.accumulated_cpu_time();
                let percent = self.cpu_percent(now, cpu_ms);
                self.previous_cpu = Some((now, cpu_ms));
                (p.memory(), percent)
            }
            None => {
                // /proc unreadable (a hardened mount): report zeros rather
                // than fail; the reasons then show nothing about RSS.
                tracing::debug!(pid = %self.pid, "sysinfo cannot read this process");
                (0, 0.0)
            }
        };
        let load = System::load_average();
        Sample {
            sampled_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rss_bytes,
            cpu_percent,
            system_memory_total_bytes: self.system.total_memory(),
            system_memory_available_bytes: self.system.available_memory(),
            load_average: [load.one, load.five, load.fifteen],
            cpu_cores: self.cores,
            system_uptime_secs: System::uptime(),
            state_dir_free_bytes: self.state_dir.as_deref().and_then(free_bytes),
        }
    }
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a NUL-terminated path and a buffer statvfs fills on success.
    if unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the buffer.
    let stat = unsafe { stat.assume_init() };
    // The field types differ by platform (u32 on some, u64 on Linux).
    #[allow(clippy::unnecessary_cast)]
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

impl Sampler {
    /// CPU time used since the previous sample per wall time, in percent
    /// (100 = one core busy); 0 for the first sample.
    fn cpu_percent(&self, now: Instant, cpu_ms: u64) -> f64 {
        let Some((then, then_ms)) = self.previous_cpu else {
            return 0.0;
        };
        let wall_ms = now.duration_since(then).as_secs_f64() * 1000.0;
        if wall_ms <= 0.0 {
            return 0.0;
        }
        cpu_ms.saturating_sub(then_ms) as f64 * 100.0 / wall_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_of_this_process_has_its_memory_and_the_hosts() {
        let s = Sampler::new(Some(std::env::temp_dir())).sample();
        assert!(s.rss_bytes > 0, "{s:?}");
        assert!(s.state_dir_free_bytes.is_some_and(|b| b > 0), "{s:?}");
        assert_eq!(Sampler::new(None).sample().state_dir_free_bytes, None);
        assert!(s.system_memory_total_bytes >= s.system_memory_available_bytes);
        assert!(s.system_memory_total_bytes > s.rss_bytes, "{s:?}");
        assert!(s.system_uptime_secs > 0);
        assert!(s.cpu_cores >= 1);
    }

    #[test]
    fn the_cpu_share_reflects_work_between_two_samples() {
        let mut sampler = Sampler::new(None);
        sampler.sample();
        // Spin one core for a while: the next sample must see it.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(400) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let s = sampler.sample();
        assert!(s.cpu_percent > 20.0, "{s:?}");
    }
}
