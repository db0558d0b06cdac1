//! Prices as data: `prices.toml` (compiled in: USD per million tokens of input, output, 5-minute
//! and 1-hour cache writes and cache reads per catalog family, the regional-profile premium, each
//! entry with its source and date) and the rule of how tokens count against byollm's own limits
//! (`[counting]`, as Bedrock counts them against its quotas).
//!
//! Owns: the table's loader, which price applies to a Bedrock id (a `global.` profile or the
//! Anthropic API at the base price, any other profile or a base id with the regional premium), and
//! the cost of a set of token counts in nano-USD (integers, so sums over many answers do not drift).
//! Must never: do I/O, or price a model it has no figure for (that is *unpriced*, `None`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The table, compiled in.
const PRICES_TOML: &str = include_str!("prices.toml");

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub cache_read: f64,
}

/// Token counts of one answer, by how they are billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    /// Input tokens not read from or written to the cache.
    pub input: u64,
    pub output: u64,
    /// Cache writes (priced at the 5-minute rate unless reported as 1-hour writes).
    pub cache_write_5m: u64,
    pub cache_write_1h: u64,
    pub cache_read: u64,
}

/// An amount of USD, kept in whole nano-USD (10⁻⁹ USD) so sums do not drift; written as a JSON
/// number of USD (`0.000195`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Usd(pub u64);

impl Usd {
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

impl serde::Serialize for Usd {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.as_f64())
    }
}

/// Nano-USD (10⁻⁹ USD) per token for a price of `usd_per_mtok`.
const NANOS_PER_TOKEN_PER_USD_PER_MTOK: f64 = 1_000.0;

impl Price {
    /// The cost of `tokens`, in nano-USD.
    pub fn cost_nanos(&self, tokens: Tokens) -> u64 {
        let usd_per_mtok = [
            (tokens.input, self.input),
            (tokens.output, self.output),
            (tokens.cache_write_5m, self.cache_write_5m),
            (tokens.cache_write_1h, self.cache_write_1h),
            (tokens.cache_read, self.cache_read),
        ];
        let nanos: f64 =
            usd_per_mtok.iter().map(|(count, price)| *count as f64 * price * NANOS_PER_TOKEN_PER_USD_PER_MTOK).sum();
        nanos.round().max(0.0) as u64
    }

    /// Every figure times `factor` (the regional premium).
    fn scaled(self, factor: f64) -> Price {
        Price {
            input: self.input * factor,
            output: self.output * factor,
            cache_write_5m: self.cache_write_5m * factor,
            cache_write_1h: self.cache_write_1h * factor,
            cache_read: self.cache_read * factor,
        }
    }

    /// Every figure finite and not negative.
    pub fn check(&self) -> Result<(), String> {
        let figures = [self.input, self.output, self.cache_write_5m, self.cache_write_1h, self.cache_read];
        if figures.iter().all(|f| f.is_finite() && *f >= 0.0 && *f <= 1_000_000.0) {
            Ok(())
        } else {
            Err("every price must be a number of USD per million tokens between 0 and 1000000".into())
        }
    }
}

/// One entry of the table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    input: f64,
    output: f64,
    cache_write_5m: f64,
    cache_write_1h: f64,
    cache_read: f64,
    #[serde(default)]
    regional_premium: f64,
    /// Read so an entry without one fails to load.
    #[allow(dead_code)]
    source: String,
    #[allow(dead_code)]
    date: String,
}

impl Entry {
    fn price(&self) -> Price {
        Price {
            input: self.input,
            output: self.output,
            cache_write_5m: self.cache_write_5m,
            cache_write_1h: self.cache_write_1h,
            cache_read: self.cache_read,
        }
    }
}

/// Which token kinds count against byollm's per-minute token limits and token budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counting {
    pub cache_read: bool,
    pub cache_write: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    counting: Counting,
    price: BTreeMap<String, Entry>,
}

/// The compiled-in price table.
#[derive(Debug)]
pub struct PriceTable {
    entries: BTreeMap<String, Entry>,
    pub counting: Counting,
}

/// Where a model is called, as far as its price goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// Bedrock's `global.` profile, or the Anthropic API: the base price.
    Global,
    /// A regional (geo) profile or a base id in one region: the regional premium applies. An
    /// application inference profile ARN (which names no model) is priced so too: the higher price.
    Regional,
}

