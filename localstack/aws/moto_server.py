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


def eks_cluster_version_updates() -> None:
    """EKS UpdateClusterVersion, DescribeUpdate and ListUpdates, which moto lacks (its EKS has
    UpdateClusterConfig only). As the Amazon EKS API Reference describes them:
    UpdateClusterVersion (POST /clusters/{name}/updates) "updates an Amazon EKS cluster to the
    specified Kubernetes version"; the response is an `update` with an id, status `InProgress`,
    type `VersionUpdate` and params `Version` and `PlatformVersion`, to be tracked "with the
    DescribeUpdate API operation" (GET /clusters/{name}/updates/{updateId}), which reports
    `Successful` once done; ListUpdates (GET /clusters/{name}/updates) lists the ids. EKS
    upgrades one minor version at a time ("Update existing cluster to new Kubernetes version":
    "you can't skip minor versions"; no downgrade) -- anything else is InvalidParameterException
    "Unsupported Kubernetes minor version update from X to Y" -- and refuses an update while the
    cluster is not ACTIVE (ResourceInUseException). moto answers at once, so the update is
    done by the time it is described and the cluster is ACTIVE on the new version."""
    import uuid

    from moto.core.responses import ActionResult
    from moto.core.utils import utcnow
    from moto.eks import urls
    from moto.eks.exceptions import (
        InvalidParameterException,
        ResourceInUseException,
        ResourceNotFoundException,
    )
    from moto.eks.responses import EKSResponse

    def minor(version: str) -> tuple[int, int] | None:
        try:
            major, minor_ = version.split(".")
            return int(major), int(minor_)
        except (AttributeError, ValueError):
            return None

    def find_cluster(backend, name):  # type: ignore[no-untyped-def]
        cluster = backend.clusters.get(name)
        if cluster is None:
            raise ResourceNotFoundException(
                clusterName=name,
                nodegroupName=None,
                fargateProfileName=None,
                addonName=None,
                message=f"No cluster found for name: {name}.",
            )
        return cluster

    def updates_of(cluster):  # type: ignore[no-untyped-def]
        if not hasattr(cluster, "kdeploy_updates"):
            cluster.kdeploy_updates = {}
        return cluster.kdeploy_updates

    def update_cluster_version(self):  # type: ignore[no-untyped-def]
        name = self._get_param("name")
        version = self._get_param("version")
        cluster = find_cluster(self.eks_backend, name)
        if cluster.status != "ACTIVE":
            raise ResourceInUseException(
                clusterName=name,
                nodegroupName=None,
                addonName=None,
                message=f"Cluster {name} is currently {cluster.status}; an update is only possible on an ACTIVE cluster.",
            )
        now, wanted = minor(cluster.version), minor(version)
        if now is None or wanted is None or wanted != (now[0], now[1] + 1):
            raise InvalidParameterException(
                clusterName=name,
                nodegroupName=None,
                fargateProfileName=None,
                addonName=None,
                message=f"Unsupported Kubernetes minor version update from {cluster.version} to {version}",
            )
        cluster.version = version
        cluster.platformVersion = "eks.1"
        update = {
            "id": str(uuid.uuid4()),
            "status": "Successful",
            "type": "VersionUpdate",
            "params": [
                {"type": "Version", "value": version},
                {"type": "PlatformVersion", "value": "eks.1"},
            ],
            "createdAt": utcnow(),
            "errors": [],
        }
        updates_of(cluster)[update["id"]] = update
        return ActionResult({"update": dict(update, status="InProgress")})

    def describe_update(self):  # type: ignore[no-untyped-def]
        name = self._get_param("name")
        update_id = self._get_param("updateId")
        update = updates_of(find_cluster(self.eks_backend, name)).get(update_id)
        if update is None:
            raise ResourceNotFoundException(
                clusterName=name,
                nodegroupName=None,
                fargateProfileName=None,
                addonName=None,
                message=f"No update found for ID: {update_id}.",
            )
        return ActionResult({"update": update})

    def list_updates(self):  # type: ignore[no-untyped-def]
        name = self._get_param("name")
        ids = list(updates_of(find_cluster(self.eks_backend, name)))
        return ActionResult({"updateIds": ids})

    EKSResponse.update_cluster_version = update_cluster_version
    EKSResponse.describe_update = describe_update
    EKSResponse.list_updates = list_updates
    urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates$"] = urls.response.dispatch
    urls.url_paths["{0}/clusters/(?P<name>[^/]+)/updates/(?P<updateId>[^/]+)$"] = (
        urls.response.dispatch
    )


