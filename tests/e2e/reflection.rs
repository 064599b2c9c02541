//! Health and reflection need no token, and reflection describes the services well enough for a
//! client without the `.proto` files (grpcurl's way).

use cwsm_tests::{Backend, TestApp};
use prost::Message;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1;
use tonic_reflection::pb::v1alpha;

const SERVICES: [&str; 3] = [
    "cwsm.matching.v1.MatchingService",
    "cwsm.projects.v1.ProjectsService",
    "cwsm.reporting.v1.ReportingService",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1_and_v1alpha_list_and_describe_the_services() -> anyhow::Result<()> {
    let app = TestApp::start(Backend::Sqlite).await?;

    // v1: list services.
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let ask = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await?
        .into_inner();
    let reply = replies
        .next()
        .await
        .transpose()?
        .and_then(|r| r.message_response);
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) = reply
    else {
        anyhow::bail!("no service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in SERVICES {
        assert!(
            names.iter().any(|n| n == service),
            "{service} listed in {names:?}"
        );
    }
    assert!(names.iter().any(|n| n == "grpc.health.v1.Health"));

    // v1alpha (grpcurl 1.8): the file that defines ReportingService, with its methods.
    let mut old =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let ask = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "cwsm.reporting.v1.ReportingService".into(),
            ),
        ),
    };
    let mut replies = old
        .server_reflection_info(tokio_stream::iter(vec![ask]))
        .await?
        .into_inner();
    let reply = replies
        .next()
        .await
        .transpose()?
        .and_then(|r| r.message_response);
    let Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        reply
    else {
        anyhow::bail!("no file descriptor");
    };
    let methods: Vec<String> = files
        .file_descriptor_proto
        .iter()
        .filter_map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).ok())
        .flat_map(|file| file.service)
        .filter(|s| s.name() == "ReportingService")
        .flat_map(|s| s.method)
        .map(|m| m.name().to_string())
        .collect();
    assert!(methods.iter().any(|m| m == "GetReport"), "{methods:?}");
    assert!(methods.iter().any(|m| m == "WatchReport"), "{methods:?}");

    app.stop().await
}
