//! The driver of a real GSM/LTE modem (SIMCom, Quectel and the like) in
//! SMS PDU mode, over a serial port or a TCP serial bridge.
//!
//! One task drives one modem through an [`AtConnection`]: it initializes
//! and probes the modem, drains the instance's outbox, turns what the modem
//! receives into events, follows delivery reports, signal, registration,
//! calls and GNSS, and recovers from a modem that goes quiet.
//!
//! The rules it keeps (DESIGN.md invariants 4 and 5):
//! - an inbound SMS is deleted from modem storage only after its event is
//!   committed; when the database is down it stays there and storage is
//!   listed again later;
//! - every part the modem accepted is recorded with its message reference
//!   in the same commit as its `delivery` event, so a report that arrives
//!   after a restart still finds its message;
//! - an outbound message leaves the outbox only as `sent` (all parts
//!   accepted) or `failed`; a restart resumes with the parts not yet sent.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    time::Duration,
};

use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::time::{Instant, MissedTickBehavior};

use super::{
    at::{
        parse::{self, StoredPdu},
        AtConnection, AtError, ModemError, Network, Response, Urc,
    },
    options::{GnssVendor, ModemOptions, SerialConfig, TcpConfig},
    pdu::{self, Deliver, DeliveryOutcome, Pdu, StatusReport, SubmitOptions},
    ActorContext, Command, DriverError, PhoneNumber,
};
use crate::{
    event::data::{
        CallData, CallStatus, ConnectionInfo, DeliveryData, DeliveryStatus, Direction,
        LocationData, Me, MessageData, Payload,
    },
    store::{Change, InboundPartRow, Job, OutboxRow, PartRow, StoreError},
};

/// How the driver reaches the modem.
#[derive(Debug, Clone)]
pub enum Link {
    Serial(SerialConfig),
    Tcp(TcpConfig),
}

/// How often deadlines (send retries, multipart timeouts, ringing calls,
/// deferred commits) are checked. Far below every user-visible interval.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// After a commit failed, storage is listed again this soon.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// Messages taken from the outbox per query.
const OUTBOX_PAGE: i64 = 50;
/// How long an offer waits for `+CLIP` after `RING` before going out
/// without the caller's number.
const CLIP_WAIT: Duration = Duration::from_millis(500);
/// A call that has not rung for this long has ended (some modems send no
/// `NO CARRIER` when an unanswered caller gives up).
const RING_SILENCE: Duration = Duration::from_secs(15);
/// Direct messages and reports (`+CMT`, `+CDS`) kept for a retry while the
/// database is down; they are not in modem storage, so memory is all there is.
const MAX_DEFERRED: usize = 512;
/// Tries of `AT` when the driver starts, before the modem counts as silent.
const PROBES: usize = 3;
/// The `+CNMI` settings tried in order. Messages are always stored first
/// (`<mt>`=1, `+CMTI`), so one is deleted only after its commit. Status
/// reports are preferably stored too (`<ds>`=2, `+CDSI`): a report that
/// comes while the server is down then waits in the modem, where a report
/// routed straight to the host (`<ds>`=1, `+CDS`) would be lost. Modems
/// that cannot store reports get direct ones; modems that refuse either
/// get none routed (storage is listed anyway). Some SIMCom A76xx refuse
/// direct routing (`AT+CNMI=2,2,0,1,0`) but take the first setting.
const CNMI_WITH_REPORTS: &[&str] = &[
    "2,1,0,2,0",
    "2,1,0,1,0",
    "1,1,0,2,0",
    "1,1,0,1,0",
    "2,1,0,0,0",
    "1,1,0,0,0",
];
const CNMI_WITHOUT_REPORTS: &[&str] = &["2,1,0,0,0", "1,1,0,0,0"];

/// Why a command did not give an answer (the connection itself is fine).
#[derive(Debug)]
enum Refused {
    Rejected(ModemError),
    TimedOut,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Rejected(err) => write!(f, "{err}"),
            Refused::TimedOut => f.write_str("no answer from the modem"),
        }
    }
}

/// What became of one inbound PDU.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// Committed now or earlier: the modem may forget it.
    Done,
    /// Not committed (the database is unavailable): keep it.
    Deferred,
}

/// A call that is ringing.
struct Call {
    id: String,
    from: Option<String>,
    offered: bool,
    first_ring: Instant,
    last_ring: Instant,
}

/// Sends that failed and wait for their next try.
struct Retry {
    attempts: u32,
    at: Instant,
}

/// Key of an inbound multipart message: sender, reference, total.
type PartsKey = (String, u32, u32);

struct Gsm<'a> {
    at: AtConnection,
    options: ModemOptions,
    ctx: &'a ActorContext,
    /// Whether `+CMT`/`+CDS` must be acknowledged (`+CSMS` service 1).
    needs_ack: bool,
    /// The number the SIM reported.
    sim_number: Option<String>,
    /// The link details last committed as a `connection` event.
    reported: Option<ConnectionInfo>,
    info: ConnectionInfo,
    /// Registration per network, combined into `info.registration`.
    cs_stat: Option<u8>,
    eps_stat: Option<u8>,
    /// Whether the last storage check found it full (reported once).
    storage_full: bool,
    retries: HashMap<String, Retry>,
    /// The earliest moment the outbox should be looked at again.
    outbox_due: Option<Instant>,
    rescan_due: Option<Instant>,
    /// Parts of inbound multipart messages, as committed to the store.
    partials: BTreeMap<PartsKey, Vec<InboundPartRow>>,
    /// `+CMT` PDUs and `+CDS` reports that could not be committed yet.
    deferred: VecDeque<String>,
    call: Option<Call>,
}

