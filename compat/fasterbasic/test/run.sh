#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the build into a scratch prefix, checks what pkg-config prints
# for samm-fasterbasic (clean absolute paths, also when staged with
# DESTDIR), then builds and runs a consumer of the FasterBASIC
# compatibility library: with pkg-config (shared libraries), and with the
# static libraries in libsamm's default cleanup mode and in background mode.
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
lib=$(ls -d "$tmp"/prefix/lib*)
inc=$tmp/prefix/include/samm-fasterbasic
test -f "$lib/libsamm_fasterbasic.a" && test -L "$lib/libsamm_fasterbasic.so"
ls "$lib"/libsamm_fasterbasic.so.0* >/dev/null
test -f "$inc/samm_bridge.h" && test -f "$inc/samm_pool.h" && test -f "$inc/samm_fasterbasic.h"
PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags samm-fasterbasic | sed "s/ *$//")
libs=$(pkg-config --libs samm-fasterbasic | sed "s/ *$//")
if [ "$cflags" != "-I$inc -I$tmp/prefix/include" ] ||
   [ "$libs" != "-L$lib -lsamm_fasterbasic -lsamm" ]; then
  echo "install: samm-fasterbasic.pc paths not clean: '$cflags' '$libs'" >&2
  exit 1
fi
DESTDIR=$tmp/stage cmake --install "$build" --prefix /opt/samm >/dev/null
pc=$(ls "$tmp"/stage/opt/samm/lib*/pkgconfig/samm-fasterbasic.pc)
grep -qx 'prefix=/opt/samm' "$pc" || { echo "install: staged pc: $(grep ^prefix "$pc")" >&2; exit 1; }
"$cc" -o "$tmp/shared" "$src/consumer.c" $cflags $libs -Wl,-rpath,"$lib"
"$tmp/shared"
"$cc" -o "$tmp/static" "$src/consumer.c" $(pkg-config --cflags samm-fasterbasic) \
    "$lib/libsamm_fasterbasic.a" "$lib/libsamm.a" -lpthread -ldl
"$tmp/static"
SAMM_CLEANUP=background "$tmp/static"
echo "install: samm-fasterbasic consumers built and ran (shared and static, inline and background)"
