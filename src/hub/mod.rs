//! Per-node fan-out of committed events.
//!
//! The writer calls [`Hub::publish`] with each committed batch. For every
//! event the hub finds the connections whose filter matches (indexed by
//! instance, so an event only looks at connections that could want it),
//! serializes the event once, and pushes the shared [`Frame`] into each
//! connection's queue. Pushing never waits: a queue is bounded in bytes, and
//! a connection whose queue is full is marked *lagging* and gets nothing more
//! from the hub until its session deals with it (invariant 6). The hub's lock
//! is a plain read/write lock that is never held across an `.await`.

pub mod feed;
mod queue;
mod relay;

use std::{
    cell::OnceCell,
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use parking_lot::RwLock;

pub use queue::Subscriber;

use crate::{
    domain::InstanceName,
    domain::WebsocketSettings,
    event::{Event, Frame, Topic, TopicSet},
};

/// Which instances a filter covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceFilter {
    /// Every instance, now and future, except these (admin scope only).
    All { except: HashSet<InstanceName> },
    /// Just these.
    Only(HashSet<InstanceName>),
}

impl InstanceFilter {
    pub fn contains(&self, name: &InstanceName) -> bool {
        match self {
            InstanceFilter::All { except } => !except.contains(name),
            InstanceFilter::Only(names) => names.contains(name),
        }
    }
}

/// What one connection receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub instances: InstanceFilter,
    /// The topics the client chose; `None` means "the instance's defaults"
    /// (`websocket/set`), which is everything unless configured otherwise.
    pub topics: Option<TopicSet>,
    /// The topics the credential may see at all; chosen topics outside it
    /// are never delivered.
    pub allowed: TopicSet,
    /// Whether the instance's stream settings (`websocket/set`) apply: true
    /// for WebSocket and SSE clients, false for webhooks, which have their
    /// own event list.
    pub stream_settings: bool,
}

impl Filter {
    /// Whether an event belongs on this connection, given its instance's
    /// WebSocket settings. The live path and the log readers both use this,
    /// so replay and live delivery never disagree.
    pub fn matches(&self, instance: &InstanceName, topic: Topic, ws: WebsocketSettings) -> bool {
        if !self.allowed.contains(topic) || !self.instances.contains(instance) {
            return false;
        }
        // Lifecycle events are about the instance, not from it: its stream
        // settings do not apply to them.
        if topic == Topic::Instance {
            return self.topics.is_none_or(|t| t.contains(topic));
        }
        if !self.stream_settings {
            // A webhook has its own event list; the instance's stream
            // settings must not make its cursor skip events for good.
            return self.topics.unwrap_or_else(TopicSet::all).contains(topic);
        }
        if !ws.enabled {
            return false;
        }
        let chosen = self.topics.or(ws.events).unwrap_or_else(TopicSet::all);
        chosen.contains(topic)
    }

    /// The topics worth reading from the log for this filter.
    pub fn read_topics(&self) -> TopicSet {
        self.topics
            .unwrap_or_else(TopicSet::all)
            .intersect(self.allowed)
    }
}

struct Entry {
    subscriber: Arc<Subscriber>,
    filter: Arc<Filter>,
}

#[derive(Default)]
struct Routes {
    /// Connections that named their instances, by instance.
    by_instance: HashMap<InstanceName, Vec<Entry>>,
    /// Connections that take every instance.
    everywhere: Vec<Entry>,
    /// Per-instance stream settings; absent means the defaults.
    websocket: HashMap<InstanceName, WebsocketSettings>,
    /// Per instance, the highest id retention has deleted: a cursor below
    /// it would skip events, so it is refused instead.
    horizons: HashMap<InstanceName, i64>,
}

/// The fan-out point of one node.
pub struct Hub {
    routes: RwLock<Routes>,
    next_id: AtomicU64,
    /// Most bytes one connection may have queued before it counts as lagging.
    queue_limit: usize,
    /// The id of the newest event published: a connection that starts live
    /// treats everything up to here as before its time.
    last_published: AtomicI64,
    stats: Arc<HubStats>,
}

/// Counters for `/metrics`, the tests and the benchmarks.
#[derive(Debug, Default)]
pub struct HubStats {
    pub connections: AtomicUsize,
    /// Bytes queued across all connections right now.
    pub queued_bytes: AtomicUsize,
    pub delivered_frames: AtomicU64,
    pub lagged_connections: AtomicU64,
    /// Bytes WebSocket sessions have encoded for their clients and the
    /// sockets have not taken yet (events, replies, pongs), all together.
    pub owed_bytes: AtomicUsize,
}

