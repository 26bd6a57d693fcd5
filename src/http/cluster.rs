//! `GET /cluster/nodes`: the nodes sharing this deployment's PostgreSQL,
//! their heartbeats and the instances each drives.

use actix_web::{http::StatusCode, web, HttpResponse};

use super::{answer, error::ApiError, AppState, Caller};
use crate::{cluster::NodeView, domain::InstanceName};

/// List the cluster's nodes.
///
/// The admin key sees every node with every instance it drives; an
/// instance key sees the same nodes with only its own instance. On the
/// embedded database (a single node) the list is empty.
#[utoipa::path(
    get, path = "/cluster/nodes", tag = "operations", operation_id = "clusterNodes",
    responses(
        (status = 200, description = "The nodes, by id", body = Vec<NodeView>, example = json!([
            {"id": "node-a", "address": "http://10.0.0.1:8080", "version": "0.1.0",
             "startedAt": "2026-11-30T02:08:39.311910Z", "lastHeartbeat": "2026-11-30T02:09:04.101000Z",
             "alive": true, "instances": ["alpha"]}])),
    ),
)]
pub async fn nodes(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut nodes = state.service.cluster_nodes().await?;
    for node in &mut nodes {
        node.instances
            .retain(|name| InstanceName::parse(name).is_ok_and(|name| caller.0.can_see(&name)));
    }
    answer(StatusCode::OK, &nodes)
}
