//! Evidence documents of a project (contracts, acceptance reports, audit and M&V reports,
//! invoices, meter photos): what may be uploaded, told from the content itself, and where:
//! the bytes once by SHA-256 in the document store (`cwsm_platform::documents`: a folder, or
//! S3-compatible object storage shared by every replica), what each is and which project it
//! belongs to in the service's database.

use cwsm_platform::auth::Principal;
use cwsm_platform::grpc::Page;
use cwsm_platform::{Error, Result, now_ms, with_db};

use crate::store::Store;

pub use cwsm_platform::documents::{MAX_DOCUMENT_BYTES, cited, media_type};

/// An evidence document as a project has it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Document {
    pub project_id: String,
    pub sha256: String,
    pub file_name: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub uploaded_by: String,
    pub uploaded_by_org: String,
    pub created_at_ms: i64,
}

const SELECT: &str = "SELECT p.project_id, p.sha256, p.file_name, d.media_type, d.size_bytes, p.uploaded_by, p.uploaded_by_org, p.created_at_ms \
                      FROM project_documents p JOIN documents d ON d.sha256 = p.sha256";

impl Store {
    /// Stores `content` as an evidence document of the project, for a party or the
    /// assigned verifier; returns it and whether the project had it already.
    pub async fn upload_evidence(
        &self,
        project_id: &str,
        file_name: &str,
        content: &[u8],
        who: &Principal,
    ) -> Result<(Document, bool)> {
        let project = self.project(project_id).await?;
        if !project.readable_by(who) {
            return Err(Error::not_found("project", project_id));
        }
        if !(project.party(who) || project.assigned_verifier(who)) {
            return Err(Error::denied(format!(
                "evidence of project {project_id} is uploaded by its parties or its assigned verifier"
            )));
        }
        if content.is_empty() {
            return Err(Error::invalid("chunk", "the document is empty"));
        }
        let media = media_type(file_name, content)?;
        let documents = self.documents()?;
        // The bytes first (content-addressed, so idempotent), then the rows that name them.
        let sha = documents.put(content).await?;
        let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
        let org = who.org.clone().unwrap_or_default();
        let now = now_ms();
        let added: u64 = with_db!(&self.db, pool => {
            let mut tx = cwsm_platform::db::BeginWrite::begin_write(pool).await?;
            sqlx::query("INSERT INTO documents (sha256, media_type, size_bytes, content, kept_in, created_at_ms) VALUES ($1, $2, $3, $4, 'objects', $5) ON CONFLICT (sha256) DO NOTHING")
                .bind(&sha).bind(media).bind(size).bind(Vec::<u8>::new()).bind(now).execute(&mut *tx).await?;
            let added = sqlx::query("INSERT INTO project_documents (project_id, sha256, file_name, uploaded_by, uploaded_by_org, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (project_id, sha256) DO NOTHING")
                .bind(project_id).bind(&sha).bind(file_name).bind(&who.subject).bind(&org).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            added
        });
        let (doc, _) = self.evidence(project_id, &sha, who).await?;
        Ok((doc, added == 0))
    }

    /// A document of the project and its content, for whoever may read the project.
    pub async fn evidence(
        &self,
        project_id: &str,
        sha256: &str,
        who: &Principal,
    ) -> Result<(Document, Vec<u8>)> {
        let project = self.project(project_id).await?;
        if !project.readable_by(who) {
            return Err(Error::not_found("project", project_id));
        }
        let sql = format!("{SELECT} WHERE p.project_id = $1 AND p.sha256 = $2");
        let doc: Option<Document> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id).bind(sha256).fetch_optional(pool).await?);
        let doc = doc.ok_or_else(|| Error::not_found("evidence document", sha256))?;
        let (kept_in, content): (String, Vec<u8>) = with_db!(&self.db, pool => sqlx::query_as("SELECT kept_in, content FROM documents WHERE sha256 = $1")
            .bind(sha256).fetch_one(pool).await?);
        if kept_in == "database" {
            // Uploaded before documents moved to the document store (migration documents_in_object_store: sqlite 0014, postgres 0015).
            return Ok((doc, content));
        }
        Ok((doc, self.documents()?.get(sha256).await?))
    }

    /// Where documents' bytes are kept, or why none can be.
    fn documents(&self) -> Result<&cwsm_platform::documents::DocumentStore> {
        cwsm_platform::documents::configured(self.documents.as_ref())
    }

    /// Checks that every document `text` cites ([`cited`]) was uploaded to the project:
    /// INVALID_ARGUMENT on `field` naming the first that was not.
    pub async fn check_cited(&self, project_id: &str, field: &str, text: &str) -> Result<()> {
        for sha in cited(text) {
            let found: Option<String> = with_db!(&self.db, pool => sqlx::query_scalar(
                "SELECT sha256 FROM project_documents WHERE project_id = $1 AND sha256 = $2")
                .bind(project_id).bind(&sha).fetch_optional(pool).await?);
            if found.is_none() {
                return Err(cwsm_platform::documents::not_uploaded(
                    field,
                    &sha,
                    "this project",
                ));
            }
        }
        Ok(())
    }

    /// A project's documents, oldest first.
    pub async fn evidence_list(
        &self,
        project_id: &str,
        page: &Page,
    ) -> Result<(Vec<Document>, String)> {
        let (after_ms, after_sha) = cwsm_platform::documents::page_after(page.after.as_deref());
        let sql = format!(
            "{SELECT} WHERE p.project_id = $1 AND (p.created_at_ms > $2 OR (p.created_at_ms = $2 AND p.sha256 > $3)) \
             ORDER BY p.created_at_ms, p.sha256 LIMIT $4"
        );
        let mut rows: Vec<Document> = with_db!(&self.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project_id).bind(after_ms).bind(after_sha).bind(page.fetch_limit()).fetch_all(pool).await?);
        let next = page.finish(&mut rows, |d| {
            cwsm_platform::documents::page_token(d.created_at_ms, &d.sha256)
        });
        Ok((rows, next))
    }
}
