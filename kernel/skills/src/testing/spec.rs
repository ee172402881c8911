//! A skill's tests as written: the `tests` list of a native manifest, or
//! `tests.yaml` beside any folder skill's manifest (the same list).
//!
//! ```yaml
//! tests:
//!   - name: greets in French          # default: "test N"
//!     input: Ana
//!     args: {language: French}
//!     expect:
//!       contains: [Bonjour]           # one text or a list: each must appear
//!       not_contains: [Hello]
//!       regex: "^Bonjour"
//!       equals: "Bonjour Ana"         # the whole answer, trimmed
//!       schema: {type: object, required: [name]}   # the answer as JSON
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::expect::Expect;
use crate::{LoadError, Skill};

/// The tests file beside a folder skill's manifest.
pub const TESTS_FILE: &str = "tests.yaml";

/// One test of a skill.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillTest {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub input: String,
    #[serde(default)]
    pub args: Map<String, Value>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Deserialize)]
struct WithTests {
    #[serde(default, deserialize_with = "list")]
    tests: Vec<SkillTest>,
}

fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SkillTest>, D::Error> {
    Option::<Vec<SkillTest>>::deserialize(d).map(Option::unwrap_or_default)
}

/// `skill`'s tests: its manifest's `tests`, else `tests.yaml` beside it.
/// A skill without a file (a cell's, a built-in) has none. Blocks on I/O.
pub fn load_tests(skill: &Skill) -> Result<Vec<SkillTest>, LoadError> {
    let Some(manifest) = skill.source.path.as_deref() else {
        return Ok(Vec::new());
    };
    let mut tests = from_manifest(manifest)?;
    let folder_skill = crate::format::is_folder_manifest(manifest);
    if tests.is_empty() && folder_skill {
        if let Some(dir) = manifest.parent() {
            let file = dir.join(TESTS_FILE);
            if file.is_file() {
                tests = from_file(&file)?;
            }
        }
    }
    for (i, t) in tests.iter_mut().enumerate() {
        if t.name.trim().is_empty() {
            t.name = format!("test {}", i + 1);
        }
        t.expect.compile().map_err(|e| {
            LoadError::new(
                manifest,
                format!("test `{}`: {e}", t.name),
                "fix its `expect`",
            )
        })?;
    }
    Ok(tests)
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|e| {
        LoadError::new(
            path,
            format!("cannot read it: {e}"),
            "check that it is readable",
        )
    })
}

/// The `tests` key of a native manifest (`skill.yaml`/`.yml`/`.json`);
/// none for other formats.
fn from_manifest(path: &Path) -> Result<Vec<SkillTest>, LoadError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let parsed = match name {
        "skill.json" => serde_json::from_str::<WithTests>(&read(path)?).map_err(|e| e.to_string()),
        "skill.yaml" | "skill.yml" => {
            serde_norway::from_str::<WithTests>(&read(path)?).map_err(|e| e.to_string())
        }
        _ => return Ok(Vec::new()),
    };
    parsed.map(|w| w.tests).map_err(|e| bad(path, e))
}

/// A `tests.yaml`: a list, or `tests:` with one.
fn from_file(path: &Path) -> Result<Vec<SkillTest>, LoadError> {
    let text = read(path)?;
    serde_norway::from_str::<Vec<SkillTest>>(&text)
        .or_else(|_| serde_norway::from_str::<WithTests>(&text).map(|w| w.tests))
        .map_err(|e| bad(path, e.to_string()))
}

fn bad(path: &Path, e: String) -> LoadError {
    LoadError::new(
        PathBuf::from(path).as_path(),
        format!("its tests do not parse: {e}"),
        "each test is {name, input, args, expect: {contains, not_contains, regex, equals, schema}}",
    )
}
