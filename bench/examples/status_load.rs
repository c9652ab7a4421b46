//! `status` load on a running daemon, for profiling the control socket alone:
//!
//! ```text
//! cargo run --release -p mslink-bench --example status_load -- SOCKET [SECONDS] [CLIENTS] [PID]
//! ```
//!
//! CLIENTS (64) connections back to back for SECONDS (5), each one `status` exchange as
//! `mslinkctl status` makes it; prints the rate and p50 / p99, and with the daemon's PID its CPU
//! time per exchange (from `/proc/PID/stat`). Run it beside `perf record -p PID`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let socket: PathBuf =
        args.next().ok_or("usage: status_load SOCKET [SECONDS] [CLIENTS] [PID]")?.into();
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let clients: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let pid: Option<u32> = args.next().map(|s| s.parse()).transpose()?;
    let cpu_before = pid.map(cpu_ticks).transpose()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    mslink_bench::ctl::status(&socket, false).await?;
                    samples.push(t.elapsed());
                }
                Ok::<_, Error>(samples)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    if all.is_empty() {
        return Err("no exchange finished in time".into());
    }
    let n = all.len();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    print!(
        "{n} calls, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / seconds as f64,
        ms(all[n / 2]),
        ms(all[n * 99 / 100]),
    );
    if let (Some(pid), Some(before)) = (pid, cpu_before) {
        // Clock ticks are 10 ms on Linux's usual USER_HZ of 100.
        let cpu = (cpu_ticks(pid)? - before) as f64 * 10e-3;
        print!(", daemon CPU {:.0} us a call", cpu / n as f64 * 1e6);
    }
    println!();
    Ok(())
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').ok_or("unreadable /proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Ok(fields.get(11).ok_or("short /proc/PID/stat")?.parse::<u64>()?
        + fields.get(12).ok_or("short /proc/PID/stat")?.parse::<u64>()?)
}
