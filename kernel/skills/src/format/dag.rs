//! The phase graph of a workflow, checked at load: ids well formed and
//! unique, every `depends_on` naming a phase, no cycle (reported with its
//! path, `a -> b -> a`), one terminal output, and each phase's ancestors —
//! the phases whose outputs its templates may read.
//!
//! Works on ids and field paths only; never builds a phase.

use std::collections::{BTreeSet, HashMap};

use super::doc::Doc;
use super::limits::MAX_PHASE_ID_CHARS;
use crate::error::LoadError;
use crate::template::nearest;

/// One phase as the graph sees it.
pub struct Node {
    pub id: String,
    pub depends_on: Vec<String>,
    /// The phase's path in the manifest (`phases[2]`).
    pub field: String,
}

/// A checked graph: for each phase (in file order) its ancestors, and the
/// terminal phase.
pub struct Graph {
    pub ancestors: Vec<Vec<String>>,
    pub output: String,
}

fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("a phase id is empty".into());
    }
    if id.chars().count() > MAX_PHASE_ID_CHARS {
        return Some(format!(
            "phase id `{id}` is longer than {MAX_PHASE_ID_CHARS} characters"
        ));
    }
    id.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        .map(|c| format!("phase id `{id}` contains `{c}`; use letters, digits, `_` and `-`"))
}

/// How a workflow names its result: the manifest's `output` (value and
/// field path) when it has one; `allowed` is false for a format without
/// that field (the remedy then does not offer it).
pub struct Output<'a> {
    pub named: Option<(&'a str, &'a str)>,
    pub allowed: bool,
}

