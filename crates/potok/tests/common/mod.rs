//! Shared end-to-end harness: start a real `potok server` on a free 127.0.0.1 port
//! with a temporary data dir, wait until it accepts connections, kill it on drop;
//! plus helpers to run the `potok` tools.

#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `potok` binary cargo built for these tests.
pub fn potok_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_potok"))
}

/// The repository root (for `bin/*.sh`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running broker process; killed when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub bootstrap: String,
    dir: tempfile::TempDir,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Test ports come from below the kernel's ephemeral range (32768-60999): a port the OS
/// picked and we closed again can be handed to any outgoing connection before the broker
/// binds it. Same range and lock dir as tests/conftest.py.
const PORT_RANGE: std::ops::Range<u16> = 10000..32000;

/// Lock files of the ports this process reserved; the flocks last as long as the process.
static PORT_LOCKS: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// A port below the ephemeral range, free now and reserved for this test process by an
/// flock in `/tmp/potok-test-ports` (or `$POTOK_TEST_PORT_LOCKS`), so that parallel test
/// threads and processes never pick the same one.
pub fn free_port() -> u16 {
    let dir = std::env::var_os("POTOK_TEST_PORT_LOCKS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/potok-test-ports"));
    std::fs::create_dir_all(&dir).expect("port lock dir");
    let mut locks = PORT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    let span = u32::from(PORT_RANGE.end - PORT_RANGE.start);
    // Processes start apart; this process's own reserved ports fail try_lock and are skipped.
    let start = std::process::id().wrapping_mul(7919) % span;
    for i in 0..span {
        let port = PORT_RANGE.start + ((start + i) % span) as u16;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{port}.lock")))
            .expect("port lock file");
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            locks.push(file);
            return port;
        }
    }
    panic!("no free test port in {}-{}", PORT_RANGE.start, PORT_RANGE.end - 1);
}

impl Broker {
    /// Starts a one-node broker with extra `--override key=value` settings.
    pub fn start_with(overrides: &[(&str, &str)]) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let bootstrap = format!("127.0.0.1:{port}");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let log_path = dir.path().join("broker.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let log_err = log.try_clone().expect("log file");
        let mut cmd = Command::new(potok_bin());
        cmd.arg("server")
            .arg("--override")
            .arg(format!("listeners=PLAINTEXT://{bootstrap}"))
            .arg("--override")
            .arg(format!("advertised.listeners=PLAINTEXT://{bootstrap}"))
            .arg("--override")
            .arg(format!("log.dirs={}", data.display()))
            .arg("--override")
            .arg("node.id=1");
        for (k, v) in overrides {
            cmd.arg("--override").arg(format!("{k}={v}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("spawn potok server");
        let mut broker = Broker {
            child,
            bootstrap,
            dir,
        };
        if !broker.wait_until_accepting() {
            panic!("potok server did not start; log:\n{}", broker.log());
        }
        broker
    }

    /// Starts a one-node broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    fn wait_until_accepting(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(&self.bootstrap).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The result of running a tool.
pub struct Run {
    /// Exit status was success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Raw standard output.
    pub raw_stdout: Vec<u8>,
}

fn finish(out: Output) -> Run {
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        raw_stdout: out.stdout,
    }
}

/// Runs `program args...` with `stdin` fed in, from the temp directory (tools and
/// scripts must not depend on the working directory), waiting at most 60 s.
pub fn run_program(program: &Path, args: &[&str], stdin: &[u8], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(program);
    cmd.current_dir(std::env::temp_dir());
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    // A hung tool must fail the test rather than the whole run.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait for tool"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{} {args:?} did not finish within 60 s", program.display());
        }
    };
    let _ = writer.join();
    let _ = waiter.join();
    finish(out)
}

/// Runs `potok args...` with `stdin`.
pub fn potok(args: &[&str], stdin: &[u8]) -> Run {
    run_program(&potok_bin(), args, stdin, &[])
}

/// Runs `potok args...` and fails the test (showing stderr) unless it succeeds.
pub fn potok_ok(args: &[&str], stdin: &[u8]) -> Run {
    let r = potok(args, stdin);
    assert!(
        r.ok,
        "potok {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        r.stdout, r.stderr
    );
    r
}

/// Creates a topic with `potok topics create`, failing the test if it fails.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: u32) {
    let partitions = partitions.to_string();
    potok_ok(
        &[
            "topics",
            "create",
            "--bootstrap-server",
            bootstrap,
            "--topic",
            topic,
            "--partitions",
            &partitions,
        ],
        b"",
    );
}
