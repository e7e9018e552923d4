//! Commands for the auth service: `login`, `users …`, `token …`.

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use sb_authn::{AuthClient, AuthGrpcClient};
use sb_proto::auth::v1 as pb;

use crate::GlobalArgs;
use crate::output::{print_user, role_name, status_error, user_json, user_line};

/// `sbctl login` arguments.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user's email.
    #[arg(long)]
    email: String,
    /// The password (prefer the SB_PASSWORD env var: flags show up in `ps`).
    #[arg(long, env = "SB_PASSWORD", hide_env_values = true)]
    password: String,
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

/// `sbctl users …`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user.
    Create {
        /// Email (stored lower-cased; must be unique).
        #[arg(long)]
        email: String,
        /// Password (prefer SB_NEW_PASSWORD: flags show up in `ps`).
        #[arg(long, env = "SB_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        /// Role of the new user.
        #[arg(long, value_enum, default_value = "user")]
        role: RoleArg,
        /// Import under this id instead of a generated UUIDv7.
        #[arg(long)]
        id: Option<String>,
    },
    /// Show one user.
    Get {
        /// The user id.
        id: String,
    },
    /// List users ordered by id.
    List {
        /// Users per page (1..=1000).
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        /// Continue from the `next page` token a previous call printed.
        #[arg(long)]
        page_token: Option<String>,
        /// Follow every page to the end.
        #[arg(long)]
        all: bool,
    },
    /// Disable a user: every token stops verifying and live sockets are disconnected.
    Disable {
        /// The user id.
        id: String,
    },
    /// Re-enable a disabled user (tokens from before the disable stay revoked).
    Enable {
        /// The user id.
        id: String,
    },
    /// Change a user's role.
    Role {
        /// The user id.
        id: String,
        /// The new role.
        #[arg(value_enum)]
        role: RoleArg,
    },
    /// Bulk-create load-test users <prefix>1..<prefix>N with emails <prefix>N@<domain>.
    Seed {
        /// How many users (1..=100000).
        #[arg(long)]
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
        /// A password all seeded users share (default: none, they cannot log in).
        #[arg(long, env = "SB_SEED_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
}

/// `sbctl token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for any user (admin); prints the token on stdout.
    Issue {
        /// The user id.
        user_id: String,
        /// Lifetime in seconds (0: the service default).
        #[arg(long, default_value_t = 0)]
        ttl: i64,
    },
    /// Revoke every token of a user (admin): live sockets are disconnected.
    Revoke {
        /// The user id.
        user_id: String,
    },
    /// Verify a token and show whom it belongs to (default: the --token / SB_TOKEN one).
    Verify {
        /// The token to check.
        token: Option<String>,
    },
}

fn client(global: &GlobalArgs) -> anyhow::Result<AuthGrpcClient> {
    Ok(AuthClient::connect_lazy(&global.auth_addr)?.grpc())
}

/// `message` carrying the caller's token.
fn authed<T>(global: &GlobalArgs, message: T) -> anyhow::Result<tonic::Request<T>> {
    let token = sb_authn::strip_bearer(global.require_token()?);
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}").parse().context("the token contains characters a header cannot carry")?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// `sbctl login`.
pub async fn login(global: &GlobalArgs, args: LoginArgs) -> anyhow::Result<()> {
    let response = client(global)?
        .login(pb::LoginRequest { email: args.email, password: args.password })
        .await
        .map_err(|status| status_error("login", status))?
        .into_inner();
    if global.json {
        let user = response.user.as_ref().map(user_json);
        println!(
            "{}",
            serde_json::json!({"token": response.token, "expires_at_s": response.expires_at_s, "user": user})
        );
    } else {
        println!("{}", response.token);
        eprintln!("token expires at {} (unix seconds)", response.expires_at_s);
    }
    Ok(())
}

