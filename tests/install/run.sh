#!/bin/sh
# Installs the build into a scratch prefix, then builds and runs a consumer
# twice: with pkg-config and with CMake's find_package(samm).
set -eu
build=$1 src=$2 cc=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
lib=$(ls -d "$tmp"/prefix/lib*)
test -L "$lib/libsamm.so" && test -f "$lib/libsamm.a"
ls "$lib"/libsamm.so.0* >/dev/null
PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_PATH
"$cc" -o "$tmp/pc" "$src/consumer.c" $(pkg-config --cflags --libs samm) -Wl,-rpath,"$lib"
"$tmp/pc"
cmake -S "$src" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH=$lib "$tmp/cm/consumer"
echo "install: pkg-config and find_package(samm) consumers built and ran"
