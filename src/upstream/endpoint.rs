//! Where Bedrock Runtime is for a region: `https://bedrock-runtime.{region}.{dns suffix}` (the
//! suffix from the partition table, `partitions.toml`), or the one URL that `bedrock.endpoint_url`
//! / `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` names (its path, if any, is prefixed to every request).
//! Resolved once per region and kept.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};
use serde::Deserialize;

#[derive(Deserialize)]
struct PartitionFile {
    partitions: Vec<Partition>,
}

#[derive(Deserialize)]
struct Partition {
    dns_suffix: String,
    prefixes: Vec<String>,
}

static PARTITIONS: LazyLock<Vec<Partition>> = LazyLock::new(|| {
    // Compiled in and covered by a test: it parses.
    toml::from_str::<PartitionFile>(include_str!("partitions.toml")).map(|file| file.partitions).unwrap_or_default()
});

/// The DNS suffix of the region's partition (the first partition when none names it).
fn dns_suffix(region: &str) -> &'static str {
    let mut parts = region.rsplitn(3, '-');
    let prefix = match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(prefix)) => prefix,
        _ => region,
    };
    let partitions = &*PARTITIONS;
    partitions
        .iter()
        .find(|p| p.prefixes.iter().any(|known| known == prefix))
        .or(partitions.first())
        .map_or("amazonaws.com", |p| p.dns_suffix.as_str())
}

/// A region name that can go into a host name.
/// Scheme, host and path prefix of one Bedrock Runtime endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    scheme: Scheme,
    authority: Authority,
    /// Prefixed to every request path; empty or starting with `/`, never ending with one.
    base_path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        // Errors never quote the URL: it could carry a password.
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        let scheme = match parsed.scheme() {
            "https" => Scheme::HTTPS,
            "http" => Scheme::HTTP,
            _ => return Err("the scheme must be http or https".into()),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() {
            return Err("an endpoint URL carries no user name, password or query".into());
        }
        let host = parsed.host_str().ok_or("the URL has no host")?;
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let authority = Authority::try_from(authority).map_err(|e| format!("bad host: {e}"))?;
        let base_path = parsed.path().trim_end_matches('/').to_owned();
        Ok(Endpoint { scheme, authority, base_path })
    }

    /// The absolute URI of `path_and_query` (which starts with `/`) at this endpoint.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let path = if self.base_path.is_empty() {
            PathAndQuery::try_from(path_and_query)?
        } else {
            PathAndQuery::try_from(format!("{}{path_and_query}", self.base_path))?
        };
        Uri::builder().scheme(self.scheme.clone()).authority(self.authority.clone()).path_and_query(path).build()
    }
}

/// Endpoints by region.
#[derive(Debug)]
pub struct Endpoints {
    /// `bedrock.endpoint_url`: one endpoint for every region (or why it is unusable).
    fixed: Option<Result<Endpoint, String>>,
    by_region: RwLock<HashMap<String, Endpoint>>,
}

impl Endpoints {
    pub fn new(endpoint_url: Option<&str>) -> Endpoints {
        let fixed = endpoint_url.map(Endpoint::parse);
        if let Some(Err(error)) = &fixed {
            tracing::error!(%error, "bedrock.endpoint_url is unusable; every Bedrock call will fail");
        }
        Endpoints { fixed, by_region: RwLock::new(HashMap::new()) }
    }

    /// The endpoint for `region`, or what is wrong with the configuration.
    pub fn for_region(&self, region: &str) -> Result<Endpoint, String> {
        if let Some(fixed) = &self.fixed {
            return fixed.clone().map_err(|error| format!("bedrock.endpoint_url is unusable: {error}"));
        }
        if let Ok(known) = self.by_region.read()
            && let Some(endpoint) = known.get(region)
        {
            return Ok(endpoint.clone());
        }
        if !crate::aws::is_region(region) {
            return Err(format!("{region:?} is not an AWS region like us-east-1"));
        }
        let endpoint = Endpoint::parse(&format!("https://bedrock-runtime.{region}.{}", dns_suffix(region)))?;
        if let Ok(mut known) = self.by_region.write() {
            known.insert(region.to_owned(), endpoint.clone());
        }
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_resolve_to_their_partitions_host() {
        assert!(PARTITIONS.len() >= 8, "partitions.toml parses");
        let endpoints = Endpoints::new(None);
        let cases = [
            ("us-east-1", "https://bedrock-runtime.us-east-1.amazonaws.com/model/x/invoke"),
            ("eu-central-2", "https://bedrock-runtime.eu-central-2.amazonaws.com/model/x/invoke"),
            ("us-gov-west-1", "https://bedrock-runtime.us-gov-west-1.amazonaws.com/model/x/invoke"),
            ("cn-north-1", "https://bedrock-runtime.cn-north-1.amazonaws.com.cn/model/x/invoke"),
            ("eusc-de-east-1", "https://bedrock-runtime.eusc-de-east-1.amazonaws.eu/model/x/invoke"),
            ("us-isob-east-1", "https://bedrock-runtime.us-isob-east-1.sc2s.sgov.gov/model/x/invoke"),
            ("xx-new-1", "https://bedrock-runtime.xx-new-1.amazonaws.com/model/x/invoke"),
        ];
        for (region, expected) in cases {
            let uri = endpoints.for_region(region).unwrap().uri("/model/x/invoke").unwrap();
            assert_eq!(uri.to_string(), expected, "{region}");
        }
        // Twice: the second answer comes from the cache.
        assert!(endpoints.for_region("us-east-1").is_ok());
    }

    #[test]
    fn regions_that_cannot_be_host_names_are_refused() {
        let endpoints = Endpoints::new(None);
        for region in ["", "US-EAST-1", "us-east-1.evil.example", "us east", "us-east-1/x", "-us", "a@b"] {
            assert!(endpoints.for_region(region).is_err(), "{region:?}");
        }
    }

    #[test]
    fn an_endpoint_override_serves_every_region_with_its_path_prefix() {
        let endpoints = Endpoints::new(Some("http://127.0.0.1:4566/bedrock/"));
        let uri = endpoints.for_region("eu-west-1").unwrap().uri("/model/a%3A0/invoke").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:4566/bedrock/model/a%3A0/invoke");
        let plain = Endpoints::new(Some("https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"));
        let uri = plain.for_region("us-east-1").unwrap().uri("/model/m/converse").unwrap();
        assert_eq!(uri.to_string(), "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com/model/m/converse");
        let bad = Endpoints::new(Some("https://user:pw@example.com"));
        assert!(bad.for_region("us-east-1").unwrap_err().contains("bedrock.endpoint_url"));
    }
}
