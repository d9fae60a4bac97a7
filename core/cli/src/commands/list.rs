//! `nnunet list [planners|architectures|trainers|losses]`.

use nnunet_core::registry::{self, Kind};

pub fn run(kind: Option<&str>) -> anyhow::Result<()> {
    let kinds: Vec<Kind> = match kind {
        None => Kind::ALL.to_vec(),
        Some(k) => Kind::ALL.iter().copied().filter(|x| x.plural() == k).collect(),
    };
    for k in kinds {
        let rows = registry::list(k)?;
        println!("{} ({}):", k.plural(), rows.len());
        if rows.is_empty() {
            println!("  (none registered yet)");
        }
        let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for r in rows {
            let aliases = if r.aliases.is_empty() { String::new() } else { format!(" (alias: {})", r.aliases.join(", ")) };
            println!("  {:w$}  [{}] {}{}", r.name, r.origin_crate, r.summary, aliases, w = w);
        }
    }
    Ok(())
}
