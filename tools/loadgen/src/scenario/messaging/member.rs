//! One connection of a messaging scenario: it connects, joins its room,
//! reports ready, then sends on the schedule it is given and times what
//! it receives. Also the message text with its embedded send time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;

use crate::client::{Connection, Ctx};
use crate::metrics::{Counter, Failures, Latencies};
use crate::progress;
use crate::protocol::{self, AckIds, Packet};

/// Where a connection sends.
#[derive(Debug, Clone)]
pub(super) enum Target {
    Room(String),
    User(String),
    Everyone,
}

/// What connection i does: the room it joins and where it sends.
pub(super) struct Role {
    pub join: Option<String>,
    pub target: Option<Target>,
}

/// When to send, and to how many receivers each connection's message goes.
pub(super) struct Schedule {
    pub start: Instant,
    pub warm_end: Instant,
    pub send_end: Instant,
    pub receivers: Vec<u32>,
}

/// What the coordinator tells every connection.
#[derive(Clone)]
pub(super) enum Phase {
    Setup,
    Run(Arc<Schedule>),
    Stop,
}

/// Counters every connection of the run adds to.
#[derive(Default)]
pub(super) struct Shared {
    pub sent_measured: Counter,
    pub expected: Counter,
    pub received: Counter,
    pub received_warmup: Counter,
    pub self_echoes: Counter,
    pub exceptions: Counter,
    pub other_frames: Counter,
    pub dropped: Counter,
    pub late_sends: Counter,
    pub max_send_lag_us: Counter,
    pub latency: Latencies,
    pub failures: Failures,
}

/// The text of a measured message: `lg|sender|seq|send µs|measured|xxx…`.
fn marker_text(sender: u64, seq: u64, sent_us: u64, measured: bool, size: usize) -> String {
    let mut text = format!("lg|{sender}|{seq}|{sent_us}|{}|", u8::from(measured));
    let padding = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', padding));
    text
}

