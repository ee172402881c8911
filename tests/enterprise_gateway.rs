//! skillkernel launched by a real Jupyter Enterprise Gateway through its
//! distributed process proxy, over SSH (harness::gateway), and driven by a
//! client of the gateway's REST and websocket API: cells, a prompt on the
//! default model, interrupt, restart, shutdown. Also the launch's failure
//! modes, each beside a launch that works: a response address that
//! refuses, a port range too small, a wrong key, a gateway that vanishes.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::detached::wait_until;
use harness::gateway::{self, Gateway, Sshd};
use serde_json::{json, Value};

const PORT_RANGE: (u16, u16) = (42000, 43500);

fn port_range() -> String {
    format!("{}..{}", PORT_RANGE.0, PORT_RANGE.1)
}

/// The kernel's environment: the default model, private state and runtime.
fn kernel_env(dir: &Path, extra: Value) -> Value {
    let mut env = json!({
        "SKILLKERNEL_MODEL_DIR": harness::default_model_dir(),
        "SKILLKERNEL_STATE_DIR": dir.join("state"),
        "JUPYTER_RUNTIME_DIR": dir.join("kernel-runtime"),
        "SKILLKERNEL_MAX_TOKENS": "16",
    });
    if let (Some(env), Some(extra)) = (env.as_object_mut(), extra.as_object()) {
        env.extend(extra.clone());
    }
    env
}

fn distributed_kernelspec(kernels: &Path, env: Value) {
    gateway::packaged_kernelspec(
        kernels,
        "skillkernel_distributed",
        "skillkernel_distributed",
        env,
        |_| {},
    );
}

fn drive(gateway: &Gateway, kernel_name: &str) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/drive_gateway.py");
    let out = Command::new(gateway::python())
        .arg(driver)
        .args([&gateway.url(), kernel_name])
        .output()
        .expect("run the gateway client");
    assert!(
        out.status.success(),
        "the gateway client failed:\n{}\ngateway log (tail):\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&gateway.log_text(), 60)
    );
    serde_json::from_slice(&out.stdout).expect("the client's JSON report")
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The ports a kernel's log says it serves on (`shell=…`, `iopub=…`) and
/// its communication port.
fn served_ports(kernel_log: &str) -> Vec<u16> {
    let mut ports = Vec::new();
    for line in kernel_log
        .lines()
        .filter(|l| l.contains("skillkernel serving") || l.contains("sent to Enterprise Gateway"))
    {
        for field in ["shell=", "iopub=", "comm_port="] {
            if let Some(rest) = line.split(field).nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                ports.push(digits.parse().expect("a port number"));
            }
        }
    }
    ports
}

#[test]
fn a_gateway_client_runs_cells_prompts_interrupts_restarts_and_shuts_down_skillkernel_over_ssh() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let kernels = dir.path().join("share/jupyter/kernels");
    distributed_kernelspec(&kernels, kernel_env(dir.path(), json!({})));
    let gateway = Gateway::start(dir.path(), kernels.parent().unwrap(), &sshd, &port_range());

    let report = drive(&gateway, "skillkernel_distributed");
    let kernel_id = report["kernel_id"].as_str().unwrap().to_owned();
    let kernel_log = gateway.kernel_log(&kernel_id);
    let context = format!("report: {report:#}\nkernel log:\n{}", tail(&kernel_log, 40));

    assert_eq!(report["implementation"], "skillkernel", "{context}");
    assert_eq!(report["echo"]["status"], "ok", "{context}");
    assert_eq!(
        report["echo"]["text"], "cell through the gateway\n",
        "{context}"
    );
    // The default model answered through the gateway.
    assert_eq!(report["prompt"]["status"], "ok", "{context}");
    assert!(
        report["prompt"]["text"].as_str().unwrap().trim().len() > 3,
        "{context}"
    );
    // The gateway's interrupt came over the communication port as SIGINT.
    assert_eq!(
        report["interrupt"]["ename"], "KeyboardInterrupt",
        "{context}"
    );
    assert!(
        report["interrupt"]["secs"].as_f64().unwrap() < 10.0,
        "{context}"
    );
    assert!(
        gateway
            .log_text()
            .contains("Signal (2) sent via gateway communication port"),
        "{context}"
    );
    assert_eq!(
        report["after_interrupt"]["text"], "still serving\n",
        "{context}"
    );
    assert_eq!(
        report["after_restart"]["text"], "after restart\n",
        "{context}"
    );
    assert_eq!(report["shutdown_status"], 204, "{context}");
    assert_eq!(report["lookup_after_shutdown"], 404, "{context}");

    // Launched through SSH: once, then again for the restart.
    assert!(
        sshd.accepted_logins() >= 2,
        "sshd accepted {} logins",
        sshd.accepted_logins()
    );
    assert!(
        gateway
            .log_text()
            .contains(&format!("Kernel launched on '{}'", gateway::REMOTE_HOST)),
        "{context}"
    );
    assert_two_launches_in_range_and_none_left(&kernel_log, &kernel_id, &context);
}