def sts_presigned_get_caller_identity() -> None:
    """STS GetCallerIdentity as a presigned GET, the way EKS tokens reach STS
    (kubernetes-sigs/aws-iam-authenticator pkg/token/token.go `Verify`: the decoded token URL, sent
    with the header `x-k8s-aws-id: <cluster>`). SigV4 query-string authentication carries the
    credential in the query, not in an Authorization header ("Authenticating Requests: Using Query
    Parameters (AWS Signature Version 4)", Amazon S3 API Reference, sigv4-query-string-auth.html:
    `X-Amz-Credential` = `<access-key-id>/<date>/<region>/<service>/aws4_request`,
    `X-Amz-SignedHeaders`, `X-Amz-Signature`). moto reads neither: it routes such a request by
    default to S3 and answers for a made-up key `AKIAEXAMPLE`. Here
    - the service and region come from X-Amz-Credential's scope when there is no Authorization
      header, as they do from the Authorization header's;
    - the caller is the access key in X-Amz-Credential;
    - GetCallerIdentity checks the signature when moto knows the key's secret (an IAM user's
      access key, or the credentials of an assumed role), over the signed headers as received
      (so `x-k8s-aws-id` with the cluster the verifier names): a mismatch is STS's 403
      `SignatureDoesNotMatch` ("Signing AWS API requests", IAM User Guide: the service
      recalculates the signature and rejects the request if it does not match). A key moto does
      not know (the emulator's dummy `test`) keeps moto's default identity, unverified."""
    import hashlib
    import hmac
    from urllib.parse import quote

    from moto.core.exceptions import SignatureDoesNotMatchError
    from moto.core.responses import BaseResponse
    from moto.iam.models import iam_backends
    from moto.moto_server import werkzeug_app
    from moto.sts.models import sts_backends
    from moto.sts.responses import TokenResponse

    def query_credential(query: str) -> list[str] | None:
        from urllib.parse import parse_qs

        values = parse_qs(query).get("X-Amz-Credential")
        scope = values[0].split("/") if values else []
        return scope if len(scope) == 5 else None

    original_infer = werkzeug_app.DomainDispatcherApplication.infer_service_region_host

    def infer_service_region_host(self, environ, path):  # type: ignore[no-untyped-def]
        if not environ.get("HTTP_AUTHORIZATION"):
            scope = query_credential(environ.get("QUERY_STRING", ""))
            if scope is not None:
                _, _, region, service, _ = scope
                return f"{service.lower()}.{region}.amazonaws.com"
        return original_infer(self, environ, path)

    werkzeug_app.DomainDispatcherApplication.infer_service_region_host = infer_service_region_host

    original_access_key = BaseResponse.get_access_key

    def get_access_key(self):  # type: ignore[no-untyped-def]
        if "Authorization" not in self.headers:
            credential = self.querystring.get("X-Amz-Credential")
            if credential:
                return credential[0].split("/")[0]
        return original_access_key(self)

    BaseResponse.get_access_key = get_access_key

    def known_secret(access_key_id: str) -> str | None:
        for regions in list(sts_backends.values()):
            for backend in list(regions.values()):
                role = backend.get_assumed_role_from_access_key(access_key_id)
                if role is not None:
                    return role.secret_access_key
        for partitions in list(iam_backends.values()):
            for iam in list(partitions.values()):
                user = iam.get_user_from_access_key_id(access_key_id)
                if user is not None:
                    for key in iam.list_access_keys(user.name):
                        if key.access_key_id == access_key_id:
                            return key.secret_access_key
        return None

    def encode(text: str) -> str:
        return quote(text, safe="-_.~")

    def expected_signature(self, secret: str) -> str:  # type: ignore[no-untyped-def]
        # Signature Version 4: canonical request, string to sign, derived key (IAM User Guide,
        # "Create a signed AWS API request"); for a presigned URL the payload is hashed as sent
        # (empty), as botocore's SigV4QueryAuth does for every service but S3.
        params = {k: v[0] for k, v in self.querystring.items() if k != "X-Amz-Signature"}
        query = "&".join(f"{encode(k)}={encode(v)}" for k, v in sorted(params.items()))
        signed = params.get("X-Amz-SignedHeaders", "").split(";")
        headers = "".join(
            f"{h}:{' '.join(str(self.headers.get(h, '')).split())}\n" for h in signed
        )
        canonical = "\n".join(
            [
                self.method,
                encode(self.path or "/").replace("%2F", "/"),
                query,
                headers,
                ";".join(signed),
                hashlib.sha256(b"").hexdigest(),
            ]
        )
        date = params.get("X-Amz-Date", "")
        _, day, region, service, terminator = params["X-Amz-Credential"].split("/")
        scope = f"{day}/{region}/{service}/{terminator}"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{secret}".encode()
        for part in (day, region, service, terminator):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()

    original_get_caller_identity = TokenResponse.get_caller_identity

    def get_caller_identity(self):  # type: ignore[no-untyped-def]
        credential = self.querystring.get("X-Amz-Credential")
        if "Authorization" not in self.headers and credential:
            secret = known_secret(credential[0].split("/")[0])
            given = (self.querystring.get("X-Amz-Signature") or [""])[0]
            if secret is not None and not hmac.compare_digest(
                expected_signature(self, secret), given
            ):
                raise SignatureDoesNotMatchError()
        return original_get_caller_identity(self)

    TokenResponse.get_caller_identity = get_caller_identity

    # For a key it does not know, moto answers `arn:aws:sts::<account>:user/moto`, an ARN STS never
    # gives (an IAM user's is `arn:aws:iam::<account>:user/<name>`, STS API Reference,
    # GetCallerIdentity examples) and that aws-iam-authenticator refuses (pkg/arn/arn.go
    # Canonicalize: `sts` ARNs are assumed-role or federated-user only). The emulator's dummy key
    # stands for the IAM user `moto` of the default account.
    from moto.sts import models as sts_models

    original_backend_identity = sts_models.STSBackend.get_caller_identity

    def backend_get_caller_identity(self, access_key_id, region):  # type: ignore[no-untyped-def]
        user_id, arn, account_id = original_backend_identity(self, access_key_id, region)
        prefix = f":sts::{account_id}:user/"
        if prefix in arn:
            arn = arn.replace(prefix, f":iam::{account_id}:user/")
        return user_id, arn, account_id

    sts_models.STSBackend.get_caller_identity = backend_get_caller_identity


