//! The scheduler and the kubelets of the simulated nodes: bind pods, "run" their containers and
//! report status, steered by the image name (missing images fail to pull, crashing ones restart).

use crate::meta::Lookup;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::images::{self, ImagePod, PodIps, Runtime, Stage as ImageStage, StartFailure};
use super::log_write;
use super::processes::{self, LocalProcess};
use super::pull_secrets;
use super::scheduling;
use super::termination::{self, Action, Stage, Termination};
use crate::SimConfig;
use crate::containers::Containers;
use crate::logs::{ContainerLog, ContainerLogs};
use crate::meta;
use crate::registry::{DeleteOptions, PatchKind, Registry, WriteOptions};
use crate::resources::known;

pub const NODE_NAMES: [&str; 3] = ["sim-node-1", "sim-node-2", "sim-node-3"];
const KUBELET_VERSION: &str = "v1.34.0-eks-sim";
const CRASH_INTERVAL: Duration = Duration::from_secs(1);
const PULL_BACKOFF_AFTER: Duration = Duration::from_secs(1);

pub(super) fn node_object(name: &str, index: usize) -> Value {
    let now = meta::now_rfc3339();
    let condition = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "topology.kubernetes.io/zone": format!("sim-zone-{}", (b'a' + index as u8) as char),
            "node.kubernetes.io/instance-type": "t3.medium",
            "eks.amazonaws.com/nodegroup": "sim",
        }},
        "spec": {"providerID": format!("aws:///sim-zone/i-sim{index:012}"), "podCIDR": format!("192.168.{index}.0/24")},
        "status": {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "addresses": [{"type": "InternalIP", "address": format!("10.0.0.{}", index + 11)}, {"type": "Hostname", "address": name}],
            "capacity": {"cpu": "2", "memory": "3900Mi", "pods": "17"},
            "allocatable": {"cpu": "1930m", "memory": "3300Mi", "pods": "17"},
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION, "containerRuntimeVersion": "containerd://1.7.27", "operatingSystem": "linux", "architecture": "amd64", "osImage": "Amazon Linux 2023", "kernelVersion": "6.1.0", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    })
}

/// What the kubelet remembers about a pod it runs.
struct Running {
    started: Instant,
    restarts: i64,
    last_crash: Instant,
    /// Exit code and finish time of a local process's previous run (`lastState`).
    last_exit: Option<(i32, String)>,
}

pub(super) struct Kubelet {
    config: Arc<SimConfig>,
    running: HashMap<String, Running>,
    /// Pods whose images on private registries were pulled: the kubelet pulls once, so a running
    /// pod keeps running when its pull Secret goes (kuberuntime_image.go pulls at container start).
    pulled_private: std::collections::HashSet<String>,
    /// Local processes by pod uid; dropping one kills it.
    processes: HashMap<String, LocalProcess>,
    /// The output of the local processes, which the API server serves as the pods' logs.
    logs: Arc<ContainerLogs>,
    /// Simulated containers that answer requests, shared with the ingress data path.
    containers: Arc<Containers>,
    /// Pods being deleted, by uid.
    terminations: HashMap<String, Termination>,
    /// The container runtime for images from the local store (None without a store).
    runtime: Option<Runtime>,
    /// Pods run from an image, by uid.
    image_pods: HashMap<String, ImagePod>,
    /// Loopback IPs of the pods run from an image.
    pod_ips: PodIps,
    /// Whether containers can run as their own user, chrooted (the simulator runs as root).
    as_root: bool,
    /// How a pod's service account token reaches the API server.
    api: images::ApiAccess,
    /// The machines of nodes joined from the AWS emulator (their metadata services).
    machines: Arc<crate::cloud::Machines>,
    next_ip: u32,
    next_node: usize,
}

/// Current and last state of one container, given its spec.
type ContainerStateFn = Box<dyn Fn(&Value) -> (Value, Option<Value>)>;

#[derive(Clone, Copy)]
enum ImageBehaviour {
    Runs,
    Missing,
    Crashes,
    /// Runs as a local process (a [`crate::LocalCommand`] matches the image).
    Local,
    /// Runs from the local image store, as a local process on its own pod IP.
    Image,
}

