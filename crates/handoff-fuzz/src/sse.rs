//! `sse_reader`: an upstream MCP server's server-sent-event stream, through the gateway's reader
//! (`eventsource-stream` under a byte limit), as the answer to request id 7.

use serde_json::Value;

/// What the reader returns is the response to request 7 (a result or an error with that id),
/// and every message it relayed first is a logging or progress notification (no id).
pub fn sse_reader(data: &[u8]) {
    let (answer, relayed) = handoff_gateway::read_event_stream(data, 7);
    if let Ok(message) = answer {
        assert_eq!(message.get("id").and_then(Value::as_u64), Some(7));
        assert!(message.get("result").is_some() || message.get("error").is_some());
    }
    for message in relayed {
        assert!(
            message.get("id").is_none(),
            "a relayed message has an id: {message}"
        );
        let method = message.get("method").and_then(Value::as_str);
        assert!(
            matches!(
                method,
                Some("notifications/message" | "notifications/progress")
            ),
            "relayed: {message}"
        );
    }
}
