//! The egress guard: which network addresses an upstream named by an admin or by a request may
//! reach.
//!
//! Hosted gateways run next to cloud metadata services and private networks that a caller must
//! never reach through us (SSRF). Every outbound URL to an OpenAI-compatible or direct API endpoint
//! goes through [`check_url`] (scheme, user info, literal addresses) and its host through
//! [`resolve`], which looks the name up through the process's [`Dns`] (asynchronous, cached,
//! capped per team), classifies every address DNS returns and refuses the host if any of them is
//! not allowed. The connection then uses exactly the addresses returned here, so a second DNS
//! answer (rebinding) cannot move it elsewhere.
//!
//! Addresses that embed an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64,
//! 6to4) are judged by the embedded address. Teredo is refused outright: it tunnels to an address we cannot see.
//!
//! Errors never carry the URL (it may hold a key in its path or query); they name the rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::dns::{Dns, LookupError};

/// Who the gateway serves, which decides what an upstream may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EgressPolicy {
    /// `byollm serve`: https only (unless the endpoint's config allows http), public addresses only.
    Hosted { allow_http: bool },
    /// `byollm serve`, for an endpoint the operator configured as internal
    /// (`allow_private_network = true`): loopback and private networks too. Metadata, link-local
    /// and non-unicast addresses stay refused.
    Private { allow_http: bool },
    /// `byollm local`: the person's own machine and network (Ollama, vLLM, LM Studio on localhost
    /// or the LAN); http allowed. Metadata, link-local and non-unicast addresses stay refused.
    Local,
}

/// What kind of address an IP is, per the IANA special-purpose registries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Loopback,
    /// RFC 1918, IPv6 site-local, local-use NAT64.
    Private,
    /// 100.64.0.0/10 (RFC 6598).
    CarrierNat,
    /// fc00::/7.
    UniqueLocal,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// A cloud instance-metadata or container-credentials endpoint.
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, reserved, discard, Teredo, ORCHID and other non-routable blocks.
    Reserved,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private network address",
            AddressClass::CarrierNat => "a carrier-grade NAT address",
            AddressClass::UniqueLocal => "a unique local IPv6 address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Metadata => "a cloud metadata endpoint",
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "a broadcast address",
            AddressClass::Reserved => "a reserved or non-routable address",
        }
    }
}

/// Why an upstream URL or address was refused. Never holds the URL itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressError {
    InvalidUrl,
    Scheme {
        scheme: String,
        allowed: &'static str,
    },
    UserInfo,
    Address(AddressClass),
    Resolve,
    ResolveTimeout,
    NoAddress,
    /// Too many lookups under way: the caller's team's share (`team`) or the gateway's. Not a
    /// refusal of the host; the caller may retry shortly.
    LookupsBusy {
        team: bool,
    },
}

impl fmt::Display for EgressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressError::InvalidUrl => f.write_str("the upstream base URL is not a valid absolute URL"),
            EgressError::Scheme { scheme, allowed } => {
                write!(f, "the upstream URL scheme {scheme:?} is not allowed here; use {allowed}")
            }
            EgressError::UserInfo => f.write_str("the upstream URL must not carry user info; send the key as a header"),
            EgressError::Address(class) => {
                write!(f, "the upstream host resolves to {}, which this gateway may not reach", class.describe())
            }
            EgressError::Resolve => f.write_str("the upstream host name could not be resolved"),
            EgressError::ResolveTimeout => f.write_str("resolving the upstream host name timed out"),
            EgressError::NoAddress => f.write_str("the upstream host name has no address"),
            EgressError::LookupsBusy { team: true } => {
                f.write_str("this team has too many upstream host name lookups under way; retry shortly")
            }
            EgressError::LookupsBusy { team: false } => {
                f.write_str("the gateway has too many upstream host name lookups under way; retry shortly")
            }
        }
    }
}

impl std::error::Error for EgressError {}

