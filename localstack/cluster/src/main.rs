//! `cluster-sim`: runs the simulator on fixed ports and writes a kubeconfig for kubectl.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use cluster::{AwsJoin, ClusterSim, LocalCommand, SimConfig, TlsIdentity};

#[derive(Parser, Debug)]
#[command(about = "Local Kubernetes cluster simulator (API server, controllers, ingress)")]
struct Args {
    /// API server port on 127.0.0.1.
    #[arg(long, default_value_t = 6443, env = "CLUSTER_SIM_PORT")]
    port: u16,
    /// Ingress port on 127.0.0.1.
    #[arg(long, default_value_t = 8080, env = "CLUSTER_SIM_INGRESS_PORT")]
    ingress_port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "cluster-sim.kubeconfig")]
    kubeconfig: PathBuf,
    /// Admin bearer token (random when omitted).
    #[arg(long, env = "CLUSTER_SIM_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Milliseconds a pod takes to become Ready.
    #[arg(long, default_value_t = 1000)]
    readiness_delay_ms: u64,
    /// Seconds an EKS token (presigned STS URL) is accepted after its X-Amz-Date; 900 as on EKS
    /// (aws-iam-authenticator's presignedURLExpiration).
    #[arg(long, default_value_t = 900)]
    eks_token_lifetime_secs: u64,
    /// Require a bearer token on every request (kubectl sends none over plain HTTP, so off by
    /// default; always on with --tls).
    #[arg(long)]
    require_token: bool,
    /// Serve the API over HTTPS, as kube-apiserver does, with a cluster CA made at start-up (in
    /// the kubeconfig's certificate-authority-data). With --aws-endpoint, the emulator then
    /// reports this API server and its CA as the EKS cluster's endpoint in DescribeCluster, so the
    /// provisioner and `provisioner kubeconfig` reach it as they reach EKS.
    #[arg(long)]
    tls: bool,
    /// Milliseconds between an Endpoints change and the ingress using it (NIC's propagation
    /// delay on a real cluster); 0 turns the delay off.
    #[arg(long, default_value_t = 1000)]
    endpoint_propagation_ms: u64,
    /// Run pods of an image as a local process: `IMAGE_PREFIX=PROGRAM ARG...` (split on
    /// whitespace; `{port}` in an argument becomes the pod's port, also passed as `PORT`). Repeatable.
    #[arg(long = "local-command", value_parser = parse_local_command)]
    local_commands: Vec<LocalCommand>,
    /// A private registry, `host=username:password`: pulls from it need that login in the pod's
    /// imagePullSecrets (repeatable).
    #[arg(long = "private-registry")]
    private_registries: Vec<cluster::RegistryLogin>,
    /// An OCI image layout directory: pods of images found there run the image's program
    /// (entrypoint, command, env, user) on a loopback pod IP of their own.
    #[arg(long, env = "CLUSTER_SIM_IMAGE_STORE")]
    image_store: Option<PathBuf>,
    /// The AWS emulator's URL: nodes then join from the running instances of --eks-cluster
    /// (whose user data and role let a kubelet join) instead of three fixed nodes.
    #[arg(long, requires = "eks_cluster")]
    aws_endpoint: Option<String>,
    /// The EKS cluster (in the emulator) whose instances become the nodes.
    #[arg(long, requires = "aws_endpoint")]
    eks_cluster: Option<String>,
    /// The region of the cluster and its instances.
    #[arg(long, default_value = "ap-northeast-2")]
    aws_region: String,
    /// Milliseconds between two reads of the instances and the cluster.
    #[arg(long, default_value_t = 1000)]
    aws_poll_ms: u64,
}

fn parse_local_command(spec: &str) -> Result<LocalCommand, String> {
    let (prefix, command) = spec
        .split_once('=')
        .ok_or_else(|| format!("expected IMAGE_PREFIX=PROGRAM ARG..., got {spec:?}"))?;
    let mut words = command.split_whitespace().map(str::to_string);
    let program = words
        .next()
        .ok_or_else(|| format!("no program after '=' in {spec:?}"))?;
    Ok(LocalCommand {
        image_prefix: prefix.to_string(),
        program,
        args: words.collect(),
    })
}

/// The kubeconfig holds the admin token: owner-only (0600) from its first byte, written to a fresh
/// temporary file and renamed over the old one, as kubectl writes kubeconfigs.
fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("kdeploy-tmp");
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let announce = args
        .aws_endpoint
        .clone()
        .zip(args.eks_cluster.clone())
        .filter(|_| args.tls);
    let config = SimConfig {
        api_port: args.port,
        ingress_port: args.ingress_port,
        admin_token: args.admin_token,
        readiness_delay: Duration::from_millis(args.readiness_delay_ms),
        eks_token_lifetime: Duration::from_secs(args.eks_token_lifetime_secs),
        anonymous_is_admin: !args.require_token && !args.tls,
        tls: args.tls.then(TlsIdentity::generate).transpose()?,
        local_commands: args.local_commands,
        private_registries: args.private_registries,
        endpoint_propagation_delay: Duration::from_millis(args.endpoint_propagation_ms),
        image_store: args.image_store,
        aws: args
            .aws_endpoint
            .zip(args.eks_cluster)
            .map(|(endpoint, cluster_name)| AwsJoin {
                endpoint,
                region: args.aws_region,
                cluster_name,
                poll_interval: Duration::from_millis(args.aws_poll_ms),
            }),
        ..SimConfig::default()
    };
    let sim = ClusterSim::start(config).await?;
    if let Some((endpoint, cluster)) = announce {
        sim.announce_to_emulator(&endpoint, &cluster).await?;
    }
    write_private(&args.kubeconfig, sim.kubeconfig_yaml()?.as_bytes())?;
    tracing::info!(api = %sim.api_url(), ingress = %sim.ingress_url(), kubeconfig = %args.kubeconfig.display(), "ready; Ctrl-C stops");
    // SIGTERM too (what `kill` and the justfile's trap send): dropping the simulator stops the
    // pods' local processes, which would otherwise outlive it.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    drop(sim);
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