/// `sbctl users …`.
pub async fn run_users(global: &GlobalArgs, command: UsersCommand) -> anyhow::Result<()> {
    let mut grpc = client(global)?;
    match command {
        UsersCommand::Create { email, password, role, id } => {
            let request = pb::CreateUserRequest { email, password, role: role.to_proto(), id: id.unwrap_or_default() };
            let user = grpc.create_user(authed(global, request)?).await.map_err(|s| status_error("create user", s))?;
            print_user(user.get_ref(), global.json);
        }
        UsersCommand::Get { id } => {
            let user = grpc
                .get_user(authed(global, pb::GetUserRequest { id })?)
                .await
                .map_err(|s| status_error("get user", s))?;
            print_user(user.get_ref(), global.json);
        }
        UsersCommand::List { page_size, page_token, all } => {
            let mut page_token = page_token.unwrap_or_default();
            loop {
                let request = pb::ListUsersRequest { page_size, page_token: page_token.clone() };
                let page = grpc
                    .list_users(authed(global, request)?)
                    .await
                    .map_err(|s| status_error("list users", s))?
                    .into_inner();
                for user in &page.users {
                    if global.json {
                        println!("{}", user_json(user));
                    } else {
                        println!("{}", user_line(user));
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                if !all {
                    eprintln!("more users: --page-token {} (or --all)", page.next_page_token);
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        UsersCommand::Disable { id } => {
            let request = pb::DisableUserRequest { id, disabled: true };
            let user =
                grpc.disable_user(authed(global, request)?).await.map_err(|s| status_error("disable user", s))?;
            print_user(user.get_ref(), global.json);
        }
        UsersCommand::Enable { id } => {
            let request = pb::DisableUserRequest { id, disabled: false };
            let user = grpc.disable_user(authed(global, request)?).await.map_err(|s| status_error("enable user", s))?;
            print_user(user.get_ref(), global.json);
        }
        UsersCommand::Role { id, role } => {
            let request = pb::SetRoleRequest { id, role: role.to_proto() };
            let user = grpc.set_role(authed(global, request)?).await.map_err(|s| status_error("set role", s))?;
            print_user(user.get_ref(), global.json);
        }
        UsersCommand::Seed { count, prefix, domain, admin_every, password } => {
            let request = pb::SeedUsersRequest {
                count,
                id_prefix: prefix.clone(),
                email_domain: domain,
                admin_every,
                password: password.unwrap_or_default(),
            };
            let started = std::time::Instant::now();
            let response = grpc
                .seed_users(authed(global, request)?)
                .await
                .map_err(|s| status_error("seed users", s))?
                .into_inner();
            let elapsed = started.elapsed();
            if global.json {
                println!("{}", serde_json::json!({"created": response.created, "seconds": elapsed.as_secs_f64()}));
            } else {
                println!(
                    "created {} of {count} users {prefix}1..{prefix}{count} in {:.2} s (existing ids skipped)",
                    response.created,
                    elapsed.as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// `sbctl token …`.
pub async fn run_token(global: &GlobalArgs, command: TokenCommand) -> anyhow::Result<()> {
    let mut grpc = client(global)?;
    match command {
        TokenCommand::Issue { user_id, ttl } => {
            let request = pb::IssueTokenRequest { user_id, ttl_seconds: ttl };
            let issued = grpc
                .issue_token(authed(global, request)?)
                .await
                .map_err(|s| status_error("issue token", s))?
                .into_inner();
            if global.json {
                println!("{}", serde_json::json!({"token": issued.token, "expires_at_s": issued.expires_at_s}));
            } else {
                println!("{}", issued.token);
                eprintln!("token expires at {} (unix seconds)", issued.expires_at_s);
            }
        }
        TokenCommand::Revoke { user_id } => {
            let request = pb::RevokeTokensRequest { user_id: user_id.clone() };
            let revoked = grpc
                .revoke_tokens(authed(global, request)?)
                .await
                .map_err(|s| status_error("revoke tokens", s))?
                .into_inner();
            if global.json {
                println!("{}", serde_json::json!({"user_id": user_id, "token_version": revoked.token_version}));
            } else {
                println!("revoked every token of {user_id}; token_version is now {}", revoked.token_version);
            }
        }
        TokenCommand::Verify { token } => {
            let token = match token {
                Some(token) => token,
                None => global.require_token()?.to_owned(),
            };
            let response = grpc
                .verify_token(pb::VerifyTokenRequest { token })
                .await
                .map_err(|s| status_error("verify token", s))?
                .into_inner();
            let user = response.user.context("auth answered without a user")?;
            if global.json {
                println!(
                    "{}",
                    serde_json::json!({"user": user_json(&user), "issued_at_s": response.issued_at_s, "expires_at_s": response.expires_at_s})
                );
            } else {
                println!("{} ({}, {}) until {}", user.id, user.email, role_name(user.role), response.expires_at_s);
            }
        }
    }
    Ok(())
}
