//! The Kubernetes path without a cluster: the launcher EG's Kubernetes
//! proxy runs renders `packaging/gateway`'s pod template, and the
//! container, as the image runs it, answers the gateway.

use std::path::Path;
use std::process::{Command, Stdio};

use harness::gateway;
use serde_json::Value;

use crate::accept_payload;

/// `KERNEL_MEMORY` as YAML: a string with a quote and a line break that,
/// pasted raw into the template, would add `privileged: true`.
const INJECTION: &str = r#""1Gi\"\n      privileged: true""#;

/// `ENTRYPOINT` + `CMD` and the `ENV` of packaging/gateway/Containerfile.
fn containerfile() -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/gateway/Containerfile"),
    )
    .unwrap();
    // Continuation lines joined, comments dropped.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let mut command = Vec::new();
    let mut env = Vec::new();
    for line in joined.lines() {
        let Some((instruction, rest)) = line.trim().split_once(' ') else {
            continue;
        };
        match instruction {
            "ENTRYPOINT" | "CMD" => {
                let words: Vec<String> = serde_json::from_str(rest.trim()).unwrap();
                command.extend(words);
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap();
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
            "USER" => assert!(
                !rest.trim().starts_with('0'),
                "the image runs as root: {line}"
            ),
            _ => {}
        }
    }
    (command, env)
}

#[test]
fn the_kubernetes_launcher_renders_our_pod_and_its_container_answers_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    // The launcher the kubernetes kernelspec names, beside our template,
    // as an operator installs them.
    let scripts = dir.path().join("skillkernel_kubernetes/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let launcher = Command::new(harness::otlp::python())
        .args(["-c", "import gateway_provisioners, os; print(os.path.dirname(gateway_provisioners.__file__))"])
        .output()
        .unwrap();
    let package = String::from_utf8(launcher.stdout).unwrap();
    std::fs::copy(
        Path::new(package.trim()).join("kernel-launchers/kubernetes/scripts/launch_kubernetes.py"),
        scripts.join("launch_kubernetes.py"),
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../packaging/gateway/kernelspecs/skillkernel_kubernetes/scripts/kernel-pod.yaml.j2",
        ),
        scripts.join("kernel-pod.yaml.j2"),
    )
    .unwrap();
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../packaging/gateway/kernelspecs/skillkernel_kubernetes/kernel.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(spec["argv"][1]
        .as_str()
        .unwrap()
        .ends_with("scripts/launch_kubernetes.py"));
    // A kubeconfig that loads; with --pod-template the launcher writes the
    // pod instead of creating it.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
         current-context: x\n",
    )
    .unwrap();
    let key = gateway::public_key();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let kernel_id = "5f1e2d3c-0000-4000-8000-00000000cafe";
    let pod_file = dir.path().join("pod.yaml");
    let rendered = Command::new(gateway::python())
        .arg(scripts.join("launch_kubernetes.py"))
        .args(["--kernel-id", kernel_id, "--port-range", "42000..43500"])
        .args(["--response-address", &address, "--public-key", &key])
        .arg("--pod-template")
        .arg(&pod_file)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("KUBECONFIG", &kubeconfig)
        // What EG's Kubernetes proxy puts in the launcher's environment.
        .env("KERNEL_POD_NAME", format!("tester-{kernel_id}"))
        .env("KERNEL_NAMESPACE", "notebooks")
        .env("KERNEL_IMAGE", "registry.example.com/skillkernel:0.1")
        .env("KERNEL_SERVICE_ACCOUNT_NAME", "default")
        .env("KERNEL_USERNAME", "tester")
        // A client's value that tries to break out of its YAML string
        // (launch_kubernetes.py YAML-loads each KERNEL_ value first).
        .env("KERNEL_MEMORY", INJECTION)
        .output()
        .unwrap();
    assert!(
        pod_file.exists(),
        "launch_kubernetes.py wrote no pod: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let pod = Command::new(gateway::python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(&pod_file)
        .output()
        .unwrap();
    let pod: Value = serde_json::from_slice(&pod.stdout).expect("the pod as YAML");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(pod["kind"], "Pod");
    assert_eq!(pod["metadata"]["labels"]["kernel_id"], kernel_id);
    assert_eq!(container["image"], "registry.example.com/skillkernel:0.1");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    // The injected value stayed one string; nothing was added to the pod.
    assert_eq!(
        container["resources"]["requests"]["memory"], "1Gi\"\n      privileged: true",
        "{container}"
    );
    assert!(
        container["securityContext"].get("privileged").is_none(),
        "{container}"
    );
    let mounts = container["volumeMounts"].as_array().unwrap();
    let state = mounts
        .iter()
        .find(|m| m["name"] == "skillkernel-state")
        .expect("a state volume");
    assert_eq!(state["subPathExpr"], "$(KERNEL_ID)");
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "skillkernel-models" && m["readOnly"] == true));
    let pod_env: Vec<(String, String)> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_owned(),
                e["value"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let get = |name: &str| {
        pod_env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("KERNEL_ID").as_deref(), Some(kernel_id));
    assert_eq!(get("RESPONSE_ADDRESS").as_deref(), Some(address.as_str()));

    // The container, as Kubernetes runs it: the image's command and ENV,
    // then the pod's env, with the volumes' paths moved into the temp dir.
    let (command, image_env) = containerfile();
    assert_eq!(
        command,
        ["/usr/bin/tini", "--", "/usr/bin/skillkernel", "start"],
        "the image's command"
    );
    let local = |value: &str| {
        value
            .replace(
                "/var/lib/skillkernel",
                &dir.path().join("volumes").display().to_string(),
            )
            .replace(
                "/usr/share/skillkernel/models",
                &harness::default_model_dir(),
            )
    };
    let mut kernel = Command::new(harness::bin("skillkernel"));
    kernel
        .args(&command[3..])
        .env_clear()
        .env("HOME", dir.path());
    kernel.env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"));
    for (name, value) in image_env.iter().chain(pod_env.iter()) {
        if name.starts_with("SKILLKERNEL_")
            || ["KERNEL_ID", "RESPONSE_ADDRESS", "PUBLIC_KEY", "PORT_RANGE"]
                .contains(&name.as_str())
        {
            kernel.env(name, local(value));
        }
    }
    // The models volume mounted: the default model is in it.
    kernel.env("SKILLKERNEL_MODEL_DIR", harness::default_model_dir());
    let log = dir.path().join("kernel.log");
    let mut child = kernel
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let payload = accept_payload(&listener, &mut child, &log);
    use base64::Engine;
    let outer: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(outer["version"], 1, "{outer}");
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the kernel exited after responding"
    );
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("connection information sent to Enterprise Gateway")
            && stderr.contains(kernel_id),
        "{stderr}"
    );
    // Its state went to the state volume.
    assert!(
        dir.path().join("volumes/state/sessions").exists(),
        "{stderr}"
    );
}

