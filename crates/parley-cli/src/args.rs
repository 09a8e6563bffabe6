//! The command line, declared with clap's derive API.
//!
//! Kept apart from the code that runs the commands so `--help` output and
//! parsing can be read (and tested) in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Parley command-line client.
#[derive(Parser, Debug)]
#[command(name = "parley-cli", version, about, propagate_version = true)]
pub struct Cli {
    /// Server address as host:port [default: the saved session's server, else 127.0.0.1:7420]
    #[arg(long, global = true, env = "PARLEY_SERVER", value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// Name to expect in the server's certificate [default: the host part of --server]
    #[arg(long, global = true, value_name = "NAME")]
    pub server_name: Option<String>,

    /// Trust servers whose certificate chains to this CA (PEM file)
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "fingerprint")]
    pub ca: Option<PathBuf>,

    /// Trust only the server certificate with this SHA-256 fingerprint (hex);
    /// without --ca or --fingerprint the first certificate seen is remembered
    #[arg(long, global = true, value_name = "HEX")]
    pub fingerprint: Option<String>,

    /// Where the session and known-hosts files live
    #[arg(long, global = true, env = "PARLEY_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account (does not log in)
    Register {
        /// Username: 3-32 of a-z 0-9 _ . -
        username: String,
        /// Display name [default: the username]
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Log in and save the session for later commands
    Login {
        username: String,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// End the saved session
    Logout,
    /// Show who the saved session belongs to
    Whoami,
    /// List your sessions on all devices, or revoke one
    Sessions(SessionsArgs),
    /// Change your password (signs out your other sessions)
    Passwd {
        #[command(flatten)]
        password: PasswordArg,
        /// The new password (visible to other local users; prefer the prompt or PARLEY_NEW_PASSWORD)
        #[arg(
            long,
            env = "PARLEY_NEW_PASSWORD",
            hide_env_values = true,
            value_name = "PASSWORD"
        )]
        new_password: Option<String>,
    },
    /// Show a profile (yours without USER), or change yours
    Profile(ProfileArgs),
    /// Search your messages (or, with --users, find users by name prefix)
    Search {
        query: String,
        /// Only this conversation
        #[arg(long, value_name = "ID", conflicts_with = "users")]
        conv: Option<i64>,
        /// Find users whose username or display name starts with QUERY
        #[arg(long)]
        users: bool,
        /// Results per page
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Continue from a previous page
        #[arg(long, default_value = "")]
        cursor: String,
    },
    /// Manage friends, friend requests and blocks
    Friend {
        #[command(subcommand)]
        command: FriendCommand,
    },
    /// List your friends with presence
    Friends,
    /// List your conversations with unread counts and last messages
    Conversations,
    /// Chat interactively with USER (direct) or in conversation ID
    Chat {
        /// A username or a conversation id
        #[arg(value_name = "USER|CONV_ID")]
        target: String,
        /// Messages of history shown first
        #[arg(long, default_value_t = 20)]
        history: u32,
    },
    /// Send a text message: `send USER TEXT` or `send --conv ID TEXT` (TEXT `-` reads stdin)
    Send {
        #[command(flatten)]
        to: Recipient,
    },
    /// Upload an image and send it: `send-image USER PATH` or `send-image --conv ID PATH`
    SendImage {
        #[command(flatten)]
        to: Recipient,
        /// A caption shown with the image
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Upload any file and send it: `send-file USER PATH` or `send-file --conv ID PATH`
    SendFile {
        #[command(flatten)]
        to: Recipient,
        /// A caption shown with the file
        #[arg(long, default_value = "")]
        caption: String,
    },
    /// Show the messages of a conversation, newest last
    History {
        /// A conversation id or the username of a direct chat
        #[arg(value_name = "CONV|USER")]
        target: String,
        /// Only messages before this seq (for paging back)
        #[arg(long, value_name = "SEQ")]
        before: Option<i64>,
        /// How many messages
        #[arg(long, default_value_t = 30)]
        limit: u32,
    },
    /// Download a file (resuming a partial download) and verify its SHA-256
    Download {
        file_id: i64,
        /// Where to write it [default: the file's name in the current directory]
        #[arg(short, long, value_name = "PATH")]
        output: Option<PathBuf>,
    },
    /// Create and manage group conversations
    Group {
        #[command(subcommand)]
        command: GroupCommand,
    },
    /// Set or fetch avatars
    Avatar {
        #[command(subcommand)]
        command: AvatarCommand,
    },
    /// Voice-call USER (or conversation ID) with a tone or a WAV file, headless
    Call {
        /// A username or a direct conversation id
        #[arg(value_name = "USER|CONV_ID")]
        target: String,
        #[command(flatten)]
        media: CallMediaArgs,
    },
    /// Wait for a voice call and answer it, headless
    Answer {
        /// Answer the next incoming call without asking (the only mode for now)
        #[arg(long, required = true)]
        auto: bool,
        #[command(flatten)]
        media: CallMediaArgs,
    },
}

