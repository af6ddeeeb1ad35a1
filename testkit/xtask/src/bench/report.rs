//! The benchmark's Markdown report.

use std::time::Duration;

use super::cluster::{tally, Counts};
use super::proc::clk_tck;
use super::{Bench, Idle, SingleResult, SizeResult, SECRET};

/// regcred's default `--max-requests-per-second`, quoted in the report.
const DEFAULT_RATE: u32 = 100;

// The targets the report compares against.
const TARGET_CYCLE_10K: Duration = Duration::from_secs(10);
const TARGET_NEW_NAMESPACE: Duration = Duration::from_secs(1);
const TARGET_RSS_10K_MIB: f64 = 32.0;
const TARGET_RSS_SINGLE_MIB: f64 = 10.0;

pub async fn print(bench: &Bench, results: &[SizeResult], single: &SingleResult, cpus: usize, elapsed: Duration) {
    let opts = &bench.opts;
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let latency = fmt_dur(opts.latency);
    let conc = opts.max_concurrent_writes;
    let bin_size = std::fs::metadata(&bench.bin).map(|m| m.len()).unwrap_or(0);
    let largest = results.last().expect("at least one size");
    let n_big = thousands(largest.namespaces);
    let emulator = bench.cluster.is_emulator();
    let server = bench.cluster.server_name();

    println!("## regcred benchmark\n\n```sh\ncargo run --release -p xtask -- {}\n```\n", args.join(" "));
    println!(
        "- Machine: {}; bench built {}",
        super::proc::machine(cpus).await,
        if cfg!(debug_assertions) { "without optimisations (debug)" } else { "with --release" },
    );
    println!("- regcred under test: `{}` ({:.1} MiB), run as", bench.bin.display(), bin_size as f64 / 1024.0 / 1024.0);
    let fan_out = bench.regcred_args("KEY", &bench.fan_out_target());
    println!("  `regcred {}`", fan_out.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "));
    let mint = fmt_dur(opts.mint_latency.unwrap_or(opts.latency));
    let pinning = if opts.pin {
        "regcred pinned to CPU 0, the emulators and harness to the other CPUs"
    } else {
        "regcred and the emulators share the machine's CPUs (no pinning)"
    };
    if emulator && opts.mint_latency.is_none_or(|m| m == opts.latency) {
        println!(
            "- Kubernetes API and Google token endpoints: the test kit's emulators, in the benchmark's own process \
             on 127.0.0.1, {latency} added to every request; {pinning}."
        );
    } else {
        println!("- Kubernetes API: {}.", bench.cluster.describe());
        println!(
            "- Google token endpoints: the test kit's emulator, in the benchmark's own process on 127.0.0.1, {mint} \
             added to every request; {pinning}."
        );
    }
    println!(
        "- Cycle times are regcred's own `took` from its `fan-out cycle` log line. Rotations are forced with \
         {}-tokens; each size runs {} rotation(s) after the first cycle and reports the median.\n",
        humantime::format_duration(opts.token_lifetime),
        opts.rotations
    );

    // The summary table: each figure next to its target.
    println!("| Measurement | Namespaces | Measured | Target | |\n| --- | ---: | ---: | --- | --- |");
    for r in results {
        let raced = if r.first.changed < r.namespaces as u64 {
            format!(" (the cycle itself wrote {}; see notes)", thousands(r.first.changed as usize))
        } else {
            String::new()
        };
        row("Fan-out cycle, first (creates)", r.namespaces, &format!("{}{raced}", fmt_dur(r.first.took)), None);
    }
    for r in results {
        let took = r.rotation();
        let target = (r.namespaces >= 10_000).then(|| {
            let what = format!("at 10,000 ({latency} latency, {conc} concurrent writes)");
            (format!("≤ {} {what}", fmt_dur(TARGET_CYCLE_10K)), took <= TARGET_CYCLE_10K)
        });
        row("Fan-out cycle, rotation (patches)", r.namespaces, &fmt_dur(took), target);
    }
    for r in results {
        let (requests, watches) = r.per_rotation();
        let measured = format!("{requests:.2} (+{watches} watch)");
        row("Requests per namespace per rotation cycle", r.namespaces, &measured, None);
    }
    if let Some((lat, _)) = &largest.new_namespaces {
        let max = *lat.iter().max().expect("some");
        row(
            &format!("New namespace → Secret, median / max of {}", lat.len()),
            largest.namespaces,
            &format!("{} / {}", fmt_dur(median(lat)), fmt_dur(max)),
            Some((format!("< {}", fmt_dur(TARGET_NEW_NAMESPACE)), max < TARGET_NEW_NAMESPACE)),
        );
    }
    for r in results {
        let rss = mib(r.memory_at_end.0);
        let target = (r.namespaces >= 10_000)
            .then(|| (format!("< {TARGET_RSS_10K_MIB} MiB at 10,000"), rss < TARGET_RSS_10K_MIB));
        row("Peak RSS (VmHWM)", r.namespaces, &format!("{rss:.1} MiB"), target);
    }
    let rss1 = mib(single.peak_rss_kib);
    println!(
        "| Peak RSS (VmHWM), single `--secret default/{SECRET}` | — | {rss1:.1} MiB | < {TARGET_RSS_SINGLE_MIB} MiB | {} |",
        verdict(rss1 < TARGET_RSS_SINGLE_MIB)
    );
    let idle_row = |label: &str, n: &str, idle: &Idle| {
        // Timers alone: no API request, nothing logged, at most one clock tick.
        let ok = idle.requests.is_empty() && idle.warnings.is_empty() && idle.cpu.regcred_ms <= 1000 / clk_tck();
        println!(
            "| {label} | {n} | {:.0} ms/min ({} ms in {:.0} s; {} wake-ups; API requests: {}) | no CPU beyond timers | {} |",
            idle.cpu.regcred_ms as f64 * 60.0 / idle.cpu.wall.as_secs_f64(),
            idle.cpu.regcred_ms,
            idle.cpu.wall.as_secs_f64(),
            idle.cpu.switches,
            describe_counts(&idle.requests),
            verdict(ok)
        );
    };
    if let Some(idle) = &largest.idle {
        idle_row("Idle CPU", &n_big, idle);
    }
    if let Some(idle) = &single.idle {
        idle_row(&format!("Idle CPU, single `--secret default/{SECRET}`"), "—", idle);
    }
    println!(
        "\nWith the product default `--max-requests-per-second {DEFAULT_RATE}`, a rotation writes at most \
         {DEFAULT_RATE} Secrets per second: {n_big} namespaces take ≥ {:.0} s by design. The figures above use 0 \
         (no limit).\n",
        largest.namespaces as f64 / DEFAULT_RATE as f64
    );

    // Details per size.
    println!(
        "| Namespaces | Start-up → first cycle done | First cycle (Secrets it changed) | Rotation cycles | \
         Floor ⌈N/{conc}⌉ × {latency} | CPU in the last rotation: regcred / {server} (machine busy) | \
         VmHWM after first cycle / after rotations / at end (VmRSS at end) | Rotation requests | Start-up requests |"
    );
    println!("| ---: | ---: | ---: | --- | ---: | --- | --- | --- | --- |");
    for r in results {
        // The floor is set by the emulator's added latency.
        let floor =
            if emulator { fmt_dur(opts.latency * r.namespaces.div_ceil(conc.max(1)) as u32) } else { "—".into() };
        let cpu = r.rotation_cpu;
        println!(
            "| {} | {} | {} ({}) | {} | {floor} | {} ms / {} ms in {} ({:.0}%) | {:.1} / {:.1} / {:.1} MiB ({:.1} MiB) | {} | {} |",
            thousands(r.namespaces),
            fmt_dur(r.startup_to_first),
            fmt_dur(r.first.took),
            thousands(r.first.changed as usize),
            r.rotations.iter().map(|c| fmt_dur(c.took)).collect::<Vec<_>>().join(", "),
            cpu.regcred_ms,
            cpu.server_ms,
            fmt_dur(cpu.wall),
            cpu.busy(cpus),
            mib(r.memory_after_first.0),
            mib(r.memory_after_rotations.0),
            mib(r.memory_at_end.0),
            mib(r.memory_at_end.1),
            describe_counts(&r.rotation_requests),
            describe_counts(&r.startup_requests),
        );
    }
    println!("\nNotes:");
    let whose = if emulator {
        "The emulator column is this whole process (the harness only waits on regcred's log meanwhile)"
    } else {
        "The kube-apiserver + etcd column is those two processes (their pid files beside the kubeconfig)"
    };
    println!(
        "- \"CPU in the last rotation\" is utime+stime (from `/proc/PID/stat`, {} ms ticks) from regcred's `minted a \
         credential` line to its `fan-out cycle` line. {whose}; \"machine busy\" is both together over {cpus} CPUs × \
         the wall time. Rotation requests are all the rotations' ({}), counted from the end of the first cycle{}.",
        1000 / clk_tck(),
        opts.rotations,
        if emulator { "" } else { " by the API server (its audit log)" }
    );
    let big = largest.rotation_cpu;
    if big.server_ms > big.regcred_ms && big.busy(cpus) >= 80.0 {
        println!(
            "- At {n_big} namespaces the machine is CPU-bound during the rotation and the {server} uses {:.1}× \
             regcred's CPU: the cycle time is set by the {server} sharing the {cpus} CPUs{}. regcred itself needs \
             {:.0} µs of CPU per namespace.",
            big.server_ms as f64 / big.regcred_ms.max(1) as f64,
            if emulator { ", so it is an upper bound for regcred against a real API server" } else { "" },
            big.regcred_ms as f64 * 1000.0 / largest.namespaces as f64
        );
    }
    if results.iter().any(|r| r.first.changed < r.namespaces as u64) {
        println!(
            "- First cycle: where the cycle wrote fewer Secrets than there are namespaces, regcred's namespace watch \
             finished its first listing after the first token was minted, so the watch worker queued every namespace \
             too and raced the cycle (`POST secrets → 409` and `GET secrets` in the start-up requests); the cycle \
             then found most Secrets already written. `--mint-latency 3s` (a mint slower than the listing) avoids \
             the race."
        );
    }
    if emulator {
        println!("- New namespace → Secret is measured from `KubeApi::create_namespace` to the Secret being readable in the emulator, polled every 1 ms (±1 ms).");
    } else {
        println!("- New namespace → Secret is measured from the harness sending its namespace `POST` to the Secret's `ADDED` event on a watch the harness opened beforehand.");
    }
    for r in results {
        if r.first.failed > 0 || r.rotations.iter().any(|c| c.failed > 0 || c.changed != r.namespaces as u64) {
            let rotations: Vec<String> =
                r.rotations.iter().map(|c| format!("{} changed / {} failed", c.changed, c.failed)).collect();
            println!(
                "- {} namespaces: first cycle {} changed / {} failed; rotations {}.",
                r.namespaces,
                r.first.changed,
                r.first.failed,
                rotations.join(", ")
            );
        }
        if let Some((_, reqs)) = &r.new_namespaces {
            println!("- Requests while creating the new namespaces: {}.", describe_counts(reqs));
        }
        if !r.warnings.is_empty() {
            println!(
                "- regcred's warnings over the whole run at {} namespaces: {}.",
                thousands(r.namespaces),
                distinct(&r.warnings)
            );
        }
        if let Some(idle) = r.idle.as_ref().filter(|i| !i.warnings.is_empty()) {
            println!(
                "- Of which during the idle window ({:.0} s): {}.",
                idle.cpu.wall.as_secs_f64(),
                distinct(&idle.warnings)
            );
        }
    }
    if !single.warnings.is_empty() {
        println!("- regcred's warnings with a single Secret: {}.", distinct(&single.warnings));
    }
    println!("- Whole benchmark: {:.0} s.", elapsed.as_secs_f64());
}

/// One row of the summary table, with its target and verdict if it has one.
fn row(what: &str, namespaces: usize, measured: &str, target: Option<(String, bool)>) {
    let (target, ok) = target.map_or((String::new(), ""), |(t, ok)| (t, verdict(ok)));
    println!("| {what} | {} | {measured} | {target} | {ok} |", thousands(namespaces));
}

pub fn describe_counts(counts: &Counts) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(k, n)| format!("{k} ×{}", thousands(*n))).collect::<Vec<_>>().join(", ")
}

/// "`message` ×3; `other` ×1"
fn distinct(lines: &[String]) -> String {
    tally(lines).iter().map(|(l, n)| format!("`{l}` ×{n}")).collect::<Vec<_>>().join("; ")
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "✅ met"
    } else {
        "❌ missed"
    }
}

pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=,:@".contains(c)) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(10_000), "10,000");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(fmt_dur(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(fmt_dur(Duration::from_millis(250)), "250 ms");
        assert_eq!(fmt_dur(Duration::from_millis(2500)), "2.50 s");
    }
}
