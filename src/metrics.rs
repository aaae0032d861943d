//! `/metrics` in Prometheus text format, and the counters behind it that outlive clients.
//!
//! Per-client counters vanish when a client leaves, so each stream also keeps totals
//! ([`OutStats`](crate::hub::OutStats), in the hub) that client threads bump after every write;
//! this module only renders them.

use crate::feed::SourceState;
use crate::hub::{Stream, DELAY_BUCKETS};
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// The whole `/metrics` body. `refused`: connections turned away since start, by reason
/// ([`crate::http::server::Refusals::counts`]). One function per family or group of
/// families, each writing its `# HELP`, `# TYPE` and samples.
pub fn render(streams: &[Arc<Stream>], uptime: Duration, refused: &[(&str, u64)]) -> String {
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "uptime_seconds",
        "gauge",
        "Seconds since the relay started.",
    );
    sample(
        &mut out,
        "uptime_seconds",
        &[],
        format_args!("{:.3}", uptime.as_secs_f64()),
    );
    family(
        &mut out,
        "http_refused_total",
        "counter",
        "Connections turned away: 503 past --max-clients, --max-clients-per-ip or the pending \
         budget; evicted: closed before their request to admit a newer one.",
    );
    for (reason, n) in refused {
        sample(&mut out, "http_refused_total", &[("reason", reason)], n);
    }
    for (name, kind, help, value) in PER_STREAM {
        family(&mut out, name, kind, help);
        for s in streams {
            sample(&mut out, name, &[("stream", &s.name)], value(s));
        }
    }
    invalid_frames(&mut out, streams);
    source_up(&mut out, streams);
    failover(&mut out, streams);
    source_state(&mut out, streams);
    frame_delay(&mut out, streams);
    sizes(&mut out, streams);
    out
}

/// `# HELP` and `# TYPE` of the family `mjpeg_relay_{name}`.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP mjpeg_relay_{name} {help}");
    let _ = writeln!(out, "# TYPE mjpeg_relay_{name} {kind}");
}

/// One sample: `mjpeg_relay_{name}{labels} value`. Label values are stream names (letters,
/// digits, `-`, `_`) and our own words: nothing to escape.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let _ = write!(out, "mjpeg_relay_{name}");
    for (i, (k, v)) in labels.iter().enumerate() {
        let _ = write!(out, "{}{k}=\"{v}\"", if i == 0 { '{' } else { ',' });
    }
    let _ = writeln!(out, "{} {value}", if labels.is_empty() { "" } else { "}" });
}

/// What a stream's history holds now (nothing without `--history`).
fn held(s: &Stream) -> crate::history::Held {
    s.feed.history.get().map(|h| h.held()).unwrap_or_default()
}

type PerStream = fn(&Stream) -> String;

/// The families with one sample per stream: name, type, help, value.
const PER_STREAM: [(&str, &str, &str, PerStream); 13] = [
    (
        "frames_in_total",
        "counter",
        "Whole frames received from the source.",
        |s| s.feed.stats.frames_in.load(Relaxed).to_string(),
    ),
    (
        "bytes_in_total",
        "counter",
        "Bytes received from the source.",
        |s| s.feed.stats.bytes_in.load(Relaxed).to_string(),
    ),
    (
        "frames_out_total",
        "counter",
        "Frames written to clients (repeats of a still frame excluded).",
        |s| s.out.frames_out.load(Relaxed).to_string(),
    ),
    (
        "bytes_out_total",
        "counter",
        "Bytes written to clients.",
        |s| s.out.bytes_out.load(Relaxed).to_string(),
    ),
    (
        "frames_skipped_total",
        "counter",
        "Frames a client skipped because a newer one was ready when it could take one.",
        |s| s.out.frames_skipped.load(Relaxed).to_string(),
    ),
    (
        "clients",
        "gauge",
        "Clients connected to the stream now.",
        |s| s.clients.len().to_string(),
    ),
    (
        "source_reconnects_total",
        "counter",
        "Upstream connections after the first.",
        |s| {
            s.feed
                .stats
                .connections
                .load(Relaxed)
                .saturating_sub(1)
                .to_string()
        },
    ),
    (
        "source_switches_total",
        "counter",
        "Changes of the source feeding the stream (--fallback), 0 without fallbacks.",
        |s| {
            s.chain
                .get()
                .map_or(0, |f| f.switches.load(Relaxed))
                .to_string()
        },
    ),
    (
        "source_starts_total",
        "counter",
        "Times an --on-demand source was started because someone came to watch.",
        |s| s.feed.starts.load(Relaxed).to_string(),
    ),
    (
        "source_fps",
        "gauge",
        "Input frames per second over the last second.",
        |s| format!("{:.3}", s.feed.input_rate().0),
    ),
    (
        "history_frames",
        "gauge",
        "Frames held in the stream's history (--history), for /snapshot?ago= and /clip.",
        |s| held(s).frames.to_string(),
    ),
    (
        "history_bytes",
        "gauge",
        "Bytes the history holds, frames and their bookkeeping (at most --history-bytes).",
        |s| held(s).bytes.to_string(),
    ),
    (
        "history_seconds",
        "gauge",
        "How far back the history reaches: the age of its oldest frame.",
        |s| format!("{:.3}", held(s).seconds),
    ),
];

