//! The `mjpeg-relay` binary: parse flags, start every stream's sources and the HTTP server,
//! reload on SIGHUP, stop cleanly on SIGINT/SIGTERM. Everything else lives in the library so
//! tests and the benchmark share it.

use mjpeg_relay::shutdown::{self, Shutdown, Trigger};
use mjpeg_relay::{cli, feed::SourceFeed, http, hub::Stream, logger, nosignal, source};
use parking_lot::Mutex;
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

fn main() {
    mjpeg_relay::scale::set_up_allocator();
    // Every thread is spawned with an explicit, small stack: see http::CLIENT_STACK and
    // source::SOURCE_STACK (and 64 KiB for the signal thread below).
    let cfg = command_line();
    logger::init(cfg.log_level);
    mjpeg_relay::tiers::contain_codec_panics();
    for note in &cfg.notes {
        log::info!("{note}");
    }
    raise_fd_limit();
    limit_malloc_arenas();

    // The one way to stop: every thread that runs until the end holds a clone of `stop`.
    let (trigger, stop) = shutdown::channel();
    let trigger = Arc::new(trigger);
    // SIGHUP: at most one reload waiting; a second SIGHUP meanwhile is the same reload.
    let (reload_tx, reload_rx) = crossbeam_channel::bounded(1);
    if let Err(e) = watch_signals(trigger.clone(), reload_tx) {
        log::error!("cannot install signal handlers: {e}");
        exit(1);
    }
    let http_cfg = http_config(&cfg);
    let scheme = if http_cfg.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let protected = !http_cfg.policy.get().is_open();
    let policy = http_cfg.policy.clone();
    let listener = match http::bind(&cfg.http, &http_cfg) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            exit(1);
        }
    };
    let running = start_streams(&cfg, &stop).unwrap_or_else(|()| {
        trigger.pull();
        source::exec::kill_all();
        exit(1);
    });
    let streams =
        mjpeg_relay::hub::Streams::new(running.iter().map(|r| r.stream.clone()).collect());
    if !cfg.no_signal_after.is_zero() {
        if let Err(e) = nosignal::start(streams.clone(), cfg.no_signal_after, stop.clone()) {
            log::error!("cannot start the no-signal watchdog: {e}");
            trigger.pull();
            source::exec::kill_all();
            exit(1);
        }
    }
    announce(&listener, &cfg, scheme, protected);
    let reloader = Reloader {
        cfg: Mutex::new((*cfg).clone()),
        running: Mutex::new(running),
        streams: streams.clone(),
        policy,
        stop: stop.clone(),
    };
    if let Err(e) = std::thread::Builder::new()
        .name("reload".into())
        .stack_size(256 * 1024)
        .spawn(move || reloader.run(reload_rx))
    {
        log::error!("cannot start the reload thread: {e}");
        exit(1);
    }
    http::serve(listener, streams, cfg.named, http_cfg, &stop);
    // The token stopped the server, so sources know we are stopping before their commands
    // are: a command that ends now is not logged as a lost source.
    source::exec::kill_all();
    log::info!("stopped");
    // Client threads still blocked in a write to a stalled socket end with the process.
    exit(0);
}

/// The configuration to run with; `--help`, `--version` and `sign` are answered here, and a
/// bad command line ends the process (exit 2).
fn command_line() -> Box<cli::Config> {
    // Answered on stdout: flushed, then exit 0.
    let answered = || -> ! {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        exit(0)
    };
    match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Command::Run(cfg)) => cfg,
        Ok(cli::Command::Help) => {
            print!("{}", cli::help());
            answered()
        }
        Ok(cli::Command::Version) => {
            println!("mjpeg-relay {}", env!("CARGO_PKG_VERSION"));
            answered()
        }
        Ok(cli::Command::SignHelp) => {
            print!("{}", cli::SIGN_USAGE);
            answered()
        }
        Ok(cli::Command::Sign(req)) => match cli::sign_link(&req) {
            Ok(url) => {
                println!("{url}");
                answered()
            }
            Err(e) => {
                eprintln!("mjpeg-relay sign: {e}");
                exit(2);
            }
        },
        Err(e) => {
            eprintln!("mjpeg-relay: {e}\nRun 'mjpeg-relay --help' for usage.");
            exit(2);
        }
    }
}

