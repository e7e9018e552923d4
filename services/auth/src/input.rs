//! Parsing request fields into valid values; each failure names its field.

use sb_events::UserId;

use crate::error::AuthError;
use crate::store::Role;

/// Longest accepted email, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest accepted password, in bytes (argon2 works on any length; this
/// keeps a request from burning CPU on megabytes).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Most users one SeedUsers call creates.
pub const MAX_SEED_COUNT: u32 = 100_000;
/// Longest seed id prefix.
pub const MAX_SEED_PREFIX_LEN: usize = 40;
/// Most ids one LookupUsers call resolves.
pub const MAX_LOOKUP_IDS: usize = 1000;
/// Largest ListUsers page.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// ListUsers page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Trims and lower-cases an email and checks its shape: one `@`, a
/// non-empty local part, a dotted-or-not domain without empty labels, no
/// whitespace or control characters.
pub fn parse_email(field: &'static str, email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    if email.is_empty() {
        return Err(AuthError::invalid(field, "must not be empty"));
    }
    if email.len() > MAX_EMAIL_LEN {
        return Err(AuthError::invalid(field, format!("must be at most {MAX_EMAIL_LEN} bytes")));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(AuthError::invalid(field, "must not contain whitespace or control characters"));
    }
    let Some((local, domain)) = email.split_once('@') else {
        return Err(AuthError::invalid(field, "must look like name@domain"));
    };
    if local.is_empty() || domain.contains('@') {
        return Err(AuthError::invalid(field, "must look like name@domain"));
    }
    parse_domain(field, domain)?;
    Ok(email)
}

/// Checks an email domain: labels separated by dots, none empty.
pub fn parse_domain(field: &'static str, domain: &str) -> Result<(), AuthError> {
    if domain.is_empty() || domain.split('.').any(str::is_empty) {
        return Err(AuthError::invalid(field, "must be a domain like example.com"));
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@') {
        return Err(AuthError::invalid(field, "must be a domain like example.com"));
    }
    Ok(())
}

/// A password to set: not empty, at most [`MAX_PASSWORD_LEN`] bytes.
pub fn parse_password(field: &'static str, password: &str) -> Result<(), AuthError> {
    if password.is_empty() {
        return Err(AuthError::invalid(field, "must not be empty"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::invalid(field, format!("must be at most {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

/// A user id from a request: 1..=128 characters, no control characters,
/// no surrounding whitespace.
pub fn parse_user_id(field: &'static str, id: &str) -> Result<String, AuthError> {
    let parsed = UserId::parse(id).map_err(|error| AuthError::invalid(field, error.to_string()))?;
    if id.trim() != id {
        return Err(AuthError::invalid(field, "must not start or end with whitespace"));
    }
    Ok(parsed.into_string())
}

/// A role from a request. `ROLE_UNSPECIFIED` is `default` when there is one
/// (CreateUser: user) and an error otherwise (SetRole).
pub fn parse_role(field: &'static str, role: i32, default: Option<Role>) -> Result<Role, AuthError> {
    use sb_proto::auth::v1::Role as ProtoRole;
    match ProtoRole::try_from(role) {
        Ok(ProtoRole::User) => Ok(Role::User),
        Ok(ProtoRole::Admin) => Ok(Role::Admin),
        Ok(ProtoRole::Unspecified) => {
            default.ok_or_else(|| AuthError::invalid(field, "must be ROLE_USER or ROLE_ADMIN"))
        }
        Err(_) => Err(AuthError::invalid(field, format!("unknown role {role}"))),
    }
}

/// A token lifetime: 0 means `default_s`, otherwise 1..=`max_s` seconds.
pub fn parse_ttl(field: &'static str, ttl_s: i64, default_s: u64, max_s: u64) -> Result<u64, AuthError> {
    match ttl_s {
        0 => Ok(default_s),
        ttl if ttl > 0 && ttl as u64 <= max_s => Ok(ttl as u64),
        _ => Err(AuthError::invalid(field, format!("must be between 1 and {max_s} seconds (0 for the default)"))),
    }
}

/// A page size: 0 means [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`].
pub fn parse_page_size(field: &'static str, size: u32) -> Result<u32, AuthError> {
    match size {
        0 => Ok(DEFAULT_PAGE_SIZE),
        size if size <= MAX_PAGE_SIZE => Ok(size),
        _ => Err(AuthError::invalid(field, format!("must be at most {MAX_PAGE_SIZE}"))),
    }
}

/// A seed id prefix: 1..=40 characters of `[A-Za-z0-9_-]`.
pub fn parse_seed_prefix(field: &'static str, prefix: &str) -> Result<String, AuthError> {
    if prefix.is_empty() || prefix.len() > MAX_SEED_PREFIX_LEN {
        return Err(AuthError::invalid(field, format!("must be 1 to {MAX_SEED_PREFIX_LEN} characters")));
    }
    if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(AuthError::invalid(field, "may only contain letters, digits, '_' and '-'"));
    }
    Ok(prefix.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: AuthError) -> &'static str {
        match error {
            AuthError::InvalidArgument { field, .. } => field,
            other => panic!("not an invalid argument: {other:?}"),
        }
    }

    #[test]
    fn emails() {
        assert_eq!(parse_email("email", " Ada@Example.COM ").unwrap(), "ada@example.com");
        assert_eq!(parse_email("email", "a@localhost").unwrap(), "a@localhost");
        for bad in ["", "ada", "@x.com", "a@", "a@b@c", "a b@c.d", "a@b..c", "a@.b", "a@b.", "a\n@b.c"] {
            assert_eq!(field_of(parse_email("email", bad).unwrap_err()), "email", "{bad:?}");
        }
        assert!(parse_email("email", &format!("{}@b.c", "a".repeat(300))).is_err());
    }

    #[test]
    fn ids_roles_ttls_pages_prefixes() {
        assert!(parse_user_id("id", "u-1").is_ok());
        for bad in ["", " ", " u", "u\u{0}", &"x".repeat(129)] {
            assert!(parse_user_id("id", bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_role("role", 0, Some(Role::User)).unwrap(), Role::User);
        assert_eq!(parse_role("role", 2, None).unwrap(), Role::Admin);
        assert!(parse_role("role", 0, None).is_err());
        assert!(parse_role("role", 7, Some(Role::User)).is_err());
        assert_eq!(parse_ttl("ttl_seconds", 0, 3600, 10_000).unwrap(), 3600);
        assert_eq!(parse_ttl("ttl_seconds", 10_000, 3600, 10_000).unwrap(), 10_000);
        assert!(parse_ttl("ttl_seconds", 10_001, 3600, 10_000).is_err());
        assert!(parse_ttl("ttl_seconds", -1, 3600, 10_000).is_err());
        assert_eq!(parse_page_size("page_size", 0).unwrap(), DEFAULT_PAGE_SIZE);
        assert!(parse_page_size("page_size", MAX_PAGE_SIZE + 1).is_err());
        assert!(parse_seed_prefix("id_prefix", "load_1-").is_ok());
        for bad in ["", "a.b", "a*", &"x".repeat(41)] {
            assert!(parse_seed_prefix("id_prefix", bad).is_err(), "{bad:?}");
        }
        assert!(parse_password("password", "").is_err());
        assert!(parse_password("password", &"p".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
