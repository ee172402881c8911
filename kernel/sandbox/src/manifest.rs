//! A command or session skill's manifest fields → [`SandboxPolicy`].
//!
//! The skill formats keep `permissions`, `resource_limits` and `sandbox` as
//! written (`CommandSkill::policy`); this is where they get their meaning:
//!
//! ```yaml
//! permissions:
//!   network: false            # default false; true: all; [api.example.com, "*.pypi.org:443"]: by host
//!   read: [/data/corpus]      # added to the system read paths
//!   write: [/tmp/out]         # added to the workspace and /dev/null
//!   env: [OPENAI_BASE_URL]    # parent variables to keep, added to the defaults
//! resource_limits:
//!   cpu_secs: 10
//!   memory_mb: 512            # address space
//!   file_size_mb: 64
//!   open_files: 256
//!   processes: 256
//! sandbox:
//!   require_landlock: true    # refuse to run where Landlock is not enforced
//! ```
//!
//! Unknown keys are refused (a typo must not silently widen or drop a
//! limit). Relative paths are taken inside the workspace. Must never grant
//! anything the manifest does not say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::proxy::NetworkGrant;
use super::SandboxPolicy;

/// A manifest field the sandbox cannot use.
#[derive(Debug, thiserror::Error)]
#[error("invalid `{field}` in the skill manifest: {message}; {remedy}")]
pub struct ManifestPolicyError {
    pub field: &'static str,
    pub message: String,
    pub remedy: &'static str,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Permissions {
    network: NetworkGrant,
    read: Vec<PathBuf>,
    write: Vec<PathBuf>,
    env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ResourceLimits {
    cpu_secs: Option<u64>,
    memory_mb: Option<u64>,
    file_size_mb: Option<u64>,
    open_files: Option<u64>,
    processes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SandboxSection {
    require_landlock: bool,
}

/// What a manifest's `permissions` add to the safe defaults, relative
/// paths already taken inside the workspace: what a skill asks to be
/// trusted with, and what [`SandboxPolicy::from_manifest`] grants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestGrants {
    pub network: NetworkGrant,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub env: Vec<String>,
}

impl ManifestGrants {
    /// The `permissions` of a manifest's `policy` map, for `workspace`.
    pub fn from_manifest(
        policy: &serde_json::Map<String, serde_json::Value>,
        workspace: &Path,
    ) -> Result<Self, ManifestPolicyError> {
        let permissions: Permissions = section(policy, "permissions")?;
        let inside = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        };
        Ok(ManifestGrants {
            network: permissions.network,
            read: permissions.read.into_iter().map(inside).collect(),
            write: permissions.write.into_iter().map(inside).collect(),
            env: permissions.env,
        })
    }
}

impl SandboxPolicy {
    /// The policy for a skill: the safe defaults, working in `workspace`,
    /// widened and limited by the manifest's `policy` map, with the skill's
    /// own `env` set for the program.
    pub fn from_manifest(
        policy: &serde_json::Map<String, serde_json::Value>,
        env: &BTreeMap<String, String>,
        workspace: &Path,
    ) -> Result<Self, ManifestPolicyError> {
        let grants = ManifestGrants::from_manifest(policy, workspace)?;
        let limits: ResourceLimits = section(policy, "resource_limits")?;
        let sandbox: SandboxSection = section(policy, "sandbox")?;
        let mut out = Self::for_workspace(workspace);
        grants.network.apply_to(&mut out);
        out.read.extend(grants.read);
        out.write.extend(grants.write);
        out.env_allow.extend(grants.env);
        out.env = env.clone();
        let mib = |v: Option<u64>| v.map(|v| v.saturating_mul(1 << 20));
        let l = &mut out.limits;
        l.cpu_secs = limits.cpu_secs.or(l.cpu_secs);
        l.address_space_bytes = mib(limits.memory_mb).or(l.address_space_bytes);
        l.file_size_bytes = mib(limits.file_size_mb).or(l.file_size_bytes);
        l.open_files = limits.open_files.or(l.open_files);
        l.processes = limits.processes.or(l.processes);
        out.require_landlock = sandbox.require_landlock;
        Ok(out)
    }
}

fn section<T: DeserializeOwned + Default>(
    policy: &serde_json::Map<String, serde_json::Value>,
    field: &'static str,
) -> Result<T, ManifestPolicyError> {
    match policy.get(field) {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(value) => T::deserialize(value).map_err(|e| ManifestPolicyError {
            field,
            message: e.to_string(),
            remedy: "see the command skill fields in docs/skills.md",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn a_manifest_without_sandbox_fields_gets_the_safe_defaults_in_its_workspace() {
        let policy =
            SandboxPolicy::from_manifest(&map(json!({})), &BTreeMap::new(), Path::new("/ws"))
                .unwrap();
        assert_eq!(policy, SandboxPolicy::for_workspace("/ws"));
        assert!(!policy.network);
    }

    #[test]
    fn permissions_and_limits_widen_and_limit_the_defaults() {
        let manifest = map(json!({
            "permissions": {"network": true, "read": ["/data", "corpus"], "write": ["out"], "env": ["API_URL"]},
            "resource_limits": {"cpu_secs": 10, "memory_mb": 512, "file_size_mb": 1},
            "sandbox": {"require_landlock": true},
            "timeout": 30,
        }));
        let env = BTreeMap::from([("MODE".to_string(), "fast".to_string())]);
        let policy = SandboxPolicy::from_manifest(&manifest, &env, Path::new("/ws")).unwrap();
        assert!(policy.network && policy.require_landlock);
        assert!(policy
            .read
            .ends_with(&[PathBuf::from("/data"), PathBuf::from("/ws/corpus")]));
        assert_eq!(policy.write.last(), Some(&PathBuf::from("/ws/out")));
        assert!(policy.keeps_env("API_URL") && policy.keeps_env("PATH"));
        assert_eq!(policy.env, env);
        assert_eq!(policy.limits.cpu_secs, Some(10));
        assert_eq!(policy.limits.address_space_bytes, Some(512 << 20));
        assert_eq!(policy.limits.file_size_bytes, Some(1 << 20));
        assert_eq!(
            policy.limits.open_files,
            SandboxPolicy::default().limits.open_files
        );
    }

    #[test]
    fn a_misspelt_permission_is_refused_with_the_field_named() {
        let manifest = map(json!({"permissions": {"netwrok": true}}));
        let err = SandboxPolicy::from_manifest(&manifest, &BTreeMap::new(), Path::new("/ws"))
            .unwrap_err();
        assert_eq!(err.field, "permissions");
        assert!(err.to_string().contains("netwrok"), "{err}");
    }
}
