//! `cwsm projects …`: contract projects and their lifecycle.

use clap::{Args, Subcommand};
use cwsm_platform::vocab::ContractModel;
use cwsm_proto::projects::v1 as ppb;

use super::{Clients, Connection, Output, name_of, request_id, stage_name};

#[derive(Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    pub conn: Connection,
    #[command(subcommand)]
    pub command: ProjectsCommand,
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    List {
        /// Stage code, e.g. operating.
        #[arg(long, default_value = "")]
        stage: String,
    },
    /// Move a project to a stage (implementing, commissioned, accepted, operating, handed_over, …).
    Move {
        project_id: String,
        stage: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub async fn projects(args: ProjectsArgs) -> anyhow::Result<()> {
    let ProjectsArgs { conn, command } = args;
    let c = Clients::connect(&conn).await?;
    match command {
        ProjectsCommand::List { stage } => {
            let stage_number = if stage.is_empty() {
                0
            } else {
                ppb::ProjectStage::from_str_name(&format!("PROJECT_STAGE_{}", stage.to_uppercase()))
                    .map(|s| s as i32)
                    .ok_or_else(|| anyhow::anyhow!("unknown stage {stage:?}"))?
            };
            let reply = c
                .projects()
                .list_projects(ppb::ListProjectsRequest {
                    stage: stage_number,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let rows = reply
                .projects
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.title.clone(),
                        p.company
                            .as_ref()
                            .map(|x| x.name.clone())
                            .unwrap_or_default(),
                        p.water_user
                            .as_ref()
                            .map(|x| x.name.clone())
                            .unwrap_or_default(),
                        name_of(
                            p.contract_model,
                            ContractModel::from_number,
                            ContractModel::code,
                        ),
                        stage_name(p.stage),
                    ]
                })
                .collect();
            Output {
                headers: vec!["id", "title", "company", "water_user", "model", "stage"],
                rows,
            }
            .print(conn.json);
        }
        ProjectsCommand::Move {
            project_id,
            stage,
            reason,
        } => {
            let to = ppb::ProjectStage::from_str_name(&format!(
                "PROJECT_STAGE_{}",
                stage.to_uppercase()
            ))
            .ok_or_else(|| anyhow::anyhow!("unknown stage {stage:?}"))?;
            let reply = c
                .projects()
                .transition_project(ppb::TransitionProjectRequest {
                    request_id: request_id(),
                    project_id,
                    to_stage: to as i32,
                    reason,
                    expected_version: 0,
                    evidence: String::new(),
                })
                .await?
                .into_inner();
            let p = reply.project.unwrap_or_default();
            Output {
                headers: vec!["id", "title", "stage", "version"],
                rows: vec![vec![
                    p.id,
                    p.title,
                    stage_name(p.stage),
                    p.version.to_string(),
                ]],
            }
            .print(conn.json);
        }
    }
    Ok(())
}
