//! Waiting, explicitly: every wait has a success condition, failure states and a deadline, polls
//! with jitter, and retries only the AWS errors that mean "not yet". The SDK already retries
//! throttling and 5xx; everything listed in [`not_yet`] is ours.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::aws::AwsError;
use crate::config::Pace;

/// Why an AWS error means "try again shortly", or `None` when it is a real failure.
///
/// This is the one list of retried codes. Some codes are shared with real failures, so the message
/// decides (AWS offers nothing more specific for IAM propagation).
pub fn not_yet(err: &AwsError) -> Option<&'static str> {
    let message = err.message().to_ascii_lowercase();
    match err.code() {
        // EC2 deletions while instances, ENIs or load balancer interfaces are still going away.
        "DependencyViolation" => Some("dependent resources are still being removed"),
        // ELBv2: a target group still attached to a load balancer that is being deleted.
        "ResourceInUse" => Some("the resource is still in use"),
        // Auto Scaling: a scaling activity (launching or terminating) is under way.
        "ScalingActivityInProgress" => Some("a scaling activity is in progress"),
        // EKS: the cluster is busy with another update, or still has dependants being deleted.
        "ResourceInUseException" => Some("the cluster is busy"),
        // IAM is eventually consistent: a new role or profile is not visible to EKS or EC2 yet.
        "InvalidParameterException"
            if message.contains("role")
                && (message.contains("assume") || message.contains("not authorized")) =>
        {
            Some("the new IAM role is not visible to EKS yet")
        }
        "InvalidParameterValue" | "ValidationError"
            if message.contains("iam instance profile") || message.contains("instance profile") =>
        {
            Some("the new instance profile is not visible yet")
        }
        // Throttling the SDK gave up on after its own attempts: slow down further.
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => Some("AWS is throttling requests"),
        // 5xx the SDK gave up on.
        "InternalError" | "InternalFailure" | "ServiceUnavailable" | "ServerException" => {
            Some("AWS reported a transient server error")
        }
        _ => None,
    }
}

/// The codes EC2 answers for an id that has not propagated yet ("Eventual consistency in the
/// Amazon EC2 API", <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>),
/// which are also the codes for a resource that really is gone: only [`retry_until_visible`]
/// retries them, and only for a [`Fresh`] id.
pub const NOT_PROPAGATED: [&str; 7] = [
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidInternetGatewayID.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidLaunchTemplateId.NotFound",
    "InvalidInstanceID.NotFound",
];

/// How long a NotFound about an id this run created may still mean "not propagated": the page
/// advises backing off "starting with a couple of seconds ... up to a few minutes"; a minute is
/// ample in practice and keeps a real loss from hiding long.
pub const CREATED_PROPAGATION: Duration = Duration::from_secs(60);

/// The same for an id a listing of this run showed: the listing proves it existed a moment ago,
/// so only a short while is given.
pub const LISTED_PROPAGATION: Duration = Duration::from_secs(10);

/// An EC2 id this run created, or listed moments ago: for a while EC2 may answer `*.NotFound`
/// about it although it exists. Any other id is a plain `&str`, and its NotFound is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    pub id: String,
    /// Until then a NotFound naming the id is retried.
    until: Instant,
}

impl Fresh {
    /// An id from this run's own create call.
    pub fn created(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            until: Instant::now() + CREATED_PROPAGATION,
        }
    }

    /// An id a listing (by tag) returned just now.
    pub fn listed(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            until: Instant::now() + LISTED_PROPAGATION,
        }
    }

    /// An id created or listed by this run: `created` says which.
    pub fn learned(id: impl Into<String>, created: bool) -> Self {
        if created {
            Self::created(id)
        } else {
            Self::listed(id)
        }
    }

    fn still_propagating(&self, now: Instant) -> bool {
        now < self.until
    }
}

/// Whether `err` is EC2 saying that one of the `fresh` ids, still young enough, does not exist:
/// the code is one of [`NOT_PROPAGATED`] and the message names that id (AWS's messages do: "The
/// vpc ID 'vpc-1' does not exist"). A NotFound about any other id is a real one.
pub fn not_propagated(err: &AwsError, fresh: &[&Fresh], now: Instant) -> bool {
    NOT_PROPAGATED.contains(&err.code())
        && fresh
            .iter()
            .any(|f| f.still_propagating(now) && err.message().contains(f.id.as_str()))
}