impl Endpoint {
    /// The endpoint a Bedrock model id (or ARN) names.
    pub fn of_bedrock_id(id: &str) -> Endpoint {
        match crate::aws::split_model_id(id) {
            (Some(prefix), Some(_)) if prefix == "global" => Endpoint::Global,
            _ => Endpoint::Regional,
        }
    }
}

impl PriceTable {
    pub fn parse(text: &str) -> Result<PriceTable, String> {
        let table: Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (family, entry) in &table.price {
            entry.price().check().map_err(|e| format!("price.{family}: {e}"))?;
            if !(0.0..=1.0).contains(&entry.regional_premium) {
                return Err(format!("price.{family}.regional_premium must lie in 0..=1"));
            }
        }
        Ok(PriceTable { entries: table.price, counting: table.counting })
    }

    /// The price of a catalog family at `endpoint`; `None`: unpriced.
    pub fn price(&self, family: &str, endpoint: Endpoint) -> Option<Price> {
        let entry = self.entries.get(family)?;
        Some(match endpoint {
            Endpoint::Global => entry.price(),
            Endpoint::Regional => entry.price().scaled(1.0 + entry.regional_premium),
        })
    }

    /// The families with a price, in name order.
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// The table compiled into this binary.
pub fn prices() -> &'static PriceTable {
    static PRICES: LazyLock<PriceTable> = LazyLock::new(|| {
        PriceTable::parse(PRICES_TOML).unwrap_or_else(|error| panic!("src/models/prices.toml: {error}"))
    });
    &PRICES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_and_names_only_catalog_families() {
        let table = prices();
        let catalog = super::super::catalog();
        for family in table.families() {
            assert!(catalog.by_family(family).is_some(), "{family} is not a catalog family");
        }
        assert!(table.price("claude-haiku-5-5", Endpoint::Global).is_none(), "banded prices are left out");
        assert!(!table.counting.cache_read && table.counting.cache_write);
    }

    #[test]
    fn a_regional_profile_costs_the_premium_and_global_the_base_price() {
        let table = prices();
        assert_eq!(Endpoint::of_bedrock_id("global.anthropic.claude-sonnet-4-5-20250929-v1:0"), Endpoint::Global);
        assert_eq!(Endpoint::of_bedrock_id("us.anthropic.claude-sonnet-4-5-20250929-v1:0"), Endpoint::Regional);
        assert_eq!(Endpoint::of_bedrock_id("anthropic.claude-sonnet-4-5-20250929-v1:0"), Endpoint::Regional);
        assert_eq!(
            Endpoint::of_bedrock_id("arn:aws:bedrock:us-east-1:1:application-inference-profile/x"),
            Endpoint::Regional
        );
        let global = table.price("claude-sonnet-4-5", Endpoint::Global).unwrap();
        let regional = table.price("claude-sonnet-4-5", Endpoint::Regional).unwrap();
        assert_eq!(global.input, 3.0);
        assert!((regional.input - 3.3).abs() < 1e-9 && (regional.output - 16.5).abs() < 1e-9);
        let old = table.price("claude-sonnet-4", Endpoint::Regional).unwrap();
        assert_eq!(old.input, 3.0, "no premium before the 4.5 models");
    }

    #[test]
    fn cache_reads_and_writes_are_priced_apart() {
        let price = prices().price("claude-haiku-4-5", Endpoint::Global).unwrap();
        // 1000 input ($1/M), 200 output ($5/M), 3000 cache reads ($0.10/M), 400 5m writes
        // ($1.25/M), 100 1h writes ($2/M).
        let tokens = Tokens { input: 1000, output: 200, cache_read: 3000, cache_write_5m: 400, cache_write_1h: 100 };
        let nanos = 1000 * 1_000 + 200 * 5_000 + 3000 * 100 + 400 * 1_250 + 100 * 2_000;
        assert_eq!(price.cost_nanos(tokens), nanos);
        assert_eq!(price.cost_nanos(Tokens::default()), 0);
    }

    #[test]
    fn a_bad_table_is_refused() {
        let bad = "[counting]\ncache_read = false\ncache_write = true\n[price.x]\ninput = -1.0\noutput = 1.0\ncache_write_5m = 1.0\ncache_write_1h = 1.0\ncache_read = 1.0\nsource = \"s\"\ndate = \"d\"\n";
        assert!(PriceTable::parse(bad).unwrap_err().contains("price.x"));
        assert!(
            PriceTable::parse("[counting]\ncache_read = false\ncache_write = true\n[price.x]\ninput = 1.0\n").is_err()
        );
    }
}
