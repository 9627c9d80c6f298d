//! Resource sampling of a child process from /proc: peak RSS (VmHWM), open fds, CPU seconds,
//! and CPU seconds per thread.

use std::collections::BTreeMap;
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What a [`ProcessWatch`] saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    /// Peak resident set size in KiB (VmHWM; the kernel's own high-water mark).
    pub peak_rss_kib: u64,
    /// Largest number of open file descriptors seen in any sample.
    pub peak_fds: u64,
    /// user + system CPU seconds at the last sample.
    pub cpu_secs: f64,
    /// Each thread's name and user + system CPU seconds at its last sample, by thread id. A
    /// thread's last 50 ms before it exits are not seen.
    pub thread_cpu: BTreeMap<u32, (String, f64)>,
    pub samples: u64,
}

impl ProcessStats {
    /// CPU seconds per thread name (threads of the same name summed), busiest first.
    pub fn cpu_by_thread(&self) -> Vec<(String, f64)> {
        let mut by_name: BTreeMap<&str, f64> = BTreeMap::new();
        for (name, secs) in self.thread_cpu.values() {
            *by_name.entry(name).or_default() += secs;
        }
        let mut out: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(n, s)| (n.to_string(), s))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// One reading of `/proc/{pid}`; `None` once the process is gone.
pub fn sample(pid: u32) -> Option<(u64, u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    Some((hwm, fds, cpu_secs(pid).unwrap_or(0.0)))
}

/// utime + stime of `pid` in seconds, from `/proc/{pid}/stat` (still readable while a zombie).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_cpu_secs(&stat)
}

/// Every live thread of `pid`: (thread id, name, utime + stime seconds).
pub fn thread_cpu(pid: u32) -> Vec<(u32, String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| {
            let t = t.ok()?;
            let tid: u32 = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_string();
            Some((tid, name, stat_cpu_secs(&stat)?))
        })
        .collect()
}

/// utime + stime in seconds from the text of a `/proc/.../stat` file.
fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime = field 14, stime = field 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some((utime + stime) as f64 / tck)
}

/// Samples a process every `interval` on a background thread.
pub struct ProcessWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ProcessStats>>,
    thread: Option<JoinHandle<()>>,
}

fn fold(stats: &Mutex<ProcessStats>, s: (u64, u64, f64), threads: Vec<(u32, String, f64)>) {
    let mut st = stats.lock().expect("watch lock");
    for (tid, name, secs) in threads {
        st.thread_cpu.insert(tid, (name, secs));
    }
    st.peak_rss_kib = st.peak_rss_kib.max(s.0);
    st.peak_fds = st.peak_fds.max(s.1);
    if s.2 >= st.cpu_secs {
        st.cpu_secs = s.2;
    }
    st.samples += 1;
}

impl ProcessWatch {
    pub fn start(pid: u32, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ProcessStats::default()));
        let (s2, st2) = (stop.clone(), stats.clone());
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match sample(pid) {
                    Some(s) => fold(&st2, s, thread_cpu(pid)),
                    None => break,
                }
                std::thread::sleep(interval);
            }
        });
        Self {
            pid,
            stop,
            stats,
            thread: Some(thread),
        }
    }

    /// Watch a child every 50 ms.
    pub fn child(child: &Child) -> Self {
        Self::start(child.id(), Duration::from_millis(50))
    }

    /// Snapshot so far.
    pub fn stats(&self) -> ProcessStats {
        self.stats.lock().expect("watch lock").clone()
    }

    /// Stop sampling (one last sample first) and return what was seen.
    pub fn stop(mut self) -> ProcessStats {
        if let Some(s) = sample(self.pid) {
            fold(&self.stats, s, thread_cpu(self.pid));
        }
        self.finish()
    }

    fn finish(&mut self) -> ProcessStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }

    /// Wait for `child` to exit and return its status with exact final CPU time: the child is
    /// waited for without reaping (waitid WNOWAIT), its zombie's /proc/stat is read, then reaped.
    pub fn wait(mut self, child: &mut Child) -> std::io::Result<(ExitStatus, ProcessStats)> {
        use nix::sys::wait::{Id, WaitPidFlag, waitid};
        let pid = child.id();
        loop {
            match waitid(
                Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break, // already reaped elsewhere: fall back to the samples
            }
        }
        if let Some(cpu) = cpu_secs(pid) {
            let mut st = self.stats.lock().expect("watch lock");
            st.cpu_secs = st.cpu_secs.max(cpu);
        }
        let stats = self.finish();
        let status = child.wait()?;
        Ok((status, stats))
    }
}

impl Drop for ProcessWatch {
    fn drop(&mut self) {
        self.finish();
    }
}
