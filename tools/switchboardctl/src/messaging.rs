//! Commands for the messaging service: `notify`, `announce`, `history`.

use clap::Args;
use sb_proto::messaging::v1 as pb;
use sb_proto::messaging::v1::messaging_service_client::MessagingServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::{CliError, Service};
use crate::output::out;
use crate::output::{Format, Table, print_json, readable_rfc3339};

/// `notify` arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("audience").required(true).args(["user", "room", "all"]))]
#[command(after_help = "Examples:\n  \
    switchboardctl notify --room developers 'deploy at 17:00' --title Ops\n  \
    switchboardctl notify --user u42 'your export is ready'\n  \
    switchboardctl notify --all 'maintenance in 10 minutes'")]
pub struct NotifyArgs {
    /// Send to every socket of this user.
    // Empty values are refused here: the RPC reads an empty user and room as "everyone".
    #[arg(long, value_name = "ID", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    user: Option<String>,
    /// Send to the members of this room, on every edge.
    #[arg(long, value_name = "ROOM", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    room: Option<String>,
    /// Send to every connected user.
    #[arg(long)]
    all: bool,
    /// The notification's text.
    message: String,
    /// A title shown with it.
    #[arg(long)]
    title: Option<String>,
}

/// `history` arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("scope").required(true).args(["room", "between"]))]
#[command(after_help = "Examples:\n  \
    switchboardctl history --room developers --limit 20\n  \
    switchboardctl history --between u1 u2 -o json\n  \
    switchboardctl history --room developers --before 0198a3c2-5b7e-7c11-9d0e-2f6a1b3c4d5e")]
pub struct HistoryArgs {
    /// A room's messages.
    #[arg(long)]
    room: Option<String>,
    /// The private conversation between two users.
    #[arg(long, num_args = 2, value_names = ["USER_A", "USER_B"])]
    between: Option<Vec<String>>,
    /// How many messages, newest first (1..=100).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    limit: u32,
    /// Only messages older than this message id (for the next page).
    #[arg(long, value_name = "ID")]
    before: Option<String>,
}

fn messaging(client: &Client) -> Result<MessagingServiceClient<Channel>, CliError> {
    Ok(MessagingServiceClient::new(client.channel(Service::Messaging)?))
}

fn failed(client: &Client, rpc: &'static str) -> impl Fn(tonic::Status) -> CliError + use<> {
    let target = client.target(Service::Messaging);
    move |status| CliError::from_status(&target, rpc, &status)
}

/// `notify`: a `notification` event to a user, a room or everyone.
pub async fn notify(client: &Client, args: NotifyArgs) -> Result<(), CliError> {
    let (audience, target) = match (&args.user, &args.room) {
        (Some(user), _) => ("user", json!({"user_id": user})),
        (None, Some(room)) => ("room", json!({"room": room})),
        (None, None) => ("all", json!({"all": true})),
    };
    let request = pb::NotifyRequest {
        user_id: args.user.clone().unwrap_or_default(),
        room: args.room.clone().unwrap_or_default(),
        title: args.title.unwrap_or_default(),
        message: args.message,
    };
    let sent = messaging(client)?
        .notify(client.authed(request)?)
        .await
        .map_err(|status| {
            let user = args.user.clone().unwrap_or_default();
            failed(client, "Notify")(status).not_found_as(|| format!("no user with id {user}"))
        })?
        .into_inner();
    match client.format {
        Format::Json => print_json(&json!({"id": sent.id, "timestamp": sent.timestamp, "to": target})),
        Format::Table => {
            let whom = match audience {
                "user" => format!("user {}", args.user.unwrap_or_default()),
                "room" => format!("room {}", args.room.unwrap_or_default()),
                _ => "everyone".to_owned(),
            };
            out!("notification {} sent to {whom} at {} UTC", sent.id, readable_rfc3339(&sent.timestamp));
        }
    }
    Ok(())
}

/// `announce`: an `admin_announcement` to everyone, from the caller.
pub async fn announce(client: &Client, message: String) -> Result<(), CliError> {
    let sent = messaging(client)?
        .announce(client.authed(pb::AnnounceRequest { message })?)
        .await
        .map_err(failed(client, "Announce"))?
        .into_inner();
    match client.format {
        Format::Json => print_json(&json!({"id": sent.id, "timestamp": sent.timestamp})),
        Format::Table => out!("announcement {} sent at {} UTC", sent.id, readable_rfc3339(&sent.timestamp)),
    }
    Ok(())
}

fn some(text: &str) -> Option<&str> {
    Some(text).filter(|text| !text.is_empty())
}

/// `history`: stored messages of a room or a conversation, newest first.
pub async fn history(client: &Client, args: HistoryArgs) -> Result<(), CliError> {
    let scope = match (args.room, args.between) {
        (Some(room), _) => pb::history_request::Scope::Room(room),
        (None, Some(pair)) => {
            let [user_a, user_b]: [String; 2] =
                pair.try_into().map_err(|_| CliError::Usage("--between takes two user ids".to_owned()))?;
            pb::history_request::Scope::Conversation(pb::Conversation { user_a, user_b })
        }
        (None, None) => unreachable!("clap requires --room or --between"),
    };
    let request = pb::HistoryRequest { scope: Some(scope), before: args.before.unwrap_or_default(), limit: args.limit };
    let page =
        messaging(client)?.history(client.authed(request)?).await.map_err(failed(client, "History"))?.into_inner();
    match client.format {
        Format::Json => print_json(&json!({
            "messages": page.messages.iter().map(|message| json!({
                "id": message.id,
                "kind": message.kind,
                "from": {"id": message.from_id, "email": message.from_email},
                "room": some(&message.room),
                "to": some(&message.to),
                "message": message.message,
                "timestamp": message.timestamp,
            })).collect::<Vec<_>>(),
            "next_before": some(&page.next_before),
        })),
        Format::Table if page.messages.is_empty() => eprintln!("no messages"),
        Format::Table => {
            let mut table = Table::new(&["ID", "TIME (UTC)", "FROM", "TO", "MESSAGE"]);
            for message in &page.messages {
                let to = match (some(&message.room), some(&message.to)) {
                    (Some(room), _) => format!("#{room}"),
                    (None, Some(user)) => user.to_owned(),
                    (None, None) => "everyone".to_owned(),
                };
                let from = some(&message.from_email).unwrap_or(&message.from_id).to_owned();
                let text: String = message.message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
                table.row(vec![message.id.clone(), readable_rfc3339(&message.timestamp), from, to, text]);
            }
            table.print();
            if let Some(next) = some(&page.next_before) {
                eprintln!("older messages: --before {next}");
            }
        }
    }
    Ok(())
}
