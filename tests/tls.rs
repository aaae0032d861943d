//! HTTPS without a proxy (issue 26): `--tls-cert`/`--tls-key`, with a CA and certificates the
//! test makes with Debian's `openssl`. curl checks the chain against that CA; Chromium shows
//! the viewer page live over it; a renewed certificate reaches new connections while a viewer
//! keeps streaming; a stalled handshake is cut at the head deadline; plain HTTP to the port is
//! answered at once; a TLS viewer that stops reading is dropped, bounded like a plain one.

use mjpeg_relay::testjpeg::is_whole_jpeg;
use mjpeg_testkit::browser::{Engine, Page};
use mjpeg_testkit::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = run_with_timeout(
        Command::new("openssl").args(args).current_dir(dir),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a certificate for 127.0.0.1 signed by it, with subject `CN=cn`, as
/// `cert-<cn>.pem` / `key-<cn>.pem`.
fn make_ca(dir: &Path) {
    require_tool("openssl");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mjpeg-relay test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
}

fn make_cert(dir: &Path, cn: &str) {
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let (key, csr, cert) = (
        format!("key-{cn}.pem"),
        format!("{cn}.csr"),
        format!("cert-{cn}.pem"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            &cert,
        ],
    );
}

/// A directory with a CA, a certificate for each of `names` (`cert-NAME.pem`,
/// `key-NAME.pem`), and the first of them in place as `cert.pem` and `key.pem`.
fn certificates(tag: &str, names: &[&str]) -> TempDir {
    let dir = TempDir::new(tag);
    make_ca(&dir.0);
    for n in names {
        make_cert(&dir.0, n);
    }
    let first = names[0];
    std::fs::copy(
        dir.0.join(format!("cert-{first}.pem")),
        dir.0.join("cert.pem"),
    )
    .unwrap();
    std::fs::copy(
        dir.0.join(format!("key-{first}.pem")),
        dir.0.join("key.pem"),
    )
    .unwrap();
    dir
}

fn curl(args: &[&str]) -> std::process::Output {
    require_tool("curl");
    run_with_timeout(Command::new("curl").args(args), Duration::from_secs(20))
}

/// The subject a new TLS connection to `addr` is shown, per `openssl s_client`.
fn served_subject(dir: &Path, addr: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-CAfile", "ca.pem"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.wait();
    out.lines()
        .find(|l| l.contains("subject=") || l.starts_with("subject"))
        .unwrap_or("")
        .to_string()
}

fn tls_relay(dir: &Path, extra: &[&str]) -> Relay {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--size",
        "320x240",
    ];
    args.extend_from_slice(extra);
    // Leaked to keep the borrowed strings simple in a test.
    let args: Vec<&'static str> = args
        .into_iter()
        .map(|s| &*Box::leak(s.to_string().into_boxed_str()))
        .collect();
    Relay::start(&args)
}

