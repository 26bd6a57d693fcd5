//! The AT engine: one connection to one modem, whatever carries the bytes
//! (a serial port, a TCP serial bridge, a pseudo-terminal).
//!
//! Like mini-redis' `Connection`, [`AtConnection`] owns the byte stream and
//! all framing ([`frame`]); the driver above it speaks in commands and
//! [`Urc`]s. It keeps one command in flight at a time (`&mut self` makes a
//! second one impossible), each with its own deadline. Unsolicited result
//! codes are recognized on every line ([`urc::classify`]), including in the
//! middle of a response, and queued for the driver; a two-line URC (`+CMT`,
//! `+CDS`) takes the next line as its PDU wherever it falls. Nothing the
//! modem sends can make it panic: the worst a bad line does is end up as
//! information text that no parser accepts.

pub mod frame;
pub mod parse;
pub mod urc;

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    time::Instant,
};

pub use frame::{Frame, Framer};
pub use urc::{classify, Final, Line, ModemError, Network, TwoLine, Urc};

/// Anything bytes to and from a modem can travel over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Transport for T {}

/// Ctrl-Z: ends the PDU after the `> ` prompt.
const CTRL_Z: u8 = 0x1A;
/// ESC: abandons a prompt without sending.
const ESC: u8 = 0x1B;
/// After a timeout, input is drained until the modem has been quiet this
/// long, so a late answer to the old command cannot pass for the next one's.
const QUIET: Duration = Duration::from_millis(150);
/// URCs kept while nobody asks for them; a modem that floods more than this
/// loses the oldest (storage is re-listed, so stored messages and reports
/// are found again; a direct `+CMT`/`+CDS` among them is lost), which is
/// counted in [`urcs_dropped`] and logged.
const MAX_QUEUED_URCS: usize = 256;

/// The longest USSD text collected over several lines; a network's menu
/// is at most 182 characters, however the modem prints it.
const MAX_USSD_TEXT: usize = 4096;

/// URCs dropped by every connection of this process, for `/metrics`.
static URCS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many URCs the queues of every modem connection dropped so far.
pub fn urcs_dropped() -> u64 {
    URCS_DROPPED.load(Ordering::Relaxed)
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    #[error("the modem answered {0}")]
    Rejected(ModemError),
    #[error("no answer to {command} within {after:?}")]
    Timeout { command: String, after: Duration },
    #[error("the modem connection closed")]
    Closed,
    #[error("modem i/o failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The information lines of a successful command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub lines: Vec<String>,
}

impl Response {
    /// The rest of the first line starting with `prefix`.
    pub fn info(&self, prefix: &str) -> Option<&str> {
        parse::info(&self.lines, prefix)
    }
}

/// One modem, framed.
pub struct AtConnection {
    io: Box<dyn Transport>,
    framer: Framer,
    /// URCs seen while a command ran (or read ahead), oldest first.
    urcs: VecDeque<Urc>,
    /// Set after `+CMT`/`+CDS`: the next line is that URC's PDU.
    two_line: Option<TwoLine>,
    /// A `+CUSD` whose quoted text spans lines (a menu with line breaks),
    /// collected until its closing quote.
    ussd_lines: Option<String>,
    read_buf: Vec<u8>,
    /// URCs this connection dropped because its queue was full.
    dropped: u64,
}

/// What the engine was waiting for when a frame arrived.
enum Outcome {
    Prompt,
    Final(Final),
}

impl AtConnection {
    pub fn new(io: Box<dyn Transport>) -> AtConnection {
        AtConnection {
            io,
            framer: Framer::new(),
            urcs: VecDeque::new(),
            two_line: None,
            ussd_lines: None,
            read_buf: vec![0; 4096],
            dropped: 0,
        }
    }

