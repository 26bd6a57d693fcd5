//! The spool: direct PDUs (`+CMT` messages, `+CDS` reports) that could not
//! be committed yet, kept on disk until they are.
//!
//! A stored message waits in modem storage until its event is committed;
//! a direct one exists nowhere but in this process once it is acknowledged
//! (and a modem without `+CSMS` service 1 needs no acknowledgement at all:
//! the network forgets it as soon as it was handed over). So before a
//! direct PDU that could not be committed (the database is down) is
//! acknowledged, it is written here and synced; the driver commits what
//! the spool holds as soon as it can, also after a restart, and only then
//! drops it from the spool. A crash between the sync and the commit means
//! the PDU is committed later; one seen twice is recognized (messages by
//! their digest, reports by their part no longer waiting).
//!
//! The file is one hex PDU per line, rewritten whole (to a temporary file,
//! synced, renamed) when entries leave it. It is bounded: a full spool
//! refuses more, and the driver then leaves the PDU unacknowledged, so a
//! network that retries keeps it.

use std::{
    collections::VecDeque,
    fs,
    io::{self, Write},
    path::PathBuf,
};

/// PDUs the spool holds at most (a PDU is at most 350 hex characters).
pub(super) const MAX_SPOOLED: usize = 10_000;

/// Direct PDUs waiting for their commit, oldest first.
pub(super) struct Spool {
    /// The file; `None` keeps them in memory only (no data directory).
    path: Option<PathBuf>,
    entries: VecDeque<String>,
}

impl Spool {
    /// Opens the spool and reads what a previous run left in it.
    pub(super) fn open(path: Option<PathBuf>) -> io::Result<Spool> {
        let mut entries = VecDeque::new();
        if let Some(path) = &path {
            match fs::read_to_string(path) {
                Ok(text) => {
                    entries.extend(
                        text.lines()
                            .map(str::trim)
                            .filter(|line| !line.is_empty() && is_hex(line))
                            .map(str::to_owned),
                    );
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        Ok(Spool { path, entries })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keeps a PDU, on disk and synced before this returns `Ok`.
    pub(super) fn push(&mut self, pdu: &str) -> io::Result<()> {
        let pdu = pdu.trim();
        if !is_hex(pdu) {
            // Not a PDU; nothing that could be committed later either.
            return Err(io::Error::new(io::ErrorKind::InvalidData, "not a hex PDU"));
        }
        if self.entries.len() >= MAX_SPOOLED {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("the spool holds its maximum of {MAX_SPOOLED} PDUs"),
            ));
        }
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                create_private_dir(dir)?;
            }
            let mut file = private_options().append(true).open(path)?;
            file.write_all(format!("{pdu}\n").as_bytes())?;
            file.sync_all()?;
        }
        self.entries.push_back(pdu.to_owned());
        Ok(())
    }

    /// The oldest PDU waiting.
    pub(super) fn front(&self) -> Option<&str> {
        self.entries.front().map(String::as_str)
    }

    /// Drops the oldest PDU (it was committed); [`Spool::persist`] writes
    /// the change down.
    pub(super) fn pop_front(&mut self) {
        self.entries.pop_front();
    }

    /// Rewrites the file with what is still waiting (removes it when
    /// nothing is). Until this succeeds, the file may still list committed
    /// PDUs, which are recognized when they are committed again.
    pub(super) fn persist(&self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.entries.is_empty() {
            return match fs::remove_file(path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
                _ => Ok(()),
            };
        }
        let temporary = path.with_extension("tmp");
        {
            let mut file = private_options().truncate(true).open(&temporary)?;
            let mut text = String::with_capacity(self.entries.iter().map(|e| e.len() + 1).sum());
            for entry in &self.entries {
                text.push_str(entry);
                text.push('\n');
            }
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        fs::rename(&temporary, path)
    }
}

fn is_hex(line: &str) -> bool {
    !line.is_empty() && line.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Creates files readable by the owner only: PDUs are people's messages.
fn private_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn create_private_dir(dir: &std::path::Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_pdus_survive_a_reopen_until_they_are_persisted_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spool").join("instance.pdus");
        let mut spool = Spool::open(Some(path.clone())).expect("open");
        assert!(spool.is_empty());
        spool.push("0791AA").expect("push");
        spool.push("0791BB\n").expect("push");
        assert!(spool.push("not hex").is_err());

        // A restart finds both, in order.
        let mut again = Spool::open(Some(path.clone())).expect("reopen");
        assert_eq!(again.len(), 2);
        assert_eq!(again.front(), Some("0791AA"));
        again.pop_front();
        again.persist().expect("persist");
        let left = Spool::open(Some(path.clone())).expect("reopen");
        assert_eq!(left.front(), Some("0791BB"));
        assert_eq!(left.len(), 1);

        again.pop_front();
        again.persist().expect("persist");
        assert!(!path.exists(), "an empty spool leaves no file");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mut spool = Spool::open(Some(path.clone())).expect("open");
            spool.push("00").expect("push");
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_full_spool_refuses_more() {
        let mut spool = Spool::open(None).expect("in memory");
        for _ in 0..MAX_SPOOLED {
            spool.push("00").expect("room");
        }
        let err = spool.push("00").expect_err("full");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }
}