def eks_cluster_creator() -> None:
    """Who created each EKS cluster, which the cluster's authenticator (the cluster simulator)
    asks for at `GET /moto-api/kdeploy/eks-cluster-creator?name=<cluster>` (`{"arn": ...}`).
    On EKS "the IAM principal that creates the cluster is automatically granted system:masters
    permissions in the cluster's RBAC configuration in the Amazon EKS control plane. This
    principal doesn't appear in any visible configuration" (Amazon EKS User Guide, "Grant IAM
    users and roles access to Kubernetes APIs", for clusters with the ConfigMap; with access
    entries, CreateCluster's `bootstrapClusterCreatorAdminPermissions` makes the same principal
    an access entry with AmazonEKSClusterAdminPolicy). moto has no access-entry API and keeps
    no creator, so this records the caller of CreateCluster on the cluster: the ARN STS's
    GetCallerIdentity gives for the request's access key (the reader canonicalises an
    assumed-role ARN as aws-iam-authenticator does)."""
    import json

    from moto.eks.models import eks_backends
    from moto.eks.responses import EKSResponse
    from moto.moto_api._internal import urls as moto_api_urls
    from moto.sts.models import sts_backends

    original_create_cluster = EKSResponse.create_cluster

    def create_cluster(self):  # type: ignore[no-untyped-def]
        result = original_create_cluster(self)
        name = self._get_param("name")
        cluster = self.eks_backend.clusters.get(name)
        if cluster is not None and not hasattr(cluster, "kdeploy_creator_arn"):
            sts = sts_backends[self.current_account][self.partition]
            _, arn, _ = sts.get_caller_identity(self.get_access_key(), self.region)
            cluster.kdeploy_creator_arn = arn
        return result

    EKSResponse.create_cluster = create_cluster

    def creator(request, full_url, headers):  # type: ignore[no-untyped-def]
        from urllib.parse import parse_qs, urlparse

        name = (parse_qs(urlparse(full_url).query).get("name") or [""])[0]
        for partitions in list(eks_backends.values()):
            for backend in list(partitions.values()):
                cluster = backend.clusters.get(name)
                arn = getattr(cluster, "kdeploy_creator_arn", None)
                if arn:
                    return 200, {"Content-Type": "application/json"}, json.dumps({"arn": arn})
        return 404, {"Content-Type": "application/json"}, json.dumps({"message": f"no cluster {name}"})

    moto_api_urls.url_paths["{0}/moto-api/kdeploy/eks-cluster-creator$"] = creator


