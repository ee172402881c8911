//! Workspace trust through the registry: a run is refused until trusted,
//! an edit withdraws trust, the policies, a broken store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fixtures::{write, write_skill};
use crate::registry::{RegistryConfig, SkillRegistry};
use crate::trust::{TrustMark, TrustPolicy, TrustSettings};
use crate::ErrorCode;

const FETCH: &str = "name: fetch\nversion: 1.0.0\ndescription: Fetches.\ntype: command\n\
command: sh\nargs: [scripts/get.sh]\npermissions:\n  network: true\n  read: [/home/ana/.ssh]\n";

/// `dir` with `fetch` (asks for a program, network and ~/.ssh) and
/// `plain` (a prompt skill: asks for nothing).
fn skills(dir: &Path) {
    write(dir, "fetch/skill.yaml", FETCH);
    write(dir, "fetch/scripts/get.sh", "curl -s https://example.org\n");
    write_skill(dir, "plain", "plain", "1.0.0", "");
}

fn registry(dir: &Path, policy: TrustPolicy, store: Option<&Path>) -> Arc<SkillRegistry> {
    let mut config = RegistryConfig::only([dir.to_path_buf()]);
    config.watch = true;
    config.debounce = Duration::from_millis(30);
    config.trust = TrustSettings {
        policy,
        store: store.map(Path::to_path_buf),
        workspace: dir.join("workspace"),
    };
    SkillRegistry::open(config).0
}

fn refused(r: &Arc<SkillRegistry>, spec: &str) -> crate::SkillError {
    match r.begin_execution(spec) {
        Ok(_) => panic!("`{spec}` ran"),
        Err(e) => e,
    }
}

/// Polls until `spec` is refused (the watcher has seen an edit).
fn until_refused(r: &Arc<SkillRegistry>, spec: &str) -> crate::SkillError {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match r.begin_execution(spec) {
            Err(e) => return e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(_) => panic!("`{spec}` still runs 10 s after its files changed"),
        }
    }
}

#[test]
fn an_untrusted_skill_is_refused_until_trusted_and_an_edit_withdraws_the_trust() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");
    let r = registry(t.path(), TrustPolicy::Ask, Some(&store));

    // Positive control: a skill asking for nothing runs untrusted.
    r.begin_execution("plain").expect("a prompt skill runs");
    let e = refused(&r, "fetch");
    assert_eq!(e.code, ErrorCode::TrustRequired);
    for part in [
        "`fetch@1.0.0`",
        "is not trusted",
        "runs the program `sh scripts/get.sh`",
        "network access: any host",
        "reads /home/ana/.ssh (outside the workspace)",
    ] {
        assert!(e.message.contains(part), "{part}: {}", e.message);
    }
    assert!(e.hint.contains("`%skill trust fetch`"), "{}", e.hint);
    assert!(
        e.hint.contains("`skillctl skill trust fetch`"),
        "{}",
        e.hint
    );

    let skill = r.loaded("fetch").unwrap();
    assert_eq!(r.trust().status(&skill).mark, TrustMark::Untrusted);
    let granted = r.trust().grant(&skill, None, "test").unwrap();
    assert_eq!(granted.mark, TrustMark::Trusted);
    r.begin_execution("fetch").expect("trusted, it runs");
    let kept = std::fs::read_to_string(&store).unwrap();
    assert!(kept.contains("fetch@1.0.0") && kept.contains("network access: any host"));

    // The script, not the manifest, changes: trust is gone.
    write(
        t.path(),
        "fetch/scripts/get.sh",
        "curl -s https://evil.example\n",
    );
    let e = until_refused(&r, "fetch");
    assert_eq!(e.code, ErrorCode::TrustRequired);
    assert!(
        e.message.contains("changed since it was trusted"),
        "{}",
        e.message
    );

    // A digest the user did not review is not trusted.
    let skill = r.loaded("fetch").unwrap();
    let stale = granted.digest.unwrap();
    let e = r.trust().grant(&skill, Some(&stale), "test").unwrap_err();
    assert!(
        e.message.contains("changed after it was shown"),
        "{}",
        e.message
    );
    r.trust().grant(&skill, None, "test").unwrap();
    r.begin_execution("fetch").expect("trusted again");

    assert!(r.trust().withdraw(&skill).unwrap());
    assert!(refused(&r, "fetch").message.contains("is not trusted"));
    r.begin_execution("plain").expect("still runs");
}

#[test]
fn trust_all_runs_everything_and_builtin_only_refuses_even_a_grant() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");

    let all = registry(t.path(), TrustPolicy::All, None);
    all.begin_execution("fetch").expect("trust = all");

    let strict = registry(t.path(), TrustPolicy::BuiltinOnly, Some(&store));
    strict.begin_execution("plain").expect("asks for nothing");
    let e = refused(&strict, "fetch");
    assert!(e.message.contains("`builtin-only`"), "{}", e.message);
    assert!(e.hint.contains("trust = \"ask\""), "{}", e.hint);
    let skill = strict.loaded("fetch").unwrap();
    assert!(strict.trust().grant(&skill, None, "test").is_err());
    assert!(!store.exists(), "nothing recorded");
}

