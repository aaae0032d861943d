//! Who may see which camera, and what never leaks, against the real binary: `--config` with
//! users per stream, every way in (user × stream × endpoint, HEAD and OPTIONS too), signed
//! links, failed logins slowed per address, SIGHUP reloading the file under 100 viewers
//! (issue 35); the `Host` guard against DNS rebinding, tokens carried through links and
//! redirects, dotfiles and `nosniff`, and secrets kept out of logs, `/status` and `ps`.

use mjpeg_testkit::{connect_from, read_head, relay_bin, run_with_timeout, Relay, StreamClient, *};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// Hashes made by the tools people use: `htpasswd -nbB -C 5 alice secret` and
// `echo -n secret | argon2 saltsalt -id -e`.
const BCRYPT_SECRET: &str = "$2y$05$NViGYnmeD75YWfENq1y5f.ggFZqSmyD1umkQRuWcRMM4cysQxnIie";
const ARGON2_SECRET: &str =
    "$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$OLeWCvLwvsLRPgRDUFsaPr4TPYfqZKBxQuyYI2VLP2w";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mjpeg-access-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Authorization: Basic {}\r\n",
        mjpeg_relay::auth::base64(format!("{user}:{pass}").as_bytes())
    )
}

/// `(status, head and body so far)` of one request; a stream's body is not waited for.
fn ask(addr: &str, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let (code, headers, mut body, _) = read_head(&mut sock);
    let streaming = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("multipart/"));
    if !streaming && method != "HEAD" {
        let _ = sock.read_to_end(&mut body);
    }
    let head: String = headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect();
    (code, format!("{head}\n{}", String::from_utf8_lossy(&body)))
}

/// [`ask`] from a loopback address of the test's choice (`127.0.0.2`, ...).
fn ask_from(ip: &str, addr: &str, path: &str, headers: &str) -> (u16, String) {
    let mut sock = connect_from(ip, 0, addr, None);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        sock,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let (code, _, mut body, _) = read_head(&mut sock);
    let _ = sock.read_to_end(&mut body);
    (code, String::from_utf8_lossy(&body).into_owned())
}

const STREAMS: [&str; 3] = ["door", "garden-east", "yard"];

fn matrix_config(d: &Path) -> PathBuf {
    let cfg = d.join("relay.toml");
    let mut text = String::from("size = \"160x120\"\nfps = 10\n");
    for s in STREAMS {
        text.push_str(&format!(
            "\n[[stream]]\nname = \"{s}\"\nsource = \"testsrc\"\n"
        ));
    }
    text.push_str(&format!(
        r#"
[[user]]
name = "alice"
password = "{BCRYPT_SECRET}"
streams = ["door"]

[[user]]
name = "bob"
password = "{ARGON2_SECRET}"
streams = ["garden-*"]

[[user]]
name = "root"
password = "plain:rootpw"
admin = true
"#
    ));
    write(&cfg, &text);
    cfg
}

/// Every route that leads to one stream, as (method, path).
fn stream_routes(s: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GET", format!("/{s}/")),
        ("GET", format!("/{s}/stream")),
        ("HEAD", format!("/{s}/stream")),
        ("GET", format!("/{s}/snapshot")),
        ("HEAD", format!("/{s}/snapshot")),
        ("GET", format!("/{s}/clip?last=1")),
        ("GET", format!("/{s}/status")),
        ("GET", format!("/api/frame.jpeg?src={s}")),
        ("GET", format!("/api/stream.mjpeg?src={s}")),
        ("GET", format!("/mux?streams={s}")),
    ]
}

