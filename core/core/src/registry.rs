//! Registries of named components, filled at link time through `inventory`.
//!
//! Architecture invariant: every name (and alias) is unique within its kind. A duplicate is a
//! start-up error naming both origins ([`validate_all`]); an unknown name is an error that lists
//! did-you-mean suggestions.

use std::fmt;
use std::sync::OnceLock;

/// The kinds of components the framework knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Planner,
    Architecture,
    Trainer,
    Loss,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Planner, Kind::Architecture, Kind::Trainer, Kind::Loss];

    pub fn plural(self) -> &'static str {
        match self {
            Kind::Planner => "planners",
            Kind::Architecture => "architectures",
            Kind::Trainer => "trainers",
            Kind::Loss => "losses",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Planner => "planner",
            Kind::Architecture => "architecture",
            Kind::Trainer => "trainer",
            Kind::Loss => "loss",
        })
    }
}

/// One registered component: its name, aliases, a one-line summary, the module that registered
/// it (`module_path!()`), and a constructor.
pub struct Entry<T: ?Sized + 'static> {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub origin: &'static str,
    pub make: fn() -> Box<T>,
}

impl<T: ?Sized> Entry<T> {
    /// The crate that registered the component (first segment of `origin`).
    pub fn origin_crate(&self) -> &'static str {
        self.origin.split("::").next().unwrap_or(self.origin)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistryError {
    #[error("{kind} name '{name}' is registered twice: by {first} and by {second}")]
    Duplicate { kind: Kind, name: String, first: String, second: String },
    #[error("unknown {kind} '{name}'.{}{}", did_you_mean(.suggestions), known_list(.known))]
    Unknown { kind: Kind, name: String, suggestions: Vec<String>, known: Vec<String> },
}

fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() { String::new() } else { format!(" Did you mean: {}?", s.join(", ")) }
}

fn known_list(k: &[String]) -> String {
    if k.is_empty() { " No components of this kind are registered.".into() } else { format!(" Registered: {}.", k.join(", ")) }
}

/// A validated, name-sorted view over the entries of one kind.
pub struct Registry<T: ?Sized + 'static> {
    kind: Kind,
    entries: Vec<&'static Entry<T>>,
}

impl<T: ?Sized + 'static> Registry<T> {
    /// Build a registry from entries, rejecting duplicate names or aliases.
    pub fn from_entries(kind: Kind, entries: impl IntoIterator<Item = &'static Entry<T>>) -> Result<Self, RegistryError> {
        let mut entries: Vec<&'static Entry<T>> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.name.cmp(b.name).then(a.origin.cmp(b.origin)));
        let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for e in &entries {
            for n in std::iter::once(&e.name).chain(e.aliases.iter()) {
                if let Some(first) = seen.insert(n, e.origin) {
                    return Err(RegistryError::Duplicate {
                        kind,
                        name: (*n).to_string(),
                        first: first.to_string(),
                        second: e.origin.to_string(),
                    });
                }
            }
        }
        Ok(Self { kind, entries })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// All entries, sorted by name.
    pub fn entries(&self) -> &[&'static Entry<T>] {
        &self.entries
    }

    /// Look up by name or alias; an unknown name gets did-you-mean suggestions.
    pub fn get(&self, name: &str) -> Result<&'static Entry<T>, RegistryError> {
        if let Some(e) = self.entries.iter().find(|e| e.name == name || e.aliases.contains(&name)) {
            return Ok(e);
        }
        let all: Vec<&str> = self.entries.iter().flat_map(|e| std::iter::once(e.name).chain(e.aliases.iter().copied())).collect();
        Err(RegistryError::Unknown {
            kind: self.kind,
            name: name.to_string(),
            suggestions: suggest(name, &all),
            known: self.entries.iter().map(|e| e.name.to_string()).collect(),
        })
    }

    /// Construct the component registered under `name`.
    pub fn create(&self, name: &str) -> Result<Box<T>, RegistryError> {
        Ok((self.get(name)?.make)())
    }
}

/// Names close to `name`: case-insensitive match, substring, or small edit distance.
pub fn suggest(name: &str, candidates: &[&str]) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .iter()
        .map(|c| {
            let cl = c.to_lowercase();
            let score = if cl == lower {
                1.0
            } else if cl.contains(&lower) || lower.contains(&cl) {
                0.9
            } else {
                strsim::jaro_winkler(&lower, &cl)
            };
            (score, *c)
        })
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.cmp(b.1)));
    scored.into_iter().take(3).map(|(_, c)| c.to_string()).collect()
}

pub type PlannerEntry = Entry<dyn crate::Planner>;
pub type ArchitectureEntry = Entry<dyn crate::Architecture>;
pub type TrainerEntry = Entry<dyn crate::TrainerPreset>;
pub type LossEntry = Entry<dyn crate::Loss>;

inventory::collect!(PlannerEntry);
inventory::collect!(ArchitectureEntry);
inventory::collect!(TrainerEntry);
inventory::collect!(LossEntry);

