#!/bin/sh
# Linux's code from a tree of your own, with a patch of your own: here the 2010 bug made again
# as a real edit of mm/highmem.c (kunmap_local_indexed pops the index before it clears the PTE).
# The README shows these commands; `cargo xtask test` runs this script and requires the explorer
# to catch the edit at Linux's own BUG_ON. Usage: own-tree.sh [TREE] (default: ~/linux).
set -eu
tree=${1:-$HOME/linux}
mkdir -p "$tree"
# A kernel tree (a git checkout) works as it is; here, the four files read, from Debian's source.
tar -xJf /usr/src/linux-source-6.12.tar.xz -C "$tree" --strip-components=1 \
  linux-source-6.12/Makefile linux-source-6.12/mm/highmem.c \
  linux-source-6.12/include/linux/highmem-internal.h \
  linux-source-6.12/arch/x86/include/asm/highmem.h
# The patch: in kunmap_local_indexed, the pop (and the clearing of its saved PTE) moves above
# the PTE clear.
sed -i '/^void kunmap_local_indexed/,/^}/{
  /^\tcurrent->kmap_ctrl.pteval\[kmap_local_idx()\] = __pte(0);$/d
  /^\tkmap_local_idx_pop();$/d
  s/^\tpte_clear(&init_mm, addr, kmap_pte);$/\tcurrent->kmap_ctrl.pteval[kmap_local_idx()] = __pte(0);\n\tkmap_local_idx_pop();\n&/
}' "$tree/mm/highmem.c"
# The build compiles the tree's code in; the check runs it.
KMAP_LINUX_SRC="$tree" cargo run --quiet -- check restore-race-split --impl linux
