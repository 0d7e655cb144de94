#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the build into a scratch prefix, checks what pkg-config prints
# (clean absolute paths), then builds and runs a consumer twice: with
# pkg-config and with CMake's find_package(samm).  Also: a staged install
# (DESTDIR) names the final prefix, and the licence and, when built, the man
# pages are installed.
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(ls -d "$prefix"/lib*)
test -L "$lib/libsamm.so" && test -f "$lib/libsamm.a"
ls "$lib"/libsamm.so.0* >/dev/null
test -f "$prefix/share/doc/samm/LICENSE"
if [ -f "$build/docs/man/man3/samm.3" ]; then
  test -f "$prefix/share/man/man3/samm.3" && test -f "$prefix/share/man/man3/samm_scope.3"
  test -f "$prefix/share/man/man3/samm_exit_scope.3"
fi

PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags samm | sed "s/ *$//")
libs=$(pkg-config --libs samm | sed "s/ *$//")
if [ "$cflags" != "-I$prefix/include" ] || [ "$libs" != "-L$lib -lsamm" ]; then
  echo "install: pkg-config paths not clean: '$cflags' '$libs'" >&2
  exit 1
fi

# Staged: the file names the prefix, not the staging directory.
DESTDIR=$tmp/stage cmake --install "$build" --prefix /opt/samm >/dev/null
pc=$(ls "$tmp"/stage/opt/samm/lib*/pkgconfig/samm.pc)
grep -qx 'prefix=/opt/samm' "$pc" || { echo "install: staged samm.pc: $(grep ^prefix "$pc")" >&2; exit 1; }

"$cc" -o "$tmp/pc" "$src/consumer.c" $cflags $libs -Wl,-rpath,"$lib"
"$tmp/pc"
cmake -S "$src" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH=$lib "$tmp/cm/consumer"
echo "install: clean pkg-config paths; pkg-config and find_package(samm) consumers built and ran"
