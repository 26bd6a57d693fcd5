//! Scoped tokens: short-lived JWTs (HS256) a client can use to open
//! WebSocket and SSE streams without holding a key.
//!
//! A token names its subject, its expiry, the instances it may watch (or `*`
//! for all, which only the admin key can grant) and optionally the events.
//! Tokens are for reading streams; managing instances or sending needs a key.

use std::collections::HashSet;

use chrono::{DateTime, TimeZone, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{domain::InstanceName, event::TopicSet};

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who it was minted for; connections with one subject share a limit.
    pub subject: String,
    /// The instances it may watch; `None` means all of them.
    pub instances: Option<HashSet<InstanceName>>,
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
    /// Instance names, or `["*"]` for all.
    instances: Vec<String>,
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
        let instances = match &grant.instances {
            None => vec!["*".to_owned()],
            Some(names) => {
                let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                names.sort();
                names
            }
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
            instances,
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
        let instances = if claims.instances.iter().any(|i| i == "*") {
            None
        } else {
            Some(
                claims
                    .instances
                    .iter()
                    .map(|n| InstanceName::parse(n))
                    .collect::<Result<HashSet<_>, _>>()
                    .map_err(|e| TokenError::Invalid(e.to_string()))?,
            )
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
            instances: Some(HashSet::from(
                [InstanceName::parse("alpha").expect("valid")],
            )),
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
}
