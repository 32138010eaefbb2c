//! The plan catalog, read from `plans.toml`. A bad file stops start-up with file, line and problem.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::bail;
use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::{Feature, Limits, Plan};

/// The catalog shipped with the binary (the repository's `plans.toml`).
const DEFAULT_PLANS: &str = include_str!("../../plans.toml");

/// Plans in file order; `free` always exists.
#[derive(Debug, Clone)]
pub struct PlanCatalog {
    plans: IndexMap<String, Arc<Plan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    plans: IndexMap<String, Spanned<FilePlan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlan {
    name: String,
    price_cents: Spanned<i64>,
    #[serde(default = "usd")]
    currency: String,
    #[serde(default = "month")]
    interval: Spanned<String>,
    stripe_price: Option<String>,
    #[serde(default)]
    features: Vec<Feature>,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_members: Option<Spanned<i64>>,
    max_storage_bytes: Option<Spanned<i64>>,
    max_api_requests: Option<Spanned<i64>>,
    requests_per_second: Option<Spanned<i64>>,
}

fn usd() -> String {
    "usd".into()
}

fn month() -> Spanned<String> {
    Spanned::new(0..0, "month".into())
}

impl PlanCatalog {
    /// Loads `PLANS_FILE` if given; else `./plans.toml` if present; else the built-in catalog.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(path) => Self::from_file(path),
            None if Path::new("plans.toml").is_file() => Self::from_file(Path::new("plans.toml")),
            None => Self::parse(DEFAULT_PLANS, "built-in plans.toml"),
        }
    }

    /// The built-in catalog (free, pro, enterprise).
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_PLANS, "built-in plans.toml").expect("the shipped plans.toml is valid")
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| anyhow::anyhow!("cannot read plans file {}: {err}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and checks a catalog; errors read `<origin>: line N: problem`.
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let doc: FileDoc = toml::from_str(text).map_err(|err| {
            let line = err.span().map(|span| line_of(text, span.start));
            let message = err.message().trim_end().to_owned();
            match line {
                Some(line) => anyhow::anyhow!("invalid plans file {origin}: line {line}: {message}"),
                None => anyhow::anyhow!("invalid plans file {origin}: {message}"),
            }
        })?;
        let fail = |span: std::ops::Range<usize>, problem: String| -> anyhow::Error {
            anyhow::anyhow!("invalid plans file {origin}: line {}: {problem}", line_of(text, span.start))
        };
        let mut plans = IndexMap::new();
        for (id, spanned) in doc.plans {
            let span = spanned.span();
            let plan = spanned.into_inner();
            if !(1..=32).contains(&id.len())
                || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return Err(fail(
                    span,
                    format!("plan id {id:?} must be 1-32 characters of a-z, 0-9, '_' or '-'"),
                ));
            }
            if *plan.price_cents.get_ref() < 0 {
                return Err(fail(
                    plan.price_cents.span(),
                    format!("plans.{id}.price_cents must not be negative"),
                ));
            }
            if !["month", "year"].contains(&plan.interval.get_ref().as_str()) {
                return Err(fail(
                    plan.interval.span(),
                    format!("plans.{id}.interval must be \"month\" or \"year\""),
                ));
            }
            let limit = |value: Option<Spanned<i64>>, key: &str| -> anyhow::Result<Option<i64>> {
                match value {
                    None => Ok(None),
                    Some(v) if *v.get_ref() == -1 => Ok(None),
                    Some(v) if *v.get_ref() >= 0 => Ok(Some(*v.get_ref())),
                    Some(v) => Err(fail(
                        v.span(),
                        format!("plans.{id}.limits.{key} must be -1 (unlimited) or at least 0"),
                    )),
                }
            };
            let limits = Limits {
                max_members: limit(plan.limits.max_members, "max_members")?,
                max_storage_bytes: limit(plan.limits.max_storage_bytes, "max_storage_bytes")?,
                max_api_requests: limit(plan.limits.max_api_requests, "max_api_requests")?,
                requests_per_second: limit(plan.limits.requests_per_second, "requests_per_second")?,
            };
            let plan = Plan {
                id: id.clone(),
                name: plan.name,
                price_cents: *plan.price_cents.get_ref(),
                currency: plan.currency,
                interval: plan.interval.into_inner(),
                stripe_price: plan.stripe_price,
                features: plan.features.into_iter().collect::<BTreeSet<_>>(),
                limits,
            };
            plans.insert(id, Arc::new(plan));
        }
        if !plans.contains_key("free") {
            bail!("invalid plans file {origin}: there is no [plans.free]; new tenants start on it");
        }
        Ok(Self { plans })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Plan>> {
        self.plans.get(id)
    }

    /// The plan new tenants start on, and the fallback for a tenant on a plan no longer offered.
    pub fn free(&self) -> &Arc<Plan> {
        &self.plans["free"]
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Plan>> {
        self.plans.values()
    }

    /// The cheapest plan that includes `feature`, to name in `FEATURE_NOT_IN_PLAN`.
    pub fn cheapest_with(&self, feature: Feature) -> Option<&Arc<Plan>> {
        self.all().filter(|p| p.features.contains(&feature)).min_by_key(|p| p.price_cents)
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_catalog_has_the_three_seed_plans() {
        let catalog = PlanCatalog::builtin();
        let ids: Vec<_> = catalog.all().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["free", "pro", "enterprise"]);
        let free = catalog.free();
        assert_eq!((free.price_cents, free.limits.max_members), (0, Some(3)));
        assert_eq!(catalog.get("pro").unwrap().limits.max_storage_bytes, Some(100 * 1024 * 1024 * 1024));
        assert_eq!(catalog.get("enterprise").unwrap().limits.max_members, None);
        assert_eq!(catalog.cheapest_with(Feature::CustomDomain).unwrap().id, "enterprise");
        assert_eq!(catalog.cheapest_with(Feature::UnlimitedApi).unwrap().id, "pro");
        assert!(free.features.contains(&Feature::ApiAccess));
        assert_eq!(catalog.cheapest_with(Feature::Sla).unwrap().id, "enterprise");
    }

    fn error(text: &str) -> String {
        PlanCatalog::parse(text, "plans.toml").unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_feature_names_its_line() {
        let err = error("[plans.free]\nname = \"Free\"\nprice_cents = 0\nfeatures = [\"teleport\"]\n");
        assert!(err.starts_with("invalid plans file plans.toml: line 4:"), "{err}");
        assert!(err.contains("teleport"), "{err}");
    }

    #[test]
    fn a_negative_limit_names_its_line_and_rule() {
        let err =
            error("[plans.free]\nname = \"Free\"\nprice_cents = 0\n[plans.free.limits]\nmax_members = -5\n");
        assert_eq!(
            err,
            "invalid plans file plans.toml: line 5: plans.free.limits.max_members must be -1 (unlimited) or at least 0"
        );
    }

    #[test]
    fn syntax_errors_and_a_missing_free_plan_are_reported() {
        assert!(error("[plans.free\n").contains("line 1"), "{}", error("[plans.free\n"));
        let err = error("[plans.pro]\nname = \"Pro\"\nprice_cents = 1\n");
        assert!(err.contains("no [plans.free]"), "{err}");
        let err = error("[plans.free]\nname = \"Free\"\nprice_cents = 0\nseats = 3\n");
        assert!(err.contains("line 4") && err.contains("seats"), "{err}");
    }
}
