//! `voronka-bench cold-start`: starts each function's release binary the way Lambda does, against
//! the Runtime API emulator and a moto server, alternating with the hello-world Lambda, and
//! prints (or writes into BENCHMARKS.md) the medians. Run it with `bench/cold-start.sh`, which
//! builds the binaries first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use voronka_bench::{Emulator, Mark};

const HELLO: &str = "hello-lambda";

/// Function, binary, representative event (a sample under `events/`).
const FUNCTIONS: [(&str, &str); 6] = [
    ("lead-capture", "lead-capture/submission-json.json"),
    ("qualify-bot", "qualify-bot/session-start.json"),
    ("sender", "sender/sqs-send-requests.json"),
    ("trigger-evaluator", "trigger-evaluator/sqs-cart-events.json"),
    ("cart-scheduler", "cart-scheduler/scheduled-event.json"),
    ("kpi-rollup", "kpi-rollup/scheduled-hourly.json"),
];

const BEGIN: &str = "<!-- cold-start:begin (written by bench/cold-start.sh --write) -->";
const END: &str = "<!-- cold-start:end -->";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Options {
    rounds: usize,
    /// Where the release binaries are; by default the folder of this executable.
    bin_dir: Option<PathBuf>,
    only: Option<Vec<String>>,
    write: Option<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { rounds: 15, bin_dir: None, only: None, write: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--rounds" => {
                options.rounds = value("--rounds")?.parse().map_err(|_| "--rounds must be a whole number")?;
                if !(1..=1000).contains(&options.rounds) {
                    return Err("--rounds must be between 1 and 1000".into());
                }
            }
            "--bin-dir" => options.bin_dir = Some(PathBuf::from(value("--bin-dir")?)),
            "--only" => options.only = Some(value("--only")?.split(',').map(str::to_string).collect()),
            "--write" => options.write = Some(PathBuf::from(value("--write")?)),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// Kills the child when dropped (moto must not outlive the harness).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Starts moto and creates the resources; returns the server, its endpoint and the setup's
/// `NAME=value` lines.
fn start_moto() -> Result<(Guard, String, String), String> {
    let python = std::env::var("VORONKA_TOOLS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace().join(".tools/venv/bin/python"));
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let child = Command::new(&python)
        .arg(workspace().join("tests/moto_server.py"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto with {} (set VORONKA_TOOLS_PYTHON): {e}", python.display()))?;
    let guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("moto did not listen within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let output = Command::new(&python)
        .arg(workspace().join("bench/moto_setup.py"))
        .arg(&endpoint)
        .output()
        .map_err(|e| format!("cannot run bench/moto_setup.py: {e}"))?;
    if !output.status.success() {
        return Err(format!("bench/moto_setup.py failed:\n{}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok((guard, endpoint, String::from_utf8_lossy(&output.stdout).into_owned()))
}

/// What Lambda sets for a `provided.al2023` function, and what the template gives every function.
fn lambda_environment(name: &str, runtime_api: &str, endpoint: &str, resources: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{name}")),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]bench"),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_DEFAULT_REGION", "eu-central-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        ("AWS_ENDPOINT_URL", endpoint),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("_HANDLER", "bootstrap"),
        ("TZ", ":UTC"),
        ("LANG", "en_US.UTF-8"),
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("RUST_LOG", "info"),
        ("PUBLIC_BASE_URL", "https://bench.example.com"),
        ("SES_CONFIGURATION_SET", "voronka-bench"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for line in resources.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

#[derive(Debug, Clone)]
struct Sample {
    /// Process start to its first `GET /next`.
    init_ms: f64,
    /// Its CPU time at that moment.
    init_cpu_ms: Option<f64>,
    /// Process start to the first invocation's answer.
    first_response_ms: f64,
    /// CPU time by the time it was idle again (`wait4`).
    total_cpu_ms: f64,
    peak_rss_kb: i64,
    outcome: String,
}

fn outcome_of(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return "response".into() };
    if let Some(status) = value.get("statusCode") {
        return format!("HTTP {status}");
    }
    if let Some(failures) = value.get("batchItemFailures").and_then(|f| f.as_array()) {
        return format!("{} failed items", failures.len());
    }
    "response".into()
}

fn run_once(emulator: &mut Emulator, binary: &Path, env: &[(String, String)], event: &[u8]) -> Result<Sample, String> {
    let marks = emulator.arm(event.to_vec());
    let mut command = Command::new(binary);
    command.env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(Stdio::null());
    command.stderr(Stdio::null());
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    emulator.started(child.id());
    let (mut init, mut init_cpu, mut response, mut outcome) = (None, None, None, String::new());
    let deadline = started + Duration::from_secs(30);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match marks.recv_timeout(remaining) {
            Ok(Mark::FirstNext { at, cpu_ns }) => {
                init = Some(at - started);
                init_cpu = cpu_ns;
            }
            Ok(Mark::Response { at, body }) => {
                response = Some(at - started);
                outcome = outcome_of(&body);
            }
            Ok(Mark::InvocationError { at, body }) => {
                response = Some(at - started);
                outcome = format!("error: {}", String::from_utf8_lossy(&body));
            }
            Ok(Mark::InitError { body, .. }) => {
                child.kill().ok();
                child.wait().ok();
                return Err(format!("{} failed to initialise: {}", binary.display(), String::from_utf8_lossy(&body)));
            }
            Ok(Mark::IdleNext { .. }) => break,
            Err(_) => {
                child.kill().ok();
                let status = child.wait().ok();
                return Err(format!("{} did not finish its first invocation ({status:?})", binary.display()));
            }
        }
    }
    child.kill().ok();
    let (cpu_ms, rss_kb) = wait_with_usage(child.id())?;
    let (Some(init), Some(response)) = (init, response) else { return Err("no invocation".into()) };
    Ok(Sample {
        init_ms: init.as_secs_f64() * 1e3,
        init_cpu_ms: init_cpu.map(|ns| ns as f64 / 1e6),
        first_response_ms: response.as_secs_f64() * 1e3,
        total_cpu_ms: cpu_ms,
        peak_rss_kb: rss_kb,
        outcome,
    })
}

/// Reaps `pid` with wait4(2): its user + system CPU time (ms) and peak resident set (KiB).
fn wait_with_usage(pid: u32) -> Result<(f64, i64), String> {
    let mut status = 0;
    // SAFETY: rusage is plain old data, and wait4 writes it for the child we spawned and killed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    if reaped != pid as libc::pid_t {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Ok((ms(usage.ru_utime) + ms(usage.ru_stime), usage.ru_maxrss))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

struct Summary {
    init: f64,
    init_cpu: Option<f64>,
    response: f64,
    cpu: f64,
    rss_mb: f64,
    outcomes: String,
}

fn summarise(samples: &[Sample]) -> Summary {
    let pick = |f: fn(&Sample) -> f64| median(&mut samples.iter().map(f).collect::<Vec<_>>());
    let cpus: Option<Vec<f64>> = samples.iter().map(|s| s.init_cpu_ms).collect();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    for sample in samples {
        *outcomes.entry(&sample.outcome).or_default() += 1;
    }
    Summary {
        init: pick(|s| s.init_ms),
        init_cpu: cpus.map(|mut c| median(&mut c)),
        response: pick(|s| s.first_response_ms),
        cpu: pick(|s| s.total_cpu_ms),
        rss_mb: pick(|s| s.peak_rss_kb as f64) / 1024.0,
        outcomes: outcomes.iter().map(|(o, n)| format!("{o} ×{n}")).collect::<Vec<_>>().join(", "),
    }
}

fn size_mb(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / 1e6)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({model}), {}", std::env::consts::ARCH)
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cold_start(options: Options) -> Result<(), String> {
    let bin_dir = match &options.bin_dir {
        Some(dir) => dir.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let functions: Vec<(&str, &str)> = FUNCTIONS
        .into_iter()
        .filter(|(name, _)| options.only.as_ref().is_none_or(|only| only.iter().any(|o| o == name)))
        .collect();
    for name in std::iter::once(HELLO).chain(functions.iter().map(|(n, _)| *n)) {
        if !bin_dir.join(name).exists() {
            return Err(format!(
                "{} is missing: run bench/cold-start.sh, which builds it",
                bin_dir.join(name).display()
            ));
        }
    }
    let (_moto, endpoint, resources) = start_moto()?;
    let mut emulator = Emulator::start().map_err(|e| format!("cannot start the Runtime API emulator: {e}"))?;
    let runtime_api = emulator.runtime_api();
    let events_dir = workspace().join("events");
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let hello_event = br#"{"hello":"world"}"#.to_vec();
    let hello_env = lambda_environment(HELLO, &runtime_api, &endpoint, &resources);
    // Round 0 warms the page cache and moto's lazily loaded backends; it is not counted.
    for round in 0..=options.rounds {
        for (index, (name, event_path)) in functions.iter().enumerate() {
            let event = std::fs::read(events_dir.join(event_path)).map_err(|e| format!("{event_path}: {e}"))?;
            let env = lambda_environment(name, &runtime_api, &endpoint, &resources);
            // Alternate which goes first, so neither always follows the other.
            let mut pair = [(HELLO, &hello_env, &hello_event), (*name, &env, &event)];
            if (round + index) % 2 == 1 {
                pair.reverse();
            }
            for (binary, env, event) in pair {
                let sample = run_once(&mut emulator, &bin_dir.join(binary), env, event)?;
                if round > 0 {
                    samples.entry(binary).or_default().push(sample);
                }
            }
        }
        eprint!("\rround {round}/{}", options.rounds);
    }
    eprintln!();
    let table = report(&options, &bin_dir, &samples, &functions);
    print!("{table}");
    if let Some(path) = &options.write {
        write_section(path, &table)?;
        eprintln!("wrote the cold-start section of {}", path.display());
    }
    Ok(())
}

fn report(
    options: &Options,
    bin_dir: &Path,
    samples: &BTreeMap<&str, Vec<Sample>>,
    functions: &[(&str, &str)],
) -> String {
    let hello = summarise(&samples[HELLO]);
    let lambda_dir = bin_dir.parent().map(|d| d.join("lambda"));
    let mut out = String::new();
    let args: Vec<String> = std::env::args().skip(1).collect();
    out.push_str(&format!(
        "Command: `voronka-bench {}` (`bench/cold-start.sh` builds the binaries and runs it) · {} · {} · {} \
         alternating rounds after one warm-up, medians. Init = process start to its first `GET /next`; first \
         response = process start to the answer to the event named; CPU = user + system time of every thread \
         (init: at the first `GET /next`, from `/proc/<pid>/task/*/schedstat`; total: `wait4` once idle after \
         the first answer).\n\n",
        args.join(" "),
        machine(),
        today(),
        options.rounds
    ));
    out.push_str(
        "| function | event | init ms | × hello | init CPU ms | × hello | first response ms | × hello | CPU to idle ms | peak RSS MB | binary MB | bootstrap MB | answers |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let cpu = |s: &Summary| s.init_cpu.map(|c| format!("{c:.2}")).unwrap_or_else(|| "n/a".into());
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    };
    let mut row = |name: &str, event: &str, s: &Summary| {
        let binary = size_mb(&bin_dir.join(name)).map(|m| format!("{m:.2}")).unwrap_or_else(|| "n/a".into());
        let bootstrap = lambda_dir
            .as_ref()
            .and_then(|d| size_mb(&d.join(name).join("bootstrap")))
            .map(|m| format!("{m:.2}"))
            .unwrap_or_else(|| "absent".into());
        out.push_str(&format!(
            "| {name} | {event} | {:.2} | {} | {} | {} | {:.2} | {} | {:.2} | {:.1} | {binary} | {bootstrap} | {} |\n",
            s.init,
            ratio(Some(s.init), Some(hello.init)),
            cpu(s),
            ratio(s.init_cpu, hello.init_cpu),
            s.response,
            ratio(Some(s.response), Some(hello.response)),
            s.cpu,
            s.rss_mb,
            s.outcomes
        ));
    };
    row(HELLO, "echo", &hello);
    for (name, event) in functions {
        row(name, event, &summarise(&samples[name]));
    }
    out.push_str(
        "\nbootstrap = `target/lambda/<fn>/bootstrap` from `cargo lambda build --release` where present (the \
         same stripped release binary, packaged); binary = the release binary the harness ran.\n",
    );
    out
}

/// Replaces the text between the cold-start markers in `path` (appends a section if absent).
fn write_section(path: &Path, table: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let section = format!("{BEGIN}\n{table}{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => format!("{}{section}{}", &text[..begin], &text[end + END.len()..]),
        _ => format!("{text}\n## Cold start\n\n{section}\n"),
    };
    std::fs::write(path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cold-start") => parse_options(&args[1..]).and_then(cold_start),
        _ => Err("usage: voronka-bench cold-start [--rounds N] [--bin-dir DIR] [--only fn,fn] [--write BENCHMARKS.md]"
            .into()),
    };
    if let Err(message) = result {
        eprintln!("voronka-bench: {message}");
        std::process::exit(1);
    }
}
