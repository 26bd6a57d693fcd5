//! Modem drivers: where events are born.
//!
//! A driver runs inside its instance's actor task with an [`ActorContext`]:
//! it reports its link state, appends what the modem saw to the event log,
//! drains the instance's outbox and answers commands. It returns `Ok` when
//! asked to stop and `Err` when the modem failed; the supervisor
//! (`instance::supervisor`) then restarts it with backoff.
//!
//! - [`virtual_modem`]: the built-in virtual modem, driver kind `"simulator"`
//!   in the API (demo and load driver).
//! - [`gsm`]: the driver of a real GSM/LTE modem, over [`serial`] or
//!   [`tcp`], speaking AT commands through the [`at`] engine and SMS PDUs
//!   through [`pdu`]; configured with [`crate::domain::modem_options`].
//!
//! A driver's claim ([`ActorContext::claim`]) also takes texts waiting in
//! the pools its instance is a member of, where the pool's strategy gives
//! them to it (`store::pool_claim`); it then wakes the other members on
//! this node, and looks again after [`POOL_LOOK_AGAIN`] while texts it did
//! not take still wait there. With `throttle.pauseMinMs`/`pauseMaxMs` set,
//! it claims one text at a time and waits a random pause before the next
//! ([`ActorContext::paused_until`]).
//!
//! `switchboard modem-sim`, the simulated AT modem the real drivers are
//! tested against, is not a driver: it lives in [`crate::tools::modem_sim`].

pub mod at;
pub mod gsm;
pub mod pdu;
pub mod serial;
pub mod tcp;
pub mod ussd;
pub mod virtual_modem;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{DriverConfig, InstanceName, InstanceSettings, PhoneNumber},
    event::data::{
        ConnectionData, ConnectionInfo, ConnectionState, DeliveryData, DeliveryStatus, Direction,
        MessageData, Payload,
    },
    store::{Change, EventLog, Job, OutboxRow, StoreError},
};

/// Commands the API sends to a running driver.
#[derive(Debug)]
pub enum Command {
    /// Hang up a ringing or active call (`call_id` absent: whichever rings).
    /// The driver answers on `reply` with the call's id, or why not.
    RejectCall {
        call_id: Option<String>,
        reply: Option<oneshot::Sender<Result<String, String>>>,
    },
    /// A USSD request; the driver answers on `reply` once the network did
    /// (and its `ussd` event is committed), or after `timeout`.
    Ussd {
        request: ussd::UssdRequest,
        timeout: std::time::Duration,
        reply: ussd::UssdReply,
    },
}

/// Why a driver stopped working.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("the event log is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Modem(String),
}

/// Everything a running driver needs, handed over by the supervisor.
pub struct ActorContext {
    pub instance: InstanceName,
    pub log: EventLog,
    /// Fires when new messages were queued for this instance.
    pub outbox_ready: Arc<Notify>,
    pub commands: mpsc::Receiver<Command>,
    /// Cancelled when the driver must stop (logout, restart, shutdown).
    pub stop: CancellationToken,
    state: watch::Sender<ConnectionState>,
    /// The number the modem reported for itself, shared with the registry
    /// (which answers "own number" questions without asking the driver).
    reported_number: Arc<parking_lot::Mutex<Option<String>>>,
    /// Where direct PDUs wait for their commit (see `gsm::spool`); `None`
    /// keeps them in memory.
    spool: Option<std::path::PathBuf>,
    /// The instance's settings as they are now (`settings/set` changes them
    /// while the driver runs).
    settings: watch::Receiver<InstanceSettings>,
    /// When each caller was last sent the `msgCall` text (see
    /// [`ActorContext::call_reply`]).
    call_replies: parking_lot::Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
    /// The length of a throttle's minute (`modem.throttle_minute_ms`).
    throttle_minute: std::time::Duration,
    /// Wakes another instance's send loop on this node: after a claim from
    /// a pool, the members whose turn may have come.
    wake_member: Option<MemberWaker>,
    /// The earliest moment the next send may go out, when the instance
    /// pauses between sends (`throttle.pauseMinMs`/`pauseMaxMs`).
    next_send: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

/// Wakes the send loop of the named instance, if it runs on this node.
pub type MemberWaker = Arc<dyn Fn(&InstanceName) + Send + Sync>;

/// How soon a member looks at its pools again when messages wait there
/// that it did not take: the member whose turn it is may run on another
/// node (this node's members are woken at once), or may have gone down
/// without a word (its health then changes with its `disconnected` event).
pub const POOL_LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A caller gets the `msgCall` text at most once in this long: whoever
/// calls again and again cannot make the instance send a text each time.
pub const MSG_CALL_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// Callers remembered for [`MSG_CALL_EVERY`], at most; past it the
/// longest-ago are forgotten.
const MSG_CALL_REMEMBERED: usize = 1024;

impl ActorContext {
    pub fn new(
        instance: InstanceName,
        log: EventLog,
        outbox_ready: Arc<Notify>,
        commands: mpsc::Receiver<Command>,
        stop: CancellationToken,
        state: watch::Sender<ConnectionState>,
    ) -> ActorContext {
        ActorContext {
            instance,
            log,
            outbox_ready,
            commands,
            stop,
            state,
            reported_number: Arc::default(),
            spool: None,
            settings: watch::channel(InstanceSettings::default()).1,
            call_replies: parking_lot::Mutex::default(),
            throttle_minute: std::time::Duration::from_secs(60),
            wake_member: None,
            next_send: parking_lot::Mutex::new(None),
        }
    }

