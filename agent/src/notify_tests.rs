//! Deliveries to real HTTP receivers on loopback: request shapes, signatures, and which answers
//! are final.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-request HTTP receiver (a stand-in for Slack, a webhook endpoint and PagerDuty:
/// it records the request and answers `status`).
async fn receiver(status: u16) -> (String, tokio::task::JoinHandle<(String, Vec<u8>)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.read(&mut buf).await.unwrap();
            data.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&data).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    let head = text[..end].to_owned();
                    let body = data[end + 4..end + 4 + length].to_vec();
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    socket.write_all(answer.as_bytes()).await.unwrap();
                    return (head, body);
                }
            }
            if n == 0 {
                return (text, Vec::new());
            }
        }
    });
    (url, task)
}

fn notification(action: &str) -> Notification {
    Notification {
        id: "evt-7.0".into(),
        event_id: "evt-7".into(),
        action: action.into(),
        subject: "prod/API_KEY".into(),
        detail: "run r1 ended RolledBack: login failed".into(),
        actor: "agent:a1".into(),
        at_ms: 1_700_000_000_000,
        address: Some("#payments".into()),
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_webhook_is_signed_the_standard_webhooks_way() {
    let (url, task) = receiver(204).await;
    let spec = WebhookSpec::new(&url, DELIVERY_TIMEOUT, None, None).unwrap();
    let secret = SecretValue::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"0123456789abcdef")
    ));
    let n = notification("run.rolledback");
    assert!(matches!(deliver(&ChannelSpec::Webhook(spec), &n, &secret).await, Delivered::Yes(_)));
    let (head, body) = task.await.unwrap();
    assert_eq!(header(&head, "webhook-id"), Some("evt-7.0"));
    let timestamp: u64 = header(&head, "webhook-timestamp").unwrap().parse().unwrap();
    // The signature, computed independently from the spec's definition.
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef");
    let mut signed = format!("evt-7.0.{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let expected =
        base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, &signed).as_ref());
    assert_eq!(header(&head, "webhook-signature"), Some(format!("v1,{expected}").as_str()));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["type"], "run.rolledback");
    assert_eq!(json["data"]["command"], "dsops rotation history --env prod --key API_KEY");
}

#[tokio::test]
async fn slack_gets_text_and_pagerduty_triggers_and_resolves_by_secret() {
    let (url, task) = receiver(200).await;
    let n = notification("run.rolledback");
    let delivered = deliver(&ChannelSpec::Slack, &n, &SecretValue::new(url)).await;
    assert!(matches!(delivered, Delivered::Yes(_)), "{delivered:?}");
    let (_, body) = task.await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["text"].as_str().unwrap().contains("prod/API_KEY: run.rolledback"));
    assert_eq!(json["channel"], "#payments");

    for (action, expected) in [("run.quarantined", "trigger"), ("run.completed", "resolve")] {
        let (url, task) = receiver(202).await;
        let spec = WebhookSpec::new(&url, DELIVERY_TIMEOUT, None, None).unwrap();
        let key = SecretValue::new("R0UT1NGKEY".into());
        let delivered = deliver(&ChannelSpec::PagerDuty(spec), &notification(action), &key).await;
        assert!(matches!(delivered, Delivered::Yes(_)), "{delivered:?}");
        let (_, body) = task.await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["event_action"], expected);
        assert_eq!(json["dedup_key"], "dsops:prod/API_KEY");
        assert_eq!(json["routing_key"], "R0UT1NGKEY");
    }
    let spec =
        WebhookSpec::new("https://events.example.com/v2/enqueue", DELIVERY_TIMEOUT, None, None)
            .unwrap();
    let skipped = deliver(
        &ChannelSpec::PagerDuty(spec),
        &notification("run.requested"),
        &SecretValue::new("k".into()),
    )
    .await;
    assert!(matches!(skipped, Delivered::Skipped(_)), "{skipped:?}");
}

#[tokio::test]
async fn answers_decide_retry_or_dead_letter() {
    for (status, retry) in [(503, true), (429, true), (400, false), (410, false)] {
        let (url, task) = receiver(status).await;
        let spec = WebhookSpec::new(&url, DELIVERY_TIMEOUT, None, None).unwrap();
        let got = deliver(
            &ChannelSpec::Webhook(spec),
            &notification("run.completed"),
            &SecretValue::new("s".into()),
        )
        .await;
        task.await.unwrap();
        match got {
            Delivered::Retry(_) => assert!(retry, "{status}"),
            Delivered::Refused(_) => assert!(!retry, "{status}"),
            other => panic!("{status}: {other:?}"),
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let spec = WebhookSpec::new(&format!("http://127.0.0.1:{port}/"), DELIVERY_TIMEOUT, None, None)
        .unwrap();
    let got = deliver(
        &ChannelSpec::Webhook(spec),
        &notification("run.completed"),
        &SecretValue::new("s".into()),
    )
    .await;
    assert!(matches!(got, Delivered::Retry(_)), "{got:?}");
    let bad = deliver(
        &ChannelSpec::Slack,
        &notification("run.completed"),
        &SecretValue::new("http://hooks.slack.example/x".into()),
    )
    .await;
    assert!(matches!(bad, Delivered::Refused(_)), "{bad:?}");
}