/// Checks the graph.
pub fn check(doc: &Doc<'_>, nodes: &[Node], output: Output<'_>) -> Result<Graph, LoadError> {
    let mut index = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        let field = format!("{}.id", n.field);
        if let Some(problem) = id_problem(&n.id) {
            return Err(doc.error(
                &field,
                problem,
                "give each phase a short id like `outline` or `draft-1`",
            ));
        }
        if index.insert(n.id.as_str(), i).is_some() {
            return Err(doc.error(
                &field,
                format!("phase id `{}` is used twice", n.id),
                "give every phase its own id",
            ));
        }
    }
    for n in nodes {
        let mut seen = BTreeSet::new();
        for (j, dep) in n.depends_on.iter().enumerate() {
            let field = format!("{}.depends_on[{j}]", n.field);
            if !index.contains_key(dep.as_str()) {
                let remedy = match nearest(dep, nodes.iter().map(|n| n.id.as_str())) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!(
                        "name one of the phases: {}",
                        nodes
                            .iter()
                            .map(|n| n.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                return Err(doc.error(
                    &field,
                    format!("phase `{}` depends on `{dep}`, which is not a phase", n.id),
                    remedy,
                ));
            }
            if !seen.insert(dep) {
                return Err(doc.error(
                    &field,
                    format!("`{dep}` is listed twice in `depends_on`"),
                    "list each phase once",
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(nodes, &index) {
        let first = &nodes[index[cycle[0].as_str()]];
        let pos = first
            .depends_on
            .iter()
            .position(|d| *d == cycle[1])
            .unwrap_or(0);
        return Err(doc.error(
            &format!("{}.depends_on[{pos}]", first.field),
            format!(
                "the phases depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ),
            "remove one of these dependencies; a workflow must be acyclic",
        ));
    }
    let output = terminal(doc, nodes, output)?;
    let ancestors = nodes
        .iter()
        .map(|n| ancestors_of(n, nodes, &index))
        .collect();
    Ok(Graph { ancestors, output })
}

/// A cycle as a path of ids that starts and ends on the same phase.
fn find_cycle(nodes: &[Node], index: &HashMap<&str, usize>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    fn visit(
        i: usize,
        nodes: &[Node],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::OnStack;
        stack.push(i);
        for dep in &nodes[i].depends_on {
            let j = index[dep.as_str()];
            match marks[j] {
                Mark::OnStack => {
                    let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut path: Vec<String> =
                        stack[from..].iter().map(|&k| nodes[k].id.clone()).collect();
                    path.push(nodes[j].id.clone());
                    return Some(path);
                }
                Mark::New => {
                    if let Some(c) = visit(j, nodes, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; nodes.len()];
    (0..nodes.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, nodes, index, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}

/// The terminal-output rule: `output` names a phase, or exactly one phase
/// has no dependents.
fn terminal(doc: &Doc<'_>, nodes: &[Node], output: Output<'_>) -> Result<String, LoadError> {
    if let Some((id, field)) = output.named {
        if nodes.iter().any(|n| n.id == id) {
            return Ok(id.to_string());
        }
        let remedy = match nearest(id, nodes.iter().map(|n| n.id.as_str())) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "name the phase whose output is the skill's result".into(),
        };
        return Err(doc.error(
            field,
            format!("`output` names `{id}`, which is not a phase"),
            remedy,
        ));
    }
    let depended: BTreeSet<&str> = nodes
        .iter()
        .flat_map(|n| n.depends_on.iter().map(String::as_str))
        .collect();
    let sinks: Vec<&str> = nodes
        .iter()
        .map(|n| n.id.as_str())
        .filter(|id| !depended.contains(id))
        .collect();
    match sinks.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(doc.error(
            "phases",
            format!("the workflow has {} final phases ({}) and no `output`", sinks.len(), sinks.join(", ")),
            if output.allowed {
                format!(
                    "add `output: {}` naming the phase whose output is the result, or make one phase depend on the others",
                    sinks.last().unwrap_or(&"ID")
                )
            } else {
                "make one final phase depend on the others; its output is the result".to_string()
            },
        )),
    }
}

/// Every phase `n` depends on, directly or through others, in file order.
fn ancestors_of(n: &Node, nodes: &[Node], index: &HashMap<&str, usize>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = n.depends_on.iter().map(String::as_str).collect();
    while let Some(id) = todo.pop() {
        if seen.insert(index[id]) {
            todo.extend(nodes[index[id]].depends_on.iter().map(String::as_str));
        }
    }
    seen.into_iter().map(|i| nodes[i].id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn nodes(spec: &[(&str, &[&str])]) -> Vec<Node> {
        spec.iter()
            .enumerate()
            .map(|(i, (id, deps))| Node {
                id: id.to_string(),
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
                field: format!("phases[{i}]"),
            })
            .collect()
    }

    fn none() -> Output<'static> {
        Output {
            named: None,
            allowed: true,
        }
    }

    fn doc() -> Doc<'static> {
        Doc::new(Path::new("w.yaml"), "", false)
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let n = nodes(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let e = check(&doc(), &n, none()).err().unwrap();
        assert!(e.message.ends_with("a -> c -> b -> a"), "{}", e.message);
        assert_eq!(e.field.as_deref(), Some("phases[0].depends_on[0]"));
        let selfish = nodes(&[("a", &["a"])]);
        let e = check(&doc(), &selfish, none()).err().unwrap();
        assert!(e.message.ends_with("a -> a"), "{}", e.message);
    }

    #[test]
    fn ancestors_are_transitive_and_the_single_sink_is_the_output() {
        let n = nodes(&[
            ("pros", &[]),
            ("cons", &[]),
            ("weigh", &["pros", "cons"]),
            ("verdict", &["weigh"]),
        ]);
        let g = check(&doc(), &n, none()).ok().unwrap();
        assert_eq!(g.output, "verdict");
        assert_eq!(g.ancestors[3], vec!["pros", "cons", "weigh"]);
        assert!(g.ancestors[0].is_empty());
    }

    #[test]
    fn several_sinks_need_an_output_that_names_a_phase() {
        let n = nodes(&[("pros", &[]), ("cons", &[])]);
        let e = check(&doc(), &n, none()).err().unwrap();
        assert!(
            e.message.contains("2 final phases (pros, cons)"),
            "{}",
            e.message
        );
        assert_eq!(
            check(
                &doc(),
                &n,
                Output {
                    named: Some(("cons", "output")),
                    allowed: true
                }
            )
            .ok()
            .unwrap()
            .output,
            "cons"
        );
        let e = check(
            &doc(),
            &n,
            Output {
                named: Some(("con", "output")),
                allowed: true,
            },
        )
        .err()
        .unwrap();
        assert_eq!(e.remedy, "did you mean `cons`?");
    }

    #[test]
    fn unknown_duplicate_and_malformed_ids_are_refused() {
        let e = check(&doc(), &nodes(&[("a", &["b"])]), none())
            .err()
            .unwrap();
        assert!(
            e.message.contains("`b`, which is not a phase"),
            "{}",
            e.message
        );
        let e = check(&doc(), &nodes(&[("a", &[]), ("a", &[])]), none())
            .err()
            .unwrap();
        assert!(e.message.contains("used twice"), "{}", e.message);
        let e = check(&doc(), &nodes(&[("a b", &[])]), none())
            .err()
            .unwrap();
        assert!(e.message.contains("contains ` `"), "{}", e.message);
    }
}
