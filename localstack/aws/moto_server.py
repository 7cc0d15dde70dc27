"""The local AWS emulator: moto on 127.0.0.1, with the public data moto lacks seeded in.

Started by the Rust launcher (`localstack::AwsEmulator`) from the project-local venv. Prints
`READY <endpoint>` on stdout once it answers, and exits by itself when its parent goes away, so
a killed test run never leaves an emulator behind.
"""

import argparse
import datetime
import os
import sys
import threading
import time

# Attaching AWS managed policies (AmazonEKSClusterPolicy, ...) fails unless moto loads them.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

# Kubernetes versions whose EKS-optimized AL2023 AMI parameters are published (as on AWS).
EKS_VERSIONS = ["1.33", "1.34", "1.35"]
EKS_AMI_PREFIX = "/aws/service/eks/optimized-ami/"


def eks_ami_id(version: str) -> str:
    """A stable, valid-looking AMI id per version (17 hex digits, like real AMI ids)."""
    major, minor = version.split(".")
    return "ami-0" + "2023" + f"{int(major):02d}{int(minor):02d}" + "0" * 8


def eks_ami_parameter(version: str) -> str:
    return (
        f"{EKS_AMI_PREFIX}{version}/amazon-linux-2023/x86_64/standard/recommended/image_id"
    )


def seed_ec2_images() -> None:
    """Register the EKS AMIs as public Amazon images, in every region, surviving resets."""
    from moto.ec2.models import amis

    for version in EKS_VERSIONS:
        amis.AMIS.append(
            {
                "ami_id": eks_ami_id(version),
                "state": "available",
                "public": True,
                "owner_id": "602401143452",
                "image_location": f"amazon/amazon-eks-node-al2023-x86_64-standard-{version}",
                "sriov": "simple",
                "root_device_type": "ebs",
                "root_device_name": "/dev/xvda",
                "description": f"EKS-optimized Kubernetes node based on Amazon Linux 2023, (k8s: {version})",
                "image_type": "machine",
                "platform": None,
                "architecture": "x86_64",
                "name": f"amazon-eks-node-al2023-x86_64-standard-{version}-v20261101",
                "virtualization_type": "hvm",
                "hypervisor": "xen",
            }
        )


def seed_ssm_parameters() -> None:
    """Serve the EKS AMI parameters the way moto serves its own public ones: loaded lazily per
    region on first access, so they come back after `POST /moto-api/reset` too."""
    from moto.ssm import models as ssm

    original = ssm.ParameterDict._check_loading_status

    def check_loading_status(self, key):  # type: ignore[no-untyped-def]
        original(self, key)
        key = str(key or "")
        if key.startswith(EKS_AMI_PREFIX) or EKS_AMI_PREFIX.startswith(key.rstrip("/") + "/"):
            if not getattr(self, "eks_amis_loaded", False):
                self.eks_amis_loaded = True
                for version in EKS_VERSIONS:
                    name = eks_ami_parameter(version)
                    dict.setdefault(self, name, []).append(
                        ssm.Parameter(
                            account_id=self.account_id,
                            name=name,
                            value=eks_ami_id(version),
                            parameter_type="String",
                            description=None,
                            allowed_pattern=None,
                            keyid=None,
                            last_modified_date=datetime.datetime(2026, 11, 1),
                            version=1,
                            data_type="aws:ec2:image",
                        )
                    )

    ssm.ParameterDict._check_loading_status = check_loading_status


def delete_primary_interfaces_on_termination() -> None:
    """On AWS an instance's primary network interface, created at launch, goes with the instance
    (DeleteOnTermination=true); moto keeps it forever, attached to the terminated instance."""
    from moto.ec2.models import instances

    original = instances.Instance.terminate

    def terminate(self):  # type: ignore[no-untyped-def]
        primary = self.nics.get(0)
        if primary is not None:
            primary.delete_on_termination = True
        return original(self)

    instances.Instance.terminate = terminate


def exit_with_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    args = parser.parse_args()

    seed_ec2_images()
    seed_ssm_parameters()
    delete_primary_interfaces_on_termination()

    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    print(f"READY http://{host}:{port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        sys.exit(0)


if __name__ == "__main__":
    main()