    /// Runs `command` (without the trailing CR) and collects its answer.
    /// `prefix` names its information lines (`"+CSQ:"`), so an answer that
    /// looks like a URC is kept for the command.
    pub async fn command(
        &mut self,
        command: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Response, AtError> {
        self.write(format!("{command}\r").as_bytes()).await?;
        let deadline = Instant::now() + timeout;
        let mut response = Response::default();
        match self.until_outcome(prefix, &mut response, deadline).await {
            Ok(Outcome::Final(Final::Ok)) => Ok(response),
            Ok(Outcome::Final(Final::Failed(err))) => Err(AtError::Rejected(err)),
            // A stray prompt (say after line noise) is answered with ESC,
            // which cancels it, and the command goes on waiting.
            Ok(Outcome::Prompt) => {
                self.write(&[ESC]).await?;
                match self.until_final(prefix, &mut response, deadline).await {
                    Ok(Final::Ok) => Ok(response),
                    Ok(Final::Failed(err)) => Err(AtError::Rejected(err)),
                    Err(err) => Err(self.timed_out(err, command, timeout)),
                }
            }
            Err(err) => Err(self.timed_out(err, command, timeout)),
        }
    }

    /// Runs a command that asks for a body after the `> ` prompt
    /// (`AT+CMGS=<length>`), sends `body` and Ctrl-Z, and collects the answer.
    pub async fn command_with_body(
        &mut self,
        command: &str,
        body: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Response, AtError> {
        self.write(format!("{command}\r").as_bytes()).await?;
        let deadline = Instant::now() + timeout;
        let mut response = Response::default();
        match self.until_outcome(prefix, &mut response, deadline).await {
            Ok(Outcome::Prompt) => {}
            // The modem may still sit at a prompt this answer was not
            // really for (line noise that read "OK"): ESC cancels it.
            Ok(Outcome::Final(Final::Failed(err))) => {
                self.write(&[ESC]).await?;
                return Err(AtError::Rejected(err));
            }
            Ok(Outcome::Final(Final::Ok)) => {
                self.write(&[ESC]).await?;
                return Err(AtError::Rejected(ModemError::Cms {
                    code: None,
                    text: "OK without a prompt".into(),
                }));
            }
            Err(err) => return Err(self.timed_out(err, command, timeout)),
        }
        let mut bytes = body.as_bytes().to_vec();
        bytes.push(CTRL_Z);
        self.write(&bytes).await?;
        match self.until_final(prefix, &mut response, deadline).await {
            Ok(Final::Ok) => Ok(response),
            Ok(Final::Failed(err)) => Err(AtError::Rejected(err)),
            Err(err) => Err(self.timed_out(err, command, timeout)),
        }
    }

    /// The next URC. Cancel-safe: every byte read is framed before the
    /// next await, so dropping this future loses nothing.
    pub async fn next_urc(&mut self) -> Result<Urc, AtError> {
        loop {
            if let Some(urc) = self.urcs.pop_front() {
                return Ok(urc);
            }
            while let Some(frame) = self.framer.next_frame() {
                // A final code or prompt with no command in flight is a late
                // answer to one that timed out: nothing waits for it.
                if let Some(outcome) = self.route(frame, "", None) {
                    let what = match outcome {
                        Outcome::Prompt => "a prompt".to_owned(),
                        Outcome::Final(f) => format!("{f:?}"),
                    };
                    tracing::debug!(%what, "ignoring an answer nobody waits for");
                }
                if let Some(urc) = self.urcs.pop_front() {
                    return Ok(urc);
                }
            }
            self.read_more().await?;
        }
    }

    /// A URC already received, if any (no waiting).
    pub fn take_urc(&mut self) -> Option<Urc> {
        self.urcs.pop_front()
    }

    /// Re-synchronizes after a timeout: sends ESC and `AT`, waits for an `OK`, then
    /// drains until the line has been quiet for a moment. Fails with
    /// `Timeout` when the modem does not answer at all.
    pub async fn resync(&mut self, timeout: Duration) -> Result<(), AtError> {
        // ESC first, in case the modem waits at a prompt for a PDU (it
        // would take the `AT` for part of it).
        self.write(b"\x1b\rAT\r").await?;
        let deadline = Instant::now() + timeout;
        let mut scratch = Response::default();
        loop {
            match self.until_final("", &mut scratch, deadline).await {
                Ok(Final::Ok) => break,
                Ok(Final::Failed(_)) => continue,
                Err(err) => return Err(self.timed_out(err, "AT", timeout)),
            }
        }
        loop {
            let quiet_until = Instant::now() + QUIET;
            match self.until_final("", &mut scratch, quiet_until).await {
                Ok(_) => continue,
                Err(AtError::Timeout { .. }) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }

    /// Writes raw bytes (commands end with CR; the caller adds it).
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), AtError> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn until_final(
        &mut self,
        prefix: &str,
        response: &mut Response,
        deadline: Instant,
    ) -> Result<Final, AtError> {
        loop {
            match self.until_outcome(prefix, response, deadline).await? {
                Outcome::Final(done) => return Ok(done),
                Outcome::Prompt => continue,
            }
        }
    }

    async fn until_outcome(
        &mut self,
        prefix: &str,
        response: &mut Response,
        deadline: Instant,
    ) -> Result<Outcome, AtError> {
        loop {
            while let Some(frame) = self.framer.next_frame() {
                if let Some(outcome) = self.route(frame, prefix, Some(response)) {
                    return Ok(outcome);
                }
            }
            match tokio::time::timeout_at(deadline, self.read_more()).await {
                Ok(read) => read?,
                Err(_) => {
                    return Err(AtError::Timeout {
                        command: String::new(),
                        after: Duration::ZERO,
                    })
                }
            }
        }
    }

    /// Files one frame: a URC goes to the queue, text to the response, and
    /// a final code or prompt is returned to whoever waits for it.
    fn route(
        &mut self,
        frame: Frame,
        prefix: &str,
        response: Option<&mut Response>,
    ) -> Option<Outcome> {
        let line = match frame {
            Frame::Prompt => return Some(Outcome::Prompt),
            Frame::Line(line) => line,
        };
        let line = self.join_ussd(line)?;
        if let Some(kind) = self.two_line.take() {
            match classify(&line, "") {
                // The PDU line never came; the header was noise.
                Line::Final(_) | Line::Urc(_) | Line::UrcHeader(_) => {}
                Line::Text => {
                    self.queue(kind.complete(line));
                    return None;
                }
            }
        }
        match classify(&line, prefix) {
            Line::Final(done) => Some(Outcome::Final(done)),
            Line::Urc(urc) => {
                self.queue(urc);
                None
            }
            Line::UrcHeader(kind) => {
                self.two_line = Some(kind);
                None
            }
            Line::Text => {
                match response {
                    Some(response) => response.lines.push(line),
                    None => {
                        tracing::debug!(line = %crate::domain::truncate(&line, 80), "unsolicited text ignored")
                    }
                }
                None
            }
        }
    }

    /// Joins the lines of a `+CUSD` whose text has line breaks: a line that
    /// opens its quote without closing it starts one, the line holding the
    /// closing quote ends it. `None` while lines are being collected.
    fn join_ussd(&mut self, line: String) -> Option<String> {
        if let Some(mut joined) = self.ussd_lines.take() {
            // A final code means the text never closed: what came is kept
            // as it is, and the final code still ends its command.
            if matches!(classify(&line, ""), Line::Final(_)) {
                self.queue_unclosed_ussd(joined);
                return Some(line);
            }
            joined.push('\n');
            joined.push_str(&line);
            if line.contains('"') {
                return Some(joined);
            }
            if joined.len() > MAX_USSD_TEXT {
                self.queue_unclosed_ussd(joined);
                return None;
            }
            self.ussd_lines = Some(joined);
            return None;
        }
        if line.starts_with("+CUSD:") && line.matches('"').count() == 1 {
            self.ussd_lines = Some(line);
            return None;
        }
        Some(line)
    }

    /// A multi-line `+CUSD` that never closed its quote: it is queued with
    /// the quote closed, so the text that came is not lost.
    fn queue_unclosed_ussd(&mut self, mut joined: String) {
        tracing::debug!("a USSD text never closed its quote; taking what came");
        joined.push('"');
        if let Line::Urc(urc) = classify(&joined, "") {
            self.queue(urc);
        }
    }

    fn queue(&mut self, urc: Urc) {
        if self.urcs.len() >= MAX_QUEUED_URCS {
            if let Some(lost) = self.urcs.pop_front() {
                self.dropped += 1;
                URCS_DROPPED.fetch_add(1, Ordering::Relaxed);
                // Logged at the first drop and then at each power of two, so
                // a flood is visible without flooding the log.
                if self.dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped,
                        oldest = ?lost,
                        "the modem sends unsolicited results faster than they are handled; \
                         dropping the oldest (stored messages are found again by listing storage)"
                    );
                }
            }
        }
        self.urcs.push_back(urc);
    }

    /// URCs this connection dropped because its queue was full.
    pub fn dropped_urcs(&self) -> u64 {
        self.dropped
    }

    async fn read_more(&mut self) -> Result<(), AtError> {
        let n = self.io.read(&mut self.read_buf).await?;
        if n == 0 {
            return Err(AtError::Closed);
        }
        self.framer.push(&self.read_buf[..n]);
        Ok(())
    }

    fn timed_out(&self, err: AtError, command: &str, timeout: Duration) -> AtError {
        match err {
            AtError::Timeout { .. } => AtError::Timeout {
                command: command.to_owned(),
                after: timeout,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncBufReadExt, BufReader, DuplexStream};

    /// A connection and the far end of its wire.
    fn pair() -> (AtConnection, BufReader<DuplexStream>) {
        let (ours, theirs) = duplex(4096);
        (AtConnection::new(Box::new(ours)), BufReader::new(theirs))
    }

    async fn read_command(modem: &mut BufReader<DuplexStream>) -> String {
        let mut buf = Vec::new();
        modem.read_until(b'\r', &mut buf).await.expect("read");
        String::from_utf8_lossy(&buf).trim().to_owned()
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_response_is_collected_and_urcs_inside_it_are_queued() {
        let (mut at, mut modem) = pair();
        let answer = tokio::spawn(async move {
            assert_eq!(read_command(&mut modem).await, "AT+CSQ");
            modem
                .get_mut()
                .write_all(
                    b"\r\n+CMTI: \"SM\",2\r\n+CSQ: 20,99\r\n+CMT: ,22\r\n0791AB\r\n\r\nOK\r\n",
                )
                .await
                .expect("write");
            modem
        });
        let response = at.command("AT+CSQ", "+CSQ:", T).await.expect("ok");
        assert_eq!(response.lines, ["+CSQ: 20,99"]);
        assert_eq!(
            at.next_urc().await.expect("urc"),
            Urc::NewMessage {
                storage: "SM".into(),
                index: 2
            }
        );
        assert_eq!(
            at.next_urc().await.expect("urc"),
            Urc::Message {
                pdu: "0791AB".into()
            }
        );
        answer.await.expect("modem");
    }

    #[tokio::test]
    async fn errors_and_timeouts_are_reported() {
        let (mut at, mut modem) = pair();
        let answer = tokio::spawn(async move {
            read_command(&mut modem).await;
            modem
                .get_mut()
                .write_all(b"\r\n+CMS ERROR: 500\r\n")
                .await
                .expect("write");
            // The second command gets no answer at all.
            read_command(&mut modem).await;
            modem
        });
        match at.command("AT+CMGD=1", "", T).await {
            Err(AtError::Rejected(ModemError::Cms {
                code: Some(500), ..
            })) => {}
            other => panic!("{other:?}"),
        }
        match at
            .command("AT+CSQ", "+CSQ:", Duration::from_millis(50))
            .await
        {
            Err(AtError::Timeout { command, .. }) => assert_eq!(command, "AT+CSQ"),
            other => panic!("{other:?}"),
        }
        let _modem = answer.await.expect("modem");
    }

    #[tokio::test]
    async fn a_body_is_sent_after_the_prompt() {
        let (mut at, mut modem) = pair();
        let answer = tokio::spawn(async move {
            assert_eq!(read_command(&mut modem).await, "AT+CMGS=10");
            modem.get_mut().write_all(b"\r\n> ").await.expect("write");
            let mut body = Vec::new();
            modem.read_until(CTRL_Z, &mut body).await.expect("body");
            assert_eq!(body, b"00AABB\x1a");
            modem
                .get_mut()
                .write_all(b"\r\n+CDS: 25\r\n07ABCD\r\n+CMGS: 7\r\n\r\nOK\r\n")
                .await
                .expect("write");
            modem
        });
        let response = at
            .command_with_body("AT+CMGS=10", "00AABB", "+CMGS:", T)
            .await
            .expect("sent");
        assert_eq!(response.info("+CMGS:"), Some("7"));
        assert_eq!(
            at.take_urc(),
            Some(Urc::Report {
                pdu: "07ABCD".into()
            })
        );
        answer.await.expect("modem");
    }

    #[tokio::test]
    async fn a_urc_flood_drops_the_oldest_and_counts_every_drop() {
        let (mut at, mut modem) = pair();
        let flood = 300;
        let before = urcs_dropped();
        let answer = tokio::spawn(async move {
            assert_eq!(read_command(&mut modem).await, "AT+CSQ");
            let mut lines = String::new();
            for index in 0..flood {
                lines.push_str(&format!("\r\n+CMTI: \"SM\",{index}\r\n"));
            }
            lines.push_str("\r\n+CSQ: 20,99\r\n\r\nOK\r\n");
            modem
                .get_mut()
                .write_all(lines.as_bytes())
                .await
                .expect("write");
            modem
        });
        at.command("AT+CSQ", "+CSQ:", T).await.expect("answered");
        let _modem = answer.await.expect("modem");
        let kept = flood - MAX_QUEUED_URCS as u32;
        assert_eq!(at.dropped_urcs(), u64::from(kept));
        assert!(urcs_dropped() >= before + u64::from(kept));
        // What is left is the newest, oldest first.
        assert_eq!(
            at.take_urc(),
            Some(Urc::NewMessage {
                storage: "SM".into(),
                index: kept
            })
        );
    }

    #[tokio::test]
    async fn a_ussd_menu_whose_text_spans_lines_is_one_urc() {
        let (mut at, mut modem) = pair();
        let answer = tokio::spawn(async move {
            assert_eq!(read_command(&mut modem).await, "AT+CUSD=1,\"*101#\",15");
            modem
                .get_mut()
                .write_all(b"\r\nOK\r\n\r\n+CUSD: 1,\"Menu\r\n1 Balance\r\n\r\n2 Bundles\",15\r\n")
                .await
                .expect("write");
            modem
        });
        at.command("AT+CUSD=1,\"*101#\",15", "", T)
            .await
            .expect("ok");
        assert_eq!(
            at.next_urc().await.expect("urc"),
            Urc::Ussd {
                m: 1,
                text: Some("Menu\n1 Balance\n2 Bundles".into()),
                dcs: Some(15)
            }
        );
        let _modem = answer.await.expect("modem");
    }

    #[tokio::test]
    async fn a_closed_wire_is_an_error_not_a_hang() {
        let (mut at, modem) = pair();
        drop(modem);
        assert!(matches!(
            at.next_urc().await,
            Err(AtError::Closed | AtError::Io(_))
        ));
    }
}
