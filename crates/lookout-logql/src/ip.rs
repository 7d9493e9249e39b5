//! `ip("...")` matching: a single address, an inclusive `a-b` range or a CIDR prefix, tested
//! against every address found inside a line or label value.

use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpMatcher {
    pattern: String,
    lo: IpAddr,
    hi: IpAddr,
}

fn to_u128(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (true, u32::from(a) as u128),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => (true, u32::from(v4) as u128),
            None => (false, u128::from(a)),
        },
    }
}

impl IpMatcher {
    pub fn new(pattern: &str) -> Result<IpMatcher, String> {
        let invalid = || format!("ip: invalid pattern: {pattern:?}");
        let p = pattern.trim();
        let (lo, hi) = if let Some((a, b)) = p.split_once('-') {
            let lo: IpAddr = a.trim().parse().map_err(|_| invalid())?;
            let hi: IpAddr = b.trim().parse().map_err(|_| invalid())?;
            if lo.is_ipv4() != hi.is_ipv4() || to_u128(lo).1 > to_u128(hi).1 {
                return Err(invalid());
            }
            (lo, hi)
        } else if let Some((a, bits)) = p.split_once('/') {
            let addr: IpAddr = a.parse().map_err(|_| invalid())?;
            let bits: u32 = bits.parse().map_err(|_| invalid())?;
            match addr {
                IpAddr::V4(v4) => {
                    if bits > 32 {
                        return Err(invalid());
                    }
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    let base = u32::from(v4) & mask;
                    (IpAddr::V4(base.into()), IpAddr::V4((base | !mask).into()))
                }
                IpAddr::V6(v6) => {
                    if bits > 128 {
                        return Err(invalid());
                    }
                    let mask = if bits == 0 {
                        0
                    } else {
                        u128::MAX << (128 - bits)
                    };
                    let base = u128::from(v6) & mask;
                    (IpAddr::V6(base.into()), IpAddr::V6((base | !mask).into()))
                }
            }
        } else {
            let a: IpAddr = p.parse().map_err(|_| invalid())?;
            (a, a)
        };
        Ok(IpMatcher {
            pattern: pattern.to_string(),
            lo,
            hi,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (v4, x) = to_u128(ip);
        let (lo4, lo) = to_u128(self.lo);
        let (_, hi) = to_u128(self.hi);
        v4 == lo4 && lo <= x && x <= hi
    }

    /// True when some address inside `s` is in range.
    pub fn matches_in(&self, s: &str) -> bool {
        candidates(s).any(|ip| self.contains(ip))
    }
}

/// Addresses found in `s`: maximal runs of hex digits, dots and colons that parse as an IP
/// (an IPv4 address followed by `:port` counts).
fn candidates(s: &str) -> impl Iterator<Item = IpAddr> + '_ {
    s.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':'))
        .filter(|t| t.len() >= 2 && (t.contains('.') || t.contains(':')))
        .filter_map(|t| {
            let t = t.trim_matches('.');
            if let Ok(ip) = t.parse::<IpAddr>() {
                return Some(ip);
            }
            if t.contains('.') {
                // 10.0.0.1:8080 or ::ffff:10.0.0.1 style
                if let Some((host, _port)) = t.rsplit_once(':')
                    && let Ok(ip) = host.parse::<IpAddr>()
                {
                    return Some(ip);
                }
                return t.split(':').find_map(|p| p.parse::<IpAddr>().ok());
            }
            None
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let m = IpMatcher::new("192.168.1.0/24").unwrap();
        assert!(m.matches_in("src 192.168.1.10 ok"));
        assert!(!m.matches_in("src 10.0.0.9 ok"));
        assert!(
            IpMatcher::new("10.0.0.0/8")
                .unwrap()
                .matches_in("client 10.0.0.7:80")
        );
        assert!(
            IpMatcher::new("192.168.1.1-192.168.1.9")
                .unwrap()
                .matches_in("192.168.1.5")
        );
        assert!(
            IpMatcher::new("2001:db8::/32")
                .unwrap()
                .matches_in("2001:db8::1")
        );
        assert!(
            IpMatcher::new("192.168.1.5")
                .unwrap()
                .matches_in("x=192.168.1.5")
        );
        assert!(IpMatcher::new("notanip").is_err());
        assert!(IpMatcher::new("").is_err());
    }
}