    /// Lets the driver wake the other members of its pools on this node.
    pub fn with_member_waker(mut self, waker: MemberWaker) -> Self {
        self.wake_member = Some(waker);
        self
    }

    /// With a pause between sends configured: `Some(when)` while the next
    /// send must still wait, `None` when it may go now. A driver asks
    /// before each claim, and calls [`ActorContext::sent_one`] after it.
    pub fn paused_until(&self) -> Option<tokio::time::Instant> {
        let next = (*self.next_send.lock())?;
        (next > tokio::time::Instant::now()).then_some(next)
    }

    /// Records that a message was just taken to send: the next one waits a
    /// random pause in the configured range, when there is one.
    pub fn sent_one(&self) {
        let Some((min, max)) = self.settings().throttle.pause_ms() else {
            *self.next_send.lock() = None;
            return;
        };
        let ms = rand::Rng::random_range(&mut rand::rng(), min..=max);
        *self.next_send.lock() =
            Some(tokio::time::Instant::now() + std::time::Duration::from_millis(u64::from(ms)));
    }

    /// Whether a pause between sends is configured (a driver then takes
    /// one message per claim).
    pub fn pauses(&self) -> bool {
        self.settings().throttle.pause_ms().is_some()
    }

    /// Sets the length of a throttle's minute.
    pub fn with_throttle_minute(mut self, minute: std::time::Duration) -> Self {
        self.throttle_minute = minute;
        self
    }

    /// Claims up to `limit` of the instance's due messages at `now`,
    /// within its throttle (see `store::outbox`).
    pub async fn claim(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: i64,
    ) -> Result<crate::store::Claim, StoreError> {
        let minute = chrono::Duration::from_std(self.throttle_minute)
            .unwrap_or_else(|_| chrono::Duration::minutes(1));
        let windows = self.settings().throttle.windows(now, minute);
        let limit = if self.pauses() { limit.min(1) } else { limit };
        let claim = self
            .log
            .store()
            .claim_next(&self.instance, now, limit, &windows, minute)
            .await?;
        if let Some(wake) = &self.wake_member {
            for member in &claim.wake {
                wake(member);
            }
        }
        if !claim.messages.is_empty() {
            self.sent_one();
        }
        Ok(claim)
    }

    /// Lets the driver follow the instance's settings.
    pub fn with_settings(mut self, settings: watch::Receiver<InstanceSettings>) -> Self {
        self.settings = settings;
        self
    }

    /// The instance's settings now.
    pub fn settings(&self) -> InstanceSettings {
        self.settings.borrow().clone()
    }

    /// The `msgCall` text to a caller whose call was just rejected, as the
    /// job that queues it (an outbox row and its `message` and `delivery:
    /// queued` events, like `sendText`'s): the driver commits it together
    /// with the `reject` event. `None` when the instance sends none, the
    /// caller's number is not one it can send to (withheld, say), or the
    /// caller got it less than [`MSG_CALL_EVERY`] ago.
    pub fn call_reply(&self, own_number: &str, caller: Option<&str>) -> Option<Job> {
        let settings = self.settings();
        let text = settings.call_reply()?;
        let caller = caller?;
        let to = match PhoneNumber::parse_with(caller, &settings.number_rules()) {
            Ok(to) => to,
            Err(err) => {
                tracing::info!(instance = %self.instance, error = %err, "no msgCall text to this caller");
                return None;
            }
        };
        if !self.first_reply_in_a_while(to.as_str()) {
            tracing::info!(instance = %self.instance, "this caller got the msgCall text a short while ago");
            return None;
        }
        let parts = match part_count(&to, text) {
            Ok(parts) => parts,
            Err(err) => {
                tracing::warn!(instance = %self.instance, error = %err, "the msgCall text cannot be sent");
                return None;
            }
        };
        Some(queued_text(&self.instance, own_number, &to, text, parts))
    }