/// Why a container is waiting: its reason and message.
type Waiting = (&'static str, String);

impl Kubelet {
    pub(super) fn new(
        config: Arc<SimConfig>,
        containers: Arc<Containers>,
        machines: Arc<crate::cloud::Machines>,
        api: images::ApiAccess,
        logs: Arc<ContainerLogs>,
    ) -> Self {
        let runtime = config
            .image_store
            .as_ref()
            .map(|dir| Runtime::new(crate::images::ImageStore::new(dir)));
        let as_root = crate::images::running_as_root();
        if runtime.is_some() && !as_root {
            tracing::info!(
                "not running as root: containers from images run without chroot (they see the host's files, their paths are host paths) and as the simulator's user"
            );
        }
        Self {
            config,
            running: HashMap::new(),
            pulled_private: std::collections::HashSet::new(),
            processes: HashMap::new(),
            logs,
            containers,
            terminations: HashMap::new(),
            runtime,
            image_pods: HashMap::new(),
            pod_ips: PodIps::default(),
            as_root,
            api,
            machines,
            next_ip: 10,
            next_node: 0,
        }
    }

    /// The image of the pod's first container in the local store, if it is there.
    fn stored_image(&self, pod: &Value) -> Option<crate::images::Resolved> {
        let image = pod.at("/spec/containers/0/image").and_then(Value::as_str)?;
        self.runtime.as_ref()?.store.resolve(image)
    }

    fn behaviour(&self, pod: &Value) -> ImageBehaviour {
        if self.image_pods.contains_key(meta::uid(pod)) || self.stored_image(pod).is_some() {
            return ImageBehaviour::Image;
        }
        let images: Vec<&str> = pod
            .at("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("image").and_then(Value::as_str))
            .collect();
        let any = |patterns: &[String]| {
            images.iter().any(|i| {
                patterns
                    .iter()
                    .any(|p| !p.is_empty() && i.contains(p.as_str()))
            })
        };
        if processes::command_for(&self.config.local_commands, pod).is_some() {
            ImageBehaviour::Local
        } else if any(&self.config.missing_image_patterns) {
            ImageBehaviour::Missing
        } else if any(&self.config.crashing_image_patterns) {
            ImageBehaviour::Crashes
        } else {
            ImageBehaviour::Runs
        }
    }

    /// Every pod bound to a node (its containers run, are probed, stop) or being deleted, every
    /// tick; an unbound pod (to schedule) when its namespace is in `scope`.
    pub(super) fn reconcile(&mut self, registry: &Registry, scope: &super::Scope) {
        let pods = registry
            .store
            .list_where(known::pods().key(), None, |p| {
                p.at("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty())
                    || meta::is_deleting(p)
                    || scope.covers(meta::namespace(p))
            })
            .0;
        let live: std::collections::HashSet<String> =
            pods.iter().map(|p| meta::uid(p).to_string()).collect();
        // Pods removed without the kubelet (force deletion, namespace cleanup): the sandbox goes.
        for uid in self.running.keys().filter(|u| !live.contains(*u)) {
            self.containers.stopped(uid);
            self.containers.listens_at(uid, None);
        }
        self.running.retain(|uid, _| live.contains(uid));
        self.pulled_private.retain(|uid| live.contains(uid));
        // Processes first, then their directories.
        self.processes.retain(|uid, _| live.contains(uid));
        self.logs.retain(|uid| live.contains(uid));
        self.image_pods.retain(|uid, _| live.contains(uid));
        self.pod_ips.retain(|uid| live.contains(uid));
        self.terminations.retain(|uid, _| live.contains(uid));
        let node_objects = registry.select(known::nodes(), None, None);
        let nodes: std::collections::HashSet<String> = node_objects
            .iter()
            .map(|n| meta::name(n).to_string())
            .collect();
        // `pods` holds every bound pod: what each node's pods request, for the scheduler.
        let mut usage = scheduling::usage(&pods);
        for pod in pods {
            let node = pod
                .at("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !node.is_empty() && !nodes.contains(node) {
                // The node (its machine, its kubelet) is gone: its containers with it; the pod
                // object stays until the pod garbage collector removes it.
                self.machine_gone(&pod);
                continue;
            }
            if meta::is_deleting(&pod) {
                self.terminate(registry, &pod);
                continue;
            }
            if node.is_empty() {
                self.schedule(registry, &pod, &node_objects, &mut usage);
                continue;
            }
            self.report_status(registry, &pod);
        }
    }

    /// The pod's containers stop with their machine, without a grace period.
    fn machine_gone(&mut self, pod: &Value) {
        let uid = meta::uid(pod);
        self.containers.stopped(uid);
        self.containers.listens_at(uid, None);
        self.processes.remove(uid);
    }

    /// Whether the pod's (first) container has stopped, or never ran.
    fn container_exited(&mut self, pod: &Value) -> bool {
        let uid = meta::uid(pod);
        match self.behaviour(pod) {
            ImageBehaviour::Local | ImageBehaviour::Image => self
                .processes
                .get_mut(uid)
                .is_none_or(|p| p.exited().is_some()),
            ImageBehaviour::Runs => !self.containers.is_running(uid),
            ImageBehaviour::Missing | ImageBehaviour::Crashes => true,
        }
    }

    fn signal(&mut self, pod: &Value, action: Action) {
        let uid = meta::uid(pod);
        match action {
            Action::None => {}
            // A simulated container exits at once on SIGTERM.
            Action::Terminate | Action::Kill => self.containers.stopped(uid),
        }
        if let Some(process) = self.processes.get_mut(uid) {
            match action {
                Action::Terminate => process.terminate(),
                Action::Kill => process.kill(),
                Action::None => {}
            }
        }
    }

    /// The kubelet's graceful termination of a deleted pod (see [`termination`]); the pod object
    /// goes once its containers have stopped.
    fn terminate(&mut self, registry: &Registry, pod: &Value) {
        let uid = meta::uid(pod).to_string();
        let now = Instant::now();
        if !self.terminations.contains_key(&uid) {
            let running = !self.container_exited(pod);
            if running {
                for message in termination::killing_messages(pod) {
                    event(registry, pod, "Normal", "Killing", &message, "kubelet");
                }
            }
            let (started, action) = Termination::begin(pod, running, now);
            self.terminations.insert(uid.clone(), started);
            self.signal(pod, action);
        }
        let exited = self.container_exited(pod);
        let Some(t) = self.terminations.get_mut(&uid) else {
            return;
        };
        let action = t.step(exited, now);
        let stopped = t.stage == Stage::Stopped;
        self.signal(pod, action);
        if !stopped {
            return;
        }
        // status_manager.go: the kubelet deletes the pod object once its containers are gone.
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: Some(uid.clone()),
            ..DeleteOptions::default()
        };
        if log_write(
            "delete terminated pod",
            registry.delete(known::pods(), meta::namespace(pod), meta::name(pod), &opts),
        )
        .is_some()
        {
            self.containers.stopped(&uid);
            self.processes.remove(&uid);
            self.image_pods.remove(&uid);
            self.terminations.remove(&uid);
        }
    }

    /// Pod uid → 127.0.0.1 port of each running local command (pods run from an image serve on
    /// their own IP and container port instead).
    pub(super) fn local_ports(&self) -> HashMap<String, u16> {
        self.processes
            .iter()
            .filter_map(|(uid, p)| Some((uid.clone(), p.local_port()?)))
            .collect()
    }

    /// Starts the pod's image pull on first sight and notices its end; records the pull
    /// failure's events.
    fn advance_image(&mut self, registry: &Registry, pod: &Value) {
        let uid = meta::uid(pod);
        if !self.image_pods.contains_key(uid) {
            let (Some(runtime), Some(resolved)) = (self.runtime.as_ref(), self.stored_image(pod))
            else {
                return;
            };
            self.image_pods
                .insert(uid.to_string(), runtime.pull(uid, resolved));
        }
        let Some(image_pod) = self.image_pods.get_mut(uid) else {
            return;
        };
        let ImageStage::Pulling(task) = &mut image_pod.stage else {
            return;
        };
        if !task.is_finished() {
            return;
        }
        let outcome = futures::FutureExt::now_or_never(task);
        let image = pod
            .at("/spec/containers/0/image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        image_pod.stage = match outcome {
            Some(Ok(Ok(unpacked))) => ImageStage::Pulled(Box::new(unpacked)),
            Some(Ok(Err(e))) => {
                let message = format!("failed to pull and unpack image {image:?}: {e}");
                tracing::warn!(pod = meta::name(pod), %message, "image pull failed");
                event(
                    registry,
                    pod,
                    "Warning",
                    "Failed",
                    &format!("Failed to pull image {image:?}: {message}"),
                    "kubelet",
                );
                ImageStage::Failed(message)
            }
            Some(Err(e)) => ImageStage::Failed(format!("image pull interrupted: {e}")),
            None => return,
        };
    }

    /// Starts the pod's container: its local command, or its image's program.
    fn start_container(
        &mut self,
        registry: &Registry,
        pod: &Value,
    ) -> Option<Result<LocalProcess, Waiting>> {
        let uid = meta::uid(pod);
        let imds = self.imds_endpoint(pod);
        let output = Arc::new(ContainerLog::new(2));
        let Some(image_pod) = self.image_pods.get_mut(uid) else {
            let command = processes::command_for(&self.config.local_commands, pod)?;
            return Some(
                LocalProcess::spawn(command, registry, pod, imds.as_deref(), output)
                    .map_err(|e| ("RunContainerError", e.to_string())),
            );
        };
        let ImageStage::Pulled(unpacked) = &image_pod.stage else {
            return None;
        };
        let Some(ip) = self.pod_ips.allocate(uid) else {
            return Some(Err(("RunContainerError", "no free pod IP".into())));
        };
        let token = images::service_account(registry, pod).map(|account| {
            image_pod
                .token
                .get_or_insert_with(|| {
                    images::BoundToken::issue(&self.api, meta::namespace(pod), &account)
                })
                .token()
                .to_string()
        });
        let volume = token.as_deref().map(|token| (token, &self.api));
        let launch = match images::launch(unpacked, registry, pod, ip, self.as_root, volume) {
            Ok(mut launch) => {
                if let Some(endpoint) = &imds {
                    processes::reach_metadata_service(&mut launch, endpoint);
                }
                launch
            }
            Err(StartFailure::Config(message)) => {
                // kuberuntime_container.go startContainer: a Failed event "Error: <err>".
                if image_pod.config_error.as_ref() != Some(&message) {
                    event(
                        registry,
                        pod,
                        "Warning",
                        "Failed",
                        &format!("Error: {message}"),
                        "kubelet",
                    );
                    image_pod.config_error = Some(message.clone());
                }
                return Some(Err(("CreateContainerConfigError", message)));
            }
            Err(StartFailure::Run(message)) => return Some(Err(("RunContainerError", message))),
        };
        image_pod.config_error = None;
        Some(
            LocalProcess::start(launch, pod, output)
                .map_err(|e| ("RunContainerError", e.to_string())),
        )
    }

    /// The node's metadata service for a pod that could reach it on EC2 (see
    /// [`crate::cloud::Machines::imds_endpoint`]).
    fn imds_endpoint(&self, pod: &Value) -> Option<String> {
        let node = pod.at("/spec/nodeName").and_then(Value::as_str)?;
        self.machines.imds_endpoint(node, host_network(pod))
    }

    /// Keeps the pod's local process running: starts it (again, after a back-off when it
    /// exited, remembering the exit code). Returns (ready, Some(why) when it cannot start).
    fn supervise(
        &mut self,
        registry: &Registry,
        pod: &Value,
        now: Instant,
    ) -> (bool, Option<Waiting>) {
        let uid = meta::uid(pod).to_string();
        if let Some(process) = self.processes.get_mut(&uid) {
            let Some(code) = process.exited() else {
                return (process.ready(), None);
            };
            self.processes.remove(&uid);
            if let Some(r) = self.running.get_mut(&uid) {
                r.restarts += 1;
                r.last_crash = now;
                r.last_exit = Some((code, meta::now_rfc3339()));
            }
            return (false, None);
        }
        let backoff_over = self
            .running
            .get(&uid)
            .is_none_or(|r| r.restarts == 0 || now.duration_since(r.last_crash) >= CRASH_INTERVAL);
        if !backoff_over {
            return (false, None);
        }
        match self.start_container(registry, pod) {
            Some(Ok(process)) => {
                let instance = self.running.get(&uid).map_or(0, |r| r.restarts);
                self.logs.keep(
                    &uid,
                    first_container(pod),
                    &container_id(&uid, instance),
                    process.output(),
                );
                self.processes.insert(uid, process);
                (false, None)
            }
            Some(Err(waiting)) => (false, Some(waiting)),
            None => (false, None),
        }
    }

    /// Binds a pod to a Ready, schedulable node that it tolerates, round-robin, as a scheduler
    /// with an empty cluster would spread them; with none, the pod stays Pending with the
    /// scheduler's reason (schedule_one.go handleSchedulingFailure: a FailedScheduling Event
    /// and the PodScheduled condition False, reason Unschedulable).
    /// Binds the pod to a node it fits on (counting it in `usage`), or says why none fits.
    fn schedule(
        &mut self,
        registry: &Registry,
        pod: &Value,
        node_objects: &[Value],
        usage: &mut scheduling::Usage,
    ) {
        let nodes = match scheduling::feasible_nodes(node_objects, usage, pod) {
            Ok(nodes) => nodes,
            Err(message) => {
                unschedulable(registry, pod, &message);
                return;
            }
        };
        let node = nodes[self.next_node % nodes.len()].as_str();
        self.next_node += 1;
        let patch = json!({"spec": {"nodeName": node}}).to_string();
        if log_write(
            "bind pod",
            registry.patch(
                known::pods(),
                meta::namespace(pod),
                meta::name(pod),
                PatchKind::Merge,
                patch.as_bytes(),
                None,
                &WriteOptions::controller("default-scheduler"),
            ),
        )
        .is_some()
        {
            usage.entry(node.to_string()).or_default().add(pod);
            event(
                registry,
                pod,
                "Normal",
                "Scheduled",
                &format!(
                    "Successfully assigned {}/{} to {node}",
                    meta::namespace(pod),
                    meta::name(pod)
                ),
                "default-scheduler",
            );
        }
    }

    fn report_status(&mut self, registry: &Registry, pod: &Value) {
        let uid = meta::uid(pod).to_string();
        let now = Instant::now();
        let first_seen = !self.running.contains_key(&uid);
        let mut behaviour = self.behaviour(pod);
        // A pod run from an image: still pulling (None) or failed to pull (Some(message)).
        let mut not_pulled: Option<Option<String>> = None;
        // An image that must be pulled (not in the node's store, not a local command) from a
        // private registry needs the registry's login among the pod's pull Secrets.
        if matches!(
            behaviour,
            ImageBehaviour::Runs | ImageBehaviour::Crashes | ImageBehaviour::Missing
        ) && !self.pulled_private.contains(&uid)
        {
            match pull_secrets::pull_refused(&self.config.private_registries, registry, pod) {
                Some(message) => {
                    behaviour = ImageBehaviour::Missing;
                    not_pulled = Some(Some(message));
                }
                None if !self.config.private_registries.is_empty() => {
                    self.pulled_private.insert(uid.clone());
                }
                None => {}
            }
        }
        if matches!(behaviour, ImageBehaviour::Runs) {
            self.containers.started(&uid);
        }
        if matches!(behaviour, ImageBehaviour::Image) {
            self.advance_image(registry, pod);
            self.pod_ips.allocate(&uid);
            match self.image_pods.get(&uid).map(|p| &p.stage) {
                Some(ImageStage::Pulled(_)) => {}
                Some(ImageStage::Failed(message)) => not_pulled = Some(Some(message.clone())),
                Some(ImageStage::Pulling(_)) | None => not_pulled = Some(None),
            }
        }
        let local = match behaviour {
            ImageBehaviour::Local | ImageBehaviour::Image if not_pulled.is_none() => {
                self.running.entry(uid.clone()).or_insert(Running {
                    started: now,
                    restarts: 0,
                    last_crash: now,
                    last_exit: None,
                });
                Some(self.supervise(registry, pod, now))
            }
            _ => None,
        };
        let entry = self.running.entry(uid.clone()).or_insert(Running {
            started: now,
            restarts: 0,
            last_crash: now,
            last_exit: None,
        });
        let node = pod
            .at("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let host_ip = registry
            .try_get(known::nodes(), "", &node)
            .as_ref()
            .and_then(internal_ip)
            .unwrap_or_default();
        let image_ip = self.pod_ips.get(&uid);
        let on_host_network = host_network(pod);
        if on_host_network {
            let listening = image_ip.map(std::net::IpAddr::V4).or_else(|| {
                local
                    .is_some()
                    .then_some(std::net::IpAddr::from([127, 0, 0, 1]))
            });
            self.containers.listens_at(&uid, listening);
        }
        let image_id = self
            .image_pods
            .get(&uid)
            .map(|p| p.resolved.image_id.clone())
            .unwrap_or_default();
        let pod_ip = match pod.at("/status/podIP").and_then(Value::as_str) {
            // A pod on the host's network has the node's address (its process still listens on
            // a loopback address here: see Containers::listens_at).
            _ if on_host_network && !host_ip.is_empty() => host_ip.clone(),
            _ if image_ip.is_some() => image_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            _ if local.is_some() => "127.0.0.1".to_string(),
            Some(ip) => ip.to_string(),
            None => {
                self.next_ip += 1;
                format!(
                    "192.168.{}.{}",
                    self.next_ip / 250 % 250,
                    self.next_ip % 250 + 2
                )
            }
        };
        let previous = pod.get("status").cloned().unwrap_or(json!({}));
        let start_time = previous
            .get("startTime")
            .cloned()
            .unwrap_or(json!(meta::now_rfc3339()));
        let containers: Vec<Value> = pod
            .at("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let age = now.duration_since(entry.started);

        let (phase, ready, state_of): (&str, bool, ContainerStateFn) = match (behaviour, local) {
            (ImageBehaviour::Local | ImageBehaviour::Image, Some((ready, failure))) => {
                let started_at = start_time.clone();
                let last_id = container_id(&uid, entry.restarts - 1);
                let last = entry.last_exit.clone().map(|(code, finished)| {
                    json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": started_at.clone(), "finishedAt": finished, "containerID": last_id}})
                });
                let crashed = entry.restarts > 0 && !self.processes.contains_key(&uid);
                // A container the kubelet never created leaves the pod Pending.
                let phase = match &failure {
                    Some(("CreateContainerConfigError", _)) if entry.restarts == 0 => "Pending",
                    _ => "Running",
                };
                (
                    phase,
                    ready,
                    Box::new(move |c| {
                        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                        let state = if let Some((reason, message)) = &failure {
                            json!({"waiting": {"reason": reason, "message": message}})
                        } else if crashed {
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {name}")}})
                        } else {
                            json!({"running": {"startedAt": started_at}})
                        };
                        (state, last.clone())
                    }),
                )
            }
            (ImageBehaviour::Image, None) if matches!(not_pulled, Some(None)) => (
                "Pending",
                false,
                Box::new(|_c| (json!({"waiting": {"reason": "ContainerCreating"}}), None)),
            ),
            (ImageBehaviour::Runs | ImageBehaviour::Local, _) => {
                let ready = age >= self.config.readiness_delay;
                let started_at = start_time.clone();
                (
                    "Running",
                    ready,
                    Box::new(move |_c| (json!({"running": {"startedAt": started_at}}), None)),
                )
            }
            (ImageBehaviour::Missing | ImageBehaviour::Image, _) => {
                let pull_error = not_pulled.clone().flatten();
                let reason = if age < PULL_BACKOFF_AFTER {
                    "ErrImagePull"
                } else {
                    "ImagePullBackOff"
                };
                (
                    "Pending",
                    false,
                    Box::new(move |c| {
                        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                        let message = if reason == "ErrImagePull" {
                            pull_error.clone().unwrap_or_else(|| {
                                format!("failed to pull and unpack image {image:?}: not found")
                            })
                        } else {
                            format!("Back-off pulling image {image:?}")
                        };
                        (
                            json!({"waiting": {"reason": reason, "message": message}}),
                            None,
                        )
                    }),
                )
            }
            (ImageBehaviour::Crashes, _) => {
                if now.duration_since(entry.last_crash) >= CRASH_INTERVAL {
                    entry.restarts += 1;
                    entry.last_crash = now;
                }
                let finished = meta::now_rfc3339();
                (
                    "Running",
                    false,
                    Box::new(move |c| {
                        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                        (
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off restarting failed container {name}")}}),
                            Some(
                                json!({"terminated": {"exitCode": 1, "reason": "Error", "startedAt": finished, "finishedAt": finished}}),
                            ),
                        )
                    }),
                )
            }
        };
        let restarts = entry.restarts;
        // The latest instance the runtime created: the running one, or the one that exited.
        let latest_id = if self.processes.contains_key(&uid) {
            container_id(&uid, restarts)
        } else {
            container_id(&uid, (restarts - 1).max(0))
        };
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                let (state, last) = state_of(c);
                let image = c.get("image").cloned().unwrap_or(Value::Null);
                let mut s = json!({
                    "name": c.get("name").cloned().unwrap_or(Value::Null),
                    "image": image,
                    "imageID": &image_id,
                    "ready": ready,
                    "started": state.get("running").is_some(),
                    "restartCount": restarts,
                    "state": state,
                    "lastState": last.unwrap_or(json!({})),
                });
                match behaviour {
                    ImageBehaviour::Runs => {
                        s["containerID"] = json!(format!(
                            "containerd://{}",
                            meta::fnv32(meta::uid(pod).as_bytes())
                        ));
                    }
                    ImageBehaviour::Local | ImageBehaviour::Image => {
                        s["containerID"] = json!(latest_id);
                    }
                    _ => {}
                }
                s
            })
            .collect();
        let transition = |t: &str, status: bool| {
            let status = if status { "True" } else { "False" };
            let prev = previous
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == t).cloned());
            let time = prev
                .filter(|p| p["status"] == status)
                .and_then(|p| p.get("lastTransitionTime").cloned())
                .unwrap_or(json!(meta::now_rfc3339()));
            json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": time})
        };
        let mut status = json!({
            "phase": phase,
            "conditions": [
                transition("PodReadyToStartContainers", true),
                transition("Initialized", true),
                transition("Ready", ready),
                transition("ContainersReady", ready),
                transition("PodScheduled", true),
            ],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": start_time,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        if !ready {
            let reason = "ContainersNotReady";
            for c in status["conditions"].as_array_mut().into_iter().flatten() {
                if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                    c["reason"] = json!(reason);
                    let names: Vec<&str> = containers
                        .iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str))
                        .collect();
                    c["message"] = json!(format!(
                        "containers with unready status: [{}]",
                        names.join(" ")
                    ));
                }
            }
        }
        if status == previous {
            return;
        }
        let became_ready = ready && !crate::controllers::pod_ready(pod);
        let mut next = pod.clone();
        next["status"] = status;
        if log_write(
            "pod status",
            registry.update(
                known::pods(),
                meta::namespace(pod),
                meta::name(pod),
                next,
                Some("status"),
                &WriteOptions::controller("kubelet"),
            ),
        )
        .is_none()
        {
            return;
        }
        let image = containers
            .first()
            .and_then(|c| c.get("image"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match behaviour {
            ImageBehaviour::Runs | ImageBehaviour::Local | ImageBehaviour::Image if first_seen => {
                event(
                    registry,
                    pod,
                    "Normal",
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                    "kubelet",
                );
                event(
                    registry,
                    pod,
                    "Normal",
                    "Started",
                    "Started container",
                    "kubelet",
                );
            }
            ImageBehaviour::Missing => {
                if first_seen {
                    event(
                        registry,
                        pod,
                        "Normal",
                        "Pulling",
                        &format!("Pulling image {image:?}"),
                        "kubelet",
                    );
                    event(
                        registry,
                        pod,
                        "Warning",
                        "Failed",
                        &format!("Failed to pull image {image:?}: not found"),
                        "kubelet",
                    );
                } else {
                    event(
                        registry,
                        pod,
                        "Warning",
                        "BackOff",
                        &format!("Back-off pulling image {image:?}"),
                        "kubelet",
                    );
                }
            }
            ImageBehaviour::Crashes => event(
                registry,
                pod,
                "Warning",
                "BackOff",
                "Back-off restarting failed container",
                "kubelet",
            ),
            _ => {}
        }
        let _ = became_ready;
    }
}

