//! The virtual modem driver (kind `"simulator"` in the API): a modem that
//! exists only in memory, with its own number.
//!
//! A message sent through it moves `queued` → `sent` → `delivered` after the
//! configured delays, and the recipient answers with an echo. With `rate` > 0
//! it also makes up inbound traffic of every kind, reproducible from `seed`;
//! it is the demo driver and the source the benchmarks load the server with,
//! so it generates in batches and keeps several commits in flight.
//!
//! However large a send (a broadcast group), the driver stays responsive:
//! it takes a page of the outbox at a time with a bounded number of
//! messages in flight, and commits due steps in bounded chunks, going back
//! to its loop (commands, stop, new sends) between two of them.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet, VecDeque},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use super::{ActorContext, DriverError};
use crate::{
    domain::{InstanceName, SimulatorConfig},
    event::{
        data::{
            CallData, CallStatus, ConnectionInfo, DeliveryData, DeliveryStatus, Direction, Me,
            MessageData, Payload,
        },
        NewEvent,
    },
    store::{Change, Committed, Job, StoreError},
};
use traffic::Traffic;

mod traffic;

/// How often the random generator runs; each tick emits one batch.
const TICK: Duration = Duration::from_millis(10);
/// Batches the generator may have waiting for commit before it waits itself.
const IN_FLIGHT: usize = 8;
/// Queued messages fetched from the outbox at a time.
const OUTBOX_PAGE: usize = 100;
/// Messages taken from the outbox and not `sent` yet, at most: the rest
/// wait in the outbox, so one huge send costs bounded memory and each
/// outbox read stays small.
const MAX_IN_FLIGHT: usize = 1000;
/// Due steps committed in one job, at most, before the loop looks at its
/// commands again.
const STEP_CHUNK: usize = 256;

/// Something the virtual network will do later.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Sent,
    Delivered,
    Reply,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: Instant,
    /// Keeps steps scheduled for the same instant in scheduling order.
    order: u64,
    step: Step,
    message_id: String,
    recipient: String,
    body: String,
    /// The pool the message was sent to, which its events name.
    pool: Option<InstanceName>,
}

pub async fn run(config: SimulatorConfig, mut ctx: ActorContext) -> Result<(), DriverError> {
    let number = config.number_for(&ctx.instance);
    ctx.report_connected(ConnectionInfo {
        me: Some(Me {
            id: number.clone(),
            name: ctx.instance.to_string(),
        }),
        operator: Some("Simulated Network".into()),
        signal: Some(-65),
        registration: Some("home".into()),
    })
    .await?;

    let mut network = Network {
        config: &config,
        number: &number,
        timeline: BinaryHeap::new(),
        in_flight: HashSet::new(),
        outbox_pending: false,
        outbox_next: None,
        order: 0,
    };
    let mut traffic = (config.rate > 0.0).then(|| Traffic::new(&config, &ctx.instance, &number));
    let mut ussd = super::ussd::VirtualSession::default();
    let mut pending_commits: VecDeque<oneshot::Receiver<Result<Vec<Committed>, StoreError>>> =
        VecDeque::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_tick = Instant::now();
    let fail_at = config
        .fail_after_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));

    // Messages a previous run claimed and did not finish go out first,
    // then those queued while the instance was down.
    network.resume(&ctx).await?;
    network.take_outbox(&ctx).await?;
    loop {
        let next_step = network.timeline.peek().map(|Reverse(s)| s.at);
        tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => return Ok(()),
            _ = sleep_until(fail_at), if fail_at.is_some() => {
                return Err(DriverError::Modem("simulated modem failure (fail_after_ms)".into()));
            }
            // Commands come before the work of a large send, which is done
            // in bounded pieces, so they are answered between two pieces.
            command = ctx.commands.recv() => match command {
                Some(super::Command::RejectCall { reply, .. }) => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err("no call is ringing".into()));
                    }
                }
                Some(super::Command::Ussd { request, reply, .. }) => {
                    ussd.answer(&ctx, request, reply).await;
                }
                None => return Ok(()),
            },
            _ = ctx.outbox_ready.notified() => network.take_outbox(&ctx).await?,
            _ = std::future::ready(()), if network.outbox_pending && network.has_room() => {
                network.take_outbox(&ctx).await?;
            }
            // A scheduled message falls due (or one expires).
            _ = sleep_until(network.outbox_next), if network.outbox_next.is_some() => {
                network.take_outbox(&ctx).await?;
            }
            _ = sleep_until(next_step), if next_step.is_some() => {
                network.run_due_steps(&ctx).await?;
            }
            _ = tick.tick(), if traffic.is_some() => {
                let now = Instant::now();
                let elapsed = now - last_tick;
                last_tick = now;
                if let Some(traffic) = traffic.as_mut() {
                    let events = traffic.generate(elapsed, &ctx.instance);
                    if !events.is_empty() {
                        let (events, changes) = reject_calls(&ctx, &number, events);
                        let replies = !changes.is_empty();
                        while pending_commits.len() >= IN_FLIGHT {
                            if let Some(oldest) = pending_commits.pop_front() {
                                committed(oldest.await)?;
                            }
                        }
                        pending_commits.push_back(ctx.log.submit(Job { events, changes, fence: None }).await?);
                        if replies {
                            ctx.wake_outbox();
                        }
                    }
                }
                // Surface a failed commit promptly, without waiting on the rest.
                while let Some(front) = pending_commits.front_mut() {
                    match front.try_recv() {
                        Ok(result) => {
                            pending_commits.pop_front();
                            committed(Ok(result))?;
                        }
                        Err(oneshot::error::TryRecvError::Empty) => break,
                        Err(oneshot::error::TryRecvError::Closed) => return Err(StoreError::Closed.into()),
                    }
                }
            }
        }
    }
}