#[test]
fn every_route_to_every_stream_answers_each_user_as_configured() {
    let d = dir("matrix");
    let relay = Relay::start(&["--config", matrix_config(&d).to_str().unwrap()]);
    // Frames in every stream's history before /clip?last=1 is asked.
    std::thread::sleep(Duration::from_millis(1500));
    // (who, login, the streams they may see)
    type Row<'a> = (&'a str, Option<(&'a str, &'a str)>, &'a [&'a str]);
    let users: [Row; 5] = [
        ("anonymous", None, &[]),
        ("alice", Some(("alice", "secret")), &["door"]),
        ("bob", Some(("bob", "secret")), &["garden-east"]),
        ("root", Some(("root", "rootpw")), &STREAMS),
        ("alice, wrong password", Some(("alice", "secreT")), &[]),
    ];
    let mut wrong = Vec::new();
    // Lists that name a stream they should not, or miss one they should.
    let mut misnamed = Vec::new();
    let mut cells = 0;
    for (who, login, sees) in users {
        let headers = login.map_or(String::new(), |(u, p)| basic(u, p));
        let logged_in = login.is_some() && !who.contains("wrong");
        // One cell: the answer's body if its status is `want`, else noted as wrong. A wrong
        // password is a failed login: after five, the address waits (429).
        let mut cell = |method: &str, path: &str, want: u16| -> Option<String> {
            let (code, body) = ask(&relay.http, method, path, &headers);
            cells += 1;
            let want = if who.contains("wrong") && code == 429 {
                429
            } else {
                want
            };
            if code == want {
                return Some(body);
            }
            wrong.push(format!(
                "{who} {method} {path}: {code}, want {want}: {body:.200}"
            ));
            None
        };
        for s in STREAMS {
            let mut routes = stream_routes(s);
            routes.push(("OPTIONS", format!("/{s}/stream")));
            for (method, path) in routes {
                let want = match (logged_in, sees.contains(&s), method) {
                    (false, _, _) => 401,
                    (true, _, "OPTIONS") => 405,
                    (true, true, _) => 200,
                    (true, false, _) => 403,
                };
                cell(method, &path, want);
            }
        }
        // The routes of the first stream (door) without its name, and the lists.
        for path in [
            "/stream",
            "/snapshot",
            "/?action=snapshot",
            "/state",
            "/stream.mjpeg",
        ] {
            let want = match (logged_in, sees.contains(&"door")) {
                (false, _) => 401,
                (true, true) => 200,
                (true, false) => 403,
            };
            cell("GET", path, want);
        }
        for path in ["/", "/status", "/metrics", "/viewer", "/mux?streams=*"] {
            let want = if !logged_in {
                401
            } else if path.starts_with("/mux") && sees.is_empty() {
                400
            } else {
                200
            };
            let Some(body) = cell("GET", path, want) else {
                continue;
            };
            if !logged_in || path == "/viewer" || path.starts_with("/mux") {
                continue;
            }
            // Lists name exactly the streams this user may see.
            for s in STREAMS {
                let needle = match path {
                    "/" => format!("data-name=\"{s}\""),
                    "/status" => format!("\"name\":\"{s}\""),
                    _ => format!("stream=\"{s}\""),
                };
                if body.contains(&needle) != sees.contains(&s) {
                    misnamed.push(format!(
                        "{who} GET {path}: lists {s}: {}, should: {}",
                        body.contains(&needle),
                        sees.contains(&s)
                    ));
                }
            }
        }
        // A camera not allowed in a /mux list is refused, not dropped.
        if logged_in && sees.len() < STREAMS.len() {
            cell("GET", "/mux?streams=door,yard", 403);
        }
    }
    wrong.extend(misnamed);
    assert!(cells > 150, "{cells}");
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // No secret in the log or in /status.
    let (_, status) = ask(&relay.http, "GET", "/status", &basic("root", "rootpw"));
    for secret in ["rootpw", "secret", BCRYPT_SECRET] {
        assert!(!relay.log_text().contains(secret), "{secret} in the log");
        assert!(!status.contains(secret), "{secret} in /status");
    }
}