#[test]
fn every_packaged_kernelspec_names_a_process_proxy_or_provisioner_that_exists() {
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/gateway/kernelspecs");
    let mut proxies = Vec::new();
    let mut provisioners = Vec::new();
    for entry in std::fs::read_dir(&specs).unwrap() {
        let path = entry.unwrap().path().join("kernel.json");
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let argv: Vec<&str> = spec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        // Every launch passes the four placeholders the gateway fills in.
        for placeholder in [
            "{kernel_id}",
            "{response_address}",
            "{public_key}",
            "{port_range}",
        ] {
            assert!(
                argv.contains(&placeholder),
                "{}: no {placeholder}",
                path.display()
            );
        }
        let metadata = &spec["metadata"];
        if let Some(class) = metadata["process_proxy"]["class_name"].as_str() {
            proxies.push(class.to_owned());
        } else {
            let name = metadata["kernel_provisioner"]["provisioner_name"].as_str();
            provisioners.push(
                name.unwrap_or_else(|| panic!("{}: neither", path.display()))
                    .to_owned(),
            );
        }
    }
    assert_eq!(
        (proxies.len(), provisioners.len()),
        (3, 1),
        "{proxies:?} {provisioners:?}"
    );
    // The gateway's venv defines each proxy class (read, not imported:
    // the Docker proxy's module talks to a Docker daemon on import)...
    let check = format!(
        "import ast, importlib.util\nfor name in {proxies:?}:\n    module, cls = name.rsplit('.', 1)\n    tree = ast.parse(open(importlib.util.find_spec(module).origin).read())\n    assert any(isinstance(n, ast.ClassDef) and n.name == cls for n in tree.body), name\nprint('ok')"
    );
    python_check(&gateway::python(), &check);
    // ...and jupyter_client finds each provisioner by its entry point.
    let check = format!(
        "from importlib.metadata import entry_points\nnames = {{e.name for e in entry_points(group='jupyter_client.kernel_provisioners')}}\nmissing = [n for n in {provisioners:?} if n not in names]\nassert not missing, missing\nprint('ok')"
    );
    python_check(&harness::otlp::python(), &check);
}

/// Runs `script` with `python`; fails the test with its traceback.
fn python_check(python: &Path, script: &str) {
    let out = Command::new(python).args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
