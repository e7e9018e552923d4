#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/<target>/ (docs/fuzzing.md).

The seeds are what the end-to-end suite (tests/e2e/test/*.test.js) sends as client events, and
valid wire messages of every sb-events type. Each file is one input; its name says what it is.
The files are committed; rerun this after changing it (it rewrites only the files it names, so
inputs added by hand, such as crash reproductions, stay).

    python3 fuzz/make-seeds.py
"""

import base64
import hashlib
import hmac
import json
import pathlib

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

# The same constants as fuzz_targets/jwt.rs.
SECRET = b"fuzz-secret-with-enough-bytes-32!"
PREVIOUS = b"fuzz-previous-secret-being-rotated"
NOW = 1_764_104_561

MSG_ID = "0190a000-0000-7000-8000-000000000001"
USER_A = "0190a000-0000-7000-8000-00000000000a"
USER_B = "0190a000-0000-7000-8000-00000000000b"
ALICE = {"id": USER_A, "email": "alice@example.com"}
BOB = {"id": USER_B, "email": "bob@example.com"}
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def write(target, name, content):
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    data = content if isinstance(content, bytes) else content.encode()
    (directory / name).write_bytes(data)


def frame(event, *args):
    """A Socket.IO event frame as the edge reads it; `None` for a payload the client left out."""
    return compact([event, *args])


def client_events():
    rooms = ["lobby", "general", "developers", "cross", "seq", "cb-3", "members-only", ">", "a.*", "*", "x.y",
             "a.b", "plain", "é" * 100]
    for i, room in enumerate(rooms):
        write("client_events", f"join_room-{i:02}", frame("join_room", {"room": room}))
    bad_rooms = {"empty": "", "too-long": "r" * 101, "nul": "a\u0000b", "newline": "line\nbreak", "blank": "  "}
    for name, room in bad_rooms.items():
        write("client_events", f"join_room-bad-{name}", frame("join_room", {"room": room}))
    write("client_events", "join_room-no-payload", frame("join_room"))
    write("client_events", "join_room-string", frame("join_room", "general"))
    write("client_events", "join_room-number", frame("join_room", {"room": 42}))
    write("client_events", "join_room-empty-object", frame("join_room", {}))
    write("client_events", "join_room-with-ack-id", '["join_room",{"room":"a"},1]')
    write("client_events", "leave_room", frame("leave_room", {"room": "cross"}))
    write("client_events", "leave_room-null", frame("leave_room", {"room": None}))

    write("client_events", "send_message-room", frame("send_message", {"room": "lobby", "message": "hello room"}))
    write("client_events", "send_message-private", frame("send_message", {"to": USER_B, "message": "psst"}))
    write("client_events", "send_message-all", frame("send_message", {"message": "hello all"}))
    write("client_events", "send_message-null-room", frame("send_message", {"message": "hi", "room": None}))
    write("client_events", "send_message-at-limit", frame("send_message", {"message": "x" * 4096}))
    write("client_events", "send_message-over-limit", frame("send_message", {"message": "x" * 4097}))
    write("client_events", "send_message-empty", frame("send_message", {"message": ""}))
    write("client_events", "send_message-number", frame("send_message", {"message": 7}))
    write("client_events", "send_message-room-array", frame("send_message", {"room": ["x"], "message": "hi"}))
    write("client_events", "send_message-to-number", frame("send_message", {"to": 5, "message": "hi"}))
    write("client_events", "send_message-room-and-to",
          frame("send_message", {"room": "r", "to": "u", "message": "m"}))
    write("client_events", "send_message-array", frame("send_message", [1, 2, 3]))
    write("client_events", "send_message-unicode", frame("send_message", {"room": "a.b", "message": "héllo 👋"}))

    write("client_events", "ping", frame("ping"))
    write("client_events", "ping-null", '["ping",null]')
    write("client_events", "admin_broadcast", frame("admin_broadcast", {"message": "maintenance at 5"}))
    write("client_events", "admin_broadcast-empty", frame("admin_broadcast", {}))

    write("client_events", "get_history-room", frame("get_history", {"room": "lobby", "limit": 3}))
    write("client_events", "get_history-before",
          frame("get_history", {"room": "lobby", "limit": 3, "before": MSG_ID}))
    write("client_events", "get_history-with", frame("get_history", {"with": USER_A}))
    write("client_events", "get_history-limit-string", frame("get_history", {"room": "x", "limit": "ten"}))
    write("client_events", "get_history-limit-1000", frame("get_history", {"room": "lobby", "limit": 1000}))
    write("client_events", "get_history-empty", frame("get_history", {}))

    write("client_events", "get_online_users", frame("get_online_users"))
    write("client_events", "get_online_users-page",
          frame("get_online_users", {"limit": 2, "cursor": USER_A}))
    write("client_events", "get_online_users-limit-all", frame("get_online_users", {"limit": "all"}))
    write("client_events", "get_online_users-limit-1000", frame("get_online_users", {"limit": 1000}))

    write("client_events", "unknown-event", frame("no_such_event", {"x": 1}))
    write("client_events", "long-event-name", frame("e" * 80 + "é", {"room": "lobby"}))
    write("client_events", "not-a-frame", '{"event":"ping"}')


def message(kind, **fields):
    body = {"v": 1, "id": MSG_ID, "kind": kind, "from": ALICE, "message": "hi", "timestamp_ms": NOW * 1000 + 123,
            "origin": {"edge": "edge-0", "socket": "AbC123"}}
    body.update(fields)
    return body


def wire_types():
    # Exactly what a wave-1 edge published (no `v`), and this build's messages of each kind.
    write("wire_types", "message_accepted-wave1", compact({
        "id": MSG_ID, "kind": "room", "from": {"id": "alice", "email": "alice@example.com"}, "room": "lobby",
        "message": "hi", "timestamp_ms": 1764104561123, "origin": {"edge": "edge-0", "socket": "sock-1"}}))
    write("wire_types", "message_accepted-room", compact(message("room", room="a.*")))
    write("wire_types", "message_accepted-private", compact(message("private", to=USER_B, message="psst")))
    write("wire_types", "message_accepted-broadcast", compact(message("broadcast", message="hello all")))
    announcement = message("announcement", message="maintenance at 5")
    del announcement["origin"]
    write("wire_types", "message_accepted-announcement", compact(announcement))
    write("wire_types", "message_accepted-newer", compact(message("thread", v=2, priority="high")))
    batch = {"v": 1, "id": "0190a000-0000-7000-8000-0000000000ba", "messages": [
        {"message": message("room", room="lobby"), "traceparent": TRACEPARENT},
        {"message": message("private", to=USER_B)},
    ]}
    write("wire_types", "ingest_batch", compact(batch))

    def presence(kind, seq, **fields):
        return compact({"edge": "edge-0", "incarnation": "0192f000-0000-7000-8000-000000000001", "seq": seq,
                        "at_ms": NOW * 1000, "type": kind, **fields})
    write("wire_types", "presence-edge_up", presence("edge_up", 1))
    write("wire_types", "presence-edge_down", presence("edge_down", 9, down_incarnation="0191"))
    write("wire_types", "presence-session_opened", presence(
        "session_opened", 2, socket="AbC123", user=ALICE, connected_at_ms=NOW * 1000, transport="websocket"))
    write("wire_types", "presence-session_opened-old", presence(
        "session_opened", 2, socket="AbC123", user=ALICE, connected_at_ms=NOW * 1000))
    write("wire_types", "presence-room_joined", presence("room_joined", 3, socket="AbC123", room="a.*"))
    write("wire_types", "presence-room_left", presence("room_left", 4, socket="AbC123", room="a.*"))
    write("wire_types", "presence-session_closed", presence("session_closed", 5, socket="AbC123"))
    write("wire_types", "presence-snapshot", presence("snapshot", 6, snapshot="req-1", part=0, last=True, sessions=[
        {"socket": "AbC123", "user": ALICE, "connected_at_ms": NOW * 1000, "rooms": ["lobby"],
         "transport": "polling"}]))
    write("wire_types", "edge_heartbeat", compact({
        "edge": "edge-0", "incarnation": "0192", "last_seq": 6, "sockets": 3, "sent_at_ms": NOW * 1000,
        "interval_ms": 2000, "edge_delivery": True, "address": "ws://edge-0:3000", "version": "0.1.0",
        "draining": False, "users": 2}))
    write("wire_types", "edge_heartbeat-old", compact({
        "edge": "e", "incarnation": "1", "last_seq": 2, "sockets": 3, "sent_at_ms": 4, "interval_ms": 2000}))
    write("wire_types", "presence_query-online_users",
          compact({"query": "online_users", "limit": 100, "cursor": USER_A, "after_seq": 12}))
    write("wire_types", "presence_query-room_members", compact({"query": "room_members", "room": "lobby"}))
    write("wire_types", "presence_query-online_among", compact({"query": "online_among", "users": [USER_A, USER_B]}))
    write("wire_types", "presence_query-locate", compact({"query": "locate", "users": [USER_B]}))
    write("wire_types", "reply-locations", compact({"ok": {
        "users": {USER_B: [{"edge": "edge-1", "sockets": 2, "edge_delivery": True}]}, "applied_seq": 40}}))
    write("wire_types", "reply-room_members",
          compact({"ok": {"room": "lobby", "members": [ALICE, BOB], "count": 2}}))
    write("wire_types", "reply-online_among", compact({"ok": {"online": [USER_A]}}))
    write("wire_types", "reply-online_users", compact({"ok": {"users": [ALICE], "count": 1, "cursor": USER_A}}))
    write("wire_types", "reply-error",
          compact({"error": {"code": "invalid_argument", "message": "limit must be an integer from 1 to 100"}}))

    write("wire_types", "access_changed", compact({"user_id": USER_A, "token_version": 3, "disabled": False}))
    write("wire_types", "edge_command-snapshot", compact({"command": "snapshot", "request_id": "req-1"}))
    write("wire_types", "edge_command-kick", compact({"command": "kick_user", "user_id": USER_A, "reason": "bye"}))
    write("wire_types", "edge_command-drain", compact({"command": "drain", "over_ms": 5000}))
    write("wire_types", "reply-edge_command_done",
          compact({"ok": {"edge": "edge-0", "sockets": 12, "over_ms": 5000}}))

    new_message = {"id": MSG_ID, "from": ALICE, "room": "lobby", "message": "hi",
                   "timestamp": "2025-11-25T21:02:41.123Z"}
    delivery = {"event": "new_message", "data": new_message, "except_socket": "AbC123"}
    write("wire_types", "delivery", compact(delivery))
    write("wire_types", "delivery-spaced", '{"event": "pong", "data": { "user" : {"id": "u", "email": "e"} }}')
    write("wire_types", "delivery_batch", compact({"deliveries": [
        {"event": "user_online", "data": {"user": ALICE, "timestamp": "2025-11-25T21:02:41.123Z"},
         "except_user": USER_A},
        {"event": "user_offline", "data": {"user": BOB, "timestamp": "2025-11-25T21:02:42.000Z"}}]}))
    write("wire_types", "edge_deliveries", compact({"deliveries": [
        {"user": USER_B, "event": "new_message", "data": new_message, "except_socket": "AbC123"}]}))
    write("wire_types", "history_query", compact({"caller": USER_A, "scope": {"room": "lobby"}, "before": MSG_ID,
                                                  "limit": 3}))
    write("wire_types", "history_query-with", compact({"caller": USER_A, "scope": {"with": USER_B}, "limit": 50}))
    write("wire_types", "reply-history_page", compact({"ok": {"messages": [new_message]}}))
    write("wire_types", "pending_claim", compact({"user": USER_B, "limit": 100}))
    write("wire_types", "reply-pending_messages", compact({"ok": {"messages": [dict(new_message, to=USER_B)]}}))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(payload, secret=SECRET, header=None, digest=hashlib.sha256):
    header = header or {"typ": "JWT", "alg": "HS256"}
    message = f"{b64(compact(header).encode())}.{b64(compact(payload).encode())}"
    signature = hmac.new(secret, message.encode(), digest).digest()
    return f"{message}.{b64(signature)}"


def claims(**fields):
    body = {"sub": USER_A, "email": "alice@example.com", "role": "user", "tokenVersion": 0, "iat": NOW,
            "exp": NOW + 3600}
    body.update(fields)
    return {name: value for name, value in body.items() if value is not None}


def jwt():
    write("jwt", "valid", token(claims()))
    write("jwt", "valid-admin", token(claims(role="admin", tokenVersion=7)))
    write("jwt", "valid-bearer", "Bearer " + token(claims()))
    write("jwt", "valid-previous-secret", token(claims(), secret=PREVIOUS))
    write("jwt", "valid-nbf", token(claims(nbf=NOW)))
    write("jwt", "iat-within-skew", token(claims(iat=NOW + 5)))
    write("jwt", "iat-beyond-skew", token(claims(iat=NOW + 6)))
    write("jwt", "expired", token(claims(exp=NOW)))
    write("jwt", "wrong-secret", token(claims(), secret=b"another-secret"))
    write("jwt", "alg-none", f"{b64(compact({'alg': 'none'}).encode())}.{b64(compact(claims()).encode())}.")
    write("jwt", "alg-hs384", token(claims(), header={"alg": "HS384", "typ": "JWT"}, digest=hashlib.sha384))
    write("jwt", "missing-sub", token(claims(sub=None)))
    write("jwt", "empty-sub", token(claims(sub="")))
    write("jwt", "token-version-string", token(claims(tokenVersion="1")))
    write("jwt", "token-version-float", token(claims(tokenVersion=1.5)))
    write("jwt", "role-root", token(claims(role="root")))
    write("jwt", "garbage", "a.b.c")
    write("jwt", "bearer-only", "Bearer ")


def subjects():
    names = ["lobby", "general", "developers", "cross", ">", "a.*", "*", "x.y", "a.b.c", " x", "plain",
             "members-only", USER_A, "alice@example.com", "edge-0", "team-a_1", "sb", "é" * 100, "👋 hi",
             "a\tb", "line\nbreak", "", "=", "YS4q", "Ym9i", "sb.deliver.user.Ym9i", "sb.deliver.user.",
             "sb.msg.batch.ZWRnZS0w", "x" * 129]
    for i, name in enumerate(names):
        write("subjects", f"name-{i:02}", name)


if __name__ == "__main__":
    client_events()
    wire_types()
    jwt()
    subjects()
