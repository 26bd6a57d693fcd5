//! Credentials and what they may see.
//!
//! Two kinds of key exist: the global admin key, which sees everything, and
//! one key per instance, returned once when the instance is created and kept
//! only as a SHA-256 digest (see `domain::key`); the registry keeps those
//! digests, so deleting an instance revokes its key. Clients can also be
//! given short-lived scoped tokens ([`token`]) for streams. No key or token
//! ever appears in a log line or an error body.
//!
//! A credential names each instance by its identity (name and id), never by
//! its name alone: a token minted for an instance that was deleted does not
//! work for a later instance of the same name. Every credential also has a
//! [`Scope::credential`]: the key that stands behind it (a token's is the
//! key that minted it), which connection limits count by.

pub mod token;

use std::{fs, io::Write, path::Path, sync::Arc};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::{
    domain::{
        key::{digest, generate_key, KeyDigest},
        InstanceName, InstanceRef, TopicSet,
    },
    instance::Registry,
};

/// What a request or connection is allowed to see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The admin key: every instance, every topic, instance management.
    Admin,
    /// An instance's own key: that instance alone.
    Instance(InstanceRef),
    /// A scoped token: streams of the instances and events it names, until
    /// it expires.
    Token(token::Grant),
}

impl Scope {
    pub fn is_admin(&self) -> bool {
        matches!(self, Scope::Admin)
    }

    pub fn can_see(&self, name: &InstanceName) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Instance(own) => &own.name == name,
            Scope::Token(grant) => grant
                .instances
                .as_ref()
                .is_none_or(|set| set.contains_key(name)),
        }
    }

    /// The instances this credential is limited to; `None` means all.
    pub fn instances(&self) -> Option<std::collections::HashSet<InstanceName>> {
        self.identities()
            .map(|ids| ids.into_iter().map(|identity| identity.name).collect())
    }

    /// The instances this credential is limited to, by identity; `None`
    /// means all (the admin key and tokens it minted for every instance).
    pub fn identities(&self) -> Option<Vec<InstanceRef>> {
        match self {
            Scope::Admin => None,
            Scope::Instance(own) => Some(vec![own.clone()]),
            Scope::Token(grant) => grant.instances.as_ref().map(|map| {
                map.iter()
                    .map(|(name, id)| InstanceRef {
                        name: name.clone(),
                        id: *id,
                    })
                    .collect()
            }),
        }
    }

    /// The key that stands behind this credential: connections are counted
    /// per key, with the tokens a key minted counted as the key itself, so
    /// a token's subject (which its minter chose) decides nothing.
    pub fn credential(&self) -> String {
        match self {
            Scope::Admin => token::Minter::Admin.to_string(),
            Scope::Instance(own) => token::Minter::Instance(own.id).to_string(),
            Scope::Token(grant) => grant.minted_by.to_string(),
        }
    }

    /// The minter of tokens this credential mints.
    pub fn minter(&self) -> Option<token::Minter> {
        match self {
            Scope::Admin => Some(token::Minter::Admin),
            Scope::Instance(own) => Some(token::Minter::Instance(own.id)),
            Scope::Token(_) => None,
        }
    }

    /// When the credential stops being valid (tokens only).
    pub fn expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Scope::Token(grant) => Some(grant.expires_at),
            _ => None,
        }
    }

    /// The topics this credential may receive (instance lifecycle events are
    /// for the admin only).
    pub fn allowed_topics(&self) -> TopicSet {
        match self {
            Scope::Admin => TopicSet::all(),
            Scope::Instance(_) => TopicSet::all_instance_topics(),
            Scope::Token(grant) => grant.topics,
        }
    }

    /// Names for logs and connection limits: the scope, never the secret.
    pub fn describe(&self) -> String {
        match self {
            Scope::Admin => "admin".to_owned(),
            Scope::Instance(own) => format!("instance:{}", own.name),
            Scope::Token(grant) => format!("token:{}", grant.subject),
        }
    }
}

/// Where instance keys are found: the registry, which keeps each
/// instance's key digest exactly as long as the instance exists.
pub trait InstanceKeys: Send + Sync {
    fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceRef>;
    /// The id of the instance now called `name`, if there is one.
    fn id_of(&self, name: &InstanceName) -> Option<uuid::Uuid>;
}

impl InstanceKeys for Registry {
    fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceRef> {
        Registry::instance_for_key(self, digest)
    }

    fn id_of(&self, name: &InstanceName) -> Option<uuid::Uuid> {
        Registry::id_of(self, name)
    }
}

/// Every key the server accepts: the admin key's digest, and the instance
/// keys through the registry.
pub struct KeyRing {
    admin: KeyDigest,
    instances: Arc<dyn InstanceKeys>,
}

impl KeyRing {
    pub fn new(admin_key: &SecretString, instances: Arc<dyn InstanceKeys>) -> KeyRing {
        KeyRing {
            admin: digest(admin_key.expose_secret()),
            instances,
        }
    }

    /// The scope a presented key grants, if any.
    pub fn authenticate(&self, presented: &str) -> Option<Scope> {
        let presented = digest(presented);
        if bool::from(presented.ct_eq(&self.admin)) {
            return Some(Scope::Admin);
        }
        // The instance keys are looked up by digest; the lookup time depends
        // on the digest, which says nothing about the key.
        self.instances
            .instance_for_key(&presented)
            .map(Scope::Instance)
    }

    /// Whether every instance a token names still exists as the instance it
    /// was minted for (not deleted, not replaced by a namesake).
    pub fn still_holds(&self, grant: &token::Grant) -> bool {
        grant.instances.as_ref().is_none_or(|named| {
            named
                .iter()
                .all(|(name, id)| self.instances.id_of(name) == Some(*id))
        })
    }
}

