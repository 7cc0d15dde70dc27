//! What the container runtime of the simulated nodes knows, shared by the kubelet (which starts and
//! stops containers) and the ingress data path (which connects to pods): a simulated pod answers
//! on its IP only while its container runs, like a process listening inside the pod's sandbox.
//! Local-process pods need no entry here: their port simply stops accepting connections.
//!
//! A pod on the host's network has the node's InternalIP as its pod IP, as on a real cluster, but
//! its process listens on a loopback address of this machine; the runtime says which.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;

#[derive(Default)]
pub struct Containers {
    running: Mutex<HashSet<String>>,
    /// Where the local process of a host-network pod listens, by pod uid.
    host_network: Mutex<HashMap<String, IpAddr>>,
}

impl Containers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The simulated container of pod `uid` runs and answers requests.
    pub fn started(&self, uid: &str) {
        self.lock().insert(uid.to_string());
    }

    /// The simulated container of pod `uid` exited: connections to the pod are refused.
    pub fn stopped(&self, uid: &str) {
        self.lock().remove(uid);
    }

    pub fn is_running(&self, uid: &str) -> bool {
        self.lock().contains(uid)
    }

    /// The host-network pod `uid`'s process listens on `ip` (None: it no longer runs).
    pub fn listens_at(&self, uid: &str, ip: Option<IpAddr>) {
        let mut map = self.host_network.lock().unwrap_or_else(|p| p.into_inner());
        match ip {
            Some(ip) => map.insert(uid.to_string(), ip),
            None => map.remove(uid),
        };
    }

    /// Where a host-network pod's process really listens (its pod IP is the node's).
    pub fn host_network_address(&self, uid: &str) -> Option<IpAddr> {
        self.host_network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .copied()
    }
}
