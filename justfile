# Recipes for developing the platform. `./dev <recipe>` sets up the tools first; `just` alone lists.

set shell := ["bash", "-euo", "pipefail", "-c"]
set export

# Never let the AWS SDK probe the instance metadata address from a developer machine or CI.
AWS_EC2_METADATA_DISABLED := "true"
CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/kdeploy-target")
aws_port := env_var_or_default("LOCAL_AWS_PORT", "5000")
kube_port := env_var_or_default("LOCAL_KUBE_PORT", "6443")
ingress_port := env_var_or_default("LOCAL_INGRESS_PORT", "8080")
# The deploy site's image is built by `provisioner up` from this static binary (`just site-binary`),
# pushed to the emulated ECR and also written to this OCI image layout, from which the simulator runs
# the site's pods.
site_target := "x86_64-unknown-linux-musl"
site_binary := CARGO_TARGET_DIR / site_target / "site/web"
image_store := ".local/oci"
# Empty: moto answers at once. `fast` or `realistic`: the realistic front (see localstack/aws/src/front).
aws_profile := env_var_or_default("LOCAL_AWS_PROFILE", "")
profile_flag := if aws_profile == "" { "" } else { "--profile " + aws_profile }
bin := CARGO_TARGET_DIR / "debug"

# List the recipes.
default:
    @"{{just_executable()}}" --list --unsorted

# Build every crate.
build:
    cargo build --workspace --bins

# Only what `up` runs: the emulator, the simulator and the provisioner (the site runs from its image).
build-stack:
    cargo build -p aws -p cluster -p provisioner --bins

# The deploy site's static binary for its image: x86_64 musl, cargo profile `site` (release, stripped).
site-binary:
    if [ "$(uname -sm)" = "Linux x86_64" ]; then \
        cargo build --profile site --target {{site_target}} -p web --bin web; \
    else \
        PATH="$PWD/.venv/bin:$PATH" cargo zigbuild --profile site --target {{site_target}} -p web --bin web; \
    fi

# Run every test: unit tests and the provisioner against the local AWS emulator.
test: site-binary
    if cargo nextest --version >/dev/null 2>&1; then \
        cargo nextest run --workspace --no-fail-fast; \
    else \
        cargo test --workspace --no-fail-fast; \
    fi

# Formatting and clippy, as CI expects them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Run the local AWS emulator in the foreground on 127.0.0.1:5000 ($LOCAL_AWS_PORT, $LOCAL_AWS_PROFILE).
aws: build-stack
    "{{bin}}/localstack" aws --port {{aws_port}} {{profile_flag}}

# Everything locally: AWS emulator, cluster simulator, `provisioner up` against both; Ctrl-C stops it.
up: build-stack site-binary
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p .local {{image_store}}
    until_true() { # a test command, then the pids that must stay alive meanwhile
        local check=$1; shift
        for _ in $(seq 1 120); do
            if eval "$check" 2>/dev/null; then return 0; fi
            kill -0 "$@" 2>/dev/null || { echo "the local stack did not start" >&2; exit 1; }
            sleep 0.5
        done
        echo "the local stack did not start: $check" >&2; exit 1
    }
    "{{bin}}/localstack" aws --port {{aws_port}} {{profile_flag}} &
    emulator=$!
    trap 'kill $emulator 2>/dev/null || true' EXIT INT TERM
    until_true '(exec 3<>/dev/tcp/127.0.0.1/{{aws_port}})' $emulator
    # The simulator is the stack's EKS cluster (stack.toml's name and region, else the
    # provisioner's defaults): its nodes are the instances `provisioner up` launches, and it serves
    # HTTPS at the endpoint and with the CA the emulator's DescribeCluster reports for the cluster,
    # so the provisioner reaches it with EKS tokens as it reaches EKS.
    rm -f .local/cluster-sim.kubeconfig
    stack=$(sed -n 's/^name *= *"\(.*\)".*/\1/p' stack.toml 2>/dev/null | head -n 1)
    region=$(sed -n 's/^region *= *"\(.*\)".*/\1/p' stack.toml 2>/dev/null | head -n 1)
    "{{bin}}/cluster-sim" --tls --port {{kube_port}} --ingress-port {{ingress_port}} \
        --kubeconfig .local/cluster-sim.kubeconfig --image-store {{image_store}} \
        --aws-endpoint http://127.0.0.1:{{aws_port}} --eks-cluster "${stack:-kdeploy}" \
        --aws-region "${region:-ap-northeast-2}" &
    simulator=$!
    trap 'kill $emulator $simulator 2>/dev/null || true' EXIT INT TERM
    # Its kubeconfig is written once it serves and the emulator has its endpoint.
    until_true '[ -s .local/cluster-sim.kubeconfig ]' $emulator $simulator
    "{{bin}}/provisioner" --endpoint http://127.0.0.1:{{aws_port}} \
        --public-url "http://kdeploy.localhost:{{ingress_port}}" \
        --site-binary "{{site_binary}}" --image-layout {{image_store}} up
    echo
    echo "kubectl works too: kubectl --kubeconfig .local/cluster-sim.kubeconfig get pods -A"
    echo "Press Ctrl-C to stop the local stack."
    wait $emulator $simulator

# `provisioner` against the running local stack (`./dev up`), e.g. `just local status` or `just local down`.
local *args: build-stack
    "{{bin}}/provisioner" --endpoint http://127.0.0.1:{{aws_port}} \
        --public-url "http://kdeploy.localhost:{{ingress_port}}" \
        --site-binary "{{site_binary}}" --image-layout {{image_store}} {{args}}

# Benchmarks (figures, not pass/fail): provisioner `up` against the realistic front; the site
# image's build, size, push to ECR through the front and no-op re-run; the deploy site (release
# `web serve`) against the cluster simulator (release `cluster-sim`), each its own process: list
# latency, deploy vs kubectl apply, memory with 1,000 users x 10 repositories, kubectl change to page.
bench:
    cargo run --quiet -p provisioner --example bench_up
    cargo run --quiet -p provisioner --example bench_image
    cargo build --release -p web -p cluster
    cargo run --quiet -p web --example site_bench
