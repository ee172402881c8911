//! The kind-specific part of a native manifest: a prompt's templates, a
//! workflow's phases, a conversation's context files, a command's or
//! session's program (its sandbox policy kept raw).
//!
//! Every template is compiled and checked here against the contract it
//! will render with: the parameters and `{{input}}`, and for a phase the
//! outputs of its ancestors only.

use serde_json::Map;

use super::dag;
use super::doc::Obj;
use super::keys::{CONTEXT_KEYS, FALLBACK_KEYS, PHASE_KEYS, POLICY_KEYS};
use super::limits::DEFAULT_MAX_PARALLEL;
use super::sections::routing_of;
use super::validate;
use crate::error::LoadError;
use crate::model::{
    CommandSkill, ContextFiles, ConversationSkill, Phase, PromptSkill, SessionSkill, SkillBody,
    SkillKind, WorkflowSkill,
};
use crate::template::{Contract, Template};
use skillkernel_sandbox::sessions::Reply;
use skillkernel_sandbox::SandboxPolicy;

pub fn body(root: &Obj<'_>, kind: SkillKind, params: &[String]) -> Result<SkillBody, LoadError> {
    let contract = Contract {
        params: params.to_vec(),
        ..Contract::default()
    };
    Ok(match kind {
        SkillKind::Prompt => SkillBody::Prompt(PromptSkill {
            system: optional_template(root, "system", &contract)?,
            template: required_template(
                root,
                "template",
                "add `template:` with the prompt; `{{input}}` is the text the skill runs on",
                &contract,
            )?,
        }),
        SkillKind::Workflow => SkillBody::Workflow(workflow(root, params)?),
        SkillKind::Conversation => SkillBody::Conversation(ConversationSkill {
            system: required_template(
                root,
                "system",
                "add `system:`, the instructions the model follows over the context files",
                &contract,
            )?,
            context: context(root)?,
        }),
        SkillKind::Command => {
            let (command, args, env) = program(root)?;
            let fallback = match root.obj("fallback")? {
                Some(f) => {
                    f.deny_unknown(FALLBACK_KEYS, "`fallback`")?;
                    let (command, args, env) = program(&f)?;
                    Some(Box::new(CommandSkill {
                        command,
                        args,
                        env,
                        fallback: None,
                        policy: Map::new(),
                    }))
                }
                None => None,
            };
            let policy = policy(root, &env)?;
            SkillBody::Command(CommandSkill {
                command,
                args,
                env,
                fallback,
                policy,
            })
        }
        SkillKind::Session => {
            let (command, args, env) = program(root)?;
            let policy = policy(root, &env)?;
            SkillBody::Session(SessionSkill {
                command,
                args,
                env,
                reply: reply(root)?,
                policy,
            })
        }
        SkillKind::Agent => unreachable!("native manifests refuse `type: agent`"),
    })
}

fn optional_template(
    o: &Obj<'_>,
    key: &str,
    contract: &Contract,
) -> Result<Option<Template>, LoadError> {
    o.str(key)?
        .map(|s| validate::template(&o.doc, &o.field(key), s, contract))
        .transpose()
}

fn required_template(
    o: &Obj<'_>,
    key: &str,
    remedy: &str,
    contract: &Contract,
) -> Result<Template, LoadError> {
    let source = o.req_str(key, remedy)?;
    if source.trim().is_empty() {
        return Err(o.error(key, format!("`{key}` is empty"), remedy));
    }
    validate::template(&o.doc, &o.field(key), source, contract)
}

/// A workflow's `phases` list read as mappings with their graph nodes:
/// non-empty, each phase's keys among `keys`, each with an `id`.
pub fn phase_list<'a>(
    root: &Obj<'a>,
    keys: &[&str],
    what: &str,
    remedy: &str,
) -> Result<(Vec<Obj<'a>>, Vec<dag::Node>), LoadError> {
    let items = root
        .list("phases")?
        .ok_or_else(|| root.missing("phases", remedy))?;
    if items.is_empty() {
        return Err(root.error("phases", "a workflow has no phases", remedy));
    }
    let objs = items
        .iter()
        .enumerate()
        .map(|(i, v)| Obj::new(root.doc, &format!("phases[{i}]"), v))
        .collect::<Result<Vec<_>, _>>()?;
    let mut nodes = Vec::new();
    for o in &objs {
        o.deny_unknown(keys, what)?;
        nodes.push(dag::Node {
            id: o
                .req_str("id", "give the phase an id, e.g. `id: outline`")?
                .to_string(),
            depends_on: o.str_list("depends_on")?,
            field: o.path.clone(),
        });
    }
    Ok((objs, nodes))
}

fn workflow(root: &Obj<'_>, params: &[String]) -> Result<WorkflowSkill, LoadError> {
    let (objs, nodes) = phase_list(
        root,
        PHASE_KEYS,
        "a phase",
        "add `phases:`, a list of `- id: …` / `template: …` steps",
    )?;
    let max_parallel = match root.u64("max_parallel")? {
        None => DEFAULT_MAX_PARALLEL,
        Some(0) => {
            return Err(root.error(
                "max_parallel",
                "`max_parallel` is 0",
                "run at least one phase at a time: `max_parallel: 1` or more",
            ))
        }
        Some(n) => n.min(usize::MAX as u64) as usize,
    };
    let output = root.str("output")?;
    let graph = dag::check(
        &root.doc,
        &nodes,
        dag::Output {
            named: output.map(|o| (o, "output")),
            allowed: true,
        },
    )?;
    let mut phases = Vec::new();
    for ((o, node), ancestors) in objs.iter().zip(nodes).zip(graph.ancestors) {
        phases.push(phase(o, node, ancestors, params)?);
    }
    Ok(WorkflowSkill {
        phases,
        max_parallel,
        output: graph.output,
    })
}

