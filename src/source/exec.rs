//! `exec:COMMAND`: run `sh -c COMMAND`, read its stdout as the feed, and babysit it.
//!
//! The command runs in its own process group, so stopping it stops the whole pipeline `sh`
//! started (a `gst-launch-1.0 … | …` or an ffmpeg with helpers), not just the shell. The group
//! is killed when the command's stdout ends or falls silent (then the reconnect loop starts a
//! new one after a backoff), and on shutdown ([`kill_all`]). If the relay itself is killed
//! with SIGKILL, `sh` gets SIGKILL too (`PR_SET_PDEATHSIG`), and the rest of the pipeline gets
//! EPIPE/SIGPIPE on its next write into the closed pipe; nothing keeps running for long.
//!
//! The command's stderr goes to our log, one line per line, prefixed with the stream name. A
//! command that fails at once and is restarted every 10 s would repeat the same lines
//! forever, so a line already logged in the last [`REPEAT_QUIET`] goes to debug level instead;
//! the last line is also kept as the reason the command ended (`/status` `last_error`).

use super::reconnect::Upstream;
use super::spawn_source_thread;
use crate::feed::SourceError;
use crate::shutdown::Shutdown;
use parking_lot::Mutex;
use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Process groups of running commands; emptied by [`kill_all`]. At most one per exec source.
static GROUPS: Mutex<BTreeSet<i32>> = parking_lot::const_mutex(BTreeSet::new());

/// Longest stderr line forwarded to the log; longer lines are cut.
const MAX_LOG_LINE: usize = 1000;
/// Time a command gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_millis(1000);

/// A line of the command's stderr is logged at info level at most once in this time.
const REPEAT_QUIET: Duration = Duration::from_secs(600);
/// Distinct stderr lines remembered per source for that (oldest forgotten first).
const REMEMBERED_LINES: usize = 32;

/// One `exec:` source: the command, and the stderr lines recently logged for it (shared by
/// the forwarder threads of successive runs; at most [`REMEMBERED_LINES`]).
pub struct Runner {
    stream_name: String,
    cmd: String,
    silence: Duration,
    recent: Arc<Mutex<VecDeque<(String, Instant)>>>,
    /// No command starts once the relay is stopping.
    shutdown: Shutdown,
}

impl Runner {
    pub fn new(stream_name: &str, cmd: &str, silence: Duration, shutdown: Shutdown) -> Runner {
        Runner {
            stream_name: stream_name.to_string(),
            cmd: cmd.to_string(),
            silence,
            recent: Arc::default(),
            shutdown,
        }
    }

    /// Starts a run of the command.
    pub fn spawn(&self) -> Result<Upstream, String> {
        spawn(self)
    }
}

/// Starts `sh -c cmd`; its stdout is the upstream.
fn spawn(runner: &Runner) -> Result<Upstream, String> {
    let (stream_name, cmd, silence) = (&runner.stream_name, &runner.cmd, runner.silence);
    // Held while spawning so kill_all cannot miss a group created at the same moment: either
    // this sees the shutdown, or kill_all (which runs after it) sees the group.
    let mut groups = GROUPS.lock();
    if runner.shutdown.is_stopping() {
        return Err("shutting down".into());
    }
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(in_place(cmd).as_ref())
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
    let last_line = Arc::new(Mutex::new(String::new()));
    // Set when this run's output is dropped (the command was stopped or ended).
    let ended = Arc::new(AtomicBool::new(false));
    if let Some(stderr) = child.stderr.take() {
        let prefix = format!("stream '{stream_name}': command says:");
        let (recent, last, done) = (runner.recent.clone(), last_line.clone(), ended.clone());
        // Ends when the command's stderr closes, or at most STDERR_GRACE after this run of
        // the command is over: a grandchild that left the process group (a daemon, `setsid`)
        // may keep stderr open for good, and must not keep a thread of ours with it.
        let spawned = spawn_source_thread(format!("src-{stream_name}-stderr"), move || {
            forward_stderr(stderr, &prefix, &recent, &last, &done)
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
            last_line,
            ended,
        }),
        peer: format!("pid {pid}"),
        boundary: None,
    })
}

/// The script `sh -c` runs: `exec COMMAND` when it is one simple command, so the command
/// replaces the shell and the pid `/status` names (and a `kill` of it) is the camera
/// command's own, not a wrapper's that leaves ffmpeg running when killed. Anything the shell
/// must stay for (a pipeline, a list, a subshell, a compound command, a leading assignment)
/// runs as written: `/status` then names the process group's leader, and `kill -- -PID`
/// stops all of it. Conservative: a metacharacter even inside quotes leaves it as written.
fn in_place(cmd: &str) -> std::borrow::Cow<'_, str> {
    let first = cmd.split_whitespace().next().unwrap_or("");
    let keyword = matches!(
        first,
        "if" | "while" | "until" | "for" | "case" | "{" | "!" | "exec" | "time" | "function"
    );
    let assignment = first.contains('=');
    let compound = cmd.contains(['|', ';', '&', '\n', '(', ')', '`', '{', '}']);
    if keyword || assignment || compound || first.is_empty() {
        cmd.into()
    } else {
        format!("exec {cmd}").into()
    }
}

