//! The services `mxpulse demo` runs as child processes of this same binary (the code path
//! production runs), each logging to its own file, stopped by PID: SIGTERM, then SIGKILL
//! after a grace period.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// A running `mxpulse <subcommand>`.
pub struct ServiceProcess {
    pub name: &'static str,
    child: tokio::process::Child,
}

impl ServiceProcess {
    /// Starts `mxpulse <args>` with `config` (if any), stdout and stderr to `log`.
    pub fn spawn(
        name: &'static str,
        args: &[&str],
        config: Option<&Path>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the mxpulse binary")?;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = tokio::process::Command::new(exe);
        match config {
            Some(config) => command.env("MXPULSE_CONFIG", config),
            None => command.env_remove("MXPULSE_CONFIG"),
        };
        // Its own process group: a Ctrl-C in the terminal reaches the demo only, which then
        // stops the services in the order data flows (the broker last).
        command.process_group(0);
        // SAFETY: prctl(2) is async-signal-safe; it only sets a flag of the new process.
        #[cfg(target_os = "linux")]
        unsafe {
            // And if the demo dies without stopping them, they get SIGTERM from the kernel.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            // If the demo itself dies, its children must not outlive it.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting mxpulse {}", args.join(" ")))?;
        Ok(Self { name, child })
    }

    /// The exit status if the process already ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until `url` answers 200, failing if the process ends or `timeout` passes.
    pub async fn wait_healthy(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                anyhow::bail!("{} exited ({status}) before becoming healthy", self.name);
            }
            if let Ok(response) = client.get(url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > timeout {
                anyhow::bail!("{} not healthy at {url} after {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for the process to end on its own.
    pub async fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        Ok(self.child.wait().await?)
    }

    /// SIGTERM, then SIGKILL if it has not ended after `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(status) = self.exited() {
            return Ok(status);
        }
        if let Some(pid) = self.child.id() {
            let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
            // SAFETY: kill(2) on the PID of our own child, which we have not reaped yet, so
            // the PID cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                tracing::warn!(
                    service = self.name,
                    "did not stop after SIGTERM; killing it"
                );
                self.child.kill().await?;
                Ok(self.child.wait().await?)
            }
        }
    }
}
