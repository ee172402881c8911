//! Jupyter Enterprise Gateway, for real, and the SSH server its
//! distributed process proxy launches kernels through.
//!
//! * [`Sshd`]: Debian's OpenSSH server on `127.0.0.2` with keys made for
//!   the test. EG launches over SSH only to hosts it does not take for
//!   itself, and it takes only addresses of its own interfaces: the
//!   loopback's `127.0.0.2` is not one of them (jupyter_client lists
//!   `127.0.0.1`), so the kernel really starts through SSH, on this
//!   machine.
//! * [`Gateway`]: `jupyter enterprisegateway` from the venv
//!   `scripts/setup-gateway` builds (`SKILLKERNEL_EG_VENV`, else
//!   `~/.cache/skillkernel/venv-eg`), whose `HOME` holds the client key
//!   and the server's host key, so paramiko trusts exactly that server.
//! * [`packaged_kernelspec`]: a kernelspec `packaging/gateway` ships,
//!   pointed at the built binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Where the SSH server listens: a loopback address EG takes for remote.
pub const REMOTE_HOST: &str = "127.0.0.2";

/// The EG venv's directory, or a message saying how to make it.
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("SKILLKERNEL_EG_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache/skillkernel/venv-eg")
        });
    assert!(
        venv.join("bin/jupyter-enterprisegateway").exists(),
        "{} has no jupyter-enterprisegateway: run scripts/setup-gateway (scripts/test does)",
        venv.display()
    );
    venv
}

/// The EG venv's python (it has pycryptodomex, requests, websocket-client).
pub fn python() -> PathBuf {
    venv().join("bin/python")
}

fn run_ok(command: &mut Command) {
    let out = command.output().expect("run a setup command");
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_port(host: &str, port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect((host, port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} never listened on {host}:{port}; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An OpenSSH server for the test, killed on drop.
pub struct Sshd {
    child: Child,
    pub port: u16,
    /// A `HOME` whose `.ssh` holds the client key and trusts this server.
    pub home: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshd {
    pub fn start() -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: run scripts/setup-gateway (scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let home = root.join("home");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let keygen = |path: &Path| {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(path),
            )
        };
        keygen(&home.join(".ssh/id_ed25519"));
        keygen(&root.join("host_key"));
        std::fs::copy(
            home.join(".ssh/id_ed25519.pub"),
            root.join("authorized_keys"),
        )
        .unwrap();
        let port = crate::free_port();
        let host_key = std::fs::read_to_string(root.join("host_key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            home.join(".ssh/known_hosts"),
            format!("[{REMOTE_HOST}]:{port} {}\n", host_key.join(" ")),
        )
        .unwrap();
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress {REMOTE_HOST}\nHostKey {host}\n\
                 AuthorizedKeysFile {keys}\nStrictModes no\nPidFile {pid}\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\n",
                host = root.join("host_key").display(),
                keys = root.join("authorized_keys").display(),
                pid = root.join("sshd.pid").display(),
            ),
        )
        .unwrap();
        // Its privilege separation directory (a Debian package makes it at boot).
        let _ = std::fs::create_dir_all("/run/sshd");
        let log = root.join("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(root.join("sshd.err")).unwrap())
            .spawn()
            .expect("start sshd");
        wait_for_port(REMOTE_HOST, port, "sshd", &root.join("sshd.err"));
        Sshd {
            child,
            port,
            home,
            log: root.join("sshd.err"),
            _dir: dir,
        }
    }

    /// How many SSH sessions the server accepted so far.
    pub fn accepted_logins(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running Enterprise Gateway, killed on drop.
pub struct Gateway {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
    /// Where the distributed proxy writes each kernel's output
    /// (`kernel-<id>.log`).
    pub kernel_logs: PathBuf,
}

impl Gateway {
    /// Serves the kernelspecs under `jupyter_path` on a free loopback
    /// port, launching remote kernels on [`REMOTE_HOST`] through `sshd`,
    /// with ports inside `port_range`; waits until its REST API answers.
    pub fn start(dir: &Path, jupyter_path: &Path, sshd: &Sshd, port_range: &str) -> Gateway {
        let port = crate::free_port();
        let log = dir.join("gateway.log");
        let kernel_logs = dir.join("kernel-logs");
        std::fs::create_dir_all(&kernel_logs).unwrap();
        let child = Command::new(venv().join("bin/jupyter-enterprisegateway"))
            .args([
                "--ip=127.0.0.1",
                &format!("--port={port}"),
                &format!("--EnterpriseGatewayApp.remote_hosts={REMOTE_HOST}"),
                &format!("--EnterpriseGatewayApp.port_range={port_range}"),
                "--log-level=DEBUG",
            ])
            .current_dir(dir)
            .env("HOME", &sshd.home)
            .env("JUPYTER_PATH", jupyter_path)
            .env("JUPYTER_DATA_DIR", dir.join("data"))
            .env("JUPYTER_RUNTIME_DIR", dir.join("gateway-runtime"))
            .env("EG_SSH_PORT", sshd.port.to_string())
            .env("EG_KERNEL_LOG_DIR", &kernel_logs)
            .env("EG_RESPONSE_IP", "127.0.0.1")
            .env("EG_RESPONSE_PORT", crate::free_port().to_string())
            .env("EG_KERNEL_LAUNCH_TIMEOUT", "60")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("gateway.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start jupyter enterprisegateway");
        let gateway = Gateway {
            child: Some(child),
            port,
            log,
            kernel_logs,
        };
        wait_for_port("127.0.0.1", port, "Enterprise Gateway", &gateway.log);
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the distributed proxy captured of a kernel's output.
    pub fn kernel_log(&self, kernel_id: &str) -> String {
        std::fs::read_to_string(self.kernel_logs.join(format!("kernel-{kernel_id}.log")))
            .unwrap_or_default()
    }

    /// Kills the gateway at once (SIGKILL): it says nothing to its kernels.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes the kernelspec `packaging/gateway/kernelspecs/<shipped>` under
/// `kernels_dir/name`, running the built binary with `env`, after `edit`.
pub fn packaged_kernelspec(
    kernels_dir: &Path,
    shipped: &str,
    name: &str,
    env: Value,
    edit: impl FnOnce(&mut Value),
) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/gateway/kernelspecs")
        .join(shipped)
        .join("kernel.json");
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(spec["argv"][0], "/usr/bin/skillkernel", "{spec}");
    spec["argv"][0] = json!(crate::bin("skillkernel"));
    spec["env"] = env;
    edit(&mut spec);
    let dir = kernels_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kernel.json"), spec.to_string()).unwrap();
    dir
}

/// Pids of live `skillkernel` processes started for `kernel_id`.
pub fn kernel_processes(kernel_id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_kernel = args.first().is_some_and(|a| a.ends_with(b"skillkernel"));
        if is_kernel && args.contains(&kernel_id.as_bytes()) && crate::detached::alive(pid as i32) {
            pids.push(pid);
        }
    }
    pids
}

/// An RSA public key in the form the gateway passes (`{public_key}`),
/// made by the venv's pycryptodomex as EG makes its own.
pub fn public_key() -> String {
    let out = Command::new(python())
        .args([
            "-c",
            "from Cryptodome.PublicKey import RSA\n\
             pem = RSA.generate(1024).publickey().export_key('PEM').decode()\n\
             print(''.join(l for l in pem.splitlines() if not l.startswith('-----')))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
