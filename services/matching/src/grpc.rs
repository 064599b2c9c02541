//! The matching API: who may do what, request ids, and the acceptance event. Reads are open to
//! every authenticated caller (the marketplace is public to its members) with three exceptions:
//! draft and withdrawn offerings are their company's; a request is its water user's while in
//! draft, and an invited-only request is seen only by the invited companies (besides its water
//! user and administrators); a proposal is seen by its company and the request's water user. What
//! a caller may not see answers NOT_FOUND, as if it did not exist. Writes need the caller to act
//! for the organization concerned (its unified social credit code is the token's `org`), in the
//! role the organization has here, or to administer its jurisdiction (see `Principal::acts_as`):
//! a company's where it is registered, a water user's where its town is. Administrators see
//! what every member sees, and besides everything of the organizations of their jurisdiction
//! (drafts, the requests and proposals of its water users); operators everything. Contact
//! details of companies and water users are shown to those administrators, to the organization
//! itself and to a counterparty once a proposal links them; others get the record with the
//! contact empty.

use std::sync::Arc;

use cwsm_platform::auth::{Principal, Reach, Role, principal};
use cwsm_platform::bus::{Envelope, topics};
use cwsm_platform::grpc::{Page, timestamp};
use cwsm_platform::idempotency::RequestKey;
use cwsm_platform::jurisdiction::Jurisdiction;
use cwsm_platform::lang::Lang;
use cwsm_platform::vocab::{CertificationGrade, ContractModel, Sector, Technology};
use cwsm_platform::{Error, Result, new_id, now_ms};
use cwsm_proto::events::v1 as events;
use cwsm_proto::matching::v1 as pb;
use cwsm_proto::matching::v1::matching_service_server::MatchingService;
use cwsm_proto::types;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::convert::{self, filter};
use crate::domain::*;
use crate::ranking;
use crate::store::{ListFilter, Owner, Store};

pub struct MatchingApi {
    pub store: Store,
    /// Wakes the outbox relay after a commit that wrote an event.
    pub on_change: Arc<dyn Fn() + Send + Sync>,
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str> {
    let v = value.trim();
    if v.is_empty() {
        Err(Error::invalid(field, "required"))
    } else {
        Ok(v)
    }
}

/// Whether `who` acts for `owner` in the role it has here (a company record: a company token;
/// a water user's: a water-user token) or administers its jurisdiction.
fn acts_for(who: &Principal, role: Role, owner: &Owner) -> bool {
    who.acts_as(
        role,
        &owner.credit_code,
        &Jurisdiction::of_stored(&owner.jurisdiction_code),
    )
}

/// PERMISSION_DENIED unless [`acts_for`], saying who may.
fn must_act_as(who: &Principal, role: Role, owner: &Owner, what: &str) -> Result<()> {
    let credit_code = &owner.credit_code;
    if acts_for(who, role, owner) {
        Ok(())
    } else if who.is_admin() {
        Err(Error::denied(format!(
            "{what} ({credit_code}) belongs to jurisdiction {}, and the caller administers {} only",
            Jurisdiction::of_stored(&owner.jurisdiction_code),
            who.scope
        )))
    } else {
        Err(Error::denied(format!(
            "only {what} (a {role} token with org {credit_code}) or an administrator of its jurisdiction may do this"
        )))
    }
}

/// Most excluded offerings a ranking lists (their total is in `excluded_total`).
const MAX_EXCLUDED: usize = 100;

/// A ListFittingRequests page token: the score and id of the last request of the page.
fn fitting_key(score: f64, id: &str) -> String {
    format!("{:016x}/{id}", score.to_bits())
}

fn parse_fitting_key(key: &str) -> Result<(f64, String)> {
    let bad = || Error::invalid("page_token", "not a token this server issued");
    let (bits, id) = key.split_once('/').ok_or_else(bad)?;
    let bits = u64::from_str_radix(bits, 16).map_err(|_| bad())?;
    Ok((f64::from_bits(bits), id.to_string()))
}

/// Whose contact details (names, phones, e-mails) a caller sees: services and operators
/// everyone's, an administrator those of the organizations inside its jurisdiction, an
/// organization its own, and a counterparty once a proposal links them.
struct ContactsSeen {
    viewer: Viewer,
    linked: std::collections::HashSet<String>,
}

impl ContactsSeen {
    fn company(&self, c: &Company) -> bool {
        self.viewer.administers(&c.profile.jurisdiction_code)
            || self.viewer.is_company(&c.id)
            || (self.viewer.water_user_id.is_some() && self.linked.contains(&c.id))
    }

    fn water_user(&self, u: &WaterUser) -> bool {
        self.viewer.administers(&u.profile.jurisdiction_code)
            || self.viewer.is_water_user(&u.id)
            || (self.viewer.company_id.is_some() && self.linked.contains(&u.id))
    }

    fn company_out(&self, c: &Company) -> pb::Company {
        let mut out = convert::company(c);
        if !self.company(c) {
            out.contact = Some(types::Contact::default());
        }
        out
    }

