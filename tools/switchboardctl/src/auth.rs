//! Commands for the auth service: `login`, `logout`, `users …`, `tokens …`.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use sb_proto::auth::v1 as pb;
use sb_proto::auth::v1::auth_service_client::AuthServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::client::{Client, read_password};
use crate::error::{CliError, Service};
use crate::output::out;
use crate::output::{Format, Table, print_json, print_user, readable_s, rfc3339_s, role_name, user_json, users_table};

/// `login` arguments.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    switchboardctl login --email admin@example.com            # prompts for the password\n  \
    printf '%s\\n' \"$PW\" | switchboardctl login --email admin@example.com --password-stdin\n  \
    TOKEN=$(switchboardctl login --email bob@example.com --password-stdin --print-token <pw.txt)")]
pub struct LoginArgs {
    /// The user's email.
    #[arg(long)]
    email: String,
    /// Read the password from the first line of standard input (else: a prompt).
    #[arg(long)]
    password_stdin: bool,
    /// Print the token on stdout instead of storing it (for scripts).
    #[arg(long)]
    print_token: bool,
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// An ordinary user.
    User,
    /// An administrator.
    Admin,
}

impl RoleArg {
    fn to_proto(self) -> i32 {
        match self {
            Self::User => pb::Role::User as i32,
            Self::Admin => pb::Role::Admin as i32,
        }
    }
}

/// `users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; the password comes from a prompt or --password-stdin.
    #[command(after_help = "Example:\n  \
        printf '%s\\n' \"$PW\" | switchboardctl users create --email ada@example.com --role admin --password-stdin")]
    Create {
        /// Email (stored lower-cased; must be unique).
        #[arg(long)]
        email: String,
        /// Role of the new user.
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        /// Import under this id instead of a generated UUIDv7.
        #[arg(long)]
        id: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Show one user.
    #[command(after_help = "Example:\n  switchboardctl users get 0198a3c2-5b7e-7c11-9d0e-2f6a1b3c4d5e -o json")]
    Get {
        /// The user id.
        id: String,
    },
    /// List users, ordered by id, a page at a time.
    #[command(
        after_help = "Examples:\n  switchboardctl users list --limit 20\n  switchboardctl users list --all -o json"
    )]
    List {
        /// Users per page (1..=1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Continue after a previous page (the page token it printed).
        #[arg(long)]
        page_token: Option<String>,
        /// Follow every page to the end.
        #[arg(long)]
        all: bool,
    },
    /// Disable a user: every token stops verifying and live sockets are disconnected.
    #[command(after_help = "Example:\n  switchboardctl users disable u42")]
    Disable {
        /// The user id.
        id: String,
    },
    /// Re-enable a disabled user (tokens from before the disable stay revoked).
    #[command(after_help = "Example:\n  switchboardctl users enable u42")]
    Enable {
        /// The user id.
        id: String,
    },
    /// Change a user's role (takes effect for tokens issued afterwards).
    #[command(after_help = "Example:\n  switchboardctl users set-role u42 admin")]
    SetRole {
        /// The user id.
        id: String,
        /// The new role.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Bulk-create load-test users <prefix>1..<prefix>N with emails <prefix>N@<domain>.
    #[command(after_help = "Example:\n  switchboardctl users seed --count 20000 --prefix u --domain example.com")]
    Seed {
        /// How many users (1..=100000).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
        /// Id prefix: letters, digits, '_' and '-'.
        #[arg(long, default_value = "load")]
        prefix: String,
        /// Email domain.
        #[arg(long, default_value = "load.test")]
        domain: String,
        /// Make every n-th user an admin (0: none).
        #[arg(long, default_value_t = 0)]
        admin_every: u32,
        /// Read a password all seeded users share from stdin (default: none, they cannot log in).
        #[arg(long)]
        password_stdin: bool,
    },
}

/// `tokens …`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Mint a token for any user; prints the token on stdout.
    #[command(after_help = "Example:\n  TOKEN=$(switchboardctl tokens issue --user u42 --ttl 1h)")]
    Issue {
        /// The user id.
        #[arg(long = "user", value_name = "ID")]
        user_id: String,
        /// Lifetime, e.g. 30m, 1h, 24h (default: the service's).
        #[arg(long, value_parser = sb_config::duration_between(Duration::from_secs(1), Duration::from_secs(31_536_000)))]
        ttl: Option<Duration>,
    },
    /// Revoke every token of a user: live sockets get `exception` and are disconnected.
    #[command(after_help = "Example:\n  switchboardctl tokens revoke --user u42")]
    Revoke {
        /// The user id.
        #[arg(long = "user", value_name = "ID")]
        user_id: String,
    },
    /// Verify a token and show whom it belongs to (default: the context's own).
    #[command(
        after_help = "Examples:\n  switchboardctl tokens verify\n  switchboardctl tokens verify \"$TOKEN\" -o json"
    )]
    Verify {
        /// The token to check.
        token: Option<String>,
    },
}