/// How long the stderr forwarder reads on after its command's run is over (its last words
/// may still be in the pipe).
const STDERR_GRACE: Duration = Duration::from_secs(1);

fn forward_stderr(
    mut stderr: ChildStderr,
    prefix: &str,
    recent: &Mutex<VecDeque<(String, Instant)>>,
    last: &Mutex<String>,
    ended: &AtomicBool,
) {
    // One line being assembled, at most MAX_LOG_LINE bytes (the rest of a longer line is
    // dropped): a command that prints megabytes without a newline costs that much.
    let mut line: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut ended_at: Option<Instant> = None;
    loop {
        if ended.load(SeqCst) {
            let t = *ended_at.get_or_insert_with(Instant::now);
            if t.elapsed() >= STDERR_GRACE {
                return;
            }
        }
        let mut pfd = libc::pollfd {
            fd: stderr.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for a descriptor we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, 200) };
        if rc <= 0 {
            continue; // timeout (or EINTR): look at `ended` again
        }
        let n = match stderr.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for &b in chunk.get(..n).unwrap_or_default() {
            if b == b'\n' {
                log_line(&line, prefix, recent, last);
                line.clear();
            } else if line.len() < MAX_LOG_LINE {
                line.push(b);
            }
        }
    }
}

/// One line of the command's stderr to the log (see the module docs for the repeat rule).
fn log_line(
    line: &[u8],
    prefix: &str,
    recent: &Mutex<VecDeque<(String, Instant)>>,
    last: &Mutex<String>,
) {
    // Camera commands print their input URLs, passwords and all (ffmpeg does).
    let text = super::redact(&String::from_utf8_lossy(line));
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    text.clone_into(&mut last.lock());
    let mut recent = recent.lock();
    let now = Instant::now();
    recent.retain(|(_, t)| now.duration_since(*t) < REPEAT_QUIET);
    if recent.iter().any(|(l, _)| l == text) {
        drop(recent);
        log::debug!("{prefix} {text}");
        return;
    }
    if recent.len() >= REMEMBERED_LINES {
        recent.pop_front();
    }
    recent.push_back((text.to_string(), now));
    drop(recent);
    log::info!("{prefix} {text}");
}

/// The command's stdout. Reads wait at most `silence`; dropping it stops the process group.
struct CommandOutput {
    stdout: ChildStdout,
    child: Child,
    pid: i32,
    silence: Duration,
    /// The command's last stderr line, to say why it ended.
    last_line: Arc<Mutex<String>>,
    /// Tells the stderr forwarder this run is over.
    ended: Arc<AtomicBool>,
}

impl CommandOutput {
    /// "exited with status 127 (its last words: sh: 1: cam: not found)": the words kept
    /// apart ([`SourceError`]), since pages show them only to the operator.
    fn ended(&self, how: String) -> io::Error {
        let last = self.last_line.lock();
        io::Error::other(SourceError {
            reason: how,
            said: (!last.is_empty()).then(|| last.clone()),
        })
    }
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
                    let how = match (status.code(), status.signal()) {
                        (Some(code), _) => format!("command exited with status {code}"),
                        (None, Some(sig)) => format!("command killed by signal {sig}"),
                        _ => format!("command ended ({status})"),
                    };
                    // Its stderr may still be in the pipe: give the forwarder a moment.
                    std::thread::sleep(Duration::from_millis(50));
                    return Err(self.ended(how));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return Err(self.ended("command closed its stdout".into()));
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    fn drop(&mut self) {
        self.ended.store(true, SeqCst);
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

/// Stops every running command's process group. Called once on shutdown, after the
/// [`Shutdown`] trigger is pulled (so no new command starts), before the process exits.
pub fn kill_all() {
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

#[cfg(test)]
mod tests {
    use super::in_place;

    #[test]
    fn one_simple_command_replaces_the_shell_and_nothing_else_does() {
        for (cmd, want) in [
            (
                "ffmpeg -i rtsp://cam/1 -f mjpeg -",
                "exec ffmpeg -i rtsp://cam/1 -f mjpeg -",
            ),
            (
                "  cat /tmp/a.mjpeg 2>/dev/null",
                "exec   cat /tmp/a.mjpeg 2>/dev/null",
            ),
            ("gst-launch-1.0 a ! b | cat", "gst-launch-1.0 a ! b | cat"),
            ("cd /tmp; ffmpeg", "cd /tmp; ffmpeg"),
            ("sleep 1 && cat x", "sleep 1 && cat x"),
            ("X=1 ffmpeg", "X=1 ffmpeg"),
            ("exec ffmpeg", "exec ffmpeg"),
            ("while true; do cat x; done", "while true; do cat x; done"),
            ("(cat x)", "(cat x)"),
            (
                "ffmpeg -vf 'scale=iw/2:-1;x'",
                "ffmpeg -vf 'scale=iw/2:-1;x'",
            ),
        ] {
            assert_eq!(in_place(cmd), want, "{cmd}");
        }
    }
}
