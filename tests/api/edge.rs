//! The HTTP edge: bodies, headers and `Host` are bounded before they cost anything, and every
//! early refusal carries the GraphQL-shaped body. Requests are written by hand over TCP, as a
//! hostile client would, so nothing in a client library smooths them over.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestDb, spawn_app};
use crate::process::ServerProcess;

/// A response read to the end of the connection: status, head, JSON body.
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one response (the server closes the connection after a refusal).
async fn read_response(stream: &mut TcpStream) -> Raw {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
            if complete(&bytes) {
                break;
            }
        }
    });
    read.await.expect("a response within a minute");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("a JSON body: {text:?}"));
    Raw { status, head: head.to_ascii_lowercase(), body }
}

/// Whether `bytes` hold a whole response with a `content-length` body.
fn complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    head.lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|len| len.trim().parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

async fn exchange(address: &str, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(address.trim_start_matches("http://")).await.unwrap();
    // The server may refuse before it has read everything; what it answers is what counts.
    let _ = stream.write_all(request).await;
    read_response(&mut stream).await
}

fn assert_graphql_refusal(raw: &Raw, status: u16, code: &str) {
    assert_eq!(raw.status, status, "{}\n{}", raw.head, raw.body);
    assert!(raw.head.contains("content-type: application/graphql-response+json"), "{}", raw.head);
    assert_eq!(raw.body["errors"][0]["extensions"]["code"], code, "{}", raw.body);
    assert!(raw.body["errors"][0]["message"].as_str().is_some_and(|m| m.len() > 10), "{}", raw.body);
}

fn get_with(headers: &str) -> Vec<u8> {
    let accept = "accept: application/graphql-response+json\r\n";
    format!("GET /graphql?query=%7B__typename%7D HTTP/1.1\r\n{accept}{headers}\r\n").into_bytes()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/<pid>/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_200_mb_body_is_refused_with_413_before_it_is_read() {
    let db = TestDb::migrated().await;
    let server = ServerProcess::start(&db.url, &[]).await;
    let before = rss_kib(server.child.id());
    let address = server.address.trim_start_matches("http://").to_owned();
    // Declared: refused from the header alone.
    let head = "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                content-length: 200000000\r\n\r\n";
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b' '; 64 * 1024]).await;
    assert_graphql_refusal(&read_response(&mut stream).await, 413, "PAYLOAD_TOO_LARGE");

    // Streamed without a length: refused once it passes the limit, long before 200 MB.
    let head = "POST /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let sent = tokio::spawn(async move {
        let chunk = format!("{:x}\r\n{}\r\n", 1024 * 1024, " ".repeat(1024 * 1024)).into_bytes();
        let mut sent = 0usize;
        if writer.write_all(head.as_bytes()).await.is_err() {
            return sent;
        }
        while sent < 200 * 1024 * 1024 {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += 1024 * 1024;
        }
        sent
    });
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    while !complete(&bytes) {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("PAYLOAD_TOO_LARGE"), "{text}");
    drop(reader);
    let sent = sent.await.unwrap();
    assert!(sent < 100 * 1024 * 1024, "the server read {sent} bytes before refusing");
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    eprintln!("413 test: read {sent} bytes of the streamed body; RSS grew by {grown} KiB");
    assert!(grown < 64 * 1024, "the server grew by {grown} KiB");
}

