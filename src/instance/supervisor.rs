//! The supervisor: one task per instance that owns the modem actor.
//!
//! It starts the driver when the instance is enabled, restarts it with
//! exponential backoff when it fails (or panics), stops it on logout, and
//! reports every change of state as a `connection` event. Lifecycle requests
//! arrive on a bounded mailbox and are handled one at a time, so a restart
//! and a logout can never interleave.

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{mpsc, oneshot, watch, Notify},
    task::JoinHandle,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ModemSettings,
    domain::DriverConfig,
    domain::{InstanceName, InstanceSettings},
    event::data::ConnectionState,
    modem::{self, ActorContext, Command, DriverError},
    store::{EventLog, Fence, InstanceRow},
};

/// Lifecycle requests waiting for the supervisor.
const MAILBOX: usize = 16;
/// Commands waiting for the driver.
const COMMANDS: usize = 64;
/// A driver that ran this long before failing was healthy: its next restart
/// starts the backoff from the beginning again.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// How long a driver gets to stop before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(5);

enum Control {
    /// This node's right to drive the instance changed (cluster leases).
    Permit(Permit, oneshot::Sender<()>),
    Connect(oneshot::Sender<()>),
    Logout(oneshot::Sender<()>),
    Restart(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

/// Whether this node may drive the instance (invariant 3).
#[derive(Debug, Clone)]
pub enum Permit {
    /// A single node (SQLite, or PostgreSQL without a cluster): always.
    Always,
    /// While this node holds the instance's lease. With `enforce` (the
    /// default) every write the driver makes carries the fence; without,
    /// the fence is not checked (`cluster.fencing = false`, for tests).
    Held { fence: Fence, enforce: bool },
    /// Another node drives it, or none may: the reason says which.
    NotHeld(String),
}

impl Permit {
    fn allows(&self) -> bool {
        match self {
            Permit::Always => true,
            Permit::Held { fence, .. } => fence.valid(),
            Permit::NotHeld(_) => false,
        }
    }

    /// The fence a driver started now must put on its writes.
    fn fence(&self) -> Option<Fence> {
        match self {
            Permit::Held {
                fence,
                enforce: true,
            } => Some(fence.clone()),
            _ => None,
        }
    }
}

/// The registry's handle on a supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    mailbox: mpsc::Sender<Control>,
    state: watch::Receiver<ConnectionState>,
    outbox_ready: Arc<Notify>,
    commands: Arc<parking_lot::Mutex<Option<mpsc::Sender<Command>>>>,
    /// What the modem said its own number is (`AT+CNUM`), if it did.
    number: Arc<parking_lot::Mutex<Option<String>>>,
    /// The instance's settings, which a running driver follows.
    settings: Arc<watch::Sender<InstanceSettings>>,
    /// Whether this node may drive the instance (its permit allows).
    driving: Arc<std::sync::atomic::AtomicBool>,
    /// The state the instance's events last reported, whichever node wrote
    /// them: what a node that does not drive the instance shows.
    observed: Arc<parking_lot::Mutex<Option<ConnectionState>>>,
}

/// The supervisor has stopped (the instance is being deleted or the server
/// is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the instance is shutting down")]
pub struct Gone;

impl Supervisor {
    /// Starts supervising the instance `row` describes (its driver runs
    /// when the row says it is enabled).
    // Each argument is a separate thing the registry hands over; a struct
    // bundling them would only be built here.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        row: &InstanceRow,
        permit: Permit,
        log: EventLog,
        settings: ModemSettings,
        spool: Option<std::path::PathBuf>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
        waker: crate::modem::MemberWaker,
    ) -> Supervisor {
        let (name, driver, enabled) = (row.name.clone(), row.driver.clone(), row.enabled);
        let (mailbox, inbox) = mpsc::channel(MAILBOX);
        let (state_tx, state) = watch::channel(ConnectionState::Disconnected);
        let outbox_ready = Arc::new(Notify::new());
        let commands = Arc::new(parking_lot::Mutex::new(None));
        let number = Arc::new(parking_lot::Mutex::new(None));
        let instance_settings = Arc::new(watch::Sender::new(row.settings.clone()));
        let driving = Arc::new(std::sync::atomic::AtomicBool::new(permit.allows()));
        let task = Task {
            driving: driving.clone(),
            name,
            driver,
            enabled,
            permit,
            log,
            settings,
            spool,
            inbox,
            state: state_tx,
            outbox_ready: outbox_ready.clone(),
            commands: commands.clone(),
            number: number.clone(),
            instance_settings: instance_settings.clone(),
            running: None,
            retry_at: None,
            backoff: Duration::ZERO,
            waker,
        };
        tracker.spawn(task.run(shutdown));
        Supervisor {
            mailbox,
            state,
            outbox_ready,
            commands,
            number,
            settings: instance_settings,
            driving,
            observed: Arc::default(),
        }
    }