#[test]
fn the_old_flags_still_open_every_stream_to_their_one_user() {
    // The control for the matrix's 403s: the same streams with --auth and no users.
    let d = dir("legacy");
    let cfg = d.join("relay.toml");
    write(
        &cfg,
        "size = \"160x120\"\n[[stream]]\nname = \"door\"\nsource = \"testsrc\"\n\
         [[stream]]\nname = \"yard\"\nsource = \"testsrc\"\n",
    );
    let relay = Relay::start(&["--config", cfg.to_str().unwrap(), "--auth", "op:pw"]);
    for s in ["door", "yard"] {
        for (method, path) in stream_routes(s) {
            if path.contains("clip") {
                continue;
            }
            let (code, body) = ask(&relay.http, method, &path, &basic("op", "pw"));
            assert_eq!(code, 200, "{method} {path}: {body:.200}");
            assert_eq!(ask(&relay.http, method, &path, "").0, 401, "{path}");
        }
    }
}

fn sign(cfg: &Path, args: &[&str]) -> String {
    let out = run_with_timeout(
        Command::new(relay_bin())
            .args(["sign", "--config", cfg.to_str().unwrap()])
            .args(args),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The path and query of a URL printed by `sign`.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

#[test]
fn a_signed_link_opens_its_stream_alone_until_it_expires() {
    let d = dir("links");
    let cfg = matrix_config(&d);
    write(
        &d.join("signing.key"),
        "0123456789abcdef0123456789abcdef01234567\n",
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[signing]\nkey_file = \"signing.key\"\n");
    write(&cfg, &text);
    let relay = Relay::start(&["--config", cfg.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));

    let url = sign(
        &cfg,
        &[
            "--stream", "door", "--ttl", "1h", "--path", "snapshot", "--width", "80",
        ],
    );
    assert!(
        url.starts_with("http://127.0.0.1:8080/door/snapshot?width=80&expires="),
        "{url}"
    );
    let link = path_of(&url);
    let (code, body) = ask(&relay.http, "GET", &link, "");
    assert_eq!(code, 200, "{body:.300}");
    assert!(body.contains("image/jpeg"));
    // The control: the same path without the signature needs a login.
    assert_eq!(
        ask(&relay.http, "GET", "/door/snapshot?width=80", "").0,
        401
    );
    // Tampered: another stream, another endpoint, another parameter, a flipped character of
    // the signature, a truncated one, a parameter added after it.
    let q = link.split_once('?').unwrap().1;
    let sig_at = link.rfind("&sig=").unwrap() + 5;
    let flipped = {
        let mut b = link.clone().into_bytes();
        b[sig_at + 3] = if b[sig_at + 3] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    // Each from an address of its own: bad links count as failed logins, and the sixth from
    // one address would get 429 (the guessing test's subject).
    for (i, bad) in [
        format!("/yard/snapshot?{q}"),
        format!("/door/stream?{q}"),
        link.replace("width=80", "width=81"),
        flipped,
        link[..link.len() - 4].to_string(),
        format!("{link}&width=640"),
        // A link lists nothing.
        format!("/status?{q}"),
    ]
    .iter()
    .enumerate()
    {
        let (code, body) = ask_from(&format!("127.0.0.{}", 10 + i), &relay.http, bad, "");
        assert_eq!(code, 403, "{bad}: {body:.200}");
    }

    // A stream link with max_viewers=1: one viewer, the second gets 429.
    let url = sign(
        &cfg,
        &["--stream", "yard", "--ttl", "10m", "--max-viewers", "1"],
    );
    let link = path_of(&url);
    let mut first = StreamClient::open(&relay.http, &link, "first", None);
    assert!(first.next_frame(Duration::from_secs(5)).is_some());
    let (code, _) = ask(&relay.http, "GET", &link, "");
    assert_eq!(code, 429);
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    let (code, _) = ask(&relay.http, "HEAD", &link, "");
    assert_eq!(code, 200, "the seat is given back when the viewer leaves");

    // Expiry, by the wall clock here (the boundary itself is unit-tested with the clock
    // injected: signing::tests::a_link_is_valid_until_the_second_it_expires).
    let url = sign(
        &cfg,
        &["--stream", "door", "--ttl", "2s", "--path", "snapshot"],
    );
    let link = path_of(&url);
    assert_eq!(ask(&relay.http, "GET", &link, "").0, 200);
    std::thread::sleep(Duration::from_millis(3100));
    let (code, body) = ask(&relay.http, "GET", &link, "");
    assert_eq!(code, 403, "{body:.200}");
    assert!(body.contains("expired"), "{body:.200}");
}

#[test]
fn failed_logins_are_slowed_per_address_and_the_user_still_gets_in_from_elsewhere() {
    let d = dir("guessing");
    let relay = Relay::start(&["--config", matrix_config(&d).to_str().unwrap()]);
    let from = |ip: &str, headers: &str| {
        let mut sock = connect_from(ip, 0, &relay.http, None);
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            sock,
            "GET /door/snapshot HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
        )
        .unwrap();
        let (code, headers, _, _) = read_head(&mut sock);
        (code, headers)
    };
    let started = Instant::now();
    let (mut through, mut slowed) = (0, 0);
    for i in 0..40 {
        let (code, headers) = from("127.0.0.1", &basic("alice", &format!("guess{i}")));
        match code {
            401 => through += 1,
            429 => {
                slowed += 1;
                let wait: u64 = mjpeg_testkit::header(&headers, "retry-after")
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=60).contains(&wait), "{wait}");
            }
            other => panic!("guess {i}: {other}"),
        }
    }
    let took = started.elapsed();
    eprintln!("40 guesses in {took:?}: {through} answered 401 (checked), {slowed} answered 429");
    // The control is the count without a limit: all 40 would have been checked.
    assert_eq!(through, mjpeg_relay::login_limit::MAX_FAILURES);
    assert_eq!(slowed, 40 - through);
    // The right password from the guessing address waits too ...
    assert_eq!(from("127.0.0.1", &basic("alice", "secret")).0, 429);
    // ... but not from another address: no lock-out of the user.
    assert_eq!(from("127.0.0.2", &basic("alice", "secret")).0, 200);
    // A request without credentials is not a guess: it gets its 401 challenge.
    assert_eq!(from("127.0.0.1", "").0, 401);
    assert!(
        relay.wait_log("refused with 429", Duration::from_secs(2)),
        "{}",
        relay.log_text()
    );
}