/// Runs `call`, which names the `fresh` ids, until it succeeds, retrying (with backoff) only the
/// NotFound answers of [`not_propagated`], each id no longer than its bound and all within `pace`.
pub async fn retry_until_visible<T, F, Fut>(
    pace: Pace,
    fresh: &[&Fresh],
    mut on_retry: impl FnMut(&str),
    mut call: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let start = Instant::now();
    for attempt in 0u32.. {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let now = Instant::now();
                let elapsed = now.duration_since(start);
                if !not_propagated(&err, fresh, now) || elapsed >= pace.limit {
                    return Err(err);
                }
                tracing::debug!(
                    operation = err.operation,
                    code = err.code(),
                    "retrying: a new resource is not visible yet"
                );
                on_retry("a new resource is not visible to EC2 yet");
                tokio::time::sleep(backoff(attempt, pace.max_poll).min(pace.limit - elapsed)).await;
            }
        }
    }
    unreachable!("the retry loop only ends by returning")
}

/// The delay before poll or retry number `attempt` (0-based): exponential from 1 s up to `max`,
/// with ±25 % jitter so that many waiters do not poll in lockstep.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(2u32.saturating_pow(attempt.min(16)));
    let base = base.min(max);
    let jitter = rand::rng().random_range(0.75..1.25);
    base.mul_f64(jitter)
}

/// The default longest pause between polls: AWS resources take minutes, but the local emulator
/// answers at once, so polls start fast and slow down to this.
pub const MAX_POLL: Duration = Duration::from_secs(15);

/// The outcome of one poll.
pub enum Poll<T> {
    Ready(T),
    /// Not there yet; the text says what was seen (shown as progress and in a timeout error).
    Pending(String),
}

/// A wait or retry that ran out of time, or met a real failure.
#[derive(Debug, thiserror::Error)]
pub enum WaitError<E> {
    #[error("timed out after {after:?}; last seen: {last}")]
    Timeout { after: Duration, last: String },
    #[error(transparent)]
    Failed(E),
}

/// Polls `poll` until it is ready, fails, or `deadline` passes. `on_pending` sees each pending
/// state (for progress).
pub async fn wait_for<T, E, F, Fut>(
    pace: Pace,
    mut on_pending: impl FnMut(&str),
    mut poll: F,
) -> Result<T, WaitError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let deadline = pace.limit;
    let start = Instant::now();
    let mut last = String::from("nothing yet");
    for attempt in 0u32.. {
        match poll().await.map_err(WaitError::Failed)? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(state) => {
                on_pending(&state);
                last = state;
            }
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            break;
        }
        let pause = backoff(attempt, pace.max_poll).min(deadline - elapsed);
        tokio::time::sleep(pause).await;
    }
    Err(WaitError::Timeout {
        after: deadline,
        last,
    })
}

