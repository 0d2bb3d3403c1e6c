//! Secrets and data are their owner's only (docs/design.md §4): the appservice registration
//! and its table (both tokens), the lake and its rollups are created 0600 / 0700, and a
//! secret file others can read is named at start-up. Before, they were 0644 / 0755 and
//! nothing was said.

mod harness;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use harness::mxpulse_bin;

/// Every file and directory under `root` (itself included) whose group or others have any
/// permission, with its mode.
fn open_to_others(root: &Path) -> Vec<(String, u32)> {
    let mut open = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            open.push((path.display().to_string(), mode));
        }
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    open
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_registration_and_its_table_are_written_for_their_owner_only_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, table) = (dir.path().join("reg.yaml"), dir.path().join("table.toml"));
    let register = || {
        Command::new(mxpulse_bin())
            .args(["hooks", "registration", "--server", "interieur.localhost"])
            .arg("--out")
            .arg(&yaml)
            .arg("--table")
            .arg(&table)
            .output()
            .unwrap()
    };
    let first = register();
    assert!(first.status.success(), "{first:?}");
    assert_eq!((mode(&yaml), mode(&table)), (0o600, 0o600));
    let written = std::fs::read_to_string(&yaml).unwrap();
    let hs_token = written
        .lines()
        .find_map(|l| l.strip_prefix("hs_token: \""))
        .expect("hs_token line");
    assert!(
        std::fs::read_to_string(&table)
            .unwrap()
            .contains(hs_token.trim_end_matches('"'))
    );
    // A second run would rotate tokens Synapse may be using: refused, the file kept.
    let again = register();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("reg.yaml"),
        "{again:?}"
    );
    assert_eq!(std::fs::read_to_string(&yaml).unwrap(), written);
}

#[test]
fn the_lake_and_its_rollups_are_their_owners_only() {
    let dir = tempfile::tempdir().unwrap();
    let lake = harness::lakes::generated(dir.path(), "0.0005", "2024-07", "2024-07");
    assert!(lake.join("events").join("_delta_log").is_dir());
    assert!(lake.join("rollups").is_dir());
    assert_eq!(open_to_others(&lake), vec![]);
}

#[test]
fn a_secret_file_others_can_read_is_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (config, key) = (dir.path().join("mxpulse.toml"), dir.path().join("key"));
    std::fs::write(&key, harness::lakes::KEY).unwrap();
    std::fs::write(
        &config,
        format!("[pseudonym]\nkey_file = \"{}\"\n", key.display()),
    )
    .unwrap();
    let warnings = |config_mode: u32, key_mode: u32| {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(config_mode)).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(key_mode)).unwrap();
        let output = Command::new(mxpulse_bin())
            .arg("--config")
            .arg(&config)
            .arg("config")
            .env_remove("MXPULSE_LOG")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .filter(|l| l.contains("can be read by other users"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let both = warnings(0o644, 0o640);
    assert_eq!(both.len(), 2, "{both:?}");
    assert!(
        both.iter()
            .any(|l| l.contains("configuration file") && l.contains("mxpulse.toml"))
    );
    assert!(
        both.iter()
            .any(|l| l.contains("pseudonymization key") && l.contains("640"))
    );
    assert_eq!(warnings(0o600, 0o400), Vec::<String>::new());
}
