//! A WebSocket as a connection's transport: each text (or binary) message is one JSON-RPC
//! request ([`WsFrames`]), each reply and notification one text message ([`WsSink`]), so
//! that `serve::connection` runs the very request loop of the Unix socket. A message over
//! `socket.max_line_bytes` is refused with −32600 and the connection closed (1009) — the
//! WebSocket library stops reading a frame at the limit, so nothing larger is ever held.

use super::super::connection::{Frame, FrameSource, LineSink};
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// `socket` as a connection's requests and its replies.
pub fn split(socket: WebSocket) -> (WsFrames, WsSink) {
    let (sink, stream) = socket.split();
    let over_limit = Arc::new(AtomicBool::new(false));
    let frames = WsFrames {
        messages: stream,
        over_limit: over_limit.clone(),
    };
    (
        frames,
        WsSink {
            messages: sink,
            over_limit,
        },
    )
}

/// The requests of a WebSocket.
pub struct WsFrames {
    messages: SplitStream<WebSocket>,
    /// A message over the limit was met: it is answered, then the connection ends.
    over_limit: Arc<AtomicBool>,
}

impl WsFrames {
    async fn next(&mut self) -> io::Result<Option<Frame>> {
        if self.over_limit.load(Ordering::Relaxed) {
            return Ok(None);
        }
        while let Some(message) = self.messages.next().await {
            match message {
                Ok(Message::Text(text)) => return Ok(Some(Frame::Line(text.as_bytes().to_vec()))),
                Ok(Message::Binary(bytes)) => return Ok(Some(Frame::Line(bytes.to_vec()))),
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(Message::Close(_)) => return Ok(None),
                Err(e) => {
                    let e = e.into_inner();
                    if !is_capacity(e.as_ref()) {
                        return Err(io::Error::other(e));
                    }
                    self.over_limit.store(true, Ordering::Relaxed);
                    return Ok(Some(Frame::TooLong));
                }
            }
        }
        Ok(None)
    }
}

/// Whether the WebSocket library stopped a message at the size limit.
fn is_capacity(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(
        error.downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

impl FrameSource for WsFrames {
    fn next_frame(&mut self) -> impl Future<Output = io::Result<Option<Frame>>> + Send {
        self.next()
    }
}

/// The replies and notifications of a WebSocket.
pub struct WsSink {
    messages: SplitSink<WebSocket, Message>,
    over_limit: Arc<AtomicBool>,
}

impl LineSink for WsSink {
    async fn send_line(&mut self, line: String) -> io::Result<()> {
        self.messages
            .send(Message::Text(line.into()))
            .await
            .map_err(io::Error::other)
    }

    async fn close(&mut self) {
        let frame = self.over_limit.load(Ordering::Relaxed).then(|| CloseFrame {
            code: close_code::SIZE,
            reason: "request too large (socket.max_line_bytes)".into(),
        });
        let _ = self.messages.send(Message::Close(frame)).await;
    }
}