/// Runs the driver until it is stopped (`Ok`) or the modem fails (`Err`).
pub async fn run(
    link: Link,
    options: ModemOptions,
    mut ctx: ActorContext,
) -> Result<(), DriverError> {
    let io = match &link {
        Link::Serial(config) => super::serial::open(config),
        Link::Tcp(config) => super::tcp::open(config).await,
    }
    .map_err(DriverError::Modem)?;
    let partials = load_partials(&ctx).await?;
    // The driver below borrows the context; the command mailbox is the one
    // part of it the loop needs mutably, so it is taken out first.
    let (_, closed) = tokio::sync::mpsc::channel(1);
    let mut commands = std::mem::replace(&mut ctx.commands, closed);
    let mut gsm = Gsm {
        at: AtConnection::new(io),
        options,
        ctx: &ctx,
        needs_ack: false,
        sim_number: None,
        reported: None,
        info: ConnectionInfo::default(),
        cs_stat: None,
        eps_stat: None,
        storage_full: false,
        retries: HashMap::new(),
        outbox_due: None,
        rescan_due: None,
        partials,
        deferred: VecDeque::new(),
        call: None,
    };
    gsm.init().await?;
    gsm.poll_status().await?;
    gsm.scan_storage().await?;
    gsm.drain_outbox().await?;

    let mut status = interval(gsm.options.status_poll_ms);
    let mut storage = interval(gsm.options.storage_poll_ms);
    let mut gnss = gsm
        .options
        .gnss
        .as_ref()
        .map(|g| interval(g.interval_secs * 1000));
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick of an interval is immediate; the work above did it.
    status.tick().await;
    storage.tick().await;
    loop {
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return Ok(()),
            command = commands.recv() => match command {
                Some(command) => gsm.command(command).await?,
                None => return Ok(()),
            },
            urc = gsm.at.next_urc() => gsm.urc(urc.map_err(lost)?).await?,
            _ = ctx.outbox_ready.notified() => gsm.drain_outbox().await?,
            _ = status.tick() => gsm.poll_status().await?,
            _ = storage.tick() => gsm.scan_storage().await?,
            _ = tick(&mut gnss) => gsm.poll_gnss().await?,
            _ = housekeeping.tick() => gsm.housekeeping().await?,
        }
        // URCs that arrived during a command are handled before waiting again.
        while let Some(urc) = gsm.at.take_urc() {
            gsm.urc(urc).await?;
        }
    }
}

fn interval(ms: u64) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_millis(ms.max(1)));
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The connection to the modem is gone: the supervisor reports it and
/// starts the driver again with backoff.
fn lost(err: AtError) -> DriverError {
    DriverError::Modem(match err {
        AtError::Closed => "the modem port closed (unplugged?)".to_owned(),
        other => other.to_string(),
    })
}

async fn load_partials(
    ctx: &ActorContext,
) -> Result<BTreeMap<PartsKey, Vec<InboundPartRow>>, DriverError> {
    let mut partials: BTreeMap<PartsKey, Vec<InboundPartRow>> = BTreeMap::new();
    for row in ctx.log.store().inbound_parts(&ctx.instance).await? {
        partials
            .entry((row.sender.clone(), row.reference, row.total))
            .or_default()
            .push(row);
    }
    Ok(partials)
}

