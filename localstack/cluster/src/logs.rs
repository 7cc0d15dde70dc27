//! What the container runtime keeps of the containers' output, shared by the kubelet (whose
//! local processes write it) and the API server (which serves the pod `log` subresource).
//!
//! The kubelet has the runtime write each container's stdout and stderr, interleaved, one
//! timestamped entry per line (the CRI log format), into a file rotated at `containerLogMaxSize`,
//! 10 MiB by default (kubelet configuration reference, KubeletConfiguration
//! `containerLogMaxSize`: <https://kubernetes.io/docs/reference/config-api/kubelet-config.v1beta1/>),
//! and keeps the last dead instance of each container (the `previous` logs). Here each
//! container instance keeps its lines in memory, the oldest dropped once they exceed
//! [`MAX_BYTES_PER_CONTAINER`]; instances are found by their containerID, as the kubelet finds
//! the log file from the containerID of the pod's status (pkg/kubelet/kubelet_pods.go
//! `validateContainerLogStatus`), and the current and the previous instance of a container are
//! kept.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The bound of one instance's kept output: the kubelet's default `containerLogMaxSize` (10 MiB).
pub const MAX_BYTES_PER_CONTAINER: usize = 10 * 1024 * 1024;

/// Lines longer than this are split into several entries, as containerd's CRI plugin splits
/// lines longer than `max_container_log_line_size` (16384 by default) into partial entries
/// (the CRI log format's `P` tag).
pub const MAX_LINE: usize = 16 * 1024;

/// One entry: what the container printed up to and including a newline (or the partial last
/// line), and when the runtime read it.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub at: SystemTime,
    pub text: Vec<u8>,
}

#[derive(Default)]
struct Kept {
    lines: VecDeque<LogLine>,
    bytes: usize,
    /// Sequence number of `lines[0]`; entry `first + i` is `lines[i]`.
    first: u64,
    /// Writers (the stdout and stderr readers) still open.
    writers: usize,
}

/// The output of one container instance.
pub struct ContainerLog {
    kept: Mutex<Kept>,
    /// The sequence number after the last entry, and whether output has ended (sent on every
    /// change, so followers wake up).
    changed: tokio::sync::watch::Sender<(u64, bool)>,
}

impl ContainerLog {
    /// An instance whose output comes from `writers` streams (stdout and stderr: 2).
    pub fn new(writers: usize) -> Self {
        Self {
            kept: Mutex::new(Kept {
                writers,
                ..Kept::default()
            }),
            changed: tokio::sync::watch::Sender::new((0, writers == 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps one entry, dropping the oldest ones beyond [`MAX_BYTES_PER_CONTAINER`].
    pub fn append(&self, text: Vec<u8>) {
        let mut kept = self.lock();
        kept.bytes += text.len();
        kept.lines.push_back(LogLine {
            at: SystemTime::now(),
            text,
        });
        while kept.bytes > MAX_BYTES_PER_CONTAINER {
            let Some(old) = kept.lines.pop_front() else {
                break;
            };
            kept.bytes -= old.text.len();
            kept.first += 1;
        }
        let state = (kept.first + kept.lines.len() as u64, kept.writers == 0);
        drop(kept);
        self.changed.send_replace(state);
    }

    /// One of the streams has closed; when all have, the output has ended.
    pub fn writer_done(&self) {
        let mut kept = self.lock();
        kept.writers = kept.writers.saturating_sub(1);
        let state = (kept.first + kept.lines.len() as u64, kept.writers == 0);
        drop(kept);
        self.changed.send_replace(state);
    }

    /// The entries from sequence number `from` on (from the oldest kept one when `from` was
    /// dropped), the sequence number after them, and whether the output has ended.
    pub fn read_from(&self, from: u64) -> (Vec<LogLine>, u64, bool) {
        let kept = self.lock();
        let start = from.saturating_sub(kept.first) as usize;
        let lines: Vec<LogLine> = kept.lines.iter().skip(start).cloned().collect();
        (
            lines,
            kept.first + kept.lines.len() as u64,
            kept.writers == 0,
        )
    }

    /// Notified on every new entry and at the end of the output.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<(u64, bool)> {
        self.changed.subscribe()
    }
}

struct Instance {
    container: String,
    container_id: String,
    log: Arc<ContainerLog>,
}

/// The kept output of every container instance, by pod uid.
#[derive(Default)]
pub struct ContainerLogs {
    pods: Mutex<HashMap<String, Vec<Instance>>>,
}

impl ContainerLogs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Instance>>> {
        self.pods.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `log`, the output of the new instance `container_id` of `container` in pod `uid`;
    /// of the earlier instances only the last one is kept (the kubelet keeps one dead container
    /// per container: `MaxPerPodContainer` 1).
    pub fn keep(&self, uid: &str, container: &str, container_id: &str, log: Arc<ContainerLog>) {
        let mut pods = self.lock();
        let instances = pods.entry(uid.to_string()).or_default();
        while instances
            .iter()
            .filter(|i| i.container == container)
            .count()
            >= 2
        {
            // Entries are in start order: the first of the container is its oldest.
            if let Some(pos) = instances.iter().position(|i| i.container == container) {
                instances.remove(pos);
            }
        }
        instances.push(Instance {
            container: container.to_string(),
            container_id: container_id.to_string(),
            log,
        });
    }

    /// The output of the instance `container_id` of `container` in pod `uid`, if it was kept.
    pub fn find(
        &self,
        uid: &str,
        container: &str,
        container_id: &str,
    ) -> Option<Arc<ContainerLog>> {
        self.lock()
            .get(uid)?
            .iter()
            .find(|i| i.container == container && i.container_id == container_id)
            .map(|i| i.log.clone())
    }

    /// Forgets the output of pods that are gone (the kubelet removes their log directories).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.lock().retain(|uid, _| live(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_beyond_the_bound_drops_the_oldest_lines() {
        let log = ContainerLog::new(1);
        let line = vec![b'x'; 1024 * 1024];
        for _ in 0..12 {
            log.append(line.clone());
        }
        let (lines, next, ended) = log.read_from(0);
        assert_eq!(lines.len(), 10);
        assert_eq!(next, 12);
        assert!(!ended);
        log.writer_done();
        assert!(log.read_from(11).2);
        assert_eq!(log.read_from(11).0.len(), 1);
    }

    #[test]
    fn only_the_current_and_the_previous_instance_are_kept() {
        let logs = ContainerLogs::default();
        for id in ["a", "b", "c"] {
            let log = Arc::new(ContainerLog::new(2));
            log.append(id.as_bytes().to_vec());
            logs.keep("uid", "app", id, log);
        }
        logs.keep("uid", "sidecar", "s", Arc::new(ContainerLog::new(2)));
        assert!(logs.find("uid", "app", "a").is_none());
        assert!(logs.find("uid", "app", "b").is_some());
        assert!(logs.find("uid", "app", "c").is_some());
        assert!(logs.find("uid", "sidecar", "s").is_some());
        logs.retain(|_| false);
        assert!(logs.find("uid", "app", "c").is_none());
    }
}
