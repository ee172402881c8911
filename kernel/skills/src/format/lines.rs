//! Finding the line of a field in a manifest's source text.
//!
//! The parsers give a line for syntax and type errors only; a semantic
//! error (a cycle, a bad default) is found after parsing, on values that no
//! longer know where they came from. This module walks the source text
//! again along the field's path (`phases[2].depends_on`) and returns the
//! line of the key (or list item) it names.
//!
//! Best effort, and never an error: block YAML (the way manifests are
//! written) and JSON are followed exactly; inside a YAML flow collection
//! (`[a, b]`, `{k: v}`) the line of the collection is returned. A path it
//! cannot follow gives the line of the deepest part it could.

use super::field_path::{segments, Seg};

/// The 1-based line of the field `path` in `text`, YAML or JSON.
pub fn locate(text: &str, path: &str, json: bool) -> Option<usize> {
    let segs = segments(path);
    if segs.is_empty() {
        return None;
    }
    if json {
        super::json_lines::locate(text, &segs)
    } else {
        yaml_locate(text, &segs)
    }
}

/// A YAML line reduced to what the walk needs.
struct Line<'a> {
    indent: usize,
    /// The text after the indentation, comments kept (they never match a key).
    body: &'a str,
}

fn content_lines(text: &str) -> Vec<Option<Line<'_>>> {
    text.lines()
        .map(|l| {
            let body = l.trim_start_matches(' ');
            let blank = body.trim().is_empty() || body.starts_with('#') || body == "---";
            (!blank).then(|| Line {
                indent: l.len() - body.len(),
                body,
            })
        })
        .collect()
}

/// A node of the YAML walk: its content starts at `col` of line `line`.
#[derive(Clone, Copy)]
struct Node {
    line: usize,
    col: usize,
}

fn yaml_locate(text: &str, segs: &[Seg]) -> Option<usize> {
    let lines = content_lines(text);
    let first = lines.iter().position(Option::is_some)?;
    let mut node = Node {
        line: first,
        col: lines[first].as_ref()?.indent,
    };
    let mut found = None;
    for seg in segs {
        let Some(next) = yaml_step(&lines, node, seg) else {
            break;
        };
        found = Some(next.0 + 1);
        match next.1 {
            Some(n) => node = n,
            None => break, // a scalar or a flow collection: stop at its line
        }
    }
    found
}

/// The text of `node`'s first line from its column on.
fn at<'a>(lines: &[Option<Line<'a>>], node: Node) -> &'a str {
    match &lines[node.line] {
        Some(l) => l
            .body
            .get(node.col.saturating_sub(l.indent)..)
            .unwrap_or(""),
        None => "",
    }
}