macro_rules! registry_fn {
    ($fn:ident, $ty:ty, $kind:expr) => {
        /// The validated registry of this kind (built once per process).
        pub fn $fn() -> Result<&'static Registry<$ty>, RegistryError> {
            static R: OnceLock<Result<Registry<$ty>, RegistryError>> = OnceLock::new();
            R.get_or_init(|| Registry::from_entries($kind, inventory::iter::<Entry<$ty>>))
                .as_ref()
                .map_err(Clone::clone)
        }
    };
}

registry_fn!(planners, dyn crate::Planner, Kind::Planner);
registry_fn!(architectures, dyn crate::Architecture, Kind::Architecture);
registry_fn!(trainers, dyn crate::TrainerPreset, Kind::Trainer);
registry_fn!(losses, dyn crate::Loss, Kind::Loss);

/// One row of `nnunet list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub kind: Kind,
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub summary: &'static str,
    pub origin_crate: &'static str,
}

fn rows<T: ?Sized>(r: &Registry<T>) -> Vec<Listing> {
    r.entries()
        .iter()
        .map(|e| Listing { kind: r.kind(), name: e.name, aliases: e.aliases, summary: e.summary, origin_crate: e.origin_crate() })
        .collect()
}

/// Every registered component of `kind`.
pub fn list(kind: Kind) -> Result<Vec<Listing>, RegistryError> {
    Ok(match kind {
        Kind::Planner => rows(planners()?),
        Kind::Architecture => rows(architectures()?),
        Kind::Trainer => rows(trainers()?),
        Kind::Loss => rows(losses()?),
    })
}

/// Validate every registry; the CLI calls this at start-up so a duplicate name stops the program.
pub fn validate_all() -> Result<(), RegistryError> {
    planners()?;
    architectures()?;
    trainers()?;
    losses()?;
    Ok(())
}

#[doc(hidden)]
#[macro_export]
macro_rules! __register {
    ($entry:ident, $name:expr, $summary:expr, aliases = [$($alias:expr),* $(,)?], $make:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::$entry {
                name: $name, aliases: &[$($alias),*], summary: $summary, origin: module_path!(), make: $make,
            }
        }
    };
    ($entry:ident, $name:expr, $summary:expr, $make:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::registry::$entry {
                name: $name, aliases: &[], summary: $summary, origin: module_path!(), make: $make,
            }
        }
    };
}

/// Register a [`Planner`](crate::Planner):
/// `register_planner!("Name", "one-line summary", || Box::new(MyPlanner));`, optionally with
/// `aliases = ["Short"],` before the constructor.
#[macro_export]
macro_rules! register_planner {
    ($($t:tt)*) => { $crate::__register!(PlannerEntry, $($t)*); };
}

/// Register an [`Architecture`](crate::Architecture) (same syntax as `register_planner!`).
#[macro_export]
macro_rules! register_architecture {
    ($($t:tt)*) => { $crate::__register!(ArchitectureEntry, $($t)*); };
}

/// Register a [`TrainerPreset`](crate::TrainerPreset) (same syntax as `register_planner!`).
#[macro_export]
macro_rules! register_trainer {
    ($($t:tt)*) => { $crate::__register!(TrainerEntry, $($t)*); };
}

/// Register a [`Loss`](crate::Loss) (same syntax as `register_planner!`).
#[macro_export]
macro_rules! register_loss {
    ($($t:tt)*) => { $crate::__register!(LossEntry, $($t)*); };
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Thing {}
    struct A;
    impl Thing for A {}

    static E1: Entry<dyn Thing> = Entry { name: "Alpha", aliases: &["A"], summary: "", origin: "crate_one::x", make: || Box::new(A) };
    static E2: Entry<dyn Thing> = Entry { name: "Beta", aliases: &[], summary: "", origin: "crate_two::y", make: || Box::new(A) };
    static E3: Entry<dyn Thing> = Entry { name: "Alpha", aliases: &[], summary: "", origin: "crate_three::z", make: || Box::new(A) };

    #[test]
    fn duplicate_names_both_origins() {
        let err = Registry::from_entries(Kind::Planner, [&E1, &E2, &E3]).err().expect("duplicate must fail");
        let msg = err.to_string();
        assert!(msg.contains("crate_one::x") && msg.contains("crate_three::z"), "{msg}");
    }

    #[test]
    fn unknown_name_suggests() {
        let r = Registry::from_entries(Kind::Planner, [&E1, &E2]).unwrap();
        assert!(r.get("A").is_ok());
        let msg = r.get("alpah").err().unwrap().to_string();
        assert!(msg.contains("Did you mean: Alpha"), "{msg}");
    }

    #[test]
    fn suggestions_for_resenc_typos() {
        let names = ["ExperimentPlanner", "nnUNetPlannerResEncL", "nnUNetPlannerResEncM", "nnUNetPlannerResEncXL", "ResEncUNetPlanner"];
        let s = suggest("nnUNetPlannerResEncl", &names);
        assert_eq!(s.first().map(String::as_str), Some("nnUNetPlannerResEncL"));
        assert!(suggest("L", &names).len() <= 3);
    }
}
