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


def subnets_with_interfaces_are_not_deleted() -> None:
    """AWS refuses DeleteSubnet while a network interface is in the subnet: DependencyViolation,
    "The subnet 'subnet-…' has dependencies and cannot be deleted." (Amazon EC2 API Reference,
    DeleteSubnet: "You must terminate all running instances in the subnet before you can delete
    the subnet"; the load balancers' and the VPC CNI's interfaces count too.) moto deletes it
    anyway, which would hide a `down` that leaves interfaces behind."""
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models import subnets

    original = subnets.SubnetBackend.delete_subnet

    def delete_subnet(self, subnet_id):  # type: ignore[no-untyped-def]
        for eni in self.get_all_network_interfaces():
            subnet = getattr(eni, "subnet", None)
            if subnet is not None and subnet.id == subnet_id:
                raise DependencyViolationError(
                    f"The subnet '{subnet_id}' has dependencies and cannot be deleted."
                )
        return original(self, subnet_id)

    subnets.SubnetBackend.delete_subnet = delete_subnet


def launch_template_instance_settings() -> None:
    """An instance launched from a launch template (RunInstances with LaunchTemplate, or an Auto
    Scaling group) gets the template's IamInstanceProfile and MetadataOptions, as on AWS
    (RunInstances: "parameters you specify in the request override the same parameters in the
    launch template"); moto applies neither, so DescribeInstances showed no instance profile and
    the default metadata options for the provisioner's nodes."""
    from moto.ec2.models import instances

    original = instances.InstanceBackend.run_instances

    def run_instances(self, image_id, count, user_data, security_group_names, **kwargs):  # type: ignore[no-untyped-def]
        # Auto Scaling launches without a region, which made its instances' private DNS names
        # us-east-1's (`ip-10-0-1-4.ec2.internal`) in every region.
        kwargs.setdefault("region_name", self.region_name)
        reservation = original(self, image_id, count, user_data, security_group_names, **kwargs)
        if not kwargs.get("launch_template"):
            return reservation
        data = self._get_template_from_args(kwargs["launch_template"]).data
        options = data.get("MetadataOptions")
        profile = data.get("IamInstanceProfile") or {}
        requested_profile = kwargs.get("iam_instance_profile_name") or kwargs.get(
            "iam_instance_profile_arn"
        )
        for instance in reservation.instances:
            if options and not kwargs.get("metadata_options"):
                instance.metadata_options = instances.MetadataOptions(options)
            if (profile.get("Arn") or profile.get("Name")) and not requested_profile:
                self.associate_iam_instance_profile(
                    instance_id=instance.id,
                    iam_instance_profile_name=profile.get("Name"),
                    iam_instance_profile_arn=profile.get("Arn"),
                )
        return reservation

    instances.InstanceBackend.run_instances = run_instances


def fresh_private_ips_first() -> None:
    """A new interface gets an address not used before while the subnet has one: moto hands out
    the address just released by a terminated instance first, so an Auto Scaling replacement came
    back with the terminated node's IP and private DNS name, hence the same Kubernetes Node name,
    which AWS practically never does right away."""
    from moto.ec2.models import subnets

    original = subnets.Subnet.get_available_subnet_ip

    def get_available_subnet_ip(self, instance):  # type: ignore[no-untyped-def]
        released, self._unused_ips = self._unused_ips, set()
        try:
            return original(self, instance)
        except StopIteration:
            self._unused_ips, released = released, set()
            return original(self, instance)
        finally:
            self._unused_ips |= released

    subnets.Subnet.get_available_subnet_ip = get_available_subnet_ip


# How long Auto Scaling takes to notice an instance that is no longer running and replace it.
# AWS checks EC2 status at least every minute or so; tests and the local stack want seconds.
ASG_HEALTH_CHECK_SECONDS = float(os.environ.get("KDEPLOY_ASG_HEALTH_CHECK_SECONDS", "2"))


def replace_unhealthy_asg_instances() -> None:
    """Auto Scaling replaces an instance that is no longer running (EC2 Auto Scaling User Guide,
    "Health checks for instances in an Auto Scaling group": an instance in any state other than
    `running` -- stopping, stopped, shutting-down, terminated -- is unhealthy; "Replace unhealthy
    instances": Auto Scaling terminates it and launches a replacement to keep the desired
    capacity). moto never does: an instance terminated through EC2 TerminateInstances stays in
    its group, InService, and the group stays short. A background check does it after
    ASG_HEALTH_CHECK_SECONDS."""
    from moto.autoscaling.models import autoscaling_backends

    def check() -> None:
        while True:
            time.sleep(ASG_HEALTH_CHECK_SECONDS)
            try:
                for _account, regions in list(autoscaling_backends.items()):
                    for _region, backend in list(regions.items()):
                        for group in list(backend.autoscaling_groups.values()):
                            replace_in(backend, group)
            except Exception as error:  # noqa: BLE001 -- the check must keep running
                print(f"auto scaling health check failed: {error!r}", file=sys.stderr, flush=True)

    def replace_in(backend, group) -> None:  # type: ignore[no-untyped-def]
        unhealthy = [
            state
            for state in group.instance_states
            if state.lifecycle_state == "InService" and state.instance.state != "running"
        ]
        if not unhealthy:
            return
        for state in unhealthy:
            if state.instance.state not in ("terminated", "shutting-down"):
                backend.ec2_backend.terminate_instances([state.instance.id])
        gone = {state.instance.id for state in unhealthy}
        group.instance_states = [s for s in group.instance_states if s.instance.id not in gone]
        # Brings the group back to its desired capacity with new instances from its template.
        group.set_desired_capacity(group.desired_capacity)

    threading.Thread(target=check, name="asg-health-check", daemon=True).start()


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
    subnets_with_interfaces_are_not_deleted()
    launch_template_instance_settings()
    fresh_private_ips_first()
    replace_unhealthy_asg_instances()

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