fn invalid_frames(out: &mut String, streams: &[Arc<Stream>]) {
    let name = "invalid_frames_total";
    family(
        out,
        name,
        "counter",
        "Parts dropped from the source, by reason.",
    );
    for s in streams {
        for (reason, c) in [
            ("not_jpeg", &s.feed.stats.not_jpeg),
            ("oversized", &s.feed.stats.oversized),
            ("header_too_long", &s.feed.stats.header_too_long),
            ("truncated", &s.feed.stats.truncated),
        ] {
            let labels = [("stream", s.name.as_str()), ("reason", reason)];
            sample(out, name, &labels, c.load(Relaxed));
        }
    }
}

fn source_up(out: &mut String, streams: &[Arc<Stream>]) {
    family(
        out,
        "source_up",
        "gauge",
        "1 while the source delivers frames (state live).",
    );
    for s in streams {
        let up = s.feed.source_info().state == SourceState::Live;
        sample(out, "source_up", &[("stream", &s.name)], u8::from(up));
    }
}

/// One series per state, 1 for the current one.
fn source_state(out: &mut String, streams: &[Arc<Stream>]) {
    family(
        out,
        "source_state",
        "gauge",
        "The source's state, one series per state, 1 for the current one.",
    );
    for s in streams {
        let now = s.feed.source_info().state;
        for st in [
            SourceState::Connecting,
            SourceState::Live,
            SourceState::Lost,
            SourceState::Failing,
            SourceState::Ended,
        ] {
            let labels = [("stream", s.name.as_str()), ("state", st.as_str())];
            sample(out, "source_state", &labels, u8::from(st == now));
        }
    }
}

/// With `--fallback`, `source_up` is 1 while any member feeds the stream: an alert on it
/// would never see a dead camera. Each member's own up/down, and whether a fallback feeds.
fn failover(out: &mut String, streams: &[Arc<Stream>]) {
    family(
        out,
        "failover_member_up",
        "gauge",
        "1 while a source of a --fallback chain delivers frames; member 0 is the primary.",
    );
    for s in streams {
        let members = s.chain.get().map_or(&[][..], |f| &f.members);
        for (i, m) in members.iter().enumerate() {
            let up = m.source_info().state == SourceState::Live;
            let member = i.to_string();
            let labels = [("stream", s.name.as_str()), ("member", member.as_str())];
            sample(out, "failover_member_up", &labels, u8::from(up));
        }
    }
    family(
        out,
        "on_fallback",
        "gauge",
        "1 while a --fallback source (not the primary) feeds the stream.",
    );
    for s in streams {
        if let Some(f) = s.chain.get() {
            let on = f.current.load().is_some_and(|i| i > 0);
            sample(out, "on_fallback", &[("stream", &s.name)], u8::from(on));
        }
    }
}

