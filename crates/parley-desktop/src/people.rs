//! Who is who: profiles, friends' remarks and presence, as far as this client
//! has seen them. Every screen names people through here so a remark or a new
//! display name shows up everywhere at once.

use std::collections::HashMap;

use parley_client::pb;

use crate::format;

/// What the client knows about a friend beyond the profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FriendInfo {
    /// The user's private nickname for the friend (may be empty).
    pub remark: String,
    /// Online now.
    pub online: bool,
    /// When last seen, ms since the epoch (0: unknown).
    pub last_seen_ms: i64,
}

/// Profiles and friendship state by user id.
#[derive(Default, Debug)]
pub struct People {
    users: HashMap<i64, pb::User>,
    friends: HashMap<i64, FriendInfo>,
    blocked: HashMap<i64, ()>,
}

impl People {
    /// Remembers (or refreshes) a profile.
    pub fn learn(&mut self, user: &pb::User) {
        if user.id != 0 {
            self.users.insert(user.id, user.clone());
        }
    }

    /// A known profile.
    pub fn user(&self, id: i64) -> Option<&pb::User> {
        self.users.get(&id)
    }

    /// Whether a profile is known (so it need not be fetched).
    pub fn knows(&self, id: i64) -> bool {
        self.users.contains_key(&id)
    }

    /// Replaces the friend list.
    pub fn set_friends(&mut self, friends: &[pb::Friend]) {
        self.friends.clear();
        for friend in friends {
            self.add_friend(friend);
        }
    }

    /// Adds or updates one friend.
    pub fn add_friend(&mut self, friend: &pb::Friend) {
        let Some(user) = &friend.user else { return };
        self.learn(user);
        let presence = friend.presence.unwrap_or_default();
        self.friends.insert(
            user.id,
            FriendInfo {
                remark: friend.remark.clone(),
                online: presence.online,
                last_seen_ms: presence.last_seen_ms,
            },
        );
    }

    /// Forgets a friendship (the profile stays known).
    pub fn remove_friend(&mut self, id: i64) {
        self.friends.remove(&id);
    }

    /// Records a presence change; returns whether it concerned a friend.
    pub fn set_presence(&mut self, id: i64, presence: pb::Presence) -> bool {
        match self.friends.get_mut(&id) {
            Some(info) => {
                info.online = presence.online;
                info.last_seen_ms = presence.last_seen_ms;
                true
            }
            None => false,
        }
    }

    /// Sets a friend's remark locally after the server accepted it.
    pub fn set_remark(&mut self, id: i64, remark: &str) {
        if let Some(info) = self.friends.get_mut(&id) {
            info.remark = remark.to_string();
        }
    }

    /// Replaces the block list.
    pub fn set_blocked(&mut self, users: &[pb::User]) {
        self.blocked.clear();
        for user in users {
            self.learn(user);
            self.blocked.insert(user.id, ());
        }
    }

    /// Marks one user blocked or not.
    pub fn set_block(&mut self, id: i64, blocked: bool) {
        if blocked {
            self.blocked.insert(id, ());
        } else {
            self.blocked.remove(&id);
        }
    }

    /// Whether the user blocked `id`.
    pub fn is_blocked(&self, id: i64) -> bool {
        self.blocked.contains_key(&id)
    }

    /// Friendship details, if `id` is a friend.
    pub fn friend(&self, id: i64) -> Option<&FriendInfo> {
        self.friends.get(&id)
    }

    /// Friend ids, sorted by the name shown.
    pub fn friend_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.friends.keys().copied().collect();
        ids.sort_by_cached_key(|id| (self.name(*id).to_lowercase(), *id));
        ids
    }

    /// The name to show: the remark, else the display name, else the username.
    pub fn name(&self, id: i64) -> String {
        if let Some(remark) = self.friends.get(&id).map(|f| &f.remark).filter(|r| !r.is_empty()) {
            return remark.clone();
        }
        match self.users.get(&id) {
            Some(user) if !user.display_name.is_empty() => user.display_name.clone(),
            Some(user) => user.username.clone(),
            None => format!("User {id}"),
        }
    }

    /// Whether `id` is a friend and online.
    pub fn online(&self, id: i64) -> bool {
        self.friends.get(&id).is_some_and(|f| f.online)
    }

    /// The avatar file of `id` (0: none).
    pub fn avatar_file(&self, id: i64) -> i64 {
        self.users.get(&id).map_or(0, |u| u.avatar_file_id)
    }

    /// A subtitle for a friend: online, or when last seen.
    pub fn presence_line(&self, id: i64) -> String {
        match self.friends.get(&id) {
            Some(f) if f.online => "online".into(),
            Some(f) => format::last_seen(f.last_seen_ms, &format::now()),
            None => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, username: &str, display: &str) -> pb::User {
        pb::User {
            id,
            username: username.into(),
            display_name: display.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_prefer_remark_then_display_name_then_username() {
        let mut people = People::default();
        assert_eq!(people.name(7), "User 7");
        people.learn(&user(7, "ada", ""));
        assert_eq!(people.name(7), "ada");
        people.learn(&user(7, "ada", "Ada Lovelace"));
        assert_eq!(people.name(7), "Ada Lovelace");
        people.add_friend(&pb::Friend {
            user: Some(user(7, "ada", "Ada Lovelace")),
            remark: "Countess".into(),
            presence: Some(pb::Presence {
                online: true,
                last_seen_ms: 0,
            }),
            since_ms: 0,
        });
        assert_eq!(people.name(7), "Countess");
        assert!(people.online(7));
        assert!(people.set_presence(
            7,
            pb::Presence {
                online: false,
                last_seen_ms: 1
            }
        ));
        assert!(!people.online(7));
        assert!(!people.set_presence(8, pb::Presence::default()));
    }

    #[test]
    fn friends_sort_by_shown_name() {
        let mut people = People::default();
        for (id, name) in [(1, "zed"), (2, "Bob"), (3, "alice")] {
            people.add_friend(&pb::Friend {
                user: Some(user(id, name, name)),
                ..Default::default()
            });
        }
        assert_eq!(people.friend_ids(), vec![3, 2, 1]);
        people.remove_friend(2);
        assert_eq!(people.friend_ids(), vec![3, 1]);
        people.set_block(3, true);
        assert!(people.is_blocked(3));
    }
}
