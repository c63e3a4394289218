//! The words of calendar feeds: the name a holder's own feed shows in their calendar
//! app (a channel's feed is named after the channel).

/// The name of a holder's own feed, `My shows on <server_name>`: the server tells two
/// deployments' feeds apart in one calendar app.
pub fn holder_calendar_name(server_name: &str) -> String {
    format!("My shows on {server_name}")
}