    /// Whether `caller` may get the `msgCall` text now; if so, it counts
    /// as sent.
    fn first_reply_in_a_while(&self, caller: &str) -> bool {
        let now = tokio::time::Instant::now();
        let mut replies = self.call_replies.lock();
        if replies
            .get(caller)
            .is_some_and(|at| now.duration_since(*at) < MSG_CALL_EVERY)
        {
            return false;
        }
        if replies.len() >= MSG_CALL_REMEMBERED {
            replies.retain(|_, at| now.duration_since(*at) < MSG_CALL_EVERY);
            if replies.len() >= MSG_CALL_REMEMBERED {
                let oldest = replies
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    replies.remove(&oldest);
                }
            }
        }
        replies.insert(caller.to_owned(), now);
        true
    }

    /// Wakes this driver's own outbox reading (after it queued a text).
    pub fn wake_outbox(&self) {
        self.outbox_ready.notify_one();
    }

    /// Gives the driver a file to keep direct PDUs in until they commit.
    pub fn with_spool(mut self, path: Option<std::path::PathBuf>) -> Self {
        self.spool = path;
        self
    }

    /// The file direct PDUs wait in, if there is one.
    pub fn spool_path(&self) -> Option<std::path::PathBuf> {
        self.spool.clone()
    }

    /// Shares the slot the driver writes the modem's own number into.
    pub fn with_number_slot(mut self, slot: Arc<parking_lot::Mutex<Option<String>>>) -> Self {
        self.reported_number = slot;
        self
    }

    /// Records the number the modem reported for itself.
    pub fn report_number(&self, number: Option<String>) {
        *self.reported_number.lock() = number;
    }

    /// Reports that the modem is up (or that its link details changed) and
    /// records it as a `connection` event.
    pub async fn report_connected(&self, info: ConnectionInfo) -> Result<(), DriverError> {
        self.report_connected_because(info, None).await
    }

    /// Like [`ActorContext::report_connected`], with a reason worth telling
    /// (say, the modem's storage is full).
    pub async fn report_connected_because(
        &self,
        info: ConnectionInfo,
        reason: Option<String>,
    ) -> Result<(), DriverError> {
        let committed = self
            .append(Job {
                events: vec![
                    ConnectionData::new(ConnectionState::Connected, reason, info)
                        .into_event(&self.instance),
                ],
                // Pools route to it from now on.
                changes: vec![Change::SetHealth {
                    instance: self.instance.clone(),
                    healthy: true,
                }],
                fence: None,
            })
            .await;
        // After the commit: whoever sees the new state can already read its
        // event from the log.
        self.state.send_replace(ConnectionState::Connected);
        committed
    }

    /// Makes sure this node may still send for the instance, right before
    /// something goes out to the modem that cannot be taken back (an SMS
    /// part): a commit checked against the lease's fence in the database,
    /// then this node's own clock once more. Without a fence (one node, or
    /// `cluster.fencing` off) there is nothing to ask.
    pub async fn claim_send(&self) -> Result<(), DriverError> {
        let Some(fence) = self.log.fence() else {
            return Ok(());
        };
        self.log.append(Job::default()).await?;
        if !fence.valid() {
            return Err(StoreError::Fenced(format!(
                "the lease of '{}' ran out on node '{}' before the send",
                fence.key, fence.node
            ))
            .into());
        }
        Ok(())
    }

    /// Appends and waits for the commit.
    pub async fn append(&self, job: Job) -> Result<(), DriverError> {
        self.log.append(job).await?;
        Ok(())
    }
}

/// Records a modem actor's change of state (as its supervisor sees it) as a
/// `connection` event.
pub async fn record_state(
    log: &EventLog,
    instance: &InstanceName,
    state: ConnectionState,
    reason: Option<String>,
) -> Result<(), StoreError> {
    let event = ConnectionData::new(state, reason, ConnectionInfo::default()).into_event(instance);
    log.append(Job {
        events: vec![event],
        // Pools route around it while it is not connected.
        changes: vec![Change::SetHealth {
            instance: instance.clone(),
            healthy: state == ConnectionState::Connected,
        }],
        fence: None,
    })
    .await
    .map(|_| ())
}

/// Whether long messages carry a 16-bit concatenation reference. The 8-bit
/// one is what every handset and network understands and leaves a part one
/// more octet of text; the driver and the part count the API reports both
/// read this, so they always agree.
pub const CONCAT_16BIT: bool = false;

/// How many SMS parts `text` to `to` takes, exactly as the driver will send it.
pub fn part_count(to: &PhoneNumber, text: &str) -> Result<u32, String> {
    let options = pdu::SubmitOptions {
        concat_16bit: CONCAT_16BIT,
        ..pdu::SubmitOptions::default()
    };
    pdu::encode_submit(to.as_str(), text, &options)
        .map(|parts| parts.len() as u32)
        .map_err(|e| e.to_string())
}

