//! Network class per ASN: a built-in list of well-known cloud, VPN and
//! mobile networks, extended by `[network_classes]` in rules.toml, then a
//! guess from the AS organisation name. Pure.

use rustc_hash::FxHashMap;

use crate::config::NetworkClassesConfig;
use crate::event::NetClass;

/// Large clouds and hosters: where scripted abuse of stolen tokens runs.
const HOSTING: &[u32] = &[
    16509, 14618, 8987, // Amazon AWS
    15169, 396982, 19527, // Google, Google Cloud
    8075, 8068, 8069,  // Microsoft Azure
    14061, // DigitalOcean
    16276, // OVH
    24940, 213230, // Hetzner
    63949,  // Akamai Linode
    20473,  // Vultr (Choopa)
    45102, 37963, // Alibaba Cloud
    31898, // Oracle Cloud
    132203, 45090,  // Tencent Cloud
    12876,  // Scaleway
    51167,  // Contabo
    36352,  // ColoCrossing
    46606,  // Unified Layer
    26496,  // GoDaddy
    55286,  // Server Central / B2
    62567,  // DigitalOcean (legacy)
    135377, // UCloud
    40021,  // Contabo US
    197540, // netcup
    51396,  // Pfcloud
    209,    // Lumen hosting blocks
];

/// VPN and anonymiser operators, and networks dominated by them.
const VPN: &[u32] = &[
    9009,   // M247 (many commercial VPN exits)
    60068,  // Datacamp / CDN77 (VPN exits)
    212238, // Datacamp
    39351,  // 31173 Services (Mullvad)
    209103, // Proton
    136787, // TEFINCOM (NordVPN)
    147049, // Packethub (NordVPN)
    207990, // HostRoyale
    13335,  // Cloudflare (WARP egress)
    396356, // Latitude.sh / Maxihost
];

/// Mobile carriers: addresses hop and share (CGNAT), geolocation is coarse.
const MOBILE: &[u32] = &[
    21928, // T-Mobile US
    22394, 6167,  // Verizon Wireless
    20057, // AT&T Mobility
    12576, // EE
    25135, // Vodafone UK
    3209,  // Vodafone DE
    51207, // Free Mobile
    5410,  // Bouygues Telecom
    55836, // Reliance Jio
    45609, // Bharti Airtel mobile
    29465, // MTN Nigeria
    36935, // Vodafone Egypt
    26599, // TIM Brasil
    4818,  // DiGi Malaysia
];

/// ASN → class lookup.
#[derive(Clone, Debug)]
pub struct NetClassifier {
    table: FxHashMap<u32, NetClass>,
    default: NetClass,
}

impl NetClassifier {
    pub fn new(cfg: &NetworkClassesConfig) -> Self {
        let mut table = FxHashMap::default();
        for (list, class) in [
            (HOSTING, NetClass::Hosting),
            (VPN, NetClass::Vpn),
            (MOBILE, NetClass::Mobile),
        ] {
            for asn in list {
                table.insert(*asn, class);
            }
        }
        // Configured lists win over the built-in ones.
        for (list, class) in [
            (&cfg.residential, NetClass::Residential),
            (&cfg.mobile, NetClass::Mobile),
            (&cfg.hosting, NetClass::Hosting),
            (&cfg.vpn, NetClass::Vpn),
        ] {
            for asn in list {
                table.insert(*asn, class);
            }
        }
        NetClassifier {
            table,
            default: cfg.default.unwrap_or(NetClass::Residential),
        }
    }

    /// Class of an ASN; `org` (the AS organisation) breaks ties for unknown ASNs.
    pub fn classify(&self, asn: u32, org: Option<&str>) -> NetClass {
        if asn == 0 {
            return NetClass::Unknown;
        }
        if let Some(c) = self.table.get(&asn) {
            return *c;
        }
        if let Some(org) = org {
            let o = org.to_ascii_lowercase();
            if o.contains("vpn") || o.contains("proxy") || o.contains("tor exit") {
                return NetClass::Vpn;
            }
            if [
                "hosting",
                "cloud",
                "datacenter",
                "data center",
                "server",
                "vps",
                "colocation",
            ]
            .iter()
            .any(|k| o.contains(k))
            {
                return NetClass::Hosting;
            }
            if ["mobile", "wireless", "cellular", "lte"]
                .iter()
                .any(|k| o.contains(k))
            {
                return NetClass::Mobile;
            }
        }
        self.default
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::string_slice)]
mod tests {
    use super::*;

    #[test]
    fn built_in_config_and_name_rules() {
        let mut cfg = NetworkClassesConfig::default();
        cfg.residential.push(16509);
        let c = NetClassifier::new(&cfg);
        assert_eq!(
            c.classify(16509, None),
            NetClass::Residential,
            "config overrides built-in"
        );
        assert_eq!(c.classify(14061, None), NetClass::Hosting);
        assert_eq!(c.classify(9009, None), NetClass::Vpn);
        assert_eq!(c.classify(21928, None), NetClass::Mobile);
        assert_eq!(
            c.classify(64500, Some("Example Cloud Hosting GmbH")),
            NetClass::Hosting
        );
        assert_eq!(
            c.classify(64501, Some("Example Broadband")),
            NetClass::Residential
        );
        assert_eq!(c.classify(0, None), NetClass::Unknown);
    }
}
