//! Enforcing a show's rules on its Matrix members (docs/moderation.md): their messages
//! screened as the homeserver's transactions bring them ([`screen`]), and the bot's
//! redactions of those that broke a rule, paced per room ([`redactor`]). A web fan's post
//! is checked before it is sent, at the gateway (`http::webchat`); who may speak is the
//! room's power levels, which the lifecycle keeps (`Step::SetSpeech`).

pub mod redactor;
mod screen;

pub use screen::{Screened, screen};