def eks_cluster_endpoint() -> None:
    """Where each EKS cluster's API server is, which the cluster simulator registers (it stands in
    for the control plane) at `POST /moto-api/kdeploy/eks-cluster-endpoint` with
    `{"name": <cluster>, "endpoint": "https://...", "certificateAuthority": {"data": ...}}`.
    On EKS a client reaches the cluster's Kubernetes API at DescribeCluster's `cluster.endpoint`
    ("The endpoint for your Kubernetes API server") and trusts `certificateAuthority.data`,
    "the Base64-encoded certificate data required to communicate with your cluster" -- the
    cluster CA's PEM (Amazon EKS API Reference, DescribeCluster and the Cluster and Certificate
    data types; the kubeconfig's `certificate-authority-data`). moto makes up both: an
    unreachable `https://<random>.<random>.<region>.eks.amazonaws.com/` and 1400 random
    characters that are no certificate. A registration names a cluster, may come before the
    cluster exists, and holds for every cluster of that name (also after `/moto-api/reset`);
    DescribeCluster and CreateCluster's answer then carry the registered endpoint and CA. Only an
    `https://` endpoint and a base64 PEM certificate are taken (400 otherwise), as EKS gives no
    other."""
    import base64
    import binascii
    import json

    from cryptography import x509
    from moto.eks.models import EKSBackend, eks_backends
    from moto.moto_api._internal import urls as moto_api_urls

    registered: dict[str, tuple[str, str]] = {}
    lock = threading.Lock()

    def apply(cluster) -> None:  # type: ignore[no-untyped-def]
        with lock:
            found = registered.get(cluster.name)
        if found is not None:
            cluster.endpoint, data = found
            cluster.certificate_authority = {"data": data}

    original_create_cluster = EKSBackend.create_cluster

    def create_cluster(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        cluster = original_create_cluster(self, *args, **kwargs)
        apply(cluster)
        return cluster

    EKSBackend.create_cluster = create_cluster

    def refused(message: str):  # type: ignore[no-untyped-def]
        return 400, {"Content-Type": "application/json"}, json.dumps({"message": message})

    def register(request, full_url, headers):  # type: ignore[no-untyped-def]
        if request.method != "POST":
            return 405, {"Allow": "POST"}, ""
        length = int(headers.get("Content-Length") or 0)
        try:
            body = json.loads(request.environ["wsgi.input"].read(length).decode("utf-8"))
            name = body["name"]
            endpoint = body["endpoint"]
            data = body["certificateAuthority"]["data"]
        except (KeyError, TypeError, ValueError) as e:
            return refused(f"expected name, endpoint and certificateAuthority.data: {e}")
        if not isinstance(name, str) or not name:
            return refused("name must be a cluster name")
        if not isinstance(endpoint, str) or not endpoint.startswith("https://"):
            return refused(f"an EKS endpoint is an https:// URL, not {endpoint!r}")
        try:
            x509.load_pem_x509_certificate(base64.b64decode(data, validate=True))
        except (binascii.Error, TypeError, ValueError) as e:
            return refused(f"certificateAuthority.data is not a base64 PEM certificate: {e}")
        with lock:
            registered[name] = (endpoint, data)
        for partitions in list(eks_backends.values()):
            for backend in list(partitions.values()):
                cluster = backend.clusters.get(name)
                if cluster is not None:
                    apply(cluster)
        return 200, {"Content-Type": "application/json"}, json.dumps({"name": name})

    moto_api_urls.url_paths["{0}/moto-api/kdeploy/eks-cluster-endpoint$"] = register


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
    eks_cluster_version_updates()
    sts_presigned_get_caller_identity()
    eks_cluster_creator()
    eks_cluster_endpoint()

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