/// The lines that belong to `node`: its first, then those indented more
/// than its column (or, for a list whose dashes sit at the column, the
/// following dash lines at that column).
fn node_lines(lines: &[Option<Line<'_>>], node: Node) -> Vec<usize> {
    let is_list = at(lines, node).starts_with('-');
    let mut out = vec![node.line];
    for (i, line) in lines.iter().enumerate().skip(node.line + 1) {
        let Some(l) = line else { continue };
        // A mapping goes on past a list at its own indentation (`key:\n- a`);
        // a list ends at the first line at its indentation that is no item.
        let ends_list = is_list && l.indent == node.col && !l.body.starts_with('-');
        if l.indent < node.col || ends_list {
            break;
        }
        out.push(i);
    }
    out
}

/// Steps from `node` along `seg`: the line of the key or item found, and
/// the node of its value when that value is a block (not inline).
fn yaml_step(lines: &[Option<Line<'_>>], node: Node, seg: &Seg) -> Option<(usize, Option<Node>)> {
    let members: Vec<Node> = node_lines(lines, node)
        .into_iter()
        .filter_map(|i| {
            let l = lines[i].as_ref()?;
            let dash = l.body.starts_with('-');
            if i == node.line {
                Some(node)
            } else if l.indent == node.col && dash == at(lines, node).starts_with('-') {
                Some(Node {
                    line: i,
                    col: l.indent,
                })
            } else {
                None
            }
        })
        .collect();
    match seg {
        Seg::Key(key) => members.into_iter().find_map(|m| {
            let rest = strip_key(at(lines, m), key)?;
            Some((m.line, value_node(lines, m, rest)))
        }),
        Seg::Index(i) => {
            let item = members
                .into_iter()
                .filter(|m| at(lines, *m).starts_with('-'))
                .nth(*i)?;
            let after = &at(lines, item)[1..];
            let trimmed = after.trim_start_matches(' ');
            if trimmed.is_empty() {
                return Some((item.line, next_block(lines, item)));
            }
            let col = item.col + 1 + (after.len() - trimmed.len());
            let inline = Node {
                line: item.line,
                col,
            };
            let flow = trimmed.starts_with('[') || trimmed.starts_with('{');
            Some((item.line, (!flow).then_some(inline)))
        }
    }
}

/// `key: rest` → `rest`, for plain and quoted keys.
fn strip_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    for quote in ["", "\"", "'"] {
        let Some(rest) = text
            .strip_prefix(quote)
            .and_then(|t| t.strip_prefix(key))
            .and_then(|t| t.strip_prefix(quote))
        else {
            continue;
        };
        let rest = rest.trim_start_matches(' ');
        if let Some(value) = rest.strip_prefix(':') {
            if value.is_empty() || value.starts_with(' ') {
                return Some(value.trim());
            }
        }
    }
    None
}

/// The node of a key's value: the next block when the key ends its line
/// (or starts a block scalar), else none (inline scalar or flow).
fn value_node(lines: &[Option<Line<'_>>], key: Node, rest: &str) -> Option<Node> {
    let block = rest.is_empty() || rest.starts_with('#') || rest.starts_with('&');
    if block {
        next_block(lines, key)
    } else {
        None
    }
}

fn next_block(lines: &[Option<Line<'_>>], from: Node) -> Option<Node> {
    let (i, l) = lines
        .iter()
        .enumerate()
        .skip(from.line + 1)
        .find_map(|(i, l)| l.as_ref().map(|l| (i, l)))?;
    // A list may sit at its key's own indentation (`key:\n- a`).
    let nested = l.indent > from.col || (l.indent == from.col && l.body.starts_with('-'));
    nested.then_some(Node {
        line: i,
        col: l.indent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
name: review
# a comment
parameters:
  - name: tone
    type: enum
    values: [a, b]
  - name: depth
    default: 3
phases:
- id: draft
  template: |
    name: not a key
  depends_on:
    - outline
    - notes
resilience: {retries: 2}
";

    #[test]
    fn splits_dotted_paths_with_indices() {
        assert_eq!(
            segments("phases[2].depends_on[0]"),
            vec![
                Seg::Key("phases".into()),
                Seg::Index(2),
                Seg::Key("depends_on".into()),
                Seg::Index(0)
            ]
        );
    }

    #[test]
    fn finds_keys_and_items_in_block_yaml() {
        assert_eq!(locate(YAML, "name", false), Some(1));
        assert_eq!(locate(YAML, "parameters[0].type", false), Some(5));
        assert_eq!(locate(YAML, "parameters[1].default", false), Some(8));
        assert_eq!(locate(YAML, "parameters[1]", false), Some(7));
        assert_eq!(locate(YAML, "phases[0].depends_on[1]", false), Some(15));
        assert_eq!(locate(YAML, "phases[0].template", false), Some(11));
    }

    #[test]
    fn stops_at_the_line_of_a_flow_collection_or_a_missing_key() {
        assert_eq!(locate(YAML, "parameters[0].values[1]", false), Some(6));
        assert_eq!(locate(YAML, "resilience.retries", false), Some(16));
        assert_eq!(locate(YAML, "phases[0].nothing", false), Some(10));
        assert_eq!(locate(YAML, "nothing", false), None);
    }

    #[test]
    fn finds_keys_and_items_in_json() {
        let json = "{\n  \"name\": \"x\",\n  \"phases\": [\n    {\"id\": \"a\"},\n    {\n      \"id\": \"b\",\n      \"depends_on\": [\"a\"]\n    }\n  ]\n}";
        assert_eq!(locate(json, "name", true), Some(2));
        assert_eq!(locate(json, "phases[1].depends_on", true), Some(7));
        assert_eq!(locate(json, "phases[0].id", true), Some(4));
        assert_eq!(locate(json, "phases[2]", true), Some(3));
    }
}