/// With `rejectCall` set, each call the random traffic offers is rejected
/// right after its offer, and the caller gets the `msgCall` text (queued in
/// the same commit).
fn reject_calls(
    ctx: &ActorContext,
    number: &str,
    events: Vec<NewEvent>,
) -> (Vec<NewEvent>, Vec<Change>) {
    if !ctx.settings().reject_call {
        return (events, Vec::new());
    }
    let mut out = Vec::with_capacity(events.len());
    let mut changes = Vec::new();
    for event in events {
        let offer = (event.topic == crate::event::Topic::Call)
            .then(|| serde_json::from_str::<CallData>(event.data.get()).ok())
            .flatten()
            .filter(|call| call.status == CallStatus::Offer);
        out.push(event);
        if let Some(call) = offer {
            let reply = ctx.call_reply(number, Some(&call.from));
            out.push(
                CallData {
                    status: CallStatus::Reject,
                    ..call
                }
                .into_event(&ctx.instance),
            );
            if let Some(reply) = reply {
                out.extend(reply.events);
                changes.extend(reply.changes);
            }
        }
    }
    (out, changes)
}

fn committed(
    result: Result<Result<Vec<Committed>, StoreError>, oneshot::error::RecvError>,
) -> Result<(), DriverError> {
    match result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(StoreError::Closed.into()),
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The virtual network's view of messages in flight.
struct Network<'a> {
    config: &'a SimulatorConfig,
    number: &'a str,
    timeline: BinaryHeap<Reverse<Scheduled>>,
    /// Messages claimed from the outbox whose `sent` step has not run yet.
    in_flight: HashSet<String>,
    /// Whether the outbox may hold more than was taken: taken again, a page
    /// at a time, while there is room in flight.
    outbox_pending: bool,
    /// When the outbox next needs a look on its own: a scheduled message
    /// falls due, or a waiting one expires.
    outbox_next: Option<Instant>,
    order: u64,
}

