//! Printing results as text or JSON.

use sb_proto::auth::v1 as pb;

/// `user` or `admin`.
pub fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::User) => "user",
        _ => "unspecified",
    }
}

/// A user as a JSON object.
pub fn user_json(user: &pb::User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "email": user.email,
        "role": role_name(user.role),
        "token_version": user.token_version,
        "disabled": user.disabled,
        "created_at_ms": user.created_at_ms,
        "updated_at_ms": user.updated_at_ms,
    })
}

/// A user as one line: id, email, role, token version, state.
pub fn user_line(user: &pb::User) -> String {
    format!(
        "{}\t{}\t{}\tv{}\t{}",
        user.id,
        user.email,
        role_name(user.role),
        user.token_version,
        if user.disabled { "disabled" } else { "enabled" }
    )
}

/// Prints one user.
pub fn print_user(user: &pb::User, json: bool) {
    if json {
        println!("{}", user_json(user));
    } else {
        println!("{}", user_line(user));
    }
}

/// Turns a gRPC failure into a readable error: the code, then the service's message.
pub fn status_error(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what}: {:?}: {}", status.code(), status.message())
}