/// The containerID of the pod's container's `instance`-th start: the runtime gives every
/// container it creates an id of its own, and the kubelet finds a container's log by it.
fn container_id(uid: &str, instance: i64) -> String {
    format!(
        "containerd://{:08x}",
        meta::fnv32(format!("{uid}/{instance}").as_bytes())
    )
}

/// The name of the pod's first container, the one that runs as a local process.
fn first_container(pod: &Value) -> &str {
    pod.at("/spec/containers/0/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the pod uses the node's network namespace.
fn host_network(pod: &Value) -> bool {
    pod.at("/spec/hostNetwork").and_then(Value::as_bool) == Some(true)
}

/// A Node's InternalIP address.
fn internal_ip(node: &Value) -> Option<String> {
    node.at("/status/addresses")
        .and_then(Value::as_array)?
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .map(str::to_string)
}

/// A pod no node fits: Pending, PodScheduled False (Unschedulable) with the scheduler's
/// message, and a FailedScheduling Event, written when the message changes.
fn unschedulable(registry: &Registry, pod: &Value, message: &str) {
    let condition = pod
        .at("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"));
    if condition.is_some_and(|c| c["status"] == "False" && c["message"] == message) {
        return;
    }
    let mut next = pod.clone();
    next["status"] = json!({
        "phase": "Pending",
        "conditions": [{
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": null,
            "lastTransitionTime": meta::now_rfc3339(),
        }],
        "qosClass": pod.at("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
    });
    if log_write(
        "pod scheduling condition",
        registry.update(
            known::pods(),
            meta::namespace(pod),
            meta::name(pod),
            next,
            Some("status"),
            &WriteOptions::controller("default-scheduler"),
        ),
    )
    .is_some()
    {
        event(
            registry,
            pod,
            "Warning",
            "FailedScheduling",
            message,
            "default-scheduler",
        );
    }
}

/// Records an Event about `obj`; repeats of the same reason update one Event and bump its count.
pub(super) fn event(
    registry: &Registry,
    obj: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let ns = match meta::namespace(obj) {
        "" => "default",
        ns => ns,
    };
    let name = format!("{}.{}", meta::name(obj), reason.to_ascii_lowercase());
    let now = meta::now_rfc3339();
    let opts = WriteOptions::controller(component);
    match registry.try_get(known::events(), ns, &name) {
        Some(mut existing) => {
            let count = existing.get("count").and_then(Value::as_i64).unwrap_or(1);
            if existing.get("message").and_then(Value::as_str) == Some(message)
                && existing.get("lastTimestamp").and_then(Value::as_str) == Some(now.as_str())
            {
                return;
            }
            existing["count"] = json!(count + 1);
            existing["lastTimestamp"] = json!(now);
            existing["message"] = json!(message);
            log_write(
                "update event",
                registry.update(known::events(), ns, &name, existing, None, &opts),
            );
        }
        None => {
            let event = json!({
                "metadata": {"name": name},
                "involvedObject": {
                    "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
                    "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
                    "namespace": meta::namespace(obj),
                    "name": meta::name(obj),
                    "uid": meta::uid(obj),
                },
                "reason": reason,
                "message": message,
                "type": kind,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": component},
                "reportingComponent": component,
                "reportingInstance": "",
            });
            log_write(
                "create event",
                registry.create(known::events(), ns, event, &opts),
            );
        }
    }
}
