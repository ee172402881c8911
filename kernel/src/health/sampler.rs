//! Reads one [`Sample`] through `sysinfo`.
//!
//! Only this process, the RAM figures and the global CPU times (which
//! sysinfo needs for a process's CPU share) are refreshed — never the
//! whole process table, which costs milliseconds and megabytes on a busy
//! host. Every read is a few small `/proc` files on Linux, but it is still
//! file I/O, so it runs on the monitor's own thread, never on a tokio
//! worker.

use std::num::NonZeroUsize;

use sysinfo::{MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use super::Sample;

/// Keeps the `sysinfo` state between samples: the CPU share is the
/// difference between two readings.
pub(super) struct Sampler {
    system: System,
    pid: Pid,
    cores: usize,
}

impl Sampler {
    pub(super) fn new() -> Sampler {
        Sampler {
            system: System::new(),
            pid: Pid::from_u32(std::process::id()),
            // The cores this process may use (affinity, cgroup quota), which
            // is what the load competes for; cheap, unlike sysinfo's CPU list.
            cores: std::thread::available_parallelism()
                .map(NonZeroUsize::get)
                .unwrap_or(1),
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
        let (rss_bytes, cpu_percent) = match self.system.process(self.pid) {
            Some(p) => (p.memory(), f64::from(p.cpu_usage())),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_of_this_process_has_its_memory_and_the_hosts() {
        let s = Sampler::new().sample();
        assert!(s.rss_bytes > 0, "{s:?}");
        assert!(s.system_memory_total_bytes >= s.system_memory_available_bytes);
        assert!(s.system_memory_total_bytes > s.rss_bytes, "{s:?}");
        assert!(s.system_uptime_secs > 0);
        assert!(s.cpu_cores >= 1);
    }

    #[test]
    fn the_cpu_share_reflects_work_between_two_samples() {
        let mut sampler = Sampler::new();
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
