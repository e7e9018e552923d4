//! Edge control (`switchboard.edge.v1.EdgeControl`, served by presence):
//! `kick`, `edges list`, `edges drain`.

use std::time::Duration;

use clap::Subcommand;
use sb_proto::edge::v1 as pb;
use sb_proto::edge::v1::edge_control_client::EdgeControlClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::client::Client;
use crate::error::{CliError, Service};
use crate::output::out;
use crate::output::{Format, Table, print_json, readable_ms, rfc3339_ms};

/// `edges …`
#[derive(Debug, Subcommand)]
pub enum EdgesCommand {
    /// The edges that sent a heartbeat recently, with their sockets and users.
    #[command(after_help = "Example:\n  switchboardctl edges list -o json")]
    List,
    /// Drain one edge: it fails readiness, refuses new connections and closes
    /// its sockets gradually, so clients reconnect to other edges.
    #[command(after_help = "Example:\n  switchboardctl edges drain edge-7f3a --over 2m")]
    Drain {
        /// The edge's id (see `edges list`).
        edge: String,
        /// How long to spread the closes over (default: the edge's DRAIN_DURATION).
        #[arg(long, value_parser = sb_config::duration_between(Duration::from_millis(1), Duration::from_secs(86_400)))]
        over: Option<Duration>,
    },
}

fn edge_control(client: &Client) -> Result<EdgeControlClient<Channel>, CliError> {
    Ok(EdgeControlClient::new(client.channel(Service::Presence)?))
}

fn failed(client: &Client, rpc: &'static str) -> impl Fn(tonic::Status) -> CliError + use<> {
    let target = client.target(Service::Presence);
    move |status| CliError::from_status(&target, rpc, &status)
}

/// `kick USER`: disconnects every socket of the user on every edge.
pub async fn kick(client: &Client, user_id: String, reason: Option<String>) -> Result<(), CliError> {
    let request = pb::KickRequest { user_id: user_id.clone(), reason: reason.unwrap_or_default() };
    let kicked = edge_control(client)?
        .kick(client.authed(request)?)
        .await
        .map_err(|status| failed(client, "Kick")(status).not_found_as(|| format!("no user with id {user_id}")))?
        .into_inner();
    match client.format {
        Format::Json => print_json(&json!({"user_id": user_id, "sockets": kicked.sockets, "edges": kicked.edges})),
        Format::Table => {
            out!("kicked {user_id}: {} socket(s) disconnected ({} edge(s) answered)", kicked.sockets, kicked.edges)
        }
    }
    Ok(())
}

/// `edges …`.
pub async fn run_edges(client: &Client, command: EdgesCommand) -> Result<(), CliError> {
    let mut grpc = edge_control(client)?;
    match command {
        EdgesCommand::List => {
            let edges = grpc
                .list_edges(client.authed(pb::ListEdgesRequest {})?)
                .await
                .map_err(failed(client, "ListEdges"))?
                .into_inner()
                .edges;
            match client.format {
                Format::Json => print_json(&json!({
                    "edges": edges.iter().map(|edge| json!({
                        "id": edge.id,
                        "address": Some(&edge.address).filter(|address| !address.is_empty()),
                        "version": edge.version,
                        "sockets": edge.sockets,
                        "users": edge.users,
                        "draining": edge.draining,
                        "last_heartbeat": rfc3339_ms(edge.last_heartbeat_ms),
                    })).collect::<Vec<_>>(),
                })),
                Format::Table if edges.is_empty() => eprintln!("no edges"),
                Format::Table => {
                    let mut table =
                        Table::new(&["ID", "ADDRESS", "VERSION", "SOCKETS", "USERS", "STATE", "LAST HEARTBEAT (UTC)"]);
                    for edge in edges {
                        table.row(vec![
                            edge.id,
                            if edge.address.is_empty() { "-".to_owned() } else { edge.address },
                            edge.version,
                            edge.sockets.to_string(),
                            edge.users.to_string(),
                            if edge.draining { "draining" } else { "serving" }.to_owned(),
                            readable_ms(edge.last_heartbeat_ms),
                        ]);
                    }
                    table.print();
                }
            }
        }
        EdgesCommand::Drain { edge, over } => {
            let request = pb::DrainRequest {
                edge_id: edge.clone(),
                over: over.map(sb_config::format_duration).unwrap_or_default(),
            };
            let drained = grpc
                .drain(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "Drain")(status).not_found_as(|| format!("no edge with id {edge}")))?
                .into_inner();
            match client.format {
                Format::Json => print_json(&json!({
                    "edge_id": drained.edge_id,
                    "sockets": drained.sockets,
                    "over_ms": drained.over_ms,
                })),
                Format::Table => out!(
                    "draining {}: closing {} socket(s) over {}",
                    drained.edge_id,
                    drained.sockets,
                    sb_config::format_duration(Duration::from_millis(drained.over_ms))
                ),
            }
        }
    }
    Ok(())
}
