//! The Node object of a joined instance, as the kubelet registers it and the AWS cloud
//! controller manager completes it: name, labels, provider ID, addresses, capacity.

use serde_json::{Value, json};

use super::Instance;
use crate::meta;

/// nodeadm `kubelet/config.go` defaultMaxPods, when the instance type's ENI limits are unknown.
const DEFAULT_MAX_PODS: i64 = 110;
/// The kubelet's default `evictionHard` `memory.available`.
const EVICTION_HARD_MEMORY_MIB: i64 = 100;

/// What EC2 says about an instance type (DescribeInstanceTypes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    pub vcpus: i64,
    pub memory_mib: i64,
    pub max_enis: i64,
    pub ipv4_per_eni: i64,
}

impl InstanceTypeInfo {
    /// nodeadm `kubelet/eni_max_pods.go` CalcMaxPods: ENIs × (IPv4 addresses per ENI − 1) + 2
    /// (the VPC CNI gives each pod an address of the node's ENIs).
    fn max_pods(&self) -> i64 {
        self.max_enis * (self.ipv4_per_eni - 1) + 2
    }
}

/// nodeadm `kubelet/config.go` getCPUMillicoresToReserve: 6% of the first core, 1% of the
/// second, 0.5% of the next two, 0.25% of the rest.
fn cpu_millicores_reserved(total: i64) -> i64 {
    let ranges = [0, 1000, 2000, 4000, total];
    let percent = [600, 100, 50, 25];
    (0..4)
        .map(|i| {
            if total <= ranges[i] {
                0
            } else {
                (total.min(ranges[i + 1]) - ranges[i]) * percent[i] / 10000
            }
        })
        .sum()
}

/// The kubelet's architecture label from EC2's (`x86_64`, `arm64`).
fn arch(ec2: &str) -> &str {
    match ec2 {
        "arm64" => "arm64",
        _ => "amd64",
    }
}

/// The Node the kubelet on `instance` registers (name = private DNS name, nodeadm
/// `kubelet/config.go` withCloudProvider: `--hostname-override`, providerID
/// `aws:///<zone>/<id>`), with what the cloud controller manager adds (topology and
/// instance-type labels, InternalIP / InternalDNS / Hostname addresses).
pub fn node_object(
    instance: &Instance,
    region: &str,
    kubelet_version: &str,
    extra_labels: &[(String, String)],
    info: Option<InstanceTypeInfo>,
) -> Value {
    let name = &instance.private_dns_name;
    let mut labels = serde_json::Map::new();
    for (k, v) in extra_labels {
        labels.insert(k.clone(), json!(v));
    }
    for (k, v) in [
        ("kubernetes.io/hostname", name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch(&instance.architecture)),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", arch(&instance.architecture)),
        ("topology.kubernetes.io/zone", &instance.zone),
        ("topology.kubernetes.io/region", region),
        ("failure-domain.beta.kubernetes.io/zone", &instance.zone),
        ("failure-domain.beta.kubernetes.io/region", region),
        ("node.kubernetes.io/instance-type", &instance.instance_type),
        ("beta.kubernetes.io/instance-type", &instance.instance_type),
    ] {
        labels.insert(k.to_string(), json!(v));
    }
    let max_pods = info.map_or(DEFAULT_MAX_PODS, |i| i.max_pods());
    let (cpu, memory_mib) = info.map_or((2, 4096), |i| (i.vcpus, i.memory_mib));
    let cpu_allocatable = cpu * 1000 - cpu_millicores_reserved(cpu * 1000);
    let memory_allocatable = memory_mib - (11 * max_pods + 255) - EVICTION_HARD_MEMORY_MIB;
    let version = kubelet_version;
    json!({
        "metadata": {
            "name": name,
            "labels": labels,
        },
        "spec": {"providerID": format!("aws:///{}/{}", instance.zone, instance.id)},
        "status": {
            "conditions": conditions(true),
            "addresses": [
                {"type": "InternalIP", "address": instance.private_ip},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name},
            ],
            "capacity": {"cpu": cpu.to_string(), "memory": format!("{}Ki", memory_mib * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "20959212Ki"},
            "allocatable": {"cpu": format!("{cpu_allocatable}m"), "memory": format!("{}Ki", memory_allocatable.max(0) * 1024), "pods": max_pods.to_string(), "ephemeral-storage": "18242267924"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": version, "kubeProxyVersion": version,
                "containerRuntimeVersion": "containerd://1.7.27", "operatingSystem": "linux",
                "architecture": arch(&instance.architecture), "osImage": "Amazon Linux 2023.9.20261101",
                "kernelVersion": "6.12.46-66.121.amzn2023.x86_64", "machineID": "", "systemUUID": "", "bootID": "",
            },
        },
    })
}

/// The node conditions a kubelet posts; `ready` false is what the node lifecycle controller
/// sets once the kubelet stops posting (Ready `Unknown`, "Kubelet stopped posting node status.").
pub fn conditions(ready: bool) -> Value {
    let now = meta::now_rfc3339();
    let condition = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    if ready {
        json!([
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure"
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available"
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status"
            ),
        ])
    } else {
        let unknown = |t: &str| {
            condition(
                t,
                "Unknown",
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
            )
        };
        json!([
            unknown("MemoryPressure"),
            unknown("DiskPressure"),
            unknown("PIDPressure"),
            unknown("Ready")
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_follow_nodeadm() {
        // t3.medium: 2 vCPUs → 60m + 10m reserved; 3 ENIs × 6 addresses → 17 pods.
        assert_eq!(cpu_millicores_reserved(2000), 70);
        let t3_medium = InstanceTypeInfo {
            vcpus: 2,
            memory_mib: 4096,
            max_enis: 3,
            ipv4_per_eni: 6,
        };
        assert_eq!(t3_medium.max_pods(), 17);
    }
}
