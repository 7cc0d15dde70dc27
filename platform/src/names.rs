//! Every cluster-wide name the platform installs, defined once: the manifests receive them as
//! placeholders, the provisioner reads them from here, and the site gets them through its
//! environment, so no second copy can drift.

/// The namespace of the deploy site and its own Secrets (accounts, session key, first credentials).
pub const SYSTEM_NAMESPACE: &str = "kdeploy-system";
/// The namespace of the ingress controller.
pub const INGRESS_NAMESPACE: &str = "nginx-ingress";

/// The ingress controller's Deployment, Service, ServiceAccount and RBAC objects.
pub const INGRESS_CONTROLLER: &str = "nginx-ingress";
/// The controller's ConfigMap of NGINX settings.
pub const INGRESS_CONFIG: &str = "nginx-config";
/// The IngressClass the controller serves and every Ingress of the platform names.
pub const INGRESS_CLASS: &str = "nginx";

/// The deploy site's Deployment, Service, ServiceAccount and RBAC objects, and its Ingress: the
/// minion that routes `/` on the public host to the site.
pub const SITE: &str = "kdeploy-web";
/// The master Ingress of the public host (in [`SYSTEM_NAMESPACE`]): NGINX Ingress Controller gives
/// a host to one resource only, so the site and every repository route there as its minions.
pub const HOST_INGRESS: &str = "kdeploy-host";
/// The port the site listens on inside its pod.
pub const SITE_PORT: i32 = 8080;
/// The Secret in which the site stores its first administrator's credentials, once.
pub const INITIAL_ADMIN_SECRET: &str = "kdeploy-initial-admin";

/// The targets controller's Deployment, ServiceAccount and RBAC objects: it keeps the NLB's
/// targets equal to the Ready nodes (`web targets`, from the site's image).
pub const TARGETS_CONTROLLER: &str = "kdeploy-targets";

/// NodePort of the controller's HTTP listener (container port 80): the NLB forwards here.
pub const HTTP_NODE_PORT: i32 = 30080;
/// NodePort of the controller's readiness endpoint: the NLB health check.
pub const HEALTH_NODE_PORT: i32 = 30081;
/// The container port on which the controller serves its readiness endpoint.
pub const HEALTH_PORT: i32 = 8081;
/// The readiness path the NGINX Ingress Controller serves on its readiness port.
pub const HEALTH_PATH: &str = "/nginx-ready";

/// The recommended label saying which application an object belongs to.
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// The recommended label saying which tool manages an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of both recommended labels on everything the platform installs.
pub const PRODUCT: &str = "kdeploy";

/// The field manager of everything the platform applies, so re-applying converges.
pub const FIELD_MANAGER: &str = "kdeploy-platform";

/// The namespaces the platform owns and `uninstall` removes; the site learns them from its
/// environment so that it never hands them to a developer.
pub const PLATFORM_NAMESPACES: [&str; 2] = [SYSTEM_NAMESPACE, INGRESS_NAMESPACE];

/// The recommended labels every installed object and pod carries.
pub fn recommended_labels() -> [(&'static str, &'static str); 2] {
    [(PART_OF_LABEL, PRODUCT), (MANAGED_BY_LABEL, PRODUCT)]
}

/// Where the site's request console sends developers' requests: the controller's Service, so a
/// request takes the same path as one from the internet.
pub fn console_upstream() -> String {
    format!("http://{INGRESS_CONTROLLER}.{INGRESS_NAMESPACE}.svc")
}
