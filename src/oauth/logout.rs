//! OpenID Connect RP-Initiated Logout 1.0 (`end_session_endpoint`): which client asks, for whom,
//! and where the browser may go afterwards.
//!
//! - `id_token_hint` is one of this organization's ID tokens (expired ones too, within bounds:
//!   [`crate::tokens::id_token::verify_hint`]); a hint that does not verify is refused.
//! - `post_logout_redirect_uri` is honoured only when it is registered for the client (§3:
//!   exactly, as redirect URIs are), the client named by the hint's `aud` or by `client_id`
//!   (both given: they must agree); `state` is passed back to it.
//! - Whether the session ends at once or the person is asked first is the edge's: at once when
//!   the hint names the person of the browser's session, after a confirmation otherwise (§2:
//!   a logout request is a cross-site request anyone can make).

use std::sync::Arc;

use crate::oauth::OAuth;
use crate::oauth::authorize::with_query;
use crate::oauth::form::FormParams;
use crate::storage::OrgRecord;
use crate::tenancy::Agent;
use crate::tenancy::clients;
use crate::tokens::id_token::{HintClaims, verify_hint};

#[derive(Debug, Clone)]
pub struct LogoutRequest {
    pub hint: Option<HintClaims>,
    pub client: Option<Arc<Agent>>,
    /// Where to send the browser afterwards (with `state`), if anywhere.
    pub redirect: Option<String>,
}

impl OAuth {
    /// Checks a logout request; `Err` is the text of the error page.
    pub async fn logout_request(
        &self,
        org: &OrgRecord,
        form: &FormParams,
    ) -> Result<LogoutRequest, String> {
        let now = self.clock.now();
        let hint = match form.get("id_token_hint") {
            None => None,
            Some(t) => {
                let keys =
                    self.keys.org_keys(org, now).await.map_err(|_| {
                        "The server could not check the request; try again.".to_owned()
                    })?;
                Some(verify_hint(&keys, &org.issuer, t, now).ok_or_else(|| {
                    "The id_token_hint is not an ID token of this issuer.".to_owned()
                })?)
            }
        };
        let hinted = hint
            .as_ref()
            .and_then(|h| h.aud.iter().next().map(str::to_owned));
        let named = form.get("client_id").map(str::to_owned);
        let client_id = match (hinted, named) {
            (Some(a), Some(b)) if a != b => {
                return Err("client_id is not the audience of the id_token_hint.".into());
            }
            (a, b) => a.or(b),
        };
        let client =
            match &client_id {
                None => None,
                Some(id) => self.directory.agent(&org.id, id).await.map_err(|_| {
                    "The server could not look up the client; try again.".to_owned()
                })?,
            };
        let redirect = match form.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let c = client.as_ref().ok_or_else(|| {
                    "post_logout_redirect_uri needs the client: send id_token_hint or client_id."
                        .to_owned()
                })?;
                if clients::find_redirect(&c.record.post_logout_redirect_uris, uri).is_none() {
                    return Err(
                        "The post_logout_redirect_uri is not registered for this client.".into(),
                    );
                }
                let state = form.get("state").filter(|s| s.len() <= 2048);
                Some(match state {
                    Some(s) => with_query(uri, &[("state", s)]),
                    None => uri.to_owned(),
                })
            }
        };
        Ok(LogoutRequest {
            hint,
            client,
            redirect,
        })
    }
}