    fn water_user_out(&self, u: &WaterUser) -> pb::WaterUser {
        let mut out = convert::water_user(u);
        if !self.water_user(u) {
            out.contact = Some(types::Contact::default());
        }
        out
    }
}

impl MatchingApi {
    /// Who the caller is in the marketplace: its company or water user record, if any.
    async fn viewer(&self, who: &Principal) -> Result<Viewer> {
        if who.role == Role::Service {
            return Ok(Viewer::everything());
        }
        if who.is_admin() {
            return Ok(match who.reach() {
                Reach::Everything => Viewer::everything(),
                Reach::Codes(codes) => Viewer {
                    reach: Some(codes),
                    ..Viewer::default()
                },
                // A department's administrator: what every member sees.
                Reach::Nothing => Viewer::default(),
            });
        }
        let Some(org) = who.org.as_deref() else {
            return Ok(Viewer::default());
        };
        let mut viewer = Viewer::default();
        match who.role {
            Role::Company => {
                viewer.company_id = self
                    .store
                    .company_by_credit_code(org)
                    .await
                    .ok()
                    .map(|c| c.id);
            }
            Role::WaterUser => {
                viewer.water_user_id = self
                    .store
                    .water_user_by_credit_code(org)
                    .await
                    .ok()
                    .map(|u| u.id);
            }
            _ => {}
        }
        Ok(viewer)
    }

    async fn contacts_seen(&self, who: &Principal) -> Result<ContactsSeen> {
        let viewer = self.viewer(who).await?;
        let linked = if viewer.all {
            Default::default()
        } else {
            self.store.linked_counterparts(&viewer).await?
        };
        Ok(ContactsSeen { viewer, linked })
    }

    /// Whether the caller administers the jurisdiction of water user `id` (of company `id`
    /// with `company`), when it administers one at all.
    async fn administers(&self, viewer: &Viewer, company: bool, id: &str) -> Result<bool> {
        if viewer.all {
            return Ok(true);
        }
        if viewer.reach.is_none() {
            return Ok(false);
        }
        let owner = if company {
            self.store.company_owner(id).await?
        } else {
            self.store.water_user_owner(id).await?
        };
        Ok(viewer.administers(&owner.jurisdiction_code))
    }

    /// The request, if the caller may see it; NOT_FOUND otherwise.
    async fn visible_request(&self, viewer: &Viewer, id: &str) -> Result<ProjectRequest> {
        let found = self.store.request(id).await?;
        if found.visible_to(viewer)
            || self
                .administers(viewer, false, &found.draft.water_user_id)
                .await?
        {
            Ok(found)
        } else {
            Err(Error::not_found("project request", id))
        }
    }

    /// The proposal, if the caller is its company, the request's water user or an
    /// administrator of that water user.
    async fn visible_proposal(&self, viewer: &Viewer, id: &str) -> Result<Proposal> {
        let found = self.store.proposal(id).await?;
        if viewer.all || viewer.is_company(&found.draft.company_id) {
            return Ok(found);
        }
        if viewer.water_user_id.is_some() || viewer.reach.is_some() {
            let req = self.store.request(&found.draft.project_request_id).await?;
            if viewer.is_water_user(&req.draft.water_user_id)
                || self
                    .administers(viewer, false, &req.draft.water_user_id)
                    .await?
            {
                return Ok(found);
            }
        }
        Err(Error::not_found("proposal", id))
    }

