//! `switchboard modem-sim`: a simulated GSM modem that speaks AT commands on
//! a pseudo-terminal or a TCP port, so the real serial and TCP drivers can
//! be demonstrated and tested without hardware.
//!
//! - [`device`]: the AT interpreter, storage, virtual network and faults.
//! - [`pty`]: the pseudo-terminal it can sit behind.
//! - this module: the runtime task that moves bytes between the device and
//!   its port and keeps its timers, the [`SimHandle`] tests and the control
//!   socket use to inject SMS, calls, GNSS fixes and faults, and [`serve`],
//!   the command-line front end.

pub mod device;
pub mod pty;

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

pub use device::{Device, InboundSms, Profile, SimFix, SimSettings, StoredSms, Submitted};

use crate::modem::at::Transport;
use device::{Effect, Timer};

/// Where the simulated modem listens.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// A new pseudo-terminal. With `link`, a symbolic link at that path
    /// always points at the current device, so a driver configured with it
    /// finds the modem again after a simulated unplug.
    Pty { link: Option<PathBuf> },
    /// A TCP port, like a modem behind ser2net. Port 0 picks a free one.
    Tcp(SocketAddr),
}

/// Something to make the simulated modem or its network do.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// An SMS arrives (split into parts when long).
    Sms(InboundSms),
    /// SMS-DELIVER PDUs made elsewhere (say by another SMS library) arrive
    /// as they are: hex with the SMSC prefix; `direct` routes them as `+CMT`.
    Pdus {
        pdus: Vec<String>,
        #[serde(default)]
        direct: bool,
    },
    /// A call rings.
    Call { from: String },
    /// The caller hangs up.
    Hangup,
    /// The GNSS receiver has this fix.
    Fix(SimFix),
    /// The GNSS receiver loses its fix.
    NoFix,
    /// Fault: the modem answers nothing for a while.
    Silent { ms: u64 },
    /// Fault: the port disappears (USB unplug) for a while.
    DropPort { ms: u64 },
    /// Fault: line noise on the wire.
    Garbage {
        #[serde(default)]
        text: Option<String>,
    },
    /// Fault: after `skip` more good sends, the next `count` fail with
    /// `+CMS ERROR: <code>`.
    CmsError {
        code: u16,
        count: usize,
        #[serde(default)]
        skip: usize,
    },
    /// Fault: the SIM storage is full (new messages wait in the network).
    StorageFull { full: bool },
    /// The network registration changes (1 home, 5 roaming, 2 searching).
    Registration { stat: u8 },
    /// The TP-ST of status reports from now on (0 delivered, 0x41+ failed).
    ReportStatus { status: u8 },
    /// Lists the storage.
    Storage,
    /// Lists what the host sent.
    Sent,
}

/// Bytes sent by the `garbage` fault when none are given.
const GARBAGE: &[u8] =
    b"\xff\xfe\x00\x13+CM\xffTI: \"\r\n+CMT: junk\r\n\x07\x1b[2J@@@\r\n+CDS: 9\r\nZZZZ\r\n";
/// A write the host does not take within this long is dropped, so a port
/// nobody reads cannot stall the simulator.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Actions waiting for the runtime.
const ACTIONS: usize = 64;

