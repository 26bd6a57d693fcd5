//! Instance names: parsed once at the edge, trusted everywhere inside.

use std::{borrow::Borrow, fmt, sync::Arc};

use serde::{Deserialize, Serialize};

/// A valid instance name: `^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`.
///
/// Parsed once at the edge; everything inside the server can trust it. Cheap
/// to clone because every event carries one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(Arc<str>);

/// Why a string is not an instance name.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid instance name '{shown}': {why}")]
pub struct InvalidInstanceName {
    shown: String,
    why: &'static str,
}

impl InstanceName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<InstanceName, InvalidInstanceName> {
        let invalid = |why| InvalidInstanceName {
            // Echo at most a short prefix so a huge input does not end up in
            // an error body or a log line.
            shown: s.chars().take(80).collect(),
            why,
        };
        let mut chars = s.chars();
        match chars.next() {
            None => return Err(invalid("it is empty")),
            Some(c) if !c.is_ascii_alphanumeric() => {
                return Err(invalid("it must start with a letter or a digit"))
            }
            Some(_) => {}
        }
        if s.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than 64 characters"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(invalid(
                "only letters, digits, '_' and '-' are allowed (A-Z a-z 0-9 _ -)",
            ));
        }
        Ok(InstanceName(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Borrow<str> for InstanceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Serialize for InstanceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for InstanceName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        InstanceName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An instance as a credential names it: its name, and the id that tells
/// it apart from a later instance created with the same name. A key or a
/// token holds both, so deleting an instance revokes them even when the
/// name is taken again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceRef {
    pub name: InstanceName,
    pub id: uuid::Uuid,
}

impl fmt::Display for InstanceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_parse() {
        for name in ["a", "Alpha-1", "9_lives", &"x".repeat(64)] {
            assert_eq!(InstanceName::parse(name).expect(name).as_str(), name);
        }
    }

    #[test]
    fn invalid_names_are_refused_with_a_reason() {
        for (name, why) in [
            ("", "empty"),
            ("-lead", "start with"),
            ("_lead", "start with"),
            ("has space", "only letters"),
            ("dot.name", "only letters"),
            ("ünïcode", "start with"),
            ("aé", "only letters"),
            (&"x".repeat(65), "longer than 64"),
        ] {
            let err = InstanceName::parse(name).expect_err(name);
            assert!(err.to_string().contains(why), "{name}: {err}");
        }
    }
}