/// The HTTP side's settings, the TLS certificate loaded (a bad one ends the process, exit 1).
fn http_config(cfg: &cli::Config) -> http::HttpConfig {
    let tls = cfg
        .tls
        .as_ref()
        .map(|(cert, key)| match http::tls::Tls::load(cert, key) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                log::error!("{e}");
                exit(1);
            }
        });
    http::HttpConfig {
        send_timeout: cfg.send_timeout,
        max_clients: cfg.max_clients,
        max_clients_per_ip: cfg.max_clients_per_ip(),
        policy: mjpeg_relay::policy::Current::new(policy_of(cfg)),
        allow_origin: cfg.allow_origin.clone(),
        allow_hosts: cfg.allow_hosts.clone(),
        static_dir: cfg.static_dir.clone(),
        header_timeout: cfg.header_timeout,
        inflight_bound: http::inflight::enabled(),
        status_details: cfg.status_details,
        tls,
        tier_max_pixels: cfg.max_pixels,
    }
}

/// The log's "serving …" line, and a warning for an open relay on a public address.
fn announce(listener: &http::HttpListener, cfg: &cli::Config, scheme: &str, protected: bool) {
    let local = listener.describe();
    // "http://127.0.0.1:8080/", or for a Unix socket "unix:/run/x.sock" (no URL to open).
    let url = match listener {
        http::HttpListener::Tcp(_) => format!("{scheme}://{local}/"),
        http::HttpListener::Unix(..) => local.clone(),
    };
    if cfg.named {
        let names: Vec<_> = cfg
            .streams
            .iter()
            .map(|s| format!("/{}/stream", s.name))
            .collect();
        log::info!("serving {url} (streams at {})", names.join(", "));
    } else {
        log::info!(
            "serving {url} (stream at /stream, source {})",
            cfg.streams[0].source_text
        );
    }
    if listener.is_public() && !protected {
        log::warn!(
            "listening on {local}, reachable from other hosts, with no authentication \
             (see --auth, --token, or users in --config: docs/access.md)"
        );
    }
}

/// Every configured stream, started; `Err` once one could not be (logged).
fn start_streams(cfg: &cli::Config, stop: &Shutdown) -> Result<Vec<Running>, ()> {
    let source_cfg = source_config(cfg);
    let mut running = Vec::new();
    for sc in &cfg.streams {
        match start_stream(sc, cfg, &source_cfg, stop) {
            Ok(r) => running.push(r),
            Err(e) => {
                log::error!(
                    "cannot start the source of stream '{}' ({}): {e}",
                    sc.name,
                    sc.source_text
                );
                return Err(());
            }
        }
    }
    Ok(running)
}

/// Starts the source of a stream, or with `--fallback` the whole chain: each source fills a
/// feed of its own, and the failover thread forwards the first that is up.
fn start_sources(
    sc: &cli::StreamConfig,
    stream: &Arc<Stream>,
    cfg: &source::SourceConfig,
    stop: &shutdown::Shutdown,
) -> std::io::Result<()> {
    let mut cfg = cfg.clone();
    if let Some(linger) = sc.on_demand {
        // Every source of the stream (its fallbacks too) runs only while the served stream
        // has someone watching, and LINGER after.
        let _ = stream.demand.linger.set(linger);
        let served = stream.clone();
        cfg.pauses.idle = Some(Arc::new(move || served.idle()));
    }
    let cfg = &cfg;
    if sc.fallbacks.is_empty() {
        return source::start(&sc.source, stream.feed.clone(), cfg, stop.clone());
    }
    let chain: Vec<(&source::SourceSpec, &String)> = std::iter::once((&sc.source, &sc.source_text))
        .chain(sc.fallbacks.iter().map(|(s, t)| (s, t)))
        .collect();
    let members: Vec<Arc<SourceFeed>> = chain
        .iter()
        .enumerate()
        .map(|(i, (spec, text))| {
            let member = SourceFeed::new(&format!("{}#{i}", sc.name), spec.shown(text));
            // --warmup acts where the connections are: on each source of the chain.
            let warmup = stream
                .feed
                .warmup
                .load(std::sync::atomic::Ordering::Relaxed);
            member
                .warmup
                .store(warmup, std::sync::atomic::Ordering::Relaxed);
            member
        })
        .collect();
    for (i, ((spec, _), member)) in chain.iter().zip(&members).enumerate() {
        let mut cfg = cfg.clone();
        if i > 0 {
            cfg.pauses.standby = Some(Arc::new(mjpeg_relay::failover::standby(
                &members,
                i,
                cfg.source_timeout,
            )));
        }
        source::start(spec, member.clone(), &cfg, stop.clone())?;
    }
    let specs = chain.iter().map(|(_, t)| t.to_string()).collect();
    mjpeg_relay::failover::start(
        stream.clone(),
        members,
        specs,
        cfg.source_timeout,
        stop.clone(),
    )
}

