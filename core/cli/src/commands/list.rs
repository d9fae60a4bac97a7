//! `nnunet list [planners|architectures|trainers|losses]`: the registered components per kind (with `--plugin`,
//! the plugins' components too; the listing itself lives in [`super::plugin`]).

pub fn run(kind: Option<&str>) -> anyhow::Result<()> {
    super::plugin::list(&[], kind)
}
