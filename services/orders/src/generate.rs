//! Random valid orders and every kind of junk, for the publisher, the tests and the benches.

use crate::order::{Delivery, Item, MAX_ITEMS, MAX_MESSAGE_BYTES, Order, Payment};

/// A seeded source of orders and junk; the same seed gives the same messages.
pub struct Generator {
    rng: fastrand::Rng,
    seed: u64,
}

const NAMES: &[&str] = &[
    "Test Testov",
    "Ivan Petrov",
    "Anna Smith",
    "Li Wei",
    "Jo Brown",
];
const CITIES: &[&str] = &["Kiryat Mozkin", "Berlin", "Lisbon", "Oslo", "Kyoto"];
const BRANDS: &[&str] = &["Vivienne Sabo", "Acme", "Nordwind", "Blue Fox", "Kite"];
const PRODUCTS: &[&str] = &["Mascaras", "Socks", "Kettle", "Lamp", "Notebook", "Scarf"];

/// The kinds of junk [`Generator::junk`] cycles through.
pub const JUNK_KINDS: usize = 10;

impl Generator {
    /// A generator whose order ids all start with the seed in hex, so runs do not collide.
    pub fn new(seed: u64) -> Self {
        Generator {
            rng: fastrand::Rng::with_seed(seed),
            seed,
        }
    }

    fn word(&mut self, from: &[&str]) -> String {
        from[self.rng.usize(..from.len())].to_string()
    }

    fn token(&mut self, len: usize) -> String {
        (0..len).map(|_| self.rng.alphanumeric()).collect()
    }

    /// The `index`-th valid order: unique id `<seed hex>-<index>`, 1 to 3 items.
    pub fn order(&mut self, index: u64) -> Order {
        let uid = format!("{:x}-{index:09}", self.seed);
        let track = format!("WB{}", self.token(10).to_uppercase());
        let items: Vec<Item> = (0..self.rng.usize(1..=3))
            .map(|_| self.item(&track))
            .collect();
        let goods_total = items.iter().map(|i| i.total_price).sum();
        let delivery_cost = self.rng.i64(0..2000);
        Order {
            order_uid: uid.clone(),
            track_number: track,
            entry: "WBIL".into(),
            delivery: self.delivery(),
            payment: self.payment(&uid, goods_total, delivery_cost),
            items,
            locale: self.word(&["en", "ru", "de"]),
            internal_signature: String::new(),
            customer_id: format!("cust-{}", self.rng.u32(..100_000)),
            delivery_service: self.word(&["meest", "dhl", "ups"]),
            shardkey: self.rng.u8(0..10).to_string(),
            sm_id: self.rng.i64(1..100),
            date_created: format!(
                "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                self.rng.u8(1..=12),
                self.rng.u8(1..=28),
                self.rng.u8(0..24),
                self.rng.u8(0..60),
                self.rng.u8(0..60)
            ),
            oof_shard: self.rng.u8(0..10).to_string(),
        }
    }

    fn delivery(&mut self) -> Delivery {
        let name = self.word(NAMES);
        Delivery {
            email: format!("{}@example.com", name.replace(' ', ".").to_lowercase()),
            name,
            phone: format!("+9720000{:04}", self.rng.u16(..10_000)),
            zip: self.rng.u32(100_000..999_999).to_string(),
            city: self.word(CITIES),
            address: format!("Ploshad Mira {}", self.rng.u8(1..200)),
            region: self.word(&["Kraiot", "North", "Coast"]),
        }
    }

    fn payment(&mut self, uid: &str, goods_total: i64, delivery_cost: i64) -> Payment {
        Payment {
            transaction: uid.to_string(),
            request_id: String::new(),
            currency: self.word(&["USD", "EUR", "RUB"]),
            provider: "wbpay".into(),
            amount: goods_total + delivery_cost,
            payment_dt: 1_637_907_727 + self.rng.i64(0..100_000_000),
            bank: self.word(&["alpha", "sber", "tinkoff"]),
            delivery_cost,
            goods_total,
            custom_fee: 0,
        }
    }

    fn item(&mut self, track: &str) -> Item {
        let price = self.rng.i64(100..10_000);
        let sale = self.rng.i64(0..60);
        Item {
            chrt_id: self.rng.i64(1..10_000_000),
            track_number: track.to_string(),
            price,
            rid: self.token(21),
            name: self.word(PRODUCTS),
            sale,
            size: self.rng.u8(0..50).to_string(),
            total_price: price * (100 - sale) / 100,
            nm_id: self.rng.i64(1..10_000_000),
            brand: self.word(BRANDS),
            status: 202,
        }
    }

    /// The `index`-th junk message; kind `index % JUNK_KINDS`. Every one is invalid.
    pub fn junk(&mut self, index: u64) -> Vec<u8> {
        let valid = self.order(u64::MAX - index);
        let mut value = serde_json::to_value(&valid).unwrap_or_default();
        match index % JUNK_KINDS as u64 {
            0 => (0..self.rng.usize(1..512))
                .map(|_| self.rng.u8(..))
                .collect(),
            1 => b"{\"order_uid\": \"abc\", \"items\": [".to_vec(),
            2 => b"[1, 2, 3]".to_vec(),
            3 => {
                value.as_object_mut().map(|o| o.remove("payment"));
                value.to_string().into_bytes()
            }
            4 => {
                value["sm_id"] = "seven".into();
                value.to_string().into_bytes()
            }
            5 => {
                value["delivery"]["city"] = "Nul\u{0}City".into();
                value.to_string().into_bytes()
            }
            6 => {
                value["date_created"] = "yesterday".into();
                value.to_string().into_bytes()
            }
            7 => {
                let item = value["items"][0].clone();
                value["items"] = vec![item; MAX_ITEMS + 1].into();
                value.to_string().into_bytes()
            }
            8 => vec![b'x'; MAX_MESSAGE_BYTES * 4],
            _ => {
                value["order_uid"] = "../../etc/passwd".into();
                value.to_string().into_bytes()
            }
        }
    }
}
