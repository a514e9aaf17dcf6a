//! The reviews against the cluster: `POST tokenreviews` and `POST subjectaccessreviews`, each
//! with the Kubernetes call deadline, counted in `gateway_k8s_requests_total` (verbs
//! `token_review`, `access_review`). The gateway needs `create` on both (deploy/rbac.yaml).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

use super::{Reviewer, UserInfo};
use crate::telemetry::{CallOutcome, Metrics, Verb};

/// What a sender must be allowed to do (`auth.authorize`): by default `create` on the virtual
/// resource `signals.kubernaut.ai` in the controller namespace, which the shipped ClusterRole
/// `gateway-signal-source` grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The verb, e.g. `create`.
    pub verb: String,
    /// The API group, e.g. `kubernaut.ai`.
    pub group: String,
    /// The resource, e.g. `signals`.
    pub resource: String,
    /// The namespace; empty for a cluster-wide check (then only a ClusterRoleBinding grants it).
    pub namespace: String,
}

/// Reviews against the cluster.
pub struct KubeReviewer {
    tokens: Api<TokenReview>,
    access_reviews: Api<SubjectAccessReview>,
    access: Access,
    audiences: Vec<String>,
    timeout: Duration,
    metrics: Metrics,
}

impl KubeReviewer {
    /// Reviews through `client`; `audiences` empty means the apiserver's own.
    pub fn new(
        client: kube::Client,
        access: Access,
        audiences: Vec<String>,
        timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        KubeReviewer {
            tokens: Api::all(client.clone()),
            access_reviews: Api::all(client),
            access,
            audiences,
            timeout,
            metrics,
        }
    }

    async fn call<T>(
        &self,
        verb: Verb,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, String> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call).await;
        let (outcome, result) = match result {
            Err(_) => (
                CallOutcome::Timeout,
                Err(format!("no answer within {:?}", self.timeout)),
            ),
            Ok(Ok(value)) => (CallOutcome::Success, Ok(value)),
            Ok(Err(error)) => (CallOutcome::Unavailable, Err(error.to_string())),
        };
        self.metrics
            .k8s_request(verb, outcome, started.elapsed().as_secs_f64());
        result
    }
}

impl Reviewer for KubeReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: token.to_owned(),
                    audiences: (!self.audiences.is_empty()).then(|| self.audiences.clone()),
                },
                ..TokenReview::default()
            };
            let answer = self
                .call(
                    Verb::TokenReview,
                    self.tokens.create(&PostParams::default(), &review),
                )
                .await?;
            let Some(status) = answer.status else {
                return Err("TokenReview answered without a status".into());
            };
            if status.authenticated != Some(true) {
                return Ok(None);
            }
            let user = status.user.unwrap_or_default();
            let username = user.username.unwrap_or_default();
            if username.is_empty() {
                return Ok(None);
            }
            Ok(Some(UserInfo {
                username,
                uid: user.uid.unwrap_or_default(),
                groups: user.groups.unwrap_or_default(),
                extra: user.extra.unwrap_or_default(),
            }))
        })
    }

    fn review_access<'a>(&'a self, user: &'a UserInfo) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let access = &self.access;
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.username.clone()),
                    uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
                    groups: Some(user.groups.clone()),
                    extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(access.verb.clone()),
                        group: Some(access.group.clone()),
                        resource: Some(access.resource.clone()),
                        namespace: (!access.namespace.is_empty()).then(|| access.namespace.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let answer = self
                .call(
                    Verb::AccessReview,
                    self.access_reviews.create(&PostParams::default(), &review),
                )
                .await?;
            let Some(status) = answer.status else {
                return Err("SubjectAccessReview answered without a status".into());
            };
            // RBAC reports a binding to a missing role as an evaluation error beside its "no":
            // that is a decision (403), not an outage.
            Ok(status.allowed)
        })
    }
}