/// Classify an address; embedded IPv4 addresses are judged by what they embed.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    const METADATA: [[u8; 4]; 4] = [
        [169, 254, 169, 254], // EC2, GCP, Azure, OCI instance metadata
        [169, 254, 170, 2],   // ECS task credentials
        [169, 254, 170, 23],  // EKS Pod Identity agent
        [100, 100, 100, 200], // Alibaba Cloud metadata
    ];
    if METADATA.iter().any(|m| ip.octets() == *m) {
        return AddressClass::Metadata;
    }
    let table: &[([u8; 4], u32, AddressClass)] = &[
        ([0, 0, 0, 0], 8, AddressClass::Unspecified),
        ([10, 0, 0, 0], 8, AddressClass::Private),
        ([100, 64, 0, 0], 10, AddressClass::CarrierNat),
        ([127, 0, 0, 0], 8, AddressClass::Loopback),
        ([169, 254, 0, 0], 16, AddressClass::LinkLocal),
        ([172, 16, 0, 0], 12, AddressClass::Private),
        ([192, 0, 0, 0], 24, AddressClass::Reserved),
        ([192, 0, 2, 0], 24, AddressClass::Reserved),
        ([192, 88, 99, 0], 24, AddressClass::Reserved),
        ([192, 168, 0, 0], 16, AddressClass::Private),
        ([198, 18, 0, 0], 15, AddressClass::Reserved),
        ([198, 51, 100, 0], 24, AddressClass::Reserved),
        ([203, 0, 113, 0], 24, AddressClass::Reserved),
        ([224, 0, 0, 0], 4, AddressClass::Multicast),
        ([255, 255, 255, 255], 32, AddressClass::Broadcast),
        ([240, 0, 0, 0], 4, AddressClass::Reserved),
    ];
    table.iter().find(|(net, prefix, _)| in_v4(ip, *net, *prefix)).map_or(AddressClass::Public, |(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let bits = u128::from(ip);
    if ip.is_unspecified() {
        return AddressClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddressClass::Loopback;
    }
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
    if let Some(v4) = ip.to_ipv4() {
        return classify_v4(v4);
    }
    let v6 = |text: &str| text.parse::<Ipv6Addr>().unwrap_or(Ipv6Addr::UNSPECIFIED);
    // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765 SIIT): the last 32 bits are the IPv4 address.
    if in_v6(ip, v6("::ffff:0:0:0"), 96) {
        return classify_v4(Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    // fd00:ec2::254 (EC2 IMDS) and fd00:ec2::23 (EKS Pod Identity) sit inside fc00::/7.
    if ip == v6("fd00:ec2::254") || ip == v6("fd00:ec2::23") {
        return AddressClass::Metadata;
    }
    // NAT64 well-known prefix: the last 32 bits are the IPv4 destination.
    if in_v6(ip, v6("64:ff9b::"), 96) {
        return classify_v4(Ipv4Addr::from((bits & 0xffff_ffff) as u32));
    }
    // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d in bits 16..48.
    if in_v6(ip, v6("2002::"), 16) {
        return classify_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    let table: &[(&str, u32, AddressClass)] = &[
        ("64:ff9b:1::", 48, AddressClass::Private),
        ("100::", 64, AddressClass::Reserved),
        ("2001::", 32, AddressClass::Reserved), // Teredo
        ("2001:10::", 28, AddressClass::Reserved),
        ("2001:20::", 28, AddressClass::Reserved),
        ("2001:db8::", 32, AddressClass::Reserved),
        ("3fff::", 20, AddressClass::Reserved),
        ("fc00::", 7, AddressClass::UniqueLocal),
        ("fe80::", 10, AddressClass::LinkLocal),
        ("fec0::", 10, AddressClass::Private),
        ("ff00::", 8, AddressClass::Multicast),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, v6(net), *prefix))
        .map_or(AddressClass::Public, |(_, _, class)| *class)
}

impl EgressPolicy {
    /// May a connection go to an address of this class?
    pub fn allows(self, class: AddressClass) -> bool {
        match self {
            EgressPolicy::Hosted { .. } => class == AddressClass::Public,
            EgressPolicy::Private { .. } | EgressPolicy::Local => matches!(
                class,
                AddressClass::Public
                    | AddressClass::Loopback
                    | AddressClass::Private
                    | AddressClass::CarrierNat
                    | AddressClass::UniqueLocal
            ),
        }
    }

    /// Check one address.
    pub fn check_ip(self, ip: IpAddr) -> Result<(), EgressError> {
        let class = classify(ip);
        if self.allows(class) { Ok(()) } else { Err(EgressError::Address(class)) }
    }
}

/// Check an upstream URL's form: scheme, no user info, a host, and, for a literal address, the
/// address itself. Host names are checked when they are resolved ([`resolve`]).
pub fn check_url(raw: &str, policy: EgressPolicy) -> Result<url::Url, EgressError> {
    let url = url::Url::parse(raw).map_err(|_| EgressError::InvalidUrl)?;
    let http_allowed = match policy {
        EgressPolicy::Hosted { allow_http } | EgressPolicy::Private { allow_http } => allow_http,
        EgressPolicy::Local => true,
    };
    match url.scheme() {
        "https" => {}
        "http" if http_allowed => {}
        other => {
            let allowed = if http_allowed { "http:// or https://" } else { "https://" };
            return Err(EgressError::Scheme { scheme: other.to_owned(), allowed });
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EgressError::UserInfo);
    }
    match url.host() {
        None => return Err(EgressError::InvalidUrl),
        Some(url::Host::Ipv4(ip)) => policy.check_ip(IpAddr::V4(ip))?,
        Some(url::Host::Ipv6(ip)) => policy.check_ip(IpAddr::V6(ip))?,
        Some(url::Host::Domain(_)) => {}
    }
    Ok(url)
}

/// Resolve `host` (through the process's [`Dns`], on behalf of `team`) and return its addresses
/// if every one of them is allowed. A host with any refused address is refused as a whole: picking
/// the good ones would let a DNS answer that mixes public and internal addresses reach the internal
/// one on a later attempt.
pub async fn resolve(
    dns: &Dns,
    host: &str,
    port: u16,
    policy: EgressPolicy,
    team: Option<&Arc<str>>,
) -> Result<Vec<SocketAddr>, EgressError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        policy.check_ip(ip)?;
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let addresses = dns.lookup(host, team).await.map_err(|error| match error {
        LookupError::NotFound => EgressError::NoAddress,
        LookupError::Failed => EgressError::Resolve,
        LookupError::Timeout => EgressError::ResolveTimeout,
        LookupError::TeamBusy => EgressError::LookupsBusy { team: true },
        LookupError::GatewayBusy => EgressError::LookupsBusy { team: false },
    })?;
    for address in addresses.iter() {
        policy.check_ip(*address)?;
    }
    Ok(addresses.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTED: EgressPolicy = EgressPolicy::Hosted { allow_http: false };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn classifies_special_purpose_addresses() {
        let cases = [
            ("8.8.8.8", AddressClass::Public),
            ("1.1.1.1", AddressClass::Public),
            ("2606:4700:4700::1111", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::CarrierNat),
            ("100.127.255.255", AddressClass::CarrierNat),
            ("100.128.0.1", AddressClass::Public),
            ("169.254.169.254", AddressClass::Metadata),
            ("169.254.170.2", AddressClass::Metadata),
            ("169.254.170.23", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("169.254.1.1", AddressClass::LinkLocal),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("fd00:ec2::23", AddressClass::Metadata),
            ("fd12:3456::1", AddressClass::UniqueLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("fec0::1", AddressClass::Private),
            ("ff02::1", AddressClass::Multicast),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.2.1", AddressClass::Reserved),
            ("198.18.0.1", AddressClass::Reserved),
            ("2001:db8::1", AddressClass::Reserved),
            ("2001:0:4136:e378::1", AddressClass::Reserved),
            // Embedded IPv4: mapped, compatible, NAT64, 6to4.
            ("::ffff:169.254.169.254", AddressClass::Metadata),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.0.0.1", AddressClass::Private),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("::10.0.0.1", AddressClass::Private),
            ("64:ff9b::a9fe:a9fe", AddressClass::Metadata),
            ("64:ff9b::808:808", AddressClass::Public),
            ("2002:a9fe:a9fe::1", AddressClass::Metadata),
            ("2002:7f00:1::1", AddressClass::Loopback),
            ("2002:808:808::1", AddressClass::Public),
            // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765), not to be confused with mapped.
            ("::ffff:0:a9fe:a9fe", AddressClass::Metadata),
            ("::ffff:0:169.254.169.254", AddressClass::Metadata),
            ("::ffff:0:7f00:1", AddressClass::Loopback),
            ("::ffff:0:10.1.2.3", AddressClass::Private),
            ("::ffff:0:808:808", AddressClass::Public),
        ];
        for (text, expected) in cases {
            assert_eq!(classify(ip(text)), expected, "{text}");
        }
    }

    #[test]
    fn hosted_allows_only_public_addresses_local_allows_the_persons_own_network() {
        for text in ["127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "fd00:ec2::254", "100.64.1.1", "fd12::1"] {
            assert!(HOSTED.check_ip(ip(text)).is_err(), "hosted must refuse {text}");
        }
        assert!(HOSTED.check_ip(ip("8.8.8.8")).is_ok());
        for text in ["127.0.0.1", "::1", "192.168.1.20", "fd12::1", "8.8.8.8"] {
            assert!(EgressPolicy::Local.check_ip(ip(text)).is_ok(), "local must allow {text}");
        }
        let private = EgressPolicy::Private { allow_http: false };
        for text in ["169.254.169.254", "fd00:ec2::254", "169.254.3.4", "fe80::1", "224.0.0.1", "0.0.0.0"] {
            assert!(EgressPolicy::Local.check_ip(ip(text)).is_err(), "local must refuse {text}");
            assert!(private.check_ip(ip(text)).is_err(), "an internal endpoint must not reach {text}");
        }
        for text in ["127.0.0.1", "10.1.2.3", "fd12::1", "8.8.8.8"] {
            assert!(private.check_ip(ip(text)).is_ok(), "an internal endpoint may reach {text}");
        }
        assert!(check_url("http://10.0.0.5/v1", private).is_err(), "http stays off unless allowed");
    }

    #[test]
    fn urls_are_checked_for_scheme_user_info_and_literal_addresses() {
        assert!(check_url("https://api.example.com/v1", HOSTED).is_ok());
        let cases: [(&str, EgressPolicy, EgressError); 7] = [
            ("http://api.example.com/v1", HOSTED, EgressError::Scheme { scheme: "http".into(), allowed: "https://" }),
            (
                "file:///etc/passwd",
                EgressPolicy::Local,
                EgressError::Scheme { scheme: "file".into(), allowed: "http:// or https://" },
            ),
            ("https://user:secret@api.example.com/", HOSTED, EgressError::UserInfo),
            ("https://169.254.169.254/latest", HOSTED, EgressError::Address(AddressClass::Metadata)),
            ("https://[::ffff:127.0.0.1]/", HOSTED, EgressError::Address(AddressClass::Loopback)),
            ("https://2130706433/", HOSTED, EgressError::Address(AddressClass::Loopback)),
            ("not a url", HOSTED, EgressError::InvalidUrl),
        ];
        for (url, policy, expected) in cases {
            assert_eq!(check_url(url, policy).unwrap_err(), expected, "{url}");
        }
        assert!(check_url("http://127.0.0.1:11434/v1", EgressPolicy::Local).is_ok());
        assert!(check_url("http://api.example.com/v1", EgressPolicy::Hosted { allow_http: true }).is_ok());
    }

    #[test]
    fn errors_never_carry_the_url() {
        let error = check_url("https://user:sk-secret@10.0.0.1/path?key=sk-secret", HOSTED).unwrap_err();
        assert!(!error.to_string().contains("sk-secret"));
        let error = check_url("https://10.0.0.1/path?key=sk-secret", HOSTED).unwrap_err();
        assert!(!error.to_string().contains("sk-secret") && !error.to_string().contains("10.0.0.1"));
    }

    /// A [`Dns`] answering from a fixed table.
    fn scripted_dns() -> Dns {
        use super::super::dns::Answer;
        use futures_util::FutureExt;
        let query: super::super::dns::Query = Arc::new(|name: &str| {
            let addresses: Vec<IpAddr> = match name {
                "localhost" => vec![ip("127.0.0.1"), ip("::1")],
                "mixed.example" => vec![ip("8.8.8.8"), ip("::ffff:0:a9fe:a9fe")],
                "public.example" => vec![ip("8.8.8.8"), ip("2606:4700:4700::1111")],
                _ => vec![],
            };
            let answer = if addresses.is_empty() {
                Answer::NotFound { negative_ttl: None }
            } else {
                Answer::Found { addresses, ttl: std::time::Duration::from_secs(60) }
            };
            async move { answer }.boxed()
        });
        Dns::with_query(query, 4, 2)
    }

    #[tokio::test]
    async fn resolution_refuses_hosts_with_any_internal_address() {
        let dns = scripted_dns();
        let resolve = |host: &'static str, port, policy| {
            let dns = &dns;
            async move { resolve(dns, host, port, policy, None).await }
        };
        assert_eq!(resolve("localhost", 443, HOSTED).await.unwrap_err(), EgressError::Address(AddressClass::Loopback));
        assert_eq!(resolve("localhost", 11434, EgressPolicy::Local).await.unwrap().len(), 2);
        assert_eq!(resolve("[::1]", 443, HOSTED).await.unwrap_err(), EgressError::Address(AddressClass::Loopback));
        let pinned = resolve("127.0.0.1", 8080, EgressPolicy::Local).await.unwrap();
        assert_eq!(pinned, vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
        // One internal address among public ones refuses the host, in every mode.
        for policy in [HOSTED, EgressPolicy::Local] {
            let error = resolve("mixed.example", 443, policy).await.unwrap_err();
            assert_eq!(error, EgressError::Address(AddressClass::Metadata));
        }
        let public = resolve("public.example", 443, HOSTED).await.unwrap();
        assert_eq!(public, vec![SocketAddr::from(([8, 8, 8, 8], 443)), "[2606:4700:4700::1111]:443".parse().unwrap()]);
        assert_eq!(resolve("gone.example", 443, HOSTED).await.unwrap_err(), EgressError::NoAddress);
    }
}