/// SIGINT/SIGTERM ask for a clean stop (a second SIGINT stops at once); SIGHUP asks the reload
/// thread to read `--config` again (without one it is logged and ignored). SIGPIPE is
/// already ignored by the Rust runtime, so a vanished client is a write error, not a crash.
fn watch_signals(
    trigger: Arc<Trigger>,
    reload: crossbeam_channel::Sender<()>,
) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    // Only for "a second SIGINT exits at once": signal-hook exits with 130 if this is set
    // when SIGINT arrives. Stopping itself is the trigger's job.
    let interrupted = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, interrupted.clone())?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    // Full: a reload is already waiting, and it will read the file as it is.
                    let _ = reload.try_send(());
                    continue;
                }
                log::info!("signal {sig} received; shutting down");
                interrupted.store(true, SeqCst);
                trigger.pull();
            }
        })?;
    Ok(())
}

/// Who may see what, from the flags and `--config`.
fn policy_of(cfg: &cli::Config) -> mjpeg_relay::policy::Policy {
    mjpeg_relay::policy::Policy::new(
        mjpeg_relay::auth::Auth::new(cfg.auth.as_deref(), cfg.token.as_deref()),
        cfg.users.clone(),
        mjpeg_relay::signing::Keys::new(&cfg.signing_keys),
    )
}

fn source_config(cfg: &cli::Config) -> source::SourceConfig {
    source::SourceConfig {
        max_frame_bytes: cfg.max_frame_bytes,
        fps: cfg.fps,
        width: cfg.width,
        height: cfg.height,
        source_timeout: cfg.source_timeout,
        pauses: Default::default(),
    }
}

/// A stream being served: what configured it, and the trigger that ends its sources.
struct Running {
    config: cli::StreamConfig,
    stream: Arc<Stream>,
    end: Trigger,
}

impl Running {
    /// Ends the stream: its sources stop, and its viewers' responses end (their feed closes).
    fn end(self) {
        self.end.pull();
        self.stream.feed.close();
    }

    /// A push source (`tcp-listen:`, `stdin`) cannot be ended and started again: its port or
    /// pipe is held by a thread that waits for the sender.
    fn is_push(sc: &cli::StreamConfig) -> bool {
        sc.sources().any(source::SourceSpec::is_push)
    }
}

fn start_stream(
    sc: &cli::StreamConfig,
    cfg: &cli::Config,
    source_cfg: &source::SourceConfig,
    stop: &Shutdown,
) -> std::io::Result<Running> {
    let stream = Stream::new(&sc.name, sc.source.shown(&sc.source_text));
    if cfg.history.enabled() {
        let _ = stream
            .feed
            .history
            .set(mjpeg_relay::history::History::new(cfg.history));
    }
    stream
        .feed
        .warmup
        .store(cfg.warmup, std::sync::atomic::Ordering::Relaxed);
    let (end, token) = shutdown::child(stop, &sc.name)?;
    if let Err(e) = start_sources(sc, &stream, source_cfg, &token) {
        end.pull();
        return Err(e);
    }
    Ok(Running {
        config: sc.clone(),
        stream,
        end,
    })
}

/// `SIGHUP` with `--config`: the file is read again (with the command line's flags still
/// winning). A stream that is new starts, one that is gone ends, one whose settings changed
/// starts again; viewers of unchanged streams keep watching, untouched. Users and keys take
/// effect for new requests. A file that does not parse changes nothing.
struct Reloader {
    cfg: Mutex<cli::Config>,
    running: Mutex<Vec<Running>>,
    streams: Arc<mjpeg_relay::hub::Streams>,
    policy: Arc<mjpeg_relay::policy::Current>,
    stop: Shutdown,
}

impl Reloader {
    fn run(&self, asks: crossbeam_channel::Receiver<()>) {
        loop {
            crossbeam_channel::select! {
                recv(asks) -> _ => self.reload(),
                recv(self.stop.receiver()) -> _ => return,
            }
        }
    }

