//! The synthetic world: cities, ISPs, address blocks, and the MaxMind-format
//! City and ASN databases that describe them. Deterministic: the same world
//! every time, whatever the seed (the seed only drives traffic).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

use crate::event::NetClass;

/// The load balancer in front of the world's NGINX gateway (its records
/// name it as `realip_remote_addr`, the client in X-Forwarded-For): what an
/// operator of this world lists in `input.trusted_proxies`.
pub fn load_balancers() -> Vec<IpNet> {
    vec![IpNet::V4(
        Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 5), 32).unwrap_or_default(),
    )]
}

pub struct City {
    pub name: &'static str,
    pub country: &'static str,
    pub lat: f32,
    pub lon: f32,
}

/// Cities and their country's accept-language.
pub const CITIES: &[(&str, &str, f32, f32, &str)] = &[
    ("Paris", "FR", 48.857, 2.352, "fr-FR,fr;q=0.9,en;q=0.8"),
    ("Lyon", "FR", 45.764, 4.836, "fr-FR,fr;q=0.9"),
    ("London", "GB", 51.507, -0.128, "en-GB,en;q=0.9"),
    ("Manchester", "GB", 53.481, -2.243, "en-GB,en;q=0.9"),
    ("Berlin", "DE", 52.520, 13.405, "de-DE,de;q=0.9,en;q=0.8"),
    ("Munich", "DE", 48.137, 11.575, "de-DE,de;q=0.9"),
    ("Frankfurt", "DE", 50.110, 8.682, "de-DE,de;q=0.9"),
    ("Madrid", "ES", 40.417, -3.704, "es-ES,es;q=0.9"),
    ("Rome", "IT", 41.903, 12.496, "it-IT,it;q=0.9"),
    ("Amsterdam", "NL", 52.368, 4.904, "nl-NL,nl;q=0.9,en;q=0.8"),
    ("New York", "US", 40.713, -74.006, "en-US,en;q=0.9"),
    ("Ashburn", "US", 39.044, -77.488, "en-US,en;q=0.9"),
    ("Chicago", "US", 41.878, -87.630, "en-US,en;q=0.9"),
    ("San Francisco", "US", 37.775, -122.419, "en-US,en;q=0.9"),
    ("Toronto", "CA", 43.653, -79.383, "en-CA,en;q=0.9"),
    ("Sao Paulo", "BR", -23.551, -46.633, "pt-BR,pt;q=0.9"),
    ("Lagos", "NG", 6.524, 3.379, "en-NG,en;q=0.9"),
    ("Mumbai", "IN", 19.076, 72.878, "en-IN,en;q=0.9,hi;q=0.8"),
    ("Singapore", "SG", 1.352, 103.820, "en-SG,en;q=0.9"),
    ("Tokyo", "JP", 35.676, 139.650, "ja-JP,ja;q=0.9"),
    ("Sydney", "AU", -33.869, 151.209, "en-AU,en;q=0.9"),
    ("Moscow", "RU", 55.756, 37.617, "ru-RU,ru;q=0.9"),
];

pub fn city(i: usize) -> City {
    let (name, country, lat, lon, _) = CITIES[i];
    City {
        name,
        country,
        lat,
        lon,
    }
}

/// Where a country-level GeoIP record puts an address: the country's
/// centroid (MaxMind's "no city, accuracy radius 1000 km").
pub const CENTROIDS: &[(&str, f32, f32)] = &[
    ("AU", -25.7, 134.5),
    ("BR", -10.8, -52.9),
    ("CA", 61.4, -98.3),
    ("DE", 51.2, 10.4),
    ("ES", 40.2, -3.6),
    ("FR", 46.6, 2.4),
    ("GB", 54.2, -2.9),
    ("IN", 22.9, 79.6),
    ("IT", 42.8, 12.1),
    ("JP", 37.6, 138.0),
    ("NG", 9.6, 8.1),
    ("NL", 52.2, 5.5),
    ("RU", 61.5, 97.7),
    ("SG", 1.35, 103.8),
    ("US", 39.8, -98.6),
];

/// Radius of a country-level record.
pub const COUNTRY_RADIUS_KM: u16 = 1000;

pub fn language(i: usize) -> &'static str {
    CITIES[i].4
}

/// An autonomous system in the synthetic world.
#[derive(Clone, Debug)]
pub struct Isp {
    pub asn: u32,
    pub org: String,
    pub class: NetClass,
    /// Cities it has address blocks in, with the accuracy radius of each.
    pub cities: Vec<(usize, u16)>,
}