fn phase(
    o: &Obj<'_>,
    node: dag::Node,
    ancestors: Vec<String>,
    params: &[String],
) -> Result<Phase, LoadError> {
    let contract = Contract {
        params: params.to_vec(),
        phases: ancestors,
        in_workflow: true,
    };
    let key = match (o.has("template"), o.has("prompt_template")) {
        (true, true) => {
            return Err(o.error(
                "prompt_template",
                "a phase has both `template` and `prompt_template`",
                "keep one; `prompt_template` is another name for `template`",
            ))
        }
        (false, true) => "prompt_template",
        _ => "template",
    };
    let template = required_template(o, key, "add `template:` with the phase's prompt", &contract)?;
    Ok(Phase {
        name: o.str("name")?.unwrap_or(&node.id).to_string(),
        id: node.id,
        system: optional_template(o, "system", &contract)?,
        template,
        depends_on: node.depends_on,
        routing: routing_of(o, "routing_profile", "model")?,
        generation: validate::generation(o)?,
        output: o.output_schema("output_schema")?,
    })
}

fn context(root: &Obj<'_>) -> Result<ContextFiles, LoadError> {
    let remedy = "add `context:` with `include:` globs of the files to read, e.g. `include: [\"src/**/*.rs\"]`";
    let o = root
        .obj("context")?
        .ok_or_else(|| root.missing("context", remedy))?;
    o.deny_unknown(CONTEXT_KEYS, "`context`")?;
    let mut c = ContextFiles {
        include: o.str_list("include")?,
        exclude: o.str_list("exclude")?,
        ..ContextFiles::default()
    };
    if c.include.is_empty() {
        return Err(if o.has("include") {
            o.error("include", "`include` lists no globs", remedy)
        } else {
            o.missing("include", remedy)
        });
    }
    for (key, globs) in [("include", &c.include), ("exclude", &c.exclude)] {
        for (i, g) in globs.iter().enumerate() {
            if let Err(e) = glob::Pattern::new(g) {
                return Err(o.doc.error(
                    &format!("{}[{i}]", o.field(key)),
                    format!("glob `{g}` does not compile: {}", e.msg),
                    "fix the glob: `*` within a name, `**` across folders, `[ab]` a set",
                ));
            }
        }
    }
    let positive = |key: &str, default: u64| -> Result<u64, LoadError> {
        match o.u64(key)? {
            Some(0) => Err(o.error(
                key,
                format!("`{key}` is 0"),
                format!("give a limit above 0, or leave it out for {default}"),
            )),
            v => Ok(v.unwrap_or(default)),
        }
    };
    c.max_files = positive("max_files", c.max_files as u64)? as usize;
    c.max_file_bytes = positive("max_file_bytes", c.max_file_bytes)?;
    c.max_total_bytes = positive("max_total_bytes", c.max_total_bytes)?;
    Ok(c)
}

type Program = (
    String,
    Vec<String>,
    std::collections::BTreeMap<String, String>,
);

fn program(o: &Obj<'_>) -> Result<Program, LoadError> {
    let remedy = "add `command:`, the program to run (`args:` lists its arguments)";
    let command = o.req_str("command", remedy)?;
    if command.trim().is_empty() {
        return Err(o.error("command", "`command` is empty", remedy));
    }
    Ok((
        command.to_string(),
        o.str_list("args")?,
        o.str_map("env")?.into_iter().collect(),
    ))
}

/// The sandbox's fields as written, checked now so that a typo in
/// `permissions` is a load error rather than a failure at the first run.
fn policy(
    root: &Obj<'_>,
    env: &std::collections::BTreeMap<String, String>,
) -> Result<Map<String, serde_json::Value>, LoadError> {
    let policy: Map<String, serde_json::Value> = POLICY_KEYS
        .iter()
        .filter_map(|k| root.map.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    if let Err(e) = SandboxPolicy::from_manifest(&policy, env, std::path::Path::new("/")) {
        return Err(root.error(e.field, e.message, e.remedy));
    }
    for key in ["timeout", "retries"] {
        root.u64(key)?;
    }
    Ok(policy)
}

/// A session skill's `reply` (`marker`, the default, or `line`) and
/// `marker` command.
fn reply(root: &Obj<'_>) -> Result<Reply, LoadError> {
    let marker = root.str("marker")?;
    match root.str("reply")? {
        None | Some("marker") => {
            let Some(command) = marker else {
                return Ok(Reply::default());
            };
            if !command.contains(Reply::PLACEHOLDER) {
                return Err(root.error(
                    "marker",
                    format!("`marker` must contain `{}`", Reply::PLACEHOLDER),
                    "e.g. `marker: 'print(\"{marker}\")'` for Python, `echo {marker}` for a shell",
                ));
            }
            Ok(Reply::Marker(command.to_owned()))
        }
        Some("line") if marker.is_some() => Err(root.error(
            "marker",
            "`marker` is only used with `reply: marker`",
            "remove `marker`, or set `reply: marker`",
        )),
        Some("line") => Ok(Reply::Line),
        Some(other) => Err(root.error(
            "reply",
            format!("`reply` is `{other}`; it must be `marker` or `line`"),
            "`marker`: the answer ends at the marker command's line; `line`: one line in, one line out",
        )),
    }
}