/// A directory of `n` numbered 320x240-ish frames for a `file:` source.
fn numbered_frames(d: &Path, n: u64) -> PathBuf {
    let frames = d.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..n {
        std::fs::write(frames.join(format!("{i:04}.jpg")), mjpeg_testkit::vga(i)).unwrap();
    }
    frames
}

#[test]
fn sighup_reloads_streams_and_users_and_keeps_every_viewer_of_an_unchanged_stream() {
    const VIEWERS: usize = 100;
    const LOOP: u64 = 50;
    let d = dir("reload");
    let frames = numbered_frames(&d, LOOP);
    let cfg = d.join("relay.toml");
    let base = format!(
        "fps = 10\nsize = \"160x120\"\n\n[[stream]]\nname = \"cam\"\nsource = \"file:{}\"\n\n\
         [[stream]]\nname = \"other\"\nsource = \"testsrc\"\n",
        frames.display()
    );
    write(&cfg, &base);
    let relay = Relay::start(&["--config", cfg.to_str().unwrap(), "--max-clients", "400"]);
    // 100 viewers of `cam`, each on a thread that records the numbers it is shown.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let viewers: Vec<_> = (0..VIEWERS)
        .map(|i| {
            let mut c = StreamClient::open(&relay.http, "/cam/stream", &format!("v{i}"), None);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match c.next_frame(Duration::from_secs(5)) {
                        Some(f) => seen.push(mjpeg_relay::testjpeg::seq_of(&f)),
                        None => break,
                    }
                }
                seen
            })
        })
        .collect();
    // A viewer of the stream that will change: its response ends with the old stream.
    let mut other_viewer = StreamClient::open(&relay.http, "/other/stream", "o", None);
    assert!(other_viewer.next_frame(Duration::from_secs(5)).is_some());
    std::thread::sleep(Duration::from_secs(2));
    // Reload: `other` changes its source, `new` appears, a user arrives.
    write(
        &cfg,
        &format!(
            "{}\n[[stream]]\nname = \"new\"\nsource = \"testsrc\"\n\n[[user]]\nname = \"root\"\n\
             password = \"plain:rootpw\"\nadmin = true\n",
            base.replace(
                "name = \"other\"\nsource = \"testsrc\"",
                "name = \"other\"\nsource = \"testsrc\"\non_demand = 5"
            )
        ),
    );
    let log = reload(&relay);
    assert!(log.contains("1 stream(s) unchanged"), "{log}");
    assert!(log.contains(r#"started ["other", "new"]"#), "{log}");
    let ended = (0..100).any(|_| other_viewer.next_frame(Duration::from_secs(5)).is_none());
    assert!(ended, "the changed stream's viewer goes on");
    // Users take effect for new requests.
    let new_snapshot = |headers: &str| ask(&relay.http, "GET", "/new/snapshot", headers).0;
    let root = basic("root", "rootpw");
    assert_eq!(new_snapshot(""), 401);
    assert_eq!(new_snapshot(&root), 200);
    std::thread::sleep(Duration::from_secs(2));
    // A file with an error: refused with its line and column, the running one stays.
    write(
        &cfg,
        &format!(
            "{}\nmax_clients = = 3\n",
            std::fs::read_to_string(&cfg).unwrap()
        ),
    );
    relay.signal(libc::SIGHUP);
    assert!(
        relay.wait_log("not reloaded", Duration::from_secs(10)),
        "{}",
        relay.log_text()
    );
    assert!(
        relay.log_text().contains("relay.toml:"),
        "{}",
        relay.log_text()
    );
    assert_eq!(new_snapshot(&root), 200);
    // A stream removed from the file ends.
    let without_new = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\nmax_clients = = 3\n", "")
        .replace("[[stream]]\nname = \"new\"\nsource = \"testsrc\"\n", "");
    write(&cfg, &without_new);
    relay.signal(libc::SIGHUP);
    assert!(
        relay.wait_log(r#"ended ["new"]"#, Duration::from_secs(10)),
        "{}",
        relay.log_text()
    );
    assert_eq!(new_snapshot(&root), 404);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut shown = 0;
    for (i, v) in viewers.into_iter().enumerate() {
        let seen = v.join().unwrap();
        // At least 6 s at 10 fps: every frame, in order (wrapping at the end of the loop).
        assert!(seen.len() >= 40, "viewer {i} saw {} frames", seen.len());
        let seqs: Vec<u64> = seen.iter().map(|s| s.expect("a numbered frame")).collect();
        for w in seqs.windows(2) {
            assert_eq!(w[1], (w[0] + 1) % LOOP, "viewer {i}: {seqs:?}");
        }
        shown += seqs.len();
    }
    eprintln!("{VIEWERS} viewers of the unchanged stream: {shown} frames across three reloads, none skipped");
    relay.assert_alive();
}

#[test]
fn the_example_config_the_package_ships_runs_as_it_is() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/debian/mjpeg-relay.toml"
    );
    // The test's --http (given first by Relay::start) is a flag: it wins over the file's.
    let relay = Relay::start(&["--config", example]);
    for s in ["door", "garden-east"] {
        let (code, body) = ask(&relay.http, "GET", &format!("/{s}/snapshot"), "");
        assert_eq!(code, 200, "{s}: {body:.200}");
    }
    // Its commented user parses too, and its password is the one it names.
    let text = std::fs::read_to_string(example).unwrap();
    let keys = [
        "[[user]]",
        "name = ",
        "password = ",
        "streams = ",
        "max_viewers = ",
        "admin = ",
    ];
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| keys.iter().any(|k| r.starts_with(k)))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = mjpeg_relay::config_file::parse(&uncommented, Path::new("example")).unwrap();
    assert_eq!(c.users.len(), 2, "{uncommented}");
    assert!(c.users[0].password.verify("secret"));
    assert!(c.users[1].admin);
}

