//! The decision cache: one entry per token (keyed by its SHA-256, never the token itself),
//! holding the whole decision — allowed with its identity, unauthenticated, or forbidden — for
//! `auth.cache_ttl` (allowed) or `auth.negative_cache_ttl` (refused). Requests that arrive with
//! the same unknown token at once share one pair of reviews. A review that could not be made
//! is not cached: the next request tries again.
//!
//! At `auth.cache_size` entries, expired ones are dropped first, then arbitrary ones: a flood
//! of distinct garbage tokens costs reviews, never memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::{Authenticator, Denied, Reviewer, UserInfo, bearer_token};
use crate::telemetry::Metrics;

/// Cache settings (`auth.*`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long an allowed token is trusted without a review.
    pub ttl: Duration,
    /// How long a refused token is refused without a review.
    pub negative_ttl: Duration,
    /// Entries kept.
    pub capacity: usize,
}

type Decision = Result<UserInfo, Denied>;

#[derive(Default)]
struct Slot {
    decided: OnceCell<(Decision, Instant)>,
}

impl Slot {
    fn expired(&self, now: Instant) -> bool {
        self.decided
            .get()
            .is_some_and(|(_, expires)| *expires <= now)
    }
}

/// A [`Reviewer`] behind the decision cache.
pub struct Cached<R> {
    reviewer: R,
    limits: Limits,
    slots: Mutex<HashMap<[u8; 32], Arc<Slot>>>,
    metrics: Metrics,
}

