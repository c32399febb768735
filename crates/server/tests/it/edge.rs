//! The HTTP edge under hostile clients, at the socket level: slow headers, slow bodies and
//! idle connections are cut off after their timeouts, and at the connection limit the
//! oldest idle connection makes room, so a flood of idle sockets never locks out `/healthz`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or `within` passes); returns what was
/// read and whether it was closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let app = spawn_app_with(|c| {
        c.limits.header_timeout_secs = 1;
        c.limits.idle_timeout_secs = 30;
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let headers =
        b"Host: balie.test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for b in headers {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    writer.abort();
    assert!(closed, "a 13-second header trickle must be cut off");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "cut off after the header timeout, not after the whole trickle"
    );
    // The server is still there for everyone else.
    let ok = app.http.get(format!("{}/healthz", app.base)).send().await;
    assert_eq!(ok.unwrap().status(), 200);
}

#[tokio::test]
async fn a_client_that_sends_its_body_slowly_is_cut_off_and_nothing_is_stored() {
    let app = spawn_app_with(|c| c.limits.body_timeout_secs = 1).await;
    let body =
        serde_json::to_vec(&message("slow-1", "kim", "Hallo, waar blijft mijn pakket?")).unwrap();
    let mut stream = TcpStream::connect(addr(&app)).await.unwrap();
    let head = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: balie.test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        app.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for b in body {
            if write.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or(false);
    writer.abort();
    let answer = String::from_utf8_lossy(&got);
    assert!(closed, "a slow body must be cut off; got {answer}");
    assert!(
        answer.starts_with("HTTP/1.1 408") || answer.starts_with("HTTP/1.1 400"),
        "the client hears why: {answer}"
    );
    let stored = app.conversations().await;
    assert_eq!(
        stored.as_array().unwrap().len(),
        0,
        "nothing half-sent is kept"
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(|c| c.limits.idle_timeout_secs = 1).await;
    let mut silent = TcpStream::connect(addr(&app)).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "a connection that never sends a request is closed");

    // A connection that finished its request and keeps quiet goes the same way.
    let mut kept = TcpStream::connect(addr(&app)).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: balie.test\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed too");
}

#[tokio::test]
async fn at_the_connection_limit_idle_connections_make_room_and_streams_stay() {
    let app = spawn_app_with(|c| {
        c.limits.max_connections = 16;
        c.limits.idle_timeout_secs = 60;
        c.limits.header_timeout_secs = 60;
    })
    .await;
    // A live stream is a request in flight: it must survive the flood.
    let mut stream = app
        .http
        .get(format!("{}/events", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut idle = Vec::new();
    for _ in 0..48 {
        idle.push(TcpStream::connect(addr(&app)).await.unwrap());
    }
    let started = Instant::now();
    let health = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers with the connection limit flooded");
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, oldest_closed) = read_until_closed(&mut idle[0], Duration::from_secs(2)).await;
    assert!(oldest_closed, "the oldest idle connection made room");

    app.post_message(&message("m-1", "kim", "Nog steeds live?"))
        .await;
    let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("the live stream still delivers")
        .unwrap()
        .expect("an event, not the end of the stream");
    assert!(String::from_utf8_lossy(&chunk).contains("data:"));
}