impl Gsm<'_> {
    /// Runs a command. `Err` means the modem is gone (port closed, or it
    /// stopped answering even after a resync); `Ok(Err)` that it refused.
    async fn cmd(
        &mut self,
        command: &str,
        prefix: &str,
    ) -> Result<Result<Response, Refused>, DriverError> {
        let timeout = self.options.command_timeout();
        let result = self.at.command(command, prefix, timeout).await;
        self.settle(result, command).await
    }

    async fn settle(
        &mut self,
        result: Result<Response, AtError>,
        command: &str,
    ) -> Result<Result<Response, Refused>, DriverError> {
        match result {
            Ok(response) => Ok(Ok(response)),
            Err(AtError::Rejected(err)) => Ok(Err(Refused::Rejected(err))),
            Err(AtError::Timeout { after, .. }) => {
                tracing::warn!(instance = %self.ctx.instance, command, ?after, "the modem did not answer; resynchronizing");
                match self.at.resync(self.options.command_timeout()).await {
                    Ok(()) => Ok(Err(Refused::TimedOut)),
                    Err(AtError::Timeout { .. }) => {
                        // Ask for a reset; the restarted driver re-initializes.
                        let _ = self.at.write(b"AT+CFUN=1,1\r").await;
                        Err(DriverError::Modem(format!(
                            "the modem stopped answering (no reply to {command} within {after:?}); reset requested"
                        )))
                    }
                    Err(err) => Err(lost(err)),
                }
            }
            Err(err) => Err(lost(err)),
        }
    }

    /// Wakes the modem, puts it in the modes the driver needs and finds
    /// out what it supports.
    async fn init(&mut self) -> Result<(), DriverError> {
        // Cancel a prompt a previous run may have left open.
        self.at.write(b"\x1b\r").await.map_err(lost)?;
        let mut awake = false;
        for _ in 0..PROBES {
            match self
                .at
                .command("AT", "", self.options.command_timeout())
                .await
            {
                Ok(_) | Err(AtError::Rejected(_)) => {
                    awake = true;
                    break;
                }
                Err(AtError::Timeout { .. }) => continue,
                Err(err) => return Err(lost(err)),
            }
        }
        if !awake {
            return Err(DriverError::Modem(
                "the modem does not answer AT commands".into(),
            ));
        }
        self.at
            .resync(self.options.command_timeout())
            .await
            .map_err(lost)?;
        self.cmd("ATE0", "").await?.ok();
        self.cmd("AT+CMEE=1", "").await?.ok();
        if let Ok(response) = self.cmd("AT+CPIN?", "+CPIN:").await? {
            if let Some(pin) = response.info("+CPIN:") {
                if pin != "READY" {
                    return Err(DriverError::Modem(format!("the SIM is not ready: {pin}")));
                }
            }
        }
        if let Err(err) = self.cmd("AT+CMGF=0", "").await? {
            return Err(DriverError::Modem(format!(
                "the modem refused SMS PDU mode (AT+CMGF=0): {err}"
            )));
        }
        if let Ok(response) = self.cmd("AT+CSMS?", "+CSMS:").await? {
            self.needs_ack = response.info("+CSMS:").is_some_and(parse::needs_ack);
        }
        self.cmd("AT+CPMS=\"SM\",\"SM\",\"SM\"", "+CPMS:")
            .await?
            .ok();
        let candidates = if self.options.delivery_reports {
            CNMI_WITH_REPORTS
        } else {
            CNMI_WITHOUT_REPORTS
        };
        let mut routed = None;
        for setting in candidates {
            match self.cmd(&format!("AT+CNMI={setting}"), "").await? {
                Ok(_) => {
                    routed = Some(*setting);
                    break;
                }
                Err(err) => {
                    tracing::info!(instance = %self.ctx.instance, setting, %err, "the modem refused this +CNMI; trying the next");
                }
            }
        }
        match routed {
            Some(setting) => {
                tracing::info!(instance = %self.ctx.instance, cnmi = setting, "new-message indications on")
            }
            None => {
                tracing::warn!(instance = %self.ctx.instance, "the modem refused every +CNMI setting; relying on storage polls")
            }
        }
        for optional in ["AT+CREG=1", "AT+CEREG=1", "AT+COPS=3,0", "AT+CLIP=1"] {
            self.cmd(optional, "").await?.ok();
        }
        if let Ok(response) = self.cmd("AT+CNUM", "+CNUM:").await? {
            self.sim_number = response
                .info("+CNUM:")
                .and_then(parse::own_number)
                .and_then(|n| PhoneNumber::parse(&n).ok())
                .map(|n| n.to_string());
            self.ctx.report_number(self.sim_number.clone());
        }
        if let Some(gnss) = &self.options.gnss {
            let on = match gnss.vendor {
                GnssVendor::Simcom => "AT+CGPS=1",
                GnssVendor::Quectel => "AT+QGPS=1",
            };
            // Refused usually means "already on".
            self.cmd(on, "").await?.ok();
        }
        Ok(())
    }

    fn own_number(&self) -> String {
        self.options
            .number
            .as_deref()
            .and_then(|n| PhoneNumber::parse(n).ok())
            .map(|n| n.to_string())
            .or_else(|| self.sim_number.clone())
            .unwrap_or_else(|| self.ctx.instance.to_string())
    }

    /// Reads signal, registration, operator and storage, and reports what
    /// changed as a `connection` event.
    async fn poll_status(&mut self) -> Result<(), DriverError> {
        if let Ok(response) = self.cmd("AT+CSQ", "+CSQ:").await? {
            self.info.signal = response.info("+CSQ:").and_then(parse::csq_dbm);
        }
        if let Ok(response) = self.cmd("AT+CREG?", "+CREG:").await? {
            self.cs_stat = response.info("+CREG:").and_then(parse::registration_stat);
        }
        if let Ok(response) = self.cmd("AT+CEREG?", "+CEREG:").await? {
            self.eps_stat = response.info("+CEREG:").and_then(parse::registration_stat);
        }
        if let Ok(response) = self.cmd("AT+COPS?", "+COPS:").await? {
            self.info.operator = response.info("+COPS:").and_then(parse::operator);
        }
        let mut reason = None;
        if let Ok(response) = self.cmd("AT+CPMS?", "+CPMS:").await? {
            let f = response
                .info("+CPMS:")
                .map(parse::fields)
                .unwrap_or_default();
            let used: Option<u32> = f.get(1).and_then(|v| v.parse().ok());
            let total: Option<u32> = f.get(2).and_then(|v| v.parse().ok());
            if let (Some(used), Some(total)) = (used, total) {
                let full = total > 0 && used >= total;
                if full && !self.storage_full {
                    tracing::warn!(instance = %self.ctx.instance, used, total, "modem SMS storage is full; draining it");
                    reason = Some(format!(
                        "modem SMS storage is full ({used}/{total}); draining it"
                    ));
                    // Empty it now rather than at the next poll.
                    self.rescan_due = Some(Instant::now());
                }
                self.storage_full = full;
            }
        }
        self.report(reason).await;
        Ok(())
    }

    /// Commits the link details when they changed (or a reason is given).
    async fn report(&mut self, reason: Option<String>) {
        self.info.registration = self.registration();
        self.info.me = Some(Me {
            id: self.own_number(),
            name: self.ctx.instance.to_string(),
        });
        if reason.is_none() && self.reported.as_ref() == Some(&self.info) {
            return;
        }
        match self
            .ctx
            .report_connected_because(self.info.clone(), reason)
            .await
        {
            Ok(()) => self.reported = Some(self.info.clone()),
            // Reported again at the next change or poll.
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record the modem status")
            }
        }
    }

    fn registration(&self) -> Option<String> {
        // The better of the two networks: registered beats searching.
        let rank = |stat: u8| match parse::registration_name(stat) {
            "home" => 4,
            "roaming" => 3,
            "searching" => 2,
            "denied" => 1,
            _ => 0,
        };
        [self.cs_stat, self.eps_stat]
            .into_iter()
            .flatten()
            .max_by_key(|s| rank(*s))
            .map(|s| parse::registration_name(s).to_owned())
    }

    async fn urc(&mut self, urc: Urc) -> Result<(), DriverError> {
        match urc {
            Urc::NewMessage { storage, index } | Urc::NewReport { storage, index } => {
                self.read_stored(&storage, index).await?;
            }
            Urc::Message { pdu } | Urc::Report { pdu } => {
                let settled = self.settle_pdu(&pdu, false).await;
                if settled == Settled::Deferred {
                    if self.deferred.len() >= MAX_DEFERRED {
                        self.deferred.pop_front();
                        tracing::error!(instance = %self.ctx.instance, "too many direct messages wait for the database; dropping the oldest");
                    }
                    self.deferred.push_back(pdu);
                } else if self.needs_ack {
                    // Acknowledged only now that it is committed.
                    self.cmd("AT+CNMA", "").await?.ok();
                }
            }
            Urc::Ring => self.ring(None).await,
            Urc::Caller { number } => self.ring(Some(number)).await,
            Urc::CallEnded => {
                if let Some(call) = self.call.take() {
                    self.call_event(&call.id, call.from, CallStatus::End).await;
                }
            }
            Urc::Registration { network, stat } => {
                match network {
                    Network::Cs => self.cs_stat = Some(stat),
                    Network::Eps => self.eps_stat = Some(stat),
                }
                self.report(None).await;
            }
        }
        Ok(())
    }

    /// Reads a stored message or report, commits it, then deletes it.
    async fn read_stored(&mut self, storage: &str, index: u32) -> Result<(), DriverError> {
        let other = !storage.is_empty() && storage != "SM";
        if other {
            self.cmd(&format!("AT+CPMS=\"{storage}\""), "+CPMS:")
                .await?
                .ok();
        }
        let read = self.cmd(&format!("AT+CMGR={index}"), "+CMGR:").await?;
        if let Ok(response) = read {
            if let Some(pdu) = parse::read_pdu(&response.lines) {
                match self.settle_pdu(&pdu, true).await {
                    Settled::Done => {
                        self.cmd(&format!("AT+CMGD={index}"), "").await?.ok();
                    }
                    Settled::Deferred => self.defer_scan(),
                }
            }
        }
        if other {
            self.cmd("AT+CPMS=\"SM\",\"SM\",\"SM\"", "+CPMS:")
                .await?
                .ok();
        }
        Ok(())
    }

    fn defer_scan(&mut self) {
        let due = Instant::now() + STORE_RETRY;
        if self.rescan_due.is_none_or(|at| at > due) {
            self.rescan_due = Some(due);
        }
    }

    /// Lists the whole storage and settles every received message in it.
    async fn scan_storage(&mut self) -> Result<(), DriverError> {
        self.rescan_due = None;
        let Ok(response) = self.cmd("AT+CMGL=4", "+CMGL:").await? else {
            return Ok(());
        };
        for StoredPdu { index, stat, pdu } in parse::listed(&response.lines) {
            // 2 and 3 are outgoing drafts someone else stored: not ours.
            if stat > 1 {
                continue;
            }
            match self.settle_pdu(&pdu, true).await {
                Settled::Done => {
                    self.cmd(&format!("AT+CMGD={index}"), "").await?.ok();
                }
                Settled::Deferred => self.defer_scan(),
            }
        }
        Ok(())
    }

    /// Turns one received PDU (message or report) into committed state.
    /// `stored`: it was read from modem storage (not a `+CMT`/`+CDS` line).
    async fn settle_pdu(&mut self, hex: &str, stored: bool) -> Settled {
        match pdu::decode(hex) {
            Ok(Pdu::Deliver(deliver)) => self.settle_message(hex, deliver).await,
            Ok(Pdu::StatusReport(report)) => self.settle_report(&report).await,
            // A direct PDU that does not decode is line noise that looked
            // like a URC: there is nothing in the modem to keep.
            Err(err) if !stored => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "ignoring an unreadable direct PDU");
                Settled::Done
            }
            Err(err) => {
                // Kept as an event with the raw PDU, so nothing is lost and
                // the storage slot is freed.
                tracing::warn!(instance = %self.ctx.instance, error = %err, "an unreadable PDU; delivering it raw");
                let now = Utc::now().timestamp();
                let event = MessageData {
                    id: uuid::Uuid::now_v7().to_string(),
                    direction: Direction::Incoming,
                    from: String::new(),
                    to: self.own_number(),
                    kind: "pdu".into(),
                    content: hex.trim().to_owned(),
                    timestamp: now,
                    parts: 1,
                };
                self.commit_inbound(hex, vec![event.into_event(&self.ctx.instance)], Vec::new())
                    .await
            }
        }
    }

    /// Commits `events` and `changes` with the PDU's digest.
    async fn commit_inbound(
        &self,
        hex: &str,
        events: Vec<crate::event::NewEvent>,
        mut changes: Vec<Change>,
    ) -> Settled {
        changes.push(Change::MarkInboundSeen {
            instance: self.ctx.instance.clone(),
            digest: digest(&self.ctx.instance, hex),
        });
        match self.ctx.log.append(Job { events, changes }).await {
            Ok(_) => Settled::Done,
            // Committed by an earlier run that did not get to delete it.
            Err(StoreError::Conflict(_)) => Settled::Done,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not commit a received message; it stays in the modem");
                Settled::Deferred
            }
        }
    }

    async fn settle_message(&mut self, hex: &str, deliver: Deliver) -> Settled {
        let now = Utc::now();
        let sent_at = deliver
            .timestamp
            .to_unix_seconds()
            .unwrap_or(now.timestamp());
        // A "type 0" message is meant to be acknowledged and thrown away.
        if deliver.protocol_identifier == 0x40 {
            return self.commit_inbound(hex, Vec::new(), Vec::new()).await;
        }
        let whole = |content: String, parts: u32, timestamp: i64, to: String| MessageData {
            id: uuid::Uuid::now_v7().to_string(),
            direction: Direction::Incoming,
            from: deliver.sender.clone(),
            to,
            kind: "text".into(),
            content,
            timestamp,
            parts,
        };
        let concat = deliver.concat.filter(|c| c.total > 1);
        let Some(concat) = concat else {
            let event = whole(deliver.text.clone(), 1, sent_at, self.own_number());
            return self
                .commit_inbound(hex, vec![event.into_event(&self.ctx.instance)], Vec::new())
                .await;
        };
        let key: PartsKey = (
            deliver.sender.clone(),
            u32::from(concat.reference),
            u32::from(concat.total),
        );
        let sequence = u32::from(concat.sequence);
        let have = self.partials.get(&key).cloned().unwrap_or_default();
        if have.iter().any(|p| p.sequence == sequence) {
            // The same part again (the network sent it twice).
            return self.commit_inbound(hex, Vec::new(), Vec::new()).await;
        }
        let row = InboundPartRow {
            instance: self.ctx.instance.clone(),
            sender: deliver.sender.clone(),
            reference: key.1,
            total: key.2,
            sequence,
            content: deliver.text.clone(),
            sent_at,
            received_at: now,
        };
        if have.len() + 1 == key.2 as usize {
            let mut all = have;
            all.push(row);
            all.sort_by_key(|p| p.sequence);
            let content: String = all.iter().map(|p| p.content.as_str()).collect();
            let first_sent = all.iter().map(|p| p.sent_at).min().unwrap_or(sent_at);
            let event = whole(content, key.2, first_sent, self.own_number());
            let settled = self
                .commit_inbound(
                    hex,
                    vec![event.into_event(&self.ctx.instance)],
                    vec![Change::DeleteInboundParts {
                        instance: self.ctx.instance.clone(),
                        sender: key.0.clone(),
                        reference: key.1,
                        total: key.2,
                    }],
                )
                .await;
            if settled == Settled::Done {
                self.partials.remove(&key);
            }
            settled
        } else {
            let settled = self
                .commit_inbound(hex, Vec::new(), vec![Change::StoreInboundPart(row.clone())])
                .await;
            if settled == Settled::Done {
                self.partials.entry(key).or_default().push(row);
            }
            settled
        }
    }

    /// Delivers the multipart messages that have waited too long for their
    /// missing parts, with the parts that came.
    async fn expire_partials(&mut self) {
        let limit = chrono::Duration::milliseconds(self.options.multipart_timeout_ms as i64);
        let now = Utc::now();
        let expired: Vec<PartsKey> = self
            .partials
            .iter()
            .filter(|(_, parts)| {
                parts
                    .iter()
                    .map(|p| p.received_at)
                    .min()
                    .is_some_and(|first| now - first >= limit)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            let Some(mut parts) = self.partials.get(&key).cloned() else {
                continue;
            };
            parts.sort_by_key(|p| p.sequence);
            let event = MessageData {
                id: uuid::Uuid::now_v7().to_string(),
                direction: Direction::Incoming,
                from: key.0.clone(),
                to: self.own_number(),
                kind: "text".into(),
                content: parts.iter().map(|p| p.content.as_str()).collect(),
                timestamp: parts.iter().map(|p| p.sent_at).min().unwrap_or(0),
                parts: parts.len() as u32,
            };
            tracing::warn!(instance = %self.ctx.instance, from = %key.0, got = parts.len(), of = key.2, "delivering an incomplete multipart message");
            let job = Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes: vec![Change::DeleteInboundParts {
                    instance: self.ctx.instance.clone(),
                    sender: key.0.clone(),
                    reference: key.1,
                    total: key.2,
                }],
            };
            match self.ctx.log.append(job).await {
                Ok(_) => {
                    self.partials.remove(&key);
                }
                Err(err) => {
                    tracing::warn!(instance = %self.ctx.instance, error = %err, "could not deliver an incomplete message yet");
                    return;
                }
            }
        }
    }

    /// Matches a status report to the part it is about and moves the
    /// message on when the report settles it.
    async fn settle_report(&mut self, report: &StatusReport) -> Settled {
        let outcome = report.outcome();
        if outcome == DeliveryOutcome::Pending {
            return Settled::Done;
        }
        let store = self.ctx.log.store();
        let candidates = match store
            .parts_awaiting_report(&self.ctx.instance, u32::from(report.message_reference))
            .await
        {
            Ok(candidates) => candidates,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not match a status report yet");
                return Settled::Deferred;
            }
        };
        let Some(part) = candidates
            .into_iter()
            .find(|p| same_number(&p.recipient, &report.recipient))
        else {
            tracing::debug!(instance = %self.ctx.instance, reference = report.message_reference, "a status report for no known part");
            return Settled::Done;
        };
        let parts = match store.message_parts(&part.message_id).await {
            Ok(parts) => parts,
            Err(_) => return Settled::Deferred,
        };
        let status = match outcome {
            DeliveryOutcome::Delivered => DeliveryStatus::Delivered,
            _ => DeliveryStatus::Failed,
        };
        let now = Utc::now().timestamp();
        let total = part.total;
        let delivered = parts
            .iter()
            .filter(|p| {
                p.status == DeliveryStatus::Delivered
                    || (p.part == part.part && status == DeliveryStatus::Delivered)
            })
            .count() as u32;
        let failed_before = parts.iter().any(|p| p.status == DeliveryStatus::Failed);
        let counts = |done: u32| (total > 1).then_some((done, total));
        let mut job = Job {
            events: Vec::new(),
            changes: vec![Change::SetPartStatus {
                message_id: part.message_id.clone(),
                part: part.part,
                status,
            }],
        };
        let mut settle = |status: DeliveryStatus, error: Option<String>, done: u32| {
            let counts = counts(done);
            job.changes.push(Change::SetMessageStatus {
                id: part.message_id.clone(),
                status,
                error: error.clone(),
            });
            job.events.push(
                DeliveryData {
                    id: part.message_id.clone(),
                    status,
                    to: part.recipient.clone(),
                    timestamp: now,
                    error,
                    parts_done: counts.map(|c| c.0),
                    parts: counts.map(|c| c.1),
                }
                .into_event(&self.ctx.instance),
            );
        };
        if status == DeliveryStatus::Failed && !failed_before {
            settle(
                DeliveryStatus::Failed,
                Some(format!(
                    "the network could not deliver part {} of {total} (TP-ST 0x{:02X})",
                    part.part, report.status
                )),
                delivered,
            );
        } else if status == DeliveryStatus::Delivered
            && !failed_before
            && delivered == total
            && parts.len() as u32 == total
        {
            settle(DeliveryStatus::Delivered, None, delivered);
        }
        match self.ctx.log.append(job).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Settled::Done,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not commit a status report yet");
                Settled::Deferred
            }
        }
    }

    /// Sends what waits in the outbox.
    async fn drain_outbox(&mut self) -> Result<(), DriverError> {
        self.outbox_due = None;
        let queued = match self
            .ctx
            .log
            .store()
            .queued_messages(&self.ctx.instance, OUTBOX_PAGE + self.retries.len() as i64)
            .await
        {
            Ok(queued) => queued,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "cannot read the outbox; trying again shortly");
                self.outbox_due = Some(Instant::now() + STORE_RETRY);
                return Ok(());
            }
        };
        let now = Instant::now();
        let mut sent_any = false;
        let mut taken = 0;
        for message in queued {
            if let Some(retry) = self.retries.get(&message.id) {
                if retry.at > now {
                    self.due_outbox(retry.at);
                    continue;
                }
            }
            taken += 1;
            sent_any |= self.send(&message).await?;
        }
        if sent_any && taken >= OUTBOX_PAGE {
            self.due_outbox(Instant::now());
        }
        Ok(())
    }

    fn due_outbox(&mut self, at: Instant) {
        if self.outbox_due.is_none_or(|due| due > at) {
            self.outbox_due = Some(at);
        }
    }

    /// Sends the parts of one message that were not sent yet. `Ok(true)`
    /// when the message is settled (all sent, or failed for good).
    async fn send(&mut self, message: &OutboxRow) -> Result<bool, DriverError> {
        let done = match self.ctx.log.store().message_parts(&message.id).await {
            Ok(parts) => parts,
            Err(err) => {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "cannot read a message's parts; trying again shortly");
                self.due_outbox(Instant::now() + STORE_RETRY);
                return Ok(false);
            }
        };
        let to = match PhoneNumber::parse(&message.recipient) {
            Ok(to) => to,
            Err(err) => return self.fail(message, err, 0, 1).await.map(|_| true),
        };
        let options = SubmitOptions {
            status_report: self.options.delivery_reports,
            validity_minutes: self.options.validity_minutes,
            concat_reference: concat_reference(&message.id),
            concat_16bit: super::CONCAT_16BIT,
            message_reference: 0,
        };
        let parts = match pdu::encode_submit(to.as_str(), &message.body, &options) {
            Ok(parts) => parts,
            Err(err) => {
                return self
                    .fail(message, err.to_string(), 0, 1)
                    .await
                    .map(|_| true)
            }
        };
        let total = parts.len() as u32;
        let mut sent = done.len() as u32;
        for part in parts {
            if done.iter().any(|p| p.part == u32::from(part.part)) {
                continue;
            }
            let command = format!("AT+CMGS={}", part.tpdu_len);
            let result = self
                .at
                .command_with_body(
                    &command,
                    &part.hex,
                    "+CMGS:",
                    Duration::from_millis(self.options.send_timeout_ms),
                )
                .await;
            let refused = match self.settle(result, &command).await? {
                Ok(response) => {
                    // An unknown reference (256) matches no report.
                    let reference = response
                        .info("+CMGS:")
                        .and_then(parse::message_reference)
                        .map_or(256, u32::from);
                    sent += 1;
                    self.record_part(message, u32::from(part.part), total, reference, sent)
                        .await?;
                    continue;
                }
                Err(refused) => refused,
            };
            let attempts = self.retries.get(&message.id).map_or(0, |r| r.attempts) + 1;
            let permanent = matches!(
                &refused,
                Refused::Rejected(ModemError::Cms { code: Some(code), .. }) if parse::cms_is_permanent(*code)
            );
            tracing::warn!(instance = %self.ctx.instance, message = %message.id, part = part.part, attempts, error = %refused, "the modem did not send a part");
            if permanent || attempts >= self.options.send_attempts {
                self.retries.remove(&message.id);
                self.fail(message, refused.to_string(), sent, total).await?;
                return Ok(true);
            }
            let backoff = Duration::from_millis(self.options.send_retry_ms)
                .saturating_mul(1 << (attempts - 1).min(16));
            let at = Instant::now() + backoff;
            self.retries
                .insert(message.id.clone(), Retry { attempts, at });
            self.due_outbox(at);
            return Ok(false);
        }
        self.retries.remove(&message.id);
        Ok(true)
    }

    /// Records that the modem accepted a part, with its `delivery` event
    /// (`sent`, with the count of parts sent for a multipart message). The
    /// last part moves the outbox row to `sent`.
    async fn record_part(
        &mut self,
        message: &OutboxRow,
        part: u32,
        total: u32,
        reference: u32,
        sent: u32,
    ) -> Result<(), DriverError> {
        let mut changes = vec![Change::RecordPartSent(PartRow {
            message_id: message.id.clone(),
            instance: self.ctx.instance.clone(),
            part,
            total,
            reference,
            recipient: message.recipient.clone(),
            status: DeliveryStatus::Sent,
            sent_at: Utc::now(),
        })];
        if sent >= total {
            changes.push(Change::SetMessageStatus {
                id: message.id.clone(),
                status: DeliveryStatus::Sent,
                error: None,
            });
        }
        let multipart = total > 1;
        let event = DeliveryData {
            id: message.id.clone(),
            status: DeliveryStatus::Sent,
            to: message.recipient.clone(),
            timestamp: Utc::now().timestamp(),
            error: None,
            parts_done: multipart.then_some(sent),
            parts: multipart.then_some(total),
        };
        match self
            .ctx
            .log
            .append(Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes,
            })
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            // The part went out but is not recorded: the restarted driver
            // sends it again (at least once, never lost).
            Err(err) => Err(err.into()),
        }
    }

    async fn fail(
        &mut self,
        message: &OutboxRow,
        error: String,
        sent: u32,
        total: u32,
    ) -> Result<(), DriverError> {
        let multipart = total > 1;
        let event = DeliveryData {
            id: message.id.clone(),
            status: DeliveryStatus::Failed,
            to: message.recipient.clone(),
            timestamp: Utc::now().timestamp(),
            error: Some(error.clone()),
            parts_done: multipart.then_some(sent),
            parts: multipart.then_some(total),
        };
        let job = Job {
            events: vec![event.into_event(&self.ctx.instance)],
            changes: vec![Change::SetMessageStatus {
                id: message.id.clone(),
                status: DeliveryStatus::Failed,
                error: Some(error),
            }],
        };
        match self.ctx.log.append(job).await {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => {
                // Still queued: it is looked at again, and fails again.
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a failed message yet");
                self.due_outbox(Instant::now() + STORE_RETRY);
                Ok(())
            }
        }
    }

    async fn ring(&mut self, number: Option<String>) {
        let now = Instant::now();
        let call = self.call.get_or_insert_with(|| Call {
            id: uuid::Uuid::now_v7().to_string(),
            from: None,
            offered: false,
            first_ring: now,
            last_ring: now,
        });
        call.last_ring = now;
        if let Some(number) = number {
            call.from = Some(number);
        }
        if !call.offered && call.from.is_some() {
            self.offer().await;
        }
    }

    async fn offer(&mut self) {
        let Some(call) = self.call.as_mut() else {
            return;
        };
        call.offered = true;
        let (id, from) = (call.id.clone(), call.from.clone());
        self.call_event(&id, from, CallStatus::Offer).await;
        if self.options.auto_reject_calls {
            if let Err(err) = self.hang_up().await {
                tracing::warn!(instance = %self.ctx.instance, error = %err, "could not reject a call");
            }
        }
    }

    /// Hangs up the ringing call; returns its id.
    async fn hang_up(&mut self) -> Result<String, String> {
        let Some(call) = self.call.take() else {
            return Err("no call is ringing".into());
        };
        let hung = match self.cmd("AT+CHUP", "").await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => match self.cmd("ATH", "").await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(format!("the modem refused to hang up: {err}")),
                Err(err) => Err(err.to_string()),
            },
            Err(err) => Err(err.to_string()),
        };
        match hung {
            Ok(()) => {
                self.call_event(&call.id, call.from.clone(), CallStatus::Reject)
                    .await;
                Ok(call.id)
            }
            Err(err) => {
                self.call = Some(call);
                Err(err)
            }
        }
    }

    async fn call_event(&self, id: &str, from: Option<String>, status: CallStatus) {
        let event = CallData {
            id: id.to_owned(),
            from: from.unwrap_or_else(|| "unknown".into()),
            status,
            is_video: false,
            timestamp: Utc::now().timestamp(),
        };
        if let Err(err) = self
            .ctx
            .append(Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes: Vec::new(),
            })
            .await
        {
            tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a call event");
        }
    }

    async fn command(&mut self, command: Command) -> Result<(), DriverError> {
        match command {
            Command::RejectCall { call_id, reply } => {
                let matches = match (&self.call, &call_id) {
                    (Some(call), Some(id)) => &call.id == id,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let answer = if matches {
                    self.hang_up().await
                } else {
                    Err(match call_id {
                        Some(id) => format!("call '{id}' is not ringing"),
                        None => "no call is ringing".into(),
                    })
                };
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
        }
        Ok(())
    }

    async fn poll_gnss(&mut self) -> Result<(), DriverError> {
        let Some(gnss) = &self.options.gnss else {
            return Ok(());
        };
        let fix = match gnss.vendor {
            GnssVendor::Simcom => self
                .cmd("AT+CGPSINFO", "+CGPSINFO:")
                .await?
                .ok()
                .and_then(|r| r.info("+CGPSINFO:").and_then(parse::cgpsinfo)),
            // "+CME ERROR: 516" is Quectel's "no fix yet": not an error.
            GnssVendor::Quectel => self
                .cmd("AT+QGPSLOC=2", "+QGPSLOC:")
                .await?
                .ok()
                .and_then(|r| r.info("+QGPSLOC:").and_then(parse::qgpsloc)),
        };
        let Some(fix) = fix else {
            return Ok(());
        };
        let event = LocationData {
            latitude: fix.latitude,
            longitude: fix.longitude,
            altitude: fix.altitude,
            speed: fix.speed,
            course: fix.course,
            satellites: fix.satellites,
            timestamp: fix.timestamp.unwrap_or_else(|| Utc::now().timestamp()),
        };
        if let Err(err) = self
            .ctx
            .append(Job {
                events: vec![event.into_event(&self.ctx.instance)],
                changes: Vec::new(),
            })
            .await
        {
            tracing::warn!(instance = %self.ctx.instance, error = %err, "could not record a position");
        }
        Ok(())
    }

    /// Deadlines: send retries, storage rescans, deferred direct messages,
    /// offers without `+CLIP`, calls that stopped ringing, and multipart
    /// messages that waited too long.
    async fn housekeeping(&mut self) -> Result<(), DriverError> {
        let now = Instant::now();
        if self.outbox_due.is_some_and(|at| at <= now) {
            self.drain_outbox().await?;
        }
        if self.rescan_due.is_some_and(|at| at <= now) {
            self.scan_storage().await?;
        }
        if !self.deferred.is_empty() {
            while let Some(pdu) = self.deferred.pop_front() {
                if self.settle_pdu(&pdu, false).await == Settled::Deferred {
                    self.deferred.push_front(pdu);
                    break;
                }
                if self.needs_ack {
                    self.cmd("AT+CNMA", "").await?.ok();
                }
            }
        }
        let (offer_due, silent) = match &self.call {
            Some(call) => (
                !call.offered && now - call.first_ring >= CLIP_WAIT,
                now - call.last_ring >= RING_SILENCE,
            ),
            None => (false, false),
        };
        if offer_due {
            self.offer().await;
        }
        if silent {
            if let Some(call) = self.call.take() {
                self.call_event(&call.id, call.from, CallStatus::End).await;
            }
        }
        if !self.partials.is_empty() {
            self.expire_partials().await;
        }
        Ok(())
    }
}

/// The concatenation reference of a message: derived from its id, so a
/// restart in the middle of a message sends the rest with the same one.
fn concat_reference(id: &str) -> u16 {
    let hash = Sha256::digest(id.as_bytes());
    u16::from_be_bytes([hash[0], hash[1]])
}

/// Identifies a received PDU, so one read twice is committed once.
fn digest(instance: &crate::instance::InstanceName, pdu: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(instance.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(pdu.trim().to_ascii_uppercase().as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Whether two numbers are the same subscriber: equal digits, or one the
/// national form of the other (the report may drop the country code).
fn same_number(a: &str, b: &str) -> bool {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (a, b) = (digits(a), digits(b));
    if a == b {
        return true;
    }
    let (short, long) = if a.len() < b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    short.len() >= 6 && long.ends_with(short.trim_start_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_in_national_and_international_form() {
        assert!(same_number("+15551234567", "+15551234567"));
        assert!(same_number("+4915112345678", "015112345678"));
        assert!(!same_number("+15551234567", "+15551234568"));
        assert!(!same_number("+15551234567", "567"));
    }

    #[test]
    fn the_concatenation_reference_is_stable_per_message() {
        assert_eq!(concat_reference("abc"), concat_reference("abc"));
        assert_ne!(concat_reference("abc"), concat_reference("abd"));
    }
}
