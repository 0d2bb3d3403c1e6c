//! Lakes the tests read: written by the simulator's fast path (`mxpulse generate --lake`: the
//! hooks' own mapping, straight into the lake) and rolled up (`mxpulse lake rollup`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::mxpulse_bin;

/// The pseudonymization key of generated lakes.
pub const KEY: &str = "a pseudonymization key of the test, at least 32 bytes long";

/// A lake of the months `from` to `to` at `scale`, rolled up, under `dir/lake`.
pub fn generated(dir: &Path, scale: &str, from: &str, to: &str) -> PathBuf {
    let lake = dir.join("lake");
    let generated = Command::new(mxpulse_bin())
        .args(["generate", "--scale", scale, "--from", from, "--to", to])
        .arg("--lake")
        .arg(&lake)
        .env("MXPULSE_PSEUDONYM_KEY", KEY)
        .output()
        .expect("run mxpulse generate");
    let out = String::from_utf8_lossy(&generated.stdout);
    assert!(
        generated.status.success() && out.contains("lake holds every record written"),
        "{out}{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    rolled_up(&lake);
    lake
}

/// Runs `mxpulse lake rollup` over `lake`.
pub fn rolled_up(lake: &Path) {
    let rolled = Command::new(mxpulse_bin())
        .args(["lake", "rollup"])
        .env("MXPULSE_LAKE_ROOT", lake)
        .output()
        .expect("run mxpulse lake rollup");
    let out = String::from_utf8_lossy(&rolled.stdout);
    assert!(
        rolled.status.success() && out.contains("rollups up to date"),
        "{out}{}",
        String::from_utf8_lossy(&rolled.stderr)
    );
}