fn auth(client: &Client) -> Result<AuthServiceClient<Channel>, CliError> {
    Ok(AuthServiceClient::new(client.channel(Service::Auth)?))
}

fn failed(client: &Client, rpc: &'static str) -> impl Fn(tonic::Status) -> CliError + use<> {
    let target = client.target(Service::Auth);
    move |status| CliError::from_status(&target, rpc, &status)
}

fn no_user(id: &str) -> impl FnOnce() -> String + '_ {
    move || format!("no user with id {id}")
}

/// `login`: trades an email and password for a token and stores it for the context.
pub async fn login(client: &Client, args: LoginArgs) -> Result<(), CliError> {
    let password = read_password(args.password_stdin, "password: ")?;
    let response = auth(client)?
        .login(client.request(pb::LoginRequest { email: args.email.clone(), password }))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted => {
                CliError::Usage(format!("login failed: {}", status.message()))
            }
            _ => failed(client, "Login")(status),
        })?
        .into_inner();
    let user = response.user.unwrap_or_default();
    let stored =
        if args.print_token { None } else { Some(client.store.save_token(&client.context_name, &response.token)?) };
    match client.format {
        Format::Json => print_json(&json!({
            "context": client.context_name,
            "user": user_json(&user),
            "expires_at": rfc3339_s(response.expires_at_s),
            "token": args.print_token.then_some(&response.token),
            "token_file": stored.as_ref().map(|path| path.display().to_string()),
        })),
        Format::Table if args.print_token => out!("{}", response.token),
        Format::Table => out!(
            "logged in to {} as {} ({}); the token is valid until {} UTC",
            client.context_name,
            user.email,
            role_name(user.role),
            readable_s(response.expires_at_s)
        ),
    }
    Ok(())
}

/// `logout`: forgets the context's stored token.
pub fn logout(client: &Client) -> Result<(), CliError> {
    let removed = client.store.remove_token(&client.context_name)?;
    match client.format {
        Format::Json => print_json(&json!({"context": client.context_name, "removed": removed})),
        Format::Table if removed => out!("logged out of {}", client.context_name),
        Format::Table => out!("not logged in to {}", client.context_name),
    }
    Ok(())
}

/// `users …`.
pub async fn run_users(client: &Client, command: UsersCommand) -> Result<(), CliError> {
    let mut grpc = auth(client)?;
    match command {
        UsersCommand::Create { email, role, id, password_stdin } => {
            let password = read_password(password_stdin, "password of the new user: ")?;
            let request = pb::CreateUserRequest { email, password, role: role.to_proto(), id: id.unwrap_or_default() };
            let user = grpc.create_user(client.authed(request)?).await.map_err(failed(client, "CreateUser"))?;
            print_user(user.get_ref(), client.format);
        }
        UsersCommand::Get { id } => {
            let user = grpc
                .get_user(client.authed(pb::GetUserRequest { id: id.clone() })?)
                .await
                .map_err(|status| failed(client, "GetUser")(status).not_found_as(no_user(&id)))?;
            print_user(user.get_ref(), client.format);
        }
        UsersCommand::List { limit, page_token, all } => {
            let mut users = Vec::new();
            let mut page_token = page_token.unwrap_or_default();
            let next = loop {
                let request = pb::ListUsersRequest { page_size: limit, page_token: page_token.clone() };
                let page =
                    grpc.list_users(client.authed(request)?).await.map_err(failed(client, "ListUsers"))?.into_inner();
                users.extend(page.users);
                if page.next_page_token.is_empty() || !all {
                    break Some(page.next_page_token).filter(|token| !token.is_empty());
                }
                page_token = page.next_page_token;
            };
            match client.format {
                Format::Json => print_json(&json!({
                    "users": users.iter().map(user_json).collect::<Vec<_>>(),
                    "next_page_token": next,
                })),
                Format::Table => {
                    users_table(&users).print();
                    if let Some(next) = next {
                        eprintln!("more users: --page-token {next} (or --all)");
                    }
                }
            }
        }
        UsersCommand::Disable { id } => {
            let request = pb::DisableUserRequest { id: id.clone(), disabled: true };
            let user = grpc
                .disable_user(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "DisableUser")(status).not_found_as(no_user(&id)))?;
            print_user(user.get_ref(), client.format);
        }
        UsersCommand::Enable { id } => {
            let request = pb::DisableUserRequest { id: id.clone(), disabled: false };
            let user = grpc
                .disable_user(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "DisableUser")(status).not_found_as(no_user(&id)))?;
            print_user(user.get_ref(), client.format);
        }
        UsersCommand::SetRole { id, role } => {
            let request = pb::SetRoleRequest { id: id.clone(), role: role.to_proto() };
            let user = grpc
                .set_role(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "SetRole")(status).not_found_as(no_user(&id)))?;
            print_user(user.get_ref(), client.format);
        }
        UsersCommand::Seed { count, prefix, domain, admin_every, password_stdin } => {
            let password = if password_stdin { read_password(true, "")? } else { String::new() };
            let request =
                pb::SeedUsersRequest { count, id_prefix: prefix.clone(), email_domain: domain, admin_every, password };
            let started = std::time::Instant::now();
            let response =
                grpc.seed_users(client.authed(request)?).await.map_err(failed(client, "SeedUsers"))?.into_inner();
            let seconds = started.elapsed().as_secs_f64();
            match client.format {
                Format::Json => print_json(&json!({
                    "requested": count,
                    "created": response.created,
                    "first_id": format!("{prefix}1"),
                    "last_id": format!("{prefix}{count}"),
                    "seconds": seconds,
                })),
                Format::Table => out!(
                    "created {} of {count} users {prefix}1..{prefix}{count} in {seconds:.2} s (existing ids skipped)",
                    response.created
                ),
            }
        }
    }
    Ok(())
}

