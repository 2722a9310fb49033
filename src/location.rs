//! File positions for error messages: every config or policy error names
//! the file, line and column it comes from.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A point in a file, shown as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// As given (resolved against the config's directory).
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters, not bytes.
    pub column: usize,
}

impl Location {
    /// Converts a byte span of `source` into a 1-based line and column.
    pub fn from_span(file: &Path, source: &str, span: Range<usize>) -> Self {
        let start = span.start.min(source.len());
        let before = &source[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = source[line_start..start].chars().count() + 1;
        Self {
            file: file.to_path_buf(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// An error with the place in a file that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct LocatedError {
    /// Where the offending value starts.
    pub location: Location,
    /// What is wrong with it.
    pub message: String,
}

impl LocatedError {
    /// Wraps a TOML syntax or schema error, whose message already quotes the
    /// offending line, into one line with a position.
    pub fn from_toml(file: &Path, source: &str, err: &toml::de::Error) -> Self {
        let location = match err.span() {
            Some(span) => Location::from_span(file, source, span),
            None => Location {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
            },
        };
        // toml may word one error over several lines; each error is one
        // line here, so every line of output says where it is from.
        let message = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(": ");
        Self { location, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_is_one_located_line() {
        let src = "[nats]\nurl = \"x\"\n[nats]\n";
        let err = toml::from_str::<toml::Table>(src).unwrap_err();
        let e = LocatedError::from_toml(Path::new("c.toml"), src, &err).to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("c.toml:3:"), "{e}");
        assert!(e.contains("duplicate key"), "{e}");
    }

    #[test]
    fn span_maps_to_line_and_column() {
        let src = "a = 1\nbb = 2\n  c = 3\n";
        let at = src.find('c').unwrap();
        let loc = Location::from_span(Path::new("f.toml"), src, at..at + 1);
        assert_eq!((loc.line, loc.column), (3, 3));
        assert_eq!(loc.to_string(), "f.toml:3:3");
    }

    #[test]
    fn toml_unknown_key_is_located() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct S {
            a: i32,
        }
        let src = "a = 1\nbogus = 2\n";
        let err = toml::from_str::<S>(src).unwrap_err();
        let located = LocatedError::from_toml(Path::new("x.toml"), src, &err);
        assert_eq!(located.location.line, 2);
        assert!(located.message.contains("bogus"), "{}", located.message);
    }
}
