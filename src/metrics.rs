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

/// The whole `/metrics` body.
/// What a stream's history holds now (nothing without `--history`).
fn held(s: &Stream) -> crate::history::Held {
    s.feed.history.get().map(|h| h.held()).unwrap_or_default()
}

/// `refused`: connections turned away since start, by reason
/// ([`crate::http::server::Refusals::counts`]).
pub fn render(streams: &[Arc<Stream>], uptime: Duration, refused: &[(&str, u64)]) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_uptime_seconds Seconds since the relay started."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_uptime_seconds gauge");
    let _ = writeln!(
        out,
        "mjpeg_relay_uptime_seconds {:.3}",
        uptime.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_http_refused_total Connections turned away: 503 past --max-clients, \
         --max-clients-per-ip or the pending budget; evicted: closed before their request to \
         admit a newer one."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_http_refused_total counter");
    for (reason, n) in refused {
        let _ = writeln!(
            out,
            "mjpeg_relay_http_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    // Families one after another, each with one sample per stream.
    type Sample = fn(&Stream) -> String;
    let counters: [(&str, &str, &str, Sample); 13] = [
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
    for (name, kind, help, f) in counters {
        let _ = writeln!(out, "# HELP mjpeg_relay_{name} {help}");
        let _ = writeln!(out, "# TYPE mjpeg_relay_{name} {kind}");
        for s in streams {
            let _ = writeln!(out, "mjpeg_relay_{name}{{stream=\"{}\"}} {}", s.name, f(s));
        }
    }
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_invalid_frames_total Parts dropped from the source, by reason."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_invalid_frames_total counter");
    for s in streams {
        for (reason, c) in [
            ("not_jpeg", &s.feed.stats.not_jpeg),
            ("oversized", &s.feed.stats.oversized),
            ("header_too_long", &s.feed.stats.header_too_long),
            ("truncated", &s.feed.stats.truncated),
        ] {
            let _ = writeln!(
                out,
                "mjpeg_relay_invalid_frames_total{{stream=\"{}\",reason=\"{reason}\"}} {}",
                s.name,
                c.load(Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_source_up 1 while the source delivers frames (state live)."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_source_up gauge");
    for s in streams {
        let up = s.feed.source_info().state == SourceState::Live;
        let _ = writeln!(
            out,
            "mjpeg_relay_source_up{{stream=\"{}\"}} {}",
            s.name,
            u8::from(up)
        );
    }
    // With --fallback, the stream above is up while any member feeds it: an alert on it
    // would never see a dead camera. Each member's own up/down, and which one feeds.
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_failover_member_up 1 while a source of a --fallback chain delivers \
         frames; member 0 is the primary."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_failover_member_up gauge");
    for s in streams {
        for (i, m) in s
            .chain
            .get()
            .map_or(&[][..], |f| &f.members)
            .iter()
            .enumerate()
        {
            let up = m.source_info().state == SourceState::Live;
            let _ = writeln!(
                out,
                "mjpeg_relay_failover_member_up{{stream=\"{}\",member=\"{i}\"}} {}",
                s.name,
                u8::from(up)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_on_fallback 1 while a --fallback source (not the primary) feeds the stream."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_on_fallback gauge");
    for s in streams {
        if let Some(f) = s.chain.get() {
            let on = f.current.load().is_some_and(|i| i > 0);
            let _ = writeln!(
                out,
                "mjpeg_relay_on_fallback{{stream=\"{}\"}} {}",
                s.name,
                u8::from(on)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_source_state The source's state, one series per state, 1 for the current one."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_source_state gauge");
    for s in streams {
        let now = s.feed.source_info().state;
        for st in [
            SourceState::Connecting,
            SourceState::Live,
            SourceState::Lost,
            SourceState::Failing,
            SourceState::Ended,
        ] {
            let _ = writeln!(
                out,
                "mjpeg_relay_source_state{{stream=\"{}\",state=\"{}\"}} {}",
                s.name,
                st.as_str(),
                u8::from(st == now)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP mjpeg_relay_frame_delay_seconds Relay-internal delay per frame written: arrival from the source to write complete."
    );
    let _ = writeln!(out, "# TYPE mjpeg_relay_frame_delay_seconds histogram");
    for s in streams {
        let mut cumulative = 0;
        for (i, bound) in DELAY_BUCKETS.iter().enumerate() {
            cumulative += s.out.delay_buckets[i].load(Relaxed);
            let _ = writeln!(
                out,
                "mjpeg_relay_frame_delay_seconds_bucket{{stream=\"{}\",le=\"{bound}\"}} {cumulative}",
                s.name
            );
        }
        cumulative += s.out.delay_buckets[DELAY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "mjpeg_relay_frame_delay_seconds_bucket{{stream=\"{}\",le=\"+Inf\"}} {cumulative}",
            s.name
        );
        let _ = writeln!(
            out,
            "mjpeg_relay_frame_delay_seconds_sum{{stream=\"{}\"}} {:.6}",
            s.name,
            s.out.delay_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "mjpeg_relay_frame_delay_seconds_count{{stream=\"{}\"}} {cumulative}",
            s.name
        );
    }
    render_sizes(&mut out, streams);
    out
}

/// The smaller sizes running now (`?width=`, `?size=auto`): one sample per stream and size.
fn render_sizes(out: &mut String, streams: &[Arc<Stream>]) {
    type Sample = fn(&crate::tiers::Tier) -> String;
    let families: [(&str, &str, &str, Sample); 5] = [
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
            "size_cpu_seconds_total",
            "counter",
            "CPU time of a size's transcoder.",
            |t| format!("{:.3}", t.cpu_ns.load(Relaxed) as f64 / 1e9),
        ),
    ];
    for (name, kind, help, sample) in families {
        let _ = writeln!(out, "# HELP mjpeg_relay_{name} {help}");
        let _ = writeln!(out, "# TYPE mjpeg_relay_{name} {kind}");
        for s in streams {
            for t in s.tiers.snapshot() {
                let _ = writeln!(
                    out,
                    "mjpeg_relay_{name}{{stream=\"{}\",size=\"{}\",quality=\"{}\"}} {}",
                    s.name,
                    t.fraction(),
                    t.quality,
                    sample(&t)
                );
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