#[test]
fn an_unreadable_store_refuses_skills_that_need_it_and_names_the_remedy() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");
    std::fs::write(&store, "{\"version\": 1, \"skills\": [").unwrap();
    let r = registry(t.path(), TrustPolicy::Ask, Some(&store));
    r.begin_execution("plain").expect("asks for nothing");
    let e = refused(&r, "fetch");
    assert_eq!(e.code, ErrorCode::TrustRequired);
    assert!(e.message.contains("cannot be read"), "{}", e.message);
    assert!(e.message.contains("remove it"), "{}", e.message);
    let skill = r.loaded("fetch").unwrap();
    assert!(r.trust().grant(&skill, None, "test").is_err());
    assert_eq!(
        std::fs::read_to_string(&store).unwrap(),
        "{\"version\": 1, \"skills\": ["
    );
}

#[test]
fn listings_mark_unloaded_skills_and_parse_each_once_while_watched() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");
    let r = registry(t.path(), TrustPolicy::Ask, Some(&store));
    let mark = |name: &str| r.trust_of(&r.get(name).unwrap()).unwrap().mark;
    let before = r.io_counts();
    assert_eq!(mark("fetch"), TrustMark::Untrusted);
    assert_eq!(mark("plain"), TrustMark::NotNeeded);
    assert_eq!(r.io_counts().since(before).full_parses, 2);
    assert_eq!(mark("fetch"), TrustMark::Untrusted);
    assert_eq!(
        r.io_counts().since(before).full_parses,
        2,
        "remembered while watched"
    );
    // An edit that makes `plain` ask for a program is seen.
    write(
        t.path(),
        "plain/skill.yaml",
        "name: plain\nversion: 1.0.0\ndescription: d\ntype: command\ncommand: ls\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while mark("plain") != TrustMark::Untrusted {
        assert!(Instant::now() < deadline, "the edit was not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_definition_loaded_before_an_edit_is_not_trusted_for_what_is_on_disk() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");
    let mut config = RegistryConfig::only([t.path().to_path_buf()]);
    config.trust = TrustSettings {
        policy: TrustPolicy::Ask,
        store: Some(store),
        workspace: t.path().join("workspace"),
    };
    let r = SkillRegistry::open(config).0; // no watcher
    let loaded = r.loaded("fetch").unwrap();
    // The manifest now also asks for the environment; the registry has
    // not re-read it.
    write(
        t.path(),
        "fetch/skill.yaml",
        &format!("{FETCH}  env: [AWS_SECRET_ACCESS_KEY]\n"),
    );
    let e = r.trust().grant(&loaded, None, "test").unwrap_err();
    assert!(e.message.contains("changed on disk"), "{}", e.message);
    assert!(e.hint.contains("%skill reload fetch"), "{}", e.hint);
    r.reload("fetch").unwrap();
    let fresh = r.loaded("fetch").unwrap();
    let granted = r.trust().grant(&fresh, None, "test").unwrap();
    assert!(granted
        .asks
        .iter()
        .any(|a| a.to_string().contains("AWS_SECRET_ACCESS_KEY")));
}

#[test]
fn trust_another_kernel_gave_to_new_files_does_not_cover_a_stale_definition() {
    let t = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    skills(t.path());
    let store = state.path().join("skill-trust.json");
    let open = || {
        let mut config = RegistryConfig::only([t.path().to_path_buf()]);
        config.trust = TrustSettings {
            policy: TrustPolicy::Ask,
            store: Some(store.clone()),
            workspace: t.path().join("workspace"),
        };
        SkillRegistry::open(config).0 // no watcher
    };
    let stale = open();
    stale.loaded("fetch").unwrap();
    // The files change to ask for less; a second kernel loads and trusts
    // them. The first still holds the definition that asks for ~/.ssh.
    write(
        t.path(),
        "fetch/skill.yaml",
        &FETCH.replace("  read: [/home/ana/.ssh]\n", ""),
    );
    let other = open();
    let granted = other
        .trust()
        .grant(&other.loaded("fetch").unwrap(), None, "test")
        .unwrap();
    assert_eq!(granted.mark, TrustMark::Trusted);
    other
        .begin_execution("fetch")
        .expect("the trusted definition runs");
    let e = refused(&stale, "fetch");
    assert_eq!(e.code, ErrorCode::TrustRequired);
    assert_eq!(
        stale.trust().status(&stale.loaded("fetch").unwrap()).mark,
        TrustMark::Changed
    );
    // Re-read, the first kernel runs what was trusted.
    stale.reload("fetch").unwrap();
    stale
        .begin_execution("fetch")
        .expect("the fresh definition runs");
}
