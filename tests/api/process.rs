//! Servers as separate processes of the real binary: what a deployment
//! runs, so tests can kill one with SIGKILL, pause it with SIGSTOP, run
//! several nodes side by side and watch a second one refuse to start.

// The cluster tests use the whole harness; the single-node ones a part.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use crate::helpers::*;

/// How long a server process may take to become ready.
pub const START: Duration = Duration::from_secs(60);

/// What a server process is started with.
#[derive(Clone)]
pub struct ProcessConfig {
    pub data_dir: PathBuf,
    /// A PostgreSQL URL, or `None` for the embedded database.
    pub database_url: Option<String>,
    pub admin_key: String,
    /// Further `SWITCHBOARD__...` settings.
    pub env: BTreeMap<String, String>,
}

impl ProcessConfig {
    pub fn new(data_dir: &Path, database_url: Option<String>) -> ProcessConfig {
        ProcessConfig {
            data_dir: data_dir.to_owned(),
            database_url,
            admin_key: "process-admin-key-0123456789abcdef".to_owned(),
            env: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl ToString) -> ProcessConfig {
        self.env.insert(key.to_owned(), value.to_string());
        self
    }
}

/// A running server process; killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub config: ProcessConfig,
    /// Where its standard error goes, for the test's failure messages.
    pub stderr: PathBuf,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl ServerProcess {
    /// Starts the binary on a free port, without waiting for it.
    pub fn spawn(config: ProcessConfig) -> ServerProcess {
        let port = free_port();
        std::fs::create_dir_all(&config.data_dir).expect("data dir");
        let stderr = config.data_dir.join(format!("server-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SWITCHBOARD__HTTP__ADDRESS", "127.0.0.1")
            .env("SWITCHBOARD__HTTP__PORT", port.to_string())
            .env("SWITCHBOARD__HTTP__WORKERS", "1")
            .env("SWITCHBOARD__DATA_DIR", &config.data_dir)
            .env("SWITCHBOARD__AUTH__API_KEY", &config.admin_key)
            .env("SWITCHBOARD__MODEM__RESTART_BACKOFF_INITIAL_MS", "50")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("log file"));
        if let Some(url) = &config.database_url {
            command.env("DATABASE_URL", url);
        }
        for (key, value) in &config.env {
            command.env(key, value);
        }
        ServerProcess {
            child: command.spawn().expect("start the server binary"),
            port,
            config,
            stderr,
        }
    }

    /// Starts the binary and waits until it answers `/ready`.
    pub async fn start(config: ProcessConfig) -> ServerProcess {
        let mut process = ServerProcess::spawn(config);
        process.wait_ready().await;
        process
    }

    pub async fn wait_ready(&mut self) {
        let client = http_client();
        let url = self.url("/ready");
        let port = self.port;
        let stderr = self.stderr.clone();
        let child = &mut self.child;
        wait_for(
            &format!("the server on port {port} to be ready"),
            START,
            async || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "it exited with {status}: {}",
                        std::fs::read_to_string(&stderr).unwrap_or_default()
                    ));
                }
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => Ok(()),
                    Ok(response) => Err(format!("/ready answered {}", response.status())),
                    Err(err) => Err(err.to_string()),
                }
            },
        )
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the process wrote to standard error so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_for("the server process to exit", deadline, async || {
            child.try_wait().ok().flatten()
        })
        .await
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal the server process");
    }

    /// SIGKILL: no shutdown at all, as a crash or an OOM kill.
    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGSTOP: the process stops running but keeps its sockets, as a
    /// paused VM or a node cut off by a partition.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    /// SIGTERM, then waits for the graceful shutdown to finish.
    pub async fn stop(mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(START).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
