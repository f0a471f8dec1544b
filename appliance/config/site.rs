//! A writer of site configuration text: the shape every small test site and
//! lab site shares (`backend`, `[lan]`, `[[ports]]`, `[[uplinks]]`), with the
//! sections that differ appended as text. Unit tests, tests/, and the labs
//! build their sites with it instead of each keeping a copy of the TOML.
//!
//! ```
//! use appliance::config::site::SiteToml;
//! let text = SiteToml::one_uplink("pcap", &["192.0.2.1"])
//!     .lan_key("pcap_in", "/tmp/in.pcap")
//!     .section("[nat]\nport_range = [20000, 29999]")
//!     .to_string();
//! let config = appliance::config::parse(&text).unwrap();
//! assert_eq!(config.uplinks.len(), 1);
//! ```

use std::fmt;

/// One `[[ports]]` entry: its name, MAC and further `key = value` lines.
#[derive(Clone, Debug)]
struct PortToml {
    name: String,
    mac: String,
    keys: Vec<String>,
}

/// One `[[uplinks]]` entry.
#[derive(Clone, Debug)]
struct UplinkToml {
    name: String,
    port: String,
    nat_addresses: Vec<String>,
    next_hop_mac: String,
}

/// A site's configuration text, built up and written with `to_string()`.
#[derive(Clone, Debug)]
pub struct SiteToml {
    backend: String,
    lan_port: String,
    prefixes: Vec<String>,
    addresses: Vec<String>,
    ports: Vec<PortToml>,
    uplinks: Vec<UplinkToml>,
    sections: Vec<String>,
}

/// `["a", "b"]` as a TOML array of strings.
fn array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

impl SiteToml {
    /// A site with `backend`, a LAN port `lan` (MAC 02:00:00:00:00:01) for
    /// 10.0.0.0/16, and no uplink yet.
    pub fn new(backend: &str) -> SiteToml {
        SiteToml {
            backend: backend.into(),
            lan_port: "lan".into(),
            prefixes: strings(&["10.0.0.0/16"]),
            addresses: Vec::new(),
            ports: vec![PortToml {
                name: "lan".into(),
                mac: "02:00:00:00:00:01".into(),
                keys: Vec::new(),
            }],
            uplinks: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// [`SiteToml::new`] plus a port `wan` (MAC 02:00:00:00:00:02) and the
    /// uplink `isp` on it with `nat_addresses`, next hop 02:00:00:00:00:fe.
    pub fn one_uplink(backend: &str, nat_addresses: &[&str]) -> SiteToml {
        SiteToml::new(backend)
            .port("wan", "02:00:00:00:00:02")
            .uplink("isp", "wan", nat_addresses, "02:00:00:00:00:fe")
    }

    /// Renames the LAN port (and its `[[ports]]` entry) and sets its MAC.
    pub fn lan_port(mut self, name: &str, mac: &str) -> SiteToml {
        self.ports[0].name = name.into();
        self.ports[0].mac = mac.into();
        self.lan_port = name.into();
        self
    }

    /// The LAN's `prefixes`.
    pub fn prefixes(mut self, prefixes: &[&str]) -> SiteToml {
        self.prefixes = strings(prefixes);
        self
    }

    /// The LAN's own `addresses`.
    pub fn addresses(mut self, addresses: &[&str]) -> SiteToml {
        self.addresses = strings(addresses);
        self
    }

    /// Another `[[ports]]` entry.
    pub fn port(mut self, name: &str, mac: &str) -> SiteToml {
        self.ports.push(PortToml {
            name: name.into(),
            mac: mac.into(),
            keys: Vec::new(),
        });
        self
    }

    /// A `key = "value"` line in port `port`'s entry.
    ///
    /// # Panics
    /// When no port is named `port` (a mistake in the test that builds it).
    pub fn port_key(mut self, port: &str, key: &str, value: &str) -> SiteToml {
        let entry = self.ports.iter_mut().find(|p| p.name == port);
        let entry = entry.unwrap_or_else(|| panic!("site has no port {port:?}"));
        entry.keys.push(format!("{key} = {value:?}"));
        self
    }

    /// A `key = "value"` line in the LAN port's entry.
    pub fn lan_key(self, key: &str, value: &str) -> SiteToml {
        let lan = self.lan_port.clone();
        self.port_key(&lan, key, value)
    }

    /// A `key = value` line (value written as given: a number, an array) in
    /// port `port`'s entry.
    pub fn port_raw(mut self, port: &str, line: &str) -> SiteToml {
        let entry = self.ports.iter_mut().find(|p| p.name == port);
        let entry = entry.unwrap_or_else(|| panic!("site has no port {port:?}"));
        entry.keys.push(line.into());
        self
    }

    /// Another `[[uplinks]]` entry.
    pub fn uplink(
        mut self,
        name: &str,
        port: &str,
        nat_addresses: &[&str],
        next_hop_mac: &str,
    ) -> SiteToml {
        self.uplinks.push(UplinkToml {
            name: name.into(),
            port: port.into(),
            nat_addresses: strings(nat_addresses),
            next_hop_mac: next_hop_mac.into(),
        });
        self
    }

    /// Text appended after the uplinks as it is (`[nat]`, `[runtime]`, ...).
    pub fn section(mut self, text: &str) -> SiteToml {
        self.sections.push(text.trim_matches('\n').to_string());
        self
    }
}

impl fmt::Display for SiteToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "backend = {:?}", self.backend)?;
        writeln!(f, "\n[lan]\nport = {:?}", self.lan_port)?;
        writeln!(f, "prefixes = {}", array(&self.prefixes))?;
        if !self.addresses.is_empty() {
            writeln!(f, "addresses = {}", array(&self.addresses))?;
        }
        for p in &self.ports {
            writeln!(f, "\n[[ports]]\nname = {:?}\nmac = {:?}", p.name, p.mac)?;
            for k in &p.keys {
                writeln!(f, "{k}")?;
            }
        }
        for u in &self.uplinks {
            writeln!(f, "\n[[uplinks]]\nname = {:?}\nport = {:?}", u.name, u.port)?;
            writeln!(f, "nat_addresses = {}", array(&u.nat_addresses))?;
            writeln!(f, "next_hop_mac = {:?}", u.next_hop_mac)?;
        }
        for s in &self.sections {
            writeln!(f, "\n{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_site_parses_back_to_what_was_built() {
        let text = SiteToml::one_uplink("pcap", &["192.0.2.1", "2001:db8::1"])
            .prefixes(&["10.0.0.0/16", "fd00::/64"])
            .addresses(&["10.0.0.1"])
            .lan_key("pcap_in", "/x/in.pcap")
            .port_key("wan", "pcap_out", "/x/out.pcap")
            .port_raw("wan", "vlan = 100")
            .section("[nat]\nport_range = [20000, 29999]\n")
            .to_string();
        let cfg = crate::config::parse(&text).expect(&text);
        assert_eq!(cfg.ports.len(), 2);
        assert_eq!(cfg.uplinks.len(), 1);
        assert!(text.contains("pcap_in = \"/x/in.pcap\""), "{text}");
        assert!(text.contains("vlan = 100"), "{text}");
        assert!(text.contains("port_range = [20000, 29999]"), "{text}");
    }

    #[test]
    #[should_panic(expected = "no port")]
    fn a_key_for_an_unknown_port_is_a_mistake() {
        let _ = SiteToml::new("pcap").port_key("nope", "pcap_in", "x");
    }
}