/// One address block: an ISP's presence in a city.
#[derive(Clone, Debug)]
pub struct Block {
    pub isp: usize,
    pub city: usize,
    pub radius_km: u16,
    pub v4: Ipv4Net,
    pub v6: Option<Ipv6Net>,
    /// The GeoIP record names only the country (no city; the country's
    /// centroid, radius [`COUNTRY_RADIUS_KM`]): carrier pools, relay egress.
    pub country_only: bool,
}

pub struct World {
    pub isps: Vec<Isp>,
    pub blocks: Vec<Block>,
}

fn cities_of(country: &str) -> Vec<usize> {
    CITIES
        .iter()
        .enumerate()
        .filter(|(_, c)| c.1 == country)
        .map(|(i, _)| i)
        .collect()
}

impl World {
    pub fn new() -> World {
        let mut isps = Vec::new();
        let mut countries: Vec<&str> = CITIES.iter().map(|c| c.1).collect();
        countries.dedup();
        countries.sort_unstable();
        countries.dedup();
        for (i, country) in countries.iter().enumerate() {
            let cs = cities_of(country);
            isps.push(Isp {
                asn: 64600 + i as u32 * 2,
                org: format!("{country} Broadband Telecom"),
                class: NetClass::Residential,
                cities: cs.iter().map(|c| (*c, 20)).collect(),
            });
            isps.push(Isp {
                asn: 64601 + i as u32 * 2,
                org: format!("{country} Mobile Networks"),
                class: NetClass::Mobile,
                // Carriers' addresses geolocate coarsely.
                cities: cs.iter().map(|c| (*c, 200)).collect(),
            });
        }
        let find = |name: &str| CITIES.iter().position(|c| c.0 == name).expect("known city");
        isps.push(Isp {
            asn: 16509,
            org: "Amazon.com, Inc.".into(),
            class: NetClass::Hosting,
            cities: ["Frankfurt", "Ashburn", "Singapore", "Tokyo", "Sao Paulo"]
                .iter()
                .map(|c| (find(c), 500))
                .collect(),
        });
        isps.push(Isp {
            asn: 14061,
            org: "DigitalOcean, LLC".into(),
            class: NetClass::Hosting,
            cities: ["Amsterdam", "New York", "Frankfurt", "Singapore"]
                .iter()
                .map(|c| (find(c), 100))
                .collect(),
        });
        isps.push(Isp {
            asn: 9009,
            org: "M247 Europe SRL".into(),
            class: NetClass::Vpn,
            cities: ["London", "Amsterdam", "Paris", "New York", "Lagos"]
                .iter()
                .map(|c| (find(c), 50))
                .collect(),
        });
        // Networks geolocated only to a country: a carrier's address pool
        // per country, and relay egress (iCloud Private Relay style: many
        // rotating addresses on a CDN's AS, placed in the user's country).
        let first_isp_country_level = isps.len();
        for (i, country) in countries.iter().enumerate() {
            let cs = cities_of(country);
            isps.push(Isp {
                asn: 65100 + i as u32,
                org: format!("{country} Mobile Carrier Pool"),
                class: NetClass::Mobile,
                cities: cs
                    .first()
                    .map(|c| (*c, COUNTRY_RADIUS_KM))
                    .into_iter()
                    .collect(),
            });
        }
        isps.push(Isp {
            asn: 13335,
            org: "Cloudflare, Inc.".into(),
            class: NetClass::Vpn,
            cities: countries
                .iter()
                .filter_map(|c| cities_of(c).first().copied())
                .map(|c| (c, COUNTRY_RADIUS_KM))
                .collect(),
        });
        let mut blocks = Vec::new();
        for (ii, isp) in isps.iter().enumerate() {
            for (ci, radius) in &isp.cities {
                let k = blocks.len() as u32;
                let v4 = Ipv4Net::new(Ipv4Addr::from(0x1400_0000u32 + (k << 10)), 22)
                    .expect("valid /22");
                let v6 = (isp.class == NetClass::Residential).then(|| {
                    let a = Ipv6Addr::new(0x2a10, ii as u16, *ci as u16, 0, 0, 0, 0, 0);
                    Ipv6Net::new(a, 48).expect("valid /48")
                });
                blocks.push(Block {
                    isp: ii,
                    city: *ci,
                    radius_km: *radius,
                    v4,
                    v6,
                    country_only: ii >= first_isp_country_level,
                });
            }
        }
        World { isps, blocks }
    }

    pub fn block(&self, isp_asn: u32, city: usize) -> Option<usize> {
        self.blocks
            .iter()
            .position(|b| self.isps[b.isp].asn == isp_asn && b.city == city)
    }

