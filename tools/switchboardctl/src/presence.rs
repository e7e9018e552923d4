//! Commands for the presence service: `online`, `sessions`, `rooms members`.

use clap::Subcommand;
use sb_proto::presence::v1 as pb;
use sb_proto::presence::v1::presence_service_client::PresenceServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::{CliError, Service};

use crate::output::{Format, Table, print_json, readable_ms, rfc3339_ms};

/// `rooms …`
#[derive(Debug, Subcommand)]
pub enum RoomsCommand {
    /// The users in a room, cluster-wide, ordered by id.
    #[command(after_help = "Example:\n  switchboardctl rooms members developers -o json")]
    Members {
        /// The room.
        room: String,
        /// Members per page (1..=1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after a previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
    },
}

fn presence(client: &Client) -> Result<PresenceServiceClient<Channel>, CliError> {
    Ok(PresenceServiceClient::new(client.channel(Service::Presence)?))
}

fn failed(client: &Client, rpc: &'static str) -> impl Fn(tonic::Status) -> CliError + use<> {
    let target = client.target(Service::Presence);
    move |status| CliError::from_status(&target, rpc, &status)
}

fn users_json(users: &[pb::OnlineUser]) -> Vec<serde_json::Value> {
    users.iter().map(|user| json!({"id": user.id, "email": user.email})).collect()
}

fn print_users(users: &[pb::OnlineUser], count: u64, next_cursor: &str, nobody: &str) {
    if users.is_empty() {
        eprintln!("{nobody}");
        return;
    }
    let mut table = Table::new(&["ID", "EMAIL"]);
    for user in users {
        table.row(vec![user.id.clone(), user.email.clone()]);
    }
    table.print();
    if !next_cursor.is_empty() {
        eprintln!("{} of {count} shown; more: --cursor {next_cursor}", users.len());
    }
}

/// `online`: who is online, cluster-wide.
pub async fn online(client: &Client, limit: u32, cursor: Option<String>) -> Result<(), CliError> {
    let request = pb::ListOnlineRequest { limit, cursor: cursor.unwrap_or_default() };
    let page = presence(client)?
        .list_online(client.authed(request)?)
        .await
        .map_err(failed(client, "ListOnline"))?
        .into_inner();
    match client.format {
        Format::Json => print_json(&json!({
            "users": users_json(&page.users),
            "count": page.count,
            "next_cursor": Some(&page.next_cursor).filter(|cursor| !cursor.is_empty()),
        })),
        Format::Table => print_users(&page.users, page.count, &page.next_cursor, "no users online"),
    }
    Ok(())
}

/// `sessions USER`: a user's live sockets, with their edge, transport and rooms.
pub async fn sessions(client: &Client, user_id: String) -> Result<(), CliError> {
    let response = presence(client)?
        .get_user(client.authed(pb::GetUserRequest { id: user_id.clone() })?)
        .await
        .map_err(failed(client, "GetUser"))?
        .into_inner();
    // Presence knows only who is online; auth tells an offline user from none.
    if !response.online && !crate::auth::user_exists(client, &user_id).await? {
        return Err(CliError::NotFound(format!("no user with id {user_id}")));
    }
    let user = response.user.unwrap_or_default();
    match client.format {
        Format::Json => print_json(&json!({
            "user": {"id": user.id, "email": Some(&user.email).filter(|email| !email.is_empty())},
            "online": response.online,
            "sessions": response.sessions.iter().map(|session| json!({
                "edge_id": session.edge_id,
                "socket_id": session.socket_id,
                "transport": Some(&session.transport).filter(|transport| !transport.is_empty()),
                "connected_at": rfc3339_ms(session.connected_at_ms),
                "rooms": session.rooms,
            })).collect::<Vec<_>>(),
            "rooms": response.rooms,
        })),
        Format::Table if response.sessions.is_empty() => eprintln!("{user_id} is offline"),
        Format::Table => {
            let mut table = Table::new(&["EDGE", "SOCKET", "TRANSPORT", "CONNECTED (UTC)", "ROOMS"]);
            for session in &response.sessions {
                table.row(vec![
                    session.edge_id.clone(),
                    session.socket_id.clone(),
                    if session.transport.is_empty() { "-".to_owned() } else { session.transport.clone() },
                    readable_ms(session.connected_at_ms),
                    if session.rooms.is_empty() { "-".to_owned() } else { session.rooms.join(",") },
                ]);
            }
            table.print();
        }
    }
    Ok(())
}

/// `rooms …`.
pub async fn run_rooms(client: &Client, command: RoomsCommand) -> Result<(), CliError> {
    match command {
        RoomsCommand::Members { room, limit, cursor } => {
            let request = pb::RoomMembersRequest { room, limit, cursor: cursor.unwrap_or_default() };
            let page = presence(client)?
                .room_members(client.authed(request)?)
                .await
                .map_err(failed(client, "RoomMembers"))?
                .into_inner();
            match client.format {
                Format::Json => print_json(&json!({
                    "room": page.room,
                    "members": users_json(&page.members),
                    "count": page.count,
                    "next_cursor": Some(&page.next_cursor).filter(|cursor| !cursor.is_empty()),
                })),
                Format::Table => {
                    let nobody = format!("nobody is in {}", page.room);
                    print_users(&page.members, page.count, &page.next_cursor, &nobody);
                }
            }
        }
    }
    Ok(())
}
