//! What every service's gRPC server must also serve: reflection (v1 and v1alpha).
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

/// What a client that speaks only reflection `v1alpha` (Python grpcio's
/// reflection client, `grpc_cli`, older grpcurl) learns from the server
/// behind `channel`: each listed service with the names of the files that
/// describe it (`file_containing_symbol`), dependencies included.
pub async fn describe_services_v1alpha(channel: Channel) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    use prost::Message as _;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    use tonic_reflection::pb::v1alpha::{ServerReflectionRequest, ServerReflectionResponse};

    async fn ask(client: &mut AlphaClient<Channel>, request: AlphaRequest) -> anyhow::Result<ServerReflectionResponse> {
        let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
        let mut responses = client
            .server_reflection_info(futures_util::stream::iter([request]))
            .await
            .context("call reflection v1alpha")?
            .into_inner();
        responses.message().await.context("read the v1alpha answer")?.context("no v1alpha answer")
    }

    let mut client = AlphaClient::new(channel);
    let response = ask(&mut client, AlphaRequest::ListServices(String::new())).await?;
    let Some(AlphaResponse::ListServicesResponse(list)) = response.message_response else {
        bail!("unexpected v1alpha answer to list_services: {response:?}");
    };
    let mut described = Vec::new();
    for service in list.service {
        let response = ask(&mut client, AlphaRequest::FileContainingSymbol(service.name.clone())).await?;
        let Some(AlphaResponse::FileDescriptorResponse(files)) = response.message_response else {
            bail!("no file descriptor for {}: {response:?}", service.name);
        };
        let mut names = Vec::new();
        for bytes in files.file_descriptor_proto {
            let file =
                prost_types::FileDescriptorProto::decode(bytes.as_slice()).context("decode a file descriptor")?;
            let short = service.name.rsplit('.').next().unwrap_or_default();
            if file.service.iter().any(|s| s.name() == short) {
                names.insert(0, file.name().to_owned());
            } else {
                names.push(file.name().to_owned());
            }
        }
        described.push((service.name, names));
    }
    Ok(described)
}

/// Waits (up to `within`) until the gRPC health of `service` (`""` for the
/// whole server) at `addr` says `SERVING`, as a readiness probe would see it.
/// The health service follows the service's readiness a moment later, so a
/// test that asserts on it waits for this first.
pub async fn wait_serving(addr: std::net::SocketAddr, service: &str, within: std::time::Duration) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    crate::wait_until(&format!("gRPC health of {service:?} at {addr} to say SERVING"), within, || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?.connect().await.ok()?;
        let request = HealthCheckRequest { service: service.to_owned() };
        let status = HealthClient::new(channel).check(request).await.ok()?.into_inner().status();
        (status == ServingStatus::Serving).then_some(())
    })
    .await;
}