/// The `send_message` frame carrying `text` to `target`.
fn message_frame(target: &Target, text: &str) -> String {
    // Room names and user ids are ours (`bench-room-N`, `uN`) and the text
    // is `[0-9a-z|]`: nothing to escape, so no JSON encoder on the hot path.
    match target {
        Target::Room(room) => format!(r#"42["send_message",{{"room":"{room}","message":"{text}"}}]"#),
        Target::User(user) => format!(r#"42["send_message",{{"to":"{user}","message":"{text}"}}]"#),
        Target::Everyone => format!(r#"42["send_message",{{"message":"{text}"}}]"#),
    }
}

/// `(sender, send µs, measured)` from a `new_message` frame carrying a marker.
fn parse_marker(frame: &str) -> Option<(u64, u64, bool)> {
    let start = frame.find("\"lg|")? + 4;
    let mut fields = frame[start..].splitn(5, '|');
    let sender = fields.next()?.parse().ok()?;
    let _seq = fields.next()?;
    let sent_us = fields.next()?.parse().ok()?;
    let measured = fields.next()? == "1";
    Some((sender, sent_us, measured))
}

/// Joins `room` and waits until the server handled it: its ack, or the
/// `pong` to a `ping` sent right after (the server handles a socket's
/// events in order).
async fn join(connection: &mut Connection, room: &str, timeout: Duration) -> Result<(), String> {
    let ack_id = AckIds::default().next_id();
    let join = protocol::event_frame("join_room", &serde_json::json!({ "room": room }), Some(ack_id));
    let waited = tokio::time::timeout(timeout, async {
        connection.send(join).await.map_err(|error| error.to_string())?;
        connection
            .send(protocol::event_frame("ping", &serde_json::Value::Null, None))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let frame = connection.recv().await.map_err(|error| error.to_string())?;
            if connection.answer_ping(&frame).await.map_err(|error| error.to_string())? {
                continue;
            }
            match Packet::parse(&frame) {
                Packet::Ack { id, .. } if id == ack_id => return Ok(()),
                Packet::Event { name, .. } if name == "pong" => return Ok(()),
                Packet::Event { name, .. } if name == "exception" => {
                    return Err(format!("join_room exception: {:.200}", frame.as_str()));
                }
                _ => {}
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| Err("join_room timed out".to_owned()))
}

/// One connection of the scenario.
pub(super) struct Member {
    pub ctx: Arc<Ctx>,
    pub shared: Arc<Shared>,
    pub index: u64,
    pub role: Role,
    pub period: Duration,
    pub msg_size: usize,
    pub hard_deadline: Instant,
}

impl Member {
    /// Runs the connection until the coordinator says stop (or the hard deadline).
    pub(super) async fn run(
        self,
        permit: OwnedSemaphorePermit,
        ready_tx: mpsc::UnboundedSender<(u64, bool)>,
        mut phase_rx: watch::Receiver<Phase>,
    ) {
        let Self { ctx, shared, index, role, period, msg_size, hard_deadline } = self;
        let mut connection = match ctx.open_as(index, index).await {
            Ok(connection) => connection,
            Err(error) => {
                drop(permit);
                shared.failures.add(error.kind(), || error.to_string());
                let _ = ready_tx.send((index, false));
                return;
            }
        };
        if let Some(room) = &role.join
            && let Err(error) = join(&mut connection, room, ctx.settings.connect_timeout).await
        {
            drop(permit);
            shared.failures.add("join", || error);
            let _ = ready_tx.send((index, false));
            return;
        }
        drop(permit);
        let _ = ready_tx.send((index, true));

        let mut seq = 0u64;
        let mut next_send: Option<Instant> = None;
        let (mut warm_end, mut send_end, mut receivers) = (hard_deadline, hard_deadline, 0u64);
        let send_timer = tokio::time::sleep_until(hard_deadline);
        tokio::pin!(send_timer);
        let deadline = tokio::time::sleep_until(hard_deadline);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                () = &mut deadline => break,
                changed = phase_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let phase = phase_rx.borrow_and_update().clone();
                    match phase {
                        Phase::Stop => break,
                        Phase::Setup => {}
                        Phase::Run(schedule) => {
                            (warm_end, send_end) = (schedule.warm_end, schedule.send_end);
                            receivers = u64::from(schedule.receivers[index as usize]);
                            if role.target.is_some() && receivers > 0 {
                                // Spread the senders over one period so they do not send in lockstep.
                                let offset = period.mul_f64((index.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0);
                                next_send = Some(schedule.start + offset);
                                send_timer.as_mut().reset(schedule.start + offset);
                            }
                        }
                    }
                }
                () = &mut send_timer, if next_send.is_some() => {
                    let Some(target) = &role.target else { break };
                    // Send everything due, in a bounded burst if the loadgen fell behind.
                    let mut burst = 0;
                    while let Some(due) = next_send {
                        let now = Instant::now();
                        if due > now || burst >= 64 {
                            break;
                        }
                        if due >= send_end {
                            next_send = None;
                            break;
                        }
                        let lag_us = now.duration_since(due).as_micros() as u64;
                        shared.max_send_lag_us.raise_to(lag_us);
                        if lag_us > 5_000 {
                            shared.late_sends.incr();
                        }
                        let measured = due >= warm_end;
                        let text = marker_text(index, seq, ctx.clock.now_us(), measured, msg_size);
                        seq += 1;
                        if measured {
                            shared.sent_measured.incr();
                            shared.expected.add(receivers);
                        }
                        if connection.send(message_frame(target, &text)).await.is_err() {
                            shared.dropped.incr();
                            return;
                        }
                        next_send = Some(due + period);
                        burst += 1;
                    }
                    if let Some(due) = next_send {
                        send_timer.as_mut().reset(due);
                    }
                }
                frame = connection.recv() => {
                    let Ok(frame) = frame else {
                        shared.dropped.incr();
                        return;
                    };
                    if frame.starts_with("42[\"new_message\"") {
                        match parse_marker(&frame) {
                            Some((sender, _, _)) if sender == index => shared.self_echoes.incr(),
                            Some((_, sent_us, true)) => {
                                shared.latency.record(index, ctx.clock.now_us().saturating_sub(sent_us));
                                shared.received.incr();
                            }
                            Some((_, _, false)) => shared.received_warmup.incr(),
                            None => shared.other_frames.incr(),
                        }
                    } else if frame.starts_with("42[\"exception\"") {
                        if shared.exceptions.get() == 0 {
                            progress(&ctx.clock, format_args!("first exception from the server: {:.200}", frame.as_str()));
                        }
                        shared.exceptions.incr();
                    } else {
                        match connection.answer_ping(&frame).await {
                            Ok(true) => {}
                            Ok(false) => shared.other_frames.incr(),
                            Err(_) => {
                                shared.dropped.incr();
                                return;
                            }
                        }
                    }
                }
            }
        }
        connection.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_survive_the_round_trip_through_a_new_message() {
        let text = marker_text(7, 3, 123_456, true, 64);
        assert_eq!(text.len(), 64);
        let sent = message_frame(&Target::Room("r1".to_owned()), &text);
        assert!(sent.starts_with(r#"42["send_message",{"room":"r1","message":"lg|7|3|123456|1|"#), "{sent}");
        let Packet::Event { name, array, .. } = Packet::parse(&sent) else { panic!("an event: {sent}") };
        assert_eq!(name, "send_message");
        assert_eq!(protocol::first_arg(array, true)["message"], text.as_str());
        // What a server sends back.
        let delivered = format!(
            r#"42["new_message",{{"id":"x","from":{{"id":"u1","email":"u1@example.com"}},"room":"r1","message":"{text}","timestamp":"t"}}]"#
        );
        assert_eq!(parse_marker(&delivered), Some((7, 123_456, true)));
        let warmup = message_frame(&Target::User("u9".to_owned()), &marker_text(1, 0, 5, false, 10));
        assert!(warmup.contains(r#""to":"u9""#));
        assert_eq!(parse_marker(&warmup), Some((1, 5, false)));
        assert_eq!(message_frame(&Target::Everyone, "m"), r#"42["send_message",{"message":"m"}]"#);
        assert_eq!(parse_marker(r#"42["new_message",{"message":"hello"}]"#), None);
    }
}
