//! Reading the log: pages by cursor for `GET /events`, and feeds (replay,
//! then live) for stream clients.

use std::collections::HashSet;

use super::{Service, ServiceError};
use crate::{
    domain::{InstanceName, TopicSet},
    event::Event,
    hub::{
        feed::{Feed, Start},
        Filter, InstanceFilter,
    },
    store::{LogQuery, StoreError},
};

/// A page request: events after `since`, of these instances (`None`: all)
/// and topics, at most `limit`.
pub struct ReadRequest {
    pub instances: Option<HashSet<InstanceName>>,
    pub since: i64,
    pub limit: i64,
    pub topics: TopicSet,
}

/// One page of the log.
pub struct EventPage {
    pub events: Vec<Event>,
    /// The cursor to continue from.
    pub next: i64,
    /// Whether more events follow.
    pub more: bool,
}

impl Service {
    pub async fn read_events(&self, request: ReadRequest) -> Result<EventPage, ServiceError> {
        let ReadRequest {
            instances,
            since,
            limit,
            topics,
        } = request;
        // A cursor below what retention deleted would skip events silently;
        // 0 means "from the oldest kept" and never expires.
        let covered = Filter {
            instances: match &instances {
                Some(set) => InstanceFilter::Only(set.clone()),
                None => InstanceFilter::All {
                    except: Default::default(),
                },
            },
            topics: Some(topics),
            allowed: topics,
            stream_settings: false,
        };
        let horizon = self.hub.horizon(&covered);
        if since > 0 && since < horizon {
            return Err(ServiceError::CursorExpired(format!(
                "cursor {since} is older than the retained log (events up to {horizon} were \
                 deleted); resynchronize from since=0"
            )));
        }
        let mut events = self
            .log
            .store()
            .read_events(&LogQuery {
                after_id: since,
                instances: instances.map(|set| set.into_iter().collect()),
                topics,
                limit: limit + 1,
            })
            .await?;
        let more = events.len() as i64 > limit;
        events.truncate(limit.max(0) as usize);
        let next = events.last().map_or(since, |e| e.id);
        Ok(EventPage { events, next, more })
    }

    /// A consumer's feed: it joins the live stream now, and replays the log
    /// first when it starts after an id.
    pub fn open_feed(&self, filter: Filter, start: Start) -> Feed {
        Feed::new(self.hub.subscribe(filter), self.log.store().clone(), start)
    }

    /// Whether the database answers, for readiness.
    pub async fn database_ready(&self) -> Result<(), StoreError> {
        self.log.store().ping().await
    }

    pub fn database_name(&self) -> &'static str {
        self.log.store().backend_name()
    }
}
