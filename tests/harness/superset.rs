//! Apache Superset, from the venv `scripts/test` installs (tests/superset-requirements.txt),
//! with its metadata in a SQLite file of the test's directory, on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, stop, wait_for};

/// The admin `Superset::start` creates.
pub const ADMIN: (&str, &str) = ("admin", "admin-pass-0123456789");

pub struct Superset {
    child: Child,
    pub url: String,
    pub venv: PathBuf,
    pub log: PathBuf,
}

impl Drop for Superset {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// `MXPULSE_TEST_SUPERSET_VENV`, or where `scripts/test` puts it.
pub fn venv() -> PathBuf {
    std::env::var_os("MXPULSE_TEST_SUPERSET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/mxpulse/superset-venv")
        })
}

impl Superset {
    /// Migrates its metadata, creates the admin, runs `superset init`, and serves.
    pub fn start(dir: &Path) -> Superset {
        let venv = venv();
        let home = dir.join("superset");
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("superset_config.py");
        std::fs::write(
            &config,
            format!(
                "SECRET_KEY = 'mxpulse-superset-test-0123456789abcdef'\n\
                 SQLALCHEMY_DATABASE_URI = 'sqlite:///{}'\n\
                 WTF_CSRF_ENABLED = False\nTALISMAN_ENABLED = False\n",
                home.join("superset.db").display()
            ),
        )
        .unwrap();
        let log = home.join("superset.log");
        let superset = |args: &[&str]| {
            let mut command = Command::new(venv.join("bin/superset"));
            command
                .args(args)
                .env("SUPERSET_CONFIG_PATH", &config)
                .env("SUPERSET_HOME", &home)
                .env("FLASK_APP", "superset");
            command
        };
        for args in [
            &["db", "upgrade"][..],
            &[
                "fab",
                "create-admin",
                "--username",
                ADMIN.0,
                "--firstname",
                "Ada",
                "--lastname",
                "Admin",
                "--email",
                "admin@example.invalid",
                "--password",
                ADMIN.1,
            ],
            &["init"],
        ] {
            let output = superset(args).output().unwrap_or_else(|e| {
                panic!(
                    "{} (scripts/test installs Superset): {e}",
                    venv.join("bin/superset").display()
                )
            });
            assert!(
                output.status.success(),
                "superset {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let port = free_port();
        let child = superset(&["run", "-h", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let superset = Superset {
            child,
            url: format!("http://127.0.0.1:{port}"),
            venv,
            log,
        };
        let health = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(90), || {
            super::synapse::http_get(&health, "/health").filter(|body| body.contains("OK"))
        })
        .unwrap_or_else(|| {
            panic!(
                "Superset did not start: {}",
                std::fs::read_to_string(&superset.log).unwrap_or_default()
            )
        });
        superset
    }

    /// Superset's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