/// Runs `call` until it succeeds, retrying only errors that [`not_yet`] names, until `deadline`.
pub async fn retry_not_yet<T, F, Fut>(
    pace: Pace,
    mut on_retry: impl FnMut(&str),
    mut call: F,
) -> Result<T, AwsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AwsError>>,
{
    let deadline = pace.limit;
    let start = Instant::now();
    for attempt in 0u32.. {
        match call().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let Some(reason) = not_yet(&err) else {
                    return Err(err);
                };
                let elapsed = start.elapsed();
                if elapsed >= deadline {
                    return Err(err);
                }
                tracing::debug!(
                    operation = err.operation,
                    code = err.code(),
                    reason,
                    "retrying"
                );
                on_retry(reason);
                tokio::time::sleep(backoff(attempt, pace.max_poll).min(deadline - elapsed)).await;
            }
        }
    }
    unreachable!("the retry loop only ends by returning")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const PACE: Pace = Pace {
        limit: Duration::from_secs(60),
        max_poll: MAX_POLL,
    };

    #[test]
    fn only_not_yet_errors_are_retried() {
        assert!(not_yet(&AwsError::new("ec2:DeleteVpc", "DependencyViolation", "x")).is_some());
        assert!(
            not_yet(&AwsError::new(
                "eks:CreateCluster",
                "InvalidParameterException",
                "Role arn:aws:iam::1:role/x cannot be assumed by EKS"
            ))
            .is_some()
        );
        assert!(
            not_yet(&AwsError::new(
                "eks:CreateCluster",
                "InvalidParameterException",
                "unsupported Kubernetes version 1.20"
            ))
            .is_none()
        );
        assert!(not_yet(&AwsError::new("ec2:CreateVpc", "VpcLimitExceeded", "x")).is_none());
        assert!(not_yet(&AwsError::new("iam:CreateRole", "AccessDenied", "x")).is_none());
    }

    /// "Eventual consistency in the Amazon EC2 API": a NotFound right after the create is
    /// retried, but only for the id this run created or listed, and only for a while.
    #[tokio::test(start_paused = true)]
    async fn eventual_consistency_in_the_ec2_api_not_found_is_retried_only_for_fresh_ids() {
        let vpc = Fresh::created("vpc-1");
        let listed = Fresh::listed("sg-1");
        let not_found = |code, id: &str| {
            AwsError::new(
                "ec2:ModifyVpcAttribute",
                code,
                &format!("The ID '{id}' does not exist"),
            )
        };
        let now = Instant::now();
        let fresh = [&vpc, &listed];
        assert!(not_propagated(
            &not_found("InvalidVpcID.NotFound", "vpc-1"),
            &fresh,
            now
        ));
        assert!(not_propagated(
            &not_found("InvalidGroup.NotFound", "sg-1"),
            &fresh,
            now
        ));
        // An id read from elsewhere (tags of an earlier run, another step's output) is gone.
        assert!(!not_propagated(
            &not_found("InvalidVpcID.NotFound", "vpc-2"),
            &fresh,
            now
        ));
        assert!(!not_propagated(
            &not_found("InvalidVpcID.NotFound", "vpc-1"),
            &[],
            now
        ));
        // Other codes are not about propagation.
        assert!(!not_propagated(
            &not_found("DependencyViolation", "vpc-1"),
            &fresh,
            now
        ));
        // Past its bound the id is not fresh any more: the listed one first.
        let later = now + LISTED_PROPAGATION;
        assert!(!not_propagated(
            &not_found("InvalidGroup.NotFound", "sg-1"),
            &fresh,
            later
        ));
        assert!(not_propagated(
            &not_found("InvalidVpcID.NotFound", "vpc-1"),
            &fresh,
            later
        ));
        let much_later = now + CREATED_PROPAGATION;
        assert!(!not_propagated(
            &not_found("InvalidVpcID.NotFound", "vpc-1"),
            &fresh,
            much_later
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn eventual_consistency_in_the_ec2_api_retries_until_visible_then_stops() {
        let vpc = Fresh::created("vpc-1");
        let calls = AtomicU32::new(0);
        let result = retry_until_visible(
            PACE,
            &[&vpc],
            |_| {},
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err(AwsError::new(
                        "ec2:ModifyVpcAttribute",
                        "InvalidVpcID.NotFound",
                        "The vpc ID 'vpc-1' does not exist",
                    )),
                    _ => Ok(()),
                }
            },
        )
        .await;
        assert!(result.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        // A resource that really is gone surfaces once the bound passes.
        let start = Instant::now();
        let err = retry_until_visible(
            PACE,
            &[&vpc],
            |_| {},
            || async {
                Err::<(), _>(AwsError::new(
                    "ec2:ModifyVpcAttribute",
                    "InvalidVpcID.NotFound",
                    "The vpc ID 'vpc-1' does not exist",
                ))
            },
        )
        .await
        .unwrap_err();
        assert!(err.is("InvalidVpcID.NotFound"));
        assert!(start.elapsed() <= CREATED_PROPAGATION + MAX_POLL.mul_f64(1.25));

        // Not fresh: the first NotFound is the answer.
        let calls = AtomicU32::new(0);
        let err = retry_until_visible(
            PACE,
            &[],
            |_| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(AwsError::new(
                    "ec2:ModifyVpcAttribute",
                    "InvalidVpcID.NotFound",
                    "The vpc ID 'vpc-1' does not exist",
                ))
            },
        )
        .await
        .unwrap_err();
        assert!(err.is("InvalidVpcID.NotFound"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0, MAX_POLL) < Duration::from_secs(1));
        assert!(backoff(20, MAX_POLL) <= MAX_POLL.mul_f64(1.25));
        assert!(backoff(3, MAX_POLL) > backoff(0, MAX_POLL));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_times_out_with_the_last_state() {
        let err = wait_for::<(), AwsError, _, _>(
            PACE,
            |_| {},
            || async { Ok(Poll::Pending("CREATING".into())) },
        )
        .await
        .unwrap_err();
        match err {
            WaitError::Timeout { last, .. } => assert_eq!(last, "CREATING"),
            WaitError::Failed(e) => panic!("{e}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_a_real_error_and_retries_not_yet_ones() {
        let calls = AtomicU32::new(0);
        let result = retry_not_yet(
            PACE,
            |_| {},
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(AwsError::new("ec2:DeleteVpc", "DependencyViolation", "")),
                    _ => Ok(7),
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry_not_yet(
            PACE,
            |_| {},
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(AwsError::new("ec2:CreateVpc", "VpcLimitExceeded", ""))
            },
        )
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
