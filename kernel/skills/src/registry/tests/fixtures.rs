//! Skills built in code and skill directories written on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{
    GenerationOverrides, Origin, PromptSkill, Resilience, Routing, SkillFormat, SkillMeta, Source,
};
use crate::registry::{RegistryConfig, ReloadReport, SkillRegistry};
use crate::{Skill, SkillBody, SkillHeader, Template};

/// A prompt skill's header from the user's directory.
pub fn header(name: &str, version: &str) -> SkillHeader {
    skill(name, version).header()
}

/// A prompt skill `{{input}}` from the user's directory, no file.
pub fn skill(name: &str, version: &str) -> Skill {
    Skill {
        meta: SkillMeta::new(
            name,
            semver::Version::parse(version).unwrap(),
            format!("the {name} skill"),
        ),
        parameters: Vec::new(),
        dependencies: Vec::new(),
        routing: Routing::default(),
        generation: GenerationOverrides::default(),
        resilience: Resilience::default(),
        body: SkillBody::Prompt(PromptSkill {
            system: None,
            template: Template::parse("{{ input }}").unwrap(),
        }),
        output: None,
        tools: Default::default(),
        source: Source {
            format: SkillFormat::Native,
            path: None,
            origin: Origin::User,
        },
    }
}

/// A native prompt manifest; `extra` is appended as YAML lines.
pub fn manifest(name: &str, version: &str, extra: &str) -> String {
    format!(
        "name: {name}\nversion: {version}\ndescription: the {name} skill\ntype: prompt\ntemplate: \"{{{{ input }}}}\"\n{extra}"
    )
}

/// Writes `root/folder/skill.yaml`; returns its path.
pub fn write_skill(root: &Path, folder: &str, name: &str, version: &str, extra: &str) -> PathBuf {
    write(
        root,
        &format!("{folder}/skill.yaml"),
        &manifest(name, version, extra),
    )
}

/// Writes `text` at `root/rel`, creating folders; returns the path.
pub fn write(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// A registry over `dirs` only (configured origin), no watcher, no index.
pub fn open(dirs: &[&Path]) -> (Arc<SkillRegistry>, ReloadReport) {
    SkillRegistry::open(RegistryConfig::only(dirs.iter().map(|d| d.to_path_buf())))
}

/// The ids (with origin when shadowed) `list()` shows.
pub fn listing(registry: &SkillRegistry) -> Vec<String> {
    registry
        .list()
        .iter()
        .map(|e| match e.shadowed_by {
            Some(by) => format!(
                "{} {} (shadowed by {})",
                e.id,
                e.header.source.origin.as_str(),
                by.as_str()
            ),
            None => format!("{} {}", e.id, e.header.source.origin.as_str()),
        })
        .collect()
}