#[tokio::test]
async fn a_flood_of_unique_100_kb_hosts_is_refused_with_a_body_and_memory_stays_bounded() {
    let db = TestDb::migrated().await;
    let server = ServerProcess::start(&db.url, &[]).await;
    let address = server.address.clone();
    let before = rss_kib(server.child.id());
    let mut workers = Vec::new();
    for worker in 0..8 {
        let address = address.clone();
        workers.push(tokio::spawn(async move {
            for i in 0..150 {
                let host = format!("{worker}x{i}{}.example.com", "a".repeat(100 * 1024));
                let raw = exchange(&address, &get_with(&format!("host: {host}\r\n"))).await;
                assert_graphql_refusal(&raw, 431, "PAYLOAD_TOO_LARGE");
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    // Unique hosts short enough to pass the header limits are refused by validation (400) or
    // as unknown tenants (404): never looked up or cached unbounded.
    let long_label = exchange(&address, &get_with(&format!("host: {}.io\r\n", "b".repeat(4000)))).await;
    assert_graphql_refusal(&long_label, 400, "VALIDATION");
    let grown = rss_kib(server.child.id()).saturating_sub(before);
    eprintln!("host flood: 1,200 unique 100 KB hosts; RSS {before} KiB before, grew by {grown} KiB");
    assert!(grown < 64 * 1024, "the server grew by {grown} KiB over 1,200 requests");
}

#[tokio::test]
async fn oversized_and_too_many_headers_and_malformed_requests_get_a_body() {
    let app = spawn_app().await;
    let one_long =
        exchange(&app.address, &get_with(&format!("host: localhost\r\nx-long: {}\r\n", "a".repeat(20_000))))
            .await;
    assert_graphql_refusal(&one_long, 431, "PAYLOAD_TOO_LARGE");
    assert!(one_long.body["errors"][0]["message"].as_str().unwrap().contains("x-long"), "{}", one_long.body);

    let head_too_large =
        exchange(&app.address, &get_with(&format!("host: {}\r\n", "a".repeat(40_000)))).await;
    assert_graphql_refusal(&head_too_large, 431, "PAYLOAD_TOO_LARGE");

    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let too_many = exchange(&app.address, &get_with(&format!("host: localhost\r\n{many}"))).await;
    assert_graphql_refusal(&too_many, 431, "PAYLOAD_TOO_LARGE");

    let malformed = exchange(&app.address, b"GET /graphql HTTP/1.1\r\nho st: x\r\n\r\n").await;
    assert_graphql_refusal(&malformed, 400, "VALIDATION");
}

#[tokio::test]
async fn a_client_too_slow_to_send_its_head_gets_408_with_a_body() {
    let db = TestDb::migrated().await;
    let server = ServerProcess::start(&db.url, &[("HEADER_READ_TIMEOUT_SECS", "1")]).await;
    let mut stream = TcpStream::connect(server.address.trim_start_matches("http://")).await.unwrap();
    // Half a head, then nothing.
    stream.write_all(b"GET /graphql HTTP/1.1\r\nhost: loc").await.unwrap();
    assert_graphql_refusal(&read_response(&mut stream).await, 408, "VALIDATION");
}

#[tokio::test]
async fn unknown_subdomains_and_bad_hosts_are_refused_with_a_body_and_quoted_briefly() {
    let app = spawn_app().await;
    let long_sub = format!("{}.localhost", "z".repeat(60));
    let unknown = exchange(&app.address, &get_with(&format!("host: {long_sub}\r\n"))).await;
    assert_graphql_refusal(&unknown, 404, "TENANT_NOT_FOUND");
    let huge_tenant =
        exchange(&app.address, &get_with(&format!("host: localhost\r\nx-tenant: {}\r\n", "q".repeat(7000))))
            .await;
    assert_graphql_refusal(&huge_tenant, 404, "TENANT_NOT_FOUND");
    assert!(huge_tenant.body["errors"][0]["message"].as_str().unwrap().len() < 400, "{}", huge_tenant.body);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_a_body_too() {
    let app = spawn_app().await;
    let missing =
        exchange(&app.address, b"GET /nope HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await;
    assert_graphql_refusal(&missing, 404, "NOT_FOUND");
    let put = b"PUT /graphql HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let wrong_method = exchange(&app.address, put).await;
    assert_graphql_refusal(&wrong_method, 405, "VALIDATION");
    assert!(wrong_method.head.contains("allow: "), "{}", wrong_method.head);
}
