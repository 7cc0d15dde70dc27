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
