# Recipes for developing the platform. `./dev <recipe>` sets up the tools first; `just` alone lists.

set shell := ["bash", "-euo", "pipefail", "-c"]
set export

# Never let the AWS SDK probe the instance metadata address from a developer machine or CI.
AWS_EC2_METADATA_DISABLED := "true"
CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") / ".cache/kdeploy-target")
aws_port := env_var_or_default("LOCAL_AWS_PORT", "5000")
# Empty: moto answers at once. `fast` or `realistic`: the realistic front (see localstack/src/front).
aws_profile := env_var_or_default("LOCAL_AWS_PROFILE", "")
profile_flag := if aws_profile == "" { "" } else { "--profile " + aws_profile }
bin := CARGO_TARGET_DIR / "debug"

# List the recipes.
default:
    @"{{just_executable()}}" --list --unsorted

# Build every crate.
build:
    cargo build --workspace --bins

# Run every test: unit tests and the provisioner against the local AWS emulator.
test:
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
aws: build
    "{{bin}}/localstack" aws --port {{aws_port}} {{profile_flag}}

# Bring the whole stack up locally: the AWS emulator, then `provisioner up` against it. Stays up until Ctrl-C.
up: build
    #!/usr/bin/env bash
    set -euo pipefail
    "{{bin}}/localstack" aws --port {{aws_port}} {{profile_flag}} &
    emulator=$!
    trap 'kill $emulator 2>/dev/null || true' EXIT INT TERM
    for _ in $(seq 1 120); do
        if (exec 3<>/dev/tcp/127.0.0.1/{{aws_port}}) 2>/dev/null; then break; fi
        kill -0 $emulator 2>/dev/null || { echo "the AWS emulator did not start" >&2; exit 1; }
        sleep 0.5
    done
    "{{bin}}/provisioner" --endpoint http://127.0.0.1:{{aws_port}} up
    "{{bin}}/provisioner" --endpoint http://127.0.0.1:{{aws_port}} status
    echo
    echo "The local stack is up. AWS emulator: http://127.0.0.1:{{aws_port}} (try: {{bin}}/provisioner --local status)"
    echo "Press Ctrl-C to stop it (everything lives in memory and goes with it)."
    wait $emulator

# `provisioner` against the running local emulator, e.g. `just local status` or `just local down`.
local *args: build
    "{{bin}}/provisioner" --endpoint http://127.0.0.1:{{aws_port}} {{args}}

# Benchmarks (figures, not pass/fail): provisioner `up` against the realistic front.
bench:
    cargo run --quiet -p provisioner --example bench_up