/// Controls a running simulated modem. Dropping it does not stop the
/// modem; [`SimHandle::stop`] does.
pub struct SimHandle {
    actions: mpsc::Sender<(Action, oneshot::Sender<Result<Value, String>>)>,
    device: Arc<Mutex<Device>>,
    path: Option<PathBuf>,
    addr: Option<SocketAddr>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// Starts a simulated modem on `endpoint`.
    pub async fn start(settings: SimSettings, endpoint: Endpoint) -> anyhow::Result<SimHandle> {
        let device = Arc::new(Mutex::new(Device::new(settings)));
        let (actions, inbox) = mpsc::channel(ACTIONS);
        let stop = CancellationToken::new();
        let (port, listener, path, addr, link) = match endpoint {
            Endpoint::Pty { link } => {
                let pty = pty::Pty::open().context("while opening a pseudo-terminal")?;
                let path = match &link {
                    Some(link) => {
                        point_link(link, pty.path())?;
                        link.clone()
                    }
                    None => pty.path().to_owned(),
                };
                let port: Box<dyn Transport> = Box::new(pty);
                (Some(port), None, Some(path), None, link)
            }
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("while listening on {addr}"))?;
                let addr = listener.local_addr()?;
                (None, Some(listener), None, Some(addr), None)
            }
        };
        let runtime = Runtime {
            device: device.clone(),
            port,
            listener,
            link,
            pty: path.is_some(),
            timers: BinaryHeap::new(),
            order: 0,
            silent_until: None,
            dropped_until: None,
        };
        let task = tokio::spawn(runtime.run(inbox, stop.clone()));
        Ok(SimHandle {
            actions,
            device,
            path,
            addr,
            stop,
            task,
        })
    }

    /// The serial device to configure a `serial` instance with.
    pub fn device_path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The address to configure a `tcp` instance with.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Makes the modem or its network do something; returns its answer.
    pub async fn act(&self, action: Action) -> Result<Value, String> {
        let (tx, rx) = oneshot::channel();
        self.actions
            .send((action, tx))
            .await
            .map_err(|_| "the simulated modem has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the simulated modem has stopped".to_owned())?
    }

    pub async fn send_sms(&self, from: &str, text: &str) -> Result<Value, String> {
        self.act(Action::Sms(InboundSms {
            from: from.into(),
            text: text.into(),
            direct: false,
            concat_16bit: false,
            reference: 0,
            only_parts: Vec::new(),
        }))
        .await
    }

    /// The messages in storage now.
    pub fn storage(&self) -> Vec<StoredSms> {
        self.device.lock().storage()
    }

    /// What the host has sent with `AT+CMGS`.
    pub fn submitted(&self) -> Vec<Submitted> {
        self.device.lock().submitted()
    }

    /// The commands the host has sent, oldest first.
    pub fn commands(&self) -> Vec<String> {
        self.device.lock().commands()
    }

    /// Parts waiting in the network because storage is full.
    pub fn network_queue_len(&self) -> usize {
        self.device.lock().network_queue_len()
    }

    /// Whether a call is ringing.
    pub fn ringing(&self) -> bool {
        self.device.lock().ringing().is_some()
    }

    /// Stops the modem and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The task that owns the port.
struct Runtime {
    device: Arc<Mutex<Device>>,
    /// The host's side: the pseudo-terminal, or the accepted TCP client.
    port: Option<Box<dyn Transport>>,
    listener: Option<TcpListener>,
    link: Option<PathBuf>,
    pty: bool,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerEntry)>>,
    /// Keeps timers due at the same instant in order.
    order: u64,
    silent_until: Option<Instant>,
    dropped_until: Option<Instant>,
}

/// A [`Timer`] with the ordering the heap needs.
#[derive(Debug, PartialEq, Eq)]
struct TimerEntry(Timer);

impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TimerEntry {
    fn cmp(&self, _other: &Self) -> std::cmp::Ordering {
        // The (instant, order) before it already decide.
        std::cmp::Ordering::Equal
    }
}

