//! Elastic Load Balancing (Classic, API version 2012-06-01): the stack makes none itself, but the
//! in-tree AWS cloud provider makes one for every `type: LoadBalancer` Service that does not ask
//! for an NLB, so teardown lists and deletes them. Classic load balancers are named, not ARNed,
//! and their tags too come only through DescribeTags.

use super::{AwsError, NotFoundExt, SdkResultExt, Tags, required_str};

/// The Classic ELB layer; see [`super::Aws::elb`].
pub struct Elb<'a>(pub(super) &'a aws_sdk_elasticloadbalancing::Client);

/// A Classic load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicLoadBalancer {
    pub name: String,
    pub dns_name: String,
    pub vpc_id: Option<String>,
    pub subnets: Vec<String>,
}

fn classic(
    lb: &aws_sdk_elasticloadbalancing::types::LoadBalancerDescription,
    op: &'static str,
) -> Result<ClassicLoadBalancer, AwsError> {
    Ok(ClassicLoadBalancer {
        name: required_str(lb.load_balancer_name(), op, "LoadBalancerName")?,
        dns_name: lb.dns_name().unwrap_or("").to_owned(),
        vpc_id: lb.vpc_id().map(str::to_owned),
        subnets: lb.subnets().to_vec(),
    })
}

/// DescribeTags takes at most 20 load balancer names per call.
const TAGS_PER_CALL: usize = 20;

impl Elb<'_> {
    /// Every Classic load balancer of the account in the region, page after page.
    pub async fn load_balancers(&self) -> Result<Vec<ClassicLoadBalancer>, AwsError> {
        const OP: &str = "elb:DescribeLoadBalancers";
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .0
                .describe_load_balancers()
                .set_marker(marker.take())
                .send()
                .await
                .op(OP)?;
            for lb in out.load_balancer_descriptions() {
                found.push(classic(lb, OP)?);
            }
            match out.next_marker() {
                Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }

    /// The load balancer of that name, or `None` once it is gone.
    pub async fn load_balancer(&self, name: &str) -> Result<Option<ClassicLoadBalancer>, AwsError> {
        const OP: &str = "elb:DescribeLoadBalancers";
        let out = self
            .0
            .describe_load_balancers()
            .load_balancer_names(name)
            .send()
            .await
            .op(OP)
            .found()?;
        let Some(out) = out else {
            return Ok(None);
        };
        out.load_balancer_descriptions()
            .first()
            .map(|lb| classic(lb, OP))
            .transpose()
    }

    /// Tags of each named load balancer, 20 names per call. A name that went away meanwhile
    /// fails its whole call (`LoadBalancerNotFound`), so that batch is asked again name by name
    /// and the missing one left out.
    pub async fn tags(&self, names: &[String]) -> Result<Vec<(String, Tags)>, AwsError> {
        let mut found = Vec::new();
        for batch in names.chunks(TAGS_PER_CALL) {
            match self.describe_tags(batch).await {
                Ok(tags) => found.extend(tags),
                Err(e) if e.is_not_found() && batch.len() > 1 => {
                    for name in batch {
                        let one = self.describe_tags(std::slice::from_ref(name)).await;
                        found.extend(one.found()?.unwrap_or_default());
                    }
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    async fn describe_tags(&self, names: &[String]) -> Result<Vec<(String, Tags)>, AwsError> {
        const OP: &str = "elb:DescribeTags";
        let out = self
            .0
            .describe_tags()
            .set_load_balancer_names(Some(names.to_vec()))
            .send()
            .await
            .op(OP)?;
        out.tag_descriptions()
            .iter()
            .map(|d| {
                let tags = d
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().unwrap_or("").to_owned()))
                    .collect();
                Ok((
                    required_str(d.load_balancer_name(), OP, "LoadBalancerName")?,
                    tags,
                ))
            })
            .collect()
    }

    /// Deletes the load balancer with its listeners; AWS answers success for a name that does
    /// not exist. Its network interfaces go a while later.
    pub async fn delete_load_balancer(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_load_balancer()
            .load_balancer_name(name)
            .send()
            .await
            .op("elb:DeleteLoadBalancer")
            .map(drop)
    }
}