/// The histogram of the relay's own delay per frame written.
fn frame_delay(out: &mut String, streams: &[Arc<Stream>]) {
    family(
        out,
        "frame_delay_seconds",
        "histogram",
        "Relay-internal delay per frame written: arrival from the source to write complete.",
    );
    for s in streams {
        let stream = ("stream", s.name.as_str());
        let mut cumulative = 0;
        for (i, bound) in DELAY_BUCKETS.iter().enumerate() {
            cumulative += s.out.delay_buckets[i].load(Relaxed);
            let le = bound.to_string();
            let labels = [stream, ("le", le.as_str())];
            sample(out, "frame_delay_seconds_bucket", &labels, cumulative);
        }
        cumulative += s.out.delay_buckets[DELAY_BUCKETS.len()].load(Relaxed);
        let labels = [stream, ("le", "+Inf")];
        sample(out, "frame_delay_seconds_bucket", &labels, cumulative);
        let sum = s.out.delay_sum_us.load(Relaxed) as f64 / 1e6;
        sample(
            out,
            "frame_delay_seconds_sum",
            &[stream],
            format_args!("{sum:.6}"),
        );
        sample(out, "frame_delay_seconds_count", &[stream], cumulative);
    }
}

type PerSize = fn(&crate::tiers::Tier) -> String;

/// The smaller sizes running now (`?width=`, `?size=auto`): one sample per stream and size.
const PER_SIZE: [(&str, &str, &str, PerSize); 6] = [
    (
        "size_viewers",
        "gauge",
        "Viewers of a smaller size now.",
        |t| t.users().to_string(),
    ),
    (
        "size_frames_total",
        "counter",
        "Frames made at a smaller size.",
        |t| t.frames.load(Relaxed).to_string(),
    ),
    (
        "size_failed_total",
        "counter",
        "Source frames that could not be made smaller (did not decode); skipped.",
        |t| t.failed.load(Relaxed).to_string(),
    ),
    (
        "size_skipped_total",
        "counter",
        "Source frames a size's transcoder passed over for a newer one.",
        |t| t.skipped.load(Relaxed).to_string(),
    ),
    (
        "size_decoded_total",
        "counter",
        "Source frames a size decoded itself (the stream's sizes share one decode per frame).",
        |t| t.decoded.load(Relaxed).to_string(),
    ),
    (
        "size_cpu_seconds_total",
        "counter",
        "CPU time of a size's transcoder.",
        |t| format!("{:.3}", t.cpu_ns.load(Relaxed) as f64 / 1e9),
    ),
];

fn sizes(out: &mut String, streams: &[Arc<Stream>]) {
    for (name, kind, help, value) in PER_SIZE {
        family(out, name, kind, help);
        for s in streams {
            for t in s.tiers.snapshot() {
                let (size, quality) = (t.fraction(), t.size.quality.to_string());
                let labels = [
                    ("stream", s.name.as_str()),
                    ("size", &size),
                    ("quality", &quality),
                ];
                sample(out, name, &labels, value(&t));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_text_format() {
        let s = Stream::new("cam-1", "testsrc");
        s.out.observe_delay(Duration::from_micros(300));
        s.out.observe_delay(Duration::from_millis(3));
        s.out.observe_delay(Duration::from_secs(9));
        s.out.frames_out.fetch_add(3, Relaxed);
        let text = render(&[s], Duration::from_secs(1), &[("max_clients", 3)]);
        for want in [
            "mjpeg_relay_frames_out_total{stream=\"cam-1\"} 3",
            "mjpeg_relay_frame_delay_seconds_bucket{stream=\"cam-1\",le=\"0.0005\"} 1",
            "mjpeg_relay_frame_delay_seconds_bucket{stream=\"cam-1\",le=\"0.005\"} 2",
            "mjpeg_relay_frame_delay_seconds_bucket{stream=\"cam-1\",le=\"2.5\"} 2",
            "mjpeg_relay_frame_delay_seconds_bucket{stream=\"cam-1\",le=\"+Inf\"} 3",
            "mjpeg_relay_frame_delay_seconds_count{stream=\"cam-1\"} 3",
            "mjpeg_relay_source_state{stream=\"cam-1\",state=\"connecting\"} 1",
            "# TYPE mjpeg_relay_frame_delay_seconds histogram",
            "mjpeg_relay_http_refused_total{reason=\"max_clients\"} 3",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        // Every sample line is NAME{labels} VALUE or NAME VALUE, VALUE a number.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let v = line.rsplit(' ').next().unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }
}
