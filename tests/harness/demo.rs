//! `mxpulse demo` under test or bench: started on free loopback ports, its printed lines
//! read as they come, its figures API asked, stopped with Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::Value;

use super::{free_port, mxpulse_bin, stop, wait_for};

/// Total cells of the figures API by (figure, period): their value (null when suppressed).
pub type Cells = std::collections::HashMap<(String, String), Value>;

/// A running demo and what it printed.
pub struct Demo {
    child: Child,
    lines: Receiver<String>,
    printed: Vec<String>,
    pub http: String,
    /// Where its standard error goes: the reason it stopped, if it did.
    stderr: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            stop(&mut self.child);
        }
    }
}

impl Demo {
    pub fn start(dir: &Path, args: &[&str]) -> Demo {
        Self::start_with_env(dir, args, &[])
    }

    /// `start` with more environment (`MXPULSE_*` settings reach every service it starts).
    pub fn start_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Demo {
        let http = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(mxpulse_bin())
            .arg("demo")
            .arg("--dir")
            .arg(dir.join("demo"))
            .args(["--http", &http])
            .args(["--pgwire", &format!("127.0.0.1:{}", free_port())])
            .args(["--hooks-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--ingest-listen", &format!("127.0.0.1:{}", free_port())])
            .args(args)
            .env("MXPULSE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("demo.stderr")).expect("log file"))
            .spawn()
            .expect("spawn mxpulse demo");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Demo {
            child,
            lines,
            printed: Vec::new(),
            http,
            stderr: dir.join("demo.stderr"),
        }
    }

    /// Waits for a printed line containing `text`.
    pub fn wait_line(&mut self, text: &str, deadline: Duration) -> String {
        let end = std::time::Instant::now() + deadline;
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {text:?} in time; printed so far:\n{}\nits standard error:\n{}",
            self.printed.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        );
    }

    /// The value the demo printed after `label`.
    pub fn printed_value(&self, label: &str) -> String {
        self.printed
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("{label} not printed"))
    }

    /// Total cells of some monthly figures, by (figure, period); panics on an error answer.
    pub fn monthly(&self, figures: &str, from: &str, to: &str) -> Cells {
        self.try_monthly(figures, from, to)
            .unwrap_or_else(|answer| panic!("no cells: {answer}"))
    }

    /// The same, or the error answer (a timeout while the demo is busy generating).
    pub fn try_monthly(&self, figures: &str, from: &str, to: &str) -> Result<Cells, String> {
        let answer = self.viewer_get(&format!(
            "/api/v1/figures/monthly?figures={figures}&from={from}&to={to}"
        ))?;
        let cells = answer["cells"]
            .as_array()
            .ok_or_else(|| answer.to_string())?;
        Ok(cells
            .iter()
            .filter(|c| c["breakdown"] == "total")
            .map(|c| {
                let key = (
                    c["figure"].as_str().unwrap_or_default().to_owned(),
                    c["period"].as_str().unwrap_or_default().to_owned(),
                );
                (key, c["value"].clone())
            })
            .collect())
    }

    /// The forums directory as the viewer gets it, or the error answer.
    pub fn try_forums(&self) -> Result<Vec<Value>, String> {
        let answer = self.viewer_get("/api/v1/figures/forums?limit=50")?;
        answer.as_array().cloned().ok_or_else(|| answer.to_string())
    }

    /// A JSON answer of the query service to the viewer, or what went wrong (a timeout
    /// while the demo is busy generating).
    fn viewer_get(&self, path: &str) -> Result<Value, String> {
        let token = self.printed_value("viewer token");
        let url = format!("http://{}{path}", self.http);
        super::block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .bearer_auth(&token)
                .timeout(Duration::from_secs(300))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            response.json().await.map_err(|e| e.to_string())
        })
    }

    /// Ctrl-C, and the exit status.
    pub fn interrupt(&mut self) -> Option<ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        wait_for(Duration::from_secs(60), || {
            self.child.try_wait().ok().flatten()
        })
    }
}
