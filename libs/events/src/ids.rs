//! Validated identifiers. Parsing is the only way to make one, so a value of
//! these types is always safe to use (parse, don't validate).

use std::fmt;

/// Why a string is not a valid identifier; the `Display` text is what a
/// client sees (e.g. `room must not be empty`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string is empty (or only whitespace, for rooms).
    #[error("{field} must not be empty")]
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// Longer than the limit, in characters.
    #[error("{field} must be at most {max} characters")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// The limit.
        max: usize,
    },
    /// Contains a control character (including newlines and NUL).
    #[error("{field} must not contain control characters")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
    },
}

fn check(field: &'static str, value: &str, max_chars: usize) -> Result<(), IdError> {
    if value.trim().is_empty() {
        return Err(IdError::Empty { field });
    }
    if value.chars().count() > max_chars {
        return Err(IdError::TooLong { field, max: max_chars });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter { field });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Parses `value`: not empty, at most `MAX_CHARS` characters, no control characters.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($field, &value, $max)?;
                Ok(Self(value))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier as an owned string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

id_type!(
    /// A room name as clients send it: 1..=100 characters, no control
    /// characters. Any other character is allowed, including `.`, `*` and `>`:
    /// rooms reach NATS only through [`crate::SubjectToken`].
    RoomName,
    "room",
    100
);
id_type!(
    /// A user id (a UUIDv7 for users created by Switchboard, any text for imported ones).
    UserId,
    "user id",
    128
);
id_type!(
    /// The id of one edge process (its pod name in Kubernetes). An edge that
    /// restarts with the same id replaces its old sessions.
    EdgeId,
    "edge id",
    128
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_rules() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("a.*").is_ok());
        assert!(RoomName::parse(">").is_ok());
        assert_eq!(RoomName::parse("").unwrap_err().to_string(), "room must not be empty");
        assert_eq!(RoomName::parse("  ").unwrap_err().to_string(), "room must not be empty");
        assert_eq!(RoomName::parse("x".repeat(101)).unwrap_err().to_string(), "room must be at most 100 characters");
        assert!(RoomName::parse("é".repeat(100)).is_ok());
        assert_eq!(RoomName::parse("a\nb").unwrap_err().to_string(), "room must not contain control characters");
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<RoomName>("\"\"").is_err());
        let room: RoomName = serde_json::from_str("\"lobby\"").unwrap();
        assert_eq!(serde_json::to_string(&room).unwrap(), "\"lobby\"");
    }
}
