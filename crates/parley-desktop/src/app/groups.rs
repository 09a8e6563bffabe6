//! Groups: creating, members, inviting, kicking, renaming and leaving.

use parley_client::pb;

use slint::ComponentHandle;

use super::{App, with_app};
use crate::{Main, PersonRow};

impl App {
    /// Loads the open group's members into the group dialog.
    pub(crate) fn load_members(&self) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        let name = {
            let state = self.state.borrow();
            state
                .conversations
                .get(id)
                .map(|c| c.info.name.clone())
                .unwrap_or_default()
        };
        self.ui.global::<Main>().set_group_name(name.into());
        self.bridge.call(
            move |client| async move { client.members(id).await },
            move |result| {
                with_app(|app| match result {
                    Ok(members) => app.set_members(members),
                    Err(e) => app.failed("Loading members failed", &e),
                })
            },
        );
    }

    fn set_members(&self, members: Vec<pb::Member>) {
        let me = self.me_id();
        let my_role = members
            .iter()
            .find(|m| m.user.as_ref().is_some_and(|u| u.id == me))
            .map_or(pb::Role::Member, |m| m.role());
        let manage = matches!(my_role, pb::Role::Owner | pb::Role::Admin);
        let rows: Vec<PersonRow> = members
            .iter()
            .filter_map(|member| {
                let user = member.user.as_ref()?;
                self.people.borrow_mut().learn(user);
                let role = match member.role() {
                    pb::Role::Owner => "owner",
                    pb::Role::Admin => "admin",
                    _ => "member",
                };
                let subtitle = if user.id == me {
                    "you".to_string()
                } else {
                    format!("@{}", user.username)
                };
                let mut row = self.person_row(user.id, subtitle, role);
                row.can_act = manage && user.id != me && member.role() != pb::Role::Owner;
                Some(row)
            })
            .collect();
        self.member_rows.set_vec(rows);
        self.state.borrow_mut().members = members;
        self.ui.global::<Main>().set_can_manage(manage);
        self.refresh_invitable(false);
    }

    /// Friends who could join: for the group dialog (not yet members) or the
    /// new-group dialog (all friends, with the chosen ones marked).
    pub(crate) fn refresh_invitable(&self, choosing: bool) {
        let ids: Vec<i64> = {
            let state = self.state.borrow();
            let members: Vec<i64> = state
                .members
                .iter()
                .filter_map(|m| m.user.as_ref().map(|u| u.id))
                .collect();
            self.people
                .borrow()
                .friend_ids()
                .into_iter()
                .filter(|id| choosing || !members.contains(id))
                .collect()
        };
        let rows: Vec<PersonRow> = ids
            .iter()
            .map(|id| {
                let chosen = self.state.borrow().chosen.contains(id);
                let subtitle = self.people.borrow().presence_line(*id);
                self.person_row(*id, subtitle, if chosen { "chosen" } else { "friend" })
            })
            .collect();
        self.invitable_rows.set_vec(rows);
        self.state.borrow_mut().invitable = ids;
    }

    pub(crate) fn prepare_new_group(&self) {
        {
            let mut state = self.state.borrow_mut();
            state.chosen.clear();
            state.members.clear();
        }
        self.ui.global::<Main>().set_group_name("".into());
        self.refresh_invitable(true);
    }

    pub(crate) fn create_group(&self) {
        let name = self.ui.global::<Main>().get_group_name().trim().to_string();
        if name.is_empty() {
            return;
        }
        let members: Vec<i64> = self.state.borrow().chosen.iter().copied().collect();
        self.bridge.call(
            move |client| async move { client.create_group(&name, &members).await },
            |result| {
                with_app(|app| match result {
                    Ok(conversation) => {
                        let id = conversation.id;
                        app.state.borrow_mut().conversations.upsert(conversation);
                        app.ui.global::<Main>().set_overlay("".into());
                        app.open_conversation(id);
                    }
                    Err(e) => app.failed("Creating the group failed", &e),
                })
            },
        );
    }

    pub(crate) fn rename_group(&self) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        let name = self.ui.global::<Main>().get_group_name().trim().to_string();
        if name.is_empty() {
            return;
        }
        self.bridge.call(
            move |client| async move { client.rename_group(id, &name).await },
            |result| {
                with_app(|app| match result {
                    Ok(()) => app.toast("Group renamed"),
                    Err(e) => app.failed("Renaming failed", &e),
                })
            },
        );
    }

    pub(crate) fn leave_group(&self) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        self.bridge.call(
            move |client| async move { client.leave_group(id).await },
            move |result| {
                with_app(|app| match result {
                    Ok(()) => {
                        app.ui.global::<Main>().set_overlay("".into());
                        app.state.borrow_mut().conversations.remove(id);
                        app.close_chat();
                        app.refresh_conversations();
                    }
                    Err(e) => app.failed("Leaving failed", &e),
                })
            },
        );
    }

    pub(crate) fn kick(&self, user_id: i64) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        self.bridge.call(
            move |client| async move { client.kick(id, user_id).await },
            |result| {
                with_app(|app| match result {
                    Ok(()) => app.load_members(),
                    Err(e) => app.failed("Removing the member failed", &e),
                })
            },
        );
    }

    pub(crate) fn invite(&self, user_id: i64) {
        let Some(id) = self.state.borrow().open else {
            return;
        };
        self.bridge.call(
            move |client| async move { client.invite(id, &[user_id]).await },
            |result| {
                with_app(|app| match result {
                    Ok(()) => app.load_members(),
                    Err(e) => app.failed("Inviting failed", &e),
                })
            },
        );
    }
}