impl<R: Reviewer> Cached<R> {
    /// An empty cache over `reviewer`.
    pub fn new(reviewer: R, limits: Limits, metrics: Metrics) -> Self {
        Cached {
            reviewer,
            limits,
            slots: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Entries held (decided or being decided).
    pub fn len(&self) -> usize {
        self.slots.lock().map(|slots| slots.len()).unwrap_or(0)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, key: [u8; 32]) -> Arc<Slot> {
        let now = Instant::now();
        let Ok(mut slots) = self.slots.lock() else {
            // A poisoned lock (a panic elsewhere): decide without the cache.
            return Arc::default();
        };
        if let Some(slot) = slots.get(&key)
            && !slot.expired(now)
        {
            return slot.clone();
        }
        if slots.len() >= self.limits.capacity && !slots.contains_key(&key) {
            slots.retain(|_, slot| !slot.expired(now));
            while slots.len() >= self.limits.capacity {
                let Some(victim) = slots.keys().next().copied() else {
                    break;
                };
                slots.remove(&victim);
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key, slot.clone());
        slot
    }

    async fn review(&self, token: &str) -> Result<(Decision, Instant), Denied> {
        let decision = match self.reviewer.review_token(token).await {
            Err(cause) => return Err(Denied::Unavailable(cause)),
            Ok(None) => Err(Denied::Unauthenticated),
            Ok(Some(user)) => match self.reviewer.review_access(&user).await {
                Err(cause) => return Err(Denied::Unavailable(cause)),
                Ok(true) => Ok(user),
                Ok(false) => Err(Denied::Forbidden),
            },
        };
        let ttl = if decision.is_ok() {
            self.limits.ttl
        } else {
            self.limits.negative_ttl
        };
        Ok((decision, Instant::now() + ttl))
    }

    async fn decide(&self, headers: &HeaderMap) -> Result<UserInfo, Denied> {
        let token = bearer_token(headers)?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let slot = self.slot(key);
        let mut reviewed = false;
        let decided = slot
            .decided
            .get_or_try_init(|| {
                reviewed = true;
                self.review(token)
            })
            .await;
        let decision = match decided {
            Ok((decision, _)) => decision.clone(),
            Err(unavailable) => Err(unavailable),
        };
        if !reviewed && matches!(decision, Err(Denied::Unavailable(_))) {
            // Waited on a review that failed: nothing was cached, report it as made.
            reviewed = true;
        }
        self.metrics.auth_decision(
            match &decision {
                Ok(_) => "allowed",
                Err(denied) => denied.outcome(),
            },
            !reviewed,
        );
        decision
    }
}

impl<R: Reviewer> Authenticator for Cached<R> {
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Denied>> {
        Box::pin(async move { self.decide(headers).await.map(Some) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Tokens `ok-*` belong to users who may send, `no-*` to users who may not; anything else
    /// is not a token. `down` makes every review fail.
    #[derive(Default)]
    struct Fake {
        token_reviews: AtomicUsize,
        access_reviews: AtomicUsize,
        down: AtomicBool,
        gate: Option<Arc<tokio::sync::Notify>>,
    }

    impl Reviewer for Fake {
        fn review_token<'a>(
            &'a self,
            token: &'a str,
        ) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
            Box::pin(async move {
                self.token_reviews.fetch_add(1, Ordering::SeqCst);
                if let Some(gate) = &self.gate {
                    gate.notified().await;
                }
                if self.down.load(Ordering::SeqCst) {
                    return Err("connection refused".into());
                }
                Ok(
                    (token.starts_with("ok-") || token.starts_with("no-")).then(|| UserInfo {
                        username: token.to_owned(),
                        ..UserInfo::default()
                    }),
                )
            })
        }

        fn review_access<'a>(&'a self, user: &'a UserInfo) -> BoxFuture<'a, Result<bool, String>> {
            Box::pin(async move {
                self.access_reviews.fetch_add(1, Ordering::SeqCst);
                Ok(user.username.starts_with("ok-"))
            })
        }
    }

    fn limits() -> Limits {
        Limits {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            capacity: 100,
        }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[tokio::test]
    async fn every_decision_is_reviewed_once_then_served_from_the_cache() {
        let fake = Arc::new(Fake::default());
        let cache = Cached::new(fake.clone(), limits(), Metrics::new());
        for _ in 0..10 {
            let allowed = cache.authenticate(&bearer("ok-a")).await.unwrap().unwrap();
            assert_eq!(allowed.username, "ok-a");
            assert_eq!(
                cache.authenticate(&bearer("no-b")).await,
                Err(Denied::Forbidden)
            );
            assert_eq!(
                cache.authenticate(&bearer("garbage")).await,
                Err(Denied::Unauthenticated)
            );
            assert_eq!(
                cache.authenticate(&HeaderMap::new()).await,
                Err(Denied::MissingToken)
            );
        }
        assert_eq!(fake.token_reviews.load(Ordering::SeqCst), 3);
        assert_eq!(fake.access_reviews.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_new_token_share_one_review() {
        let gate = Arc::new(tokio::sync::Notify::new());
        let fake = Arc::new(Fake {
            gate: Some(gate.clone()),
            ..Fake::default()
        });
        let cache = Arc::new(Cached::new(fake.clone(), limits(), Metrics::new()));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.authenticate(&bearer("ok-a")).await })
            })
            .collect();
        // All 20 are waiting on the first one's review.
        while fake.token_reviews.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        assert_eq!(fake.token_reviews.load(Ordering::SeqCst), 1);
        assert_eq!(fake.access_reviews.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_review_is_unavailable_and_not_cached_while_cached_tokens_still_pass() {
        let fake = Arc::new(Fake::default());
        let cache = Cached::new(fake.clone(), limits(), Metrics::new());
        assert!(cache.authenticate(&bearer("ok-cached")).await.is_ok());
        fake.down.store(true, Ordering::SeqCst);
        assert!(matches!(
            cache.authenticate(&bearer("ok-new")).await,
            Err(Denied::Unavailable(_))
        ));
        assert!(cache.authenticate(&bearer("ok-cached")).await.is_ok());
        fake.down.store(false, Ordering::SeqCst);
        assert!(cache.authenticate(&bearer("ok-new")).await.is_ok());
        assert_eq!(fake.token_reviews.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn entries_expire_and_the_size_stays_bounded() {
        let fake = Arc::new(Fake::default());
        let cache = Cached::new(
            fake.clone(),
            Limits {
                ttl: Duration::from_millis(30),
                negative_ttl: Duration::from_millis(30),
                capacity: 8,
            },
            Metrics::new(),
        );
        for i in 0..100 {
            let _ = cache.authenticate(&bearer(&format!("no-{i}"))).await;
            assert!(cache.len() <= 8, "{} entries", cache.len());
        }
        assert!(cache.authenticate(&bearer("ok-a")).await.is_ok());
        let before = fake.token_reviews.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(cache.authenticate(&bearer("ok-a")).await.is_ok());
        assert_eq!(fake.token_reviews.load(Ordering::SeqCst), before + 1);
    }
}