impl Runtime {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<(Action, oneshot::Sender<Result<Value, String>>)>,
        stop: CancellationToken,
    ) {
        let mut buf = vec![0u8; 4096];
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
            let accepting = self.listener.is_some();
            tokio::select! {
                _ = stop.cancelled() => break,
                request = inbox.recv() => match request {
                    Some((action, reply)) => {
                        let answer = self.act(action).await;
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                read = read_port(&mut self.port, &mut buf) => match read {
                    Ok(n) if n > 0 => {
                        let effects = self.device.lock().input(&buf[..n]);
                        self.apply(effects).await;
                    }
                    Ok(_) | Err(_) => self.port_failed(),
                },
                accepted = accept(&self.listener), if accepting => {
                    if let Ok((stream, peer)) = accepted {
                        if self.dropped_until.is_some() {
                            drop(stream);
                        } else {
                            tracing::info!(%peer, "modem-sim: host connected");
                            let _ = stream.set_nodelay(true);
                            self.port = Some(Box::new(stream));
                        }
                    }
                }
                _ = sleep_until(next_timer), if next_timer.is_some() => self.fire_timers().await,
                _ = sleep_until(self.silent_until), if self.silent_until.is_some() => {
                    self.silent_until = None;
                    self.device.lock().set_silent(false);
                    tracing::info!("modem-sim: answering again");
                }
                _ = sleep_until(self.dropped_until), if self.dropped_until.is_some() => {
                    self.dropped_until = None;
                    self.restore_port();
                }
            }
        }
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }

    async fn act(&mut self, action: Action) -> Result<Value, String> {
        let effects = match action {
            Action::Sms(sms) => {
                let effects = self.device.lock().deliver(&sms)?;
                self.apply(effects).await;
                return Ok(json!({ "delivered": true }));
            }
            Action::Pdus { pdus, direct } => {
                if let Some(bad) = pdus
                    .iter()
                    .find(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()))
                {
                    return Err(format!("not a hex PDU: {bad}"));
                }
                let effects = self.device.lock().deliver_pdus(pdus, direct);
                self.apply(effects).await;
                return Ok(json!({ "delivered": true }));
            }
            Action::Call { from } => self.device.lock().ring(&from),
            Action::Hangup => self.device.lock().remote_hang_up(),
            Action::Fix(fix) => {
                self.device.lock().set_fix(Some(fix));
                Vec::new()
            }
            Action::NoFix => {
                self.device.lock().set_fix(None);
                Vec::new()
            }
            Action::Silent { ms } => {
                self.device.lock().set_silent(true);
                self.silent_until = Some(Instant::now() + Duration::from_millis(ms));
                tracing::info!(ms, "modem-sim: going silent");
                Vec::new()
            }
            Action::DropPort { ms } => {
                self.drop_port();
                self.dropped_until = Some(Instant::now() + Duration::from_millis(ms));
                tracing::info!(ms, "modem-sim: port dropped");
                Vec::new()
            }
            Action::Garbage { text } => {
                let bytes = text.map_or_else(|| GARBAGE.to_vec(), String::into_bytes);
                vec![Effect::Write(bytes)]
            }
            Action::CmsError { code, count, skip } => {
                self.device.lock().fail_sends(code, count, skip);
                Vec::new()
            }
            Action::StorageFull { full } => self.device.lock().set_storage_full(full),
            Action::Registration { stat } => self.device.lock().set_registration(stat),
            Action::ReportStatus { status } => {
                self.device.lock().set_report_status(status);
                Vec::new()
            }
            Action::Storage => {
                return serde_json::to_value(self.device.lock().storage())
                    .map_err(|e| e.to_string())
            }
            Action::Sent => {
                return serde_json::to_value(self.device.lock().submitted())
                    .map_err(|e| e.to_string())
            }
        };
        self.apply(effects).await;
        Ok(json!({ "ok": true }))
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Write(bytes) => self.write(&bytes).await,
                Effect::After(delay, timer) => self.schedule(Instant::now() + delay, timer),
            }
        }
    }

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.order += 1;
        self.timers
            .push(Reverse((at, self.order, TimerEntry(timer))));
    }

    async fn fire_timers(&mut self) {
        let now = Instant::now();
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            let Some(Reverse((_, _, TimerEntry(timer)))) = self.timers.pop() else {
                break;
            };
            // A silent modem (or one without a port) delivers later, not
            // never: the network keeps what it could not hand over.
            if let Some(resume) = self.silent_until.or(self.dropped_until) {
                self.schedule(resume + Duration::from_millis(50), timer);
                continue;
            }
            let effects = self.device.lock().timer(timer);
            self.apply(effects).await;
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        if self.device.lock().is_silent() {
            return;
        }
        let Some(port) = self.port.as_mut() else {
            return;
        };
        let written = tokio::time::timeout(WRITE_TIMEOUT, async {
            port.write_all(bytes).await?;
            port.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "modem-sim: write failed");
                self.port_failed();
            }
            Err(_) => tracing::debug!("modem-sim: nobody reads the port; output dropped"),
        }
    }

    fn port_failed(&mut self) {
        self.port = None;
        if self.pty && self.dropped_until.is_none() {
            // A pseudo-terminal should not fail; open a fresh one shortly.
            self.dropped_until = Some(Instant::now() + Duration::from_millis(100));
        }
    }

    fn drop_port(&mut self) {
        self.port = None;
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }

    fn restore_port(&mut self) {
        if !self.pty {
            tracing::info!("modem-sim: accepting connections again");
            return;
        }
        match pty::Pty::open() {
            Ok(pty) => {
                if let Some(link) = &self.link {
                    if let Err(err) = point_link(link, pty.path()) {
                        tracing::warn!(error = %err, "modem-sim: could not link the new device");
                    }
                }
                tracing::info!(device = %pty.path().display(), "modem-sim: port is back");
                self.port = Some(Box::new(pty));
            }
            Err(err) => {
                tracing::warn!(error = %err, "modem-sim: could not reopen a pseudo-terminal");
                self.dropped_until = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Points `link` at `target`, replacing an older link.
fn point_link(link: &Path, target: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(link);
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("while linking {} to {}", link.display(), target.display()))
}

async fn read_port(
    port: &mut Option<Box<dyn Transport>>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match port {
        Some(port) => port.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What `switchboard modem-sim` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub settings: SimSettings,
    pub endpoint: Endpoint,
    /// A TCP address for the JSON-lines control socket.
    pub control: Option<SocketAddr>,
    /// A JSON-lines file of actions, each with an optional `after_ms`.
    pub script: Option<PathBuf>,
}

/// One line of a script: an [`Action`] and how long to wait before it.
#[derive(Debug, Deserialize)]
struct Step {
    #[serde(default)]
    after_ms: u64,
    #[serde(flatten)]
    action: Action,
}

/// Longest control line accepted.
const MAX_CONTROL_LINE: u64 = 64 * 1024;

/// Runs the simulated modem for the command line until `stop` fires.
pub async fn serve(options: ServeOptions, stop: CancellationToken) -> anyhow::Result<()> {
    let link = match &options.endpoint {
        Endpoint::Pty { link } => link.clone(),
        Endpoint::Tcp(_) => None,
    };
    let steps = match &options.script {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("while reading the script {}", path.display()))?;
            text.lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty() && !line.trim().starts_with('#'))
                .map(|(n, line)| {
                    serde_json::from_str::<Step>(line)
                        .with_context(|| format!("{} line {}", path.display(), n + 1))
                })
                .collect::<anyhow::Result<Vec<Step>>>()?
        }
        None => Vec::new(),
    };
    let handle = Arc::new(SimHandle::start(options.settings, options.endpoint).await?);
    match (handle.device_path(), handle.tcp_addr()) {
        (Some(path), _) => println!("modem-sim: serial device {}", path.display()),
        (_, Some(addr)) => println!("modem-sim: listening on tcp {addr}"),
        _ => {}
    }
    if let Some(addr) = options.control {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("while listening for control on {addr}"))?;
        println!(
            "modem-sim: control socket on {} (one JSON action per line)",
            listener.local_addr()?
        );
        tokio::spawn(control(listener, handle.clone(), stop.clone()));
    }
    if !steps.is_empty() {
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            for step in steps {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(step.after_ms)) => {}
                }
                match handle.act(step.action).await {
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "modem-sim: script step failed"),
                }
            }
        });
    }
    stop.cancelled().await;
    match Arc::try_unwrap(handle) {
        Ok(handle) => handle.stop().await,
        // The control tasks still hold it; they stop on `stop` too.
        Err(shared) => shared.stop.cancel(),
    }
    if let Some(link) = link {
        let _ = std::fs::remove_file(link);
    }
    Ok(())
}

