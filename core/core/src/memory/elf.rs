//! The static symbol table (`.symtab`) of an ELF64 little-endian file: enough to find the address of a function
//! that a shared library does not export (a C++ virtual method of a class with hidden visibility) from its
//! unstripped symbol table. Used by the LibTorch CUDA memory statistics (`libtorch_cuda.rs`).

use std::path::Path;

const SHT_SYMTAB: u32 = 2;
const SYM_SIZE: usize = 24;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// The values (`st_value`: link-time addresses) of the symbols `names` in the `.symtab` of `path`, in the order of
/// `names`; `None` for a name not in it. Errors: the file cannot be read, is not ELF64 little-endian, or has no
/// `.symtab` (stripped).
pub fn symbol_values(path: &Path, names: &[&str]) -> Result<Vec<Option<usize>>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    symbol_values_in(&b, names).ok_or_else(|| format!("{}: not an ELF64 little-endian file with a symbol table (.symtab)", path.display()))
}

fn symbol_values_in(b: &[u8], names: &[&str]) -> Option<Vec<Option<usize>>> {
    // e_ident: magic, ELFCLASS64 (2), ELFDATA2LSB (1)
    if b.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64_at(b, 0x28)?;
    let shentsize = u16_at(b, 0x3a)? as usize;
    let shnum = u16_at(b, 0x3c)? as usize;
    let section = |i: usize| shoff + i * shentsize;
    let symtab = (0..shnum).map(section).find(|&s| u32_at(b, s + 4) == Some(SHT_SYMTAB))?;
    let (off, size) = (u64_at(b, symtab + 0x18)?, u64_at(b, symtab + 0x20)?);
    let strtab = section(u32_at(b, symtab + 0x28)? as usize);
    let (str_off, str_size) = (u64_at(b, strtab + 0x18)?, u64_at(b, strtab + 0x20)?);
    let strings = b.get(str_off..str_off + str_size)?;
    let mut values = vec![None; names.len()];
    for sym in b.get(off..off + size)?.chunks_exact(SYM_SIZE) {
        let name_at = u32_at(sym, 0)? as usize;
        let Some(rest) = strings.get(name_at..) else { continue };
        let name = &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())];
        if let Some(i) = names.iter().position(|n| n.as_bytes() == name) {
            values[i] = Some(u64_at(sym, 8)?);
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    #[unsafe(no_mangle)]
    extern "C" fn nnunet_elf_test_marker() -> u32 {
        42
    }

    #[test]
    fn finds_a_function_of_this_test_binary_at_its_link_address() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let v = symbol_values(&exe, &["nnunet_elf_test_marker", "no_such_symbol_here"]).unwrap();
        let value = v[0].expect("the marker is in .symtab");
        assert_eq!(v[1], None);
        // runtime address − link address is the load bias of this (position-independent) executable; the bias is
        // page aligned, so the two addresses agree in their low 12 bits
        let runtime = nnunet_elf_test_marker as *const () as usize;
        assert_eq!(runtime & 0xfff, value & 0xfff);
        assert_eq!(nnunet_elf_test_marker(), 42);
    }

    #[test]
    fn rejects_what_is_not_elf64() {
        assert!(symbol_values_in(b"#!/bin/sh\n", &["x"]).is_none());
        let err = symbol_values(Path::new("/no/such/file.so"), &["x"]).unwrap_err();
        assert!(err.contains("/no/such/file.so"), "{err}");
    }
}
