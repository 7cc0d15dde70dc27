//! `stack.toml` plus the overrides, turned into a [`StackConfig`]: every rule checked, every
//! violation reported at once with its field.

use std::time::Duration;

use super::*;

impl StackFile {
    /// Applies the overrides and checks every rule, reporting all violations at once.
    pub fn resolve(self, overrides: &Overrides) -> Result<StackConfig, ConfigError> {
        let mut errors = Vec::new();
        let mut reject = |field: &'static str, value: &str, rule: &str| {
            errors.push(Invalid {
                field,
                value: value.to_owned(),
                rule: rule.to_owned(),
            })
        };

        let name = overrides
            .name
            .clone()
            .or(self.name)
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        if let Err(rule) = check_stack_name(&name) {
            reject("name", &name, &rule);
        } else {
            for rule in crate::stack::name_rules_broken(&name) {
                reject("name", &name, &rule);
            }
        }

        let region = overrides
            .region
            .clone()
            .or(self.region)
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        if !KNOWN_REGIONS.contains(&region.as_str()) {
            reject(
                "region",
                &region,
                "must be an AWS region of the standard partition, e.g. ap-northeast-2",
            );
        }

        let today = overrides.today.unwrap_or_else(Date::today);
        let support_text = self.support.clone();
        let support = match (overrides.extended_support, support_text.as_deref()) {
            (true, _) | (false, Some("extended")) => Support::Extended,
            (false, None | Some("standard")) => Support::Standard,
            (false, Some(other)) => {
                reject(
                    "support",
                    other,
                    "must be \"standard\" (no extended-support charges; EKS upgrades the cluster when standard support ends) or \"extended\" (versions in extended support allowed, billed per cluster-hour)",
                );
                Support::Standard
            }
        };
        let pinned = overrides
            .kubernetes_version
            .clone()
            .or(self.kubernetes_version);
        let version = match pinned.clone() {
            Some(version) => {
                let accepted =
                    versions::release(&version).is_some_and(|r| r.accepted(today, support));
                if !accepted {
                    reject(
                        "kubernetes_version",
                        &version,
                        &version_rule(&version, today, support),
                    );
                }
                version
            }
            None => match versions::accepted(today, support).next() {
                Some(newest) => newest.version.to_owned(),
                None => {
                    reject(
                        "kubernetes_version",
                        "(default)",
                        &version_rule("", today, support),
                    );
                    String::new()
                }
            },
        };

        let vpc_text = self
            .network
            .vpc_cidr
            .unwrap_or_else(|| "10.0.0.0/16".to_owned());
        let vpc_cidr = match vpc_text.parse::<Ipv4Net>() {
            Ok(net) if net != net.trunc() => {
                reject(
                    "network.vpc_cidr",
                    &vpc_text,
                    &format!("host bits must be zero (did you mean {}?)", net.trunc()),
                );
                None
            }
            Ok(net) if !(16..=24).contains(&net.prefix_len()) => {
                reject(
                    "network.vpc_cidr",
                    &vpc_text,
                    "prefix must be between /16 and /24 (AWS allows /16-/28; EKS needs room for pods)",
                );
                None
            }
            Ok(net) if !net.addr().is_private() => {
                reject(
                    "network.vpc_cidr",
                    &vpc_text,
                    "must be a private (RFC 1918) range: 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16",
                );
                None
            }
            Ok(net) => Some(net),
            Err(_) => {
                reject(
                    "network.vpc_cidr",
                    &vpc_text,
                    "must be an IPv4 CIDR block such as 10.0.0.0/16",
                );
                None
            }
        };

        let letters = self
            .network
            .zones
            .unwrap_or_else(|| vec!["a".to_owned(), "c".to_owned()]);
        let letters_ok = letters.len() == 2
            && letters[0] != letters[1]
            && letters
                .iter()
                .all(|l| l.len() == 1 && l.chars().all(|c| c.is_ascii_lowercase()));
        if !letters_ok {
            reject(
                "network.zones",
                &letters.join(","),
                "must be two different zone letters, e.g. [\"a\", \"c\"]",
            );
        }

