//! Evidence documents of a plan's achievements (a retrofit's declaration, an acceptance
//! report, a photo of the works): the bytes once by SHA-256 in the document store
//! (`cwsm_platform::documents`), what each is and which plan it was uploaded to here. An
//! achievement's evidence cites one as `sha256:<hex>`, and must cite the plan's own.

use cwsm_platform::auth::Principal;
use cwsm_platform::documents::{DocumentStore, cited, media_type};
use cwsm_platform::grpc::Page;
use cwsm_platform::{Error, Result, now_ms, with_db};

use crate::Reporting;

/// An evidence document as a plan has it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct Document {
    pub plan_code: String,
    pub sha256: String,
    pub file_name: String,
    pub media_type: String,
    pub size_bytes: i64,
    pub uploaded_by: String,
    pub created_at_ms: i64,
}

const SELECT: &str = "SELECT p.plan_code, p.sha256, p.file_name, d.media_type, d.size_bytes, p.uploaded_by, p.created_at_ms \
                      FROM plan_documents p JOIN documents d ON d.sha256 = p.sha256";

impl Reporting {
    /// Keeps evidence documents' bytes in `documents`; call before serving.
    pub fn keep_documents_in(&mut self, documents: DocumentStore) {
        self.documents = Some(documents);
    }

    fn documents(&self) -> Result<&DocumentStore> {
        cwsm_platform::documents::configured(self.documents.as_ref())
    }

    /// Stores `content` as an evidence document of plan `plan_code`, for those who may record
    /// the plan's achievements; returns it and whether the plan had it already.
    pub async fn upload_evidence(
        &self,
        caller: &Principal,
        plan_code: &str,
        file_name: &str,
        content: &[u8],
    ) -> Result<(Document, bool)> {
        caller.require_admin("upload evidence of achievements")?;
        if plan_code.is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        let stored = self.store.plan_by_code(plan_code, 0).await?;
        crate::achievement::require_plan_jurisdiction(
            caller,
            "upload evidence of achievements",
            &stored.plan,
        )?;
        if content.is_empty() {
            return Err(Error::invalid("chunk", "the document is empty"));
        }
        let media = media_type(file_name, content)?;
        // The bytes first (content-addressed, so idempotent), then the rows that name them.
        let sha = self.documents()?.put(content).await?;
        let size = i64::try_from(content.len()).unwrap_or(i64::MAX);
        let now = now_ms();
        let code = stored.plan.code.as_str();
        let added: u64 = with_db!(&self.store.db, pool => {
            let mut tx = cwsm_platform::db::BeginWrite::begin_write(pool).await?;
            sqlx::query("INSERT INTO documents (sha256, media_type, size_bytes, created_at_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING")
                .bind(&sha).bind(media).bind(size).bind(now).execute(&mut *tx).await?;
            let added = sqlx::query("INSERT INTO plan_documents (plan_code, sha256, file_name, uploaded_by, created_at_ms) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (plan_code, sha256) DO NOTHING")
                .bind(code).bind(&sha).bind(file_name).bind(&caller.subject).bind(now)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            added
        });
        let doc = self.evidence_record(code, &sha).await?;
        Ok((doc, added == 0))
    }

    async fn evidence_record(&self, plan_code: &str, sha256: &str) -> Result<Document> {
        let sql = format!("{SELECT} WHERE p.plan_code = $1 AND p.sha256 = $2");
        let doc: Option<Document> = with_db!(&self.store.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(plan_code).bind(sha256).fetch_optional(pool).await?);
        doc.ok_or_else(|| Error::not_found("evidence document", sha256))
    }

    /// A document of plan `plan_code` and its content (achievements and their evidence are
    /// read by every signed-in caller).
    pub async fn evidence(&self, plan_code: &str, sha256: &str) -> Result<(Document, Vec<u8>)> {
        let doc = self.evidence_record(plan_code, sha256).await?;
        let content = self.documents()?.get(sha256).await?;
        Ok((doc, content))
    }

    /// Checks that every document `text` cites was uploaded to plan `plan_code`:
    /// INVALID_ARGUMENT on `field` naming the first that was not.
    pub async fn check_cited(&self, plan_code: &str, field: &str, text: &str) -> Result<()> {
        for sha in cited(text) {
            let found: Option<String> = with_db!(&self.store.db, pool => sqlx::query_scalar(
                "SELECT sha256 FROM plan_documents WHERE plan_code = $1 AND sha256 = $2")
                .bind(plan_code).bind(&sha).fetch_optional(pool).await?);
            if found.is_none() {
                return Err(cwsm_platform::documents::not_uploaded(
                    field,
                    &sha,
                    &format!("plan {plan_code}"),
                ));
            }
        }
        Ok(())
    }

    /// A plan's documents, oldest first.
    pub async fn evidence_list(
        &self,
        plan_code: &str,
        page: &Page,
    ) -> Result<(Vec<Document>, String)> {
        if plan_code.is_empty() {
            return Err(Error::invalid(
                "plan_code",
                "required, e.g. \"xinbei-2020\"",
            ));
        }
        let code = self.store.plan_by_code(plan_code, 0).await?.plan.code;
        let (after_ms, after_sha) = cwsm_platform::documents::page_after(page.after.as_deref());
        let sql = format!(
            "{SELECT} WHERE p.plan_code = $1 AND (p.created_at_ms > $2 OR (p.created_at_ms = $2 AND p.sha256 > $3)) \
             ORDER BY p.created_at_ms, p.sha256 LIMIT $4"
        );
        let mut rows: Vec<Document> = with_db!(&self.store.db, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&code).bind(after_ms).bind(after_sha).bind(page.fetch_limit()).fetch_all(pool).await?);
        let next = page.finish(&mut rows, |d| {
            cwsm_platform::documents::page_token(d.created_at_ms, &d.sha256)
        });
        Ok((rows, next))
    }
}
