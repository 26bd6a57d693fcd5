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
//!
//! This file holds the driver's state, its run loop (which URC, command or
//! timer to serve next), modem initialization and the deadline checks.
//! Each concept it serves lives in its own file:
//! - `status.rs`: signal, registration, operator and storage polling;
//! - `inbound.rs`: reading, committing and deleting received SMS;
//! - `reassembly.rs`: how the parts of a long inbound message belong together;
//! - `reports.rs`: SMS status reports and the delivery state they settle;
//! - `spool.rs`: direct messages and reports kept on disk until committed;
//! - `outbox.rs`: sending queued messages part by part, with retries;
//! - `calls.rs`: ringing calls, caller ids and hanging up (and the
//!   `msgCall` text to a rejected caller);
//! - `ussd.rs`: USSD sessions (`AT+CUSD`);
//! - `gnss.rs`: position fixes.

mod calls;
mod gnss;
mod inbound;
mod outbox;
mod reassembly;
mod reports;
mod spool;
mod status;
mod ussd;

use std::{collections::HashMap, time::Duration};

use tokio::time::{Instant, MissedTickBehavior};

use super::{
    at::{parse, AtConnection, AtError, ModemError, Network, Response, Urc},
    ActorContext, DriverError,
};
use crate::{
    domain::{GnssVendor, ModemOptions, PhoneNumber, SerialConfig, TcpConfig},
    event::data::{CallStatus, ConnectionInfo},
};
use calls::Call;
use inbound::{load_partials, Settled};
use outbox::Retry;
use reassembly::Partials;

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
/// How long an offer waits for `+CLIP` after `RING` before going out
/// without the caller's number.
const CLIP_WAIT: Duration = Duration::from_millis(500);
/// A call that has not rung for this long has ended (some modems send no
/// `NO CARRIER` when an unanswered caller gives up).
const RING_SILENCE: Duration = Duration::from_secs(15);
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
    partials: Partials,
    /// `+CMT` PDUs and `+CDS` reports that could not be committed yet,
    /// kept on disk (they are in no modem storage).
    spool: spool::Spool,
    call: Option<Call>,
    /// The USSD session, while one is open or waits for the network.
    ussd: Option<ussd::Session>,
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
    let spool = spool::Spool::open(ctx.spool_path()).map_err(|err| {
        DriverError::Modem(format!(
            "cannot read the spool of direct messages and reports: {err}"
        ))
    })?;
    if !spool.is_empty() {
        tracing::info!(instance = %ctx.instance, waiting = spool.len(), "direct messages and reports from before the restart wait for their commit");
    }
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
        spool,
        call: None,
        ussd: None,
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
                .and_then(|n| PhoneNumber::parse_with(&n, &self.ctx.settings().number_rules()).ok())
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

    async fn urc(&mut self, urc: Urc) -> Result<(), DriverError> {
        match urc {
            Urc::NewMessage { storage, index } | Urc::NewReport { storage, index } => {
                self.read_stored(&storage, index).await?;
            }
            Urc::Message { pdu } | Urc::Report { pdu } => {
                // Acknowledged only once it is committed, or else safe in
                // the spool: after the acknowledgement nobody else has it.
                // While others wait in the spool the database was down a
                // moment ago: this one joins them rather than wait for it.
                let settled = if self.spool.is_empty() {
                    self.settle_pdu(&pdu, false).await
                } else {
                    Settled::Deferred
                };
                let kept = match settled {
                    Settled::Done => true,
                    Settled::Deferred => match self.spool.push(&pdu) {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::error!(instance = %self.ctx.instance, error = %err, "a direct message or report can be neither committed nor spooled; it is left unacknowledged for the network to send again");
                            false
                        }
                    },
                };
                if kept && self.needs_ack {
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
            Urc::Ussd { m, text, dcs } => self.ussd_answer(m, text, dcs).await,
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

    /// Deadlines: send retries, storage rescans, deferred direct messages,
    /// offers without `+CLIP`, calls that stopped ringing, multipart
    /// messages that waited too long, and USSD answers that never came.
    async fn housekeeping(&mut self) -> Result<(), DriverError> {
        let now = Instant::now();
        if self.outbox_due.is_some_and(|at| at <= now) {
            self.drain_outbox().await?;
        }
        if self.rescan_due.is_some_and(|at| at <= now) {
            self.scan_storage().await?;
        }
        if !self.spool.is_empty() {
            let mut committed = false;
            while let Some(pdu) = self.spool.front().map(str::to_owned) {
                if self.settle_pdu(&pdu, false).await == Settled::Deferred {
                    break;
                }
                self.spool.pop_front();
                committed = true;
            }
            if committed {
                if let Err(err) = self.spool.persist() {
                    // Those committed are recognized if they come round again.
                    tracing::warn!(instance = %self.ctx.instance, error = %err, "could not rewrite the spool");
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
        self.ussd_deadline(now).await?;
        Ok(())
    }
}
