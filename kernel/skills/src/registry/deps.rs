//! Dependency resolution: every skill a skill needs, transitively, mapped
//! to one concrete version that is present, enabled and matches every
//! requirement on it in this resolution.
//!
//! The resolution settles by rounds: each round collects the requirements
//! of everything reachable from the root through the versions chosen so
//! far, checks the graph for a cycle, and chooses for each name the first
//! enabled version (in the order [`super::select`] prefers) matching all of
//! them; it is done when a round changes nothing. Missing skills, missing
//! versions, disabled versions, conflicts (two skills needing incompatible
//! versions of one dependency) and cycles (reported with their path) are
//! `DEPENDENCY_ERROR`s with a hint. This module sees only headers, through
//! [`Catalogue`]; it never loads a skill.

use std::collections::{BTreeMap, VecDeque};

use semver::{Version, VersionReq};

use super::select::present;
use crate::model::Dependency;
use crate::template::nearest;
use crate::{ErrorCode, SkillError};

/// More rounds than this means requirements keep changing each other's
/// choice; reported as a conflict.
const MAX_ROUNDS: usize = 64;

/// One version a name offers, in order of preference.
#[derive(Debug, Clone)]
pub struct DepOffer {
    pub version: Version,
    pub disabled: Option<String>,
    pub dependencies: Vec<Dependency>,
}

/// What resolution reads of the registry.
pub trait Catalogue {
    /// The versions `name` offers, in order of preference; empty if the
    /// name is unknown.
    fn offers(&self, name: &str) -> Vec<DepOffer>;
    /// Every known name (for "did you mean").
    fn names(&self) -> Vec<String>;
}

/// The version chosen for each dependency, by name (the root excluded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolution {
    pub picks: BTreeMap<String, Version>,
}

/// One requirement on a name, and who has it.
#[derive(Debug, Clone)]
struct Need {
    from: String,
    req: VersionReq,
}

/// Resolves the dependencies of `name@version`, which declares `deps`.
pub fn resolve(
    name: &str,
    version: &Version,
    deps: &[Dependency],
    catalogue: &impl Catalogue,
) -> Result<Resolution, SkillError> {
    let root_id = format!("{name}@{version}");
    let mut chosen: BTreeMap<String, Version> = BTreeMap::new();
    for _ in 0..MAX_ROUNDS {
        let mut graph: BTreeMap<String, (Version, Vec<Dependency>)> = BTreeMap::new();
        graph.insert(name.to_string(), (version.clone(), deps.to_vec()));
        for (n, v) in &chosen {
            let offer = catalogue.offers(n).into_iter().find(|o| &o.version == v);
            let deps = offer.map(|o| o.dependencies).unwrap_or_default();
            graph.insert(n.clone(), (v.clone(), deps));
        }
        let needs = needs_reachable(name, &graph);
        if let Some(cycle) = find_cycle(name, &graph) {
            return Err(dependency_error(
                &root_id,
                format!("dependency cycle: {}", cycle.join(" → ")),
                "remove one of these dependencies: a skill may not need itself, directly or \
                 through others",
            ));
        }
        let mut next = BTreeMap::new();
        for (dep, needs) in &needs {
            if dep == name {
                continue; // only reachable through a cycle, reported above
            }
            next.insert(dep.clone(), choose(dep, needs, catalogue, &root_id)?);
        }
        if next == chosen {
            return Ok(Resolution { picks: chosen });
        }
        chosen = next;
    }
    Err(dependency_error(
        &root_id,
        format!("the dependencies of `{root_id}` do not settle on one version each"),
        "pin the dependencies to exact versions (`=1.2.3`)",
    ))
}

/// Every requirement of the nodes reachable from `root` in `graph`.
fn needs_reachable(
    root: &str,
    graph: &BTreeMap<String, (Version, Vec<Dependency>)>,
) -> BTreeMap<String, Vec<Need>> {
    let mut needs: BTreeMap<String, Vec<Need>> = BTreeMap::new();
    let mut queue = VecDeque::from([root.to_string()]);
    let mut seen = vec![root.to_string()];
    while let Some(node) = queue.pop_front() {
        let Some((version, deps)) = graph.get(&node) else {
            continue;
        };
        for dep in deps {
            needs.entry(dep.name.clone()).or_default().push(Need {
                from: format!("{node}@{version}"),
                req: dep.version.clone(),
            });
            if !seen.contains(&dep.name) {
                seen.push(dep.name.clone());
                queue.push_back(dep.name.clone());
            }
        }
    }
    needs
}

