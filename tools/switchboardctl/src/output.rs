//! Printing results: `-o table` (aligned columns for people, UTC timestamps
//! as `2025-06-01 12:00:00`) or `-o json` (one pretty-printed JSON document
//! with stable snake_case field names and RFC 3339 timestamps, for scripts).

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use sb_proto::auth::v1 as pb;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

/// Writes one line to stdout. A closed pipe (`switchboardctl … | head`) ends
/// the output quietly instead of panicking as `println!` would.
pub fn emit(line: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(line.as_bytes()).and_then(|()| stdout.write_all(b"\n"));
}

/// [`emit`] with `format!` arguments.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::emit(&format!($($arg)*)) };
}
pub(crate) use out;

/// Columns of text, printed with each column as wide as its widest cell.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row (as many cells as headers).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// The table as text; the last column is not padded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut out = String::new();
            let last = cells.len().saturating_sub(1);
            for (index, cell) in cells.into_iter().enumerate() {
                out.push_str(cell);
                if index < last {
                    out.extend(std::iter::repeat_n(' ', widths[index] - cell.chars().count() + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = line(self.headers.clone());
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row.iter().map(String::as_str).collect()));
        }
        out
    }

    /// Prints the table.
    pub fn print(&self) {
        out!("{}", self.render());
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    out!("{}", serde_json::to_string_pretty(value).expect("a Value serializes"));
}

fn from_ms(ms: i64) -> Option<OffsetDateTime> {
    if ms <= 0 {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Milliseconds since the epoch as RFC 3339 (JSON null when unset).
pub fn rfc3339_ms(ms: i64) -> Value {
    from_ms(ms).and_then(|at| at.format(&Rfc3339).ok()).map_or(Value::Null, Value::String)
}

/// Seconds since the epoch as RFC 3339 (JSON null when unset).
pub fn rfc3339_s(seconds: i64) -> Value {
    rfc3339_ms(seconds.saturating_mul(1000))
}

fn readable(at: OffsetDateTime) -> String {
    at.format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]")).unwrap_or_default()
}

/// Milliseconds since the epoch for a table: `2025-06-01 12:00:00` (UTC), `-` when unset.
pub fn readable_ms(ms: i64) -> String {
    from_ms(ms).map_or_else(|| "-".to_owned(), readable)
}

/// Seconds since the epoch for a table.
pub fn readable_s(seconds: i64) -> String {
    readable_ms(seconds.saturating_mul(1000))
}

/// An RFC 3339 timestamp (from a service) for a table; kept as it is if it does not parse.
pub fn readable_rfc3339(text: &str) -> String {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|at| readable(at.to_offset(time::UtcOffset::UTC)))
        .unwrap_or_else(|_| text.to_owned())
}

/// `user` or `admin`.
pub fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Admin) => "admin",
        Ok(pb::Role::User) => "user",
        _ => "unspecified",
    }
}

/// A user as JSON.
pub fn user_json(user: &pb::User) -> Value {
    json!({
        "id": user.id,
        "email": user.email,
        "role": role_name(user.role),
        "token_version": user.token_version,
        "disabled": user.disabled,
        "created_at": rfc3339_ms(user.created_at_ms),
        "updated_at": rfc3339_ms(user.updated_at_ms),
    })
}

/// The users table.
pub fn users_table(users: &[pb::User]) -> Table {
    let mut table = Table::new(&["ID", "EMAIL", "ROLE", "STATE", "TOKEN VERSION", "CREATED (UTC)"]);
    for user in users {
        table.row(vec![
            user.id.clone(),
            user.email.clone(),
            role_name(user.role).to_owned(),
            if user.disabled { "disabled" } else { "enabled" }.to_owned(),
            user.token_version.to_string(),
            readable_ms(user.created_at_ms),
        ]);
    }
    table
}

/// Prints one user in `format`.
pub fn print_user(user: &pb::User, format: Format) {
    match format {
        Format::Json => print_json(&user_json(user)),
        Format::Table => users_table(std::slice::from_ref(user)).print(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new(&["ID", "EMAIL"]);
        table.row(vec!["u1".into(), "a@example.com".into()]);
        table.row(vec!["user-long".into(), "b".into()]);
        assert_eq!(table.render(), "ID         EMAIL\nu1         a@example.com\nuser-long  b");
    }

    #[test]
    fn timestamps_are_utc_and_unset_ones_are_marked() {
        assert_eq!(readable_ms(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(rfc3339_ms(1_700_000_000_123), json!("2023-11-14T22:13:20.123Z"));
        assert_eq!(readable_ms(0), "-");
        assert_eq!(rfc3339_ms(0), Value::Null);
        assert_eq!(readable_rfc3339("2023-11-14T22:13:20.123Z"), "2023-11-14 22:13:20");
    }
}
