//! The wall clock as the JWTs on both sides of the callout count it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole Unix seconds (NumericDate).
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
