//! Scoped tokens: short-lived JWTs (HS256) a client can use to open
//! WebSocket and SSE streams without holding a key.
//!
//! A token names its subject, its expiry, the key that minted it (`by`),
//! the instances it may watch by name and id (or `*` for all, which only
//! the admin key can grant) and optionally the events. Tokens are for
//! reading streams; managing instances or sending needs a key.
//!
//! The subject is a label its minter chose; nothing is decided by it.
//! Connection limits count a token as the key that minted it, and an
//! instance id makes the token useless once that instance is deleted, even
//! for a later instance of the same name.

use std::{collections::BTreeMap, fmt};

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use uuid::Uuid;

use crate::{domain::InstanceName, event::TopicSet};

/// The key that minted a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Minter {
    Admin,
    /// An instance's key, by the instance's id.
    Instance(Uuid),
}

impl fmt::Display for Minter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Minter::Admin => f.write_str("admin"),
            Minter::Instance(id) => write!(f, "instance:{id}"),
        }
    }
}

impl std::str::FromStr for Minter {
    type Err = String;

    fn from_str(s: &str) -> Result<Minter, String> {
        match s {
            "admin" => Ok(Minter::Admin),
            other => other
                .strip_prefix("instance:")
                .and_then(|id| Uuid::parse_str(id).ok())
                .map(Minter::Instance)
                .ok_or_else(|| "bad 'by'".to_owned()),
        }
    }
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// A label for logs, chosen by the minter; it decides nothing.
    pub subject: String,
    /// The key that minted it: connections count against that key.
    pub minted_by: Minter,
    /// The instances it may watch, with the id each had when the token was
    /// minted; `None` means all of them.
    pub instances: Option<BTreeMap<InstanceName, Uuid>>,
    /// The topics it may receive.
    pub topics: TopicSet,
    pub expires_at: DateTime<Utc>,
}

/// The JWT claims, as signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    /// The minting key: `admin` or `instance:<id>`.
    by: String,
    /// Instance names, or `["*"]` for all.
    instances: Vec<String>,
    /// The id of each named instance.
    #[serde(default)]
    ids: BTreeMap<String, Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    events: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired; get a new one from POST /auth/token and resume")]
    Expired,
    /// The reason is ours (bad signature, malformed claims), never the token.
    #[error("the token is not valid: {0}")]
    Invalid(String),
}

/// Mints and checks tokens with the server's secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &SecretString) -> Tokens {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a connection is closed when its token expires, so
        // a token must not be accepted a minute after that.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Tokens {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    pub fn mint(&self, grant: &Grant) -> Result<String, TokenError> {
        let (instances, ids) = match &grant.instances {
            None => (vec!["*".to_owned()], BTreeMap::new()),
            Some(named) => (
                named.keys().map(|n| n.to_string()).collect(),
                named.iter().map(|(n, id)| (n.to_string(), *id)).collect(),
            ),
        };
        let all = if grant.instances.is_none() {
            TopicSet::all()
        } else {
            TopicSet::all_instance_topics()
        };
        let claims = Claims {
            sub: grant.subject.clone(),
            exp: grant.expires_at.timestamp(),
            iat: Utc::now().timestamp(),
            by: grant.minted_by.to_string(),
            instances,
            ids,
            events: (grant.topics != all).then(|| {
                grant
                    .topics
                    .names()
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            }),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    pub fn verify(&self, token: &str) -> Result<Grant, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                kind => TokenError::Invalid(format!("{kind:?}")),
            })?;
        let claims = data.claims;
        let minted_by = claims.by.parse().map_err(TokenError::Invalid)?;
        let instances = if claims.instances.iter().any(|i| i == "*") {
            None
        } else {
            let mut named = BTreeMap::new();
            for raw in &claims.instances {
                let name =
                    InstanceName::parse(raw).map_err(|e| TokenError::Invalid(e.to_string()))?;
                let id = claims
                    .ids
                    .get(raw)
                    .ok_or_else(|| TokenError::Invalid(format!("no id for instance '{name}'")))?;
                named.insert(name, *id);
            }
            Some(named)
        };
        let all = if instances.is_none() {
            TopicSet::all()
        } else {
            TopicSet::all_instance_topics()
        };
        let topics = match &claims.events {
            None => all,
            Some(names) => TopicSet::parse_list(names.iter().map(String::as_str))
                .map_err(|e| TokenError::Invalid(e.to_string()))?
                .intersect(all),
        };
        let expires_at = Utc
            .timestamp_opt(claims.exp, 0)
            .single()
            .ok_or_else(|| TokenError::Invalid("bad exp".into()))?;
        Ok(Grant {
            subject: claims.sub,
            minted_by,
            instances,
            topics,
            expires_at,
        })
    }
}

/// Whether a presented credential is shaped like a JWT (keys are hex).
pub fn looks_like_token(credential: &str) -> bool {
    credential.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Topic;

    fn tokens() -> Tokens {
        Tokens::new(&SecretString::from("s3cret-for-tests".to_owned()))
    }

    #[test]
    fn a_minted_token_verifies_to_the_same_grant() {
        let grant = Grant {
            subject: "dashboard".into(),
            minted_by: Minter::Instance(Uuid::now_v7()),
            instances: Some(BTreeMap::from([(
                InstanceName::parse("alpha").expect("valid"),
                Uuid::now_v7(),
            )])),
            topics: TopicSet::of(&[Topic::MessageIncoming, Topic::Delivery]),
            expires_at: Utc
                .timestamp_opt(Utc::now().timestamp() + 60, 0)
                .single()
                .expect("time"),
        };
        let tokens = tokens();
        let token = tokens.mint(&grant).expect("mint");
        assert!(looks_like_token(&token));
        assert_eq!(tokens.verify(&token).expect("verify"), grant);
    }

    #[test]
    fn expired_forged_and_garbled_tokens_are_refused() {
        let tokens = tokens();
        let grant = Grant {
            subject: "x".into(),
            minted_by: Minter::Admin,
            instances: None,
            topics: TopicSet::all(),
            expires_at: Utc
                .timestamp_opt(Utc::now().timestamp() - 1, 0)
                .single()
                .expect("time"),
        };
        let expired = tokens.mint(&grant).expect("mint");
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));

        let other = Tokens::new(&SecretString::from("another".to_owned()));
        let forged = other
            .mint(&Grant {
                expires_at: Utc::now() + chrono::Duration::seconds(60),
                ..grant
            })
            .expect("mint");
        assert!(matches!(
            tokens.verify(&forged),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            tokens.verify("a.b.c"),
            Err(TokenError::Invalid(_))
        ));
        assert!(!looks_like_token("0123abcd"));
    }

    #[test]
    fn a_token_without_its_minter_or_the_ids_of_its_instances_is_refused() {
        // Signed with the right secret, but shaped like a token of old:
        // nothing would tie it to a key or to the instances' identities.
        let secret = "s3cret-for-tests";
        let key = EncodingKey::from_secret(secret.as_bytes());
        let exp = Utc::now().timestamp() + 60;
        for claims in [
            serde_json::json!({ "sub": "a", "exp": exp, "iat": 0, "instances": ["alpha"] }),
            serde_json::json!({ "sub": "a", "exp": exp, "iat": 0, "by": "admin", "instances": ["alpha"] }),
            serde_json::json!({ "sub": "a", "exp": exp, "iat": 0, "by": "someone", "instances": ["*"] }),
        ] {
            let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
                .expect("encode");
            assert!(
                matches!(tokens().verify(&token), Err(TokenError::Invalid(_))),
                "{claims}"
            );
        }
    }
}