    /// Whether the permit it was last given lets it drive the instance.
    pub fn driving(&self) -> bool {
        self.driving.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The instance's outbox wake-up.
    pub fn bell(&self) -> Arc<Notify> {
        self.outbox_ready.clone()
    }

    /// Notes the state an instance's `connection` event reported (from any
    /// node's commit, as the log tailer sees it).
    pub fn observe_state(&self, state: ConnectionState) {
        *self.observed.lock() = Some(state);
    }

    /// Hands changed settings to the driver (now, and each time it starts).
    pub fn set_settings(&self, settings: InstanceSettings) {
        self.settings.send_replace(settings);
    }

    /// The number the modem reported for itself, if any.
    pub fn reported_number(&self) -> Option<String> {
        self.number.lock().clone()
    }

    /// The instance's state: this node's own while it may drive the
    /// instance, else what the instance's events last said (another node
    /// drives it).
    pub fn state(&self) -> ConnectionState {
        if !self.driving.load(std::sync::atomic::Ordering::Acquire) {
            if let Some(observed) = *self.observed.lock() {
                return observed;
            }
        }
        *self.state.borrow()
    }

    /// Waits until the state satisfies `pred` or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(ConnectionState) -> bool,
    ) -> bool {
        let mut state = self.state.clone();
        tokio::time::timeout(timeout, state.wait_for(|s| pred(*s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Tells the driver new messages are waiting. Never lost: `Notify` keeps
    /// a permit if the driver is busy, and a driver drains the whole outbox
    /// when it starts.
    pub fn outbox_ready(&self) {
        self.outbox_ready.notify_one();
    }

    /// Sends a command to the running driver; `false` if none is running or
    /// its mailbox is full.
    pub fn command(&self, command: Command) -> bool {
        self.commands
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.try_send(command).is_ok())
    }

    pub async fn connect(&self) -> Result<(), Gone> {
        self.request(Control::Connect).await
    }

    /// Gives or takes this node's right to drive the instance; returns once
    /// a driver that may no longer run has stopped.
    pub async fn set_permit(&self, permit: Permit) -> Result<(), Gone> {
        let (tx, rx) = oneshot::channel();
        self.mailbox
            .send(Control::Permit(permit, tx))
            .await
            .map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }

    pub async fn logout(&self) -> Result<(), Gone> {
        self.request(Control::Logout).await
    }

    pub async fn restart(&self) -> Result<(), Gone> {
        self.request(Control::Restart).await
    }

    /// Stops the driver and the supervisor itself.
    pub async fn stop(&self) -> Result<(), Gone> {
        self.request(Control::Stop).await
    }

    async fn request(&self, make: fn(oneshot::Sender<()>) -> Control) -> Result<(), Gone> {
        let (tx, rx) = oneshot::channel();
        self.mailbox.send(make(tx)).await.map_err(|_| Gone)?;
        rx.await.map_err(|_| Gone)
    }
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Result<(), DriverError>>,
    started: Instant,
}

struct Task {
    name: InstanceName,
    driver: DriverConfig,
    /// Whether the instance should be running (connect vs logout).
    enabled: bool,
    /// Whether this node may run it (it holds the lease).
    permit: Permit,
    /// Shared with the handle: whether `permit` allows driving.
    driving: Arc<std::sync::atomic::AtomicBool>,
    /// Unfenced: the driver's and this task's writes go through
    /// [`Task::fenced_log`].
    log: EventLog,
    settings: ModemSettings,
    /// The driver's file for direct PDUs not committed yet.
    spool: Option<std::path::PathBuf>,
    inbox: mpsc::Receiver<Control>,
    state: watch::Sender<ConnectionState>,
    outbox_ready: Arc<Notify>,
    commands: Arc<parking_lot::Mutex<Option<mpsc::Sender<Command>>>>,
    number: Arc<parking_lot::Mutex<Option<String>>>,
    instance_settings: Arc<watch::Sender<InstanceSettings>>,
    running: Option<Running>,
    /// When to start the driver again after a failure.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Wakes other instances' drivers on this node (pool turns).
    waker: crate::modem::MemberWaker,
}

impl Task {
    async fn run(mut self, shutdown: CancellationToken) {
        if self.enabled && self.permit.allows() {
            self.start().await;
        }
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.stop_driver("server shutting down").await;
                    break;
                }
                control = self.inbox.recv() => match control {
                    Some(Control::Permit(permit, done)) => {
                        self.permit_changed(permit).await;
                        let _ = done.send(());
                    }
                    Some(Control::Connect(done)) => {
                        self.enabled = true;
                        if self.running.is_none() && self.permit.allows() {
                            self.backoff = Duration::ZERO;
                            self.start().await;
                        }
                        let _ = done.send(());
                    }
                    Some(Control::Logout(done)) => {
                        self.enabled = false;
                        self.stop_driver("logged out").await;
                        let _ = done.send(());
                    }
                    Some(Control::Restart(done)) => {
                        self.enabled = true;
                        self.stop_driver("restarting").await;
                        self.backoff = Duration::ZERO;
                        if self.permit.allows() {
                            self.start().await;
                        }
                        let _ = done.send(());
                    }
                    Some(Control::Stop(done)) => {
                        self.stop_driver("instance deleted").await;
                        let _ = done.send(());
                        break;
                    }
                    None => {
                        self.stop_driver("supervisor dropped").await;
                        break;
                    }
                },
                outcome = join(&mut self.running) => self.driver_ended(outcome).await,
                _ = sleep_until(retry_at), if retry_at.is_some() && self.running.is_none() => {
                    self.retry_at = None;
                    if self.enabled && self.permit.allows() {
                        self.start().await;
                    }
                }
            }
        }
        *self.commands.lock() = None;
    }

