//! CPU time of a process, for the benchmarks' accounting of where the work is done.

/// CPU seconds (user and system, all threads) used so far by the process `pid` (a number, or
/// `self`), from `/proc/<pid>/stat` in Linux's 100 ticks a second; with `children`, also those
/// of its children that exited and were waited for. `None` when the process is gone or its
/// stat unreadable.
pub fn cpu_seconds(pid: &str, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name: utime, stime, cutime and cstime are the 12th to 15th.
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let count = if children { 4 } else { 2 };
    let mut ticks = 0.0;
    for field in fields.get(11..11 + count)? {
        ticks += field.parse::<f64>().ok()?;
    }
    Some(ticks / 100.0)
}
