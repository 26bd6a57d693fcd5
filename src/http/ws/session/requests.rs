//! What a session answers to a client's messages: pings, subscribe and
//! unsubscribe (filter changes, bounded and checked against the
//! credential), and token refreshes.

use tokio::io::{AsyncRead, AsyncWrite};

use super::*;

impl<T: AsyncRead + AsyncWrite + Unpin> Session<T> {
    /// The reply to a client message.
    pub(super) fn answer(&mut self, text: &str) -> String {
        let message = match parse_client_message(text) {
            Ok(message) => message,
            Err(err) => return self.voice.error(&ApiError::BadRequest(err)),
        };
        if message.kind.as_deref() == Some("ping") {
            return self.voice.control("pong", json!({}));
        }
        match message.action.as_deref() {
            Some(action @ ("subscribe" | "unsubscribe")) => {
                match self.change_filter(action == "subscribe", &message) {
                    Ok(changed) => {
                        let mut summary = self.describe_filter();
                        summary["instances"]["changed"] = json!(changed);
                        self.voice.control(&format!("{action}d"), summary)
                    }
                    Err(err) => self.voice.error(&err),
                }
            }
            Some("refresh") => match self.refresh(message.token.as_deref()) {
                Ok(expires_at) => self.voice.control(
                    "refreshed",
                    json!({ "expiresAt": format_timestamp(expires_at), "filter": self.describe_filter() }),
                ),
                Err(err) => self.voice.error(&err),
            },
            _ => self.voice.error(&ApiError::BadRequest(
                "unknown message: send {\"type\":\"ping\"}, \
                 {\"action\":\"subscribe\"|\"unsubscribe\",\"instances\":[...],\"events\":[...]} \
                 or {\"action\":\"refresh\",\"token\":\"...\"}"
                    .into(),
            )),
        }
    }

    /// The filter in a few bytes, whatever its size: which instances (all,
    /// all but some, or only some) and how many are listed, and the events.
    fn describe_filter(&self) -> serde_json::Value {
        let filter = self.feed.subscription().filter();
        let (scope, listed) = match &filter.instances {
            InstanceFilter::All { except } if except.is_empty() => ("all", 0),
            InstanceFilter::All { except } => ("all_except", except.len()),
            InstanceFilter::Only(names) => ("only", names.len()),
        };
        let events = filter
            .topics
            .unwrap_or_else(TopicSet::all)
            .intersect(filter.allowed);
        json!({
            "instances": { "scope": scope, "count": listed },
            "events": events.names(),
        })
    }

    /// Swaps in a fresh token before the current one expires. The new
    /// token's scope replaces the old one; what it may not see is dropped
    /// from the filter.
    fn refresh(&mut self, token: Option<&str>) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
        if !matches!(self.scope, Scope::Token(_)) {
            return Err(ApiError::BadRequest(
                "this connection was opened with a key, which does not expire".into(),
            ));
        }
        let token = token
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::BadRequest("'token' is required".into()))?;
        // The same path (and failure accounting) as a new connection.
        let scope = authenticate(&self.state, self.peer, Some(token), true)?;
        let Scope::Token(grant) = &scope else {
            return Err(ApiError::BadRequest(
                "refresh takes a token from POST /auth/token, not a key".into(),
            ));
        };
        let expires_at = grant.expires_at;
        let filter = narrow(self.feed.subscription().filter(), &scope);
        self.feed.subscription_mut().set_filter(filter);
        self.expiry = expiry(&scope);
        self.scope = scope;
        Ok(expires_at)
    }

    /// Applies a subscribe (add) or unsubscribe (remove) to the filter and
    /// says how many instances it changed. Named instances must exist and
    /// be visible to the credential, and the filter may not list more than
    /// `limits.max_filter_instances`.
    fn change_filter(&mut self, add: bool, message: &ClientMessage) -> Result<usize, ApiError> {
        let raw_names: Vec<&str> = message
            .instances
            .iter()
            .flatten()
            .chain(message.resource.iter())
            .map(String::as_str)
            .collect();
        let names_given = message.instances.is_some() || message.resource.is_some();
        if !names_given && message.events.is_none() {
            return Err(ApiError::BadRequest(
                "name 'instances' (or 'resource') and/or 'events' to change".into(),
            ));
        }
        let max = self.state.settings.limits.max_filter_instances;
        if raw_names.len() > max {
            return Err(too_many_instances(max));
        }
        let names = raw_names
            .iter()
            .map(|n| InstanceName::parse(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        // Scope before existence, so a key cannot probe other instances.
        if let Some(other) = names.iter().find(|n| !self.scope.can_see(n)) {
            return Err(ApiError::Forbidden(format!(
                "this credential may not watch instance '{other}'"
            )));
        }
        check_filter_instances(&self.state, &names)?;
        let mut filter = self.feed.subscription().filter().clone();
        let mut changed = 0;
        match (&mut filter.instances, add) {
            (InstanceFilter::All { except }, true) => names
                .iter()
                .for_each(|n| changed += usize::from(except.remove(n))),
            (InstanceFilter::All { except }, false) => names
                .iter()
                .for_each(|n| changed += usize::from(except.insert(n.clone()))),
            (InstanceFilter::Only(set), true) => names
                .iter()
                .for_each(|n| changed += usize::from(set.insert(n.clone()))),
            (InstanceFilter::Only(set), false) => names
                .iter()
                .for_each(|n| changed += usize::from(set.remove(n))),
        }
        let listed = match &filter.instances {
            InstanceFilter::All { except } => except.len(),
            InstanceFilter::Only(set) => set.len(),
        };
        if listed > max {
            return Err(too_many_instances(max));
        }
        if let Some(raw) = &message.events {
            let topics = TopicSet::parse_list(raw.iter().map(String::as_str))
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            filter.topics = match (filter.topics, add) {
                // No explicit choice means everything: adding changes nothing.
                (None, true) => None,
                (Some(current), true) => Some(current.union(topics)),
                (None, false) => Some(filter.allowed.without(topics)),
                (Some(current), false) => Some(current.without(topics)),
            };
        }
        self.feed.subscription_mut().set_filter(filter);
        Ok(changed)
    }
}