    pub fn blocks_of(&self, isp: usize) -> Vec<usize> {
        (0..self.blocks.len())
            .filter(|b| self.blocks[*b].isp == isp)
            .collect()
    }

    /// The k-th address of a block (wraps inside the /22).
    pub fn addr(&self, block: usize, k: u32) -> IpAddr {
        let b = &self.blocks[block];
        IpAddr::V4(Ipv4Addr::from(u32::from(b.v4.network()) + 1 + (k % 1000)))
    }

    pub fn addr_v6(&self, block: usize, iid: u64) -> Option<IpAddr> {
        let b = &self.blocks[block];
        b.v6.map(|n| {
            IpAddr::V6(Ipv6Addr::from(
                u128::from(n.network()) | (u128::from(iid) | 1),
            ))
        })
    }

    /// Write the GeoLite2-City- and GeoLite2-ASN-shaped databases.
    pub fn mmdb(&self) -> Result<(Vec<u8>, Vec<u8>), mmdb_writer::Error> {
        #[derive(Serialize)]
        struct Names<'a> {
            en: &'a str,
        }
        #[derive(Serialize)]
        struct Named<'a> {
            names: Names<'a>,
        }
        #[derive(Serialize)]
        struct Country<'a> {
            iso_code: &'a str,
            names: Names<'a>,
        }
        #[derive(Serialize)]
        struct Location {
            latitude: f64,
            longitude: f64,
            accuracy_radius: u16,
        }
        #[derive(Serialize)]
        struct CityRec<'a> {
            city: Named<'a>,
            country: Country<'a>,
            location: Location,
        }
        #[derive(Serialize)]
        struct CountryRec<'a> {
            country: Country<'a>,
            location: Location,
        }
        #[derive(Serialize)]
        struct AsnRec<'a> {
            autonomous_system_number: u32,
            autonomous_system_organization: &'a str,
        }
        let epoch = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
        let mut city_db = mmdb_writer::Writer::builder("GeoLite2-City")
            .description(&[("en", "tokenwatch synthetic City database")])
            .build_epoch(epoch)
            .build();
        let mut asn_db = mmdb_writer::Writer::builder("GeoLite2-ASN")
            .description(&[("en", "tokenwatch synthetic ASN database")])
            .build_epoch(epoch)
            .build();
        for b in &self.blocks {
            let c = city(b.city);
            let isp = &self.isps[b.isp];
            let rec = CityRec {
                city: Named {
                    names: Names { en: c.name },
                },
                country: Country {
                    iso_code: c.country,
                    names: Names { en: c.country },
                },
                location: Location {
                    latitude: f64::from(c.lat),
                    longitude: f64::from(c.lon),
                    accuracy_radius: b.radius_km,
                },
            };
            let asn = AsnRec {
                autonomous_system_number: isp.asn,
                autonomous_system_organization: &isp.org,
            };
            let mut nets = vec![IpNet::V4(b.v4)];
            if let Some(v6) = b.v6 {
                nets.push(IpNet::V6(v6));
            }
            let (lat, lon) = centroid(c.country);
            let country_rec = CountryRec {
                country: Country {
                    iso_code: c.country,
                    names: Names { en: c.country },
                },
                location: Location {
                    latitude: f64::from(lat),
                    longitude: f64::from(lon),
                    accuracy_radius: b.radius_km,
                },
            };
            for n in nets {
                if b.country_only {
                    city_db.insert(n, &country_rec)?;
                } else {
                    city_db.insert(n, &rec)?;
                }
                asn_db.insert(n, &asn)?;
            }
        }
        Ok((city_db.to_bytes()?, asn_db.to_bytes()?))
    }
}

/// The centroid of a country of the world.
pub fn centroid(country: &str) -> (f32, f32) {
    CENTROIDS
        .iter()
        .find(|c| c.0 == country)
        .map(|c| (c.1, c.2))
        .unwrap_or((0.0, 0.0))
}

/// An enricher over this world's databases, held in memory (demo, tests, benches).
pub fn enricher(cfg: &crate::config::Config) -> crate::enrich::Enricher {
    let (city, asn) = World::new()
        .mmdb()
        .expect("the synthetic world always encodes");
    crate::enrich::Enricher::new(
        Some(maxminddb::Reader::from_source(city).expect("valid city database")),
        Some(maxminddb::Reader::from_source(asn).expect("valid asn database")),
        crate::enrich::netclass::NetClassifier::new(&cfg.network_classes),
        cfg.geoip.cache_entries,
    )
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}