/// `tokens …`.
pub async fn run_tokens(client: &Client, command: TokensCommand) -> Result<(), CliError> {
    let mut grpc = auth(client)?;
    match command {
        TokensCommand::Issue { user_id, ttl } => {
            let ttl_seconds = ttl.map_or(0, |ttl| ttl.as_secs().max(1) as i64);
            let request = pb::IssueTokenRequest { user_id: user_id.clone(), ttl_seconds };
            let issued = grpc
                .issue_token(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "IssueToken")(status).not_found_as(no_user(&user_id)))?
                .into_inner();
            match client.format {
                Format::Json => print_json(&json!({
                    "user_id": user_id,
                    "token": issued.token,
                    "expires_at": rfc3339_s(issued.expires_at_s),
                })),
                Format::Table => {
                    out!("{}", issued.token);
                    eprintln!("valid until {} UTC", readable_s(issued.expires_at_s));
                }
            }
        }
        TokensCommand::Revoke { user_id } => {
            let request = pb::RevokeTokensRequest { user_id: user_id.clone() };
            let revoked = grpc
                .revoke_tokens(client.authed(request)?)
                .await
                .map_err(|status| failed(client, "RevokeTokens")(status).not_found_as(no_user(&user_id)))?
                .into_inner();
            match client.format {
                Format::Json => print_json(&json!({"user_id": user_id, "token_version": revoked.token_version})),
                Format::Table => out!(
                    "revoked every token of {user_id} and disconnected its sockets (token version now {})",
                    revoked.token_version
                ),
            }
        }
        TokensCommand::Verify { token } => {
            let token = match token {
                Some(token) => token,
                None => client.token()?,
            };
            let response = grpc
                .verify_token(pb::VerifyTokenRequest { token })
                .await
                .map_err(|status| match status.code() {
                    tonic::Code::Unauthenticated => {
                        CliError::Usage(format!("the token does not verify: {}", status.message()))
                    }
                    _ => failed(client, "VerifyToken")(status),
                })?
                .into_inner();
            let user = response.user.unwrap_or_default();
            match client.format {
                Format::Json => print_json(&json!({
                    "user": user_json(&user),
                    "issued_at": rfc3339_s(response.issued_at_s),
                    "expires_at": rfc3339_s(response.expires_at_s),
                })),
                Format::Table => {
                    let mut table = Table::new(&["USER", "EMAIL", "ROLE", "ISSUED (UTC)", "EXPIRES (UTC)"]);
                    table.row(vec![
                        user.id,
                        user.email,
                        role_name(user.role).to_owned(),
                        readable_s(response.issued_at_s),
                        readable_s(response.expires_at_s),
                    ]);
                    table.print();
                }
            }
        }
    }
    Ok(())
}

/// Whether user `id` exists, asked of auth (for commands whose service cannot tell).
pub async fn user_exists(client: &Client, id: &str) -> Result<bool, CliError> {
    match auth(client)?.get_user(client.authed(pb::GetUserRequest { id: id.to_owned() })?).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(failed(client, "GetUser")(status)),
    }
}
