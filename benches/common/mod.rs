//! What the benchmarks share: the `mxpulse` binary run over a lake, the benchmark lakes kept
//! under the build cache (generated once at a scale, compacted), and the machine they ran on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};

use crate::harness;

/// A bench's command line: `--bench` (given by `cargo bench`, absent under `cargo test`, which
/// makes it a smoke run), `--name value` options and `--flag`s.
pub struct BenchArgs(Vec<String>);

impl BenchArgs {
    pub fn from_env() -> Self {
        Self(std::env::args().skip(1).collect())
    }

    /// Under `cargo test`: a tiny run that checks every number is produced.
    pub fn smoke(&self) -> bool {
        !self.flag("--bench")
    }

    pub fn flag(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }

    pub fn value(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }
}

/// The build the numbers are of: the service and tools run are this build's.
pub const PROFILE: &str = if cfg!(debug_assertions) {
    "dev"
} else {
    "release"
};

pub const PSEUDONYM_KEY: &str = "the benchmark lakes' pseudonymization key, 32 bytes or more";

pub fn mxpulse(lake: &Path, args: &[&str]) -> (String, f64) {
    let started = Instant::now();
    let out = Command::new(harness::mxpulse_bin())
        .args(args)
        .env("MXPULSE_LAKE_ROOT", lake)
        .env("MXPULSE_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("MXPULSE_LOG", "warn")
        .output()
        .expect("run mxpulse");
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "mxpulse {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, seconds)
}

pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The build cache: benchmark lakes are kept beside the builds, reused across runs.
fn cache_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // target/<profile>/deps/figures_latency-<hash>
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        })
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The lake at `scale` from `from` to `to`, generated (and compacted) once and kept under the
/// build cache, or in `smoke_dir` for a smoke run; what it cost to make.
pub fn benchmark_lake(
    scale: &str,
    from: &str,
    to: &str,
    smoke_dir: Option<&Path>,
) -> (PathBuf, Value) {
    let dir = smoke_dir.map_or_else(|| cache_dir().join("bench-lakes"), Path::to_path_buf);
    std::fs::create_dir_all(&dir).expect("lakes dir");
    let lake = dir.join(format!("scale-{}-{}-{}-seed-1", scale, from, to));
    let made = lake.join("made.json");
    if let Some(made) = std::fs::read_to_string(&made)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
    {
        return (lake, made);
    }
    let _ = std::fs::remove_dir_all(&lake);
    eprintln!(
        "generating the scale-{} lake at {} (once)",
        scale,
        lake.display()
    );
    let (generated, generate_s) = mxpulse(
        &lake,
        &[
            "generate",
            "--scale",
            scale,
            "--from",
            from,
            "--to",
            to,
            "--lake",
            &lake.display().to_string(),
        ],
    );
    assert!(
        generated.contains("lake holds every record written"),
        "{generated}"
    );
    let (_, compact_s) = mxpulse(&lake, &["lake", "compact"]);
    mxpulse(&lake, &["lake", "vacuum", "--retain-hours", "0"]);
    let made_json = json!({
        "generate": generated.trim(),
        "generate_s": generate_s,
        "compact_s": compact_s,
        "raw_bytes": dir_bytes(&lake),
    });
    std::fs::write(&made, made_json.to_string()).expect("write made.json");
    (lake, made_json)
}

pub fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
    format!("{cpu}, {cores} cores, {memory}")
}

/// Puts `table` into BENCHMARKS.md between its `<!-- {name}:begin -->` and `:end` markers, and
/// `result` into `docs/bench/{name}.json`.
pub fn write_results(name: &str, table: &str, result: &Value) {
    let root = harness::repo_root();
    let json = root.join(format!("docs/bench/{name}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(result).expect("json"))
        .unwrap_or_else(|e| panic!("write {}: {e}", json.display()));
    let path = root.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).expect("BENCHMARKS.md");
    let (begin, end) = (
        format!("<!-- {name}:begin -->"),
        format!("<!-- {name}:end -->"),
    );
    let (head, rest) = text
        .split_once(&begin)
        .unwrap_or_else(|| panic!("no {begin} marker in BENCHMARKS.md"));
    let (_, tail) = rest
        .split_once(&end)
        .unwrap_or_else(|| panic!("no {end} marker in BENCHMARKS.md"));
    std::fs::write(&path, format!("{head}{begin}\n{table}\n{end}{tail}"))
        .expect("write BENCHMARKS.md");
    eprintln!("wrote BENCHMARKS.md and {}", json.display());
}
