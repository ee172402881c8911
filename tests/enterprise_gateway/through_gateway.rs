//! A real Enterprise Gateway (and jupyter_client with gateway_provisioners)
//! launching skillkernel over SSH.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use harness::detached::wait_until;
use harness::gateway::{self, Gateway, Sshd};
use serde_json::{json, Value};

use crate::{assert_two_launches_in_range_and_none_left, kernel_env, port_range, tail};

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

#[test]
fn a_kernel_whose_gateway_vanishes_shuts_down() {
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