fn raw(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_line(resp: &str) -> &str {
    resp.lines().next().unwrap_or("")
}

#[test]
fn without_auth_only_ip_and_localhost_hosts_are_answered() {
    let relay = Relay::start(&[
        "--fps",
        "5",
        "--size",
        "160x120",
        "--allow-host",
        "cam.local",
    ]);
    let port = relay.http.rsplit(':').next().unwrap().to_string();
    let ask = |host: &str| {
        status_line(&raw(
            &relay.http,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        ))
        .to_string()
    };
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".into(),
        "localhost".into(),
        format!("LOCALHOST:{port}"),
        "cam.localhost".into(),
        "[::1]:8080".into(),
        "10.1.2.3".into(),
        "cam.local:8080".into(),
        "CAM.LOCAL".into(),
    ] {
        assert!(ask(&host).contains(" 200 "), "Host: {host}: {}", ask(&host));
    }
    // A name the user did not allow: what a DNS-rebinding page would send.
    let answer = raw(
        &relay.http,
        "GET /snapshot HTTP/1.1\r\nHost: attacker.example:8080\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(answer.contains("--allow-host attacker.example"), "{answer}");
    for host in ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io"] {
        assert!(ask(host).contains(" 403 "), "Host: {host}");
    }
    // Many of them: one log line.
    assert_eq!(relay.log_text().matches("refused Host").count(), 1);
    // With authentication the check is not needed (the page cannot log in): any Host.
    let locked = Relay::start(&["--fps", "5", "--size", "160x120", "--token", "s3cret-token"]);
    let answer = raw(
        &locked.http,
        "GET /status?token=s3cret-token HTTP/1.1\r\nHost: cams.example.org\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn tokens_are_percent_decoded_and_carried_through_every_link() {
    // A base64-style token: '/', '+' and '=' must be encoded in a URL, and were never decoded.
    let token = "ab/cd+ef==gh";
    let relay = Relay::start(&[
        "--stream",
        "door=testsrc",
        "--stream",
        "yard=testsrc",
        "--fps",
        "5",
        "--size",
        "160x120",
        "--token",
        token,
    ]);
    let enc = "ab%2Fcd%2Bef%3D%3Dgh";
    assert_eq!(get(&relay.http, &format!("/status?token={enc}")).0, 200);
    assert_eq!(get(&relay.http, "/status?token=wrong-token").0, 401);
    // The index page opened with the token hands it on to every stream, page and link.
    let (code, _, body) = get(&relay.http, &format!("/?token={enc}"));
    assert_eq!(code, 200);
    let page = String::from_utf8(body).unwrap();
    for url in [
        format!("/door/snapshot?token={enc}"),
        format!("/yard/snapshot?token={enc}"),
        format!("/door/?token={enc}"),
        format!("/status?token={enc}"),
        // The /mux connection the page opens.
        format!("const token = \"?token={enc}\""),
    ] {
        assert!(page.contains(&url), "{url} not in the index page:\n{page}");
    }
    let mut c = StreamClient::open(
        &relay.http,
        &format!("/mux?token={enc}&streams=door"),
        "curl/8.0",
        None,
    );
    assert!(c.next_frame(Duration::from_secs(5)).is_some());
    // Failed logins: one log line for many, never the token itself. The wrong token above
    // was the address's first failure: four more are checked (401), then it waits (429).
    let codes: Vec<u16> = (0..20)
        .map(|_| get(&relay.http, "/status?token=guess-guess").0)
        .collect();
    assert_eq!(codes[..4], [401; 4], "{codes:?}");
    assert!(codes[4..].iter().all(|&c| c == 429), "{codes:?}");
    let log = relay.log_text();
    assert_eq!(log.matches("wrong credentials").count(), 1, "{log}");
    assert!(
        !log.contains("guess-guess") && !log.contains(token),
        "{log}"
    );
}

#[test]
fn static_files_never_serve_dotfiles_and_every_response_says_nosniff() {
    let dir = TempDir::new("static-dot");
    std::fs::write(dir.0.join("index.html"), "<p>hi</p>").unwrap();
    std::fs::write(dir.0.join(".htpasswd"), "admin:secret").unwrap();
    std::fs::create_dir(dir.0.join(".git")).unwrap();
    std::fs::write(dir.0.join(".git").join("config"), "[core]").unwrap();
    std::os::unix::fs::symlink(dir.0.join(".htpasswd"), dir.0.join("innocent.txt")).unwrap();
    let root = dir.0.display().to_string();
    let relay = Relay::start(&["--static", &root, "--fps", "5", "--size", "160x120"]);
    for path in [
        "/.htpasswd",
        "/.git/config",
        "/%2ehtpasswd",
        "/.git/",
        "/innocent.txt",
    ] {
        let (code, _, body) = get(&relay.http, path);
        assert_eq!(code, 404, "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("secret"), "{path}");
    }
    for path in ["/", "/status", "/snapshot", "/nope", "/metrics"] {
        let (_, headers, _) = get(&relay.http, path);
        assert_eq!(
            header(&headers, "x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    let mut s = TcpStream::connect(&relay.http).unwrap();
    send_get(&mut s, "/stream", "curl/8.0");
    let (code, headers, _, _) = read_head(&mut s);
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
}

#[test]
fn secrets_in_exec_commands_and_camera_urls_stay_out_of_logs_and_status() {
    let relay = Relay::start(&[
        "--stream",
        "a=exec:echo 'opening rtsp://admin:hunter2@10.0.0.9/live?pwd=hunter3' >&2; exit 3",
        "--stream",
        "b=http://127.0.0.1:9/snap.cgi?user=admin&pwd=hunter4&res=1",
        "--status-details",
    ]);
    assert!(relay.wait_log("cannot get frames from command", Duration::from_secs(5)));
    assert!(relay.wait_log("cannot get frames from http", Duration::from_secs(5)));
    let status = relay.status().to_string();
    let log = relay.log_text();
    for secret in ["hunter2", "hunter3", "hunter4"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!status.contains(secret), "{secret} in /status: {status}");
    }
    // Redacted, not removed: the operator still sees which camera it is.
    assert!(
        log.contains("rtsp://admin:***@10.0.0.9/live?pwd=***"),
        "{log}"
    );
    assert!(
        status.contains("snap.cgi?user=admin&pwd=***&res=1"),
        "{status}"
    );
}

/// Item 8: secrets in command lines stay out of the log and `/status`; without a login
/// `/status` shows no command line, URL path or viewer address (`--status-details` or a login
/// shows them); `--token-file` keeps the token out of `ps`; a bad `--stream` value is echoed
/// redacted.
#[test]
fn secrets_stay_out_of_logs_status_and_ps() {
    let cmd = "exec:curl -su admin:hunter2 -H 'Authorization: Basic aHVudGVyMw==' \
               --http-password=hunter4 http://127.0.0.1:9/v.mjpg; exit 3";
    let relay = Relay::start(&["--source", cmd]);
    assert!(relay.wait_log("cannot get frames from command", Duration::from_secs(5)));
    let mut viewer = StreamClient::open(&relay.http, "/stream", "SecretAgent/1.0", None);
    let _ = viewer.next_frame(Duration::from_secs(3));
    let status = relay.status().to_string();
    let log = relay.log_text();
    for secret in ["hunter2", "aHVudGVyMw", "hunter4"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!status.contains(secret), "{secret} in /status: {status}");
    }
    assert!(log.contains("-su admin:***"), "{log}");
    // Without a login: no command line, no viewer address or User-Agent.
    assert!(
        !status.contains("-su admin") && !status.contains("SecretAgent"),
        "{status}"
    );
    assert!(status.contains("exec:…"), "{status}");

    // The control: with --status-details the operator sees them (redacted).
    let open = Relay::start(&["--source", cmd, "--status-details"]);
    let mut viewer = StreamClient::open(&open.http, "/stream", "SecretAgent/1.0", None);
    let _ = viewer.next_frame(Duration::from_secs(3));
    let status = open.status().to_string();
    assert!(
        status.contains("curl -su admin:***") && status.contains("SecretAgent"),
        "{status}"
    );
    assert!(!status.contains("hunter2"), "{status}");

    // --token-file: the token is not on the command line, and a caller with it sees details.
    let dir = TempDir::new("token-file");
    let file = dir.0.join("token");
    std::fs::write(&file, "# the viewers' token\ns3cr3t-t0ken-42\n").unwrap();
    let guarded = Relay::start(&["--token-file", file.to_str().unwrap()]);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", guarded.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("s3cr3t"));
    let (code, _, _) = get(&guarded.http, "/status");
    assert_eq!(code, 401);
    let (code, _, body) = get(&guarded.http, "/status?token=s3cr3t-t0ken-42");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("\"spec\":\"testsrc\""));

    // A bad --stream value is echoed without its password.
    let out = run_with_timeout(
        Command::new(relay_bin())
            .args(["--stream", "bad name=http://admin:hunter5@cam/v"])
            .stdin(Stdio::null()),
        Duration::from_secs(10),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        !err.contains("hunter5") && err.contains("admin:***"),
        "{err}"
    );
}

/// Item 9: the small ones. The `/NAME` → `/NAME/` redirect keeps a `?token=` login; an
/// `--allow-host` name given with a trailing dot matches.
#[test]
fn redirects_keep_the_query_and_allow_host_takes_a_trailing_dot() {
    let relay = Relay::start(&["--stream", "door=testsrc", "--token", "t0ken-12345"]);
    let (code, headers, _) = get(&relay.http, "/door?token=t0ken-12345");
    assert_eq!(code, 301);
    let to = header(&headers, "location").unwrap().to_string();
    assert_eq!(to, "/door/?token=t0ken-12345");
    let (code, _, _) = get(&relay.http, &to);
    assert_eq!(code, 200);

    let relay = Relay::start(&["--allow-host", "cams.example.test."]);
    let (code, _, _) = request(
        &relay.http,
        "GET /status HTTP/1.1\r\nHost: cams.example.test\r\n\r\n",
    );
    assert_eq!(code, 200);
    // The control: another name is still refused.
    let (code, _, _) = request(
        &relay.http,
        "GET /status HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    );
    assert_eq!(code, 403);
}

/// Sends SIGHUP and waits for the reload's summary line; the log so far.
fn reload(relay: &Relay) -> String {
    relay.signal(libc::SIGHUP);
    assert!(
        relay.wait_log("reloaded", Duration::from_secs(10)),
        "{}",
        relay.log_text()
    );
    relay.log_text()
}

/// Frames `path` delivers to a new viewer in `secs` seconds.
fn frames_in(relay: &Relay, path: &str, secs: u64) -> usize {
    let mut c = StreamClient::open(&relay.http, path, "curl/8.0", None);
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        if c.next_frame(Duration::from_secs(2)).is_some() {
            n += 1;
        }
    }
    n
}

/// A reload that changes a setting every source uses (`fps`) starts each stream again with it,
/// and one that changes a listener setting (`send_timeout`) says that it waits for a restart.
/// Before, the running stream kept its old rate and nothing was said. The control: the rate
/// before the reload is the file's first one.
#[test]
fn a_reload_of_a_setting_every_source_uses_starts_the_streams_again_with_it() {
    let d = dir("reload-fps");
    let cfg = d.join("relay.toml");
    let file = |fps: u32, extra: &str| {
        format!(
            "fps = {fps}\nsize = \"160x120\"\n{extra}\n[[stream]]\nname = \"cam\"\n\
             source = \"testsrc\"\n"
        )
    };
    write(&cfg, &file(4, ""));
    let relay = Relay::start(&["--config", cfg.to_str().unwrap()]);
    let before = frames_in(&relay, "/cam/stream", 3);
    assert!((6..=16).contains(&before), "4 fps for 3 s: {before} frames");
    write(&cfg, &file(20, "send_timeout = 3\n"));
    let log = reload(&relay);
    assert!(
        log.contains("changed fps, which every source uses"),
        "{log}"
    );
    assert!(log.contains(r#"started ["cam"]"#), "{log}");
    assert!(
        log.contains("changed send-timeout, which take effect at a restart"),
        "{log}"
    );
    let after = frames_in(&relay, "/cam/stream", 3);
    assert!(
        after >= 2 * before,
        "20 fps after the reload: {after} frames, {before} before"
    );
    let _ = std::fs::remove_dir_all(&d);
}
