//! `exec:COMMAND`: run `sh -c COMMAND`, read its stdout as the stream, and babysit it.
//!
//! The command runs in its own process group, so stopping it stops the whole pipeline `sh`
//! started (a `gst-launch-1.0 … | …` or an ffmpeg with helpers), not just the shell. The group
//! is killed when the command's stdout ends or falls silent (then the reconnect loop starts a
//! new one after a backoff), and on shutdown ([`kill_all`]). If the relay itself is killed
//! with SIGKILL, `sh` gets SIGKILL too (`PR_SET_PDEATHSIG`), and the rest of the pipeline gets
//! EPIPE/SIGPIPE on its next write into the closed pipe; nothing keeps running for long.
//!
//! The command's stderr goes to our log, one line per line, prefixed with the stream name.

use super::reconnect::Upstream;
use super::spawn_source_thread;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// Process groups of running commands; emptied by [`kill_all`]. At most one per exec source.
static GROUPS: Mutex<BTreeSet<i32>> = parking_lot::const_mutex(BTreeSet::new());
/// Set by [`kill_all`]: no command may start after shutdown began.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Longest stderr line forwarded to the log; longer lines are cut.
const MAX_LOG_LINE: usize = 1000;
/// Time a command gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(1000);

/// Starts `sh -c cmd`; its stdout is the upstream.
pub fn spawn(stream_name: &str, cmd: &str, silence: Duration) -> Result<Upstream, String> {
    // Held while spawning so kill_all cannot miss a group created at the same moment.
    let mut groups = GROUPS.lock();
    if STOPPING.load(SeqCst) {
        return Err("shutting down".into());
    }
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run sh -c: {e}"))?;
    let pid = child.id() as i32;
    groups.insert(pid);
    drop(groups);
    let stdout = child.stdout.take().expect("stdout is piped");
    if let Some(stderr) = child.stderr.take() {
        let prefix = format!("stream '{stream_name}': command says:");
        // Ends when the command's stderr closes, i.e. when its process group is gone.
        let spawned = spawn_source_thread(format!("src-{stream_name}-stderr"), move || {
            forward_stderr(stderr, &prefix)
        });
        if let Err(e) = spawned {
            log::warn!("stream '{stream_name}': cannot forward the command's stderr: {e}");
        }
    }
    Ok(Upstream {
        reader: Box::new(CommandOutput {
            stdout,
            child,
            pid,
            silence,
        }),
        peer: format!("pid {pid}"),
        boundary: None,
    })
}

fn forward_stderr(stderr: impl Read, prefix: &str) {
    let mut r = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a command that prints megabytes without a newline costs MAX_LOG_LINE bytes.
        match r
            .by_ref()
            .take(MAX_LOG_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if !text.is_empty() {
            log::info!("{prefix} {text}");
        }
    }
}

/// The command's stdout. Reads wait at most `silence`; dropping it stops the process group.
struct CommandOutput {
    stdout: ChildStdout,
    child: Child,
    pid: i32,
    silence: Duration,
}

impl Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut pfd = libc::pollfd {
            fd: self.stdout.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = self.silence.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if rc == 0 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no output"));
        }
        let n = self.stdout.read(buf)?;
        if n == 0 {
            // Say how the command ended, if it has (it may have closed stdout and lived on).
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return Err(io::Error::other(format!("command {status}")));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Err(io::Error::other("command closed its stdout"));
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    fn drop(&mut self) {
        stop_group(self.pid);
        let _ = self.child.wait(); // reap; the group was killed, so this returns
        GROUPS.lock().remove(&self.pid);
    }
}

/// SIGTERM to the group, SIGKILL to what is left after [`TERM_GRACE`].
fn stop_group(pgid: i32) {
    // SAFETY: plain kill(2) on a process group we created.
    unsafe {
        if libc::kill(-pgid, libc::SIGTERM) != 0 {
            return; // already gone
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Whether any process of the group is still running (zombies do not count: they are dead,
/// only waiting to be reaped by their parent).
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        // Fields after the ")" that ends the command name: state ppid pgrp ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let pgrp = f.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

/// Stops every running command's process group, and keeps new ones from starting. Called
/// once on shutdown, before the process exits.
pub fn kill_all() {
    STOPPING.store(true, SeqCst);
    let groups: Vec<i32> = GROUPS.lock().iter().copied().collect();
    for pgid in &groups {
        // SAFETY: plain kill(2) on process groups we created.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline && groups.iter().any(|g| group_alive(*g)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pgid in &groups {
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    if !groups.is_empty() {
        log::info!("stopped {} command(s)", groups.len());
    }
}
