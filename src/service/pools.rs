//! Pools: create, replace, delete and list them, and what a pool view
//! shows (its waiting messages, what its throttle used, each member's
//! load). Sending to a pool is in `messages.rs`; the routing itself runs
//! in the members' claims (`store::pool_claim`).
//!
//! A pool change is a job with no event: it commits through the log writer
//! like every other change, so the check that no instance has the pool's
//! name runs in the same serialized transaction as an instance's creation.

use chrono::{Duration, Utc};

use super::{Service, ServiceError};
use crate::{
    domain::{InstanceName, PoolRequest, PoolRule, PoolSpec},
    store::{Change, Job, PoolRow},
};

/// One member in a pool view.
#[derive(Debug, Clone)]
pub struct MemberLoad {
    pub instance: InstanceName,
    /// `open`, `close` or `connecting`, as `connectionState` says.
    pub state: &'static str,
    /// Its own unsent messages (waiting and claimed).
    pub queued: i64,
    /// Texts this pool sent through it.
    pub sent: i64,
}

/// A pool as `pool/find` shows it.
#[derive(Debug, Clone)]
pub struct PoolView {
    pub pool: PoolRow,
    /// Messages waiting in the pool, not taken by a member yet.
    pub queued: i64,
    /// Taken from the pool in the sliding minute, today and this month.
    pub used: [i64; 3],
    pub load: Vec<MemberLoad>,
}

impl Service {
    /// Creates a pool.
    pub async fn create_pool(
        &self,
        name: &InstanceName,
        request: PoolRequest,
    ) -> Result<PoolView, ServiceError> {
        let spec = self.checked_spec(request)?;
        if self.registry.supervisor(name).is_ok() {
            return Err(ServiceError::Conflict(format!(
                "'{name}' is the name of an instance; pools and instances share one namespace"
            )));
        }
        let max_pools = self.settings.limits.max_pools;
        let count = self.log.store().pools().await?.len();
        if count >= max_pools {
            return Err(ServiceError::Invalid(format!(
                "there are already {count} pools, the most allowed (limits.max_pools)"
            )));
        }
        let pool = PoolRow {
            name: name.clone(),
            spec,
            created_at: Utc::now(),
        };
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::CreatePool {
                    pool: pool.clone(),
                    max_pools,
                }],
                fence: None,
            })
            .await?;
        self.pool_view(pool).await
    }

    /// Replaces a pool's definition.
    pub async fn update_pool(
        &self,
        name: &InstanceName,
        request: PoolRequest,
    ) -> Result<PoolView, ServiceError> {
        let spec = self.checked_spec(request)?;
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::UpdatePool {
                    name: name.clone(),
                    spec,
                }],
                fence: None,
            })
            .await?;
        let pool = self.find_pool(name).await?;
        // Its members may take what waits under the new rules.
        self.wake_members(&pool.spec);
        self.pool_view(pool).await
    }

    /// Deletes a pool with no message waiting in it.
    pub async fn delete_pool(&self, name: &InstanceName) -> Result<(), ServiceError> {
        self.log
            .append(Job {
                events: Vec::new(),
                changes: vec![Change::DeletePool(name.clone())],
                fence: None,
            })
            .await?;
        Ok(())
    }

    /// Every pool by name; with `only`, the pools it is a member of, each
    /// showing that member alone (an instance key sees no other tenant).
    pub async fn pools(&self, only: Option<&InstanceName>) -> Result<Vec<PoolView>, ServiceError> {
        let pools = match only {
            None => self.log.store().pools().await?,
            Some(member) => self.log.store().pools_of(member).await?,
        };
        let mut views = Vec::with_capacity(pools.len());
        for pool in pools {
            let mut view = self.pool_view(pool).await?;
            if let Some(member) = only {
                let spec = &mut view.pool.spec;
                spec.members.retain(|m| m == member);
                spec.rules = spec
                    .rules
                    .iter()
                    .filter(|r| r.members.contains(member))
                    .map(|r| PoolRule {
                        prefix: r.prefix.clone(),
                        members: vec![member.clone()],
                    })
                    .collect();
                view.load.retain(|l| &l.instance == member);
            }
            views.push(view);
        }
        Ok(views)
    }

    /// Each pool's name and the messages waiting in it, for `/metrics`.
    pub async fn pool_backlog(&self) -> Result<Vec<(String, i64)>, ServiceError> {
        Ok(self.log.store().pool_backlog().await?)
    }

    /// A pool, or 404.
    pub(super) async fn find_pool(&self, name: &InstanceName) -> Result<PoolRow, ServiceError> {
        self.log
            .store()
            .pool(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("pool '{name}' not found")))
    }

    /// Wakes every member's send loop on this node.
    pub(super) fn wake_members(&self, spec: &PoolSpec) {
        for member in &spec.members {
            self.registry.outbox_ready(member);
        }
    }

    /// Checks a definition, and that its members are instances.
    fn checked_spec(&self, request: PoolRequest) -> Result<PoolSpec, ServiceError> {
        let spec = PoolSpec::parse(request).map_err(ServiceError::Invalid)?;
        for (i, member) in spec.members.iter().enumerate() {
            if self.registry.supervisor(member).is_err() {
                return Err(ServiceError::Invalid(format!(
                    "'members[{i}]' names '{member}', which is not an instance"
                )));
            }
        }
        Ok(spec)
    }

    async fn pool_view(&self, pool: PoolRow) -> Result<PoolView, ServiceError> {
        let now = Utc::now();
        let minute = Duration::milliseconds(
            i64::try_from(self.settings.modem.throttle_minute_ms).unwrap_or(60_000),
        );
        let day = now.date_naive().and_hms_opt(0, 0, 0).map(|d| d.and_utc());
        let month = chrono::NaiveDate::from_ymd_opt(
            chrono::Datelike::year(&now),
            chrono::Datelike::month(&now),
            1,
        )
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc());
        let stats = self
            .log
            .store()
            .pool_stats(
                &pool,
                [now - minute, day.unwrap_or(now), month.unwrap_or(now)],
            )
            .await?;
        let load = pool
            .spec
            .members
            .iter()
            .map(|member| {
                let (queued, sent) = stats.load.get(member).copied().unwrap_or_default();
                MemberLoad {
                    instance: member.clone(),
                    state: self
                        .registry
                        .get(member)
                        .map_or("close", |view| view.status),
                    queued,
                    sent,
                }
            })
            .collect();
        Ok(PoolView {
            pool,
            queued: stats.queued,
            used: stats.used,
            load,
        })
    }
}