    /// Applies a new permit: a driver that may no longer run stops before
    /// this returns (so the lease can be given up safely); one whose fence
    /// changed restarts under the new one.
    async fn permit_changed(&mut self, permit: Permit) {
        let fence_changed = self.permit.fence() != permit.fence();
        let reason = match &permit {
            Permit::NotHeld(reason) => reason.clone(),
            _ => "the lease changed".to_owned(),
        };
        let allowed = permit.allows();
        if !allowed || fence_changed {
            // Recorded under the old permit: still valid on a handover.
            self.stop_driver(&reason).await;
        }
        self.permit = permit;
        self.driving
            .store(allowed, std::sync::atomic::Ordering::Release);
        if allowed && self.enabled && self.running.is_none() {
            self.backoff = Duration::ZERO;
            self.start().await;
        }
    }

    /// The log as this node may write the instance's events: fenced by
    /// the lease it holds.
    fn fenced_log(&self) -> EventLog {
        self.log.fenced(self.permit.fence())
    }

    async fn start(&mut self) {
        self.retry_at = None;
        self.set_state(ConnectionState::Connecting, None).await;
        let stop = CancellationToken::new();
        let (tx, rx) = mpsc::channel(COMMANDS);
        *self.commands.lock() = Some(tx);
        let ctx = ActorContext::new(
            self.name.clone(),
            self.fenced_log(),
            self.outbox_ready.clone(),
            rx,
            stop.clone(),
            self.state.clone(),
        )
        .with_number_slot(self.number.clone())
        .with_spool(self.spool.clone())
        .with_settings(self.instance_settings.subscribe())
        .with_throttle_minute(std::time::Duration::from_millis(
            self.settings.throttle_minute_ms.max(1),
        ))
        .with_member_waker(self.waker.clone());
        // Its own task, so a panic in a driver is caught here as a JoinError
        // instead of taking the supervisor down.
        let task = tokio::spawn(modem::run(self.driver.clone(), ctx));
        self.running = Some(Running {
            stop,
            task,
            started: Instant::now(),
        });
        tracing::info!(instance = %self.name, driver = self.driver.kind(), "modem actor started");
    }

