//! The Synapse admin API, for what the client-server API cannot do: tell whether a local
//! user exists, join local users to a room past its join limit, and delete a room. It needs a server admin's token
//! (`synapse_admin.token`), not the appservice's.

use std::time::Duration;

use ruma::{OwnedRoomId, OwnedUserId};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::MatrixError;
use crate::model::Email;

/// The Synapse admin API, with a server admin's token (not the as_token).
pub struct SynapseAdmin {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: crate::secret::Secret,
}

impl SynapseAdmin {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, MatrixError> {
        let endpoint = format!("{method} {path}");
        let mut req = self.http.request(method, format!("{}{path}", self.base_url)).bearer_auth(self.token.expose());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            // Without the URL, which may hold what the path names (an email address).
            .map_err(|e| MatrixError::Network { endpoint: endpoint.clone(), message: e.without_url().to_string() })?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status >= 400 {
            return Err(MatrixError::Api {
                endpoint,
                status,
                errcode: body["errcode"].as_str().unwrap_or("(no errcode)").to_owned(),
                message: body["error"].as_str().unwrap_or_default().to_owned(),
                retry_after: None,
            });
        }
        Ok(body)
    }

    /// Whether the token is a server admin's: an admin may look up any user (the bot,
    /// which need not exist yet); anyone else is refused (403, or 401 for a token the
    /// homeserver does not know).
    pub async fn check_admin(&self, bot: &OwnedUserId) -> Result<(), MatrixError> {
        self.user_exists(bot).await.map(|_| ())
    }

    /// Whether a user of this homeserver exists. Synapse accepts an invite for a local
    /// user who does not exist (a typo in a ticket), and nobody ever sees it. The admin
    /// API tells, unlike a profile lookup, without a rate limit (`rc_profile` throttles
    /// even an appservice, which an opening wave of thousands of holders would hit).
    pub async fn user_exists(&self, user: &OwnedUserId) -> Result<bool, MatrixError> {
        let path = format!("/_synapse/admin/v2/users/{}", urlencode(user.as_str()));
        match self.call(reqwest::Method::GET, &path, None).await {
            Ok(_) => Ok(true),
            Err(MatrixError::Api { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The local user who has `email` bound, if any. The address never appears in an
    /// error (errors are logged): the endpoint is named without it.
    pub async fn user_by_email(&self, email: &Email) -> Result<Option<OwnedUserId>, MatrixError> {
        let path = format!("/_synapse/admin/v1/threepid/email/users/{}", urlencode(email.address()));
        let hidden = "GET /_synapse/admin/v1/threepid/email/users/<email>".to_owned();
        let found = match self.call(reqwest::Method::GET, &path, None).await {
            Ok(found) => found,
            Err(MatrixError::Api { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e.at(hidden)),
        };
        let user = found["user_id"].as_str().and_then(|u| OwnedUserId::try_from(u).ok());
        match user {
            Some(user) => Ok(Some(user)),
            None => Err(MatrixError::BadResponse { endpoint: hidden, message: "no valid user_id".into() }),
        }
    }

    /// The token's own user: the doorkeeper of rooms with `auto_join`.
    pub async fn whoami(&self) -> Result<OwnedUserId, MatrixError> {
        let path = "/_matrix/client/v3/account/whoami";
        let me = self.call(reqwest::Method::GET, path, None).await?;
        me["user_id"].as_str().and_then(|u| OwnedUserId::try_from(u).ok()).ok_or_else(|| MatrixError::BadResponse {
            endpoint: format!("GET {path}"),
            message: "no valid user_id".into(),
        })
    }

    /// Exempts `user` from every rate limit of Synapse's (`messages_per_second: 0`):
    /// the doorkeeper's own join into each room would otherwise be held to a user's
    /// join limit (`rc_joins.local`: ten at once, then one every ten seconds). Setting it
    /// again changes nothing.
    pub async fn exempt_from_rate_limits(&self, user: &OwnedUserId) -> Result<(), MatrixError> {
        let path = format!("/_synapse/admin/v1/users/{}/override_ratelimit", urlencode(user.as_str()));
        let body = json!({"messages_per_second": 0, "burst_count": 0});
        self.call(reqwest::Method::POST, &path, Some(body)).await.map(|_| ())
    }

    /// The token's own user joins the room (it was invited); being in already is done.
    pub async fn join_self(&self, room_id: &OwnedRoomId) -> Result<(), MatrixError> {
        let path = format!("/_matrix/client/v3/rooms/{}/join", urlencode(room_id.as_str()));
        self.call(reqwest::Method::POST, &path, Some(json!({}))).await.map(|_| ())
    }

    /// Joins a local user to the room (`POST /_synapse/admin/v1/join/{room}`). Synapse
    /// does not check the room's join limit for it (it still counts the join), and in a
    /// room that is not public it first invites the user from the token's user, who must
    /// be in the room with invite power. A user in the room already is done.
    pub async fn join_user(&self, room_id: &OwnedRoomId, user: &OwnedUserId) -> Result<(), MatrixError> {
        let path = format!("/_synapse/admin/v1/join/{}", urlencode(room_id.as_str()));
        self.call(reqwest::Method::POST, &path, Some(json!({"user_id": user}))).await.map(|_| ())
    }

    /// Deletes and purges the room, then polls the asynchronous delete until it is done.
    pub async fn delete_room(&self, room_id: &OwnedRoomId) -> Result<(), MatrixError> {
        let path = format!("/_synapse/admin/v2/rooms/{}", urlencode(room_id.as_str()));
        let started = self
            .call(reqwest::Method::DELETE, &path, Some(json!({"purge": true, "message": "This chat has closed."})))
            .await?;
        let Some(delete_id) = started["delete_id"].as_str() else {
            return Err(MatrixError::BadResponse { endpoint: path, message: "no delete_id".into() });
        };
        let status_path = format!("/_synapse/admin/v2/rooms/delete_status/{}", urlencode(delete_id));
        let give_up = Instant::now() + Duration::from_secs(300);
        loop {
            let status = self.call(reqwest::Method::GET, &status_path, None).await?;
            match status["status"].as_str() {
                Some("complete") => return Ok(()),
                Some("failed") => {
                    return Err(MatrixError::BadResponse {
                        endpoint: status_path,
                        message: format!("the delete failed: {}", status["error"]),
                    });
                }
                _ if Instant::now() > give_up => {
                    return Err(MatrixError::Network {
                        endpoint: status_path,
                        message: "the delete did not finish in 5 minutes".into(),
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
