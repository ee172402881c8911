//! The bridge: how a program with network by host reaches the daemon's
//! proxy (`crate::proxy`). The program runs in a network namespace with
//! only `lo`; a child the helper forks before confining itself listens
//! there on `127.0.0.1:`[`PROXY_PORT`] and carries each connection to the
//! run's proxy socket (a UNIX socket: files are shared across network
//! namespaces, addresses are not).
//!
//! The bridge dies with the program (`PR_SET_PDEATHSIG`, and the run's
//! group kill), and holds none of the run's descriptors but its listener:
//! the parent reads the program's pipes to their end.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::proxy::PROXY_PORT;

/// Listens in the run's network namespace and forks the bridge.
pub fn start(proxy_socket: &Path) -> Result<(), String> {
    let listener = TcpListener::bind(("127.0.0.1", PROXY_PORT))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{PROXY_PORT} for the proxy: {e}"))?;
    let socket = proxy_socket.to_path_buf();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the helper is single-threaded, so the child may run Rust.
    match unsafe { libc::fork() } {
        -1 => Err(format!(
            "cannot fork the proxy bridge: {}",
            std::io::Error::last_os_error()
        )),
        0 => bridge(listener, socket, parent),
        _ => Ok(()),
    }
}

fn bridge(listener: TcpListener, socket: PathBuf, parent: libc::pid_t) -> ! {
    // SAFETY: plain system calls on the child's own state.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // Only the listener, as fd 3; stdio on /dev/null.
        let fd = listener.into_raw_fd();
        if fd != 3 {
            libc::dup2(fd, 3);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for std_fd in 0..3 {
            libc::dup2(null, std_fd);
        }
        if libc::close_range(4, libc::c_uint::MAX, 0) != 0 {
            // Before Linux 5.9: one by one (the status pipe must close, or
            // the parent would wait on it).
            let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(64, 1 << 20) as i32;
            for fd in 4..max {
                libc::close(fd);
            }
        }
    }
    // SAFETY: fd 3 is the listener, owned from here on.
    let listener = unsafe { TcpListener::from_raw_fd(3) };
    for client in listener.incoming() {
        let Ok(client) = client else {
            // Out of descriptors, most likely: wait, do not spin.
            std::thread::sleep(std::time::Duration::from_millis(100));
            continue;
        };
        let socket = socket.clone();
        let _ = std::thread::Builder::new().spawn(move || forward(client, &socket));
    }
    // SAFETY: leaving the child without running the helper's exit path.
    unsafe { libc::_exit(0) }
}

/// Carries `client` to the proxy socket, both ways, until both close.
fn forward(client: TcpStream, socket: &Path) {
    let Ok(proxy) = UnixStream::connect(socket) else {
        return;
    };
    let (Ok(client_back), Ok(proxy_back)) = (client.try_clone(), proxy.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new().spawn(move || {
        copy(&client, &proxy);
        let _ = proxy.shutdown(Shutdown::Write);
    });
    copy(&proxy_back, &client_back);
    let _ = client_back.shutdown(Shutdown::Write);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

fn copy(mut from: impl Read, mut to: impl Write) {
    let _ = std::io::copy(&mut from, &mut to);
}
