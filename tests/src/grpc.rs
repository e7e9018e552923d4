//! What every service's gRPC server must also serve: reflection (v1).
//! [`list_services`] asks it which services it advertises, as `grpcurl list`
//! would.

use anyhow::{Context as _, bail};
use tonic::transport::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// The fully qualified names of the services the server behind `channel`
/// lists through gRPC reflection v1.
pub async fn list_services(channel: Channel) -> anyhow::Result<Vec<String>> {
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures_util::stream::iter([request]))
        .await
        .context("call reflection")?
        .into_inner();
    let response = responses.message().await.context("read the reflection answer")?.context("no reflection answer")?;
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        bail!("unexpected reflection answer: {response:?}");
    };
    Ok(list.service.into_iter().map(|service| service.name).collect())
}
