//! The SMTP transport, against a minimal SMTP server on loopback.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::spawn_app_with;

/// Accepts one SMTP session and returns the message data it received.
async fn smtp_sink(listener: TcpListener, done: oneshot::Sender<String>) {
    let (stream, _) = listener.accept().await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await.unwrap();
    let mut data = String::new();
    let mut in_data = false;
    while let Some(line) = lines.next_line().await.unwrap() {
        if in_data {
            if line == "." {
                in_data = false;
                write.write_all(b"250 queued\r\n").await.unwrap();
            } else {
                data.push_str(&line);
                data.push('\n');
            }
            continue;
        }
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 sink\r\n",
            "DATA" => {
                in_data = true;
                b"354 go ahead\r\n"
            }
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await.unwrap();
                break;
            }
            _ => b"250 ok\r\n",
        };
        write.write_all(reply).await.unwrap();
    }
    let _ = done.send(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_mailer_delivers_the_verification_link() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, received) = oneshot::channel();
    tokio::spawn(smtp_sink(listener, done));

    let app = spawn_app_with(|config| config.mailer = format!("smtp://127.0.0.1:{port}").into()).await;
    app.sign_up_unverified("ann").await;
    let data = tokio::time::timeout(std::time::Duration::from_secs(10), received).await.unwrap().unwrap();
    assert!(data.contains("To: ann@example.com"), "{data}");
    assert!(data.contains("Subject: Confirm your email address"), "{data}");
    assert!(data.contains("http://app.test/verify-email?token="), "{data}");
}