/// The first cycle found from `root`, as `name@version` steps ending where
/// it started.
fn find_cycle(
    root: &str,
    graph: &BTreeMap<String, (Version, Vec<Dependency>)>,
) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, (Version, Vec<Dependency>)>,
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.iter().any(|n| n == node) {
            return None;
        }
        let (_, deps) = graph.get(node)?;
        path.push(node.to_string());
        for dep in deps {
            if let Some(cycle) = visit(&dep.name, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.push(node.to_string());
        None
    }
    let cycle = visit(root, graph, &mut Vec::new(), &mut Vec::new())?;
    Some(
        cycle
            .into_iter()
            .map(|n| match graph.get(&n) {
                Some((v, _)) => format!("{n}@{v}"),
                None => n,
            })
            .collect(),
    )
}

/// The version of `name` that satisfies every one of `needs`.
fn choose(
    name: &str,
    needs: &[Need],
    catalogue: &impl Catalogue,
    root_id: &str,
) -> Result<Version, SkillError> {
    let offers = catalogue.offers(name);
    let first = &needs[0];
    if offers.is_empty() {
        let names = catalogue.names();
        let hint = match nearest(name, names.iter().map(String::as_str)) {
            Some(n) => format!(
                "did you mean `{n}`? Otherwise add `{name}` to a skill directory, or remove the \
                 dependency"
            ),
            None => format!("add `{name}` to a skill directory, or remove the dependency"),
        };
        return Err(dependency_error(
            root_id,
            format!(
                "`{}` depends on `{name}` ({}), but no skill named `{name}` exists",
                first.from, first.req
            ),
            hint,
        ));
    }
    let fits = |v: &Version| needs.iter().all(|n| n.req.matches(v));
    if let Some(o) = offers
        .iter()
        .find(|o| o.disabled.is_none() && fits(&o.version))
    {
        return Ok(o.version.clone());
    }
    if let Some(o) = offers.iter().find(|o| fits(&o.version)) {
        let id = format!("{name}@{}", o.version);
        return Err(dependency_error(
            root_id,
            format!(
                "`{}` needs `{name}` {}, but `{id}` is disabled: {}",
                first.from,
                first.req,
                o.disabled.as_deref().unwrap_or_default()
            ),
            format!("enable it (`%skill enable {id}`), or change the requirement"),
        ));
    }
    let (present, _) = present(offers.iter().map(|o| &o.version));
    let matched = |n: &Need| offers.iter().any(|o| n.req.matches(&o.version));
    if let Some(unmet) = needs.iter().find(|n| !matched(n)) {
        return Err(dependency_error(
            root_id,
            format!(
                "`{}` needs `{name}` {}, but the versions present are {present}",
                unmet.from, unmet.req
            ),
            format!(
                "add a version of `{name}` matching {}, or change the requirement in `{}`",
                unmet.req, unmet.from
            ),
        ));
    }
    // Each need alone is met, so some two cannot be met together.
    let (a, b) = incompatible_pair(needs, &offers).unwrap_or((first, &needs[needs.len() - 1]));
    Err(dependency_error(
        root_id,
        format!(
            "`{}` needs `{name}` {} and `{}` needs `{name}` {}; no version of `{name}` satisfies \
             both (present: {present})",
            a.from, a.req, b.from, b.req
        ),
        format!(
            "make the two requirements overlap, or add a version of `{name}` that matches both"
        ),
    ))
}

fn incompatible_pair<'n>(needs: &'n [Need], offers: &[DepOffer]) -> Option<(&'n Need, &'n Need)> {
    needs.iter().enumerate().find_map(|(i, a)| {
        needs[i + 1..]
            .iter()
            .find(|b| {
                !offers
                    .iter()
                    .any(|o| a.req.matches(&o.version) && b.req.matches(&o.version))
            })
            .map(|b| (a, b))
    })
}

fn dependency_error(root_id: &str, message: String, hint: impl Into<String>) -> SkillError {
    SkillError::new(ErrorCode::DependencyError, message, hint).for_skill(root_id)
}

#[cfg(test)]
mod tests;
