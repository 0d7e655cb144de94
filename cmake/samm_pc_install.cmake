# SPDX-License-Identifier: MIT
# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt): writes samm.pc
# into <prefix>/<libdir>/pkgconfig with the prefix this install really goes
# to (--prefix may differ from the configured CMAKE_INSTALL_PREFIX), as an
# absolute, normalised path, so that `pkg-config --cflags samm` prints
# -I/opt/samm/include and not -I/opt/samm/lib/pkgconfig/../../include.
# CMakeLists.txt sets SAMM_PC_IN, SAMM_PC_LIBDIR, SAMM_PC_INCLUDEDIR,
# PROJECT_VERSION and PROJECT_DESCRIPTION before this runs.
set(prefix "${CMAKE_INSTALL_PREFIX}")
if(prefix STREQUAL "")
  set(prefix "/") # cmake --install --prefix /
endif()
get_filename_component(prefix "${prefix}" ABSOLUTE)
set(SAMM_PC_PREFIX "${prefix}")
# GNUInstallDirs paths are relative to the prefix unless set absolute.
foreach(dir LIBDIR INCLUDEDIR)
  set(path "${SAMM_PC_${dir}}")
  if(IS_ABSOLUTE "${path}" OR prefix STREQUAL "/")
    get_filename_component(path "/${path}" ABSOLUTE)
    set(abs_${dir} "${path}")
  else()
    get_filename_component(abs_${dir} "${prefix}/${path}" ABSOLUTE)
    set(path "\${prefix}/${path}")
  endif()
  string(REGEX REPLACE "/+$" "" path "${path}")
  set(SAMM_PC_${dir} "${path}")
endforeach()
set(dest "$ENV{DESTDIR}${abs_LIBDIR}/pkgconfig/samm.pc")
message(STATUS "Installing: ${dest}")
configure_file("${SAMM_PC_IN}" "${dest}" @ONLY)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${dest}")
