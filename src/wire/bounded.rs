//! Parsing a client's body at a bounded cost: serde helpers the wire types use so that what a body
//! costs in memory is bounded by its size, whatever it contains.
//!
//! - [`Bounded`]: a list with a per-field cap, that also spends from a request-wide item budget
//!   ([`with_item_budget`]), so no combination of nested lists (messages × parts × tool calls)
//!   builds more than [`MAX_ITEMS`] elements;
//! - [`NonEmpty`]: whether a value is a non-empty list, object or string, read without keeping it
//!   (for refused fields such as `logit_bias`);
//! - [`is_json_object`]: checks raw JSON is an object without building it.
//!
//! Ignored fields use `serde::de::IgnoredAny` and nested raw JSON `serde_json::value::RawValue`
//! (one copy of the text, no tree). Never `#[serde(flatten)]` and never an internally tagged or
//! untagged enum here: serde buffers their whole input as a tree before looking at it.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Elements all the lists of one request may hold together.
pub const MAX_ITEMS: usize = 100_000;

thread_local! {
    /// Items the request being parsed on this thread may still build; `usize::MAX` outside
    /// [`with_item_budget`]. Parsing is synchronous, so the budget never crosses an `.await`.
    static ITEMS_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Runs `parse` with a fresh budget of [`MAX_ITEMS`] list elements.
pub fn with_item_budget<T>(parse: impl FnOnce() -> T) -> T {
    with_item_count(parse).0
}

/// Like [`with_item_budget`], and also tells how many list elements `parse` built.
pub fn with_item_count<T>(parse: impl FnOnce() -> T) -> (T, usize) {
    let previous = ITEMS_LEFT.with(|left| left.replace(MAX_ITEMS));
    let result = parse();
    let left = ITEMS_LEFT.with(|left| left.replace(previous));
    (result, MAX_ITEMS - left)
}

fn spend_item() -> bool {
    ITEMS_LEFT.with(|left| match left.get() {
        0 => false,
        // Outside a budget.
        usize::MAX => true,
        n => {
            left.set(n - 1);
            true
        }
    })
}

fn refund_item() {
    ITEMS_LEFT.with(|left| {
        if left.get() < MAX_ITEMS {
            left.set(left.get() + 1);
        }
    });
}

/// A list of at most `MAX` elements (and within the request's item budget); longer lists are
/// refused while parsing, before their elements are built.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bounded<T, const MAX: usize>(pub Vec<T>);

impl<T, const MAX: usize> Deref for Bounded<T, MAX> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'a, T, const MAX: usize> IntoIterator for &'a Bounded<T, MAX> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'de, T: Deserialize<'de>, const MAX: usize> Deserialize<'de> for Bounded<T, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T, const MAX: usize>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedVisitor<T, MAX> {
            type Value = Bounded<T, MAX>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {MAX} items")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(64));
                loop {
                    if items.len() == MAX {
                        if seq.next_element::<IgnoredAny>()?.is_some() {
                            return Err(de::Error::custom(format_args!(
                                "too many items: at most {MAX} are accepted here"
                            )));
                        }
                        break;
                    }
                    if !spend_item() {
                        if seq.next_element::<IgnoredAny>()?.is_none() {
                            break;
                        }
                        return Err(de::Error::custom(format_args!(
                            "the request holds too many list items in all: at most {MAX_ITEMS} are accepted"
                        )));
                    }
                    match seq.next_element()? {
                        Some(item) => items.push(item),
                        None => {
                            // Spent before knowing whether an element followed: none did.
                            refund_item();
                            break;
                        }
                    }
                }
                Ok(Bounded(items))
            }
        }

        deserializer.deserialize_seq(BoundedVisitor(PhantomData))
    }
}

/// Whether a value is a non-empty list, object or string (`false` for empty ones, numbers, booleans
/// and `null`); read without being kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NonEmpty(pub bool);

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NonEmptyVisitor;

        impl<'de> Visitor<'de> for NonEmptyVisitor {
            type Value = NonEmpty;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E>(self, _: bool) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_i64<E>(self, _: i64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_u64<E>(self, _: u64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_f64<E>(self, _: f64) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_str<E>(self, value: &str) -> Result<NonEmpty, E> {
                Ok(NonEmpty(!value.is_empty()))
            }

            fn visit_unit<E>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_none<E>(self) -> Result<NonEmpty, E> {
                Ok(NonEmpty(false))
            }

            fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<NonEmpty, D::Error> {
                NonEmpty::deserialize(deserializer)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NonEmpty, A::Error> {
                let mut any = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                    any = true;
                }
                Ok(NonEmpty(any))
            }
        }

        deserializer.deserialize_any(NonEmptyVisitor)
    }
}

/// Whether `json` is one JSON object, checked without building it.
pub fn is_json_object(json: &str) -> bool {
    struct ObjectVisitor;

    impl<'de> Visitor<'de> for ObjectVisitor {
        type Value = ();

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(json);
    deserializer.deserialize_map(ObjectVisitor).is_ok() && deserializer.end().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    type Three = Bounded<u8, 3>;

    #[test]
    fn lists_are_capped_while_parsing() {
        assert_eq!(serde_json::from_str::<Three>("[1,2,3]").unwrap().0, vec![1, 2, 3]);
        let error = serde_json::from_str::<Three>("[1,2,3,4]").unwrap_err().to_string();
        assert!(error.contains("at most 3"), "{error}");
        // The request-wide budget: nested lists together.
        type Nested = Bounded<Bounded<u8, 1000>, 1000>;
        let row = format!("[{}]", vec!["0"; 400].join(","));
        let body = format!("[{}]", vec![row.as_str(); 300].join(","));
        assert!(serde_json::from_str::<Nested>(&body).is_ok(), "without a budget");
        let error = with_item_budget(|| serde_json::from_str::<Nested>(&body)).unwrap_err().to_string();
        assert!(error.contains("at most 100000"), "{error}");
        assert_eq!(ITEMS_LEFT.with(Cell::get), usize::MAX, "the budget is restored");
        // Elements are counted, not the lists holding them (an empty list costs nothing).
        assert_eq!(with_item_count(|| serde_json::from_str::<Nested>("[[],[1,2],[3]]").unwrap()).1, 6);
        assert_eq!(with_item_count(|| serde_json::from_str::<Nested>("[]").unwrap()).1, 0);
    }

    #[test]
    fn non_empty_and_object_checks() {
        for (json, expected) in [
            ("{}", false),
            ("{\"a\":1}", true),
            ("[]", false),
            ("[0]", true),
            ("null", false),
            ("\"\"", false),
            ("\"x\"", true),
            ("3", false),
        ] {
            assert_eq!(serde_json::from_str::<NonEmpty>(json).unwrap().0, expected, "{json}");
        }
        assert!(is_json_object("{\"a\": [1, {\"b\": null}]}"));
        assert!(is_json_object("  {}  "));
        for bad in ["[1]", "\"{}\"", "{\"a\":", "{} {}", "", "{\"a\":1}x"] {
            assert!(!is_json_object(bad), "{bad}");
        }
    }
}
