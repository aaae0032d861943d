//! The `mjpeg-relay` binary: parse flags, start each stream's sources and the HTTP server, stop cleanly on
//! SIGINT/SIGTERM. Everything else lives in the library so tests and the benchmark share it.

use mjpeg_relay::shutdown::{self, Trigger};
use mjpeg_relay::{cli, feed::SourceFeed, http, hub::Stream, logger, nosignal, source};
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

fn main() {
    mjpeg_relay::scale::set_up_allocator();
    // Every thread is spawned with an explicit, small stack: see http::CLIENT_STACK and
    // source::SOURCE_STACK (and 64 KiB for the signal thread below).
    let cfg = match cli::parse(std::env::args_os().skip(1)) {
        Ok(cli::Command::Run(cfg)) => cfg,
        Ok(cli::Command::Help) => {
            print!("{}", cli::HELP);
            return;
        }
        Ok(cli::Command::Version) => {
            println!("mjpeg-relay {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Err(e) => {
            eprintln!("mjpeg-relay: {e}\nRun 'mjpeg-relay --help' for usage.");
            exit(2);
        }
    };
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
    if let Err(e) = watch_signals(trigger.clone()) {
        log::error!("cannot install signal handlers: {e}");
        exit(1);
    }
    let tls = match &cfg.tls {
        Some((cert, key)) => match http::tls::Tls::load(cert, key) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                log::error!("{e}");
                exit(1);
            }
        },
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let http_cfg = http::HttpConfig {
        send_timeout: cfg.send_timeout,
        max_clients: cfg.max_clients,
        max_clients_per_ip: cfg.max_clients_per_ip(),
        auth: mjpeg_relay::auth::Auth::new(cfg.auth.as_deref(), cfg.token.as_deref()),
        allow_origin: cfg.allow_origin.clone(),
        allow_hosts: cfg.allow_hosts.clone(),
        static_dir: cfg.static_dir.clone(),
        header_timeout: cfg.header_timeout,
        inflight_bound: http::inflight::enabled(),
        status_details: cfg.status_details,
        tls,
        tier_max_pixels: cfg.max_pixels,
    };
    let protected = !http_cfg.auth.is_open();
    let listener = match http::bind(&cfg.http, &http_cfg) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            exit(1);
        }
    };
    let streams: Vec<_> = cfg
        .streams
        .iter()
        .map(|s| Stream::new(&s.name, &s.source_text))
        .collect();
    for s in &streams {
        if cfg.history.enabled() {
            let _ = s
                .feed
                .history
                .set(mjpeg_relay::history::History::new(cfg.history));
        }
        s.feed
            .warmup
            .store(cfg.warmup, std::sync::atomic::Ordering::Relaxed);
    }
    let source_cfg = source::SourceConfig {
        max_frame_bytes: cfg.max_frame_bytes,
        fps: cfg.fps,
        width: cfg.width,
        height: cfg.height,
        source_timeout: cfg.source_timeout,
        pauses: Default::default(),
    };
    for (sc, stream) in cfg.streams.iter().zip(&streams) {
        let started = start_sources(sc, stream, &source_cfg, &stop);
        if let Err(e) = started {
            log::error!(
                "cannot start the source of stream '{}' ({}): {e}",
                sc.name,
                sc.source_text
            );
            trigger.pull();
            source::exec::kill_all();
            exit(1);
        }
    }
    if !cfg.no_signal_after.is_zero() {
        if let Err(e) = nosignal::start(streams.clone(), cfg.no_signal_after, stop.clone()) {
            log::error!("cannot start the no-signal watchdog: {e}");
            trigger.pull();
            source::exec::kill_all();
            exit(1);
        }
    }
    let local = listener.describe();
    // "http://127.0.0.1:8080/", or for a Unix socket "unix:/run/x.sock" (no URL to open).
    let url = match &listener {
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
             (see --auth and --token)"
        );
    }
    http::serve(listener, streams, cfg.named, http_cfg, &stop);
    // The token stopped the server, so sources know we are stopping before their commands
    // are: a command that ends now is not logged as a lost source.
    source::exec::kill_all();
    log::info!("stopped");
    // Client threads still blocked in a write to a stalled socket end with the process.
    exit(0);
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
        .map(|(i, (_, text))| {
            let member = SourceFeed::new(&format!("{}#{i}", sc.name), text);
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

/// SIGINT/SIGTERM ask for a clean stop (a second SIGINT stops at once); SIGHUP is logged and
/// ignored, since there is no configuration file to reload and logs go to stderr. SIGPIPE is
/// already ignored by the Rust runtime, so a vanished client is a write error, not a crash.
fn watch_signals(trigger: Arc<Trigger>) -> std::io::Result<()> {
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
                    log::info!("SIGHUP received and ignored (nothing to reload)");
                    continue;
                }
                log::info!("signal {sig} received; shutting down");
                interrupted.store(true, SeqCst);
                trigger.pull();
            }
        })?;
    Ok(())
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
