//! What the container runtime of the simulated nodes knows, shared by the kubelet (which starts and
//! stops containers) and the ingress data path (which connects to pods): a simulated pod answers
//! on its IP only while its container runs, like a process listening inside the pod's sandbox.
//! Local-process pods need no entry here: their port simply stops accepting connections.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Containers {
    running: Mutex<HashSet<String>>,
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
}