impl Network<'_> {
    fn has_room(&self) -> bool {
        self.in_flight.len() < MAX_IN_FLIGHT
    }

    /// Schedules the `sent` step of the messages a previous run claimed
    /// and did not finish.
    async fn resume(&mut self, ctx: &ActorContext) -> Result<(), DriverError> {
        let claimed = ctx
            .log
            .store()
            .claimed_messages(&ctx.instance, MAX_IN_FLIGHT as i64)
            .await?;
        for message in claimed {
            if !self.in_flight.contains(&message.id) {
                self.send_later(message);
            }
        }
        Ok(())
    }

    /// Settles expired messages, claims one page of due ones (at most
    /// [`MAX_IN_FLIGHT`] in flight, highest priority first) and schedules
    /// their `sent` step.
    async fn take_outbox(&mut self, ctx: &ActorContext) -> Result<(), DriverError> {
        self.outbox_next = None;
        super::expire_waiting(ctx).await?;
        let page = OUTBOX_PAGE.min(MAX_IN_FLIGHT.saturating_sub(self.in_flight.len()));
        if page == 0 {
            self.outbox_pending = true;
            return Ok(());
        }
        if let Some(until) = ctx.paused_until() {
            // Pausing between sends: the next look is when the pause ends.
            self.outbox_next = Some(until);
            return Ok(());
        }
        let store = ctx.log.store();
        // Claimed until the page is full, the queue is empty or the
        // throttle holds the rest (a claim cut short by the throttle is
        // followed by one that says until when).
        let mut room = page;
        let mut held = None;
        let mut pool_waiting = false;
        while room > 0 && held.is_none() {
            let claim = ctx.claim(chrono::Utc::now(), room as i64).await?;
            held = claim.held;
            pool_waiting = claim.pool_waiting;
            let taken = claim.messages.len();
            room -= taken.min(room);
            for message in claim.messages {
                self.send_later(message);
            }
            if taken == 0 || ctx.paused_until().is_some() {
                break;
            }
        }
        self.outbox_pending = room == 0;
        if let Some(until) = ctx.paused_until() {
            self.outbox_next = Some(until);
        }
        let due = store
            .next_due(&ctx.instance, chrono::Utc::now())
            .await?
            .map(super::instant_at);
        self.outbox_next = [self.outbox_next, due].into_iter().flatten().min();
        if pool_waiting {
            // Another member's turn: looked at again shortly, in case it
            // does not take it (see `POOL_LOOK_AGAIN`).
            let again = Instant::now() + super::POOL_LOOK_AGAIN;
            self.outbox_next = Some(self.outbox_next.map_or(again, |next| next.min(again)));
        }
        if let Some(held) = held {
            // Held by the throttle: looked at again when it lets go.
            let until = super::instant_at(held.until);
            self.outbox_next = Some(self.outbox_next.map_or(until, |next| next.min(until)));
        }
        Ok(())
    }

    /// Takes a claimed message in flight: its `sent` step comes after
    /// the configured delay.
    fn send_later(&mut self, message: crate::store::OutboxRow) {
        self.in_flight.insert(message.id.clone());
        self.schedule(
            Duration::from_millis(self.config.sent_delay_ms),
            Step::Sent,
            message.id,
            message.recipient,
            message.body,
            message.pool,
        );
    }

    fn schedule(
        &mut self,
        after: Duration,
        step: Step,
        message_id: String,
        recipient: String,
        body: String,
        pool: Option<InstanceName>,
    ) {
        self.order += 1;
        self.timeline.push(Reverse(Scheduled {
            at: Instant::now() + after,
            order: self.order,
            step,
            message_id,
            recipient,
            body,
            pool,
        }));
    }

    /// Runs up to [`STEP_CHUNK`] due steps, committed as one job; the loop
    /// comes back for the rest after serving what else waits.
    async fn run_due_steps(&mut self, ctx: &ActorContext) -> Result<(), DriverError> {
        let now = Instant::now();
        let mut due = Vec::new();
        while due.len() < STEP_CHUNK && self.timeline.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(step)) = self.timeline.pop() else {
                break;
            };
            due.push(step);
        }
        if due.len() == 1 {
            for step in due {
                self.run_step(ctx, step).await?;
            }
            return Ok(());
        }
        let mut job = Job::default();
        for step in &due {
            let (events, changes) = self.step_job(ctx, step);
            job.events.extend(events);
            job.changes.extend(changes);
        }
        match ctx.append(job).await {
            Ok(()) => {
                for step in due {
                    self.after_step(step);
                }
                Ok(())
            }
            // A message of the chunk was deleted with its instance
            // meanwhile: the steps go one by one, so the others still count.
            Err(DriverError::Store(StoreError::NotFound(_))) => {
                for step in due {
                    self.run_step(ctx, step).await?;
                }
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// What a step commits: its event and, for a status, the change.
    fn step_job(&self, ctx: &ActorContext, step: &Scheduled) -> (Vec<NewEvent>, Vec<Change>) {
        let now = chrono::Utc::now().timestamp();
        match step.step {
            Step::Sent | Step::Delivered => {
                let status = if step.step == Step::Sent {
                    DeliveryStatus::Sent
                } else {
                    DeliveryStatus::Delivered
                };
                let delivery = DeliveryData {
                    id: step.message_id.clone(),
                    status,
                    to: step.recipient.clone(),
                    timestamp: now,
                    error: None,
                    parts_done: None,
                    parts: None,
                };
                (
                    vec![delivery.into_pool_event(&ctx.instance, step.pool.as_ref())],
                    vec![Change::SetMessageStatus {
                        id: step.message_id.clone(),
                        status,
                        error: None,
                    }],
                )
            }
            Step::Reply => {
                let reply = MessageData {
                    id: uuid::Uuid::now_v7().to_string(),
                    direction: Direction::Incoming,
                    from: step.recipient.clone(),
                    to: self.number.to_owned(),
                    kind: "text".into(),
                    content: format!("Echo: {}", step.body),
                    timestamp: now,
                    parts: 1,
                };
                (vec![reply.into_event(&ctx.instance)], Vec::new())
            }
        }
    }

    /// Schedules what follows a committed step.
    fn after_step(&mut self, step: Scheduled) {
        match step.step {
            Step::Sent => {
                self.in_flight.remove(&step.message_id);
                self.schedule(
                    Duration::from_millis(self.config.delivered_delay_ms),
                    Step::Delivered,
                    step.message_id,
                    step.recipient,
                    step.body,
                    step.pool,
                );
            }
            Step::Delivered if self.config.echo => {
                self.schedule(
                    Duration::from_millis(self.config.reply_delay_ms),
                    Step::Reply,
                    step.message_id,
                    step.recipient,
                    step.body,
                    None,
                );
            }
            Step::Delivered | Step::Reply => {}
        }
    }

    /// Runs one step in a job of its own.
    async fn run_step(&mut self, ctx: &ActorContext, step: Scheduled) -> Result<(), DriverError> {
        let (events, changes) = self.step_job(ctx, &step);
        match ctx
            .append(Job {
                events,
                changes,
                fence: None,
            })
            .await
        {
            // The message was deleted with its instance meanwhile.
            Err(DriverError::Store(StoreError::NotFound(_))) => {
                self.in_flight.remove(&step.message_id);
                Ok(())
            }
            Err(err) => Err(err),
            Ok(()) => {
                self.after_step(step);
                Ok(())
            }
        }
    }
}