/// Both launches (the first and the restart) listened only inside the
/// port range — shell, iopub and communication ports — and no kernel
/// process is left after the shutdown.
fn assert_two_launches_in_range_and_none_left(kernel_log: &str, kernel_id: &str, context: &str) {
    let ports = served_ports(kernel_log);
    assert_eq!(
        ports.len(),
        6,
        "two launches × shell, iopub, comm: {ports:?}\n{context}"
    );
    for port in ports {
        assert!(
            (PORT_RANGE.0..=PORT_RANGE.1).contains(&port),
            "port {port} outside {}",
            port_range()
        );
    }
    assert!(
        wait_until(Duration::from_secs(15), || gateway::kernel_processes(
            kernel_id
        )
        .is_empty()),
        "kernel processes still alive: {:?}\n{context}",
        gateway::kernel_processes(kernel_id)
    );
}

#[test]
fn a_kernel_whose_gateway_vanishes_shuts_down_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let kernels = dir.path().join("share/jupyter/kernels");
    let env = kernel_env(
        dir.path(),
        json!({"SKILLKERNEL_GATEWAY_ORPHAN_TIMEOUT": "8"}),
    );
    distributed_kernelspec(&kernels, env);
    let mut gateway = Gateway::start(dir.path(), kernels.parent().unwrap(), &sshd, &port_range());
    let started = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("{}/api/kernels", gateway.url()),
        ])
        .args([
            "-d",
            r#"{"name": "skillkernel_distributed", "env": {"KERNEL_USERNAME": "tester"}}"#,
        ])
        .output()
        .unwrap();
    let started: Value =
        serde_json::from_slice(&started.stdout).expect("the gateway's JSON answer");
    let kernel_id = started["id"].as_str().expect("a kernel id").to_owned();
    let alive = || !gateway::kernel_processes(&kernel_id).is_empty();
    // The control: with its gateway polling, the kernel outlives the
    // orphan timeout.
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        alive(),
        "the kernel died under a live gateway:\n{}",
        gateway.kernel_log(&kernel_id)
    );

    gateway.kill();
    assert!(
        wait_until(Duration::from_secs(30), || !alive()),
        "the kernel outlived its gateway:\n{}",
        gateway.kernel_log(&kernel_id)
    );
    let log = gateway.kernel_log(&kernel_id);
    assert!(log.contains("no word from Enterprise Gateway"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

/// Runs `skillkernel start` as a gateway would, with `args` after the
/// kernel id; returns its output once it exits (within 30 s).
fn launch(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000beef",
        ])
        .args(args)
        .env("SKILLKERNEL_STATE_DIR", dir.join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.join("runtime"))
        .env("SKILLKERNEL_MODEL_DIR", harness::default_model_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_until(Duration::from_secs(30), || {
        child.try_wait().ok().flatten().is_some()
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        exited,
        "the launch did not exit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn runtime_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("runtime"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_launch_that_cannot_reach_its_gateway_or_is_misconfigured_fails_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let closed = format!("127.0.0.1:{}", harness::free_port());

    let refused = launch(
        dir.path(),
        &["--response-address", &closed, "--public-key", &key],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&closed) && stderr.contains("the gateway is gone"),
        "{stderr}"
    );
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );

    let small = launch(
        dir.path(),
        &[
            "--response-address",
            &closed,
            "--public-key",
            &key,
            "--port-range",
            "42000..42010",
        ],
    );
    let stderr = String::from_utf8_lossy(&small.stderr);
    assert_eq!(small.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("spans 10 ports") && stderr.contains("EG_MIN_PORT_RANGE_SIZE"),
        "{stderr}"
    );

    let wrong_key = launch(
        dir.path(),
        &[
            "--response-address",
            &closed,
            "--public-key",
            "bm90IGEga2V5",
        ],
    );
    let stderr = String::from_utf8_lossy(&wrong_key.stderr);
    assert_eq!(wrong_key.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not an RSA public key"), "{stderr}");

    // The control: the same launch with a listening response address
    // sends its connection information and serves until released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000beef",
        ])
        .args([
            "--response-address",
            &address,
            "--public-key",
            &key,
            "--port-range",
            "42000..43500",
        ])
        .env("SKILLKERNEL_STATE_DIR", dir.path().join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut payload = String::new();
    std::io::Read::read_to_string(&mut stream, &mut payload).unwrap();
    assert!(!payload.is_empty());
    assert!(
        wait_until(Duration::from_secs(10), || !runtime_files(dir.path())
            .is_empty()),
        "no connection file for local tools"
    );
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "the launch exited after responding"
    );
    // The payload carries the communication port; the gateway would read
    // it there. Here the kernel says it in its log; SIGTERM ends it.
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connection information sent to Enterprise Gateway"),
        "{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );
}

