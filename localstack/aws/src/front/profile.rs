//! How much like AWS the front behaves: latency, how long things take, how often AWS says no.

use std::time::Duration;

/// Timings and fault rates of the realistic front.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    /// Each call's round trip, drawn uniformly from this range.
    pub latency: (Duration, Duration),
    /// EKS `CREATING` before `ACTIVE`.
    pub cluster_create: Duration,
    /// EKS `DELETING` before the cluster is gone.
    pub cluster_delete: Duration,
    /// Auto Scaling instances `Pending` before `InService`.
    pub instance_start: Duration,
    /// Load balancers `provisioning` before `active`.
    pub load_balancer_start: Duration,
    /// Targets `initial` before `healthy`.
    pub target_registration: Duration,
    /// A new IAM role cannot be assumed by EKS for this long.
    pub iam_propagation: Duration,
    /// After instances, load balancers or a cluster go away, their interfaces linger this long:
    /// deleting security groups, subnets or the VPC meanwhile is a `DependencyViolation`.
    pub interfaces_linger: Duration,
    /// A new EC2 resource's id is `*.NotFound` to calls that name it for this long ("Eventual
    /// consistency in the Amazon EC2 API",
    /// <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
    pub ec2_consistency_window: Duration,
    /// Fraction of calls answered with throttling (`Throttling`, `RequestLimitExceeded`, ...).
    pub throttle_rate: f64,
    /// Fraction of calls answered with a 5xx before reaching the emulator.
    pub server_error_rate: f64,
    /// Bytes per second of request bodies (ECR layer parts are the big ones); `None`: no limit.
    pub upload_bandwidth: Option<u64>,
    /// Seed of the latency and fault rolls, so a run's faults can be had again; `None`: the
    /// front takes `KDEPLOY_FRONT_SEED` from the environment, else a random one (see
    /// [`super::Front::seed`]).
    pub seed: Option<u64>,
}

impl Profile {
    /// Plain moto: no delays, no faults (the front only counts calls).
    pub fn instant() -> Self {
        Self {
            name: "instant",
            latency: (Duration::ZERO, Duration::ZERO),
            cluster_create: Duration::ZERO,
            cluster_delete: Duration::ZERO,
            instance_start: Duration::ZERO,
            load_balancer_start: Duration::ZERO,
            target_registration: Duration::ZERO,
            iam_propagation: Duration::ZERO,
            interfaces_linger: Duration::ZERO,
            ec2_consistency_window: Duration::ZERO,
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            upload_bandwidth: None,
            seed: None,
        }
    }

    /// As measured on AWS in ap-northeast-2: EKS 10-15 minutes (12 here), instances 1-2 minutes,
    /// NLBs 2-3 minutes, IAM propagation seconds; pushes over an operator's 100 Mbit/s uplink.
    pub fn realistic() -> Self {
        Self {
            name: "realistic",
            latency: (Duration::from_millis(30), Duration::from_millis(120)),
            cluster_create: Duration::from_secs(12 * 60),
            cluster_delete: Duration::from_secs(8 * 60),
            instance_start: Duration::from_secs(90),
            load_balancer_start: Duration::from_secs(150),
            target_registration: Duration::from_secs(60),
            iam_propagation: Duration::from_secs(8),
            interfaces_linger: Duration::from_secs(60),
            // The page says to back off "starting with a couple of seconds of wait time".
            ec2_consistency_window: Duration::from_secs(3),
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            upload_bandwidth: Some(100_000_000 / 8),
            seed: None,
        }
    }

    /// The realistic ratios scaled down 120 times, for tests; IAM propagation and lingering
    /// interfaces kept long enough that the retries really happen.
    pub fn fast() -> Self {
        let scale = |d: Duration| d / 120;
        let real = Self::realistic();
        Self {
            name: "fast",
            latency: (Duration::from_millis(2), Duration::from_millis(10)),
            cluster_create: scale(real.cluster_create),
            cluster_delete: scale(real.cluster_delete),
            instance_start: scale(real.instance_start),
            load_balancer_start: scale(real.load_balancer_start),
            target_registration: scale(real.target_registration),
            iam_propagation: Duration::from_secs(2),
            interfaces_linger: Duration::from_secs(2),
            // Not scaled: long enough that the callers' retries really happen.
            ec2_consistency_window: Duration::from_millis(800),
            throttle_rate: 0.0,
            server_error_rate: 0.0,
            upload_bandwidth: None,
            seed: real.seed,
        }
    }

    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "instant" => Some(Self::instant()),
            "fast" => Some(Self::fast()),
            "realistic" => Some(Self::realistic()),
            _ => None,
        }
    }

    pub fn with_latency(mut self, min: Duration, max: Duration) -> Self {
        self.latency = (min, max.max(min));
        self
    }

    /// Request bodies travel at `bytes_per_second` (`None`: as fast as the loopback allows).
    pub fn with_upload_bandwidth(mut self, bytes_per_second: Option<u64>) -> Self {
        self.upload_bandwidth = bytes_per_second;
        self
    }

    /// New EC2 resources stay `*.NotFound` to calls naming them for `window` (zero: never).
    pub fn with_ec2_consistency_window(mut self, window: Duration) -> Self {
        self.ec2_consistency_window = window;
        self
    }

    /// The rolls of latency and faults follow `seed` (a run that failed is had again with the
    /// seed it printed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub fn with_faults(mut self, throttle_rate: f64, server_error_rate: f64) -> Self {
        self.throttle_rate = throttle_rate.clamp(0.0, 1.0);
        self.server_error_rate = server_error_rate.clamp(0.0, 1.0);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_keeps_the_realistic_ratios() {
        let (fast, real) = (Profile::fast(), Profile::realistic());
        let ratio = |f: Duration, r: Duration| r.as_secs_f64() / f.as_secs_f64();
        assert!((ratio(fast.cluster_create, real.cluster_create) - 120.0).abs() < 0.01);
        assert!((ratio(fast.instance_start, real.instance_start) - 120.0).abs() < 0.01);
        assert!((ratio(fast.load_balancer_start, real.load_balancer_start) - 120.0).abs() < 0.01);
        assert!(fast.cluster_create > fast.instance_start);
    }
}
