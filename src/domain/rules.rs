//! The names of the alert engine's rules and rule families, interned once per process.
//!
//! The engine checks, for every sample, which rules it meets and which families' inputs it
//! carries, and keeps a streak per rule: with rules named by text that was string comparison,
//! prefix splitting and string-keyed maps on every sample (the largest single item of
//! `etl daily`'s profile). A `RuleKey` is a pointer to its interned name: equality is a pointer
//! comparison, its family a bit of a `FamilySet`. Outside the engine a rule is still its name:
//! keys serialise as the name (checkpoints are unchanged), order by name (so maps of rules
//! iterate as they did), and any name, including one from an old checkpoint, can be interned.
//!
//! The interned set is small and bounded by the thresholds files a process loads (vital rules,
//! pain, SpO₂ critical, device rules, one rule per combination), so the entries are leaked:
//! `&'static` is what makes a key `Copy` and free to compare.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};

/// How many families a `FamilySet` tells apart. Thresholds files are held well under it
/// (`MAX_COMBINATIONS`); names beyond it, which only a foreign checkpoint could bring, share the
/// last bit, so that at worst a stale streak of such a rule ends early.
const FAMILY_BITS: usize = 64;

/// Combinations a thresholds file may declare: with the twelve fixed families they stay
/// within `FAMILY_BITS`.
pub const MAX_COMBINATIONS: usize = 48;

/// A rule family: the rules that read the same inputs (`spo2`, `pain`, `C1`, `battery`…).
#[derive(Clone, Copy)]
pub struct Family(&'static FamilyInfo);

struct FamilyInfo {
    name: &'static str,
    bit: u64,
}

/// A rule (`spo2_alert`, `C1_fever_hypoxia`, `device_battery_low`…).
#[derive(Clone, Copy)]
pub struct RuleKey(&'static RuleInfo);

struct RuleInfo {
    name: &'static str,
    family: Family,
}

#[derive(Default)]
struct Interned {
    families: HashMap<&'static str, Family>,
    rules: HashMap<&'static str, RuleKey>,
}

fn interned() -> std::sync::MutexGuard<'static, Interned> {
    static INTERNED: OnceLock<Mutex<Interned>> = OnceLock::new();
    // A panic while the lock was held cannot leave the maps half-updated (each insert is one
    // call), so a poisoned lock is still usable.
    INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn leak(name: &str) -> &'static str {
    Box::leak(name.to_owned().into_boxed_str())
}

impl Family {
    pub fn named(name: &str) -> Family {
        let mut all = interned();
        Self::named_in(&mut all, name)
    }

    fn named_in(all: &mut Interned, name: &str) -> Family {
        if let Some(f) = all.families.get(name) {
            return *f;
        }
        let bit = 1u64 << all.families.len().min(FAMILY_BITS - 1);
        let name = leak(name);
        let family = Family(Box::leak(Box::new(FamilyInfo { name, bit })));
        all.families.insert(name, family);
        family
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for Family {
    fn eq(&self, other: &Self) -> bool {
        // One entry per name: the address is the identity.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Family {}

impl fmt::Debug for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl RuleKey {
    /// The rule `name`, of the family its name implies (`family_of`).
    pub fn named(name: &str) -> RuleKey {
        Self::in_family(name, family_of(name))
    }

    /// The rule `name` of `family`, for rules whose family is not implied by the name (a
    /// combination's id may contain `_`). The first interning of a name fixes its family.
    pub fn in_family(name: &str, family: &str) -> RuleKey {
        let mut all = interned();
        if let Some(rule) = all.rules.get(name) {
            return *rule;
        }
        let family = Family::named_in(&mut all, family);
        Self::insert(&mut all, name, family)
    }

    fn insert(all: &mut Interned, name: &str, family: Family) -> RuleKey {
        let name = leak(name);
        let rule = RuleKey(Box::leak(Box::new(RuleInfo { name, family })));
        all.rules.insert(name, rule);
        rule
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }

    pub fn family(self) -> Family {
        self.0.family
    }
}

/// The family a rule's name implies: its first word for vital rules (`spo2_alert` → `spo2`),
/// the combination id (`C1_fever_hypoxia` → `C1`), or the device part (`device_battery_low` →
/// `battery`).
fn family_of(rule: &str) -> &str {
    if let Some(rest) = rule.strip_prefix("device_") {
        return rest.split('_').next().unwrap_or(rest);
    }
    for family in ["heart_rate", "respiratory_rate", "heat_index"] {
        if rule.starts_with(family) {
            return family;
        }
    }
    rule.split('_').next().unwrap_or(rule)
}

impl PartialEq for RuleKey {
    fn eq(&self, other: &Self) -> bool {
        // One entry per name: the address is the identity.
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for RuleKey {}

impl PartialOrd for RuleKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RuleKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self == other {
            std::cmp::Ordering::Equal
        } else {
            self.name().cmp(other.name())
        }
    }
}

impl fmt::Debug for RuleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for RuleKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for RuleKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(RuleKey::named(&name))
    }
}

/// A set of families, one bit each.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilySet(u64);

impl FamilySet {
    pub fn insert(&mut self, family: Family) {
        self.0 |= family.0.bit;
    }

    pub fn contains(self, family: Family) -> bool {
        self.0 & family.0.bit != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_interned_once_and_compares_by_identity() {
        let a = RuleKey::named("spo2_alert");
        let b = RuleKey::named(&String::from("spo2_alert"));
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.name(), b.name()));
        assert_ne!(a, RuleKey::named("spo2_critical"));
        assert_eq!(a.family(), RuleKey::named("spo2_critical").family());
    }

    #[test]
    fn families_follow_the_names_and_combinations_keep_theirs() {
        let family = |rule: &str| RuleKey::named(rule).family().name();
        assert_eq!(family("heart_rate_critical_high"), "heart_rate");
        assert_eq!(family("respiratory_rate_alert_low"), "respiratory_rate");
        assert_eq!(family("heat_index_warn_high"), "heat_index");
        assert_eq!(family("device_battery_low"), "battery");
        assert_eq!(family("device_signal_poor"), "signal");
        assert_eq!(family("C1_fever_hypoxia"), "C1");
        assert_eq!(
            RuleKey::in_family("C_9_odd_combo", "C_9").family().name(),
            "C_9"
        );
        // Interned first with its family, the name keeps it when read back from a checkpoint.
        assert_eq!(family("C_9_odd_combo"), "C_9");
    }

    #[test]
    fn family_sets_tell_families_apart() {
        let mut set = FamilySet::default();
        let spo2 = Family::named("spo2");
        let pain = Family::named("pain");
        set.insert(spo2);
        assert!(set.contains(spo2));
        assert!(!set.contains(pain));
        set.insert(pain);
        assert!(set.contains(pain) && set.contains(spo2));
    }

    #[test]
    fn keys_order_and_serialise_by_name() {
        let (a, b) = (RuleKey::named("a_rule"), RuleKey::named("b_rule"));
        assert!(a < b);
        assert_eq!(serde_json::to_string(&b).expect("serialise"), "\"b_rule\"");
        let back: RuleKey = serde_json::from_str("\"a_rule\"").expect("deserialise");
        assert_eq!(back, a);
        let map: std::collections::BTreeMap<RuleKey, i64> =
            serde_json::from_str(r#"{"b_rule": 2, "a_rule": 1}"#).expect("a map");
        assert_eq!(map.keys().copied().collect::<Vec<_>>(), vec![a, b]);
    }
}
