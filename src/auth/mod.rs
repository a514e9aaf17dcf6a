//! Who may send signals (DESIGN.md §1): the bearer token of every signal request is verified
//! with a TokenReview and its identity authorised with a SubjectAccessReview, both answered from
//! a bounded cache ([`cache`]) so that the steady state makes no API call per request.
//!
//! The decision is an [`Authenticator`]: [`Open`] for `auth.mode: none`, [`cache::Cached`] over
//! a [`Reviewer`] otherwise ([`kube::KubeReviewer`] against the cluster). Nothing else about
//! the request is trusted: impersonation headers (`Impersonate-User` and the like) are never
//! read, and the identity is only what the TokenReview says.

pub mod cache;
pub mod kube;

use futures::future::BoxFuture;
use http::HeaderMap;

/// Longest bearer token looked at; a longer one is refused without a review (a ServiceAccount
/// token is about 1 KiB; OIDC tokens with many groups a few KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Who sent a request, as the TokenReview named them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    /// `status.user.username`, e.g. `system:serviceaccount:monitoring:alertmanager`.
    pub username: String,
    /// `status.user.uid`.
    pub uid: String,
    /// `status.user.groups`.
    pub groups: Vec<String>,
    /// `status.user.extra`, passed on to the SubjectAccessReview.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

/// Why a request may not send signals.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `Authorization: Bearer` header: 401.
    #[error("a bearer token is required")]
    MissingToken,
    /// The TokenReview did not authenticate the token (or it is not one): 401.
    #[error("the bearer token is not valid")]
    Unauthenticated,
    /// Authenticated, but the SubjectAccessReview did not allow it: 403.
    #[error("this identity may not send signals")]
    Forbidden,
    /// A review could not be made (the API unreachable, a deadline, the gateway's own RBAC):
    /// 503, never 401/403, so the sender retries instead of dropping the signal.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// The `outcome` label of `gateway_auth_decisions_total`.
impl Denied {
    /// Label value.
    pub fn outcome(&self) -> &'static str {
        match self {
            Denied::MissingToken => "missing_token",
            Denied::Unauthenticated => "unauthenticated",
            Denied::Forbidden => "forbidden",
            Denied::Unavailable(_) => "unavailable",
        }
    }
}

/// Decides whether a request may send signals; `Ok(None)` is allowed with no identity
/// (`auth.mode: none`).
pub trait Authenticator: Send + Sync + 'static {
    /// Decides from the request headers.
    fn authenticate<'a>(
        &'a self,
        headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Denied>>;
}

/// `auth.mode: none`: everything is allowed, with no identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Open;

impl Authenticator for Open {
    fn authenticate<'a>(
        &'a self,
        _headers: &'a HeaderMap,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, Denied>> {
        Box::pin(async { Ok(None) })
    }
}

/// The two reviews, as calls that can fail. [`kube::KubeReviewer`] makes them against the
/// cluster; unit tests fake them.
pub trait Reviewer: Send + Sync + 'static {
    /// TokenReview: the identity behind `token`, or `None` when it is not authenticated.
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, String>>;
    /// SubjectAccessReview: whether `user` may send signals.
    fn review_access<'a>(&'a self, user: &'a UserInfo) -> BoxFuture<'a, Result<bool, String>>;
}

impl<R: Reviewer> Reviewer for std::sync::Arc<R> {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Option<UserInfo>, String>> {
        (**self).review_token(token)
    }

    fn review_access<'a>(&'a self, user: &'a UserInfo) -> BoxFuture<'a, Result<bool, String>> {
        (**self).review_access(user)
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive), if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Denied> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Denied::MissingToken);
    };
    let text = value.to_str().map_err(|_| Denied::Unauthenticated)?;
    let (scheme, token) = text.split_once(' ').ok_or(Denied::Unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denied::Unauthenticated);
    }
    let token = token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(Denied::Unauthenticated);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn bearer_tokens_are_read_and_anything_else_refused() {
        assert_eq!(bearer_token(&headers("Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(&HeaderMap::new()), Err(Denied::MissingToken));
        for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "abc"] {
            assert_eq!(
                bearer_token(&headers(bad)),
                Err(Denied::Unauthenticated),
                "{bad}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert_eq!(bearer_token(&headers(&long)), Err(Denied::Unauthenticated));
    }
}