/// The job that queues one text: its outbox row, its outgoing `message`
/// event and its `delivery: queued` event, committed together.
fn queued_text(
    instance: &InstanceName,
    from: &str,
    to: &PhoneNumber,
    text: &str,
    parts: u32,
) -> Job {
    let now = chrono::Utc::now();
    let id = uuid::Uuid::now_v7().to_string();
    Job {
        events: vec![
            MessageData {
                id: id.clone(),
                direction: Direction::Outgoing,
                from: from.to_owned(),
                to: to.to_string(),
                kind: "text".into(),
                content: text.to_owned(),
                timestamp: now.timestamp(),
                parts,
            }
            .into_event(instance),
            DeliveryData {
                id: id.clone(),
                status: DeliveryStatus::Queued,
                to: to.to_string(),
                timestamp: now.timestamp(),
                error: None,
                parts_done: None,
                parts: None,
            }
            .into_event(instance),
        ],
        changes: vec![Change::EnqueueMessage(OutboxRow::queued(
            id,
            instance.clone(),
            to.to_string(),
            text.to_owned(),
            now,
        ))],
        fence: None,
    }
}

/// Expired messages settled per look at the outbox, at most.
const EXPIRED_PER_TURN: i64 = 100;

/// Settles the instance's waiting messages whose time ran out: each one's
/// `delivery: expired` event commits with its row change, which holds only
/// while the message is still waiting (a cancel or claim that came first
/// wins, and no event is written).
pub async fn expire_waiting(ctx: &ActorContext) -> Result<(), DriverError> {
    let now = chrono::Utc::now();
    let expired = match ctx
        .log
        .store()
        .expired_messages(&ctx.instance, now, EXPIRED_PER_TURN)
        .await
    {
        Ok(expired) => expired,
        Err(err) => {
            // Looked for again with the next look at the outbox.
            tracing::warn!(instance = %ctx.instance, error = %err, "cannot look for expired messages");
            return Ok(());
        }
    };
    // A pool's message no member took expires under the pool's name (no
    // member sent it).
    for message in expired {
        let event = DeliveryData {
            id: message.id.clone(),
            status: DeliveryStatus::Expired,
            to: message.recipient.clone(),
            timestamp: now.timestamp(),
            error: Some("not sent before it expired".into()),
            parts_done: None,
            parts: None,
        };
        let job = Job {
            events: vec![event.into_pool_event(&message.instance, message.pool.as_ref())],
            changes: vec![Change::SettleWaiting {
                instance: message.instance.clone(),
                id: message.id,
                status: DeliveryStatus::Expired,
            }],
            fence: None,
        };
        match ctx.log.append(job).await {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The moment on the runtime's clock when the wall clock reads `at` (now,
/// if that is past), a millisecond late rather than early: woken before
/// its time, a scheduled message would not be due yet.
pub fn instant_at(at: chrono::DateTime<chrono::Utc>) -> tokio::time::Instant {
    let ahead = (at - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::Instant::now() + ahead + std::time::Duration::from_millis(1)
}

/// Runs the configured driver until it is stopped (`Ok`) or fails (`Err`).
pub async fn run(config: DriverConfig, ctx: ActorContext) -> Result<(), DriverError> {
    match config {
        DriverConfig::Simulator(config) => virtual_modem::run(config, ctx).await,
        DriverConfig::Serial(config) => {
            let modem = config.modem.clone();
            gsm::run(gsm::Link::Serial(config), modem, ctx).await
        }
        DriverConfig::Tcp(config) => {
            let modem = config.modem.clone();
            gsm::run(gsm::Link::Tcp(config), modem, ctx).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::part_count;
    use crate::domain::PhoneNumber;

    fn parts(text: &str) -> u32 {
        let to = PhoneNumber::parse("+15551234567").expect("a number");
        part_count(&to, text).expect("encodable")
    }

    #[test]
    fn parts_follow_the_sms_limits() {
        assert_eq!(parts(&"a".repeat(160)), 1);
        assert_eq!(parts(&"a".repeat(161)), 2);
        assert_eq!(parts(&"a".repeat(306)), 2);
        assert_eq!(parts(&"a".repeat(307)), 3);
        assert_eq!(parts(&"€".repeat(80)), 1);
        assert_eq!(parts(&"€".repeat(81)), 2);
        assert_eq!(parts(&"ж".repeat(70)), 1);
        assert_eq!(parts(&"ж".repeat(71)), 2);
        // An emoji is two UTF-16 units, and a pair is never split.
        assert_eq!(parts(&"😀".repeat(35)), 1);
        assert_eq!(parts(&"😀".repeat(36)), 2);
    }
}