        let subnets = match (&self.network.subnet_cidrs, vpc_cidr) {
            (_, None) => None,
            (None, Some(vpc)) => {
                // Two equal halves at most /20 each: room for nodes and VPC-CNI pod IPs.
                let prefix = (vpc.prefix_len() + 1).max(20);
                vpc.subnets(prefix)
                    .ok()
                    .map(|mut s| (s.next(), s.next()))
                    .and_then(|pair| match pair {
                        (Some(a), Some(b)) => Some([a, b]),
                        _ => None,
                    })
            }
            (Some(given), Some(vpc)) => {
                let parsed: Vec<Option<Ipv4Net>> = given
                    .iter()
                    .map(|s| s.parse::<Ipv4Net>().ok().filter(|n| *n == n.trunc()))
                    .collect();
                if given.len() != 2 {
                    reject(
                        "network.subnet_cidrs",
                        &given.join(","),
                        "must list exactly two CIDR blocks, one per zone",
                    );
                    None
                } else if parsed.iter().any(Option::is_none) {
                    reject(
                        "network.subnet_cidrs",
                        &given.join(","),
                        "each must be an IPv4 CIDR block with zero host bits",
                    );
                    None
                } else {
                    let a = parsed[0].unwrap_or(vpc);
                    let b = parsed[1].unwrap_or(vpc);
                    if !vpc.contains(&a) || !vpc.contains(&b) {
                        reject(
                            "network.subnet_cidrs",
                            &given.join(","),
                            &format!("each must lie inside the VPC block {vpc}"),
                        );
                        None
                    } else if a.contains(&b) || b.contains(&a) {
                        reject(
                            "network.subnet_cidrs",
                            &given.join(","),
                            "the two blocks must not overlap",
                        );
                        None
                    } else if a.prefix_len() > 27 || b.prefix_len() > 27 {
                        reject(
                            "network.subnet_cidrs",
                            &given.join(","),
                            "each must be /27 or larger (nodes and pod IPs live there)",
                        );
                        None
                    } else {
                        Some([a, b])
                    }
                }
            }
        };

        let instance_type = self
            .nodes
            .instance_type
            .clone()
            .unwrap_or_else(|| "t3.medium".to_owned());
        let family_ok = instance_type.split_once('.').is_some_and(|(family, size)| {
            !family.is_empty()
                && !size.is_empty()
                && family
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && size.chars().all(|c| c.is_ascii_alphanumeric())
        });
        if !family_ok {
            reject(
                "nodes.instance_type",
                &instance_type,
                "must be an EC2 instance type such as t3.medium",
            );
        }

        let counts = node_counts(&self.nodes, overrides.nodes, &mut reject);

        let mut private_api_cidrs = Vec::new();
        for text in self.access.private_api_cidrs.iter().flatten() {
            match text.parse::<Ipv4Net>() {
                Ok(net) if net != net.trunc() => reject(
                    "access.private_api_cidrs",
                    text,
                    &format!("host bits must be zero (did you mean {}?)", net.trunc()),
                ),
                Ok(net) => private_api_cidrs.push(net),
                Err(_) => reject(
                    "access.private_api_cidrs",
                    text,
                    "must be an IPv4 CIDR block such as 172.16.0.0/12",
                ),
            }
        }
        private_api_cidrs.sort();
        private_api_cidrs.dedup();

        let mut parse_timeout = |field: &'static str, text: Option<String>, default: Duration| {
            let Some(text) = text else { return default };
            match parse_duration(&text) {
                Some(d) if d >= Duration::from_secs(1) => d,
                _ => {
                    reject(field, &text, "must be a duration such as 90s, 30m or 1h");
                    default
                }
            }
        };
        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            cluster_limit: parse_timeout(
                "timeouts.cluster",
                self.timeouts.cluster,
                defaults.cluster_limit,
            ),
            resources_limit: parse_timeout(
                "timeouts.resources",
                self.timeouts.resources,
                defaults.resources_limit,
            ),
            poll: parse_timeout("timeouts.poll", self.timeouts.poll, defaults.poll),
        };

        match (vpc_cidr, subnets, counts) {
            (Some(vpc_cidr), Some([a, b]), Some(nodes)) if errors.is_empty() => Ok(StackConfig {
                zones: [
                    Zone {
                        name: format!("{region}{}", letters[0]),
                        letter: letters[0].clone(),
                        cidr: a,
                    },
                    Zone {
                        name: format!("{region}{}", letters[1]),
                        letter: letters[1].clone(),
                        cidr: b,
                    },
                ],
                name,
                region,
                kubernetes_version: version,
                version_pinned: pinned.is_some(),
                support,
                today,
                vpc_cidr,
                nodes,
                instance_type,
                private_api_cidrs,
                timeouts,
            }),
            _ => Err(ConfigError::Invalid(errors)),
        }
    }
}

