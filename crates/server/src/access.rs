//! Who may do what: the signed-in user's current brand and role there ([`Member`]), the API
//! token's brand, and the one permission table ([`allows`]) every handler asks.

use axum::http::{HeaderMap, HeaderValue, header};
use balie_core::{Brand, BrandId, Role, User};

use crate::AppState;
use crate::error::ApiError;

/// Something a person does in Balie that not every role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See the inbox, conversations, customers, search and the live stream.
    Read,
    /// Reply to a customer, change a conversation's status.
    Reply,
    /// Change a customer's name and notes.
    UpdateCustomer,
    /// Take an unassigned conversation, or give up one's own.
    TakeFree,
    /// Take a conversation another agent holds, or release anyone's assignment.
    Reassign,
    /// See reports about the brand's webcare.
    SeeReports,
    /// Add channels and change their accounts and credentials.
    ManageChannels,
    /// Add users to the brand and change their roles.
    ManageUsers,
    /// Change the brand's policies (reply deadlines, required two-factor sign-in).
    ManagePolicies,
    /// Point a channel at another API host (its stored credentials would be sent there).
    RepointChannel,
}

/// The permission table, in the order of the README's: which roles may do each action in
/// their brand. `RepointChannel` is the installation owner's alone (or the CLI's), whatever
/// their role.
pub const TABLE: &[(Action, &[Role])] = &[
    (Action::Read, &[Role::Agent, Role::Supervisor, Role::Admin]),
    (Action::Reply, &[Role::Agent, Role::Supervisor, Role::Admin]),
    (
        Action::UpdateCustomer,
        &[Role::Agent, Role::Supervisor, Role::Admin],
    ),
    (
        Action::TakeFree,
        &[Role::Agent, Role::Supervisor, Role::Admin],
    ),
    (Action::Reassign, &[Role::Supervisor, Role::Admin]),
    (Action::SeeReports, &[Role::Supervisor, Role::Admin]),
    (Action::ManageChannels, &[Role::Admin]),
    (Action::ManageUsers, &[Role::Admin]),
    (Action::ManagePolicies, &[Role::Admin]),
    (Action::RepointChannel, &[]),
];

/// Whether a member with `role` (and `owner` of the installation or not) may do `action`.
pub fn allows(role: Role, owner: bool, action: Action) -> bool {
    if action == Action::RepointChannel {
        return owner;
    }
    TABLE
        .iter()
        .any(|(a, roles)| *a == action && roles.contains(&role))
}

/// The cookie that names the brand an agency user works in now (by slug).
const BRAND_COOKIE: &str = "balie_brand";

/// The signed-in user in their current brand.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub brand: Brand,
    pub role: Role,
    /// Every brand they may switch to, by id (the current one too).
    pub brands: Vec<Brand>,
}

impl Member {
    pub fn may(&self, action: Action) -> bool {
        allows(self.role, self.user.owner, action)
    }

    /// `Forbidden` unless the member's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.may(action) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }

    pub fn brand_id(&self) -> BrandId {
        self.brand.id
    }

    /// Whether the header offers the brand switcher.
    pub fn agency(&self) -> bool {
        self.brands.len() > 1
    }
}

/// The brand slug the request's cookie names, if any.
fn chosen_brand(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix("balie_brand=").map(str::to_string))
}

/// The `Set-Cookie` value that makes `brand` the current one.
pub fn brand_cookie(brand: &Brand) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{BRAND_COOKIE}={}; Path=/; SameSite=Strict; Max-Age=31536000",
        brand.slug
    ))
    .ok()
}

/// The signed-in user with their current brand: the one the brand cookie names if they are
/// a member of it, else their first. The installation's owner is an admin of every brand.
/// `None` without a live session, or for a user who belongs to no brand.
pub async fn member(state: &AppState, headers: &HeaderMap) -> Result<Option<Member>, ApiError> {
    let Some(user) = crate::web::session_user(state, headers).await? else {
        return Ok(None);
    };
    let memberships: Vec<(Brand, Role)> = if user.owner {
        state
            .store
            .brands()
            .await?
            .into_iter()
            .map(|b| (b, Role::Admin))
            .collect()
    } else {
        state
            .store
            .memberships(user.id)
            .await?
            .into_iter()
            .map(|m| (m.brand, m.role))
            .collect()
    };
    let chosen = chosen_brand(headers);
    let current = memberships
        .iter()
        .find(|(b, _)| Some(b.slug.as_str()) == chosen.as_deref())
        .or_else(|| memberships.first())
        .cloned();
    let Some((brand, role)) = current else {
        return Ok(None);
    };
    Ok(Some(Member {
        user,
        brand,
        role,
        brands: memberships.into_iter().map(|(b, _)| b).collect(),
    }))
}

/// The brand a request's API token acts for, if it carries a live one.
pub async fn token_brand(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<BrandId>, ApiError> {
    let Some(token) = crate::api::bearer_token(headers) else {
        return Ok(None);
    };
    Ok(state
        .store
        .api_token_brand(&crate::auth::token_hash(token))
        .await?)
}

/// The brand a reader of conversations acts for: the signed-in user's current brand, else
/// the API token's. `None`: neither.
pub async fn reader_brand(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<BrandId>, ApiError> {
    if let Some(m) = member(state, headers).await? {
        m.require(Action::Read)?;
        return Ok(Some(m.brand_id()));
    }
    token_brand(state, headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_supervisors_and_admins_reassign_and_only_the_owner_repoints() {
        let cases = [
            (Role::Agent, false, Action::Reply, true),
            (Role::Agent, false, Action::TakeFree, true),
            (Role::Agent, false, Action::Reassign, false),
            (Role::Supervisor, false, Action::Reassign, true),
            (Role::Supervisor, false, Action::ManageChannels, false),
            (Role::Admin, false, Action::ManageChannels, true),
            (Role::Admin, false, Action::RepointChannel, false),
            (Role::Agent, true, Action::RepointChannel, true),
        ];
        for (role, owner, action, expected) in cases {
            assert_eq!(
                allows(role, owner, action),
                expected,
                "{role:?} {owner} {action:?}"
            );
        }
    }
}
