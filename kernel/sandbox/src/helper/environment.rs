//! The program's environment: the parent's variables that pass the
//! policy's allow-list, then the policy's own variables over them.
//!
//! Built as a list for `execve`; the helper never changes its own
//! environment (and must never log values: they may be secrets).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use crate::SandboxPolicy;

/// `(name, value)` pairs, sorted by name, names unique.
pub type Environment = Vec<(OsString, OsString)>;

/// The environment the program gets from `parent` under `policy`.
pub fn scrubbed(
    policy: &SandboxPolicy,
    parent: impl IntoIterator<Item = (OsString, OsString)>,
) -> Environment {
    let mut env: std::collections::BTreeMap<OsString, OsString> = parent
        .into_iter()
        .filter(|(name, _)| name.to_str().is_some_and(|n| policy.keeps_env(n)))
        .collect();
    for (name, value) in &policy.env {
        env.insert(name.into(), value.into());
    }
    env.into_iter().collect()
}

/// The value of `name` in `env`.
pub fn get<'a>(env: &'a Environment, name: &str) -> Option<&'a OsStr> {
    env.iter()
        .find(|(n, _)| n.as_bytes() == name.as_bytes())
        .map(|(_, v)| v.as_os_str())
}

/// The names only, for the status report.
pub fn names(env: &Environment) -> Vec<String> {
    env.iter()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(name: &str, value: &str) -> (OsString, OsString) {
        (name.into(), value.into())
    }

    #[test]
    fn only_allowed_parent_variables_and_the_policys_own_remain() {
        let mut policy = SandboxPolicy::default();
        policy.env.insert("MODE".into(), "fast".into());
        policy.env.insert("PATH".into(), "/opt/tool/bin".into());
        let parent = vec![
            pair("PATH", "/usr/bin"),
            pair("LC_ALL", "C"),
            pair("SKILLKERNEL_SECRET", "hunter2"),
            pair("AWS_SECRET_ACCESS_KEY", "x"),
        ];
        let env = scrubbed(&policy, parent);
        assert_eq!(names(&env), ["LC_ALL", "MODE", "PATH"]);
        assert_eq!(get(&env, "PATH"), Some(OsStr::new("/opt/tool/bin")));
    }
}
