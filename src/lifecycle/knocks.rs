//! Knocks Foyer refuses: each refusal is a kick, so strangers knocking in a flood would
//! have the bot kick for ever. A budget per room and per knocking server bounds that;
//! past it a knock is recorded as handled without a kick.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

use crate::model::ReservationId;

/// How many knocks Foyer refuses (with a kick) per reservation and per knocking server in
/// each [`KnockBudget::WINDOW`]; knocks past that are left unanswered.
#[derive(Default)]
pub struct KnockBudget(Mutex<HashMap<String, (Instant, u32)>>);

impl KnockBudget {
    const WINDOW: Duration = Duration::from_secs(60);
    const PER_ROOM: u32 = 20;
    const PER_SERVER: u32 = 10;

    /// Whether a refusal of `user`'s knock at reservation `id` fits the budget; counts it
    /// if so.
    pub fn allow(&self, id: &ReservationId, user: &ruma::UserId) -> bool {
        let mut windows = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < Self::WINDOW);
        }
        let keys =
            [(format!("room {id}"), Self::PER_ROOM), (format!("server {}", user.server_name()), Self::PER_SERVER)];
        let used = |windows: &mut HashMap<String, (Instant, u32)>, key: &str| {
            let entry = windows.entry(key.to_owned()).or_insert((now, 0));
            if now.duration_since(entry.0) >= Self::WINDOW {
                *entry = (now, 0);
            }
            entry.1
        };
        if keys.iter().any(|(key, limit)| used(&mut windows, key) >= *limit) {
            return false;
        }
        for (key, _) in &keys {
            if let Some(entry) = windows.get_mut(key) {
                entry.1 += 1;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knock_refusals_are_budgeted_per_room_and_per_server() {
        let budget = KnockBudget::default();
        let (jazz, folk) = (ReservationId::parse("jazz").unwrap(), ReservationId::parse("folk").unwrap());
        let user = |name: &str, server: &str| ruma::OwnedUserId::try_from(format!("@{name}:{server}")).unwrap();
        // One server's knockers: ten refusals across rooms, then nothing.
        for i in 0..KnockBudget::PER_SERVER {
            let room = if i % 2 == 0 { &jazz } else { &folk };
            assert!(budget.allow(room, &user(&format!("s{i}"), "spam.example")), "refusal {i}");
        }
        assert!(!budget.allow(&jazz, &user("s-next", "spam.example")));
        // Other servers still get answers, until the room's own budget is used.
        let mut allowed = 0;
        for i in 0..(KnockBudget::PER_ROOM * 2) {
            if budget.allow(&jazz, &user("k", &format!("host{i}.example"))) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, KnockBudget::PER_ROOM - KnockBudget::PER_SERVER / 2);
        assert!(budget.allow(&folk, &user("k", "other.example")), "another room has its own budget");
    }
}
