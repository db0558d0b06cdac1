//! The one reader of configuration TOML: a table and its path, values taken out field by field
//! (typed, ranged, checked), every problem recorded by its path in one shared list, and every
//! field nobody took reported as unknown ([`Section::finish`]). `[routing]` and every other
//! section are read with it.

use std::cell::RefCell;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::FieldError;

/// One TOML table being read, with the shared list of errors.
pub struct Section<'a> {
    pub path: String,
    pub table: Table,
    errors: &'a RefCell<Vec<FieldError>>,
}

impl<'a> Section<'a> {
    /// The root of a document (`path` empty) or of one section of it (`path` its name), its
    /// errors collected in `errors`.
    pub fn root(path: &str, table: Table, errors: &'a RefCell<Vec<FieldError>>) -> Section<'a> {
        Section { path: path.to_owned(), table, errors }
    }

    /// A sub-table already taken out of this one, read with the same error list.
    pub fn nested(&self, path: String, table: Table) -> Section<'a> {
        Section { path, table, errors: self.errors }
    }

    /// The path of `key` in this table: bare when it can be, quoted otherwise (`models."a b"`).
    pub fn child(&self, key: &str) -> String {
        let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        match (self.path.is_empty(), bare) {
            (true, true) => key.to_owned(),
            (true, false) => format!("{key:?}"),
            (false, true) => format!("{}.{key}", self.path),
            (false, false) => format!("{}.{key:?}", self.path),
        }
    }

    /// Record a problem at `path`.
    pub fn error(&self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.borrow_mut().push(FieldError { path: path.into(), message: message.into() });
    }

    pub fn error_at(&self, path: String, message: String) {
        self.errors.borrow_mut().push(FieldError { path, message });
    }

    pub fn take<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let value = self.table.remove(key)?;
        match value.try_into::<T>() {
            Ok(value) => Some(value),
            Err(error) => {
                self.error_at(self.child(key), error.to_string().trim().to_owned());
                None
            }
        }
    }

    pub fn take_parsed<R: DeserializeOwned, T>(
        &mut self,
        key: &str,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        let raw = self.take::<R>(key)?;
        match check(raw) {
            Ok(value) => Some(value),
            Err(message) => {
                self.error_at(self.child(key), message);
                None
            }
        }
    }

    pub fn take_required<T: DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        if !self.table.contains_key(key) {
            self.error_at(self.child(key), "is required".into());
        }
        self.take(key)
    }

    pub fn take_required_parsed<R: DeserializeOwned, T>(
        &mut self,
        key: &str,
        check: impl FnOnce(R) -> Result<T, String>,
    ) -> Option<T> {
        if !self.table.contains_key(key) {
            self.error_at(self.child(key), "is required".into());
        }
        self.take_parsed(key, check)
    }

    pub fn take_ranged(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        self.take_parsed(key, |value: u64| {
            if (min..=max).contains(&value) { Ok(value) } else { Err(format!("{value} is out of range {min}..={max}")) }
        })
    }

    pub fn take_secs(&mut self, key: &str, min: u64, max: u64) -> Option<Duration> {
        self.take_ranged(key, min, max).map(Duration::from_secs)
    }

    pub fn section(&mut self, key: &str) -> Section<'a> {
        let path = self.child(key);
        let table = match self.table.remove(key) {
            None => Table::new(),
            Some(Value::Table(table)) => table,
            Some(_) => {
                self.error_at(path.clone(), "must be a table".into());
                Table::new()
            }
        };
        Section { path, table, errors: self.errors }
    }

    /// A sub-table, if present (`None`, with an error, when `key` is not a table).
    pub fn table_at(&mut self, key: &str) -> Option<Section<'a>> {
        let path = self.child(key);
        match self.table.remove(key)? {
            Value::Table(table) => Some(Section { path, table, errors: self.errors }),
            _ => {
                self.error(path, "must be a table");
                None
            }
        }
    }

    /// The children of a table of tables (`[routing.endpoints.<name>]`), in name order.
    pub fn children(&mut self, key: &str) -> Vec<(String, Section<'a>)> {
        let Some(mut parent) = self.table_at(key) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, value) in std::mem::take(&mut parent.table) {
            let path = parent.child(&name);
            match value {
                Value::Table(table) => out.push((name, Section { path, table, errors: self.errors })),
                _ => self.error(path, "must be a table"),
            }
        }
        out
    }

    /// Read an array of tables, one closure call each; entries with errors are left out.
    pub fn array<T>(&mut self, key: &str, mut read: impl FnMut(&mut Section<'a>) -> Option<T>) -> Vec<T> {
        let path = self.child(key);
        let items = match self.table.remove(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(_) => {
                self.error_at(path, format!("must be an array of tables ([[{key}]])"));
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            let Value::Table(table) = item else {
                self.error_at(item_path, "must be a table".into());
                continue;
            };
            let mut section = Section { path: item_path, table, errors: self.errors };
            let value = read(&mut section);
            section.finish();
            out.extend(value);
        }
        out
    }

    /// Report every key nobody read.
    pub fn finish(self) {
        for key in self.table.keys() {
            self.error_at(self.child(key), "unknown field".into());
        }
    }
}