/// Shortest configured admin key or token secret accepted: 32 characters,
/// as many as 128 random bits in hex. A generated one has 64.
pub const MIN_SECRET_LEN: usize = 32;

/// The admin key: the configured one, else the one stored in the data
/// directory, else a new one (stored with owner-only permissions). Returns
/// the key and whether it was generated just now, so it is printed once.
pub fn load_or_create_admin_key(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> anyhow::Result<(SecretString, bool)> {
    load_or_create_secret(configured, &data_dir.join("admin.key"), "auth.api_key")
}

/// The secret that signs tokens: configured, stored, or generated and
/// stored, so tokens stay valid across restarts.
pub fn load_or_create_jwt_secret(
    configured: Option<&SecretString>,
    data_dir: &Path,
) -> anyhow::Result<SecretString> {
    load_or_create_secret(configured, &data_dir.join("jwt.secret"), "auth.jwt_secret")
        .map(|(secret, _)| secret)
}

fn load_or_create_secret(
    configured: Option<&SecretString>,
    path: &Path,
    setting: &str,
) -> anyhow::Result<(SecretString, bool)> {
    if let Some(key) = configured {
        let length = key.expose_secret().trim().chars().count();
        if length < MIN_SECRET_LEN {
            anyhow::bail!(
                "{setting} is too weak: {length} characters, and at least {MIN_SECRET_LEN} are \
                 needed (generate one with `openssl rand -hex 32`, or leave it empty to have one \
                 generated and stored in {})",
                path.display()
            );
        }
        return Ok((key.clone(), false));
    }
    if path.exists() {
        let key = fs::read_to_string(path)
            .with_context(|| format!("while reading {}", path.display()))?;
        let key = key.trim();
        if key.is_empty() {
            anyhow::bail!(
                "{} is empty: delete it to generate a new one, or set {setting}",
                path.display()
            );
        }
        if key.chars().count() < MIN_SECRET_LEN {
            anyhow::bail!(
                "{} holds a key of {} characters, and at least {MIN_SECRET_LEN} are needed: \
                 delete it to generate a new one, or set {setting}",
                path.display(),
                key.chars().count()
            );
        }
        return Ok((SecretString::from(key.to_owned()), false));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .with_context(|| format!("while creating the data directory {}", dir.display()))?;
    }
    let key = generate_key();
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("while creating {}", path.display()))?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("while writing {}", path.display()))?;
    Ok((SecretString::from(key), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_admin_key_and_instance_keys_grant_their_scopes_and_nothing_else() {
        struct Keys(parking_lot::Mutex<std::collections::HashMap<KeyDigest, InstanceRef>>);
        impl InstanceKeys for Keys {
            fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceRef> {
                self.0.lock().get(digest).cloned()
            }
            fn id_of(&self, name: &InstanceName) -> Option<uuid::Uuid> {
                self.0
                    .lock()
                    .values()
                    .find(|identity| &identity.name == name)
                    .map(|identity| identity.id)
            }
        }
        let admin = generate_key();
        let keys = Arc::new(Keys(Default::default()));
        let ring = KeyRing::new(&SecretString::from(admin.clone()), keys.clone());
        let alpha_key = generate_key();
        let alpha = InstanceRef {
            name: InstanceName::parse("alpha").expect("valid"),
            id: uuid::Uuid::now_v7(),
        };
        keys.0.lock().insert(digest(&alpha_key), alpha.clone());

        assert_eq!(ring.authenticate(&admin), Some(Scope::Admin));
        assert_eq!(
            ring.authenticate(&alpha_key),
            Some(Scope::Instance(alpha.clone()))
        );
        assert_eq!(ring.authenticate("wrong"), None);
        assert_eq!(ring.authenticate(""), None);

        keys.0.lock().clear();
        assert_eq!(ring.authenticate(&alpha_key), None);
    }

    #[test]
    fn a_generated_admin_key_is_stored_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, generated) = load_or_create_admin_key(None, dir.path()).expect("create");
        assert!(generated);
        assert_eq!(first.expose_secret().len(), 64);
        let (second, generated) = load_or_create_admin_key(None, dir.path()).expect("reuse");
        assert!(!generated);
        assert_eq!(first.expose_secret(), second.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("admin.key"))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_configured_admin_key_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let configured = SecretString::from("configured-key-of-more-than-32-chars".to_owned());
        let (key, generated) =
            load_or_create_admin_key(Some(&configured), dir.path()).expect("load");
        assert!(!generated);
        assert_eq!(key.expose_secret(), "configured-key-of-more-than-32-chars");
        assert!(!dir.path().join("admin.key").exists());
    }

    #[test]
    fn short_configured_or_stored_secrets_are_refused_with_the_setting_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let weak = SecretString::from("changeme".to_owned());
        let err = load_or_create_admin_key(Some(&weak), dir.path()).expect_err("too short");
        let message = format!("{err:#}");
        assert!(message.contains("auth.api_key is too weak"), "{message}");
        assert!(message.contains("8 characters"), "{message}");
        assert!(!message.contains("changeme"), "the secret is never shown");
        let err = load_or_create_jwt_secret(Some(&weak), dir.path()).expect_err("too short");
        assert!(format!("{err:#}").contains("auth.jwt_secret is too weak"));

        std::fs::write(dir.path().join("admin.key"), "short").expect("write");
        let err = load_or_create_admin_key(None, dir.path()).expect_err("stored too short");
        assert!(format!("{err:#}").contains("admin.key"));
    }
}