/// Serves the control socket: one JSON [`Action`] per line in, one JSON
/// answer per line out.
async fn control(listener: TcpListener, handle: Arc<SimHandle>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else { continue };
        let handle = handle.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            loop {
                let mut line = String::new();
                let mut limited = (&mut reader).take(MAX_CONTROL_LINE);
                let read = tokio::select! {
                    _ = stop.cancelled() => return,
                    read = limited.read_line(&mut line) => read,
                };
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if line.trim().is_empty() {
                    continue;
                }
                let answer = match serde_json::from_str::<Action>(&line) {
                    Ok(action) => match handle.act(action).await {
                        Ok(value) => value,
                        Err(err) => json!({ "error": err }),
                    },
                    Err(err) => json!({ "error": err.to_string() }),
                };
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_lines_and_control_lines_parse_into_actions() {
        let step: Step = serde_json::from_str(
            r#"{"after_ms": 250, "action": "sms", "from": "+15551234567", "text": "hi", "direct": true}"#,
        )
        .expect("a step");
        assert_eq!(step.after_ms, 250);
        assert!(matches!(step.action, Action::Sms(ref sms) if sms.direct && sms.text == "hi"));
        let step: Step = serde_json::from_str(r#"{"action": "silent", "ms": 10}"#).expect("a step");
        assert_eq!(step.after_ms, 0);
        assert!(matches!(step.action, Action::Silent { ms: 10 }));
        for bad in [
            r#"{"action": "explode"}"#,
            r#"{"action": "call"}"#,
            r#"{"action": "drop_port", "ms": 5, "extra": 1}"#,
        ] {
            assert!(serde_json::from_str::<Action>(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_script_with_a_bad_line_is_refused_with_its_line_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("script.jsonl");
        std::fs::write(
            &script,
            "# comments and blank lines are skipped\n\n\
             {\"after_ms\": 10, \"action\": \"sms\", \"from\": \"+1555123\", \"text\": \"one\"}\n\
             {\"action\": \"nope\"}\n",
        )
        .expect("write");
        let options = ServeOptions {
            settings: SimSettings::default(),
            endpoint: Endpoint::Tcp("127.0.0.1:0".parse().expect("addr")),
            control: None,
            script: Some(script),
        };
        let err = serve(options, CancellationToken::new())
            .await
            .expect_err("bad script");
        assert!(format!("{err:#}").contains("line 4"), "{err:#}");
    }
}