/// Audio of `call` and `answer`.
#[derive(Args, Debug)]
pub struct CallMediaArgs {
    /// Send this WAV file (any rate and channel count) instead of a tone
    #[arg(long, value_name = "FILE", conflicts_with = "tone")]
    pub audio_file: Option<PathBuf>,
    /// Send a sine tone of this frequency
    #[arg(long, value_name = "HZ", default_value_t = 440.0)]
    pub tone: f64,
    /// Record what you hear to this WAV file
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Hang up after this many seconds connected [default: when the other side does]
    #[arg(long, value_name = "N")]
    pub seconds: Option<u64>,
}

/// Who a message goes to: a user (direct chat) or, with `--conv`, any
/// conversation; followed by the text or path.
#[derive(Args, Debug)]
pub struct Recipient {
    /// Send to this conversation instead of a user
    #[arg(long, value_name = "ID")]
    pub conv: Option<i64>,
    /// USER then TEXT/PATH, or only TEXT/PATH with --conv
    #[arg(required = true, num_args = 1..=2, value_name = "USER TEXT|PATH")]
    pub args: Vec<String>,
}

/// Subcommands of `group`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Create a group with some of your friends
    Create {
        name: String,
        #[arg(value_name = "USER")]
        members: Vec<String>,
    },
    /// Add friends to a group
    Invite {
        conv: i64,
        #[arg(required = true, value_name = "USER")]
        users: Vec<String>,
    },
    /// Leave a group
    Leave { conv: i64 },
    /// Remove a member (owner and admins)
    Kick { conv: i64, user: String },
    /// Rename a group
    Rename { conv: i64, name: String },
    /// List the members of a conversation
    Members { conv: i64 },
    /// Make a member an admin or a plain member (owner only)
    Role {
        conv: i64,
        user: String,
        #[arg(value_parser = ["admin", "member"])]
        role: String,
    },
}

/// Subcommands of `avatar`.
#[derive(Subcommand, Debug)]
pub enum AvatarCommand {
    /// Upload an image and make it your avatar
    Set { path: PathBuf },
    /// Save a user's avatar (yours without USER)
    Get {
        user: Option<String>,
        #[arg(short, long, value_name = "PATH")]
        output: PathBuf,
    },
}

/// A password from the command line or the environment; prompted for otherwise.
#[derive(Args, Debug, Default)]
pub struct PasswordArg {
    /// The password (visible to other local users; prefer the prompt or PARLEY_PASSWORD)
    #[arg(
        long,
        env = "PARLEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub password: Option<String>,
}

/// `sessions` and `sessions revoke ID`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub command: Option<SessionsCommand>,
}

/// Subcommands of `sessions`.
#[derive(Subcommand, Debug)]
pub enum SessionsCommand {
    /// Sign out one session (see `sessions` for ids)
    Revoke { id: i64 },
}

/// `profile [USER]` and `profile set …`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: Option<ProfileCommand>,
    /// Whose profile [default: yours]
    pub user: Option<String>,
}

/// Subcommands of `profile`.
#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// Change your display name and/or status line
    Set {
        #[arg(long, value_name = "NAME")]
        display_name: Option<String>,
        /// Status line (empty to clear)
        #[arg(long, value_name = "TEXT")]
        status: Option<String>,
    },
}

