//! Credentials and what they may see.
//!
//! Two kinds of key exist: the global admin key, which sees everything, and
//! one key per instance, returned once when the instance is created and kept
//! only as a SHA-256 digest (see `domain::key`); the registry keeps those
//! digests, so deleting an instance revokes its key. Clients can also be
//! given short-lived scoped tokens ([`token`]) for streams. No key or token ever appears in a log line or an
//! error body.

pub mod token;

use std::{fs, io::Write, path::Path, sync::Arc};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::{
    domain::{
        key::{digest, generate_key, KeyDigest},
        InstanceName, TopicSet,
    },
    instance::Registry,
};

/// What a request or connection is allowed to see and do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The admin key: every instance, every topic, instance management.
    Admin,
    /// An instance's own key: that instance alone.
    Instance(InstanceName),
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
            Scope::Instance(own) => own == name,
            Scope::Token(grant) => grant
                .instances
                .as_ref()
                .is_none_or(|set| set.contains(name)),
        }
    }

    /// The instances this credential is limited to; `None` means all.
    pub fn instances(&self) -> Option<std::collections::HashSet<InstanceName>> {
        match self {
            Scope::Admin => None,
            Scope::Instance(own) => Some(std::collections::HashSet::from([own.clone()])),
            Scope::Token(grant) => grant.instances.clone(),
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
            Scope::Instance(name) => format!("instance:{name}"),
            Scope::Token(grant) => format!("token:{}", grant.subject),
        }
    }
}

/// Where instance keys are found: the registry, which keeps each
/// instance's key digest exactly as long as the instance exists.
pub trait InstanceKeys: Send + Sync {
    fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceName>;
}

impl InstanceKeys for Registry {
    fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceName> {
        Registry::instance_for_key(self, digest)
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
}

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
        struct Keys(parking_lot::Mutex<std::collections::HashMap<KeyDigest, InstanceName>>);
        impl InstanceKeys for Keys {
            fn instance_for_key(&self, digest: &KeyDigest) -> Option<InstanceName> {
                self.0.lock().get(digest).cloned()
            }
        }
        let admin = generate_key();
        let keys = Arc::new(Keys(Default::default()));
        let ring = KeyRing::new(&SecretString::from(admin.clone()), keys.clone());
        let alpha_key = generate_key();
        let alpha = InstanceName::parse("alpha").expect("valid");
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
        let configured = SecretString::from("configured-key".to_owned());
        let (key, generated) =
            load_or_create_admin_key(Some(&configured), dir.path()).expect("load");
        assert!(!generated);
        assert_eq!(key.expose_secret(), "configured-key");
        assert!(!dir.path().join("admin.key").exists());
    }
}