impl Hub {
    pub fn new(queue_limit: usize) -> Arc<Hub> {
        Arc::new(Hub {
            routes: RwLock::new(Routes::default()),
            next_id: AtomicU64::new(1),
            queue_limit,
            last_published: AtomicI64::new(0),
            stats: Arc::new(HubStats::default()),
        })
    }

    /// The newest id published so far (or the log head it was started with).
    pub fn last_published(&self) -> i64 {
        self.last_published.load(Ordering::Acquire)
    }

    /// Sets the starting point, from the log head, before anything is published.
    pub fn start_at(&self, head: i64) {
        self.last_published.fetch_max(head, Ordering::AcqRel);
    }

    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Registers a connection; it receives matching events from now on until
    /// the returned subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, filter: Filter) -> Subscription {
        let subscriber = Arc::new(Subscriber::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.queue_limit,
            self.stats.clone(),
        ));
        let filter = Arc::new(filter);
        self.routes.write().insert(&subscriber, &filter);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        Subscription {
            hub: self.clone(),
            subscriber,
            filter,
        }
    }

    /// Fans out a committed batch, in id order.
    pub fn publish(&self, events: &[Event]) {
        let routes = self.routes.read();
        for event in events {
            let ws = routes
                .websocket
                .get(&event.instance)
                .copied()
                .unwrap_or_default();
            // Serialized on first match only: events nobody wants cost nothing.
            let frame: OnceCell<Arc<Frame>> = OnceCell::new();
            let named = routes
                .by_instance
                .get(&event.instance)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for entry in named.iter().chain(routes.everywhere.iter()) {
                if entry.filter.matches(&event.instance, event.topic, ws) {
                    let frame = frame.get_or_init(|| Arc::new(Frame::encode(event)));
                    entry.subscriber.push(frame);
                }
            }
        }
        if let Some(last) = events.last() {
            self.last_published.fetch_max(last.id, Ordering::AcqRel);
        }
    }

    /// Sends every connection back to the log to catch up (used when the
    /// writer cannot tell them about some committed events directly).
    pub fn resync_all(&self) {
        let routes = self.routes.read();
        for entry in routes
            .everywhere
            .iter()
            .chain(routes.by_instance.values().flatten())
        {
            entry.subscriber.mark_lagging();
        }
    }

    /// Records how far retention has deleted an instance's events.
    pub fn set_horizon(&self, name: &InstanceName, pruned_through: i64) {
        let mut routes = self.routes.write();
        let horizon = routes.horizons.entry(name.clone()).or_insert(0);
        *horizon = (*horizon).max(pruned_through);
    }

    /// The highest id retention deleted among the instances a filter covers:
    /// a cursor below it has a hole.
    pub fn horizon(&self, filter: &Filter) -> i64 {
        let routes = self.routes.read();
        routes
            .horizons
            .iter()
            .filter(|(name, _)| filter.instances.contains(name))
            .map(|(_, h)| *h)
            .max()
            .unwrap_or(0)
    }

    /// Applies an instance's `websocket/set` to live routing.
    pub fn set_websocket(&self, name: &InstanceName, settings: WebsocketSettings) {
        self.routes.write().websocket.insert(name.clone(), settings);
    }

    pub fn websocket(&self, name: &InstanceName) -> WebsocketSettings {
        self.routes
            .read()
            .websocket
            .get(name)
            .copied()
            .unwrap_or_default()
    }

    pub fn forget_instance(&self, name: &InstanceName) {
        let mut routes = self.routes.write();
        routes.websocket.remove(name);
        routes.horizons.remove(name);
    }
}

impl crate::store::Publish for Hub {
    fn publish(&self, events: &[Event]) {
        Hub::publish(self, events);
    }

    fn last_published(&self) -> i64 {
        Hub::last_published(self)
    }

    fn resync_all(&self) {
        Hub::resync_all(self);
    }
}

impl Routes {
    fn insert(&mut self, subscriber: &Arc<Subscriber>, filter: &Arc<Filter>) {
        let entry = || Entry {
            subscriber: subscriber.clone(),
            filter: filter.clone(),
        };
        match &filter.instances {
            InstanceFilter::All { .. } => self.everywhere.push(entry()),
            InstanceFilter::Only(names) => {
                for name in names {
                    self.by_instance
                        .entry(name.clone())
                        .or_default()
                        .push(entry());
                }
            }
        }
    }