/// Subcommands of `friend`.
#[derive(Subcommand, Debug)]
pub enum FriendCommand {
    /// Ask USER to be your friend
    Request {
        user: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List incoming and outgoing friend requests
    Requests,
    /// Accept an incoming request (see `friend requests` for ids)
    Accept { id: i64 },
    /// Decline an incoming request
    Decline { id: i64 },
    /// Withdraw an outgoing request
    Cancel { id: i64 },
    /// Stop being friends with USER
    Remove { user: String },
    /// Block USER: they can no longer send you requests or messages
    Block { user: String },
    /// Unblock USER
    Unblock { user: String },
    /// List the users you blocked
    Blocked,
    /// Set your private nickname for a friend (empty to clear)
    Remark { user: String, text: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn profile_and_sessions_take_an_argument_or_a_subcommand() {
        let cli = Cli::try_parse_from(["parley-cli", "profile", "bob"]).unwrap();
        assert!(
            matches!(cli.command, Command::Profile(ProfileArgs { user: Some(ref u), command: None }) if u == "bob")
        );
        let cli = Cli::try_parse_from(["parley-cli", "profile", "set", "--status", "hi"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Profile(ProfileArgs {
                command: Some(ProfileCommand::Set { .. }),
                ..
            })
        ));
        let cli = Cli::try_parse_from(["parley-cli", "--json", "sessions", "revoke", "7"]).unwrap();
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::Sessions(SessionsArgs {
                command: Some(SessionsCommand::Revoke { id: 7 })
            })
        ));
        let cli = Cli::try_parse_from(["parley-cli", "friend", "remark", "bob", "Bobby"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Friend {
                command: FriendCommand::Remark { .. }
            }
        ));
    }

    #[test]
    fn messaging_commands_parse() {
        let cli = Cli::try_parse_from(["parley-cli", "send", "bob", "hi there"]).unwrap();
        let Command::Send { to } = cli.command else {
            panic!()
        };
        assert_eq!((to.conv, to.args.len()), (None, 2));
        let cli = Cli::try_parse_from(["parley-cli", "send", "--conv", "7", "hi"]).unwrap();
        let Command::Send { to } = cli.command else {
            panic!()
        };
        assert_eq!((to.conv, to.args), (Some(7), vec!["hi".to_string()]));
        assert!(Cli::try_parse_from(["parley-cli", "send", "a", "b", "c"]).is_err());
        let cli = Cli::try_parse_from(["parley-cli", "group", "create", "team", "bob", "carol"]).unwrap();
        assert!(
            matches!(cli.command, Command::Group { command: GroupCommand::Create { ref members, .. } } if members.len() == 2)
        );
        let cli = Cli::try_parse_from(["parley-cli", "download", "5", "-o", "x.png"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Download {
                file_id: 5,
                output: Some(_)
            }
        ));
        let cli = Cli::try_parse_from(["parley-cli", "search", "--users", "bo"]).unwrap();
        assert!(matches!(cli.command, Command::Search { users: true, .. }));
        assert!(Cli::try_parse_from(["parley-cli", "search", "--users", "--conv", "1", "x"]).is_err());
    }

    #[test]
    fn call_commands_parse() {
        let cli =
            Cli::try_parse_from(["parley-cli", "call", "bob", "--tone", "660", "--seconds", "3"]).unwrap();
        let Command::Call { target, media } = cli.command else {
            panic!()
        };
        assert_eq!(
            (target.as_str(), media.tone, media.seconds),
            ("bob", 660.0, Some(3))
        );
        let cli = Cli::try_parse_from(["parley-cli", "answer", "--auto", "--record", "out.wav"]).unwrap();
        assert!(matches!(cli.command, Command::Answer { auto: true, ref media } if media.record.is_some()));
        assert!(Cli::try_parse_from(["parley-cli", "answer"]).is_err());
        assert!(
            Cli::try_parse_from([
                "parley-cli",
                "call",
                "bob",
                "--tone",
                "1",
                "--audio-file",
                "a.wav"
            ])
            .is_err()
        );
    }

    #[test]
    fn ca_and_fingerprint_exclude_each_other() {
        let err = Cli::try_parse_from(["parley-cli", "--ca", "x.pem", "--fingerprint", "ab", "whoami"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
