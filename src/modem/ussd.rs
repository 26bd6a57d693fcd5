//! USSD (`*100#`): what the API asks a driver for, and what it answers.
//!
//! A session starts with a code; while the network answers with a menu
//! (`+CUSD: 1`) the session stays open for a reply; it ends when the
//! network says so, when it is cancelled, or when no answer comes in time.
//! Each exchange is committed as a `ussd` event by the driver before the
//! API is answered.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::{
    event::data::{UssdData, UssdStatus},
    store::StoreError,
};

/// What to do in the instance's USSD session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UssdRequest {
    /// Start a session with a code (an open one is closed first).
    Code(String),
    /// Answer the menu of the open session.
    Reply(String),
    /// Close the open session.
    Cancel,
}

impl UssdRequest {
    /// What is sent to the network, for the event.
    pub fn sent(&self) -> Option<String> {
        match self {
            UssdRequest::Code(text) | UssdRequest::Reply(text) => Some(text.clone()),
            UssdRequest::Cancel => None,
        }
    }
}

/// The network's answer, as committed in the `ussd` event.
pub type UssdAnswer = UssdData;

/// Why a USSD request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UssdError {
    /// The request does not fit the session's state (a reply with no menu
    /// open, a second request while one waits).
    #[error("{0}")]
    Conflict(String),
    /// The network (or the modem) did not answer within the deadline; the
    /// session was closed.
    #[error("no USSD answer within {0:?}; the session was closed")]
    Timeout(Duration),
    /// There is no session to reply to or cancel.
    #[error("{0}")]
    NoSession(String),
    /// The modem refused the request.
    #[error("the modem refused the USSD request: {0}")]
    Refused(String),
    /// The answer came but its event could not be committed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<super::DriverError> for UssdError {
    fn from(err: super::DriverError) -> Self {
        match err {
            super::DriverError::Store(err) => UssdError::Store(err),
            super::DriverError::Modem(why) => UssdError::Refused(why),
        }
    }
}

/// Where the driver answers a USSD request.
pub type UssdReply = oneshot::Sender<Result<UssdAnswer, UssdError>>;

/// Builds the event of an exchange.
pub fn event(
    session: &str,
    request: Option<String>,
    status: UssdStatus,
    text: Option<String>,
) -> UssdData {
    UssdData {
        id: session.to_owned(),
        request,
        status,
        text,
        timestamp: chrono::Utc::now().timestamp(),
    }
}

/// Where a caller is in the demo network's menu.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DemoMenu {
    /// No session.
    #[default]
    Idle,
    /// The main menu (`*101#`) is shown.
    Main,
    /// The bundles menu is shown.
    Bundles,
}

/// The balance the demo network reports.
pub const DEMO_BALANCE: &str = "Your balance is 12.50 EUR.";

/// The USSD service of the simulated networks (the built-in virtual modem
/// and `modem-sim`): `*100#` answers the balance; `*101#` opens a menu
/// (`1` balance, `2` bundles, a second menu, `0` exit). Returns `<m>` and
/// the text as `+CUSD` would; `None`: the code is not supported (`+CUSD: 4`).
pub fn demo_network(menu: &mut DemoMenu, input: &str, is_code: bool) -> Option<(u8, String)> {
    if is_code {
        *menu = DemoMenu::Idle;
    }
    let (next, m, text) = match (*menu, input.trim()) {
        (DemoMenu::Idle, "*100#") => (DemoMenu::Idle, 0, DEMO_BALANCE),
        (DemoMenu::Idle, "*101#") | (DemoMenu::Main, "9") => {
            (DemoMenu::Main, 1, "Main menu\n1 Balance\n2 Bundles\n0 Exit")
        }
        (DemoMenu::Idle, _) => return None,
        (DemoMenu::Main, "1") => (DemoMenu::Idle, 0, DEMO_BALANCE),
        (DemoMenu::Main, "2") => (DemoMenu::Bundles, 1, "Bundles\n1 Day pass\n2 Week pass"),
        (DemoMenu::Main, "0") => (DemoMenu::Idle, 2, "Goodbye."),
        (DemoMenu::Main, _) => (DemoMenu::Main, 1, "Choose 1, 2 or 0"),
        (DemoMenu::Bundles, "1") => (DemoMenu::Idle, 0, "Day pass activated."),
        (DemoMenu::Bundles, "2") => (DemoMenu::Idle, 0, "Week pass activated."),
        (DemoMenu::Bundles, _) => (DemoMenu::Bundles, 1, "Choose 1 or 2"),
    };
    *menu = next;
    Some((m, text.to_owned()))
}

/// The built-in virtual modem's USSD session: the demo network answers at
/// once, so nothing ever waits.
#[derive(Debug, Default)]
pub struct VirtualSession {
    /// The open session's id and menu.
    open: Option<(String, DemoMenu)>,
}

impl VirtualSession {
    /// Answers a request, committing its `ussd` event first.
    pub async fn answer(
        &mut self,
        ctx: &super::ActorContext,
        request: UssdRequest,
        reply: UssdReply,
    ) {
        use crate::event::data::Payload;
        let (id, mut menu) = match (&request, self.open.take()) {
            (UssdRequest::Code(_), _) => (uuid::Uuid::now_v7().to_string(), DemoMenu::Idle),
            (_, Some(open)) => open,
            (UssdRequest::Reply(_), None) => {
                let _ = reply.send(Err(UssdError::NoSession(
                    "no USSD menu is open: start a session with a code".into(),
                )));
                return;
            }
            (UssdRequest::Cancel, None) => {
                let _ = reply.send(Err(UssdError::NoSession("no USSD session is open".into())));
                return;
            }
        };
        let (status, text) = match &request {
            UssdRequest::Cancel => (UssdStatus::Cancelled, None),
            UssdRequest::Code(input) | UssdRequest::Reply(input) => {
                match demo_network(&mut menu, input, matches!(request, UssdRequest::Code(_))) {
                    Some((m, text)) => (
                        UssdStatus::from_cusd(m).unwrap_or(UssdStatus::Done),
                        Some(text),
                    ),
                    None => (UssdStatus::Unsupported, None),
                }
            }
        };
        let data = event(&id, request.sent(), status, text);
        let job = crate::store::Job {
            events: vec![data.clone().into_event(&ctx.instance)],
            changes: Vec::new(),
            fence: None,
        };
        let answer = match ctx.append(job).await {
            Ok(()) => Ok(data),
            Err(err) => Err(UssdError::from(err)),
        };
        if answer.is_ok() && status.is_open() {
            self.open = Some((id, menu));
        }
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_menu_goes_two_levels_deep_and_back_out() {
        let mut menu = DemoMenu::default();
        assert_eq!(
            demo_network(&mut menu, "*100#", true),
            Some((0, DEMO_BALANCE.into()))
        );
        assert_eq!(demo_network(&mut menu, "*123#", true), None);
        let (m, text) = demo_network(&mut menu, "*101#", true).expect("menu");
        assert_eq!((m, text.lines().next()), (1, Some("Main menu")));
        assert_eq!(demo_network(&mut menu, "7", false).map(|a| a.0), Some(1));
        assert_eq!(demo_network(&mut menu, "2", false).map(|a| a.0), Some(1));
        assert_eq!(menu, DemoMenu::Bundles);
        assert_eq!(
            demo_network(&mut menu, "2", false),
            Some((0, "Week pass activated.".into()))
        );
        assert_eq!(menu, DemoMenu::Idle);
        demo_network(&mut menu, "*101#", true);
        assert_eq!(demo_network(&mut menu, "0", false).map(|a| a.0), Some(2));
    }
}