#[test]
fn https_serves_snapshots_and_streams_and_renews_without_dropping_viewers() {
    let dir = certificates("tls", &["first", "second"]);
    let relay = tls_relay(&dir.0, &[]);
    let base = format!("https://{}", relay.http);
    let ca = dir.0.join("ca.pem");
    let ca = ca.to_str().unwrap();

    // curl, checking the chain against the CA.
    let snap = dir.0.join("snap.jpg");
    let out = curl(&[
        "-sf",
        "--cacert",
        ca,
        "-o",
        snap.to_str().unwrap(),
        &format!("{base}/snapshot"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_whole_jpeg(&std::fs::read(&snap).unwrap()));
    let out = curl(&[
        "-s",
        "-N",
        "--max-time",
        "1.5",
        "--cacert",
        ca,
        &format!("{base}/stream"),
    ]);
    let parts = String::from_utf8_lossy(&out.stdout)
        .matches("Content-Type: image/jpeg")
        .count();
    assert!(parts >= 10, "{parts} parts over TLS in 1.5 s");
    // The control: without the CA the same URL is refused by curl.
    let out = curl(&["-s", "-o", "/dev/null", &format!("{base}/snapshot")]);
    assert!(!out.status.success(), "curl accepted an unknown CA");

    // A viewer streams (curl, 6 s) while the certificate is renewed under it.
    assert!(served_subject(&dir.0, &relay.http).contains("first"));
    let mut viewer = Command::new("curl")
        .args([
            "-s",
            "-N",
            "--max-time",
            "6",
            "--cacert",
            ca,
            &format!("{base}/stream"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stream_out = viewer.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stream_out.read_to_end(&mut all);
        all
    });
    std::thread::sleep(Duration::from_secs(2));
    std::fs::copy(dir.0.join("key-second.pem"), dir.0.join("key.pem")).unwrap();
    std::fs::copy(dir.0.join("cert-second.pem"), dir.0.join("cert.pem")).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let renewed = Instant::now();
    let mut subject = served_subject(&dir.0, &relay.http);
    while !subject.contains("second") && renewed.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(300));
        subject = served_subject(&dir.0, &relay.http);
    }
    assert!(
        subject.contains("second"),
        "new connections get the new certificate: {subject}"
    );
    let _ = viewer.wait();
    let all = reader.join().unwrap();
    // 6 s at 15 fps: about 90 parts, with no gap where the certificate changed.
    let parts = String::from_utf8_lossy(&all)
        .matches("Content-Type: image/jpeg")
        .count();
    assert!(
        parts >= 60,
        "the viewer got {parts} parts across the renewal"
    );
    assert!(relay.wait_log(
        "new connections get the new certificate",
        Duration::from_secs(1)
    ));

    // Plain HTTP to the TLS port: an answer at once, not a hang.
    let t = Instant::now();
    let out = curl(&[
        "-s",
        "--max-time",
        "5",
        &format!("http://{}/stream", relay.http),
    ]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("HTTPS only") && body.contains("https://"),
        "{body}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

/// Issue 32: a renewal caught half-written and finished within the same timestamp tick was
/// never retried (the files' times were recorded at the failed load, and did not change
/// again), so the old certificate stayed until the next renewal. Here the finished files have
/// exactly the stamps (time and length) of the broken ones the relay already refused.
#[test]
fn a_renewal_caught_half_written_is_taken_once_it_is_whole() {
    let dir = certificates("tls-half", &["first", "second"]);
    let relay = tls_relay(&dir.0, &[]);
    assert!(served_subject(&dir.0, &relay.http).contains("first"));
    let tick = std::time::SystemTime::now() - Duration::from_secs(60);
    let write_at = |name: &str, bytes: &[u8]| {
        let path = dir.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(tick).unwrap();
    };
    let cert = std::fs::read(dir.0.join("cert-second.pem")).unwrap();
    // Half-written: the length it will have, the second half not there yet.
    let mut half = cert.clone();
    let mid = half.len() / 2;
    half[mid..].iter_mut().for_each(|b| *b = b' ');
    write_at(
        "key.pem",
        &std::fs::read(dir.0.join("key-second.pem")).unwrap(),
    );
    write_at("cert.pem", &half);
    std::thread::sleep(Duration::from_millis(1200));
    // Seen, refused, the first certificate kept (the control: the broken pair was looked at).
    assert!(served_subject(&dir.0, &relay.http).contains("first"));
    assert!(
        relay.wait_log("does not load", Duration::from_secs(3)),
        "{}",
        relay.log_text()
    );
    // Finished, in the same tick.
    write_at("cert.pem", &cert);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut subject = String::new();
    while !subject.contains("second") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        subject = served_subject(&dir.0, &relay.http);
    }
    assert!(
        subject.contains("second"),
        "still {subject}: {}",
        relay.log_text()
    );
    assert_eq!(relay.log_text().matches("does not load").count(), 1);
}

/// Issue 31: a CPU without AES instructions (a Raspberry Pi 4) runs AES-GCM in software,
/// several times slower than ChaCha20-Poly1305; there the relay picks ChaCha20 even from a
/// client that prefers AES (as browsers on AES-capable laptops do). The control: with AES
/// (this machine's own CPU, and the override set to 1) the client's order stands.
#[test]
fn without_aes_instructions_chacha20_is_chosen_over_the_clients_order() {
    let dir = certificates("tls-suites", &["only"]);
    let cert = dir.0.join("cert.pem").display().to_string();
    let key = dir.0.join("key.pem").display().to_string();
    let args = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    // The suite a client that prefers AES gets, in TLS 1.3 and 1.2.
    let negotiated = |aes: &str| {
        let relay = Relay::start_with_env(&args, &[("MJPEG_RELAY_CPU_AES", aes)]);
        let chosen = |extra: &[&str]| {
            let out = run_with_timeout(
                Command::new("openssl")
                    .args([
                        "s_client",
                        "-connect",
                        &relay.http,
                        "-CAfile",
                        "ca.pem",
                        "-brief",
                    ])
                    .args(extra)
                    .current_dir(&dir.0)
                    .stdin(Stdio::null()),
                Duration::from_secs(10),
            );
            let text = String::from_utf8_lossy(&out.stderr).to_string()
                + &String::from_utf8_lossy(&out.stdout);
            text.lines()
                .find_map(|l| l.strip_prefix("Ciphersuite: "))
                .unwrap_or_else(|| panic!("no suite in {text}"))
                .to_string()
        };
        let v13 = chosen(&[
            "-tls1_3",
            "-ciphersuites",
            "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
        ]);
        let v12 = chosen(&[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305",
        ]);
        (v13, v12, relay.log_text())
    };
    let (v13, v12, log) = negotiated("0");
    assert_eq!(v13, "TLS_CHACHA20_POLY1305_SHA256", "{log}");
    assert_eq!(v12, "ECDHE-ECDSA-CHACHA20-POLY1305", "{log}");
    assert!(log.contains("no AES instructions"), "{log}");
    let (v13, v12, log) = negotiated("1");
    assert_eq!(v13, "TLS_AES_128_GCM_SHA256", "{log}");
    assert_eq!(v12, "ECDHE-ECDSA-AES128-GCM-SHA256", "{log}");
}

#[test]
fn a_stalled_handshake_is_cut_at_the_head_deadline_and_a_stalled_viewer_at_the_send_timeout() {
    let dir = certificates("tls-stall", &["only"]);
    let relay = tls_relay(&dir.0, &["--header-timeout", "1", "--send-timeout", "2"]);
    // Half a ClientHello, then nothing: closed at the 1 s head deadline.
    let mut s = TcpStream::connect(&relay.http).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    let mut b = [0u8; 64];
    let r = s.read(&mut b);
    let took = t.elapsed();
    eprintln!(
        "stalled TLS handshake closed after {} ms ({r:?})",
        took.as_millis()
    );
    assert!(
        matches!(r, Ok(0)) || r.is_err(),
        "the stalled handshake got an answer: {r:?}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "{took:?}"
    );

    // A TLS viewer that stops reading (openssl s_client whose output nobody reads) is
    // dropped after --send-timeout: the bounds act on the TCP socket under the session. The
    // control: the same client reads fine before it stops.
    let ca = dir.0.join("ca.pem");
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &relay.http, "-CAfile"])
        .arg(&ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    send_get(&mut stdin, "/stream", "stalled");
    let mut out = client.stdout.take().unwrap();
    let mut first = vec![0u8; 4096];
    let n = out.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));
    // Now nobody reads s_client's output: its pipe fills, it stops reading the socket.
    assert!(relay.wait_log("connected to stream", Duration::from_secs(2)));
    let dropped = relay.wait_log("left stream 'default'", Duration::from_secs(15));
    let _ = client.kill();
    let _ = client.wait();
    assert!(
        dropped,
        "the stalled TLS viewer was never dropped: {}",
        relay.log_text()
    );
    let log = relay.log_text();
    let line = log.lines().find(|l| l.contains("left stream")).unwrap();
    assert!(line.contains("--send-timeout"), "{line}");
}

#[test]
fn chromium_shows_the_viewer_page_live_over_https() {
    let dir = certificates("tls-chromium", &["page"]);
    let relay = tls_relay(&dir.0, &["--fps", "10"]);
    // Chromium runs with the suite's flags, which accept the test's certificate (its CA is
    // not in the browser's store; curl above checks the chain strictly).
    let mut page = Page::start(Engine::Chromium);
    page.go(&format!("https://{}/?paintlog=1", relay.http));
    let count = |page: &mut Page| {
        page.js("return (window.mjpegRelayPaints || []).length;")
            .as_u64()
            .unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(2));
    let a = count(&mut page);
    std::thread::sleep(Duration::from_secs(3));
    let b = count(&mut page);
    assert!(
        b >= a + 15,
        "the page painted {} pictures in 3 s over HTTPS",
        b - a
    );
}