    /// Every invited company must exist.
    async fn check_invited(&self, draft: &RequestDraft) -> Result<()> {
        for id in &draft.invited_company_ids {
            if let Err(Error::NotFound { .. }) = self.store.company(id).await {
                return Err(Error::invalid(
                    "project_request.invited_company_ids",
                    format!("no company {id}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks that `who` may write for company `company_id`; returns who it is.
    async fn company_for_write(&self, who: &Principal, company_id: &str) -> Result<Owner> {
        let owner = self.store.company_owner(company_id).await?;
        must_act_as(who, Role::Company, &owner, "the company")?;
        Ok(owner)
    }

    /// Checks that `who` may write for water user `water_user_id`; returns who it is.
    async fn user_for_write(&self, who: &Principal, water_user_id: &str) -> Result<Owner> {
        let owner = self.store.water_user_owner(water_user_id).await?;
        must_act_as(who, Role::WaterUser, &owner, "the water user")?;
        Ok(owner)
    }

    async fn request_reply(&self, r: &ProjectRequest) -> Result<pb::ProjectRequest> {
        let user = self.store.water_user(&r.draft.water_user_id).await.ok();
        Ok(convert::project_request(r, user.as_ref()))
    }

    async fn proposal_reply(&self, p: &Proposal) -> Result<pb::Proposal> {
        let company = self.store.company(&p.draft.company_id).await.ok();
        let price = self
            .store
            .request(&p.draft.project_request_id)
            .await
            .map(|r| r.draft.price_fen_per_m3)
            .unwrap_or_default();
        Ok(convert::proposal(p, company.as_ref(), price))
    }

    /// Checks and applies a request status change by its water user.
    #[allow(clippy::too_many_arguments)]
    async fn move_request(
        &self,
        key: &RequestKey,
        who: &Principal,
        id: &str,
        expected_version: i64,
        from: &[RequestStatus],
        to: RequestStatus,
        reason: &str,
    ) -> Result<pb::ProjectRequest> {
        let id = required_id("project_request_id", id)?;
        let current = self.store.request(id).await?;
        self.user_for_write(who, &current.draft.water_user_id)
            .await?;
        if to == RequestStatus::Open
            && current.status != RequestStatus::Open
            && current.deadline_passed(today_cst())
        {
            return Err(Error::precondition(format!(
                "the proposal deadline of project request {id} ({}) has passed; set a new one before opening it",
                current.draft.proposal_deadline
            )));
        }
        let moved = self
            .store
            .set_request_status(key, id, expected_version, from, to, reason)
            .await?;
        self.request_reply(&moved).await
    }

    async fn move_offering(
        &self,
        key: &RequestKey,
        who: &Principal,
        id: &str,
        expected_version: i64,
        from: &[OfferingStatus],
        to: OfferingStatus,
    ) -> Result<pb::Offering> {
        let id = required_id("offering_id", id)?;
        let current = self.store.offering(id).await?;
        self.company_for_write(who, &current.draft.company_id)
            .await?;
        let moved = self
            .store
            .set_offering_status(key, id, expected_version, from, to)
            .await?;
        Ok(convert::offering(&moved))
    }
}

#[tonic::async_trait]
impl MatchingService for MatchingApi {
    // -- companies ----------------------------------------------------------------------------

    async fn create_company(
        &self,
        request: Request<pb::CreateCompanyRequest>,
    ) -> Reply<pb::CreateCompanyResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "CreateCompany", "", &r.request_id, &r)?;
        let mut profile = convert::company_profile(
            r.company
                .ok_or_else(|| Error::invalid("company", "required"))?,
        )?;
        profile.validate("company")?;
        let owner = Owner {
            credit_code: profile.credit_code.clone(),
            jurisdiction_code: profile.jurisdiction_code.clone(),
        };
        if !acts_for(&who, Role::Company, &owner) {
            return Err(Error::denied("a company registers itself: the token's role must be company and its org the company's credit code (or an administrator of the jurisdiction it registers in)").into());
        }
        let company = self.store.create_company(&key, &profile).await?;
        Ok(Response::new(pb::CreateCompanyResponse {
            company: Some(convert::company(&company)),
        }))
    }

    async fn get_company(
        &self,
        request: Request<pb::GetCompanyRequest>,
    ) -> Reply<pb::GetCompanyResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let company = if !r.company_id.trim().is_empty() {
            self.store.company(r.company_id.trim()).await?
        } else if !r.credit_code.trim().is_empty() {
            self.store
                .company_by_credit_code(r.credit_code.trim())
                .await?
        } else {
            return Err(Error::invalid(
                "company_id",
                "name the company by company_id or credit_code",
            )
            .into());
        };
        let seen = self.contacts_seen(&who).await?;
        Ok(Response::new(pb::GetCompanyResponse {
            company: Some(seen.company_out(&company)),
        }))
    }

    async fn list_companies(
        &self,
        request: Request<pb::ListCompaniesRequest>,
    ) -> Reply<pb::ListCompaniesResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let f = ListFilter {
            sector: filter("sector", r.sector, Sector::from_number, Sector::code)?,
            town: r.town,
            technology: filter(
                "technology",
                r.technology,
                Technology::from_number,
                Technology::code,
            )?,
            contract_model: filter(
                "contract_model",
                r.contract_model,
                ContractModel::from_number,
                ContractModel::code,
            )?,
            query: r.query,
            certifications: if r.min_certification_grade == 0 {
                Vec::new()
            } else {
                let min = convert::one(
                    "min_certification_grade",
                    r.min_certification_grade,
                    CertificationGrade::from_number,
                )?;
                CertificationGrade::ALL
                    .iter()
                    .copied()
                    .filter(|g| *g >= min)
                    .collect()
            },
            ..Default::default()
        };
        let (companies, next) = self.store.list_companies(&f, &page).await?;
        let seen = self.contacts_seen(&who).await?;
        Ok(Response::new(pb::ListCompaniesResponse {
            companies: companies.iter().map(|c| seen.company_out(c)).collect(),
            next_page_token: next,
        }))
    }

    async fn update_company(
        &self,
        request: Request<pb::UpdateCompanyRequest>,
    ) -> Reply<pb::UpdateCompanyResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "UpdateCompany",
            &r.company.as_ref().map(|c| c.id.clone()).unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let message = r
            .company
            .ok_or_else(|| Error::invalid("company", "required"))?;
        let id = required_id("company.id", &message.id)?.to_string();
        let owner = self.company_for_write(&who, &id).await?;
        let mut profile = convert::company_profile(message)?;
        // The credit code identifies the company: it cannot change; nor can where it is
        // registered (its registration moves in accounts, reviewed there).
        profile.credit_code = owner.credit_code;
        let registered = Jurisdiction::of_stored(&owner.jurisdiction_code);
        if profile.jurisdiction_code.is_empty() {
            profile.jurisdiction_code = registered.to_string();
        }
        profile.validate("company")?;
        if profile.jurisdiction_code != registered.as_str() {
            return Err(Error::invalid(
                "company.jurisdiction_code",
                format!(
                    "the company is registered in {registered}, which UpdateCompany does not change; leave it empty or {registered}"
                ),
            )
            .into());
        }
        let company = self
            .store
            .update_company(&key, &id, r.expected_version, &profile)
            .await?;
        Ok(Response::new(pb::UpdateCompanyResponse {
            company: Some(convert::company(&company)),
        }))
    }

    async fn confirm_certification(
        &self,
        request: Request<pb::ConfirmCertificationRequest>,
    ) -> Reply<pb::ConfirmCertificationResponse> {
        let who = principal(&request)?;
        // Checked before anything is read, so nobody else learns which companies exist.
        if !who.is_admin() {
            return Err(Error::denied(format!(
                "only an administrator (the district office) confirms certification grades; a {} token may claim a grade with UpdateCompany, not confirm it",
                who.role
            ))
            .into());
        }
        let r = request.into_inner();
        let id = required_id("company_id", &r.company_id)?.to_string();
        // The district the company is registered in reviews it (another district's
        // administrator may not; companies are public, so nothing is given away).
        self.company_for_write(&who, &id).await?;
        let key = RequestKey::new(&who, "ConfirmCertification", &id, &r.request_id, &r)?;
        let grade = if r.grade == 0 {
            None
        } else {
            Some(convert::one(
                "grade",
                r.grade,
                CertificationGrade::from_number,
            )?)
        };
        let note = r.note.trim();
        if note.chars().count() > MAX_CERTIFICATION_TEXT {
            return Err(Error::invalid(
                "note",
                format!("at most {MAX_CERTIFICATION_TEXT} characters"),
            )
            .into());
        }
        let company = self
            .store
            .confirm_certification(&key, &id, r.expected_version, grade, &who.subject, note)
            .await?;
        Ok(Response::new(pb::ConfirmCertificationResponse {
            company: Some(convert::company(&company)),
        }))
    }

    // -- offerings ----------------------------------------------------------------------------

    async fn create_offering(
        &self,
        request: Request<pb::CreateOfferingRequest>,
    ) -> Reply<pb::CreateOfferingResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "CreateOffering", "", &r.request_id, &r)?;
        let mut draft = convert::offering_draft(
            r.offering
                .ok_or_else(|| Error::invalid("offering", "required"))?,
        )?;
        draft.validate("offering")?;
        self.company_for_write(&who, &draft.company_id).await?;
        let offering = self.store.create_offering(&key, &draft).await?;
        Ok(Response::new(pb::CreateOfferingResponse {
            offering: Some(convert::offering(&offering)),
        }))
    }

