//! `echo-server`: a std-only HTTP server for the simulator's image tests. It listens on
//! `$LISTEN` (default 127.0.0.1:8080) and answers every request with a JSON report of itself
//! (argv, environment, effective uid and gid, working directory, the entries of `/`), except
//! `/fail`, which answers 500, and `/file/<path>`, which answers the file at `/<path>` (404 when
//! it cannot read it).
//! It installs no signal handler: SIGTERM's default action ends it at once (it is not PID 1 of a
//! PID namespace here, so the default action applies).
//! The tests build it for x86_64-unknown-linux-musl (statically linked), so that it runs
//! chrooted into an image that holds nothing else.
#![allow(unsafe_code)] // Only the declaration of two libc functions that cannot fail.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

// POSIX: geteuid and getegid "shall always be successful"; chrooted there is no /proc to read.
unsafe extern "C" {
    safe fn geteuid() -> u32;
    safe fn getegid() -> u32;
}

fn root_entries() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/")
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn report() -> String {
    let args: Vec<String> = std::env::args().map(|a| json_string(&a)).collect();
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    let env: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{}:{}", json_string(k), json_string(v)))
        .collect();
    let (uid, gid) = (geteuid().to_string(), getegid().to_string());
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let root: Vec<String> = root_entries().iter().map(|n| json_string(n)).collect();
    format!(
        "{{\"argv\":[{}],\"env\":{{{}}},\"uid\":{},\"gid\":{},\"cwd\":{},\"root\":[{}]}}",
        args.join(","),
        env.join(","),
        json_string(&uid),
        json_string(&gid),
        json_string(&cwd),
        root.join(",")
    )
}

fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path == "/fail" {
        ("500 Internal Server Error", "failing\n".to_string())
    } else if let Some(file) = path.strip_prefix("/file") {
        match std::fs::read_to_string(file) {
            Ok(content) => ("200 OK", content),
            Err(e) => ("404 Not Found", format!("{file}: {e}\n")),
        }
    } else {
        ("200 OK", report())
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() -> std::process::ExitCode {
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let listener = match TcpListener::bind(&listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-server: cannot listen on {listen}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("echo-server: listening on {listen}");
    for stream in listener.incoming() {
        match stream {
            Ok(s) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(s) {
                        eprintln!("echo-server: {e}");
                    }
                });
            }
            Err(e) => eprintln!("echo-server: {e}"),
        }
    }
    std::process::ExitCode::SUCCESS
}