fn node_counts(
    file: &NodesFile,
    nodes_flag: Option<i64>,
    reject: &mut impl FnMut(&'static str, &str, &str),
) -> Option<NodeCounts> {
    // `--nodes N` pins all three to N: the common "give me N workers" request.
    let (min, desired, max) = match nodes_flag {
        Some(n) => (n, n, n),
        None => {
            let desired = file.desired.unwrap_or(3);
            (
                file.min.unwrap_or(desired.min(3)),
                desired,
                file.max.unwrap_or(desired.max(3)),
            )
        }
    };
    let mut ok = true;
    for (field, value) in [
        ("nodes.min", min),
        ("nodes.desired", desired),
        ("nodes.max", max),
    ] {
        if !(1..=100).contains(&value) {
            reject(
                field,
                &value.to_string(),
                "must be between 1 and 100: the platform needs at least one worker node",
            );
            ok = false;
        }
    }
    if ok && !(min <= desired && desired <= max) {
        reject(
            "nodes",
            &format!("min={min} desired={desired} max={max}"),
            "must satisfy min <= desired <= max",
        );
        ok = false;
    }
    ok.then_some(NodeCounts {
        min: min as i32,
        desired: desired as i32,
        max: max as i32,
    })
}

/// Stack names end up in resource names of every service, so they follow the strictest of them:
/// ELB names (32 characters with a suffix), EKS cluster and IAM role names.
pub fn check_stack_name(name: &str) -> Result<(), String> {
    let rule = format!(
        "must be 1-{MAX_NAME_LEN} characters of lowercase letters, digits and '-', starting with a letter and not ending with '-'"
    );
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(()) } else { Err(rule) }
}

/// Why a version is refused: the accepted versions with their dates, and what else would do.
fn version_rule(version: &str, today: Date, support: Support) -> String {
    let accepted = versions::describe_accepted(today, support);
    let why = match versions::release(version).map(|r| (r, r.phase(today))) {
        Some((r, versions::Phase::Extended)) => format!(
            "{version} left EKS standard support on {}; it is in extended support (billed per cluster-hour) until {}: set support = \"extended\" (or --extended-support) to use it anyway, or pick",
            r.end_of_standard, r.end_of_extended
        ),
        Some((r, versions::Phase::Ended)) => format!(
            "{version} left EKS extended support on {}; pick",
            r.end_of_extended
        ),
        Some((r, versions::Phase::NotYetReleased)) => format!(
            "{version} is not released on EKS before {}; pick",
            r.eks_release
        ),
        Some((_, versions::Phase::Standard)) | None if looks_like_version(version) => {
            "must be a Kubernetes version EKS supports with AL2023 nodes:".to_owned()
        }
        _ => "must be a version string like \"1.35\" (major.minor), one of".to_owned(),
    };
    format!("{why} {accepted} (as of {today}; EKS release calendar)")
}

fn looks_like_version(v: &str) -> bool {
    matches!(v.split_once('.'), Some((a, b)) if !a.is_empty() && !b.is_empty()
        && a.chars().all(|c| c.is_ascii_digit()) && b.chars().all(|c| c.is_ascii_digit()))
}