#[test]
fn the_communication_port_takes_signals_and_a_release_and_keeps_a_polled_kernel_alive() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log = dir.path().join("kernel.log");
    let mut child = Command::new(harness::bin("skillkernel"))
        .args([
            "start",
            "--kernel-id",
            "7d0c5f4e-0000-4000-8000-00000000c0de",
        ])
        .args(["--response-address", &address, "--public-key", &key])
        .args(["--gateway-orphan-timeout", "3"])
        .env("SKILLKERNEL_STATE_DIR", dir.path().join("state"))
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    std::io::Read::read_to_string(&mut stream, &mut String::new()).unwrap();
    let comm_port = {
        assert!(wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("comm_port=")
        }));
        let text = std::fs::read_to_string(&log).unwrap();
        let digits: String = text
            .split("comm_port=")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u16>().unwrap()
    };
    let send = |request: &str| {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", comm_port)).unwrap();
        std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    };
    // Polled every half second for twice the orphan timeout, it lives; a
    // malformed request is logged and ignored.
    send("{not json");
    for _ in 0..12 {
        send(r#"{"signum": 0}"#);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // SIGUSR2 through the port: the daemon writes a state dump.
    send(r#"{"signum": 12}"#);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("state dump written")
        }),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    send(r#"{"shutdown": 1}"#);
    assert!(wait_until(Duration::from_secs(15), || child
        .try_wait()
        .unwrap()
        .is_some()));
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "released, the kernel exits 0: {text}");
    assert!(text.contains("request ignored"), "{text}");
    assert!(text.contains("released the kernel"), "{text}");
}

#[test]
fn a_kernel_its_gateway_never_polls_exits_non_zero_after_the_orphan_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let key = gateway::public_key();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accept = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        std::io::Read::read_to_string(&mut stream, &mut String::new()).unwrap();
    });
    let out = launch(
        dir.path(),
        &[
            "--response-address",
            &address,
            "--public-key",
            &key,
            "--gateway-orphan-timeout",
            "2",
        ],
    );
    accept.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no word from Enterprise Gateway"),
        "{stderr}"
    );
    assert!(stderr.contains("shutdown complete"), "{stderr}");
    assert!(
        runtime_files(dir.path()).is_empty(),
        "left behind: {:?}",
        runtime_files(dir.path())
    );
}

#[test]
fn jupyter_clients_kernel_manager_runs_skillkernel_through_a_gateway_provisioners_provisioner() {
    let dir = tempfile::tempdir().unwrap();
    let sshd = Sshd::start();
    let kernels = dir.path().join("share/jupyter/kernels");
    gateway::packaged_kernelspec(
        &kernels,
        "skillkernel_provisioner",
        "skillkernel_provisioner",
        kernel_env(dir.path(), json!({})),
        |spec| {
            spec["metadata"]["kernel_provisioner"]["config"]["remote_hosts"] =
                json!([gateway::REMOTE_HOST]);
        },
    );
    let logs = dir.path().join("kernel-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway/drive_provisioner.py");
    let out = Command::new(harness::otlp::python())
        .arg(driver)
        .arg("skillkernel_provisioner")
        .current_dir(dir.path())
        .env("HOME", &sshd.home)
        .env("JUPYTER_PATH", kernels.parent().unwrap())
        .env("JUPYTER_RUNTIME_DIR", dir.path().join("client-runtime"))
        .env("JUPYTER_PLATFORM_DIRS", "1")
        .env("KERNEL_USERNAME", "tester")
        .env("GP_SSH_PORT", sshd.port.to_string())
        .env("GP_KERNEL_LOG_DIR", &logs)
        .env("GP_RESPONSE_IP", "127.0.0.1")
        .env("GP_RESPONSE_PORT", harness::free_port().to_string())
        .env("GP_PORT_RANGE", port_range())
        .output()
        .expect("run the provisioner client");
    let kernel_logs: String = std::fs::read_dir(&logs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let context = format!(
        "stderr:\n{}\nkernel logs:\n{}",
        tail(&String::from_utf8_lossy(&out.stderr), 40),
        tail(&kernel_logs, 30)
    );
    assert!(out.status.success(), "{context}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("the client's JSON report");
    assert_eq!(
        report["provisioner"], "DistributedProvisioner",
        "{report}\n{context}"
    );
    assert_eq!(
        report["echo"]["text"], "through a provisioner\n",
        "{report}\n{context}"
    );
    assert_eq!(
        report["interrupt"]["ename"], "KeyboardInterrupt",
        "{report}\n{context}"
    );
    assert_eq!(
        report["after_restart"]["text"], "after restart\n",
        "{report}\n{context}"
    );
    assert_eq!(report["alive_after_shutdown"], false, "{report}\n{context}");
    assert!(sshd.accepted_logins() >= 2, "launched over SSH: {context}");
    let kernel_id = report["kernel_id"].as_str().unwrap();
    assert_two_launches_in_range_and_none_left(&kernel_logs, kernel_id, &context);
}

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
        ["/usr/bin/skillkernel", "start"],
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
        .args(&command[1..])
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
    let mut child = kernel
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut payload = String::new();
    std::io::Read::read_to_string(&mut stream, &mut payload).unwrap();
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
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
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
