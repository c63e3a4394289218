//! What the benchmarks share: their sections of `BENCHMARKS.md`, the machine they ran
//! on, webhooks delivered at a rate, CPU time per process and thread, `perf` profiles.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::common::{foyer::Sender, repo_root};

/// Replaces (or appends) the section between `<!-- name -->` markers in BENCHMARKS.md.
pub(crate) fn write_section(name: &str, body: &str) {
    let path = repo_root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| "# Benchmarks\n\nFigures written by `scripts/bench`; rerun it to refresh them.\n".into());
    let (start, end) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let section = format!("{start}\n{body}\n{end}");
    let text = match (text.find(&start), text.find(&end)) {
        (Some(a), Some(b)) => format!("{}{section}{}", &text[..a], &text[b + end.len()..]),
        _ => format!("{}\n{section}\n", text.trim_end()),
    };
    std::fs::write(&path, text).expect("write BENCHMARKS.md");
}

pub(crate) fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!(
        "{} on {cores} cores, {}",
        Utc::now().format("%Y-%m-%d %H:%M UTC"),
        if cfg!(debug_assertions) { "debug build" } else { "release build" }
    )
}

/// Delivers `total` webhooks made by `make`, `in_flight` at a time, each retried on 503
/// like a platform's sender; returns webhooks per second and the 503 answers seen.
pub(crate) async fn deliver_all(
    sender: &Sender, in_flight: usize, total: usize, make: impl Fn(usize) -> (String, Vec<u8>) + Send + Sync + 'static,
) -> (f64, u32) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (sender, next, make) = (sender.clone(), next.clone(), make.clone());
            tokio::spawn(async move {
                let mut unavailable = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        return unavailable;
                    }
                    let (id, body) = make(i);
                    let delivery = sender.deliver(&id, &body, Duration::from_secs(120)).await;
                    assert_eq!(delivery.status, 202, "webhook {id}");
                    unavailable += delivery.unavailable;
                }
            })
        })
        .collect();
    let mut unavailable = 0;
    for worker in workers {
        unavailable += worker.await.expect("sender task");
    }
    (total as f64 / started.elapsed().as_secs_f64(), unavailable)
}

/// The machine's cores, as a float for CPU shares.
pub(crate) fn cores() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

/// CPU time a process has used so far (user + system), from `/proc/<pid>/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    cpu_seconds_of(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// Bytes a process has handed to `write()` and its kin so far (`wchar` of `/proc/<pid>/io`):
/// for Foyer, SQLite's WAL frames and checkpoints, and its log lines.
pub(crate) fn written_bytes(pid: u32) -> f64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

/// The first word after `label` on its line of `/proc/<pid>/<file>`: `status`'s
/// `VmRSS:`, `limits`' `Max open files`.
pub(crate) fn proc_value(pid: u32, file: &str, label: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(label)).and_then(|v| v.split_whitespace().next()).map(str::to_owned)
}

/// Resident memory of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    proc_value(pid, "status", "VmRSS:").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// This test process's own CPU time (the load generator's share of the machine).
pub(crate) fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id())
}

/// A `perf` profile of one process while a benchmark runs: on when
/// `FOYER_BENCH_PROFILE=1` and `perf` is installed, otherwise it does nothing.
pub(crate) struct Profile {
    perf: Option<std::process::Child>,
    data: std::path::PathBuf,
}

impl Profile {
    pub(crate) fn start(pid: u32, name: &str) -> Profile {
        let data = repo_root().join(format!("target/bench-profiles/{name}.data"));
        let wanted = std::env::var("FOYER_BENCH_PROFILE").is_ok_and(|v| v == "1");
        let perf = wanted.then(|| {
            std::fs::create_dir_all(data.parent().expect("a folder")).expect("profile folder");
            // Frame pointers (`-g`, the default) lose the callers of libc and SQLite;
            // FOYER_BENCH_CALL_GRAPH=dwarf keeps them, at a far larger file.
            let graph = std::env::var("FOYER_BENCH_CALL_GRAPH").unwrap_or_else(|_| "fp".to_owned());
            std::process::Command::new("perf")
                .args(["record", "-e", "cpu-clock", "-F", "1999", "--call-graph", &graph, "-o"])
                .arg(&data)
                .args(["-p", &pid.to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .ok()
        });
        Profile { perf: perf.flatten(), data }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.perf.is_some()
    }

    /// Stops recording; returns where the samples fell (by binary or library, then
    /// Foyer's and the libraries' hottest functions, by self time) as Markdown tables.
    pub(crate) fn stop(self) -> Option<String> {
        let mut perf = self.perf?;
        let _ = std::process::Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
        let report = |args: &[&str]| -> Vec<Vec<String>> {
            let out = std::process::Command::new("perf")
                .args(["report", "--stdio", "--no-children", "-g", "none", "--percent-limit", "1.5", "-i"])
                .arg(&self.data)
                .args(args)
                .output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
            text.lines()
                .filter(|l| l.trim_start().chars().next().is_some_and(|c| c.is_ascii_digit()))
                .map(|l| l.split_whitespace().map(str::to_owned).collect())
                .collect()
        };
        let by_dso: Vec<String> = report(&["--sort", "dso"])
            .iter()
            .take(8)
            .map(|c| format!("| {} | {} |", c[0], c.get(1).map_or("", |s| s)))
            .collect();
        let by_symbol: Vec<String> = report(&["--sort", "dso,symbol", "--dsos", "foyer,libc.so.6,[kernel.kallsyms]"])
            .iter()
            .take(15)
            .map(|c| {
                // "12.34%  foyer  [.] symbol name"
                let symbol: String = c.iter().skip(3).cloned().collect::<Vec<_>>().join(" ").chars().take(90).collect();
                format!("| {} | {} | `{}` |", c[0], c.get(1).map_or("", |s| s), symbol.replace('`', "'"))
            })
            .collect();
        Some(format!(
            "| samples | in |\n|---|---|\n{}\n\n| self | in | function |\n|---|---|---|\n{}",
            by_dso.join("\n"),
            by_symbol.join("\n")
        ))
    }
}

/// The busiest threads of a process since `before` (from [`thread_cpu`]), as text.
pub(crate) fn busiest_threads(pid: u32, before: &std::collections::HashMap<String, f64>) -> String {
    let mut used: Vec<(String, f64)> = thread_cpu(pid)
        .into_iter()
        .map(|(name, cpu)| (name.clone(), cpu - before.get(&name).copied().unwrap_or(0.0)))
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used.iter().take(4).map(|(name, cpu)| format!("{name} {cpu:.1} s")).collect::<Vec<_>>().join(", ")
}

/// CPU seconds per thread of a process, by thread name and id (`/proc/<pid>/task`).
pub(crate) fn thread_cpu(pid: u32) -> std::collections::HashMap<String, f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Default::default() };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((format!("{} ({tid})", name.trim()), cpu_seconds_of(&task.path().join("stat"))))
        })
        .collect()
}

fn cpu_seconds_of(stat: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0 // utime, stime; USER_HZ is 100 on Linux
}