    fn remove(&mut self, subscriber: &Subscriber, filter: &Filter) {
        let id = subscriber.id();
        match &filter.instances {
            InstanceFilter::All { .. } => self.everywhere.retain(|e| e.subscriber.id() != id),
            InstanceFilter::Only(names) => {
                for name in names {
                    if let Some(entries) = self.by_instance.get_mut(name) {
                        entries.retain(|e| e.subscriber.id() != id);
                        if entries.is_empty() {
                            self.by_instance.remove(name);
                        }
                    }
                }
            }
        }
    }
}

/// One connection's place in the hub. Dropping it unregisters the connection.
pub struct Subscription {
    hub: Arc<Hub>,
    subscriber: Arc<Subscriber>,
    filter: Arc<Filter>,
}

impl Subscription {
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Replaces the filter; takes effect for the next published event.
    pub fn set_filter(&mut self, filter: Filter) {
        let filter = Arc::new(filter);
        let mut routes = self.hub.routes.write();
        routes.remove(&self.subscriber, &self.filter);
        routes.insert(&self.subscriber, &filter);
        self.filter = filter;
    }

    pub fn queue(&self) -> &Subscriber {
        &self.subscriber
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .routes
            .write()
            .remove(&self.subscriber, &self.filter);
        self.subscriber.clear();
        self.hub.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::data::{Direction, MessageData, Payload};

    fn name(s: &str) -> InstanceName {
        InstanceName::parse(s).expect("valid")
    }

    fn event(id: i64, instance: &str, direction: Direction, content: &str) -> Event {
        let new = MessageData {
            id: id.to_string(),
            direction,
            from: "+1".into(),
            to: "+2".into(),
            kind: "text".into(),
            content: content.into(),
            timestamp: 0,
            parts: 1,
        }
        .into_event(&name(instance));
        Event {
            id,
            seq: id,
            instance: new.instance,
            topic: new.topic,
            timestamp: new.timestamp,
            data: new.data,
        }
    }

    fn only(names: &[&str], topics: Option<TopicSet>) -> Filter {
        Filter {
            instances: InstanceFilter::Only(names.iter().map(|n| name(n)).collect()),
            topics,
            allowed: TopicSet::all_instance_topics(),
            stream_settings: true,
        }
    }

    fn drain(sub: &Subscription) -> Vec<i64> {
        std::iter::from_fn(|| sub.queue().pop())
            .map(|f| f.id)
            .collect()
    }

    #[test]
    fn each_connection_gets_exactly_what_its_filter_matches() {
        let hub = Hub::new(1 << 20);
        let alpha_incoming = hub.subscribe(only(
            &["alpha"],
            Some(TopicSet::of(&[Topic::MessageIncoming])),
        ));
        let beta_all = hub.subscribe(only(&["beta"], None));
        let everything = hub.subscribe(Filter {
            instances: InstanceFilter::All {
                except: HashSet::new(),
            },
            topics: None,
            allowed: TopicSet::all(),
            stream_settings: true,
        });
        hub.publish(&[
            event(1, "alpha", Direction::Incoming, "a"),
            event(2, "alpha", Direction::Outgoing, "b"),
            event(3, "beta", Direction::Outgoing, "c"),
        ]);
        assert_eq!(drain(&alpha_incoming), vec![1]);
        assert_eq!(drain(&beta_all), vec![3]);
        assert_eq!(drain(&everything), vec![1, 2, 3]);
    }

    #[test]
    fn a_frame_is_serialized_once_and_shared() {
        let hub = Hub::new(1 << 20);
        let a = hub.subscribe(only(&["alpha"], None));
        let b = hub.subscribe(only(&["alpha"], None));
        hub.publish(&[event(7, "alpha", Direction::Incoming, "x")]);
        let fa = a.queue().pop().expect("frame");
        let fb = b.queue().pop().expect("frame");
        assert!(Arc::ptr_eq(&fa, &fb));
    }

    #[test]
    fn a_full_queue_marks_the_connection_lagging_without_touching_others() {
        let body = "x".repeat(1000);
        let hub = Hub::new(4096);
        let stuck = hub.subscribe(only(&["alpha"], None));
        let reader = hub.subscribe(only(&["alpha"], None));
        for id in 1..=20 {
            hub.publish(&[event(id, "alpha", Direction::Incoming, &body)]);
            // The reader keeps up; the stuck one never pops.
            assert_eq!(drain(&reader), vec![id]);
        }
        assert!(stuck.queue().is_lagging());
        assert!(!reader.queue().is_lagging());
        assert!(stuck.queue().queued_bytes() <= 4096);
        assert!(hub.stats().queued_bytes.load(Ordering::Relaxed) <= 4096);
    }

    #[test]
    fn dropping_a_subscription_unregisters_it_and_frees_its_queue() {
        let hub = Hub::new(1 << 20);
        let sub = hub.subscribe(only(&["alpha"], None));
        hub.publish(&[event(1, "alpha", Direction::Incoming, "x")]);
        assert!(hub.stats().queued_bytes.load(Ordering::Relaxed) > 0);
        drop(sub);
        assert_eq!(hub.stats().queued_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(hub.stats().connections.load(Ordering::Relaxed), 0);
        assert!(hub.routes.read().by_instance.is_empty());
    }

    #[test]
    fn instance_stream_settings_apply_to_connections_without_their_own_topics() {
        let hub = Hub::new(1 << 20);
        let defaults = hub.subscribe(only(&["alpha"], None));
        let chosen = hub.subscribe(only(&["alpha"], Some(TopicSet::all_instance_topics())));
        hub.set_websocket(
            &name("alpha"),
            WebsocketSettings {
                enabled: true,
                events: Some(TopicSet::of(&[Topic::MessageOutgoing])),
            },
        );
        hub.publish(&[
            event(1, "alpha", Direction::Incoming, "a"),
            event(2, "alpha", Direction::Outgoing, "b"),
        ]);
        assert_eq!(drain(&defaults), vec![2]);
        assert_eq!(drain(&chosen), vec![1, 2]);

        hub.set_websocket(
            &name("alpha"),
            WebsocketSettings {
                enabled: false,
                events: None,
            },
        );
        hub.publish(&[event(3, "alpha", Direction::Incoming, "c")]);
        assert!(drain(&defaults).is_empty());
        assert!(drain(&chosen).is_empty());
    }

    #[test]
    fn a_webhook_filter_ignores_the_instances_stream_settings() {
        let hub = Hub::new(1 << 20);
        let webhook = hub.subscribe(Filter {
            stream_settings: false,
            ..only(&["alpha"], Some(TopicSet::all_instance_topics()))
        });
        let socket = hub.subscribe(only(&["alpha"], None));
        hub.set_websocket(
            &name("alpha"),
            WebsocketSettings {
                enabled: false,
                events: None,
            },
        );
        hub.publish(&[event(1, "alpha", Direction::Incoming, "a")]);
        assert_eq!(drain(&webhook), vec![1]);
        assert!(drain(&socket).is_empty());
    }

    #[test]
    fn changing_a_filter_moves_the_connection() {
        let hub = Hub::new(1 << 20);
        let mut sub = hub.subscribe(only(&["alpha"], None));
        sub.set_filter(only(&["beta"], None));
        hub.publish(&[
            event(1, "alpha", Direction::Incoming, "a"),
            event(2, "beta", Direction::Incoming, "b"),
        ]);
        assert_eq!(drain(&sub), vec![2]);
    }

    /// Connections on a single-threaded runtime (a server worker) are woken
    /// through their thread's relay, however many wait, when another thread
    /// publishes; after that runtime stops, wakes go straight to the task.
    #[test]
    fn waiting_connections_on_a_worker_thread_are_woken_by_another_threads_publish() {
        let hub = Hub::new(1 << 20);
        let worker = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let subs: Vec<Subscription> = worker.block_on(async {
            (0..50)
                .map(|_| hub.subscribe(only(&["alpha"], None)))
                .collect()
        });
        assert!(
            subs.iter().all(|sub| sub.queue().home.is_some()),
            "on a worker: relayed"
        );
        let publisher = {
            let hub = hub.clone();
            std::thread::spawn(move || {
                for id in 1..=3 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    hub.publish(&[event(id, "alpha", Direction::Incoming, "hi")]);
                }
            })
        };
        let got = worker.block_on(async {
            let waits = subs.iter().map(|sub| async move {
                let mut ids = Vec::new();
                while ids.len() < 3 {
                    sub.queue().ready().await;
                    ids.extend(drain(sub));
                }
                ids
            });
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                futures_util::future::join_all(waits),
            )
            .await
            .expect("every waiting connection was woken")
        });
        publisher.join().expect("publisher");
        assert!(got.iter().all(|ids| ids == &[1, 2, 3]));

        // The worker's runtime is gone, and its relay with it.
        drop(worker);
        let other = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let sub = &subs[0];
        other.block_on(async {
            let wait = sub.queue().ready();
            let publish = async {
                tokio::task::yield_now().await;
                let hub = hub.clone();
                tokio::task::spawn_blocking(move || {
                    hub.publish(&[event(4, "alpha", Direction::Incoming, "again")])
                })
                .await
                .expect("publish");
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                tokio::join!(wait, publish)
            })
            .await
            .expect("woken without the relay");
        });
        assert_eq!(drain(sub), [4]);
    }
}