    fn reload(&self) {
        let old = self.cfg.lock().clone();
        let Some(file) = &old.config_file else {
            log::info!("SIGHUP received and ignored (no --config file to read again)");
            return;
        };
        let new = match cli::parse(old.args.clone()) {
            Ok(cli::Command::Run(new)) => *new,
            Ok(_) => return,
            Err(e) => {
                log::error!("SIGHUP: not reloaded, the running configuration stays: {e}");
                return;
            }
        };
        for note in &new.notes {
            log::info!("{note}");
        }
        if new.named != old.named {
            log::warn!(
                "SIGHUP: {}: a single --source and named streams cannot replace each other \
                 while running; restart the relay for that. Users and keys are reloaded.",
                file.display()
            );
            self.policy.set(policy_of(&new));
            return;
        }
        // What each flag does on a reload is part of its definition (cli::defs::Reload).
        let restart_only = cli::defs::changed(&old, &new, false);
        if !restart_only.is_empty() {
            log::warn!(
                "SIGHUP: {} changed {}, which take effect at a restart; streams, users and \
                 keys are reloaded now",
                file.display(),
                restart_only.join(", ")
            );
        }
        let for_sources = cli::defs::changed(&old, &new, true);
        if !for_sources.is_empty() {
            log::info!(
                "SIGHUP: {} changed {}, which every source uses: each stream starts again \
                 with it",
                file.display(),
                for_sources.join(", ")
            );
        }
        let source_cfg = source_config(&new);
        let mut running = self.running.lock();
        let mut kept: Vec<Running> = Vec::new();
        let mut previous: Vec<Running> = std::mem::take(&mut *running);
        let (mut started, mut ended, mut same) = (Vec::new(), Vec::new(), 0);
        for sc in &new.streams {
            if let Some(i) = previous.iter().position(|r| r.config.name == sc.name) {
                let r = previous.remove(i);
                if r.config == *sc && for_sources.is_empty() {
                    same += 1;
                    kept.push(r);
                    continue;
                }
                if Running::is_push(&r.config) || Running::is_push(sc) {
                    log::warn!(
                        "SIGHUP: stream '{}' reads tcp-listen: or stdin, which cannot be \
                         started again while running: kept as it was (restart to change it)",
                        sc.name
                    );
                    kept.push(r);
                    continue;
                }
                r.end();
                ended.push(sc.name.clone());
            }
            match start_stream(sc, &new, &source_cfg, &self.stop) {
                Ok(r) => {
                    started.push(sc.name.clone());
                    kept.push(r);
                }
                Err(e) => log::error!(
                    "SIGHUP: cannot start the source of stream '{}' ({}): {e}",
                    sc.name,
                    sc.source_text
                ),
            }
        }
        for r in previous {
            if Running::is_push(&r.config) {
                log::warn!(
                    "SIGHUP: stream '{}' is gone from the configuration; its tcp-listen: or \
                     stdin source goes on until a restart",
                    r.config.name
                );
            }
            ended.push(r.config.name.clone());
            r.end();
        }
        if kept.is_empty() {
            log::error!("SIGHUP: no stream could be started; the running configuration stays");
            // Nothing was ended unless it was replaced: put back what is still running.
            *running = kept;
            return;
        }
        self.streams
            .set(kept.iter().map(|r| r.stream.clone()).collect());
        *running = kept;
        self.policy.set(policy_of(&new));
        log::info!(
            "SIGHUP: {} reloaded: {same} stream(s) unchanged, started {:?}, ended {:?}; \
             {} user(s), {} signing key(s)",
            file.display(),
            started,
            ended,
            new.users.len(),
            new.signing_keys.len()
        );
        *self.cfg.lock() = new;
    }
}

/// Each client holds a socket; the default soft limit of 1024 descriptors would cap clients
/// below `--max-clients`. Raise the soft limit to the hard limit, as servers commonly do.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// glibc gives threads their own malloc arenas, up to 8 per core, and each arena keeps the
/// memory it once held. With a thread per client and a new source thread per upstream
/// connection, that made RSS climb ~290 KB with every upstream reconnect in the soak test
/// (one more arena each time) until the cap. The relay barely allocates on its hot path (one
/// frame buffer per upstream frame, on the source thread; client threads share it), so a
/// second arena is all the concurrency it needs. No-op outside glibc.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a malloc tunable; it takes malloc's own lock.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
