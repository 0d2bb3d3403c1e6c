//! Files for their owner only (docs/design.md §4): the lake, the hooks' state, reports, the
//! appservice registration (it holds both tokens) and the demo's directory hold pseudonymized
//! data or secrets, so everything this process creates is created 0600 / 0700; and a secret
//! file others can read is named at start-up.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::config::Config;

/// From now on, files and directories this process creates are its user's only.
pub fn restrict_new_files() {
    // SAFETY: umask(2) only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Warns about each secret file of `config` (and the configuration file, which holds the
/// tokens) that its group or others can read.
pub fn warn_about_readable_secrets(config_file: Option<&Path>, config: &Config) {
    let secrets = [
        (config_file, "the configuration file (it holds tokens)"),
        (
            Some(config.pseudonym.key_file.as_path()),
            "the pseudonymization key file (pseudonym.key_file)",
        ),
        (
            Some(Path::new(&config.query.pgwire_tls_key)),
            "the TLS private key (query.pgwire_tls_key)",
        ),
    ];
    for (path, what) in secrets {
        let Some(path) = path.filter(|p| !p.as_os_str().is_empty()) else {
            continue;
        };
        if let Some(mode) = readable_by_others(path) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "{what} can be read by other users: `chmod 600` it"
            );
        }
    }
}

/// The permission bits of `path` if its group or others may read or write it.
fn readable_by_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o066 != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_found_and_an_owner_only_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "secret").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(readable_by_others(&file), Some(0o644));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(readable_by_others(&file), None);
        assert_eq!(readable_by_others(&dir.path().join("absent")), None);
    }
}