/// `90s`, `30m`, `1h` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The day the issue was written: 1.33 out of standard support, 1.34 on its last day.
    const TODAY: Date = Date::new(2026, 12, 2);

    fn on_today() -> Overrides {
        Overrides {
            today: Some(TODAY),
            ..Overrides::default()
        }
    }

    fn invalid(text: &str, overrides: Overrides) -> Vec<Invalid> {
        match StackFile::parse(text, "test.toml").and_then(|f| f.resolve(&overrides)) {
            Err(ConfigError::Invalid(list)) => list,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_papers_stack_in_seoul() {
        let cfg = StackFile::default().resolve(&on_today()).unwrap();
        assert_eq!(cfg.region, "ap-northeast-2");
        assert_eq!(cfg.zones[0].name, "ap-northeast-2a");
        assert_eq!(cfg.zones[1].name, "ap-northeast-2c");
        assert_eq!(cfg.vpc_cidr.to_string(), "10.0.0.0/16");
        assert_eq!(cfg.zones[0].cidr.to_string(), "10.0.0.0/20");
        assert_eq!(cfg.zones[1].cidr.to_string(), "10.0.16.0/20");
        assert_eq!(
            cfg.nodes,
            NodeCounts {
                min: 3,
                desired: 3,
                max: 3
            }
        );
        assert_eq!(cfg.kubernetes_version, "1.36");
        assert!(!cfg.version_pinned);
        assert_eq!(cfg.support, Support::Standard);
    }

    #[test]
    fn a_full_file_is_read() {
        let cfg = StackFile::parse(
            r#"
            name = "demo"
            region = "ap-northeast-2"
            kubernetes_version = "1.35"
            [network]
            vpc_cidr = "172.20.0.0/16"
            subnet_cidrs = ["172.20.1.0/24", "172.20.2.0/24"]
            [nodes]
            instance_type = "m6i.large"
            min = 2
            desired = 3
            max = 5
            [timeouts]
            cluster = "40m"
            resources = "90s"
            "#,
            "stack.toml",
        )
        .unwrap()
        .resolve(&on_today())
        .unwrap();
        assert_eq!(cfg.name, "demo");
        assert!(cfg.version_pinned);
        assert_eq!(cfg.kubernetes_version, "1.35");
        assert_eq!(cfg.zones[1].cidr.to_string(), "172.20.2.0/24");
        assert_eq!(cfg.nodes.max, 5);
        assert_eq!(cfg.timeouts.cluster_limit, Duration::from_secs(2400));
        assert_eq!(cfg.timeouts.resources_limit, Duration::from_secs(90));
    }

    #[test]
    fn overrides_win_over_the_file() {
        let cfg = StackFile::parse("name = \"a\"\n[nodes]\ndesired = 5\nmax = 6", "t")
            .unwrap()
            .resolve(&Overrides {
                name: Some("b".into()),
                nodes: Some(4),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!(cfg.name, "b");
        assert_eq!(
            cfg.nodes,
            NodeCounts {
                min: 4,
                desired: 4,
                max: 4
            }
        );
    }

    #[test]
    fn bad_cidr_is_rejected_with_field_and_rule() {
        let errs = invalid(
            "[network]\nvpc_cidr = \"10.0.0.0/33\"",
            Overrides::default(),
        );
        assert_eq!(errs[0].field, "network.vpc_cidr");
        assert!(errs[0].rule.contains("IPv4 CIDR"), "{}", errs[0]);
        let errs = invalid(
            "[network]\nvpc_cidr = \"10.0.0.1/16\"",
            Overrides::default(),
        );
        assert!(errs[0].rule.contains("10.0.0.0/16"), "{}", errs[0]);
        let errs = invalid("[network]\nvpc_cidr = \"8.8.0.0/16\"", Overrides::default());
        assert!(errs[0].rule.contains("private"), "{}", errs[0]);
        let errs = invalid(
            "[network]\nsubnet_cidrs = [\"10.1.0.0/24\", \"10.0.1.0/24\"]",
            Overrides::default(),
        );
        assert_eq!(errs[0].field, "network.subnet_cidrs");
        assert!(errs[0].rule.contains("inside the VPC"));
    }

    #[test]
    fn unknown_region_is_rejected() {
        let errs = invalid("region = \"ap-northeast-9\"", Overrides::default());
        assert_eq!(errs[0].field, "region");
        assert!(errs[0].to_string().contains("ap-northeast-9"));
    }

    #[test]
    fn zero_nodes_are_rejected() {
        let errs = invalid(
            "",
            Overrides {
                nodes: Some(0),
                ..Overrides::default()
            },
        );
        assert!(errs.iter().any(|e| e.field == "nodes.desired"));
        assert!(errs[0].rule.contains("at least one"));
        let errs = invalid(
            "[nodes]\nmin = 4\ndesired = 3\nmax = 5",
            Overrides::default(),
        );
        assert_eq!(errs[0].field, "nodes");
        assert!(errs[0].rule.contains("min <= desired <= max"));
    }

    #[test]
    fn version_strings_are_checked() {
        let errs = invalid("kubernetes_version = \"1.29\"", on_today());
        assert!(errs[0].rule.contains("AL2023"), "{}", errs[0]);
        let errs = invalid("kubernetes_version = \"v1.34.2\"", on_today());
        assert!(errs[0].rule.contains("major.minor"), "{}", errs[0]);
    }

    /// EKS release calendar: on 2026-12-02 standard support covers 1.34-1.36.
    #[test]
    fn only_versions_in_standard_support_on_the_day_are_accepted() {
        for v in ["1.34", "1.35", "1.36"] {
            let cfg = StackFile::parse(&format!("kubernetes_version = \"{v}\""), "t")
                .unwrap()
                .resolve(&on_today())
                .unwrap();
            assert_eq!(cfg.kubernetes_version, v);
            assert_eq!(cfg.support, Support::Standard);
        }
        let errs = invalid("kubernetes_version = \"1.33\"", on_today());
        assert_eq!(errs[0].field, "kubernetes_version");
        let rule = &errs[0].rule;
        assert!(
            rule.contains("left EKS standard support on 2026-07-29"),
            "{rule}"
        );
        assert!(rule.contains("support = \"extended\""), "{rule}");
        assert!(
            rule.contains("1.34 (standard support until 2026-12-02)"),
            "{rule}"
        );
        assert!(rule.contains("1.36 (standard support until"), "{rule}");
        // The next day 1.34 is out too: the date is the rule's, not the table's.
        let errs = invalid(
            "kubernetes_version = \"1.34\"",
            Overrides {
                today: Some(Date::new(2026, 12, 3)),
                ..Overrides::default()
            },
        );
        assert!(errs[0].rule.contains("2026-12-02"), "{}", errs[0]);
    }

    #[test]
    fn extended_support_by_file_or_flag_accepts_versions_in_extended_support() {
        let by_file =
            StackFile::parse("kubernetes_version = \"1.33\"\nsupport = \"extended\"", "t")
                .unwrap()
                .resolve(&on_today())
                .unwrap();
        assert_eq!(by_file.support, Support::Extended);
        assert_eq!(by_file.kubernetes_version, "1.33");
        let by_flag = StackFile::parse("kubernetes_version = \"1.32\"", "t")
            .unwrap()
            .resolve(&Overrides {
                extended_support: true,
                ..on_today()
            })
            .unwrap();
        assert_eq!(by_flag.support, Support::Extended);
        // Past extended support nothing helps.
        let errs = invalid(
            "kubernetes_version = \"1.32\"\nsupport = \"extended\"",
            Overrides {
                today: Some(Date::new(2027, 3, 24)),
                ..Overrides::default()
            },
        );
        assert!(
            errs[0]
                .rule
                .contains("left EKS extended support on 2027-03-23"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn an_unknown_support_value_names_the_field_and_both_choices() {
        let errs = invalid("support = \"premium\"", on_today());
        assert_eq!(errs[0].field, "support");
        assert!(errs[0].rule.contains("\"standard\""), "{}", errs[0]);
        assert!(errs[0].rule.contains("\"extended\""), "{}", errs[0]);
    }

    /// EC2 CreateSecurityGroup ("Cannot start with sg-") and ELBv2 CreateLoadBalancer ("must not
    /// begin with internal-"): refused up front, with the field and the rule.
    #[test]
    fn names_that_make_names_aws_forbids_are_refused_up_front() {
        let errs = invalid("name = \"sg-prod\"", on_today());
        assert!(errs.iter().all(|e| e.field == "name"));
        assert!(errs[0].rule.contains("`sg-prod-cluster-sg`"), "{}", errs[0]);
        assert!(errs[0].rule.contains("start with `sg-`"), "{}", errs[0]);
        let errs = invalid("name = \"internal\"", on_today());
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "name");
        assert!(errs[0].rule.contains("`internal-nlb`"), "{}", errs[0]);
        assert!(
            errs[0].rule.contains("begin with `internal-`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let errs = invalid(
            "name = \"Bad_Name\"\nregion = \"mars-1\"\n[nodes]\ndesired = 0",
            Overrides::default(),
        );
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"name"));
        assert!(fields.contains(&"region"));
        assert!(fields.contains(&"nodes.desired"));
    }

    #[test]
    fn unknown_keys_are_errors_not_silently_ignored() {
        let err = StackFile::parse("[nodes]\ncount = 3", "stack.toml").unwrap_err();
        assert!(err.to_string().contains("count"), "{err}");
    }

    #[test]
    fn stack_names_fit_every_service() {
        assert!(check_stack_name("kdeploy").is_ok());
        assert!(check_stack_name("team-a-prod2").is_ok());
        for bad in ["", "1abc", "abc-", "ABC", "a_b", "a".repeat(25).as_str()] {
            assert!(check_stack_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("soon"), None);
    }
}