    async fn get_offering(
        &self,
        request: Request<pb::GetOfferingRequest>,
    ) -> Reply<pb::GetOfferingResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let id = required_id("offering_id", &r.offering_id)?;
        let offering = self.store.offering(id).await?;
        let viewer = self.viewer(&who).await?;
        if !offering.visible_to(&viewer)
            && !self
                .administers(&viewer, true, &offering.draft.company_id)
                .await?
        {
            return Err(Error::not_found("offering", id).into());
        }
        Ok(Response::new(pb::GetOfferingResponse {
            offering: Some(convert::offering(&offering)),
        }))
    }

    async fn list_offerings(
        &self,
        request: Request<pb::ListOfferingsRequest>,
    ) -> Reply<pb::ListOfferingsResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let viewer = self.viewer(&who).await?;
        let status = match pb::OfferingStatus::try_from(r.status) {
            Ok(pb::OfferingStatus::Unspecified) => String::new(),
            Ok(s) => s
                .as_str_name()
                .trim_start_matches("OFFERING_STATUS_")
                .to_lowercase(),
            Err(_) => {
                return Err(Error::invalid("status", format!("unknown value {}", r.status)).into());
            }
        };
        let f = ListFilter {
            owner_id: r.company_id,
            sector: filter("sector", r.sector, Sector::from_number, Sector::code)?,
            town: r.town,
            technology: filter(
                "technology",
                r.technology,
                Technology::from_number,
                Technology::code,
            )?,
            contract_model: filter(
                "contract_model",
                r.contract_model,
                ContractModel::from_number,
                ContractModel::code,
            )?,
            status,
            query: r.query,
            viewer,
            ..Default::default()
        };
        let (offerings, next) = self.store.list_offerings(&f, &page).await?;
        Ok(Response::new(pb::ListOfferingsResponse {
            offerings: offerings.iter().map(convert::offering).collect(),
            next_page_token: next,
        }))
    }

    async fn update_offering(
        &self,
        request: Request<pb::UpdateOfferingRequest>,
    ) -> Reply<pb::UpdateOfferingResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "UpdateOffering",
            &r.offering
                .as_ref()
                .map(|o| o.id.clone())
                .unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let message = r
            .offering
            .ok_or_else(|| Error::invalid("offering", "required"))?;
        let id = required_id("offering.id", &message.id)?.to_string();
        let current = self.store.offering(&id).await?;
        self.company_for_write(&who, &current.draft.company_id)
            .await?;
        let mut draft = convert::offering_draft(message)?;
        draft.company_id = current.draft.company_id.clone();
        draft.validate("offering")?;
        let offering = self
            .store
            .update_offering(&key, &id, r.expected_version, &draft)
            .await?;
        Ok(Response::new(pb::UpdateOfferingResponse {
            offering: Some(convert::offering(&offering)),
        }))
    }

    async fn publish_offering(
        &self,
        request: Request<pb::PublishOfferingRequest>,
    ) -> Reply<pb::PublishOfferingResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "PublishOffering", &r.offering_id, &r.request_id, &r)?;
        let offering = self
            .move_offering(
                &key,
                &who,
                &r.offering_id,
                r.expected_version,
                &[OfferingStatus::Draft],
                OfferingStatus::Published,
            )
            .await?;
        Ok(Response::new(pb::PublishOfferingResponse {
            offering: Some(offering),
        }))
    }

    async fn withdraw_offering(
        &self,
        request: Request<pb::WithdrawOfferingRequest>,
    ) -> Reply<pb::WithdrawOfferingResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "WithdrawOffering", &r.offering_id, &r.request_id, &r)?;
        let offering = self
            .move_offering(
                &key,
                &who,
                &r.offering_id,
                r.expected_version,
                &[OfferingStatus::Draft, OfferingStatus::Published],
                OfferingStatus::Withdrawn,
            )
            .await?;
        Ok(Response::new(pb::WithdrawOfferingResponse {
            offering: Some(offering),
        }))
    }

    // -- water users --------------------------------------------------------------------------

    async fn create_water_user(
        &self,
        request: Request<pb::CreateWaterUserRequest>,
    ) -> Reply<pb::CreateWaterUserResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "CreateWaterUser", "", &r.request_id, &r)?;
        let mut profile = convert::water_user_profile(
            r.water_user
                .ok_or_else(|| Error::invalid("water_user", "required"))?,
        )?;
        profile.validate("water_user")?;
        let owner = Owner {
            credit_code: profile.credit_code.clone(),
            jurisdiction_code: profile.jurisdiction_code.clone(),
        };
        if !acts_for(&who, Role::WaterUser, &owner) {
            return Err(Error::denied("a water user registers itself: the token's role must be water_user and its org the unit's credit code (or an administrator of its town's jurisdiction)").into());
        }
        let user = self.store.create_water_user(&key, &profile).await?;
        Ok(Response::new(pb::CreateWaterUserResponse {
            water_user: Some(convert::water_user(&user)),
        }))
    }

    async fn get_water_user(
        &self,
        request: Request<pb::GetWaterUserRequest>,
    ) -> Reply<pb::GetWaterUserResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let user = if !r.water_user_id.trim().is_empty() {
            self.store.water_user(r.water_user_id.trim()).await?
        } else if !r.credit_code.trim().is_empty() {
            self.store
                .water_user_by_credit_code(r.credit_code.trim())
                .await?
        } else {
            return Err(Error::invalid(
                "water_user_id",
                "name the water user by water_user_id or credit_code",
            )
            .into());
        };
        let seen = self.contacts_seen(&who).await?;
        Ok(Response::new(pb::GetWaterUserResponse {
            water_user: Some(seen.water_user_out(&user)),
        }))
    }

    async fn list_water_users(
        &self,
        request: Request<pb::ListWaterUsersRequest>,
    ) -> Reply<pb::ListWaterUsersResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let f = ListFilter {
            sector: filter("sector", r.sector, Sector::from_number, Sector::code)?,
            town: r.town,
            query: r.query,
            ..Default::default()
        };
        let (users, next) = self.store.list_water_users(&f, &r.unit_type, &page).await?;
        let seen = self.contacts_seen(&who).await?;
        Ok(Response::new(pb::ListWaterUsersResponse {
            water_users: users.iter().map(|u| seen.water_user_out(u)).collect(),
            next_page_token: next,
        }))
    }

    async fn update_water_user(
        &self,
        request: Request<pb::UpdateWaterUserRequest>,
    ) -> Reply<pb::UpdateWaterUserResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "UpdateWaterUser",
            &r.water_user
                .as_ref()
                .map(|u| u.id.clone())
                .unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let message = r
            .water_user
            .ok_or_else(|| Error::invalid("water_user", "required"))?;
        let id = required_id("water_user.id", &message.id)?.to_string();
        let owner = self.user_for_write(&who, &id).await?;
        let mut profile = convert::water_user_profile(message)?;
        profile.credit_code = owner.credit_code;
        profile.validate("water_user")?;
        // An administrator moving the unit to another town must administer that one too.
        let moved = Owner {
            credit_code: profile.credit_code.clone(),
            jurisdiction_code: profile.jurisdiction_code.clone(),
        };
        must_act_as(
            &who,
            Role::WaterUser,
            &moved,
            "the water user in its new town",
        )?;
        let user = self
            .store
            .update_water_user(&key, &id, r.expected_version, &profile)
            .await?;
        Ok(Response::new(pb::UpdateWaterUserResponse {
            water_user: Some(convert::water_user(&user)),
        }))
    }

    // -- project requests ---------------------------------------------------------------------

    async fn create_project_request(
        &self,
        request: Request<pb::CreateProjectRequestRequest>,
    ) -> Reply<pb::CreateProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "CreateProjectRequest", "", &r.request_id, &r)?;
        let mut draft = convert::request_draft(
            r.project_request
                .ok_or_else(|| Error::invalid("project_request", "required"))?,
        )?;
        draft.validate("project_request")?;
        draft.check_deadline("project_request", today_cst())?;
        self.user_for_write(&who, &draft.water_user_id).await?;
        self.check_invited(&draft).await?;
        // Every project started here is a contract water-saving project.
        if !draft
            .indicator_tags
            .contains(&cwsm_platform::vocab::IndicatorTag::ContractProject)
        {
            draft
                .indicator_tags
                .insert(0, cwsm_platform::vocab::IndicatorTag::ContractProject);
        }
        let created = self.store.create_request(&key, &draft).await?;
        Ok(Response::new(pb::CreateProjectRequestResponse {
            project_request: Some(self.request_reply(&created).await?),
        }))
    }

    async fn get_project_request(
        &self,
        request: Request<pb::GetProjectRequestRequest>,
    ) -> Reply<pb::GetProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let viewer = self.viewer(&who).await?;
        let found = self
            .visible_request(
                &viewer,
                required_id("project_request_id", &r.project_request_id)?,
            )
            .await?;
        Ok(Response::new(pb::GetProjectRequestResponse {
            project_request: Some(self.request_reply(&found).await?),
        }))
    }

    async fn list_project_requests(
        &self,
        request: Request<pb::ListProjectRequestsRequest>,
    ) -> Reply<pb::ListProjectRequestsResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let f = ListFilter {
            viewer: self.viewer(&who).await?,
            owner_id: r.water_user_id,
            sector: filter("sector", r.sector, Sector::from_number, Sector::code)?,
            town: r.town,
            technology: filter(
                "technology",
                r.technology,
                Technology::from_number,
                Technology::code,
            )?,
            contract_model: filter(
                "contract_model",
                r.contract_model,
                ContractModel::from_number,
                ContractModel::code,
            )?,
            status: convert::request_status_filter(r.status)?,
            query: r.query,
            ..Default::default()
        };
        let (rows, next) = self.store.list_requests(&f, &page).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.request_reply(row).await?);
        }
        Ok(Response::new(pb::ListProjectRequestsResponse {
            project_requests: out,
            next_page_token: next,
        }))
    }

    async fn update_project_request(
        &self,
        request: Request<pb::UpdateProjectRequestRequest>,
    ) -> Reply<pb::UpdateProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "UpdateProjectRequest",
            &r.project_request
                .as_ref()
                .map(|q| q.id.clone())
                .unwrap_or_default(),
            &r.request_id,
            &r,
        )?;
        let message = r
            .project_request
            .ok_or_else(|| Error::invalid("project_request", "required"))?;
        let id = required_id("project_request.id", &message.id)?.to_string();
        let current = self.store.request(&id).await?;
        self.user_for_write(&who, &current.draft.water_user_id)
            .await?;
        let mut draft = convert::request_draft(message)?;
        draft.water_user_id = current.draft.water_user_id.clone();
        draft.validate("project_request")?;
        if draft.proposal_deadline != current.draft.proposal_deadline {
            draft.check_deadline("project_request", today_cst())?;
        }
        self.check_invited(&draft).await?;
        let updated = self
            .store
            .update_request(&key, &id, r.expected_version, &draft)
            .await?;
        Ok(Response::new(pb::UpdateProjectRequestResponse {
            project_request: Some(self.request_reply(&updated).await?),
        }))
    }

    async fn open_project_request(
        &self,
        request: Request<pb::OpenProjectRequestRequest>,
    ) -> Reply<pb::OpenProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "OpenProjectRequest",
            &r.project_request_id,
            &r.request_id,
            &r,
        )?;
        let moved = self
            .move_request(
                &key,
                &who,
                &r.project_request_id,
                r.expected_version,
                &[RequestStatus::Draft, RequestStatus::Closed],
                RequestStatus::Open,
                "",
            )
            .await?;
        Ok(Response::new(pb::OpenProjectRequestResponse {
            project_request: Some(moved),
        }))
    }

    async fn close_project_request(
        &self,
        request: Request<pb::CloseProjectRequestRequest>,
    ) -> Reply<pb::CloseProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "CloseProjectRequest",
            &r.project_request_id,
            &r.request_id,
            &r,
        )?;
        let moved = self
            .move_request(
                &key,
                &who,
                &r.project_request_id,
                r.expected_version,
                &[RequestStatus::Open],
                RequestStatus::Closed,
                &r.reason,
            )
            .await?;
        Ok(Response::new(pb::CloseProjectRequestResponse {
            project_request: Some(moved),
        }))
    }

    async fn cancel_project_request(
        &self,
        request: Request<pb::CancelProjectRequestRequest>,
    ) -> Reply<pb::CancelProjectRequestResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(
            &who,
            "CancelProjectRequest",
            &r.project_request_id,
            &r.request_id,
            &r,
        )?;
        let moved = self
            .move_request(
                &key,
                &who,
                &r.project_request_id,
                r.expected_version,
                &[
                    RequestStatus::Draft,
                    RequestStatus::Open,
                    RequestStatus::Closed,
                ],
                RequestStatus::Cancelled,
                &r.reason,
            )
            .await?;
        Ok(Response::new(pb::CancelProjectRequestResponse {
            project_request: Some(moved),
        }))
    }

    // -- ranking ------------------------------------------------------------------------------

    async fn rank_offerings(
        &self,
        request: Request<pb::RankOfferingsRequest>,
    ) -> Reply<pb::RankOfferingsResponse> {
        let who = principal(&request)?;
        let lang = Lang::of_metadata(request.metadata());
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, "")?;
        let viewer = self.viewer(&who).await?;
        let found = self
            .visible_request(
                &viewer,
                required_id("project_request_id", &r.project_request_id)?,
            )
            .await?;
        let user = self.store.water_user(&found.draft.water_user_id).await?;
        let candidates = self.store.published_offerings().await?;
        let outcome = ranking::rank_catalog(
            &found,
            &user,
            &candidates,
            usize::try_from(page.size).unwrap_or(usize::MAX),
            MAX_EXCLUDED,
        );
        let ranked_offerings = outcome
            .ranked
            .iter()
            .enumerate()
            .map(|(i, x)| pb::RankedOffering {
                offering: Some(convert::offering(&x.offering)),
                company: Some(convert::company_summary(&x.company)),
                score: x.score,
                parts: convert::score_parts(&x.parts, lang),
                rank: i32::try_from(i + 1).unwrap_or(i32::MAX),
            })
            .collect();
        let excluded_offerings = outcome
            .excluded
            .iter()
            .map(|x| pb::ExcludedOffering {
                offering_id: x.offering.id.clone(),
                offering_title: x.offering.draft.title.clone(),
                company_id: x.company.id.clone(),
                company_name: x.company.profile.name.clone(),
                filter: x.filter.to_string(),
                explanation: x.explanation.get(lang).to_string(),
            })
            .collect();
        Ok(Response::new(pb::RankOfferingsResponse {
            ranked_offerings,
            excluded_offerings,
            ranked_total: i32::try_from(outcome.ranked_total).unwrap_or(i32::MAX),
            excluded_total: i32::try_from(outcome.excluded_total).unwrap_or(i32::MAX),
        }))
    }

    async fn list_fitting_requests(
        &self,
        request: Request<pb::ListFittingRequestsRequest>,
    ) -> Reply<pb::ListFittingRequestsResponse> {
        let who = principal(&request)?;
        let lang = Lang::of_metadata(request.metadata());
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let after = page.after.as_deref().map(parse_fitting_key).transpose()?;
        let viewer = self.viewer(&who).await?;
        let company = self
            .store
            .company(required_id("company_id", &r.company_id)?)
            .await?;
        let offerings: Vec<_> = self
            .store
            .published_offerings()
            .await?
            .iter()
            .filter(|(o, _)| o.draft.company_id == company.id)
            .cloned()
            .collect();
        // For each open request the caller may see, the company's best-fitting offering (if
        // any passes the hard filters, which also leave out requests the company is not
        // invited to).
        let mut fits = Vec::new();
        for (req, user) in self.store.open_requests().await? {
            if !req.visible_to(&viewer) {
                continue;
            }
            let outcome = ranking::rank_top(&req, &user, &offerings, 1, 0);
            if let Some(best) = outcome.ranked.into_iter().next() {
                fits.push((req, user, best));
            }
        }
        // Best fit first, then by request id; the page token holds the last (score, id), so a
        // request added meanwhile neither shifts nor repeats the rows of later pages.
        fits.sort_by(|a, b| {
            b.2.score
                .partial_cmp(&a.2.score)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.id.cmp(&b.0.id))
        });
        if let Some((score, id)) = &after {
            fits.retain(|(req, _, best)| {
                best.score < *score || (best.score == *score && &req.id > id)
            });
        }
        fits.truncate(usize::try_from(page.fetch_limit()).unwrap_or(usize::MAX));
        let next = page.finish(&mut fits, |(req, _, best)| fitting_key(best.score, &req.id));
        let fitting_requests = fits
            .iter()
            .map(|(req, user, best)| pb::FittingRequest {
                project_request: Some(convert::project_request(req, Some(user))),
                score: best.score,
                parts: convert::score_parts(&best.parts, lang),
                offering_id: best.offering.id.clone(),
            })
            .collect();
        Ok(Response::new(pb::ListFittingRequestsResponse {
            fitting_requests,
            next_page_token: next,
        }))
    }

    // -- proposals ----------------------------------------------------------------------------

    async fn create_proposal(
        &self,
        request: Request<pb::CreateProposalRequest>,
    ) -> Reply<pb::CreateProposalResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "CreateProposal", "", &r.request_id, &r)?;
        let draft = convert::proposal_draft(
            r.proposal
                .ok_or_else(|| Error::invalid("proposal", "required"))?,
        )?;
        draft.validate("proposal")?;
        self.company_for_write(&who, &draft.company_id).await?;
        let viewer = self.viewer(&who).await?;
        let target = self
            .visible_request(&viewer, &draft.project_request_id)
            .await?;
        if !target.admits(&draft.company_id) {
            return Err(Error::denied(format!(
                "project request {} takes proposals from invited companies only",
                target.id
            ))
            .into());
        }
        if target.status == RequestStatus::Open && target.deadline_passed(today_cst()) {
            return Err(Error::precondition(format!(
                "the proposal deadline of project request {} ({}) has passed",
                target.id, target.draft.proposal_deadline
            ))
            .into());
        }
        if !draft.offering_id.is_empty() {
            let offering = self.store.offering(&draft.offering_id).await?;
            if offering.draft.company_id != draft.company_id {
                return Err(Error::invalid(
                    "proposal.offering_id",
                    "the offering belongs to another company",
                )
                .into());
            }
        }
        let created = self.store.create_proposal(&key, &draft).await?;
        Ok(Response::new(pb::CreateProposalResponse {
            proposal: Some(self.proposal_reply(&created).await?),
        }))
    }

    async fn get_proposal(
        &self,
        request: Request<pb::GetProposalRequest>,
    ) -> Reply<pb::GetProposalResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let viewer = self.viewer(&who).await?;
        let found = self
            .visible_proposal(&viewer, required_id("proposal_id", &r.proposal_id)?)
            .await?;
        Ok(Response::new(pb::GetProposalResponse {
            proposal: Some(self.proposal_reply(&found).await?),
        }))
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Reply<pb::ListProposalsResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let page = Page::from_request(r.page_size, &r.page_token)?;
        let f = ListFilter {
            viewer: self.viewer(&who).await?,
            status: convert::proposal_status_filter(r.status)?,
            contract_model: filter(
                "contract_model",
                r.contract_model,
                ContractModel::from_number,
                ContractModel::code,
            )?,
            query: r.query,
            ..Default::default()
        };
        let (rows, next) = self
            .store
            .list_proposals(&r.project_request_id, &r.company_id, &f, &page)
            .await?;
        let mut proposals = Vec::with_capacity(rows.len());
        for row in &rows {
            proposals.push(self.proposal_reply(row).await?);
        }
        Ok(Response::new(pb::ListProposalsResponse {
            proposals,
            next_page_token: next,
        }))
    }

    async fn accept_proposal(
        &self,
        request: Request<pb::AcceptProposalRequest>,
    ) -> Reply<pb::AcceptProposalResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "AcceptProposal", &r.proposal_id, &r.request_id, &r)?;
        let proposal = self
            .store
            .proposal(required_id("proposal_id", &r.proposal_id)?)
            .await?;
        let req = self
            .store
            .request(&proposal.draft.project_request_id)
            .await?;
        self.user_for_write(&who, &req.draft.water_user_id).await?;
        let user = self.store.water_user(&req.draft.water_user_id).await?;
        let company = self.store.company(&proposal.draft.company_id).await?;
        let project_id = new_id();
        let event_id = new_id();
        let now = now_ms();
        let d = &proposal.draft;
        let payload = events::ProposalAccepted {
            event_id: event_id.clone(),
            proposal_id: proposal.id.clone(),
            project_request_id: req.id.clone(),
            project_id: project_id.clone(),
            company: Some(types::CompanyRef {
                id: company.id.clone(),
                name: company.profile.name.clone(),
                credit_code: company.profile.credit_code.clone(),
            }),
            water_user: Some(convert::water_user_ref(&user)),
            title: req.draft.title.clone(),
            measures: d.measures.clone(),
            contract_model: d.contract_model.number(),
            terms: Some(convert::terms_out(&d.terms)),
            investment_fen: d.investment_fen,
            promised_savings_litres: d.promised_savings_litres,
            promised_savings_bp: d.promised_savings_bp,
            contract_term_months: d.contract_term_months,
            mv_option: d.mv_option.number(),
            drivers: d.drivers.clone(),
            indicator_tags: req
                .draft
                .indicator_tags
                .iter()
                .map(|t| t.number())
                .collect(),
            price_fen_per_m3: req.draft.price_fen_per_m3,
            baseline_use_litres: req.draft.baseline_use_litres,
            accepted_time: Some(timestamp(now)),
        };
        let envelope = Envelope {
            event_id,
            topic: topics::PROPOSALS_ACCEPTED.to_string(),
            kind: topics::PROPOSAL_ACCEPTED_KIND.to_string(),
            payload: payload.encode_to_vec(),
            occurred_at_ms: now,
            trace_parent: String::new(),
        };
        let accepted = self
            .store
            .accept_proposal(
                &key,
                &proposal.id,
                r.expected_version,
                &project_id,
                &envelope,
            )
            .await?;
        (self.on_change)();
        let req = self.store.request(&req.id).await?;
        Ok(Response::new(pb::AcceptProposalResponse {
            project_id: accepted.project_id.clone(),
            proposal: Some(self.proposal_reply(&accepted).await?),
            project_request: Some(self.request_reply(&req).await?),
        }))
    }

    async fn decline_proposal(
        &self,
        request: Request<pb::DeclineProposalRequest>,
    ) -> Reply<pb::DeclineProposalResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "DeclineProposal", &r.proposal_id, &r.request_id, &r)?;
        let proposal = self
            .store
            .proposal(required_id("proposal_id", &r.proposal_id)?)
            .await?;
        let req = self
            .store
            .request(&proposal.draft.project_request_id)
            .await?;
        self.user_for_write(&who, &req.draft.water_user_id).await?;
        let declined = self
            .store
            .close_proposal(
                &key,
                &proposal.id,
                r.expected_version,
                ProposalStatus::Declined,
                &r.reason,
            )
            .await?;
        Ok(Response::new(pb::DeclineProposalResponse {
            proposal: Some(self.proposal_reply(&declined).await?),
        }))
    }

    async fn withdraw_proposal(
        &self,
        request: Request<pb::WithdrawProposalRequest>,
    ) -> Reply<pb::WithdrawProposalResponse> {
        let who = principal(&request)?;
        let r = request.into_inner();
        let key = RequestKey::new(&who, "WithdrawProposal", &r.proposal_id, &r.request_id, &r)?;
        let proposal = self
            .store
            .proposal(required_id("proposal_id", &r.proposal_id)?)
            .await?;
        self.company_for_write(&who, &proposal.draft.company_id)
            .await?;
        let withdrawn = self
            .store
            .close_proposal(
                &key,
                &proposal.id,
                r.expected_version,
                ProposalStatus::Withdrawn,
                &r.reason,
            )
            .await?;
        Ok(Response::new(pb::WithdrawProposalResponse {
            proposal: Some(self.proposal_reply(&withdrawn).await?),
        }))
    }
}