    async fn driver_ended(
        &mut self,
        outcome: Result<Result<(), DriverError>, tokio::task::JoinError>,
    ) {
        let started = self.running.take().map(|r| r.started);
        *self.commands.lock() = None;
        let fenced = matches!(
            outcome,
            Ok(Err(DriverError::Store(crate::store::StoreError::Fenced(_))))
        );
        let reason = match outcome {
            Ok(Ok(())) => "driver stopped".to_owned(),
            Ok(Err(err)) => err.to_string(),
            Err(join) if join.is_panic() => "driver panicked".to_owned(),
            Err(_) => "driver aborted".to_owned(),
        };
        if started.is_some_and(|s| s.elapsed() >= STABLE_AFTER) {
            self.backoff = Duration::ZERO;
        }
        self.backoff = if self.backoff.is_zero() {
            Duration::from_millis(self.settings.restart_backoff_initial_ms)
        } else {
            (self.backoff * 2).min(Duration::from_millis(self.settings.restart_backoff_max_ms))
        };
        tracing::warn!(instance = %self.name, %reason, retry_in = ?self.backoff, "modem actor failed");
        self.set_state(ConnectionState::Disconnected, Some(reason))
            .await;
        // A fenced driver is not restarted: the lease loop decides whether
        // this node holds the instance again.
        if self.enabled && !fenced {
            self.retry_at = Some(Instant::now() + self.backoff);
        }
    }

    async fn stop_driver(&mut self, reason: &str) {
        self.retry_at = None;
        let Some(running) = self.running.take() else {
            if *self.state.borrow() != ConnectionState::Disconnected {
                self.set_state(ConnectionState::Disconnected, Some(reason.to_owned()))
                    .await;
            }
            return;
        };
        *self.commands.lock() = None;
        running.stop.cancel();
        let abort = running.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, running.task)
            .await
            .is_err()
        {
            tracing::warn!(instance = %self.name, "modem actor did not stop in time; aborted");
            abort.abort();
        }
        self.set_state(ConnectionState::Disconnected, Some(reason.to_owned()))
            .await;
        tracing::info!(instance = %self.name, reason, "modem actor stopped");
    }

    /// Records a change of state, then makes it visible: whoever sees the
    /// new state can already read its event from the log.
    async fn set_state(&self, state: ConnectionState, reason: Option<String>) {
        // Only the node that may drive the instance speaks for its state.
        let may_write = match &self.permit {
            Permit::Always => true,
            Permit::Held { .. } => true,
            Permit::NotHeld(_) => false,
        };
        if !may_write {
            self.state.send_replace(state);
            return;
        }
        if let Err(err) = modem::record_state(&self.fenced_log(), &self.name, state, reason).await {
            // The state itself is kept in memory; only its event is lost, and
            // the next change reports the state again.
            tracing::warn!(instance = %self.name, ?state, error = %err, "could not record a connection change");
        }
        self.state.send_replace(state);
    }
}

async fn join(
    running: &mut Option<Running>,
) -> Result<Result<(), DriverError>, tokio::task::JoinError> {
    match running {
        Some(running) => (&mut running.task).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
